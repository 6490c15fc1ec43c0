"""Runs the benchmarks: ``python -m benchmarks [NAME ...] [--out DIR]`` (all when no name is given)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pathlib
import sys

HERE = pathlib.Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(available())})")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the result files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names or available():
        figures = importlib.import_module(f"benchmarks.bench_{name}").main(out)
        print(f"== {name}\n{json.dumps(figures, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
