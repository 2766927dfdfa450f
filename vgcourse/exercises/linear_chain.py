"""Exercises of the linear-chain chapter."""

from __future__ import annotations

from vgcourse.exercises.core import Exercise, Mistake, register

# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "vanishing_depth": ("2ea66f13aebf063b86761a56",),
    "float32_underflow": ("fc28c526a90869a9001ed9ac",),
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "vanishing_depth": (
        ("f2e18cdceed9e501211b6ee7",),
        ("c7e9e8d9ed74153dbe9ebb68",),
        ("d342bd5f5b69f95ac6cbe87a",),
    ),
    "float32_underflow": (
        ("1ac21cb9f045ef68f8d6fc34",),
        ("3b821844d9efa03c9106f0f0",),
        ("8e83fb33b7d22418466975cd",),
        ("486a41a7e85cb999a0fae165",),
    ),
}

register(
    Exercise(
        id="linear_chain.vanishing_depth",
        title="When is the gradient a thousand times smaller?",
        prompt=(
            "Every layer of a deep linear chain multiplies the back-propagated gradient by 0.9. After "
            "passing back through how many layers L is it, for the first time, below 1/1000 of the output "
            "gradient?"
        ),
        kind="number",
        digits=None,
        keys=_KEYS["vanishing_depth"],
        hint="solve 0.9^L < 10^-3 for the smallest whole L, with logarithms of one base on both sides.",
        mistakes=(
            Mistake(
                "check the boundary: at that depth 0.9^L is still at or above 1/1000. The question asks for "
                "the first L where it is below.",
                _MISTAKES["vanishing_depth"][0],
            ),
            Mistake(
                "ln(0.9) is not exactly -0.1; that approximation is too coarse at this depth.",
                _MISTAKES["vanishing_depth"][1],
            ),
            Mistake(
                "use the same logarithm on both sides: log10 above and ln below do not divide.",
                _MISTAKES["vanishing_depth"][2],
            ),
        ),
    )
)

register(
    Exercise(
        id="linear_chain.float32_underflow",
        title="Where float32 gives up",
        prompt=(
            "A gradient of 1.0 is halved by every layer it passes back through, computed in float32. "
            "After how many layers is it exactly 0?"
        ),
        kind="number",
        digits=None,
        keys=_KEYS["float32_underflow"],
        hint="think about the smallest positive float32 number, subnormals included: torch.finfo and 2^-k.",
        mistakes=(
            Mistake(
                "that is where the smallest *normal* float32 is reached; subnormal numbers go further down.",
                _MISTAKES["float32_underflow"][0],
            ),
            Mistake(
                "check the boundary: at that depth the value is still a positive (subnormal) number.",
                _MISTAKES["float32_underflow"][1],
            ),
            Mistake(
                "check the boundary: the chapter's table counts the first layer's *weight* gradient, "
                "which has one factor fewer than the gradient passed back through every layer.",
                _MISTAKES["float32_underflow"][2],
            ),
            Mistake(
                "that is where float64 underflows; float32 has far fewer exponent bits.",
                _MISTAKES["float32_underflow"][3],
            ),
        ),
    )
)
