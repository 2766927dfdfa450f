"""Exercises of the chapter on normalization layers and adaptive optimizers."""

from __future__ import annotations

from vgcourse.exercises.core import Exercise, Mistake, register

__all__ = ["BETA1", "BETA2", "EPS", "TINY_GRADIENT"]

BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
"""Adam's defaults (PyTorch's ``torch.optim.Adam``)."""
TINY_GRADIENT = 5e-9
"""The gradient of the exercise ``tiny_gradient_step``, half of ε."""

# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "tiny_gradient_step": (
        "0d8cc52f05a559de0e9c150c",
        "4d0c7f6aefdc2c028b4d61e6",
        "679edb1f86eba5792b4de048",
        "6e55ebaf5992088af651d879",
        "9a995ad8bb077cf832a21a40",
        "ea96c39660b0eff0f7515fb5",
    ),
    "uncorrected_first_step": (
        "31ea0700b3c2cb584d40379e",
        "6d73910fe8f84f48aa5ebd21",
        "829571d722805fdd39bc269f",
        "87a489540f9ec8b83823a210",
        "a1dd3071e127fed2696d75eb",
        "acba9ae1f060e2618cdc9672",
    ),
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "tiny_gradient_step": (
        ("b27c555956adef0c2760fa19",),
        ("e06ef173d2b1ba764d65e1c9",),
        ("e3fe44d1b9de3ff96a76632b",),
        ("1ec6fbdc2dae550a9804f1db", "26cd2f41bb7b695c959309ba"),
    ),
    "uncorrected_first_step": (
        ("37931f3a192e1cb5b848dc9c",),
        ("ac2a79e178d22262d648a70d", "dc6f4d88752a01dd23f09509"),
        ("d9ae6cb89b83c58b7457e51d", "ed16c733ba27504d990051e7"),
    ),
}

register(
    Exercise(
        id="normalization_and_optimizers.tiny_gradient_step",
        title="Adam's first step on a gradient below ε",
        prompt=(
            f"A weight's gradient is g = {TINY_GRADIENT:g} at Adam's first step (β1 = {BETA1:g}, "
            f"β2 = {BETA2:g}, ε = {EPS:g}, with the bias correction, as in torch.optim.Adam). By how many "
            "learning rates does the weight move, |Δw|/lr?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["tiny_gradient_step"],
        hint=(
            "write m̂ and v̂ after one step (the bias correction divides by 1 - β1 and 1 - β2), then the "
            "update lr·m̂/(√v̂ + ε); do not drop ε, which is not small next to √v̂ here."
        ),
        mistakes=(
            Mistake(
                "that is the step of a gradient far above ε, lr·g/|g|; here √v̂ = |g| is half of ε, "
                "and ε stays in the denominator.",
                _MISTAKES["tiny_gradient_step"][0],
            ),
            Mistake(
                "that is lr·g/ε, which drops √v̂ next to ε; √v̂ is half of ε, not negligible.",
                _MISTAKES["tiny_gradient_step"][1],
            ),
            Mistake(
                "that is plain SGD's step, lr·g; Adam divides by √v̂ + ε.",
                _MISTAKES["tiny_gradient_step"][2],
            ),
            Mistake(
                "that leaves out the bias correction: after one step m = (1 - β1)·g and v = (1 - β2)·g², "
                "and Adam divides them by 1 - β1 and 1 - β2.",
                _MISTAKES["tiny_gradient_step"][3],
            ),
        ),
    )
)

register(
    Exercise(
        id="normalization_and_optimizers.uncorrected_first_step",
        title="Adam without its bias correction",
        prompt=(
            f"Take Adam with β1 = {BETA1:g} and β2 = {BETA2:g} but leave out the bias correction: the update "
            "is lr·m/(√v + ε) with m and v the running averages, both started at 0. At the first step, "
            "for a weight whose gradient g is far above ε, by how many learning rates does the weight "
            "move, |Δw|/lr?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["uncorrected_first_step"],
        hint="after one step m = (1 - β1)·g and v = (1 - β2)·g²; ε is negligible next to √v.",
        mistakes=(
            Mistake(
                "that is the corrected step, m̂/√v̂ = 1; without the correction m and v are smaller by "
                "different factors.",
                _MISTAKES["uncorrected_first_step"][0],
            ),
            Mistake(
                "that is m alone, (1 - β1)·|g| divided by |g|: v is also 1 - β2 times g², and the update "
                "divides by its square root.",
                _MISTAKES["uncorrected_first_step"][1],
            ),
            Mistake(
                "the update divides by √v, not by v: take the square root of 1 - β2.",
                _MISTAKES["uncorrected_first_step"][2],
            ),
        ),
    )
)
