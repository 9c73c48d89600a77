"""Run a command with cpuid masked to an AVX2-only CPU, or (--check) compare what libraries see.

    ./dev run python -m benchmarks.cpuid_mask --check
    ./dev run python -m benchmarks.cpuid_mask [--no-glibc] [--] COMMAND [ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.cpuid_mask import library_path, masked_env, unsupported_reason
from benchmarks.cpuid_mask.probe import PROBES


def check(only: str) -> int:
    command = [sys.executable, "-m", "benchmarks.cpuid_mask.probe", "--only", only]
    columns = {}
    for label, env in (("real CPU", dict(os.environ)), ("masked (AVX2 only)", masked_env())):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            print(f"{label}: probe failed with status {result.returncode}\n{result.stderr}", file=sys.stderr)
            return 1
        columns[label] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"library: {library_path()}")
    keys = list(dict.fromkeys(k for column in columns.values() for k in column))
    for key in keys:
        print(key)
        for label, column in columns.items():
            print(f"  {label:19s} {column.get(key, '-')}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print what the libraries see with and without the mask")
    parser.add_argument("--only", default=",".join(PROBES), help=f"with --check: comma-separated subset of {','.join(PROBES)}")
    parser.add_argument("--no-glibc", action="store_true",
                        help="leave GLIBC_TUNABLES alone (glibc keeps its AVX-512 string functions)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    reason = unsupported_reason()
    if reason:
        print(f"cpuid_mask: {reason}", file=sys.stderr)
        return 2
    if args.check:
        return check(args.only)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run, or --check")
    os.execvpe(command[0], command, masked_env(glibc=not args.no_glibc))


if __name__ == "__main__":
    sys.exit(main())
