"""The ``mpcai`` command: ``mpcai demo ...`` and ``mpcai bench ...``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpcai", description="Secure multiparty computation for decentralised AI."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a multi-party demo (default: hospitals)")
    demo_sub = demo.add_subparsers(dest="demo", metavar="DEMO")
    hosp = demo_sub.add_parser(
        "hospitals", help="three hospitals add up private patient counts by secret sharing"
    )
    hosp.add_argument("--hospitals", type=int, default=3, help="number of hospitals (>= 3)")
    hosp.add_argument("--threshold", type=int, default=2,
                      help="Shamir threshold: hospitals needed to recover the total")

    bench = sub.add_parser("bench", help="benchmarks against peers (ratios in one run)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="SUITE", required=True)
    prim = bench_sub.add_parser("primitives", help="C core: PRG, uint64 GEMM, Shamir")
    prim.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    prim.add_argument("--reps", type=int, default=7, help="repetitions per measurement (median)")
    prim.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    prim.add_argument("--only", action="append", choices=["prg", "gemm", "shamir"],
                      help="run only this suite (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpcai`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from mpcai import _demo

        if args.demo in (None, "hospitals"):
            return _demo.hospitals(
                n_hospitals=getattr(args, "hospitals", 3), threshold=getattr(args, "threshold", 2)
            )
    if args.command == "bench" and args.bench == "primitives":
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        from mpcai.benchmarks import primitives

        return primitives.main(reps=args.reps, quick=args.quick, json_path=args.json,
                               only=args.only)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
