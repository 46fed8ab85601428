"""The ``mpcai`` command: ``mpcai demo ...`` and ``mpcai bench ...``.

An error a person can fix (a typed :class:`~mpcai.errors.MpcaiError`, an
``OSError`` such as a missing or unreadable file) is printed as one line,
``mpcai: error: <what is wrong>``, plus ``mpcai: hint: <what to do>`` where
there is one, and the exit status is 2 for bad input (``InvalidInput``,
``InvalidType``, as for argparse's usage errors) or 1 for a failed run;
Ctrl-C exits with 130.  A missing optional dependency (scikit-learn for the
inference demo, Flower for ``bench flower``, ...) is one line too, naming the extra
to install, exit status 1.  ``--debug`` (or ``-v``, anywhere on the command line)
lets the exception propagate with its traceback instead.  Other exceptions
(bugs) always propagate.

``-v`` / ``--verbose`` also sends the ``mpcai`` loggers' records to stderr: INFO
and above (peers dropped or refused, each secure-aggregation stage with its
counts, dropped and misbehaving clients), ``-vv`` DEBUG as well.  Only the
``mpcai`` logger gets a handler, for the duration of the command; the root
logger is left alone.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["main"]

_DEBUG_HELP = "show the full traceback of an error instead of one line"
_VERBOSE_HELP = ("log what mpcai does to stderr (INFO; -vv: DEBUG); also shows the "
                 "traceback of an error")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: ``mpcai certs --parties``: at most this many (one CA-signed key pair each, ~1 ms)
_MAX_CERT_PARTIES = 100_000


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpcai", description="Secure multiparty computation for decentralised AI."
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    # ``--debug``/``-v`` after a subcommand too (SUPPRESS: absent there, the top level's
    # value stays; given there, it replaces it)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help=_DEBUG_HELP)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", parents=[common],
                          help="run a multi-party demo (default: secure aggregation)")
    demo_sub = demo.add_subparsers(dest="demo", metavar="DEMO")
    sec = demo_sub.add_parser("secagg", parents=[common],
                              help="secure aggregation: server + clients as processes over TLS")
    sec.add_argument("--clients", type=int, default=20, help="number of clients")
    sec.add_argument("--dim", type=int, default=100_000, help="parameters per model update")
    sec.add_argument("--dropout", type=float, default=0.1,
                     help="fraction of clients killed (SIGKILL) once the server has "
                          "finished share_keys")
    sec.add_argument("--threshold", type=int, default=None,
                     help="Shamir threshold t (default: chosen with the graph degree for "
                          "P[round fails] <= 2^-20 and P[privacy lost] <= 2^-40)")
    hosp = demo_sub.add_parser(
        "hospitals", parents=[common],
        help="three hospitals add up private patient counts by secret sharing")
    hosp.add_argument("--hospitals", type=int, default=3, help="number of hospitals (>= 3)")
    hosp.add_argument("--threshold", type=int, default=2,
                      help="Shamir threshold: hospitals needed to recover the total")

    infer = demo_sub.add_parser(
        "inference", parents=[common],
        help="private inference on digits: compute parties and a dealer as processes over TLS")
    infer.add_argument("--parties", type=int, default=2, choices=(2, 3),
                       help="compute parties (2: with a dealer)")
    infer.add_argument("--batch", type=int, default=360, help="test images (1..360)")
    infer.add_argument("--he", action="store_true",
                       help="CKKS instead: a client (party 0) and a server (party 1), no third "
                            "party; a square-activation MLP 64-32-10 at N = 8192")
    infer.add_argument("--provider", default=None, choices=("dealer", "dealerless"),
                       help="2 parties: correlations from a dealer (party 2) or made by "
                            "the two parties alone (oblivious transfer)")

    party = sub.add_parser("party", parents=[common],
                           help="run one party of a deployment (TCP + mutual TLS)")
    party.add_argument("--config", required=True, metavar="FILE",
                       help="deployment config (TOML if FILE ends in .toml, else JSON)")
    party.add_argument("--id", required=True, type=int, help="this party's id")
    party.add_argument("--announce", action="store_true",
                       help="bind port 0, print 'MPCAI-LISTENING <port>', read the address "
                            "book from stdin (used by the launcher)")
    party.add_argument("--args", metavar="FILE", help="positional arguments (wire-encoded list)")
    party.add_argument("--result", metavar="FILE",
                       help="write the result and statistics here (wire-encoded)")
    party.add_argument("--round", type=int, default=None, metavar="R",
                       help="run round R (>= 0) of a multi-round deployment: the session id "
                            "is derived from the config's session and R, and {round} in the "
                            "[io] file names becomes R; never reuse R with the same session")
    party.add_argument("--path", action="append", default=[], metavar="DIR",
                       help="append DIR to sys.path (after site-packages) to find the function")

    certs = sub.add_parser("certs", parents=[common],
                           help="create a CA and per-party TLS certificates")
    certs.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    certs.add_argument("--parties", required=True, type=int, metavar="N",
                       help="certificates for parties 0..N-1")
    certs.add_argument("--force", action="store_true",
                       help="overwrite existing files (a new CA: every party needs the new "
                            "files)")

    from mpcai.cli import _audit

    _audit.add_parser(sub, common)

    bench = sub.add_parser("bench", parents=[common],
                           help="benchmarks against peers (ratios in one run)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="SUITE", required=True)
    prim = bench_sub.add_parser("primitives", parents=[common],
                                help="C core: PRG, uint64 GEMM, Shamir, quantisation")
    prim.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    prim.add_argument("--reps", type=int, default=7, help="repetitions per measurement (median)")
    prim.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    prim.add_argument("--only", action="append",
                      choices=["prg", "gemm", "shamir", "quantize"],
                      help="run only this suite (repeatable)")
    he = bench_sub.add_parser("he", parents=[common], help="Paillier vs phe, CKKS vs raw TenSEAL")
    he.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    he.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    he.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    he.add_argument("--only", action="append", choices=["paillier", "ckks"],
                    help="run only this suite (repeatable)")
    hp = bench_sub.add_parser("he-protocols", parents=[common],
                              help="CKKS inference vs TenSEAL tutorials, threshold-Paillier "
                                   "aggregation vs phe and masking, committee CKKS")
    hp.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    hp.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    hp.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    hp.add_argument("--only", action="append",
                    choices=["inference", "aggregation", "committee-ckks"],
                    help="run only this suite (repeatable)")
    sg = bench_sub.add_parser("secagg", parents=[common],
                              help="secure aggregation vs Flower's SecAgg+")
    sg.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    sg.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    sg.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    fl = bench_sub.add_parser("flower", parents=[common],
                              help="secure aggregation inside Flower vs Flower's SecAgg+")
    fl.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    fl.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    fl.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    fl.add_argument("--engine", action="append", choices=["grid", "simulation"],
                    help="only this Flower engine (repeatable; default both)")
    inf = bench_sub.add_parser("inference", parents=[common],
                               help="private inference of a digits MLP (2PC with a dealer)")
    inf.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    inf.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median)")
    inf.add_argument("--quick", action="store_true", help="small sizes, no peers (smoke test)")
    inf.add_argument("--peers", default=None,
                     help="comma-separated peers to run beside ours (spu-semi2k, spu-aby3, "
                          "crypten, mpyc; 'none'); default: all (none with --quick). Each "
                          "gets its own virtual environment under ~/.cache/mpcai/peers, made "
                          "on first use ($MPCAI_PEER_VENVS to move it)")
    rt = bench_sub.add_parser("runtime", parents=[common],
                              help="party runtime: TCP+TLS throughput, in-memory")
    rt.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    rt.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    rt.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ab = bench_sub.add_parser("audit", parents=[common],
                              help="audit transcripts: overhead on a secure-aggregation round, "
                                   "sizes")
    ab.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    ab.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    ab.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    rb = bench_sub.add_parser("robust", parents=[common],
                              help="norm-bounded two-server aggregation vs plain secure "
                                   "aggregation and a Prio3 cost model")
    rb.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    rb.add_argument("--reps", type=int, default=1, help="repetitions per measurement (median)")
    rb.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    dpb = bench_sub.add_parser("dp", parents=[common],
                               help="distributed DP in secure aggregation: cost against the "
                                    "same round without DP, the noise sampler")
    dpb.add_argument("--json", metavar="FILE", help="write one JSON record per measurement")
    dpb.add_argument("--reps", type=int, default=1, help="repetitions per measurement (median)")
    dpb.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    return parser


def _hint(exc: BaseException, args: argparse.Namespace) -> str | None:
    """What to do about ``exc``, in one line, where there is something to say."""
    from mpcai import errors
    from mpcai.errors import LaunchError

    command = " ".join(str(getattr(args, k)) for k in ("command", "demo", "bench")
                       if getattr(args, k, None))
    if isinstance(exc, LaunchError):
        return "every party's log follows the error with --debug"
    if isinstance(exc, (errors.InvalidInput, errors.InvalidType)):
        return f"see 'mpcai {command} --help'" if command else "see 'mpcai --help'"
    if isinstance(exc, errors.PeerError):
        return "check that every party is running and reachable at its configured address"
    if isinstance(exc, errors.UnsupportedVersion):
        return "install a version within the range pyproject.toml names"
    if isinstance(exc, errors.WouldOverwrite):
        return "pass --force to overwrite them, or choose another --out directory"
    if isinstance(exc, FileNotFoundError):
        return "check the path"
    if isinstance(exc, PermissionError):
        return "check the file's permissions"
    return None


def _report(exc: BaseException, args: argparse.Namespace) -> int:
    """Print ``exc`` as one line (and a hint); the exit status: 2 for bad input, else 1."""
    from mpcai import errors

    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    more = f" ({len(lines) - 1} more lines with --debug)" if len(lines) > 1 else ""
    print(f"mpcai: error: {lines[0]}{more}", file=sys.stderr)
    hint = _hint(exc, args)
    if hint:
        print(f"mpcai: hint: {hint}", file=sys.stderr)
    return 2 if isinstance(exc, (errors.InvalidInput, errors.InvalidType)) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpcai`` console script: runs the command and returns its
    exit status.  Typed errors, ``OSError`` and Ctrl-C are reported in one line (see
    the module docstring) unless ``--debug`` is given, which re-raises them."""
    from mpcai.errors import MpcaiError

    parser = _build_parser()
    args = parser.parse_args(argv)
    args.debug = args.debug or args.verbose > 0
    logged = _start_logging(args.verbose)
    try:
        return _run(parser, args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("mpcai: interrupted", file=sys.stderr)
        return 130
    except (MpcaiError, OSError) as exc:
        if args.debug:
            raise
        return _report(exc, args)
    except ImportError as exc:
        extra = _missing_extra(exc)
        if extra is None or args.debug:
            raise
        module, name = extra
        print(f"mpcai: error: this command needs {module}, which is not installed",
              file=sys.stderr)
        print(f"mpcai: hint: pip install 'mpcai[{name}]' (from a clone of mpcai: "
              f"pip install '.[{name}]')", file=sys.stderr)
        return 1
    finally:
        if logged is not None:
            _stop_logging(*logged)


def _check_output_file(path: str) -> None:
    """Refuse an output file the command could not write at its end (a directory, a
    missing or read-only parent directory): :class:`~mpcai.errors.InvalidInput`."""
    import os
    from pathlib import Path

    from mpcai.errors import InvalidInput

    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InvalidInput(f"--json {path}: is a directory, not a file")
    if not parent.is_dir():
        raise InvalidInput(f"--json {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InvalidInput(f"--json {path}: not writable")


#: optional dependencies the commands import on use -> (what to call it, mpcai's extra)
_EXTRAS = {"sklearn": ("scikit-learn", "examples"), "flwr": ("Flower (flwr)", "flower"),
           "ray": ("Flower's simulation engine (ray)", "flower"),
           "torch": ("PyTorch", "torch"), "dp_accounting": ("dp-accounting", "dp"),
           "matplotlib": ("matplotlib", "plot")}


def _missing_extra(exc: BaseException) -> tuple[str, str] | None:
    """``(module, extra)`` if ``exc`` (or what caused it) is a missing optional
    dependency of :data:`_EXTRAS`, else None (a bug, shown with its traceback)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.split(".")[0]
            if top in _EXTRAS:
                return _EXTRAS[top]
        seen = seen.__cause__
    return None


def _start_logging(verbose: int) -> tuple[logging.Handler, int] | None:
    """With ``verbose`` >= 1, a stderr handler on the ``mpcai`` logger at INFO
    (>= 2: DEBUG); the root logger is not touched.  Returns the handler and the
    logger's previous level (for :func:`_stop_logging`), or None without ``verbose``."""
    if verbose < 1:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    top = logging.getLogger("mpcai")
    previous = top.level
    top.addHandler(handler)
    top.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    return handler, previous


def _stop_logging(handler: logging.Handler, previous: int) -> None:
    """Undo :func:`_start_logging`."""
    top = logging.getLogger("mpcai")
    top.removeHandler(handler)
    top.setLevel(previous)
    handler.close()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from mpcai.cli import _demo

        if args.demo == "inference":
            if args.he and (args.provider is not None or args.parties != 2):
                parser.error("--he runs a client and a server alone: no --parties or "
                             "--provider with it")
            if args.parties == 3 and args.provider is not None:
                parser.error("--parties 3 uses replicated sharing (no dealer, no OT): no "
                             "--provider with it")
            if args.he:
                return _demo.inference_he(batch=args.batch, debug=args.debug)
            return _demo.inference(parties=args.parties, batch=args.batch,
                                   provider=args.provider or "dealer", debug=args.debug)
        if args.demo == "hospitals":
            return _demo.hospitals(n_hospitals=args.hospitals, threshold=args.threshold)
        return _demo.secagg(n_clients=getattr(args, "clients", 20),
                            dim=getattr(args, "dim", 100_000),
                            dropout=getattr(args, "dropout", 0.1),
                            threshold=getattr(args, "threshold", None), debug=args.debug)
    if args.command == "party":
        from mpcai.cli._party import main_party

        return main_party(args.config, args.id, announce=args.announce,
                          args_path=args.args, result_path=args.result,
                          extra_path=args.path, debug=args.debug, round_=args.round)
    if args.command == "audit":
        from mpcai.cli import _audit

        return _audit.run(args)
    if args.command == "certs":
        from mpcai.runtime import certs as certs_mod

        if not 1 <= args.parties <= _MAX_CERT_PARTIES:  # each a key pair, made in memory
            parser.error(f"--parties must be in 1..{_MAX_CERT_PARTIES}")
        written = certs_mod.write_party_certs(args.out, range(args.parties),
                                              overwrite=args.force)
        print(f"wrote a CA and certificates for parties 0..{args.parties - 1} to {args.out}")
        print(f"CA private key: {written['ca_key']}")
        print("  WARNING: keep it offline; never copy it to a party (it is needed only to "
              "issue more certificates)")
        print("copy to each party's machine (and nothing else):")
        for i in range(args.parties):
            ca, cert, key = written.for_party(i)
            print(f"  party {i}: {ca} {cert} {key}")
        return 0
    if args.command == "bench":
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        if args.json is not None:
            _check_output_file(args.json)  # before the run, not after it
        if args.bench == "primitives":
            from mpcai.benchmarks import primitives

            return primitives.main(reps=args.reps, quick=args.quick, json_path=args.json,
                                   only=args.only)
        if args.bench == "he":
            from mpcai.benchmarks import he

            return he.main(reps=args.reps, quick=args.quick, json_path=args.json,
                           only=args.only)
        if args.bench == "he-protocols":
            from mpcai.benchmarks import he_protocols

            return he_protocols.main(reps=args.reps, quick=args.quick, json_path=args.json,
                                     only=args.only)
        if args.bench == "secagg":
            from mpcai.benchmarks import secagg

            return secagg.main(reps=args.reps, quick=args.quick, json_path=args.json)
        if args.bench == "flower":
            from mpcai.benchmarks import flower

            return flower.main(reps=args.reps, quick=args.quick, json_path=args.json,
                               engines=args.engine)
        if args.bench == "inference":
            from mpcai.benchmarks import inference

            peers = None if args.peers is None else [
                p for p in args.peers.split(",") if p and p != "none"]
            return inference.main(reps=args.reps, quick=args.quick, json_path=args.json,
                                  peers=peers)
        if args.bench == "runtime":
            from mpcai.benchmarks import runtime

            return runtime.main(reps=args.reps, quick=args.quick, json_path=args.json)
        if args.bench == "audit":
            from mpcai.benchmarks import audit

            return audit.main(reps=args.reps, quick=args.quick, json_path=args.json)
        if args.bench == "robust":
            from mpcai.benchmarks import robust

            return robust.main(reps=args.reps, quick=args.quick, json_path=args.json)
        if args.bench == "dp":
            from mpcai.benchmarks import dp as dp_bench

            return dp_bench.main(reps=args.reps, quick=args.quick, json_path=args.json)
    parser.error("unknown command")
    return 2
