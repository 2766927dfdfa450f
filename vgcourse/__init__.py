"""vgcourse: the companion package of the course on vanishing and exploding gradients."""

from vgcourse.device import pick_device
from vgcourse.seeding import seed_everything

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "pick_device",
    "seed_everything",
]
