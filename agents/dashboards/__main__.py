"""`python -m agents.dashboards [--check] [--out DIR]`: write the dashboards, or (--check) exit 1
when the committed JSON differs from what the code generates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.dashboards.build import DASHBOARD_DIR, drift, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    parser.add_argument("--out", type=Path, default=DASHBOARD_DIR, help="dashboard directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.out)
        if stale:
            print(
                f"dashboards out of date in {args.out}: {', '.join(stale)} "
                "(run `nox -s dashboards` and commit)",
                file=sys.stderr,
            )
            return 1
        print(f"dashboards up to date in {args.out}")
        return 0
    written = write(args.out)
    print(
        f"wrote {len(written)} dashboard(s) to {args.out}"
        + "".join(f"\n  {p.name}" for p in written)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
