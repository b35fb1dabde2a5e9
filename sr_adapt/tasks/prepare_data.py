"""``sr-adapt-prepare-data`` / ``python scripts/prepare_data.py``: make DIV2K-style bicubic LR
folders from a folder of HR images.

    python scripts/prepare_data.py HR_DIR OUT_DIR --factors 2 4 8
writes OUT_DIR/X2/0001x2.png, OUT_DIR/X4/0001x4.png, ... (MATLAB bicubic, 8-bit PNG).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sr_adapt.data.prepare import make_lr_folders
from sr_adapt.errors import SRAdaptError


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status (2 for bad input)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hr_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        make_lr_folders(args.hr_dir, args.out_dir, args.factors, args.overwrite)
    except SRAdaptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
