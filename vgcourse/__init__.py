"""vgcourse: the companion package of the course on vanishing and exploding gradients.

Build the models the chapters study, initialize them by name, record per-layer gradient and
activation statistics while they train, and plot what was recorded. Chapter experiments live in
``vgcourse.experiments``, figures in ``vgcourse.plots``, widget explorers in ``vgcourse.explorers``.
"""

from vgcourse.activations import (
    ACTIVATIONS,
    RELU_FAMILY,
    derivative,
    make_activation,
    max_derivative,
)
from vgcourse.data import (
    DataSplit,
    DataUnavailableError,
    adding_problem,
    circles,
    digits,
    mnist,
)
from vgcourse.device import pick_device
from vgcourse.glue import glue
from vgcourse.initializers import SCHEMES, expected_weight_variance, gain, initialize
from vgcourse.models import (
    ARCHS,
    MLP,
    NORMS,
    SEQUENCE_ARCHS,
    Dense,
    ResidualBlock,
    ResidualMLP,
    SequenceModel,
    build_model,
    named_layers,
)
from vgcourse.monitor import METRICS, GradientMonitor, MonitorRecord, snapshot
from vgcourse.profiling import LayerProfile, Profile, profile
from vgcourse.training import History, TrainConfig, evaluate, train

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``vgcourse.Explorer`` on first use: importing the package does not import ipywidgets."""
    if name == "Explorer":
        from vgcourse.widgets import Explorer

        return Explorer
    raise AttributeError(f"module 'vgcourse' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "DataSplit",
    "DataUnavailableError",
    "Dense",
    "Explorer",
    "GradientMonitor",
    "History",
    "LayerProfile",
    "METRICS",
    "MLP",
    "MonitorRecord",
    "NORMS",
    "Profile",
    "RELU_FAMILY",
    "ResidualBlock",
    "ResidualMLP",
    "SCHEMES",
    "SEQUENCE_ARCHS",
    "SequenceModel",
    "TrainConfig",
    "__version__",
    "adding_problem",
    "build_model",
    "circles",
    "derivative",
    "digits",
    "evaluate",
    "expected_weight_variance",
    "gain",
    "glue",
    "initialize",
    "make_activation",
    "max_derivative",
    "mnist",
    "named_layers",
    "pick_device",
    "profile",
    "snapshot",
    "train",
]
