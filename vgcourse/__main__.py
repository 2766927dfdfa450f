"""``python -m vgcourse`` runs the command line."""

import sys

from vgcourse.cli import main

sys.exit(main())
