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

    demo = sub.add_parser("demo", help="run a multi-party demo (default: secure aggregation)")
    demo_sub = demo.add_subparsers(dest="demo", metavar="DEMO")
    sec = demo_sub.add_parser(
        "secagg", help="secure aggregation: server + clients as processes over TLS")
    sec.add_argument("--clients", type=int, default=20, help="number of clients")
    sec.add_argument("--dim", type=int, default=100_000, help="parameters per model update")
    sec.add_argument("--dropout", type=float, default=0.1,
                     help="fraction of clients killed (SIGKILL) once the server has "
                          "finished share_keys")
    sec.add_argument("--threshold", type=int, default=None,
                     help="Shamir threshold t (default: chosen with the graph degree for "
                          "P[round fails] <= 2^-20 and P[privacy lost] <= 2^-40)")
    hosp = demo_sub.add_parser(
        "hospitals", help="three hospitals add up private patient counts by secret sharing"
    )
    hosp.add_argument("--hospitals", type=int, default=3, help="number of hospitals (>= 3)")
    hosp.add_argument("--threshold", type=int, default=2,
                      help="Shamir threshold: hospitals needed to recover the total")

    party = sub.add_parser("party", help="run one party of a deployment (TCP + mutual TLS)")
    party.add_argument("--config", required=True, metavar="FILE", help="deployment config (JSON)")
    party.add_argument("--id", required=True, type=int, help="this party's id")
    party.add_argument("--announce", action="store_true",
                       help="bind port 0, print 'MPCAI-LISTENING <port>', read the address "
                            "book from stdin (used by the launcher)")
    party.add_argument("--args", metavar="FILE", help="positional arguments (wire-encoded list)")
    party.add_argument("--result", metavar="FILE",
                       help="write the result and statistics here (wire-encoded)")
    party.add_argument("--path", action="append", default=[], metavar="DIR",
                       help="append DIR to sys.path (after site-packages) to find the function")

    certs = sub.add_parser("certs", help="create a CA and per-party TLS certificates")
    certs.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    certs.add_argument("--parties", required=True, type=int, metavar="N",
                       help="certificates for parties 0..N-1")

    bench = sub.add_parser("bench", help="benchmarks against peers (ratios in one run)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="SUITE", required=True)
    prim = bench_sub.add_parser("primitives", help="C core: PRG, uint64 GEMM, Shamir")
    prim.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    prim.add_argument("--reps", type=int, default=7, help="repetitions per measurement (median)")
    prim.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    prim.add_argument("--only", action="append", choices=["prg", "gemm", "shamir"],
                      help="run only this suite (repeatable)")
    he = bench_sub.add_parser("he", help="Paillier vs phe, CKKS vs raw TenSEAL")
    he.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    he.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    he.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    he.add_argument("--only", action="append", choices=["paillier", "ckks"],
                    help="run only this suite (repeatable)")
    sg = bench_sub.add_parser("secagg", help="secure aggregation vs Flower's SecAgg+")
    sg.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    sg.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    sg.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    rt = bench_sub.add_parser("runtime", help="party runtime: TCP+TLS throughput, in-memory")
    rt.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    rt.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    rt.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
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

        if args.demo == "hospitals":
            return _demo.hospitals(n_hospitals=args.hospitals, threshold=args.threshold)
        return _demo.secagg(n_clients=getattr(args, "clients", 20),
                            dim=getattr(args, "dim", 100_000),
                            dropout=getattr(args, "dropout", 0.1),
                            threshold=getattr(args, "threshold", None))
    if args.command == "party":
        from mpcai.runtime import launcher

        return launcher.main_party(args.config, args.id, announce=args.announce,
                                   args_path=args.args, result_path=args.result,
                                   extra_path=args.path)
    if args.command == "certs":
        from mpcai.runtime import certs as certs_mod

        if args.parties < 1:
            parser.error("--parties must be >= 1")
        written = certs_mod.write_party_certs(args.out, range(args.parties))
        print(f"wrote a CA and certificates for parties 0..{args.parties - 1} to {args.out}")
        for name in sorted(written):
            print(f"  {written[name]}")
        return 0
    if args.command == "bench":
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        if args.bench == "primitives":
            from mpcai.benchmarks import primitives

            return primitives.main(reps=args.reps, quick=args.quick, json_path=args.json,
                                   only=args.only)
        if args.bench == "he":
            from mpcai.benchmarks import he

            return he.main(reps=args.reps, quick=args.quick, json_path=args.json,
                           only=args.only)
        if args.bench == "secagg":
            from mpcai.benchmarks import secagg

            return secagg.main(reps=args.reps, quick=args.quick, json_path=args.json)
        if args.bench == "runtime":
            from mpcai.benchmarks import runtime

            return runtime.main(reps=args.reps, quick=args.quick, json_path=args.json)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
