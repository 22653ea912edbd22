"""Entry point of the reference DRIMbox process: python -m simulators.drimbox --config FILE."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.drimbox", description="drimcheck reference DRIMbox")
    parser.add_argument("--config", required=True, type=Path, help="JSON configuration written by drimcheck/reference.py")
    args = parser.parse_args()
    os.environ.setdefault("TCP_NODELAY", "1")  # dcmtk peers stall ~45 ms per DICOM message without it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    from simulators.drimbox.service import DrimboxConfig, serve

    try:
        config = DrimboxConfig.from_file(args.config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"drimbox: bad configuration {args.config}: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
