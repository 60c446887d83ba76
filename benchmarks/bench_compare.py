"""A before/after Markdown table from two `rnnkit bench --json` files (see rnnkit.training.bench_compare).

    rnnkit bench --json before.json            # on the old code
    rnnkit bench --json after.json             # on the new code (same flags)
    python benchmarks/bench_compare.py before.json after.json [--names v0.2,now]
"""

import argparse
import sys

from rnnkit.errors import RnnkitError
from rnnkit.training.bench_compare import compare, load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--names", default="before,after", help="the two columns' names, comma-separated")
    args = parser.parse_args(argv)
    names = tuple(args.names.split(","))
    if len(names) != 2:
        parser.error(f"--names takes two comma-separated names, got {args.names!r}")
    try:
        print(compare(load(args.before), load(args.after), names))
    except RnnkitError as e:
        print(f"bench_compare: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
