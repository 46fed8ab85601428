"""Audit transcripts: a hash-chained, Ed25519-signed record of one party's run.

A :class:`Transcript` is written by one party as it runs a protocol (attach it
with ``open_party(..., transcript=t)``, ``run_local(..., transcripts=[...])``
or a protocol's ``simulate(..., transcript=DIR)``).  It holds, one entry per
line:

* a **header**: the format, the protocol's name and version, the session id,
  the party id and its peers, the party's Ed25519 public key, the SHA-256
  of the canonical configuration and the frame-digest algorithm (``hash``:
  BLAKE3 or SHA-256, :data:`HASHES`);
* one entry per **message** sent or received: direction, tag (the stage),
  peer, sequence number, byte length and digest of the encoded frame (header
  and payload, exactly the bytes on the wire); a send is recorded once its
  frame is handed to the link, a receive when the protocol takes the message
  (so receives appear in the order the protocol used them; a frame that
  arrived but was refused, e.g. after its deadline, is not recorded);
* protocol **notes** (e.g. the survivors and dropouts per stage), the
  **result** digest, and an **end** entry (``ok`` or the error's class name).

Each line is canonical JSON (sorted keys, no spaces, ASCII)
``{"e": entry, "h": head, "s": signature}``: ``head_i = SHA-256(head_{i-1} ||
entry_i)`` with ``head_{-1} = SHA-256("mpcai-transcript/2")``.  Heads are
signed at checkpoints (Ed25519 over a domain-separated prefix and the head):
the header, every note, the result, the end entry and every
:data:`SIGN_EVERY`-th entry; a line between checkpoints has an empty
signature and is covered by the next signed head, which commits to every
entry before it.  So the whole record is signed, and a crashed party still
leaves a prefix verifiable up to its last checkpoint.  :func:`read_transcript`
checks every line is canonical, the chain, every signature and the header;
:func:`cross_check` checks the transcripts of one run against each other:
every receive has the matching send (same sequence number, tag, length and
digest) on the other side.  Which stage sequences are legal depends on the
protocol: :mod:`mpcai.protocols.audit` checks that (and ``mpcai audit verify``
runs everything).

Threat model.  A transcript proves integrity, not truth: a party can write
a false transcript and sign it.  What it gives is *non-repudiation and
consistency*: once signed, a party cannot deny what it recorded, any change
to any byte of a transcript is detected, and two honest parties' transcripts
of one run must agree message by message, so a party whose record disagrees
with its peers' is exposed.  A signature proves *who* signed only if the
verifier pins the public keys (a PKI, e.g. the clients' identity keys of
``SecAggConfig.identities``; ``mpcai audit verify --keys FILE``); without
pinned keys it checks each transcript against the key in its own header,
which anyone can replace along with every signature: then verification
proves only that the file is intact and self-consistent, not who wrote it
(nor that it is not an old transcript replayed: a verifier that cares
compares the session id with the run it expects).  Truncation at a signed
entry leaves a valid prefix: a transcript without its end entry is refused
unless ``allow_incomplete`` (the prefix of a crashed party).  Lines of
another run or another party cannot be spliced in: each head chains every
entry before it, and the header fixes the party, its peers and the session.

No secret enters a transcript: tags, ids, lengths, sequence numbers, frame
digests, notes of public facts (who dropped) and the result digest.  A
frame's digest reveals nothing about a frame with enough entropy (masked
vectors, ciphertexts, shares of random seeds all have it); a frame whose
whole content is guessable (a public flag) can be confirmed from its digest.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mpcai.errors import InvalidInput, InvalidTranscript, InvalidType, WouldOverwrite
from mpcai.validation import check_bytes, check_int, read_file

__all__ = [
    "DEFAULT_HASH",
    "FORMAT",
    "HASHES",
    "MAX_LINE_BYTES",
    "MAX_TRANSCRIPT_BYTES",
    "SIGN_EVERY",
    "Entry",
    "RunCheck",
    "Transcript",
    "TranscriptLog",
    "canonical_json",
    "config_digest",
    "cross_check",
    "default_hash",
    "frame_digest",
    "hash_available",
    "load_keys",
    "new_signing_key",
    "open_transcripts",
    "public_key",
    "read_transcript",
    "recording",
]

FORMAT = "mpcai-transcript/2"
"""The format name written in every header (and hashed into the chain's start)."""

HASHES = ("sha256", "blake3", "blake2b")
"""The frame-digest algorithms a header may name (``hash``), all with 32-byte digests:
SHA-256 (:mod:`hashlib`), BLAKE3 (the ``blake3`` package, a dependency of mpcai; run
single-threaded) and BLAKE2b-256 (:mod:`hashlib`).
The hash chain and the configuration digest are SHA-256 whatever the frames use."""

SIGN_EVERY: int = 64
"""By default a transcript signs its chain's head every this many entries (and always
the header, notes, the result and the end entry): see :class:`Transcript`."""

MAX_LINE_BYTES: int = 4 << 20
"""The longest line (one entry) :func:`read_transcript` accepts."""

MAX_TRANSCRIPT_BYTES: int = 256 << 20
"""The largest transcript :func:`read_transcript` reads by default (256 MiB, about
800,000 entries; pass ``max_bytes`` for more: the verified entries are kept in memory)."""

_GENESIS = hashlib.sha256(FORMAT.encode()).digest()
_SIG_PREFIX = b"mpcai-transcript/2 signed head\x00"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX128 = re.compile(r"[0-9a-f]{128}\Z")
#: entries whose line must carry a signature (a checkpoint)
_ALWAYS_SIGNED = ("header", "note", "result", "end")
_MAX_NAME = 256
_MAX_PEERS = 1 << 20
_DIRECTIONS = ("send", "recv")
_DIRECTION_JSON = {d: d.encode() for d in _DIRECTIONS}
_MESSAGE_ENTRY = b'{"digest":"%s","i":%d,"len":%d,"peer":%d,"seq":%d,"t":"%s","tag":%s}'
_TAG_JSON: dict[str, bytes] = {}  # a protocol's tags, as JSON strings
_TAG_CACHE = 4096


def _json_string(s: str) -> bytes:
    """``s`` as a canonical JSON string (ASCII, escaped as :func:`json.dumps` does)."""
    out = _TAG_JSON.get(s)
    if out is None:
        out = json.dumps(s, ensure_ascii=True).encode("ascii")
        if len(_TAG_JSON) < _TAG_CACHE and len(s) <= _MAX_NAME:
            _TAG_JSON[s] = out
    return out


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (sorted keys, no spaces, ASCII).

    Dataclasses become objects of their fields, mappings objects with string
    keys, tuples and lists arrays, bytes lowercase hex, enums their value,
    numpy scalars and arrays plain numbers and nested lists.  Floats must be
    finite.  Used for configuration digests and for every transcript line.
    """
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _plain(obj: Any, depth: int = 0) -> Any:
    if depth > 64:
        raise InvalidInput("a configuration nests more than 64 levels")
    if obj is None or isinstance(obj, (bool, str, int, float)):
        return obj
    if isinstance(obj, enum.Enum):
        return _plain(obj.value, depth + 1)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name), depth + 1)
                for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        return [_plain(v, depth + 1) for v in items]
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _plain(tolist(), depth + 1)
    raise InvalidType(f"cannot put a {type(obj).__name__} into canonical JSON")


def config_digest(config: Any) -> bytes:
    """SHA-256 of :func:`canonical_json` of ``config`` (32 bytes)."""
    return hashlib.sha256(canonical_json(config)).digest()


def _blake3() -> Any:
    import blake3  # a dependency of mpcai (ImportError only in a broken install)

    return blake3.blake3(max_threads=1)


def _blake2b() -> Any:
    return hashlib.blake2b(digest_size=32)


_CONSTRUCTORS: dict[str, Any] = {"sha256": hashlib.sha256, "blake3": _blake3,
                                 "blake2b": _blake2b}


def hash_available(name: str) -> bool:
    """Whether frames can be digested with ``name`` (one of :data:`HASHES`) here."""
    if name not in _CONSTRUCTORS:
        return False
    try:
        _CONSTRUCTORS[name]()
    except ImportError:
        return False
    return True


DEFAULT_HASH: str | None = None
"""The frame hash of transcripts that name none (``None``: :func:`default_hash` picks);
for benchmarks and tests.  Give ``hash=`` instead in code that runs parties."""


def default_hash() -> str:
    """:data:`DEFAULT_HASH` if set, else ``"blake3"``: what a :class:`Transcript`
    digests frames with by default (the ``blake3`` package is a dependency of mpcai, so
    every party of a run picks the same one; :func:`cross_check` refuses a mix)."""
    if DEFAULT_HASH is not None:
        return DEFAULT_HASH
    return "blake3"


def frame_digest(parts: Iterable[Any], hash: str = "sha256") -> tuple[int, bytes]:
    """``(length, digest)`` of the concatenation of ``parts`` (bytes-like), without
    joining them, under ``hash`` (one of :data:`HASHES`, 32-byte digests)."""
    if hash not in _CONSTRUCTORS:
        raise InvalidInput(f"hash must be one of {HASHES}, not {hash!r}")
    return _digest(_CONSTRUCTORS[hash](), parts)


def _digest(h: Any, parts: Iterable[Any]) -> tuple[int, bytes]:
    n = 0
    for p in parts:
        mv = memoryview(p)
        n += mv.nbytes
        h.update(mv)
    return n, h.digest()


def _sig_message(head: bytes) -> bytes:
    return _SIG_PREFIX + head


def _private_key(key: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if key is None:
        return Ed25519PrivateKey.generate()
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, (bytes, bytearray)):
        return Ed25519PrivateKey.from_private_bytes(check_bytes(bytes(key), "signing key",
                                                                size=32))
    raise InvalidType("signing_key must be an Ed25519PrivateKey (cryptography) or its 32 raw "
                      f"bytes, not {type(key).__name__}")


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key, its 32 raw bytes (from the OS's randomness)."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return _private_key(None).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_key(signing_key: Any) -> bytes:
    """The 32 raw bytes of the Ed25519 public key of ``signing_key`` (raw 32 bytes or a
    ``cryptography`` private key): what a verifier pins."""
    return _raw_public(_private_key(check_bytes(signing_key, "signing key", size=32)
                                    if isinstance(signing_key, (bytes, bytearray))
                                    else signing_key))


def _raw_public(private: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Transcript:
    """The audit transcript one party writes while it runs (see the module docstring).

    ``path`` is created (an existing file is never overwritten:
    :class:`~mpcai.errors.WouldOverwrite`).  ``protocol`` and ``version`` name
    what runs; ``config`` is anything :func:`canonical_json` accepts (only its
    digest is written).  ``signing_key`` is an Ed25519 private key
    (``cryptography``), e.g. the party's identity key; by default a fresh one
    (then :attr:`public_key` must reach the verifier another way to mean
    anything).  The header is written by :meth:`begin` (``open_party`` calls
    it).

    ``hash`` names the frame-digest algorithm (:data:`HASHES`; default
    :func:`default_hash`: BLAKE3), written in the
    header.  Signing is by checkpoints: the head of the hash chain is signed at
    the header, every note, the result, the end entry, and every ``sign_every``
    entries (:data:`SIGN_EVERY`; 1 signs every entry); the lines between carry
    an empty signature and are covered by the next one, since a signed head
    commits to every entry before it.  The file is flushed at each signed line,
    so a party that crashes leaves a prefix verifiable up to its last checkpoint
    (``read_transcript(..., allow_incomplete=True)``).

    Recording costs one pass of the frame hash over every frame sent or
    received (BLAKE3 ~5 GB/s, SHA-256 ~2 GB/s with SHA extensions, one core),
    a few microseconds of JSON per entry and one Ed25519 signature (~25-80 us)
    per checkpoint; a party without a transcript does none of it.
    """

    def __init__(self, path: str | os.PathLike[str], *, protocol: str, version: str = "1",
                 config: Any = None, signing_key: Any = None, hash: str | None = None,
                 sign_every: int | None = None) -> None:
        self.path = Path(path).absolute()  # (suspend/resume may cross directories)
        self.protocol = _check_name(protocol, "protocol")
        self.version = _check_name(version, "version")
        self.config_digest = config_digest(config)
        self.hash = default_hash() if hash is None else hash
        if self.hash not in HASHES:
            raise InvalidInput(f"hash must be one of {HASHES}, not {self.hash!r}")
        if not hash_available(self.hash):
            from mpcai.errors import MissingDependency

            raise MissingDependency(f"hash {self.hash!r} needs the blake3 package (a "
                                    "dependency of mpcai): pip install blake3")
        self._new_hash = _CONSTRUCTORS[self.hash]
        self.sign_every = check_int(SIGN_EVERY if sign_every is None else sign_every,
                                    "sign_every", lo=1)
        self._key = _private_key(signing_key)
        self.public_key: bytes = _raw_public(self._key)
        self.head: bytes = _GENESIS
        self.entries = 0
        self._unsigned = 0
        self.session: bytes | None = None
        self.party: int | None = None
        self._file: IO[bytes] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (f"<Transcript {self.protocol}/{self.version} party {self.party} "
                f"{self.entries} entries at {self.path}>")

    @property
    def closed(self) -> bool:
        """Whether the end entry has been written (later records are ignored)."""
        return self._closed

    def begin(self, *, session: bytes, party: int, peers: Sequence[int]) -> None:
        """Write the header (once): the run's session id, this party and its peers."""
        if self._file is not None or self._closed:
            raise InvalidInput(f"transcript {self.path} has already begun")
        session = check_bytes(session, "session id")
        party = check_int(party, "party id", lo=0)
        peers = [check_int(p, "peer id", lo=0) for p in peers]
        try:
            self._file = open(self.path, "xb")
        except FileExistsError:
            raise WouldOverwrite(f"transcript {self.path} exists already",
                                 [str(self.path)]) from None
        except OSError as exc:  # a missing directory, no permission, a name too long
            raise InvalidInput(f"cannot create transcript {self.path}: {exc.strerror or exc}"
                               ) from exc
        self.session, self.party = session, party
        self._write({"t": "header", "format": FORMAT, "protocol": self.protocol,
                     "version": self.version, "session": session.hex(), "party": party,
                     "peers": sorted(peers), "key": self.public_key.hex(),
                     "config": self.config_digest.hex(), "hash": self.hash}, sign=True)

    def digest(self, parts: Iterable[Any]) -> tuple[int, bytes]:
        """``(length, digest)`` of a frame (``parts``, bytes-like) under this transcript's
        :attr:`hash` (what the runtime records; it runs in worker threads too)."""
        return _digest(self._new_hash(), parts)

    def _write(self, entry: dict[str, Any], *, sign: bool = False) -> None:
        entry["i"] = self.entries
        # the values are plain already (notes went through canonical_json): dump directly
        self._append(json.dumps(entry, sort_keys=True, separators=(",", ":"),
                                ensure_ascii=True, allow_nan=False).encode("ascii"), sign)

    def _append(self, e: bytes, sign: bool = False) -> None:
        """Chain, sign if due and write the canonical entry ``e`` (whose ``"i"`` is
        :attr:`entries`); "e" < "h" < "s", so the line below is canonical too."""
        head = hashlib.sha256(self.head + e).digest()
        sign = sign or self._unsigned + 1 >= self.sign_every
        sig = self._key.sign(_sig_message(head)).hex().encode() if sign else b""
        assert self._file is not None
        self._file.write(b'{"e":' + e + b',"h":"' + head.hex().encode() + b'","s":"' + sig
                         + b'"}\n')
        if sign:
            self._file.flush()
            self._unsigned = 0
        else:
            self._unsigned += 1
        self.head = head
        self.entries += 1

    def _open(self) -> bool:
        if self._closed:
            return False
        if self._file is None:
            raise InvalidInput(f"transcript {self.path}: begin() first (open_party does it)")
        return True

    def record_send(self, peer: int, seq: int, tag: str, parts: Iterable[Any]) -> None:
        """A frame (``parts``, header first) sent to ``peer`` with sequence number ``seq``."""
        if self._open():
            n, digest = self.digest(parts)
            self.record("send", peer, seq, tag, n, digest)

    def record(self, direction: str, peer: int, seq: int, tag: str, length: int,
               digest: bytes) -> None:
        """A message entry: ``direction`` ``"send"`` or ``"recv"``, with the frame's
        ``length`` and ``digest`` (of the frame's bytes, under :attr:`hash`)."""
        if direction not in _DIRECTIONS:
            raise InvalidInput(f"direction must be 'send' or 'recv', not {direction!r}")
        if not self._open():
            return
        if type(tag) is not str or type(digest) is not bytes:
            self._write({"t": direction, "tag": tag, "peer": int(peer), "seq": int(seq),
                         "len": int(length), "digest": digest.hex()})
            return
        # the canonical JSON of the entry, formatted directly (the keys in sorted order:
        # what _write's json.dumps gives, ~5x faster: this runs for every message)
        self._append(_MESSAGE_ENTRY % (digest.hex().encode(), self.entries, int(length),
                                       int(peer), int(seq), _DIRECTION_JSON[direction],
                                       _json_string(tag)))

    def note(self, name: str, data: Any) -> None:
        """A protocol note: ``name`` and public data (anything :func:`canonical_json`
        takes), e.g. the survivors and dropouts per stage.  Never put a secret here."""
        if self._open():
            self._write({"t": "note", "name": _check_name(name, "note name"),
                         "data": json.loads(canonical_json(data))}, sign=True)

    def result(self, digest: bytes) -> None:
        """The digest (32 bytes, e.g. SHA-256 of the encoded result) of the party's result."""
        digest = check_bytes(digest, "result digest", size=32)
        if self._open():
            self._write({"t": "result", "digest": digest.hex()}, sign=True)

    def suspend(self) -> bytes:
        """Close the file for now and return what :meth:`resume` needs to go on writing
        this transcript later, maybe in another process: public facts only (the path,
        the header's fields, the chain's head, the entry counts and the file's length;
        never the signing key), as canonical JSON.

        For hosts that run a party one message at a time and keep its state between
        calls (the Flower mod).  The entries after the last signed one stay unsigned
        until the next checkpoint: use ``sign_every=1`` if the party may never resume
        (a client that drops out), so that every entry is signed as it is written.
        """
        if self._file is None or self._closed:
            raise InvalidInput(f"transcript {self.path}: only a begun, open transcript can "
                               "be suspended")
        self._closed = True  # this object is done; resume() makes the next one
        try:
            self._file.flush()
            size = self._file.tell()
            info = os.fstat(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        assert self.session is not None and self.party is not None
        return canonical_json({
            # absolute: the next call may run in another process, from another directory
            "path": str(self.path), "file": [info.st_dev, info.st_ino],
            "protocol": self.protocol, "version": self.version,
            "config": self.config_digest, "hash": self.hash, "sign_every": self.sign_every,
            "key": self.public_key, "session": self.session, "party": self.party,
            "head": self.head, "entries": self.entries, "unsigned": self._unsigned,
            "size": size})

    @classmethod
    def resume(cls, state: bytes, *, signing_key: Any) -> Transcript:
        """The transcript :meth:`suspend` left, open again for more entries.

        ``signing_key`` must be the key it was begun with.  The file must still hold
        what it held at the suspension: anything written after it (a later call whose
        state the host discarded and that died before ending the transcript) is cut
        off; a file shorter than that, whose last line is not the suspended chain's
        head, that a later call ended (its end entry is kept, never rewritten), or
        that is another file now, is refused (:class:`~mpcai.errors.InvalidTranscript`).
        """
        try:
            st = json.loads(check_bytes(state, "transcript state"))
            path = Path(st["path"])
            size, entries = int(st["size"]), int(st["entries"])
            head = bytes.fromhex(st["head"])
            t = cls(path, protocol=st["protocol"], version=st["version"],
                    signing_key=signing_key, hash=st["hash"],
                    sign_every=int(st["sign_every"]))
            t.config_digest = bytes.fromhex(st["config"])
            t.session, t.party = bytes.fromhex(st["session"]), int(st["party"])
            key = bytes.fromhex(st["key"])
            unsigned = int(st["unsigned"])
            dev, ino = (int(x) for x in st.get("file", (-1, -1)))  # (-1: not recorded)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a suspended transcript's state: {exc!r}") from exc
        if t.public_key != key:
            raise InvalidInput(f"transcript {path}: resumed with another signing key")
        try:  # the very file it wrote: never through a link put in its place
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise InvalidTranscript(f"{path}: cannot reopen the transcript: "
                                    f"{exc.strerror or exc}", source=str(path)) from exc
        f = os.fdopen(fd, "r+b")
        try:
            info = os.fstat(fd)
            if dev >= 0 and (info.st_dev, info.st_ino) != (dev, ino):
                raise InvalidTranscript(f"{path}: another file than the suspended "
                                        "transcript's", source=str(path))
            f.seek(max(0, size - MAX_LINE_BYTES))
            tail = f.read(size - f.tell())
            last = tail.rsplit(b"\n", 2)[-2] if tail.count(b"\n") >= 1 else b""
            if (f.seek(0, os.SEEK_END) < size or not tail.endswith(b"\n")
                    or b'"h":"' + head.hex().encode() + b'"' not in last):
                raise InvalidTranscript(f"{path}: the file no longer ends with the "
                                        "suspended transcript's last entry",
                                        source=str(path))
            f.seek(size)
            if b'"t":"end"' in f.read():  # a later call ended it: never rewrite its end
                raise InvalidTranscript(f"{path}: the transcript was ended after this "
                                        "state was suspended", source=str(path))
            f.truncate(size)
            f.seek(size)
        except BaseException:
            f.close()
            raise
        t._file, t.head, t.entries, t._unsigned = f, head, entries, unsigned
        return t

    def close(self, error: BaseException | None = None) -> None:
        """Write the end entry (``ok``, or the class name of ``error``) and close the file.

        Idempotent; ``open_party`` calls it on exit.
        """
        if self._closed:
            return
        self._closed = True  # even if the end entry cannot be written (a full disk)
        if self._file is not None:
            try:
                self._write({"t": "end", "status": "ok" if error is None else "error",
                             "error": "" if error is None else type(error).__name__},
                            sign=True)
            finally:
                self._file.close()


def open_transcripts(
    directory: str | os.PathLike[str],
    parties: Sequence[int],
    *,
    protocol: str,
    version: str = "1",
    config: Any = None,
    signing_keys: Mapping[int, Any] | None = None,
    hash: str | None = None,
    sign_every: int | None = None,
) -> list[Transcript]:
    """One :class:`Transcript` per party, ``DIR/party-<id>.jsonl``, and ``DIR/keys.json``
    (every party's public key, the format :func:`load_keys` reads).

    ``directory`` is created if needed; if any of those files exists already,
    :class:`~mpcai.errors.WouldOverwrite` is raised before anything is
    written.  ``signing_keys[id]`` is that party's Ed25519 private key (e.g. a
    client's identity key); the others get fresh keys.  ``hash`` and
    ``sign_every`` as for :class:`Transcript` (one algorithm for every party).
    This is what the protocols' ``simulate(..., transcript=DIR)`` use.
    """
    d = Path(directory)
    ids = [check_int(p, "party id", lo=0) for p in parties]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"party ids must be distinct, got {ids}")
    paths = [d / f"party-{p}.jsonl" for p in ids]
    keys_path = d / "keys.json"
    existing = [str(p) for p in [*paths, keys_path] if os.path.lexists(p)]
    if existing:
        raise WouldOverwrite(f"{len(existing)} transcript files exist already in {d}", existing)
    if d.exists() and not d.is_dir():
        raise InvalidInput(f"transcript directory {d} is a file, not a directory")
    d.mkdir(parents=True, exist_ok=True)
    keys = dict(signing_keys or {})
    hash = default_hash() if hash is None else hash
    digest = config_digest(config)  # once, not per party
    out = [Transcript(path, protocol=protocol, version=version, signing_key=keys.get(p),
                      hash=hash, sign_every=sign_every)
           for p, path in zip(ids, paths, strict=True)]
    for t in out:
        t.config_digest = digest
    with open(keys_path, "xb") as f:
        f.write(canonical_json({str(p): t.public_key for p, t in zip(ids, out, strict=True)})
                + b"\n")
    return out


@contextmanager
def recording(party: Any, path: str | os.PathLike[str], *, protocol: str, version: str = "1",
              config: Any = None, signing_key: Any = None, hash: str | None = None,
              sign_every: int | None = None) -> Iterator[Transcript]:
    """Record an open :class:`~mpcai.runtime.Party`'s messages in a new transcript at
    ``path`` for the duration of the ``with`` block (for party functions run by
    ``launch_local`` / ``mpcai party``, where the party is opened for you).

    Enter it before the party's first message: the header takes the party's
    session, id and peers, and the end entry is written on exit (``ok``, or the
    exception's class name).
    """
    t = Transcript(path, protocol=protocol, version=version, config=config,
                   signing_key=signing_key, hash=hash, sign_every=sign_every)
    if getattr(party, "transcript", None) is not None:
        raise InvalidInput(f"party {party.id} is already recording a transcript")
    t.begin(session=party.session, party=party.id, peers=party.peers)
    party.transcript = t
    try:
        yield t
    except BaseException as exc:
        t.close(exc)
        raise
    else:
        t.close()
    finally:
        party.transcript = None


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"{what} must be a str, not {type(value).__name__}")
    if not 0 < len(value) <= _MAX_NAME:
        raise InvalidInput(f"{what} must have 1 to {_MAX_NAME} characters")
    return value


