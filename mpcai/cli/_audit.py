"""``mpcai audit verify TRANSCRIPT [TRANSCRIPT ...]``: check audit transcripts.

Each transcript's chain and signatures, its header, the stage sequence its
protocol allows, and the transcripts of one run against each other
(:func:`mpcai.protocols.audit.verify`).  Prints one line per transcript and
the run's summary, exit status 0; a failure is one line
``mpcai: error: <file>: entry <i>: <why>`` and exit status 1.

What a pass proves: with ``--key`` / ``--keys`` from a source the verifier
trusts, that each party signed exactly this record, and that the parties'
records agree message by message.  Without them, only that each file is
intact and the files are consistent with each other: anyone who can write
the files can put their own key in a header and re-sign every line (and a
``keys.json`` beside the transcripts is no better than the files).  With
``--session`` the transcripts must be of that run (else an old run's
transcripts, replayed whole, pass too).  A pass never proves a message's
content was honest: transcripts hold digests, not contents.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

__all__ = ["add_parser", "run"]

_PINNING = ("a signature proves who signed only against pinned keys: without --key/--keys "
            "each transcript is checked against the key in its own header, which proves the "
            "files intact and consistent, not who wrote them (anyone who can write them can "
            "replace the key and re-sign)")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``audit`` subcommand and its ``verify`` action."""
    audit = sub.add_parser("audit", parents=[common], help="verify audit transcripts")
    audit_sub = audit.add_subparsers(dest="audit", metavar="ACTION", required=True)
    ver = audit_sub.add_parser(
        "verify", parents=[common],
        help="check transcripts (files, or directories of *.jsonl): chain, signatures, "
             "stages, and that one run's parties agree",
        description="Check audit transcripts. " + _PINNING[0].upper() + _PINNING[1:] + ".")
    ver.add_argument("transcripts", nargs="+", metavar="TRANSCRIPT",
                     help="a transcript file, or a directory of them (one run)")
    ver.add_argument("--key", metavar="PUBKEY",
                     help="pin the key of a single transcript: 64 hex digits, or a file "
                          "holding them")
    ver.add_argument("--keys", metavar="FILE",
                     help='pin every party\'s key: JSON {"<party id>": "<64 hex digits>"} '
                          "(from your PKI; simulate's keys.json was written by the same run)")
    ver.add_argument("--allow-incomplete", action="store_true",
                     help="accept a transcript without its end entry (the verified prefix "
                          "of a crashed party, up to its last signed checkpoint)")
    ver.add_argument("--session", metavar="HEX",
                     help="the run's session id (hex): refuse transcripts of any other run "
                          "(an old run's transcripts, replayed, verify otherwise)")
    ver.add_argument("--max-bytes", type=int, metavar="N",
                     help="the largest transcript read (default 256 MiB; the verified entries "
                          "are kept in memory)")


def _key(text: str) -> bytes:
    from mpcai.errors import InvalidInput

    value = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        path = Path(text)
        if not path.is_file():
            raise InvalidInput("--key must be 64 hex digits or a file holding them")
        if path.stat().st_size > 4096:
            raise InvalidInput(f"--key {path}: more than 4096 bytes, not a key file")
        value = path.read_text().strip()
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise InvalidInput(f"--key {path}: the file must hold 64 hex digits")
    return bytes.fromhex(value)


def run(args: argparse.Namespace) -> int:
    """Run ``mpcai audit verify``; returns the exit status (errors propagate to main)."""
    from mpcai.errors import InvalidInput
    from mpcai.protocols.audit import verify

    key = _key(args.key) if args.key else None
    session = None
    if args.session is not None:
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2}){1,64}", args.session):
            raise InvalidInput("--session must be the session id in hex")
        session = bytes.fromhex(args.session)
    if args.max_bytes is not None and args.max_bytes < 1:
        raise InvalidInput("--max-bytes must be positive")
    report = verify(args.transcripts, keys=args.keys, key=key,
                    allow_incomplete=args.allow_incomplete, session=session,
                    max_bytes=args.max_bytes)
    for line in report.summary():
        print(line)
    if not all(log.pinned for log in report.logs):
        print(f"note: {_PINNING}")
    print("OK: every chain, signature and stage sequence verified"
          + (", and the parties' records agree" if len(report.logs) > 1 else ""))
    return 0
