"""Run parties as separate OS processes over TCP with mutual TLS.

Two entry points:

* ``mpcai party --config FILE --id I`` runs one party of a deployment (one
  process per party, on one machine or many).  The JSON config names the
  party function, the session and every party's address and certificates::

      {
        "session": "<32 hex digits>",
        "function": "my_package.module:party_fn",     # or "path/to/file.py:fn"
        "timeout": 60,
        "ca": "certs/ca.pem",
        "parties": {
          "0": {"host": "10.0.0.1", "port": 7000,
                "cert": "certs/party-0.pem", "key": "certs/party-0.key"},
          "1": {...}, "2": {...}
        }
      }

  Relative paths are relative to the config file.  ``mpcai certs`` makes
  the CA and the per-party certificates.

* :func:`launch_local` starts ``n`` such processes on localhost for you —
  fresh certificates, a fresh session, free ports (each party binds port 0
  and reports the port it got, so concurrent runs never collide) — waits
  for them, and returns their results and communication statistics.  If a
  party fails, :class:`LaunchError` carries every party's log.

Arguments and results cross the process boundary in the wire codec
(:mod:`mpcai.runtime.wire`), never pickle.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from mpcai.errors import InvalidInput, MpcaiError
from mpcai.runtime import certs, wire
from mpcai.runtime.party import DEFAULT_TIMEOUT, open_party
from mpcai.runtime.stats import CommStats

__all__ = ["LaunchError", "LaunchResult", "PartyConfig", "PartyFailed", "launch_local",
           "load_function", "run_party"]

ANNOUNCE = "MPCAI-LISTENING"
_MAX_RESULT_BYTES = 1 << 31


class LaunchError(MpcaiError, RuntimeError):
    """A launched party failed or timed out; ``logs[i]`` is party i's output."""

    def __init__(self, message: str, logs: dict[int, str]) -> None:
        shown = "\n".join(
            f"---- party {pid} ----\n{text.rstrip() or '(no output)'}" for pid, text in logs.items()
        )
        super().__init__(f"{message}\n{shown}")
        self.logs = logs


