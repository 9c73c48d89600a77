"""`refine-perception params`: write config/<node>.yaml from the nodes' declared parameters.

Each default lives in the code (a node's `Param` list, output-shaping ones read from the pipeline's settings
dataclass); the params files are generated from it, header and comments included, so they cannot drift.
`write` rewrites the files that are out of date, `check` only names them (exit status 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refine_perception.cli import CliError

SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config"  # the source tree's, where the files are kept


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="write config/<node>.yaml from the nodes' declared parameters",
                       description=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("write", "check"), help="write: update the files; check: list stale ones")
    p.add_argument("--config", type=Path, default=SOURCE_CONFIG, help=f"the params folder (default {SOURCE_CONFIG})")
    p.set_defaults(func=run_params)


def params_files() -> dict[str, str]:
    """Each node's params file (its name in config/) and the text its parameters give it. Imports the node
    classes, so rclpy and the libraries of the models."""
    from refine_perception.graphs import GRAPHS
    from refine_perception.ros.graph_runner import node_class
    from refine_perception.ros.params import params_file_text

    files: dict[str, str] = {}
    for spec in (node for graph in GRAPHS.values() for node in graph.nodes):
        cls = node_class(spec.executable)
        summary = (sys.modules[cls.__module__].__doc__ or "").split("\n\n")[0]  # the module's first paragraph
        text = params_file_text(spec.name, " ".join(summary.split()), cls.declared_params())
        if files.setdefault(spec.params_file, text) != text:
            raise ValueError(f"config/{spec.params_file} is named by two different nodes")
    return files


def run_params(args: argparse.Namespace) -> int:
    if not args.config.is_dir():
        raise CliError(f"{args.config} is not a folder (pass --config)")
    stale = {name: text for name, text in params_files().items()
             if not (args.config / name).is_file() or (args.config / name).read_text() != text}
    for name, text in stale.items():
        if args.action == "write":
            (args.config / name).write_text(text)
        print(f"{'wrote' if args.action == 'write' else 'out of date:'} {args.config / name}")
    return 1 if stale and args.action == "check" else 0
