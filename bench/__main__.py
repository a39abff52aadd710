"""`python -m bench [NAME ...]`: run benchmarks (all by default) and write their sections of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module in bench/ with a `main(argv) -> int`; each writes its own section.
BENCHMARKS = {"core": "bench.core", "reliability": "bench.reliability", "faces": "bench.faces",
              "style": "bench.style", "duplicates": "bench.duplicates",
              "duplicates-scale": "bench.duplicates_scale", "speed": "bench.speed",
              "ray": "bench.ray", "filters": "bench.filters", "people": "bench.people",
              "faces-verify": "bench.faces_verify", "faces-crowd": "bench.faces_crowd",
              "startup": "bench.startup", "scale": "bench.scale"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args, rest = parser.parse_known_args(argv)
    status = 0
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name}", flush=True)
        status |= module.main([*rest, *(["--quick"] if args.quick else [])])
    return status


if __name__ == "__main__":
    sys.exit(main())
