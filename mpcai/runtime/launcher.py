"""Run parties as separate OS processes over TCP with mutual TLS.

Two entry points:

* ``mpcai party --config FILE --id I`` runs one party of a deployment (one
  process per party, on one machine or many).  The JSON config names the
  party function, the session and every party's address and certificates::

      {
        "session": "<32 hex digits>",
        "function": "my_package.module:party_fn",     # or "path/to/file.py:fn"
        "timeout": 60,
        "connect_timeout": 15,                          # optional (default: timeout)
        "ca": "certs/ca.pem",
        "parties": {
          "0": {"host": "10.0.0.1", "port": 7000,
                "cert": "certs/party-0.pem", "key": "certs/party-0.key"},
          "1": {...}, "2": {...}
        }
      }

  Relative paths are relative to the config file.  ``mpcai certs`` makes
  the CA and the per-party certificates.  A config named ``*.toml`` is read
  as TOML.  Instead of ``function``, a ``protocol`` table may name a
  protocol (``name = "secure_aggregation"`` and its parameters) and ``io``
  tables each party's input and output files (``.npy`` / ``.npz``): then
  ``mpcai party --config deploy.toml --id 3`` needs no Python at all (see
  ``docs/deploy.rst``).  ``--round R`` runs round R of it: a session id
  derived from ``session`` and R, ``{round}`` in the file names.

* :func:`launch_local` starts ``n`` such processes on localhost for you —
  fresh certificates, a fresh session, free ports (each party binds port 0
  and reports the port it got, so concurrent runs never collide) — waits
  for them, and returns their results and communication statistics.

**Failures are per party.**  Whatever moment a party dies at — before it
announces its port, between announcing and receiving the address book,
while connecting, or during the computation — the launcher reports it as a
typed :class:`~mpcai.errors.PartyFailed` (party id, exit status or signal,
the exception type the party reported, its stderr) and the others carry on
with it as a dropout: a party dead before the address book goes out is
marked absent in the book (its peers see
:class:`~mpcai.errors.PeerDropped` from it at once); one that dies later is
a peer that does not connect (``PeerDropped`` after ``connect_timeout``)
or whose connection closes (``PeerDropped`` at once).  Every wait is
bounded by the run's ``timeout``, and every child is reaped before
:func:`launch_local` returns.  With ``return_failures=True`` the failed
parties' places in the results hold their ``PartyFailed``; otherwise one
:class:`~mpcai.errors.LaunchError` names them all and carries every party's log.

**Logs are bounded.**  A party's stderr goes to ``party-<id>.log`` in the
work directory; the launcher reads back only its last :data:`_LOG_KEPT`
bytes (1 MiB, less the at most 64 KiB of stray stdout it kept), seeking to
them, so a party that writes gigabytes costs the launcher at most that
much memory.  A cut log starts with a line saying how many bytes were left
out and where the full file is: ``<workdir>/party-<id>.log`` if
:func:`launch_local` was given a ``workdir`` (which it never deletes);
the default temporary directory is removed when the launch returns.
Error messages quote only the last lines of a log, each cut to
``mpcai.errors._LOG_LINE_SHOWN`` characters.

Arguments and results cross the process boundary in the wire codec
(:mod:`mpcai.runtime.wire`), never pickle.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import trio

from mpcai.errors import (
    InvalidInput,
    InvalidType,
    LaunchError,
    PartyFailed,
    PeerDropped,
    PeerError,
    WireError,
)
from mpcai.runtime import certs, wire
from mpcai.runtime.network import Buffer, Link, Network
from mpcai.runtime.party import DEFAULT_TIMEOUT, open_party
from mpcai.runtime.stats import CommStats
from mpcai.validation import check_int, check_real, read_file

__all__ = ["LaunchEvent", "LaunchResult", "PartyConfig", "launch_local", "load_function",
           "run_party"]

_log = logging.getLogger(__name__)

ANNOUNCE = "MPCAI-LISTENING"
_MAX_RESULT_BYTES = 1 << 31
_MAX_CONFIG_BYTES = 16 << 20  # a config file (TOML or JSON)


_STDOUT_KEPT = 1 << 16  # bytes of a party's stray stdout kept for its log
_LOG_KEPT = 1 << 20
"""Characters of a party's log the launcher keeps (``LaunchResult.logs``,
``PartyFailed.log``, ``LaunchError.logs``): the kept stray stdout, then the
end of its stderr file (read from the end, never whole), plus at most two
short note lines (what was cut and where the full file is; how it exited)."""


def _first_failure(failures: Mapping[int, PartyFailed],
                   exited_at: Mapping[int, float]) -> int | None:
    """The failed party to name first: a party whose failure is not a
    :class:`~mpcai.errors.PeerError` (``PeerDropped``, ``PeerTimeout``,
    ``PeersMissing``: what its peers see when another party fails) — a typed
    error of its own, or a crash without one — before those that only lost a
    peer; among equals, the one whose exit the launcher saw first, then the
    lowest id."""
    import mpcai.errors

    def consequence(f: PartyFailed) -> bool:
        module, _, name = (f.error_type or "").rpartition(".")
        kind = getattr(mpcai.errors, name, None) if module == "mpcai.errors" else None
        return isinstance(kind, type) and issubclass(kind, PeerError)

    if not failures:
        return None
    return min(failures, key=lambda i: (consequence(failures[i]),
                                        exited_at.get(i, float("inf")), i))


@dataclass
class PartyConfig:
    """A deployment: session, party function and every party's address and TLS files."""

    session: bytes
    function: str
    parties: dict[int, dict[str, Any]]
    ca: Path | None
    timeout: float = DEFAULT_TIMEOUT
    insecure_plaintext: bool = False
    connect_timeout: float | None = None  # None: ``timeout``
    #: a declarative deployment: the raw ``[protocol]`` table (resolved into
    #: ``function`` by ``mpcai party``, see ``mpcai.cli``), every party's
    #: ``[io.<id>]`` table, and the directory file names are relative to
    protocol_table: dict[str, Any] | None = None
    io: dict[int, dict[str, Any]] = field(default_factory=dict)
    base: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> PartyConfig:
        """Read and check a config file: TOML if its name ends in ``.toml``, else JSON
        (the same fields either way; see the module docstring and ``docs/deploy.rst``).

        A ``[protocol]`` table may replace ``function``: it is kept as it is, with
        the ``[io.<id>]`` tables, in :attr:`protocol_table` and :attr:`io`, for
        ``mpcai party`` to resolve (``function`` stays empty until then).  A party's
        ``address = "host:port"`` (``"[v6]:port"``) may replace ``host`` and ``port``.
        """
        import tomllib

        path = Path(path)
        try:
            text = read_file(path, "config", _MAX_CONFIG_BYTES).decode()
            if path.suffix.lower() == ".toml":
                raw = tomllib.loads(text)
            else:
                raw = json.loads(text)
        except InvalidInput:
            raise  # read_file's: it names the file
        except (OSError, ValueError, RecursionError) as exc:  # TOMLDecodeError: ValueError
            raise InvalidInput(f"cannot read config {path}: {str(exc)[:200]}") from exc
        if not isinstance(raw, dict):
            raise InvalidInput(f"config {path} must be a table (a JSON object)")
        base = path.parent
        try:
            session = bytes.fromhex(raw["session"])
            parties = {int(k): dict(v) for k, v in raw["parties"].items()}
            function = "" if "protocol" in raw else str(raw["function"])
            io = {int(k): dict(v) for k, v in raw.get("io", {}).items()}
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"config {path} is missing or has a bad field: {exc}") from exc
        if len(session) != wire.SESSION_ID_BYTES:
            raise InvalidInput(f"session must be {wire.SESSION_ID_BYTES} bytes of hex")
        plain = bool(raw.get("insecure_plaintext", False))
        for pid, entry in parties.items():
            if "address" in entry:
                entry["host"], entry["port"] = _split_address(entry.pop("address"), pid)
            if "host" not in entry or "port" not in entry:
                raise InvalidInput(f"party {pid} needs a host and a port")
            for key in ("cert", "key"):
                if key in entry:
                    entry[key] = base / _path_field(entry[key], f"party {pid} {key}")
                elif not plain:
                    raise InvalidInput(f"party {pid} needs '{key}' (or insecure_plaintext)")
        ca = base / _path_field(raw["ca"], "ca") if "ca" in raw else None
        if ca is None and not plain:
            raise InvalidInput("config needs 'ca' (or insecure_plaintext)")
        try:
            timeout = float(raw.get("timeout", DEFAULT_TIMEOUT))
            connect = raw.get("connect_timeout")
            connect = None if connect is None else float(connect)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"config {path}: bad timeout: {exc}") from exc
        table = raw.get("protocol")
        if table is not None and not isinstance(table, dict):
            raise InvalidInput(f"config {path}: [protocol] must be a table")
        if table is None and io:
            raise InvalidInput(f"config {path}: [io] tables need a [protocol] table")
        return cls(session=session, function=function, parties=parties, ca=ca,
                   timeout=timeout, insecure_plaintext=plain, connect_timeout=connect,
                   protocol_table=table, io=io, base=base)

    def dump(self, path: str | Path) -> None:
        """Write the config as JSON (paths as given)."""
        data = {
            "session": self.session.hex(),
            "function": self.function,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "insecure_plaintext": self.insecure_plaintext,
            "parties": {str(k): {kk: str(vv) if isinstance(vv, Path) else vv
                                 for kk, vv in v.items()} for k, v in self.parties.items()},
        }
        if self.ca is not None:
            data["ca"] = str(self.ca)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def _split_address(address: object, pid: int) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6 address]:port"`` -> (host, port)."""
    if not isinstance(address, str):
        raise InvalidInput(f"party {pid}: address must be a 'host:port' string")
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"party {pid}: address {address!r} is not 'host:port' "
                           "(port 1..65535)")
    return host, int(port)


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
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module_name == exc.name
                                        or module_name.startswith(exc.name + ".")):
                raise  # the module exists but imports something missing: its own error
            raise InvalidInput(f"{spec!r}: no module {module_name!r} (a dotted module "
                               "name on sys.path, or a path ending in .py)") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise InvalidInput(f"{spec!r}: no function {attr!r} in {module_name}")
    return fn


