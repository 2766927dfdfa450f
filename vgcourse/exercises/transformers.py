"""Exercises of the transformers chapter: residual streams, Post-LN and Pre-LN."""

from __future__ import annotations

import functools

from vgcourse._validation import check_int
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.transformers import SORT_VOCAB, TRAINED_ACCURACY, WarmupConfig, run_warmup

PEAK_LR = 0.01  # of both exercises: the chapter's rate at which Post-LN fails without warmup
WIDTH = 32  # d_model of the chapter's transformer: W_Q, W_K, W_V and W_O are WIDTH × WIDTH
FIRST_STEP_RATIO = 1e-3  # the rule-of-thumb update:data ratio (``vgcourse.diagnose.UPDATE_RATIO_GUIDE``)
WARMUP_LIMIT = 200  # the longest warmup the exercise rescue_post_ln accepts: the chapter's run length


def warmup_accuracy(warmup: int) -> float:
    """Final validation accuracy of the chapter's Post-LN transformer trained at lr ``PEAK_LR`` with a
    linear warmup of ``warmup`` steps (a whole number in [0, WARMUP_LIMIT]; 0: none), seed 0, everything
    else as ``WarmupConfig()``."""
    return _warmup_accuracy(check_int("warmup", warmup, minimum=0, maximum=WARMUP_LIMIT))


@functools.lru_cache(maxsize=64)
def _warmup_accuracy(warmup: int) -> float:
    """`warmup_accuracy` of a checked length (one seeded run per length, so a repeated check is free)."""
    variant = "Post-LN + warmup" if warmup else "Post-LN"  # Post-LN ignores warmup_steps
    config = WarmupConfig(variants=(variant,), lrs=(PEAK_LR,), seeds=(0,), warmup_steps=max(warmup, 1))
    return float(run_warmup(config).final_accuracy.values[0, 0, 0])


# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {"first_step_warmup": ("ebe0ace82947e24bb4478787",)}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "first_step_warmup": (
        ("b73b7d8a8b25b773b014cdfa",),
        ("182d2b4dd28affbd9379fcab",),
        ("ba4030fd04578629aac473a2",),
        ("bb7e527a4127c731cb803d32",),
        ("6768f9e283a5e375d2a62982",),
    )
}


register(
    Exercise(
        id="transformers.first_step_warmup",
        title="Warm up to the rule of thumb",
        prompt=(
            f"The chapter trains its transformer with Adam at a peak learning rate η = {PEAK_LR:g}. Its "
            f"attention matrices are {WIDTH} × {WIDTH}, Xavier-normal: entries drawn with standard "
            f"deviation √(2/({WIDTH} + {WIDTH})). With a linear warmup of W steps, step s uses the learning "
            "rate η·min(1, (s + 1)/W). Adam's first step (with its bias correction, and gradients far "
            "larger than ε) moves every weight by exactly its learning rate, in the direction opposite "
            "to the gradient's sign. What is the smallest whole number of warmup steps W for which the "
            "first step's update:data ratio, the size of each entry's change ÷ the standard deviation "
            f"the entries were drawn with, is at most the rule of thumb {FIRST_STEP_RATIO:g}?"
        ),
        kind="number",
        digits=None,
        keys=_KEYS["first_step_warmup"],
        hint=(
            "write the first step's change of an entry, η·(1/W), divide it by the standard deviation of "
            f"the entries, and solve ratio ≤ {FIRST_STEP_RATIO:g} for the whole number W."
        ),
        mistakes=(
            Mistake(
                "that makes the change of an entry equal to the rule of thumb; the ratio divides the change "
                "by the size of the entries, and they are smaller than 1.",
                _MISTAKES["first_step_warmup"][0],
            ),
            Mistake(
                "that divides by the variance 2/(fan_in + fan_out); the ratio compares two sizes in the "
                "same units: divide by the standard deviation, its square root.",
                _MISTAKES["first_step_warmup"][1],
            ),
            Mistake(
                "that is He's standard deviation √(2/fan_in); the chapter's weights are Xavier-normal, "
                "√(2/(fan_in + fan_out)).",
                _MISTAKES["first_step_warmup"][2],
            ),
            Mistake(
                "with that W the ratio is still slightly above the rule of thumb: the smallest whole W "
                "that reaches it rounds up.",
                _MISTAKES["first_step_warmup"][3],
            ),
            Mistake(
                "that is the first step without Adam's bias correction, (1 − β1)/√(1 − β2) ≈ 3.16 learning "
                "rates (the normalization chapter's exercise on Adam without its bias correction); "
                "torch.optim.Adam corrects the bias, so the first step is one learning rate.",
                _MISTAKES["first_step_warmup"][4],
            ),
        ),
    )
)

register(
    Exercise(
        id="transformers.rescue_post_ln",
        title="Rescue Post-LN with warmup",
        prompt=(
            f"Without warmup, the chapter's Post-LN transformer trained with Adam at lr {PEAK_LR:g} never "
            "leaves chance. Choose a linear warmup length W (in steps, between 0 and the run's "
            f"{WARMUP_LIMIT} steps) with which the same run trains: a final validation accuracy of at "
            f"least {TRAINED_ACCURACY:.0%}, the chapter's line between training and failing. The checker "
            "trains the chapter's model (seed 0) with your W, which takes a few seconds; the slider lets "
            "you try lengths."
        ),
        kind="setting",
        measure=warmup_accuracy,
        accept=(TRAINED_ACCURACY, 1.0),
        hint=(
            "the first steps at the full learning rate are what breaks Post-LN; spread the climb to the "
            "peak over more steps."
        ),
        mistakes=(
            Mistake(
                f"the run is still at chance (1/{SORT_VOCAB} of the positions right): the first steps came "
                "at nearly the full learning rate and Post-LN collapsed as it does without warmup. Warm up "
                "much longer.",
                applies=lambda m: m < 0.09,
            ),
            Mistake(
                "the run leaves chance but learns too little in the steps it has: the warmup was long "
                "enough to avoid the collapse only partly. Warm up longer.",
                applies=lambda m: 0.09 <= m < 0.35,
            ),
            Mistake(
                "close: the run trains, but not yet well enough by the end. A somewhat longer warmup "
                "protects the early steps better.",
                applies=lambda m: 0.35 <= m < TRAINED_ACCURACY,
            ),
        ),
        control={"min": 0, "max": WARMUP_LIMIT, "step": 5, "label": "warmup steps W"},
    )
)
