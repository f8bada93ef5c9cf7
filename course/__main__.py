"""The command line: ``python -m course build | check | bench | site``."""
from __future__ import annotations

import argparse
import sys

from . import __doc__ as package_doc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="write lessons/ from solutions/ and stamp badges and setup cells")
    sub.add_parser("check", help="fail if lessons/, setup cells or the README table are stale, or notebooks carry outputs")
    b = sub.add_parser("bench", help="run solution notebooks at full settings and record the numbers")
    b.add_argument("lessons", nargs="*", help="lesson numbers or names, e.g. 01 03 (default: all)")
    b.add_argument("--fast", action="store_true", help="run in fast mode (writes results-fast.json)")
    s = sub.add_parser("site", help="build the course website (_site/full/html, or _site/fast/html with --fast)")
    s.add_argument("--fast", action="store_true", help="execute the notebooks in fast mode (for CI and authors)")
    args = parser.parse_args(argv)
    if args.command == "build":
        from .build import build
        return build()
    if args.command == "check":
        from .build import check
        return check()
    if args.command == "site":
        from .site import build_site
        return build_site(fast=args.fast)
    from .bench import bench
    return bench(args.lessons, fast=args.fast)


if __name__ == "__main__":
    sys.exit(main())
