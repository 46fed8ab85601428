"""``mpcai party``: run one party of a deployment in this process.

The config format, the address book of a launched party and the result file
are described in :mod:`mpcai.runtime.launcher`; a ``[protocol]`` table is
resolved here (:mod:`mpcai.cli._deploy`), so the runtime never imports a
protocol.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime import wire
from mpcai.runtime.launcher import run_party
from mpcai.validation import read_file

from . import _deploy

__all__ = ["main_party"]


def main_party(config_path: str, party_id: int, *, announce: bool, args_path: str | None,
               result_path: str | None, extra_path: Sequence[str] = (),
               debug: bool = False, round_: int | None = None) -> int:
    """``mpcai party``: run one party; print its result and statistics.

    With ``round_`` (``--round R``), the party runs round R of the deployment:
    its session id is :func:`mpcai.cli._deploy.round_session` of the
    config's ``session`` and R (every party derives the same one; rounds never
    share one), and ``{round}`` in its ``[io]`` file names becomes R.  A round
    number must never be reused with the same config ``session``: once its inputs
    are checked, the party records R next to the config
    (:func:`mpcai.cli._deploy.claim_round`) and refuses a round it has recorded.

    With ``result_path``, the result and statistics are written there (wire
    codec, atomically).  If the party raises, the exception's type and
    message are written there instead (so the launcher can report it as a
    typed failure), and the exit code is 2 for bad input (``InvalidInput``,
    ``InvalidType``: the config, its inputs, the party id), else 1.  Its traceback goes to stderr
    with ``debug`` or ``announce`` (a launched party: its log is the
    launcher's report); otherwise stderr gets one line, ``mpcai: error:
    party <id>: <type>: <message>``, and a hint naming ``--debug``.
    """
    sys.path.extend(extra_path)
    if result_path and os.path.isdir(result_path):  # before the round: nothing to lose
        print(f"mpcai: error: party {party_id}: the result path {result_path} is a directory",
              file=sys.stderr)
        return 2
    try:
        config = _deploy.load_config(config_path)
        raw_session = config.session
        if round_ is not None:
            config = dataclasses.replace(
                config, session=_deploy.round_session(config.session, round_))
        args: list[Any] = []
        io: dict[str, Any] = {}
        if args_path:
            args = wire.decode_payload(read_file(
                args_path, "args file", wire.DEFAULT_LIMITS.max_payload_bytes))
        elif config.protocol_table is not None:
            if party_id not in config.parties:
                raise InvalidInput(f"party {party_id} is not in the config")
            assert config.base is not None
            io = _deploy.round_io(config.io.get(party_id, {}), party_id, round_)
            args = _deploy.party_args(config.protocol_table, io, party_id, config.base)
        if round_ is not None:  # inputs checked: now the round number is used up
            if party_id not in config.parties:
                raise InvalidInput(f"party {party_id} is not in the config")
            assert config.base is not None
            _deploy.claim_round(config.base, raw_session, party_id, round_)
        result, stats = trio.run(lambda: run_party(config, party_id, args, announce=announce))
        summary = None
        if config.protocol_table is not None and not args_path:
            assert config.base is not None
            summary = _deploy.write_output(config.protocol_table, result, io, party_id,
                                           config.base)
            if round_ is not None:
                summary = f"round {round_}: {summary}"
    except Exception as exc:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1 \
                and isinstance(exc.exceptions[0], Exception):
            exc = exc.exceptions[0]
        if debug or announce:
            traceback.print_exception(exc, file=sys.stderr)
        else:
            first = (str(exc).strip().splitlines() or [""])[0]
            print(f"mpcai: error: party {party_id}: {type(exc).__name__}: {first}\n"
                  "mpcai: hint: --debug shows the traceback", file=sys.stderr)
        if result_path:
            kind = type(exc)
            _write_atomic(result_path, {"error": {"type": f"{kind.__module__}.{kind.__qualname__}",
                                                  "message": str(exc)[:2000]}})
        # bad input (the config, its inputs, the party id) is 2, as for the other commands
        return 2 if isinstance(exc, (InvalidInput, InvalidType)) else 1
    if result_path:
        _write_atomic(result_path, {"result": result, "stats": stats.as_dict()})
    print(f"party {party_id}: {stats}", file=sys.stderr)
    if summary is not None:
        print(f"party {party_id}: {summary}")
    elif not result_path:
        print(repr(result))
    return 0



def _write_atomic(path: str, record: dict[str, Any]) -> None:
    tmp = Path(f"{path}.part")
    tmp.write_bytes(wire.encode_payload(record))
    os.replace(tmp, path)
