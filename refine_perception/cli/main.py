"""refine-perception: one command line for running graphs, data, evaluation and benchmarks.

Each subcommand lives in its own module with a `register(subparsers)` function; ROS is imported only by
the subcommands that run nodes, so data and evaluation work without it.
"""

from __future__ import annotations

import argparse
import sys

from refine_perception import __version__
from refine_perception.cli import CliError, bags, data, engines, evaluate, launch, params, replay

SUBCOMMANDS = (launch, data, evaluate, engines, bags, replay, params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refine-perception",
        description="Camera perception for ROS 2: lanes, segmentation, instances.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CliError as error:
        print(f"refine-perception {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