# ---- reading and verifying -------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One verified entry: its index, type (``header``, ``send``, ``recv``, ``note``,
    ``result``, ``end``) and fields (as in the file, digests as hex)."""

    index: int
    type: str
    fields: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


@dataclass
class TranscriptLog:
    """A transcript whose chain and signatures :func:`read_transcript` verified."""

    source: str
    protocol: str
    version: str
    session: bytes
    party: int
    peers: tuple[int, ...]
    public_key: bytes
    config_digest: bytes
    entries: list[Entry]
    #: the last head (what the last signature signs)
    head: bytes
    #: whether the end entry is present (a crashed party leaves a prefix without it)
    complete: bool
    #: ``"ok"``, ``"error"``, or ``None`` if incomplete
    status: str | None
    #: the error's class name if ``status == "error"``
    error: str
    result: bytes | None
    #: whether the key was checked against one the verifier pinned
    pinned: bool
    #: the frame-digest algorithm the header names (:data:`HASHES`)
    hash: str = "sha256"
    #: entries after the last signed one that were dropped (only with ``allow_incomplete``:
    #: a crash between checkpoints; they are not verified, so not in :attr:`entries`)
    unsigned_tail: int = 0

    def messages(self, direction: str | None = None) -> list[Entry]:
        """The send and receive entries (or those of one ``direction``), in order."""
        return [e for e in self.entries if e.type in _DIRECTIONS
                and (direction is None or e.type == direction)]

    def notes(self, name: str) -> list[Any]:
        """The data of every note called ``name``, in order."""
        return [e["data"] for e in self.entries if e.type == "note" and e["name"] == name]


def _fail(source: str, index: int | None, why: str) -> InvalidTranscript:
    where = f"{source}: entry {index}: " if index is not None else f"{source}: "
    return InvalidTranscript(where + why, source=source, entry=index)


def _is_int(v: Any, lo: int = 0) -> bool:
    return type(v) is int and v >= lo


def _check_entry(entry: Any, index: int, source: str) -> None:
    """The schema of one entry (exact keys and types)."""
    if not isinstance(entry, dict) or entry.get("i") != index or not _is_int(entry.get("i")):
        raise _fail(source, index, f"the entry is not entry number {index}")
    kind = entry.get("t")
    schemas: dict[str, dict[str, Any]] = {
        "header": {"format": str, "protocol": str, "version": str, "session": str,
                   "party": int, "peers": list, "key": str, "config": str, "hash": str},
        "send": {"tag": str, "peer": int, "seq": int, "len": int, "digest": str},
        "recv": {"tag": str, "peer": int, "seq": int, "len": int, "digest": str},
        "note": {"name": str, "data": object},
        "result": {"digest": str},
        "end": {"status": str, "error": str},
    }
    if not isinstance(kind, str) or kind not in schemas:
        raise _fail(source, index, f"unknown entry type {kind!r}")
    schema = schemas[kind]
    if set(entry) != {"i", "t", *schema}:
        raise _fail(source, index, f"a {kind} entry has the fields {sorted(entry)}")
    for k, typ in schema.items():
        v = entry[k]
        if typ is int and not _is_int(v):
            raise _fail(source, index, f"{k} must be a non-negative int")
        if typ is not int and typ is not object and not isinstance(v, typ):
            raise _fail(source, index, f"{k} must be a {typ.__name__}")
    for k in ("digest", "key", "config"):
        if k in schema and not _HEX64.match(entry[k]):
            raise _fail(source, index, f"{k} must be 64 lowercase hex digits")
    if kind == "header":
        if entry["format"] != FORMAT:
            raise _fail(source, index, f"format {entry['format']!r}, expected {FORMAT!r}")
        if entry["hash"] not in HASHES:
            raise _fail(source, index, f"frame hash {entry['hash']!r} is not one of {HASHES}")
        if not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", entry["session"]):
            raise _fail(source, index, "the session id must be lowercase hex")
        peers = entry["peers"]
        if (len(peers) > _MAX_PEERS or not all(_is_int(p) for p in peers)
                or peers != sorted(set(peers)) or entry["party"] in peers):
            raise _fail(source, index, "peers must be distinct sorted ids, not the party's own")
    if kind == "end" and (entry["status"], bool(entry["error"])) not in (("ok", False),
                                                                        ("error", True)):
        raise _fail(source, index, "an end entry is 'ok' without an error or 'error' with one")


def _public_key(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def read_transcript(
    source: str | os.PathLike[str] | bytes,
    *,
    key: bytes | None = None,
    allow_incomplete: bool = False,
    max_bytes: int | None = None,
) -> TranscriptLog:
    """Read and verify one transcript (a path, or its bytes).

    Checks, and raises :class:`~mpcai.errors.InvalidTranscript` naming the
    entry otherwise: that ``source`` is a regular file (or bytes), the size (at
    most ``max_bytes``, default :data:`MAX_TRANSCRIPT_BYTES`, each line at most
    :data:`MAX_LINE_BYTES`, checked before parsing), that every line is the
    canonical encoding of a well-formed entry, the entry numbers, the hash
    chain, every signature (under ``key``, 32 raw bytes, if given: the
    header must name that key; else under the header's own key; the header,
    notes, the result and the end entry must be signed, other lines may carry
    an empty signature, covered by the next signed head), one header first,
    and the end entry last.  With ``allow_incomplete`` a transcript without
    its end entry (a crash) is accepted as its prefix up to its last signed
    entry: the unsigned entries after it, and a cut last line, are dropped
    (:attr:`TranscriptLog.unsigned_tail` counts them).

    Without ``key`` this proves the file is intact and self-consistent, not who
    wrote it: anyone can write a new header with their own key and re-sign
    every line.  Pin the key (``key``, or ``mpcai audit verify --keys``) to
    prove the party's authorship.
    """
    max_bytes = check_int(MAX_TRANSCRIPT_BYTES if max_bytes is None else max_bytes,
                          "max_bytes", lo=1)
    if key is not None:
        key = check_bytes(key, "public key", size=32)
    if isinstance(source, (bytes, bytearray)):
        name = "<bytes>"
        if len(source) > max_bytes:
            raise _fail(name, None, f"{len(source)} bytes, more than the limit of {max_bytes}")
        return _verify_lines(_lines(io.BytesIO(bytes(source)), name, max_bytes,
                                    allow_incomplete), name, key, allow_incomplete)
    path = Path(source)
    name = str(path)
    try:  # non-blocking: a FIFO must not hang the open; checked on the open file itself
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _fail(name, None, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never end
            raise _fail(name, None, "not a regular file")
        if info.st_size > max_bytes:
            raise _fail(name, None, f"{info.st_size} bytes, more than the limit of "
                                    f"{max_bytes}")
        try:
            return _verify_lines(_lines(f, name, max_bytes, allow_incomplete), name, key,
                                 allow_incomplete)
        except OSError as exc:
            raise _fail(name, None, f"cannot read: {exc.strerror or exc}") from None


def _lines(f: IO[bytes], name: str, max_bytes: int, allow_incomplete: bool
           ) -> Iterator[bytes]:
    """The lines of ``f`` without their newlines, each read with a bound
    (:data:`MAX_LINE_BYTES`), ``max_bytes`` in all: memory stays bounded by the
    entries kept, whatever the file holds (it may grow while it is read)."""
    total = 0
    index = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            if index == 0:
                raise _fail(name, None, "empty: no header")
            return
        total += len(line)
        if total > max_bytes:
            raise _fail(name, None, f"more than the limit of {max_bytes} bytes")
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise _fail(name, index, f"a line longer than {MAX_LINE_BYTES} bytes")
            if allow_incomplete and index > 0:  # a crash in the middle of a line: drop it
                return
            raise _fail(name, None, "the last line is cut (no newline at the end)")
        yield line[:-1]
        index += 1


def _verify_lines(lines: Iterable[bytes], name: str, key: bytes | None,
                  allow_incomplete: bool) -> TranscriptLog:
    from cryptography.exceptions import InvalidSignature

    head = signed_head = _GENESIS
    signed_count = 0
    pending: list[int] = []  # unsigned lines since the last signed one
    verifier = _public_key(key) if key is not None else None
    entries: list[Entry] = []
    header: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    result: bytes | None = None
    count = 0
    for i, raw in enumerate(lines):
        count = i + 1
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise _fail(name, i, "not a JSON line") from None
        if (not isinstance(obj, dict) or set(obj) != {"e", "h", "s"}
                or not isinstance(obj["h"], str) or not isinstance(obj["s"], str)):
            raise _fail(name, i, 'a line must be {"e": entry, "h": head, "s": signature}')
        entry = obj["e"]
        _check_entry(entry, i, name)
        try:
            canon = canonical_json(obj)
        except (InvalidInput, InvalidType, ValueError):  # pragma: no cover (json made it)
            raise _fail(name, i, "not canonical JSON") from None
        if canon != raw:
            raise _fail(name, i, "the line is not in canonical form (altered bytes)")
        if end is not None:
            raise _fail(name, i, "an entry after the end entry")
        kind = entry["t"]
        if (kind == "header") != (i == 0):
            raise _fail(name, i, "the header must be the first entry, and only the first")
        if kind == "header":
            header = entry
            own = bytes.fromhex(entry["key"])
            if key is not None and own != key:
                raise _fail(name, i, f"the header names key {own.hex()[:16]}..., not the "
                                     f"pinned key {key.hex()[:16]}...")
            if verifier is None:
                try:
                    verifier = _public_key(own)
                except ValueError:
                    raise _fail(name, i, "the header's key is not an Ed25519 key") from None
        head = hashlib.sha256(head + canonical_json(entry)).digest()
        if obj["h"] != head.hex():
            raise _fail(name, i, "the hash chain breaks here (an entry was altered, removed "
                                 "or reordered)")
        if obj["s"] == "":
            if kind in _ALWAYS_SIGNED:
                raise _fail(name, i, f"a {kind} entry must be signed")
            pending.append(i)
        else:
            if not _HEX128.match(obj["s"]):
                raise _fail(name, i, "the signature must be 128 lowercase hex digits")
            assert verifier is not None
            try:
                verifier.verify(bytes.fromhex(obj["s"]), _sig_message(head))
            except InvalidSignature:
                raise _fail(name, i, "bad signature") from None
            pending.clear()
            signed_head, signed_count = head, i + 1
        if kind == "end":
            end = entry
        elif kind == "result":
            if result is not None:
                raise _fail(name, i, "a second result entry")
            result = bytes.fromhex(entry["digest"])
        entries.append(Entry(i, kind, {k: v for k, v in entry.items() if k not in ("i", "t")}))
        if kind in _DIRECTIONS and entry["peer"] not in header["peers"]:  # type: ignore[index]
            raise _fail(name, i, f"a message with party {entry['peer']}, not a peer")
    if header is None:  # pragma: no cover (an empty file is refused by _lines)
        raise _fail(name, None, "no header")
    if end is None and not allow_incomplete:
        raise _fail(name, count, "no end entry: the transcript is cut (a crash, or "
                                      "entries removed from its end)")
    tail = len(pending)
    if tail:  # only without an end entry (it is signed): drop what no signature covers
        entries = entries[:signed_count]
        head = signed_head
    return TranscriptLog(
        source=name, protocol=header["protocol"], version=header["version"],
        session=bytes.fromhex(header["session"]), party=header["party"],
        peers=tuple(header["peers"]), public_key=bytes.fromhex(header["key"]),
        config_digest=bytes.fromhex(header["config"]), entries=entries, head=head,
        complete=end is not None, status=None if end is None else end["status"],
        error="" if end is None else end["error"], result=result, pinned=key is not None,
        hash=header["hash"], unsigned_tail=tail)


def load_keys(source: str | os.PathLike[str] | Mapping[Any, Any]) -> dict[int, bytes]:
    """Pinned public keys ``{party id: 32 raw bytes}`` from a JSON file (or mapping)
    ``{"<party id>": "<64 hex digits>", ...}`` (what ``simulate(transcript=DIR)``
    writes as ``DIR/keys.json``; build it from your PKI for a real check)."""
    if isinstance(source, Mapping):
        raw: Any = dict(source)
    else:
        path = Path(source)
        data = read_file(path, "keys file", MAX_LINE_BYTES)  # (never blocks on a FIFO)
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidInput(f"{path}: not a JSON object of party id -> hex key") from None
    if not isinstance(raw, dict):
        raise InvalidInput("keys must be a JSON object of party id -> hex key")
    out: dict[int, bytes] = {}
    for k, v in raw.items():
        try:
            pid = int(k)
        except (TypeError, ValueError):
            raise InvalidInput(f"keys: {k!r} is not a party id") from None
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).hex()
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise InvalidInput(f"keys: party {pid}'s key must be 64 hex digits")
        out[pid] = bytes.fromhex(v)
    return out


@dataclass
class RunCheck:
    """What :func:`cross_check` found in the transcripts of one run."""

    protocol: str
    version: str
    session: bytes
    parties: list[int]
    #: messages whose receive and send entries both matched
    matched: int = 0
    #: ``(sender, recipient, seq, tag)`` of sends with no receive on the other side
    #: (the recipient left or refused it, or took it after its transcript ended)
    undelivered: list[tuple[int, int, int, str]] = field(default_factory=list)
    #: the peers named in headers whose transcripts were not given
    absent: list[int] = field(default_factory=list)
    #: ``(sender, recipient, seq, tag)`` of receives whose send is past the end of the
    #: sender's incomplete transcript (``allow_incomplete``: it crashed before recording
    #: it, or before its next checkpoint)
    unconfirmed: list[tuple[int, int, int, str]] = field(default_factory=list)
    #: ``{tag: {recipient: [senders]}}``: who each party heard from under each tag
    heard: dict[str, dict[int, list[int]]] = field(default_factory=dict)


def cross_check(logs: Sequence[TranscriptLog]) -> RunCheck:
    """Check several parties' transcripts of one run against each other.

    They must name one protocol, version, session and configuration digest,
    be of distinct parties whose peer lists agree, and every receive entry
    must match the send entry of its sender with the same sequence number
    (tag, length and digest); raises :class:`~mpcai.errors.InvalidTranscript`
    otherwise.  A send without a receive is not an error (the recipient may
    have dropped out) but is listed in :attr:`RunCheck.undelivered`; a receive
    whose sender's transcript is incomplete (a verified prefix) and ends before
    that send is listed in :attr:`RunCheck.unconfirmed`.
    """
    if not logs:
        raise InvalidInput("no transcripts to check")
    first = logs[0]
    by_party: dict[int, TranscriptLog] = {}
    for log in logs:
        for what in ("protocol", "version", "session", "config_digest", "hash"):
            if getattr(log, what) != getattr(first, what):
                raise _fail(log.source, None, f"its {what.replace('_', ' ')} differs from "
                                              f"{first.source}'s: not one run")
        if log.party in by_party:
            raise _fail(log.source, None, f"a second transcript of party {log.party} "
                                          f"(also {by_party[log.party].source})")
        by_party[log.party] = log
    for log in logs:
        for p in log.peers:
            other = by_party.get(p)
            if other is not None and log.party not in other.peers:
                raise _fail(log.source, None, f"names party {p} as a peer, which does not "
                                              f"name party {log.party}")
    out = RunCheck(first.protocol, first.version, first.session, sorted(by_party))
    out.absent = sorted({p for log in logs for p in log.peers} - set(by_party))
    sends: dict[tuple[int, int], dict[int, Entry]] = {}
    for log in logs:
        for e in log.messages("send"):
            stream = sends.setdefault((log.party, e["peer"]), {})
            if e["seq"] in stream:
                raise _fail(log.source, e.index, f"a second send with sequence number "
                                                 f"{e['seq']} to party {e['peer']}")
            stream[e["seq"]] = e
    for log in logs:
        seen: set[tuple[int, int]] = set()
        for e in log.messages("recv"):
            frm, seq = e["peer"], e["seq"]
            if (frm, seq) in seen:
                raise _fail(log.source, e.index, f"a second receive of sequence number {seq} "
                                                 f"from party {frm}")
            seen.add((frm, seq))
            out.heard.setdefault(e["tag"], {}).setdefault(log.party, []).append(frm)
            if frm not in by_party:
                continue
            sent = sends.get((frm, log.party), {}).get(seq)
            if sent is None and not by_party[frm].complete and seq > max(
                    sends.get((frm, log.party), {}), default=-1):
                out.unconfirmed.append((frm, log.party, seq, e["tag"]))
                continue  # the sender's verified prefix ends before it recorded this send
            if sent is None:
                raise _fail(log.source, e.index, f"received sequence number {seq} ({e['tag']!r})"
                                                 f" from party {frm}, whose transcript has no "
                                                 "such send")
            for k in ("tag", "len", "digest"):
                if sent[k] != e[k]:
                    raise _fail(log.source, e.index,
                                f"received sequence number {seq} from party {frm} with {k} "
                                f"{e[k]!r}, but party {frm} recorded sending {sent[k]!r} "
                                f"(entry {sent.index} of {by_party[frm].source})")
            out.matched += 1
        for (frm, to), stream in sends.items():
            if to != log.party:
                continue
            for seq, e in sorted(stream.items()):
                if (frm, seq) not in seen:
                    out.undelivered.append((frm, to, seq, e["tag"]))
    for senders in (s for t in out.heard.values() for s in t.values()):
        senders.sort()
    out.undelivered.sort()
    out.unconfirmed.sort()
    return out
