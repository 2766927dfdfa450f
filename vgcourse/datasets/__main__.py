"""``python -m vgcourse.datasets --check``: verify the data the book needs in a second, one line of output.

Exit status 0 when the shipped MNIST files are present and match their md5, 1 (with the way out) otherwise.
"""

from __future__ import annotations

import argparse
import sys

from vgcourse.data import DataUnavailableError, check_data


def main(argv: list[str] | None = None) -> int:
    """Run the check; print one line (stdout when it passes, stderr when it fails) and return the status."""
    parser = argparse.ArgumentParser(prog="python -m vgcourse.datasets", description=__doc__)
    parser.add_argument("--check", action="store_true", required=True, help="verify the shipped data files")
    parser.parse_args(argv)
    try:
        print(check_data())
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