@dataclass
class PartyConfig:
    """A deployment: session, party function and every party's address and TLS files."""

    session: bytes
    function: str
    parties: dict[int, dict[str, Any]]
    ca: Path | None
    timeout: float = DEFAULT_TIMEOUT
    insecure_plaintext: bool = False

    @classmethod
    def load(cls, path: str | Path) -> PartyConfig:
        """Read and check a JSON config file."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read config {path}: {exc}") from exc
        base = path.parent
        try:
            session = bytes.fromhex(raw["session"])
            parties = {int(k): dict(v) for k, v in raw["parties"].items()}
            function = str(raw["function"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"config {path} is missing or has a bad field: {exc}") from exc
        if len(session) != wire.SESSION_ID_BYTES:
            raise InvalidInput(f"session must be {wire.SESSION_ID_BYTES} bytes of hex")
        plain = bool(raw.get("insecure_plaintext", False))
        for pid, entry in parties.items():
            if "host" not in entry or "port" not in entry:
                raise InvalidInput(f"party {pid} needs a host and a port")
            for key in ("cert", "key"):
                if key in entry:
                    entry[key] = base / entry[key]
                elif not plain:
                    raise InvalidInput(f"party {pid} needs '{key}' (or insecure_plaintext)")
        ca = base / raw["ca"] if "ca" in raw else None
        if ca is None and not plain:
            raise InvalidInput("config needs 'ca' (or insecure_plaintext)")
        return cls(session=session, function=function, parties=parties, ca=ca,
                   timeout=float(raw.get("timeout", DEFAULT_TIMEOUT)), insecure_plaintext=plain)

    def dump(self, path: str | Path) -> None:
        """Write the config as JSON (paths as given)."""
        data = {
            "session": self.session.hex(),
            "function": self.function,
            "timeout": self.timeout,
            "insecure_plaintext": self.insecure_plaintext,
            "parties": {str(k): {kk: str(vv) if isinstance(vv, Path) else vv
                                 for kk, vv in v.items()} for k, v in self.parties.items()},
        }
        if self.ca is not None:
            data["ca"] = str(self.ca)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def load_function(spec: str) -> Callable[..., Awaitable[Any]]:
    """Import ``"package.module:function"`` or ``"path/to/file.py:function"``."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"function must look like 'module:function', got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        mod_spec = importlib.util.spec_from_file_location(f"_mpcai_party_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise InvalidInput(f"cannot load {path}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise InvalidInput(f"{spec!r}: no function {attr!r} in {module_name}")
    return fn


async def run_party(
    config: PartyConfig,
    party_id: int,
    args: Sequence[Any] = (),
    *,
    announce: bool = False,
) -> tuple[Any, CommStats]:
    """Run this process's party of ``config``; returns (result, stats).

    With ``announce=True`` the party binds an ephemeral port, prints
    ``MPCAI-LISTENING <port>`` on stdout, and reads the address book
    (``{"id": port, ...}`` as one JSON line) from stdin before connecting.
    """
    from mpcai.runtime.tcp import TcpListener, TcpNetwork, TlsCredentials

    if party_id not in config.parties:
        raise InvalidInput(f"party {party_id} is not in the config")
    fn = load_function(config.function)
    me = config.parties[party_id]
    creds = None
    if not config.insecure_plaintext:
        assert config.ca is not None
        creds = TlsCredentials.from_files(config.ca, me["cert"], me["key"])
        if creds.party_id != party_id:
            raise InvalidInput(f"{me['cert']} is party {creds.party_id}'s certificate, "
                               f"not party {party_id}'s")
    addresses = {pid: (p["host"], int(p["port"])) for pid, p in config.parties.items()}
    listener = await TcpListener.bind(me["host"], 0 if announce else int(me["port"]))
    if announce:
        print(f"{ANNOUNCE} {listener.port}", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        try:
            book = {int(k): int(v) for k, v in json.loads(line).items()}
        except (ValueError, AttributeError) as exc:
            await listener.aclose()
            raise InvalidInput(f"bad address book on stdin: {line!r}") from exc
        for pid, port in book.items():
            addresses[pid] = (addresses[pid][0], port)
    try:
        network = TcpNetwork(addresses, creds, listeners={party_id: listener},
                             insecure_plaintext=config.insecure_plaintext,
                             connect_timeout=config.timeout)
    except BaseException:
        await listener.aclose()
        raise
    async with open_party(network, party_id, config.session, timeout=config.timeout) as party:
        result = await fn(party, *args)
        return result, party.stats


@dataclass(frozen=True)
class PartyFailed:
    """In :func:`launch_local` results (with ``return_failures=True``): a party that failed."""

    party_id: int
    exit_status: int | None
    log: str


class LaunchResult(list):
    """Results of :func:`launch_local` in party order, with ``stats`` and ``logs``."""

    stats: list[CommStats]
    logs: dict[int, str]

    def __init__(self, results: list[Any], stats: list[CommStats], logs: dict[int, str]):
        super().__init__(results)
        self.stats = stats
        self.logs = logs


def _stats_from_dict(d: dict[str, Any]) -> CommStats:
    return CommStats(
        bytes_sent=d["bytes_sent"], bytes_received=d["bytes_received"],
        messages_sent=d["messages_sent"], messages_received=d["messages_received"],
        rounds=d["rounds"], sent_to={int(k): v for k, v in d["sent_to"].items()},
        received_from={int(k): v for k, v in d["received_from"].items()},
    )


def launch_local(
    n: int,
    function: str,
    *,
    args_per_party: Sequence[Sequence[Any]] | None = None,
    timeout: float = 60.0,
    workdir: str | Path | None = None,
    env: dict[str, str] | None = None,
    return_failures: bool = False,
) -> LaunchResult:
    """Run ``n`` parties of ``function`` as OS processes over TCP+TLS on localhost.

    ``function`` is ``"module:fn"`` or ``"file.py:fn"``; party ``i`` calls
    ``fn(party, *args_per_party[i])``.  Arguments and results must be
    encodable by the wire codec.  Returns the results in party order with
    ``.stats`` (per-party :class:`CommStats`) and ``.logs``; raises
    :class:`LaunchError` (with every party's log) if any party fails or the
    run exceeds ``timeout`` seconds (then every process is killed).  With
    ``return_failures=True`` a failed party's result is a
    :class:`PartyFailed` instead, and the others' results are still returned.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInput(f"n must be a positive int, got {n!r}")
    if args_per_party is not None and len(args_per_party) != n:
        raise InvalidInput(f"args_per_party has {len(args_per_party)} entries for {n} parties")
    load_function(function)  # fail early, in the caller's process, on a bad spec
    tmp = tempfile.TemporaryDirectory(prefix="mpcai-launch-") if workdir is None else None
    root = Path(tmp.name if tmp is not None else workdir)  # type: ignore[arg-type]
    try:
        return _launch(root, n, function, args_per_party, timeout, env, return_failures)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _launch(root: Path, n: int, function: str, args_per_party: Sequence[Sequence[Any]] | None,
            timeout: float, env: dict[str, str] | None, return_failures: bool) -> LaunchResult:
    root.mkdir(parents=True, exist_ok=True)
    certs.write_party_certs(root / "certs", range(n))
    parties = {
        i: {"host": "127.0.0.1", "port": 0, "cert": Path("certs") / f"party-{i}.pem",
            "key": Path("certs") / f"party-{i}.key"}
        for i in range(n)
    }
    config = PartyConfig(session=secrets.token_bytes(wire.SESSION_ID_BYTES), function=function,
                         parties=parties, ca=Path("certs") / "ca.pem", timeout=timeout)
    config.dump(root / "config.json")
    procs: dict[int, subprocess.Popen[str]] = {}
    logs: dict[int, Path] = {}
    log_files: list[Any] = []
    child_env = {**os.environ, **(env or {})}
    try:
        for i in range(n):
            args = tuple(args_per_party[i]) if args_per_party is not None else ()
            (root / f"args-{i}.bin").write_bytes(wire.encode_payload(list(args)))
            logs[i] = root / f"party-{i}.log"
            log_files.append(logs[i].open("w"))
            # The child runs in the work directory, so a source checkout in the
            # caller's directory cannot shadow the installed (compiled) mpcai;
            # the caller's directory is appended to the child's sys.path, after
            # site-packages, for the party function's own module.
            procs[i] = subprocess.Popen(
                [sys.executable, "-m", "mpcai.cli", "party", "--config", str(root / "config.json"),
                 "--id", str(i), "--announce", "--args", str(root / f"args-{i}.bin"),
                 "--result", str(root / f"result-{i}.bin"), "--path", os.getcwd()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_files[-1],
                text=True, env=child_env, cwd=root,
            )
        deadline = time.monotonic() + timeout
        ports: dict[int, int] = {}
        for i, proc in procs.items():
            line = proc.stdout.readline() if proc.stdout else ""  # blocks until it binds
            if not line.startswith(ANNOUNCE):
                raise LaunchError(f"party {i} did not start", _read_logs(logs, procs))
            ports[i] = int(line.split()[1])
        book = json.dumps({str(k): v for k, v in ports.items()}) + "\n"
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write(book)
            proc.stdin.flush()
        for i, proc in procs.items():
            left = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=left)
            except subprocess.TimeoutExpired as exc:
                raise LaunchError(f"party {i} still running after {timeout:g} s",
                                  _read_logs(logs, procs)) from exc
        texts = _read_logs(logs, procs)
        failed = [i for i, p in procs.items() if p.returncode != 0]
        if failed and not return_failures:
            raise LaunchError(f"parties {failed} failed", texts)
        results: list[Any] = []
        stats: list[CommStats] = []
        for i in range(n):
            if i in failed:
                results.append(PartyFailed(i, procs[i].returncode, texts[i]))
                stats.append(CommStats())
                continue
            data = (root / f"result-{i}.bin").read_bytes()
            out = wire.decode_payload(data, wire.Limits(max_payload_bytes=_MAX_RESULT_BYTES))
            results.append(out["result"])
            stats.append(_stats_from_dict(out["stats"]))
        return LaunchResult(results, stats, texts)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        for fh in log_files:
            fh.close()


def _read_logs(logs: dict[int, Path], procs: dict[int, subprocess.Popen[str]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, path in logs.items():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        rc = procs[i].poll() if i in procs else None
        out[i] = text + (f"\n(exit status {rc})" if rc not in (None, 0) else "")
    return out


def main_party(config_path: str, party_id: int, *, announce: bool, args_path: str | None,
               result_path: str | None, extra_path: Sequence[str] = ()) -> int:
    """``mpcai party``: run one party; print its result and statistics."""
    sys.path.extend(extra_path)
    config = PartyConfig.load(config_path)
    args: list[Any] = []
    if args_path:
        args = wire.decode_payload(Path(args_path).read_bytes())
    result, stats = trio.run(lambda: run_party(config, party_id, args, announce=announce))
    if result_path:
        Path(result_path).write_bytes(
            wire.encode_payload({"result": result, "stats": stats.as_dict()}))
    print(f"party {party_id}: {stats}", file=sys.stderr)
    if not result_path:
        print(repr(result))
    return 0
