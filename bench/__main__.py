"""Run one benchmark, or all of them each in its own process: `python -m bench NAME [--quick] [...]`."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

# name -> module under bench/ exposing `add_arguments(parser)` and `run(args)`.
BENCHMARKS = {
    "import": "bench.import_csv",
    "simulate": "bench.simulate",
    "events": "bench.events",
    "broadcast": "bench.broadcast",
    "sequence": "bench.sequence",
    "smtp": "bench.smtp",
    "api": "bench.api",
    "cleanup": "bench.cleanup",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "all":
        return _run_all(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*sorted(BENCHMARKS), "all"])
    parser.add_argument("--quick", action="store_true", help="a small size, for a CI smoke run")
    name = argv[0] if argv and not argv[0].startswith("-") else None
    module = importlib.import_module(BENCHMARKS[name]) if name in BENCHMARKS else None
    if module is not None:
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    assert module is not None
    module.run(args)
    return 0


def _run_all(rest: list[str]) -> int:
    """Each benchmark in a process of its own, so peak memory figures do not mix."""
    failed = []
    for name in BENCHMARKS:
        print(f"== bench {name}", flush=True)
        code = subprocess.call([sys.executable, "-m", "bench", name, *rest])
        if code != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