class _AbsentLink(Link):
    """The link to a party the launcher reported dead before the run: always dropped."""

    def __init__(self, peer: int) -> None:
        self.peer = peer

    def _raise(self) -> NoReturn:
        raise PeerDropped(f"party {self.peer}: its process died before the run started "
                          "(absent from the address book)", self.peer)

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        self._raise()

    async def receive_frame(self) -> bytes:
        self._raise()

    async def aclose(self) -> None:
        pass


class _WithAbsent(Network):
    """``inner`` (the live parties) plus parties that are known to be gone."""

    def __init__(self, inner: Network, absent: Sequence[int]) -> None:
        self.inner = inner
        self.absent = tuple(sorted(absent))
        self.party_ids = tuple(sorted((*inner.party_ids, *self.absent)))

    @asynccontextmanager
    async def open_links(self, party_id: int) -> AsyncIterator[dict[int, Link]]:
        async with self.inner.open_links(party_id) as links:
            yield {**links, **{p: _AbsentLink(p) for p in self.absent}}


def _path_field(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a path (a string), not {type(value).__name__}")
    return value


def _parse_book(line: str, parties: Mapping[int, Any]) -> dict[int, int | None]:
    """``{"id": port or null}`` (null: the party is gone) for every party of the config."""
    try:
        raw = json.loads(line)
        book = {int(k): (None if v is None else int(v)) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"bad address book on stdin: {line[:200]!r}") from exc
    if set(book) != set(parties) or any(p is not None and not 0 < p < 65536
                                        for p in book.values()):
        raise InvalidInput(f"bad address book on stdin: {line[:200]!r}")
    return book


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
    (``{"id": port, ...}`` as one JSON line; ``null`` for a party that is
    gone, which then is a dropout from the start) from stdin before
    connecting.  Peers that do not connect within ``config.connect_timeout``
    (default ``config.timeout``) are dropouts too.
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
    absent: list[int] = []
    listener = await TcpListener.bind(str(me.get("listen", me["host"])),
                                      0 if announce else int(me["port"]))
    if announce:
        try:
            print(f"{ANNOUNCE} {listener.port}", flush=True)
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            book = _parse_book(line, config.parties)
        except BaseException:
            await listener.aclose()
            raise
        for pid, port in book.items():
            if port is None:
                absent.append(pid)
            else:
                addresses[pid] = (addresses[pid][0], port)
        if party_id in absent:
            await listener.aclose()
            raise InvalidInput(f"the address book lists this party ({party_id}) as gone")
        for pid in absent:
            del addresses[pid]
    connect_timeout = (config.connect_timeout if config.connect_timeout is not None
                       else config.timeout)
    network: Network
    try:
        network = TcpNetwork(addresses, creds, listeners={party_id: listener},
                             insecure_plaintext=config.insecure_plaintext,
                             connect_timeout=connect_timeout)
    except BaseException:
        await listener.aclose()
        raise
    if absent:
        network = _WithAbsent(network, absent)
    async with open_party(network, party_id, config.session, timeout=config.timeout) as party:
        result = await fn(party, *args)
        return result, party.stats


class LaunchResult(list):
    """Results of :func:`launch_local` in party order, with ``stats`` and ``logs``
    (each party's log: at most its last :data:`_LOG_KEPT` characters).

    With ``return_failures=True``, :attr:`failures` maps each failed party to
    its :class:`PartyFailed` (which is also its entry in the list).
    """

    stats: list[CommStats]
    logs: dict[int, str]

    def __init__(self, results: list[Any], stats: list[CommStats], logs: dict[int, str]):
        super().__init__(results)
        self.stats = stats
        self.logs = logs

    @property
    def failures(self) -> dict[int, PartyFailed]:
        """``{party id: PartyFailed}`` for the parties that gave no result."""
        return {i: r for i, r in enumerate(self) if isinstance(r, PartyFailed)}


def _stats_from_dict(d: dict[str, Any]) -> CommStats:
    return CommStats(
        bytes_sent=d["bytes_sent"], bytes_received=d["bytes_received"],
        messages_sent=d["messages_sent"], messages_received=d["messages_received"],
        rounds=d["rounds"], sent_to={int(k): v for k, v in d["sent_to"].items()},
        received_from={int(k): v for k, v in d["received_from"].items()},
    )


class _Child:
    """One party's process: started, watched, signalled and reaped by the launcher only.

    ``poll`` and ``signal`` share a lock, so a signal never reaches a process
    that has already been reaped (whose pid the OS may give to another one).
    """

    def __init__(self, party_id: int, proc: subprocess.Popen[str], log: Path) -> None:
        self.party_id = party_id
        self.proc = proc
        self.log = log
        self._lock = threading.Lock()
        self.stdout_extra: list[str] = []  # what the party printed besides its announcement
        self._stdout_size = 0
        self.exited_at: float | None = None  # monotonic time its exit was first seen

    def _seen_exit(self) -> None:
        if self.exited_at is None:
            self.exited_at = time.monotonic()

    def poll(self) -> int | None:
        with self._lock:
            rc = self.proc.poll()
            if rc is not None:
                self._seen_exit()
            return rc

    def signal(self, sig: int) -> bool:
        with self._lock:
            if self.proc.poll() is not None:
                return False
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:  # pragma: no cover - exited but not yet reaped
                return False
            return True

    def wait_exited(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until the process has exited, without reaping it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self.proc.returncode is not None:
                    return
                try:
                    info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:  # pragma: no cover - reaped elsewhere
                    return
            if info is not None:
                with self._lock:
                    self._seen_exit()
                return
            time.sleep(0.005)

    def read_stdout(self, announced: queue.Queue[tuple[int, str | None]]) -> None:
        """Reader thread: the first announcement goes to ``announced`` (``None`` at EOF
        without one); everything else the party prints is kept (bounded) for its log."""
        stream = self.proc.stdout
        assert stream is not None
        reported = False
        try:
            for line in iter(lambda: stream.readline(8192), ""):  # bounded line length
                if not reported and line.startswith(ANNOUNCE):
                    announced.put((self.party_id, line))
                    reported = True
                elif self._stdout_size < _STDOUT_KEPT:
                    self.stdout_extra.append(line)
                    self._stdout_size += len(line)
        except (OSError, ValueError):  # closed under us at the end of the launch
            pass
        finally:
            if not reported:
                announced.put((self.party_id, None))


@dataclass(frozen=True)
class LaunchEvent:
    """A moment in a party's start-up, passed to ``launch_local(on_event=...)``.

    ``name`` is ``"started"`` (the process exists), ``"announced"`` (it
    reported its port) or ``"book"`` (its address book is about to be
    written to it).  :meth:`kill` signals the process, for monitoring and
    fault-injection tests; it never signals a process after the launcher has
    reaped it.
    """

    name: str
    party_id: int
    pid: int
    _child: _Child = field(repr=False, compare=False)

    def kill(self, sig: int = signal.SIGKILL, *, wait: bool = False) -> bool:
        """Send ``sig``; with ``wait``, also wait (up to 10 s) until the process has
        exited.  Returns False if it had already exited."""
        sent = self._child.signal(sig)
        if sent and wait:
            self._child.wait_exited(10.0)
        return sent


def launch_local(
    n: int,
    function: str,
    *,
    args_per_party: Sequence[Sequence[Any]] | None = None,
    timeout: float = 60.0,
    connect_timeout: float | None = None,
    workdir: str | Path | None = None,
    env: dict[str, str] | None = None,
    return_failures: bool = False,
    on_event: Callable[[LaunchEvent], None] | None = None,
) -> LaunchResult:
    """Run ``n`` parties of ``function`` as OS processes over TCP+TLS on localhost.

    ``function`` is ``"module:fn"`` or ``"path/to/file.py:fn"`` (a relative path is
    relative to the current directory), never ``"__main__:fn"`` (refused with
    :class:`~mpcai.errors.InvalidInput`: the parties do not run the caller's
    script as ``__main__``); party ``i`` calls
    ``fn(party, *args_per_party[i])``.  Arguments and results must be
    encodable by the wire codec.  Returns the results in party order with
    ``.stats`` (per-party :class:`CommStats`) and ``.logs``.

    The whole run takes at most about ``timeout`` seconds: parties still
    running then are killed.  A party that has not announced its port
    within ``timeout / 2`` is killed and absent from the others' address
    book.  ``connect_timeout`` (default ``timeout / 4``) is how long a party
    waits for its peers to connect; a peer that dies after the address book
    went out but before connecting costs the others that long.

    A party that dies, fails or times out — at any moment, see the module
    docstring — is a :class:`PartyFailed`; the others still run, treating
    it as a dropout.  With ``return_failures=True`` its entry in the results
    is its ``PartyFailed`` (and its stats are empty); otherwise, once every
    party has ended, one :class:`LaunchError` names every failed party
    (``.failures``) and carries every party's log.  ``on_event`` is called in
    the launcher's thread at each :class:`LaunchEvent` of each party.

    Logs are truncated: each party's kept log (``.logs``, ``PartyFailed.log``)
    is at most :data:`_LOG_KEPT` characters (1 MiB) of the end of its output,
    and error messages quote only short lines.  For the full stderr, pass
    ``workdir``: it keeps ``party-<id>.log`` (and the certificates, config and
    argument/result files) after the launch; a cut log's first line names that
    file.  Without ``workdir`` the files live in a temporary directory that is
    removed before this function returns.
    """
    n = check_int(n, "n", lo=1)
    if args_per_party is not None and len(args_per_party) != n:
        raise InvalidInput(f"args_per_party has {len(args_per_party)} entries for {n} parties")
    timeout = check_real(timeout, "timeout", lo=1e-9)
    if connect_timeout is None:
        connect_timeout = timeout / 4
    connect_timeout = check_real(connect_timeout, "connect_timeout", lo=1e-9)
    _refuse_main_module(function)
    load_function(function)  # fail early, in the caller's process, on a bad spec
    module_name, _, attr = function.rpartition(":")
    if module_name.endswith(".py"):  # the children run elsewhere: make the path absolute
        function = f"{Path(module_name).resolve()}:{attr}"
    tmp = tempfile.TemporaryDirectory(prefix="mpcai-launch-") if workdir is None else None
    root = Path(tmp.name if tmp is not None else workdir)  # type: ignore[arg-type]
    try:
        return _Launch(root, n, function, args_per_party, float(timeout), float(connect_timeout),
                       env, on_event, kept=tmp is None).run(return_failures)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _refuse_main_module(function: object) -> None:
    """Refuse ``"__main__:fn"``: it resolves in the caller (whose script is
    ``__main__``) but not in the parties, whose ``__main__`` is ``mpcai.cli``."""
    if not isinstance(function, str):
        raise InvalidType(f"function must be a 'module:function' string, not "
                          f"{type(function).__name__}")
    module_name, _, attr = function.rpartition(":")
    if module_name not in ("__main__", "__mp_main__"):
        return
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    as_file = (f"'{Path(script).resolve()}:{attr}'" if isinstance(script, str)
               and script.endswith(".py") else f"'path/to/file.py:{attr}'")
    raise InvalidInput(
        f"launch_local cannot run {function!r}: each party is a new process whose "
        f"__main__ is not your script; put {attr} in a module and pass "
        f"'module:{attr}', or pass the file: {as_file} (keep the script's own "
        "launch under `if __name__ == \"__main__\":`, the parties import the file)")


class _Launch:
    """One run of :func:`launch_local` (see its docstring)."""

    def __init__(self, root: Path, n: int, function: str,
                 args_per_party: Sequence[Sequence[Any]] | None, timeout: float,
                 connect_timeout: float, env: dict[str, str] | None,
                 on_event: Callable[[LaunchEvent], None] | None, *, kept: bool) -> None:
        self.root, self.n, self.function = root, n, function
        self.kept = kept  # ``root`` outlives the launch (the caller's workdir)
        self.args_per_party = args_per_party
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.env, self.on_event = env, on_event
        self.children: dict[int, _Child] = {}
        # what the launcher saw of a failed party: the start-up phase it died in,
        # and why the launcher killed it (if it did)
        self.phase: dict[int, str] = {}
        self.killed_note: dict[int, str] = {}
        self.log_files: list[IO[str]] = []
        self.readers: list[threading.Thread] = []

    def _event(self, name: str, i: int) -> None:
        _log.debug("launch: party %d %s (pid %d)", i, name, self.children[i].proc.pid)
        if self.on_event is not None:
            child = self.children[i]
            self.on_event(LaunchEvent(name, i, child.proc.pid, child))

    def _setup(self) -> None:
        root, n = self.root, self.n
        root.mkdir(parents=True, exist_ok=True)
        certs.write_party_certs(root / "certs", range(n), overwrite=True)  # a reused workdir
        parties = {
            i: {"host": "127.0.0.1", "port": 0, "cert": Path("certs") / f"party-{i}.pem",
                "key": Path("certs") / f"party-{i}.key"}
            for i in range(n)
        }
        config = PartyConfig(session=secrets.token_bytes(wire.SESSION_ID_BYTES),
                             function=self.function, parties=parties,
                             ca=Path("certs") / "ca.pem", timeout=self.timeout,
                             connect_timeout=self.connect_timeout)
        config.dump(root / "config.json")
        for i in range(n):
            args = tuple(self.args_per_party[i]) if self.args_per_party is not None else ()
            (root / f"args-{i}.bin").write_bytes(wire.encode_payload(list(args)))
            (root / f"result-{i}.bin").unlink(missing_ok=True)

    def _spawn(self, announced: queue.Queue[tuple[int, str | None]]) -> None:
        root = self.root
        child_env = {**os.environ, **(self.env or {})}
        for i in range(self.n):
            log = root / f"party-{i}.log"
            self.log_files.append(log.open("w"))
            # The child runs in the work directory, so a source checkout in the
            # caller's directory cannot shadow the installed (compiled) mpcai;
            # the caller's directory is appended to the child's sys.path, after
            # site-packages, for the party function's own module.
            proc = subprocess.Popen(
                [sys.executable, "-m", "mpcai.cli", "party", "--config", str(root / "config.json"),
                 "--id", str(i), "--announce", "--args", str(root / f"args-{i}.bin"),
                 "--result", str(root / f"result-{i}.bin"), "--path", os.getcwd()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_files[-1],
                text=True, env=child_env, cwd=root,
            )
            self.children[i] = child = _Child(i, proc, log)
            reader = threading.Thread(target=child.read_stdout, args=(announced,),
                                      name=f"mpcai-launch-stdout-{i}", daemon=True)
            reader.start()
            self.readers.append(reader)
            self._event("started", i)

    def _collect_ports(self, announced: queue.Queue[tuple[int, str | None]],
                       deadline: float) -> dict[int, int]:
        ports: dict[int, int] = {}
        waiting = set(self.children)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                i, line = announced.get(timeout=left)
            except queue.Empty:
                break
            waiting.discard(i)
            if line is None:  # its stdout closed: it has exited (or is exiting)
                self.phase[i] = "before announcing its port"
                self.children[i].wait_exited(1.0)
                self._kill(i, "it closed its stdout without announcing a port")
                continue
            try:
                port = int(line.split()[1])
                if not 0 < port < 65536:
                    raise ValueError(port)
            except (IndexError, ValueError):
                self.phase[i] = "before announcing its port"
                self._kill(i, f"it announced a bad port ({line.strip()[:80]!r})")
                continue
            ports[i] = port
            self._event("announced", i)
        for i in waiting:
            self.phase[i] = "before announcing its port"
            self._kill(i, f"it did not announce its port within {self.timeout / 2:g} s")
        return ports

    def _kill(self, i: int, note: str) -> None:
        if self.children[i].signal(signal.SIGKILL):
            self.killed_note[i] = note
            _log.warning("launch: killed party %d: %s", i, note)

    def _send_books(self, ports: dict[int, int]) -> None:
        # A party that has exited since it announced is marked absent (null) in
        # the book; one that dies while the books go out has its port in some
        # peers' books: for those it is a peer that never connects.
        late = "after announcing its port, before the address book reached it"
        for i in ports:
            if self.children[i].poll() is not None:
                self.phase[i] = late
        for i, child in self.children.items():
            if i in self.phase:
                continue
            book = {str(k): (ports[k] if k in ports and k not in self.phase else None)
                    for k in range(self.n)}
            self._event("book", i)
            stdin = child.proc.stdin
            assert stdin is not None
            try:
                stdin.write(json.dumps(book) + "\n")
                stdin.flush()
            except (OSError, ValueError):  # BrokenPipeError: it has died
                self.phase[i] = late
                self.children[i].wait_exited(1.0)
                self._kill(i, "its stdin closed before the address book reached it")
        for child in self.children.values():
            try:
                assert child.proc.stdin is not None
                child.proc.stdin.close()
            except (OSError, ValueError):
                pass

    def _wait_all(self, deadline: float) -> None:
        running = set(self.children)
        while running:
            running = {i for i in running if self.children[i].poll() is None}
            if not running:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        for i in running:
            self._kill(i, f"it was still running after {self.timeout:g} s")

    def _reap_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.signal(signal.SIGKILL)
            with child._lock:
                try:
                    child.proc.wait(timeout=10)
                    child._seen_exit()
                except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                    pass
        for reader in self.readers:
            reader.join(timeout=2)
        for child in self.children.values():
            for stream in (child.proc.stdin, child.proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except (OSError, ValueError):
                        pass
        for fh in self.log_files:
            fh.close()

    def _logs(self) -> dict[int, str]:
        """Every party's kept log: its stray stdout, then the end of its stderr file,
        at most ``_LOG_KEPT`` characters together (plus short notes)."""
        out: dict[int, str] = {}
        for i, child in self.children.items():
            stdout = "".join(child.stdout_extra)
            try:
                text, skipped = _read_tail(child.log, max(0, _LOG_KEPT - len(stdout)))
            except OSError:
                text, skipped = "", 0
            if skipped:
                where = (f"the full log is {child.log}" if self.kept else
                         "pass launch_local(workdir=...) to keep the full log file")
                text = (f"... ({skipped} earlier bytes of stderr not kept; {where})\n"
                        + text)
            text = stdout + text
            rc = child.proc.returncode
            note = ""
            if rc is not None and rc < 0:
                try:
                    note = f"(killed by {signal.Signals(-rc).name})"
                except ValueError:
                    note = f"(killed by signal {-rc})"
            elif rc not in (None, 0):
                note = f"(exit status {rc})"
            if note:
                text = (text.rstrip() + "\n" if text.strip() else "") + note
            out[i] = text
        return out

    def _outcome(self, i: int, log: str) -> tuple[Any, CommStats]:
        """Party i's (result, stats), or (PartyFailed, empty stats)."""
        rc = self.children[i].proc.returncode
        record: Any = None
        unreadable = ""
        path = self.root / f"result-{i}.bin"
        if path.exists():
            try:
                record = wire.decode_payload(path.read_bytes(),
                                             wire.Limits(max_payload_bytes=_MAX_RESULT_BYTES))
            except (WireError, OSError) as exc:
                unreadable = f" but its result is unreadable ({exc})"
        ok = isinstance(record, dict) and "result" in record and "stats" in record
        if rc == 0 and ok and i not in self.phase and not unreadable:
            return record["result"], _stats_from_dict(record["stats"])
        if i in self.killed_note:
            how = f"was killed by the launcher ({self.killed_note[i]})"
        elif rc is not None and rc < 0:
            try:
                how = f"was killed by {signal.Signals(-rc).name}"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with status {rc}"
        reason = how + (f" {self.phase[i]}" if i in self.phase else "")
        error_type = None
        if isinstance(record, dict) and isinstance(record.get("error"), dict):
            error_type = str(record["error"].get("type", "?"))
            message = " ".join(str(record["error"].get("message", "")).split("\n"))
            reason += f": {error_type}: {message[:300]}"
        elif unreadable:
            reason += unreadable
        elif rc == 0:
            reason += " without a result"
        return PartyFailed(i, rc, log, reason=reason, error_type=error_type), CommStats()

    def run(self, return_failures: bool) -> LaunchResult:
        self._setup()
        announced: queue.Queue[tuple[int, str | None]] = queue.Queue()
        try:
            start = time.monotonic()
            deadline = start + self.timeout
            self._spawn(announced)
            ports = self._collect_ports(announced, start + self.timeout / 2)
            self._send_books(ports)
            self._wait_all(deadline)
        finally:
            self._reap_all()
        logs = self._logs()
        results: list[Any] = []
        stats: list[CommStats] = []
        for i in range(self.n):
            res, st = self._outcome(i, logs[i])
            results.append(res)
            stats.append(st)
        run = LaunchResult(results, stats, logs)
        failures = run.failures
        for i, f in failures.items():
            _log.warning("launch: party %d %s", i, f.reason)
        _log.info("launch: %d of %d parties succeeded in %.2f s", self.n - len(failures), self.n,
                  time.monotonic() - start)
        if failures and not return_failures:
            names = "; ".join(f"party {i} {f.reason}" for i, f in failures.items())
            exited = {i: c.exited_at for i, c in self.children.items()
                      if c.exited_at is not None}
            raise LaunchError(f"{len(failures)} of {self.n} parties failed: {names}", logs,
                              failures, first=_first_failure(failures, exited))
        return run


def _read_tail(path: Path, limit: int) -> tuple[str, int]:
    """The last ``limit`` bytes of ``path``, decoded (bad UTF-8, e.g. a character cut
    at the start, replaced), and how many bytes precede them.  Reads only those bytes."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        fh.seek(start)
        data = fh.read(limit)
    return data.decode(errors="replace"), start
