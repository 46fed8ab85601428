"""The party runtime: send, receive, broadcast, gather and exchange over any network.

A :class:`Party` is what protocol code talks to.  It is created with
:func:`open_party`, which connects the party to its peers over a
:class:`~mpcai.runtime.network.Network` and runs one reader task per peer.

Every message is a frame (:mod:`mpcai.runtime.wire`) bound to the session
id, a **tag** (the protocol stage or round), the sender, the recipient and
a per-direction sequence number.  The reader rejects — with
:class:`~mpcai.errors.MessageRejected`, naming the peer — a frame for
another session, from a party other than the authenticated peer, for
another recipient, out of sequence (a replay), with a tag that peer already
used, or arriving after its deadline had passed.  A rejected or malformed
frame, a closed connection or a goodbye ends that peer's link: every wait
on it raises a typed error (:class:`~mpcai.errors.WireError`,
:class:`~mpcai.errors.PeerDropped`), and the honest party carries on with
the others.

**Bounded per peer.**  A peer may keep at most
:data:`MAX_UNREAD_MESSAGES` messages, and ``max_unread_bytes`` bytes of
unsolicited ones (that no receive was waiting for), waiting unread; beyond
that it is cut off with ``MessageRejected``.  A frame is checked (session,
sender, sequence, tag, budget) from its header before its payload is
decoded; one whose decoding needs more than a little work (see
:mod:`mpcai.runtime.wire`) is decoded in a worker thread, so a peer sending
costly frames does not stall this party's other links or deadlines.

**Bounded per receive.**  ``recv``, ``gather`` and ``exchange`` take
``max_bytes``: the largest frame (its length on the wire, header and tag
included, without the link's length prefix) the protocol expects under that
tag.  A bigger one is refused from its header, before its payload is
decoded, with ``MessageRejected`` for that peer (which is then cut off, as
for any bad frame); if it had come first, unsolicited, it is refused when
the receive asks for it, and its charge against ``max_unread_bytes`` is
released.  :meth:`Party.expect` declares the bound ahead, for a message that
may arrive before its receive starts: it is then refused from its header
too.  Over TCP the link refuses it after reading at most its first MiB (see
:mod:`mpcai.runtime._link`) when the bound is known (a receive waiting, or
``expect``), and so a frame whose header alone is refused (another session,
sender or recipient, out of sequence, malformed); the in-memory network
hands over the sender's frame object, so the receiver allocates nothing for
it.  A well-formed frame under a tag nothing bounds is read whole (up to
the link's ``max_frame_bytes``), then held to ``max_unread_bytes``.

Tags are single-use per direction: each (sender, recipient, tag) carries at
most one message.  Use tags like ``"share_keys"`` or ``"round3/masked"``.

Every wait on a peer has a deadline (``timeout`` seconds, per call or the
party's default); a missed deadline raises
:class:`~mpcai.errors.PeerTimeout`.  All operations are cancellable.  A
receive that is cancelled loses nothing (the message stays in its
mailbox); a send cancelled half-way over a byte stream breaks that link.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from mpcai.errors import (
    InvalidInput,
    InvalidType,
    MessageRejected,
    MpcaiError,
    PeerDropped,
    PeerError,
    PeersMissing,
    PeerTimeout,
    WireError,
)
from mpcai.runtime import wire
from mpcai.runtime._link import TcpLink, frame_parts
from mpcai.runtime.memory import MemoryLink
from mpcai.runtime.network import Link, Network
from mpcai.runtime.stats import CommStats
from mpcai.validation import check_bytes, check_int, check_real

if TYPE_CHECKING:
    from mpcai.audit import Transcript

__all__ = ["DEFAULT_MAX_UNREAD_BYTES", "DEFAULT_TIMEOUT", "Gathered", "Party", "frame_bytes",
           "open_party"]

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: float = 60.0
"""Default deadline, in seconds, for any wait on a peer."""

_BYE_TIMEOUT = 1.0

MAX_UNREAD_MESSAGES: int = 1024
"""Messages a peer may have waiting unread before its link is cut (a memory bound)."""

DEFAULT_MAX_UNREAD_BYTES: int = 256 << 20
"""Default bound on the memory (bytes) a peer's unsolicited messages may hold.

A message is *unsolicited* if it arrives while no receive (``recv``,
``gather``, ``exchange``) is waiting for its tag.  It is charged what its
decoded payload holds (:attr:`mpcai.runtime.wire.Frame.held_bytes`) until it
is received; a peer whose unsolicited messages would exceed the budget is
cut off (:class:`~mpcai.errors.MessageRejected`).  A message some receive is
already waiting for is not charged: it is one the protocol asked for.
"""

_INLINE_WORK = 1 << 12
"""Decoding work (wire units, ~1 ms) done inline in a reader; a frame needing more is
decoded in a worker thread so that the party's other links and deadlines go on."""

_THREAD_HASH_BYTES = 1 << 20
"""Frames of at least this many bytes are hashed for a transcript in a worker thread
(hashlib and blake3 release the GIL), so the hashing overlaps the party's other work."""


SHARE_FRAME_DIGESTS = True
"""In one process, let the recipient of a large frame over a memory link reuse the digest
its sender's transcript computed of that very frame (see :class:`_SharedDigests`)."""


class _Pending:
    """One shared frame digest: set by the sender once computed (``None``: given up,
    the recipient hashes the frame itself)."""

    __slots__ = ("digest", "done", "frame", "hash", "owner")

    def __init__(self, frame: bytes, hash: str, owner: dict[int, _Pending]) -> None:
        self.frame, self.hash, self.owner = frame, hash, owner
        self.digest: bytes | None = None
        self.done = trio.Event()

    def resolve(self, digest: bytes | None) -> None:
        if not self.done.is_set():
            self.digest = digest
            self.done.set()


class _SharedDigests:
    """Digests of frames in flight over memory links, so that a frame both parties of one
    process record is hashed once, not twice.

    Sound because an entry is the frame object itself (an immutable ``bytes``, the
    one object :class:`~mpcai.runtime.memory.MemoryLink` hands the recipient) with
    the digest of exactly those bytes: the recipient gets the digest only for the
    identical object (``is``), under the same algorithm; anything else (another
    link, a copy, a wrapper that rewrote it) it hashes itself.  The sender hashes
    after handing the frame over (off the critical path, in a worker thread); a
    recipient that reads it first waits for that digest.  An entry is dropped
    when the recipient takes it, or when its sender's party closes (a recipient
    that never read it).  Over TCP each party hashes its own traffic once anyway.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Pending] = {}

    def put(self, frame: bytes, hash: str, owner: dict[int, _Pending]) -> _Pending:
        """Announce the digest of ``frame`` (to be resolved); ``owner`` is the sender's
        record of what it shared (an entry leaves it when taken)."""
        entry = self._entries[id(frame)] = owner[id(frame)] = _Pending(frame, hash, owner)
        return entry

    def take(self, frame: bytes | bytearray, hash: str) -> _Pending | None:
        if type(frame) is not bytes:
            return None
        entry = self._entries.get(id(frame))
        if entry is None or entry.frame is not frame or entry.hash != hash:
            return None
        del self._entries[id(frame)]
        entry.owner.pop(id(frame), None)
        return entry

    def forget(self, owner: dict[int, _Pending]) -> None:
        """Drop what ``owner`` shared and no recipient took (its party is closing)."""
        for key, entry in owner.items():
            if self._entries.get(key) is entry:
                del self._entries[key]
            entry.resolve(None)
        owner.clear()


_SHARED = _SharedDigests()


# an encoded payload: (buffers sent back to back, total length)
_Body = tuple[list[wire.Buffer], int]


class _Slot:
    """The mailbox for one (peer, tag): at most one message."""

    __slots__ = ("audit", "bounds", "charge", "consumed", "event", "expected", "expired",
                 "has_value", "size", "value", "waiting", "wanted")

    def __init__(self) -> None:
        self.waiting = False  # a recv is waiting
        self.wanted = 0  # receives (recv or gather) waiting
        self.charge = 0  # bytes charged to the peer's unread budget
        self.bounds: list[int] = []  # the max_bytes of the receives waiting (those that set one)
        self.expected: int | None = None  # the bound declared by Party.expect
        self.size = 0  # the length of the frame stored (bytes, without the link's framing)
        self.event = trio.Event()
        self.value: Any = None
        self.has_value = False
        self.consumed = False
        self.expired = False
        self.audit: tuple[int, int, bytes] | None = None  # (seq, length, SHA-256) if recorded


def _check_max_bytes(max_bytes: int | None) -> int | None:
    """A receive's ``max_bytes``: ``None`` or an int >= 0 (typed errors otherwise)."""
    return None if max_bytes is None else check_int(max_bytes, "max_bytes", lo=0)


def _too_big(peer: int, tag: str, size: int, max_bytes: int) -> MessageRejected:
    return MessageRejected(f"{tag!r}: frame of {size} bytes exceeds the {max_bytes} bytes "
                           f"the receive accepts", peer)


def frame_bytes(tag: str, payload_bytes: int) -> int:
    """The length of a frame under ``tag`` whose encoded payload has ``payload_bytes``
    bytes: what :meth:`Party.recv`'s ``max_bytes`` is compared with."""
    check_int(payload_bytes, "payload_bytes", lo=0)
    n = wire.HEADER_SIZE + len(tag.encode("utf-8"))
    return n + (-n % 8) + payload_bytes


class Gathered(dict[int, Any]):
    """What :meth:`Party.gather` and :meth:`Party.exchange` return.

    A dict ``{peer: obj}`` of the answers that came, plus ``missing``:
    ``{peer: error}`` for each expected peer that gave none, with the reason
    (:class:`~mpcai.errors.PeerTimeout`, :class:`~mpcai.errors.PeerDropped`,
    :class:`~mpcai.errors.WireError`).  ``missing`` is empty unless the
    call's ``min_count`` allowed partial results.
    """

    __slots__ = ("missing",)

    def __init__(self, answers: Mapping[int, Any] | None = None,
                 missing: Mapping[int, MpcaiError] | None = None) -> None:
        super().__init__(answers or {})
        self.missing: dict[int, MpcaiError] = dict(missing or {})

    def __repr__(self) -> str:
        return f"Gathered({dict.__repr__(self)}, missing={sorted(self.missing)})"


def _check_parties(tag: str, parties: tuple[int, ...], min_count: int | None) -> None:
    if len(set(parties)) != len(parties):
        raise InvalidInput(f"{tag!r}: a party is listed twice in {parties}")
    if min_count is None:
        return
    check_int(min_count, "min_count", lo=0)
    if min_count > len(parties):
        raise InvalidInput(f"{tag!r}: min_count {min_count} exceeds the {len(parties)} "
                           f"parties asked")


def _gathered(tag: str, got: dict[int, Any], missing: dict[int, MpcaiError], expected: int,
              min_count: int | None) -> Gathered:
    """The result, or :class:`PeersMissing` if fewer than ``min_count`` (default: all) answered."""
    needed = expected if min_count is None else min_count
    if len(got) < needed:
        why = ", ".join(f"party {p} ({type(e).__name__}: {e})" for p, e in sorted(missing.items()))
        raise PeersMissing(f"{tag!r}: {len(got)} of {expected} parties answered, {needed} needed; "
                           f"missing: {why}", missing)
    return Gathered(got, missing)


class Party:
    """One party of a multiparty computation, connected to its peers.

    Attributes:
        id: this party's id.
        peers: the ids of every other party, sorted.
        session: the 16-byte session id every message is bound to.
        stats: a :class:`~mpcai.runtime.stats.CommStats`, updated as frames go.
        timeout: the default deadline (seconds) for waits on a peer.
        max_unread_bytes: the per-peer budget of unsolicited unread messages
            (see :data:`DEFAULT_MAX_UNREAD_BYTES`).
        transcript: the :class:`~mpcai.audit.Transcript` every message sent and
            received is recorded in, or ``None`` (then nothing is hashed).
    """

    def __init__(
        self,
        party_id: int,
        links: Mapping[int, Link],
        session: bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        limits: wire.Limits = wire.DEFAULT_LIMITS,
        max_unread_bytes: int = DEFAULT_MAX_UNREAD_BYTES,
        transcript: Transcript | None = None,
    ) -> None:
        session = check_bytes(session, "session id", size=wire.SESSION_ID_BYTES)
        timeout = check_real(timeout, "timeout", positive=True)
        check_int(max_unread_bytes, "max_unread_bytes", lo=0)
        self.id = party_id
        self.peers: tuple[int, ...] = tuple(sorted(links))
        self.session = session
        self.stats = CommStats()
        self.timeout = float(timeout)
        self._links = dict(links)
        self._limits = limits
        self._send_seq = dict.fromkeys(self.peers, 0)
        self._recv_seq = dict.fromkeys(self.peers, 0)
        self._sent_tags: dict[int, set[str]] = {p: set() for p in self.peers}
        self._slots: dict[int, dict[str, _Slot]] = {p: {} for p in self.peers}
        self._errors: dict[int, MpcaiError] = {}
        self._send_locks = {p: trio.Lock() for p in self.peers}
        self._unread = dict.fromkeys(self.peers, 0)  # messages stored and not yet received
        self.max_unread_bytes = max_unread_bytes
        self._unread_bytes = dict.fromkeys(self.peers, 0)  # what the unsolicited ones hold
        self._last_was_send = False
        self.transcript = transcript
        #: frames whose digest this party shared and no recipient took yet (see
        #: _SharedDigests), forgotten on close
        self._shared: dict[int, _Pending] = {}
        self._reader_scopes: dict[int, trio.CancelScope] = {}
        for peer, link in self._links.items():
            if isinstance(link, TcpLink):  # refuse an oversized frame from its first MiB
                link.admit = self._admitter(peer)

    # ---- introspection ----------------------------------------------------

    @property
    def n_parties(self) -> int:
        """Number of parties in the computation (this one included)."""
        return len(self.peers) + 1

    @property
    def failed(self) -> dict[int, MpcaiError]:
        """Peers whose link has ended, with the error that ended it."""
        return dict(self._errors)

    def __repr__(self) -> str:
        return f"<Party {self.id} of {self.n_parties}, session {self.session.hex()[:8]}>"

    # ---- sending ----------------------------------------------------------

    def _check_peer(self, peer: int) -> None:
        if peer not in self._links:
            raise InvalidInput(f"party {self.id} has no peer {peer!r} (peers: {self.peers})")

    def _note_round(self) -> None:
        if not self._last_was_send:
            self.stats.rounds += 1
            self._last_was_send = True

    async def _send_body(self, to: int, tag: str, body: _Body, kind: int, timeout: float) -> None:
        self._check_peer(to)
        if to in self._errors and isinstance(self._errors[to], PeerError):
            raise self._errors[to]
        if kind == wire.FrameKind.DATA:
            if tag in self._sent_tags[to]:
                raise InvalidInput(f"tag {tag!r} already used for a message to party {to}")
            self._sent_tags[to].add(tag)
        link = self._links[to]
        shared: _Pending | None = None
        if link.send_never_blocks:
            frame = self._frame(to, tag, body, kind)
            seq = self._send_seq[to] - 1
            out: Any = frame
            if (self.transcript is not None and kind == wire.FrameKind.DATA
                    and body[1] >= _THREAD_HASH_BYTES and SHARE_FRAME_DIGESTS
                    and type(link) is MemoryLink):
                # the one immutable copy MemoryLink would make, hashed once for both sides
                out = b"".join(frame_parts(frame))
                shared = _SHARED.put(out, self.transcript.hash, self._shared)
            try:
                await link.send_frame(out)
            except BaseException as exc:
                if shared is not None:
                    shared.resolve(None)  # a recipient that got it hashes it itself
                if isinstance(exc, PeerDropped):
                    self._fail(to, exc)
                raise
        else:
            async with self._send_locks[to]:
                frame = self._frame(to, tag, body, kind)
                seq = self._send_seq[to] - 1
                try:
                    with trio.fail_after(timeout):
                        await link.send_frame(frame)
                except trio.TooSlowError as exc:
                    err = PeerTimeout(f"sending {tag!r} to party {to} timed out", to)
                    self._fail(to, err)
                    raise err from exc
                except PeerDropped as exc:
                    self._fail(to, exc)
                    raise
        if kind == wire.FrameKind.DATA:
            self.stats._count_sent(to, len(frame[0]) + body[1] + link.frame_overhead)
            if self.transcript is not None:
                if shared is not None:  # not cancellable once started: the send happened
                    result: tuple[int, bytes] | None = None
                    try:
                        result = await trio.to_thread.run_sync(self.transcript.digest,
                                                               (shared.frame,))
                    finally:  # None (cancelled before the thread ran): the recipient hashes
                        shared.resolve(None if result is None else result[1])
                    self.transcript.record("send", to, seq, tag, *result)
                elif body[1] >= _THREAD_HASH_BYTES:  # not cancellable: the send happened
                    n, digest = await trio.to_thread.run_sync(self.transcript.digest, frame)
                    self.transcript.record("send", to, seq, tag, n, digest)
                else:
                    self.transcript.record_send(to, seq, tag, frame)

    def _frame(self, to: int, tag: str, body: _Body, kind: int) -> list[wire.Buffer]:
        parts, length = body
        seq = self._send_seq[to]
        self._send_seq[to] = seq + 1
        header = wire.encode_header(
            session=self.session, tag=tag, sender=self.id, recipient=to, seq=seq,
            payload_len=length, kind=kind,
        )
        return [header, *parts]

    async def send(self, to: int, tag: str, obj: Any, *, timeout: float | None = None) -> None:
        """Send ``obj`` to party ``to`` under ``tag`` (single use per recipient)."""
        self._note_round()
        await self._send_body(to, tag, wire.encode_payload_parts(obj), wire.FrameKind.DATA,
                              self._deadline(timeout))

    async def send_many(self, tag: str, objs: Mapping[int, Any], *,
                        timeout: float | None = None) -> dict[int, MpcaiError]:
        """Send ``objs[p]`` to each party ``p`` concurrently; returns the peers that failed.

        A peer that has dropped does not stop the others: its error is
        returned (and recorded in :attr:`failed`) instead of raised.
        """
        self._note_round()
        deadline = self._deadline(timeout)
        bodies = {p: wire.encode_payload_parts(o) for p, o in objs.items()}
        return await self._send_all(tag, bodies, deadline)

    async def broadcast(self, tag: str, obj: Any, to: Iterable[int] | None = None, *,
                        timeout: float | None = None) -> dict[int, MpcaiError]:
        """Send the same ``obj`` to every peer (or those in ``to``); returns the peers that failed.

        The payload is encoded once.
        """
        self._note_round()
        body = wire.encode_payload_parts(obj)
        targets = self.peers if to is None else tuple(to)
        return await self._send_all(tag, dict.fromkeys(targets, body), self._deadline(timeout))

    async def _send_all(self, tag: str, bodies: Mapping[int, _Body],
                        timeout: float) -> dict[int, MpcaiError]:
        for p in bodies:
            self._check_peer(p)
        failures: dict[int, MpcaiError] = {}

        async def one(p: int, body: _Body) -> None:
            try:
                await self._send_body(p, tag, body, wire.FrameKind.DATA, timeout)
            except PeerError as exc:
                failures[p] = exc

        async with trio.open_nursery() as nursery:
            for p, body in bodies.items():
                nursery.start_soon(one, p, body)
        return failures

    # ---- receiving --------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        return check_real(timeout, "timeout", positive=True)

    def _slot(self, peer: int, tag: str) -> _Slot:
        slots = self._slots[peer]
        slot = slots.get(tag)
        if slot is None:
            slot = slots[tag] = _Slot()
            if peer in self._errors:
                slot.event.set()  # nothing more will come from this peer
        return slot

    def _take(self, peer: int, tag: str, slot: _Slot, max_bytes: int | None = None) -> Any:
        if slot.has_value:
            slot.consumed = True
            self._unread[peer] -= 1
            self._unread_bytes[peer] -= slot.charge
            slot.charge = 0
            value, slot.value, slot.has_value = slot.value, None, False
            if slot.expected is not None:
                max_bytes = slot.expected if max_bytes is None else min(max_bytes, slot.expected)
            if max_bytes is not None and slot.size > max_bytes:
                # it came unsolicited (or while another receive waited): refused now,
                # its charge released, and the peer cut off as for any bad frame
                err = _too_big(peer, tag, slot.size, max_bytes)
                self._cut_off(peer, err)
                raise err
            self._last_was_send = False
            if self.transcript is not None and slot.audit is not None:
                self.transcript.record("recv", peer, slot.audit[0], tag, slot.audit[1],
                                       slot.audit[2])
            return value
        if peer in self._errors:
            raise self._errors[peer]
        raise AssertionError("woken without a value or an error")  # pragma: no cover

    def expect(self, tag: str, frm: Iterable[int] | None = None, *, max_bytes: int) -> None:
        """Declare, before the receive, the largest frame ``tag`` from each of ``frm``
        (default: every peer) may be: one that arrives bigger, even before a receive
        waits for it, is refused from its header (``MessageRejected``, the peer cut
        off) instead of being decoded and held as unsolicited.

        For a message that may come before its receive starts (e.g. the replies to
        a message this party is about to send): call ``expect`` before sending.  A
        tighter ``max_bytes`` given to the receive itself still applies; a second
        ``expect`` can only tighten the bound.
        """
        sources = self.peers if frm is None else tuple(frm)
        for p in sources:
            self._check_peer(p)
        bound = _check_max_bytes(max_bytes)
        if bound is None:
            raise InvalidType("max_bytes must be an int, not None")
        for p in sources:
            slot = self._slot(p, tag)
            slot.expected = bound if slot.expected is None else min(slot.expected, bound)

    async def recv(self, frm: int, tag: str, *, timeout: float | None = None,
                   max_bytes: int | None = None) -> Any:
        """Receive the message ``frm`` sent under ``tag``.

        Raises :class:`~mpcai.errors.PeerTimeout` after the deadline (and the
        late message, if it ever comes, is rejected), or the error that ended
        the peer's link.

        ``max_bytes``: the largest frame accepted (its length in bytes:
        header, tag and encoded payload, without the link's length prefix;
        see :func:`frame_bytes` for a bound with room for the header).  A
        bigger frame is refused before its payload is decoded, and this
        raises :class:`~mpcai.errors.MessageRejected`; that peer is cut off.
        ``None``: only the :class:`~mpcai.runtime.wire.Limits` apply.
        """
        self._check_peer(frm)
        max_bytes = _check_max_bytes(max_bytes)
        slot = self._slot(frm, tag)
        if slot.consumed:
            raise InvalidInput(f"the message {tag!r} from party {frm} was already received")
        if slot.expired:
            raise PeerTimeout(f"{tag!r} from party {frm} already timed out", frm)
        if slot.waiting:
            raise InvalidInput(f"another task is already receiving {tag!r} from party {frm}")
        deadline = self._deadline(timeout)
        slot.waiting = True
        slot.wanted += 1
        if max_bytes is not None:
            slot.bounds.append(max_bytes)
        try:
            with trio.move_on_after(deadline):
                await slot.event.wait()
        finally:
            slot.waiting = False
            slot.wanted -= 1
            if max_bytes is not None:
                slot.bounds.remove(max_bytes)
        if not slot.event.is_set():
            slot.expired = True
            raise PeerTimeout(f"no {tag!r} from party {frm} within {deadline:g} s", frm)
        return self._take(frm, tag, slot, max_bytes)

    async def gather(
        self,
        tag: str,
        frm: Iterable[int] | None = None,
        *,
        timeout: float | None = None,
        min_count: int | None = None,
        max_bytes: int | None = None,
    ) -> Gathered:
        """Receive ``tag`` from every peer in ``frm`` (default: all of them).

        Waits until each of them has answered or failed, or until the
        deadline; a peer that has not answered by then is marked timed out
        (a late message from it is rejected).

        By default every one of them must answer: if any did not, this
        raises :class:`~mpcai.errors.PeersMissing`, whose ``missing`` maps
        each silent party to why (``PeerTimeout``, ``PeerDropped``,
        ``WireError``); the answers that did come are consumed.  With
        ``min_count=k``, partial results are accepted: it raises
        ``PeersMissing`` only if fewer than ``k`` answered (``min_count=0``
        accepts any subset, even none), and otherwise returns the answers
        with ``.missing`` filled in.

        ``max_bytes`` bounds each peer's frame as in :meth:`recv`: a peer
        whose frame is bigger is refused before it is decoded, cut off, and
        missing with :class:`~mpcai.errors.MessageRejected`; the others go on.

        Returns a :class:`Gathered`: ``{peer: obj}`` for the peers that
        answered, and ``.missing``, ``{peer: error}`` for the others (empty
        unless ``min_count`` let some be missing).
        """
        sources = self.peers if frm is None else tuple(frm)
        for p in sources:
            self._check_peer(p)
        _check_parties(tag, sources, min_count)
        max_bytes = _check_max_bytes(max_bytes)
        deadline = self._deadline(timeout)
        slots = {p: self._slot(p, tag) for p in sources}
        for p, slot in slots.items():
            if slot.consumed:
                raise InvalidInput(f"the message {tag!r} from party {p} was already received")
        for slot in slots.values():
            slot.wanted += 1
            if max_bytes is not None:
                slot.bounds.append(max_bytes)
        try:
            with trio.move_on_after(deadline):
                for slot in slots.values():
                    if not slot.expired:
                        await slot.event.wait()
        finally:
            for slot in slots.values():
                slot.wanted -= 1
                if max_bytes is not None:
                    slot.bounds.remove(max_bytes)
        got: dict[int, Any] = {}
        missing: dict[int, MpcaiError] = {}
        for p, slot in slots.items():
            if slot.has_value:
                try:
                    got[p] = self._take(p, tag, slot, max_bytes)
                except MessageRejected as exc:  # bigger than max_bytes
                    missing[p] = exc
            elif p in self._errors:
                missing[p] = self._errors[p]
            else:
                slot.expired = True
                missing[p] = PeerTimeout(f"no {tag!r} from party {p} within {deadline:g} s", p)
        if missing:
            _log.info("party %d: %r: %d of %d peers missing: %s", self.id, tag, len(missing),
                      len(sources), sorted(missing))
        self._last_was_send = False
        return _gathered(tag, got, missing, len(sources), min_count)

    async def exchange(self, tag: str, obj: Any, peers: Iterable[int] | None = None, *,
                       timeout: float | None = None,
                       min_count: int | None = None,
                       max_bytes: int | None = None) -> Gathered:
        """Send ``obj`` to ``peers`` (default: all) and gather theirs under the same tag.

        Every one of ``peers`` must take part unless ``min_count`` says
        otherwise, exactly as in :meth:`gather`: a peer that could not be
        sent to, or did not answer, is missing, and by default any missing
        peer raises :class:`~mpcai.errors.PeersMissing` naming it and why.
        With ``min_count=k`` the result (``{peer: obj}``, with ``.missing``)
        is returned if at least ``k`` peers answered.  ``max_bytes`` bounds
        each answer's frame as in :meth:`gather`, declared (:meth:`expect`)
        before the sends, so an answer that comes while they are under way is
        refused from its header too.
        """
        targets = self.peers if peers is None else tuple(peers)
        for p in targets:
            self._check_peer(p)
        _check_parties(tag, targets, min_count)
        max_bytes = _check_max_bytes(max_bytes)
        deadline = self._deadline(timeout)
        if max_bytes is not None:  # an answer may come while the broadcast is under way
            self.expect(tag, targets, max_bytes=max_bytes)
        failures = await self.broadcast(tag, obj, targets, timeout=deadline)
        answered = await self.gather(tag, [p for p in targets if p not in failures],
                                     timeout=deadline, min_count=0, max_bytes=max_bytes)
        missing = {p: failures[p] if p in failures else answered.missing[p]
                   for p in targets if p not in answered}
        return _gathered(tag, dict(answered), missing, len(targets), min_count)

    # ---- the reader, one task per peer --------------------------------------

    def _fail(self, peer: int, err: MpcaiError) -> None:
        if peer in self._errors:
            return
        self._errors[peer] = err
        if isinstance(err, PeerDropped):
            _log.info("party %d: peer %d dropped: %s", self.id, peer, err)
        else:  # a peer that sent what it must not: cut off
            _log.warning("party %d: peer %d cut off: %s", self.id, peer, err)
        for slot in self._slots[peer].values():
            if not slot.has_value:
                slot.event.set()

    async def _reader(self, peer: int) -> None:
        link = self._links[peer]
        with trio.CancelScope() as scope:
            self._reader_scopes[peer] = scope
            await self._read(peer, link)
        if scope.cancelled_caught:  # cut off by _cut_off
            with trio.CancelScope(shield=True):
                await link.aclose()

    async def _read(self, peer: int, link: Link) -> None:
        try:
            while True:
                data = await link.receive_frame()
                digest = None
                if self.transcript is not None and len(data) >= _THREAD_HASH_BYTES:
                    pending = _SHARED.take(data, self.transcript.hash)
                    if pending is not None:  # its sender is hashing this very object
                        await pending.done.wait()
                        digest = pending.digest
                    if digest is None:
                        digest = (await trio.to_thread.run_sync(self.transcript.digest,
                                                                (data,)))[1]
                deferred = self._deliver(peer, data, link.frame_overhead, digest)
                if deferred is not None:
                    await self._deliver_decoded_in_thread(peer, data, link.frame_overhead,
                                                          *deferred)
        except (WireError, PeerDropped) as exc:
            if isinstance(exc, WireError) and exc.peer is None:
                exc = type(exc)(str(exc), peer)
            self._fail(peer, exc)
            await link.aclose()
        except Exception as exc:  # a bug tripped by a peer's bytes: cut that peer off only
            self._fail(peer, MessageRejected(f"unprocessable frame: {exc!r}", peer))
            await link.aclose()

    def _deliver(self, peer: int, data: bytes | bytearray, overhead: int,
                 digest: bytes | None = None) -> tuple[str, _Slot] | None:
        """Check and store a frame; returns ``(tag, slot)`` if its payload needs more
        decoding work than a reader does inline (see _deliver_decoded_in_thread).
        ``digest``: the frame's digest if already computed (for a transcript)."""
        kind, session, tag, sender, recipient, seq, pos = wire._parse_header(data, self._limits)
        self._check_header(peer, session, sender, recipient, seq)
        self._recv_seq[peer] += 1
        if kind == wire.FrameKind.BYE:
            raise PeerDropped(f"party {peer} has left the session", peer)
        slot = self._slot(peer, tag)
        self._check_slot(peer, tag, slot, len(data))  # before spending work on it
        self._check_bound(peer, tag, slot, len(data))
        slot.size = len(data)
        if self.transcript is not None:  # recorded when the protocol takes it (_take)
            slot.audit = (seq, len(data), digest if digest is not None
                          else self.transcript.digest((data,))[1])
        try:
            payload, held = wire._decode_payload_at(data, memoryview(data).cast("B"), pos,
                                                    self._limits, _INLINE_WORK)
        except wire._Deferred:
            return tag, slot
        self._store(peer, tag, slot, payload, held, len(data) + overhead)
        return None

    def _check_header(self, peer: int, session: bytes, sender: int, recipient: int,
                      seq: int) -> None:
        """Refuse a frame from ``peer`` for another session, sender or recipient, or out
        of sequence (the checks of its header that need no mailbox)."""
        if session != self.session:
            raise MessageRejected(
                f"frame for session {session.hex()[:8]}, this is {self.session.hex()[:8]}", peer
            )
        if sender != peer:
            raise MessageRejected(f"frame claims to be from party {sender}", peer)
        if recipient != self.id:
            raise MessageRejected(f"frame addressed to party {recipient}", peer)
        if seq != self._recv_seq[peer]:
            raise MessageRejected(
                f"sequence number {seq}, expected {self._recv_seq[peer]} (replay?)", peer
            )

    async def _deliver_decoded_in_thread(self, peer: int, data: bytes | bytearray,
                                         overhead: int, tag: str, slot: _Slot) -> None:
        # much work: decode in a thread, so this party's other links and deadlines go on
        # (abandoned on cancellation: the work is bounded by the limits, then dropped)
        frame = await trio.to_thread.run_sync(wire.decode_frame, data, self._limits,
                                              abandon_on_cancel=True)
        if slot.expired:  # it came in time, but its receive gave up while it was decoded
            return
        self._store(peer, tag, slot, frame.payload, frame.held_bytes, len(data) + overhead)

    def _store(self, peer: int, tag: str, slot: _Slot, payload: Any, held: int,
               wire_bytes: int) -> None:
        charge = self._check_slot(peer, tag, slot, held)
        self._unread[peer] += 1
        self._unread_bytes[peer] += charge
        slot.charge = charge
        self.stats._count_received(peer, wire_bytes)
        slot.value, slot.has_value = payload, True
        slot.event.set()

    def _check_bound(self, peer: int, tag: str, slot: _Slot, frame_bytes: int) -> None:
        """Refuse a frame bigger than what a receive waiting for ``slot`` accepts, or
        than :meth:`expect` declared."""
        bounds = slot.bounds if slot.expected is None else [*slot.bounds, slot.expected]
        if bounds and frame_bytes > min(bounds):
            raise _too_big(peer, tag, frame_bytes, min(bounds))

    def _admitter(self, peer: int) -> Any:
        def admit(start: memoryview, n: int) -> None:
            """Refuse, from its header, a frame of ``n`` bytes that _deliver would refuse
            whole for its header alone: malformed, for another session, sender or
            recipient, out of sequence, a second or late message under its tag, or
            bigger than the receive waiting for its tag (or :meth:`expect`) accepts.
            Only checks whose outcome cannot change before the frame is all in (the
            unread budget can: a receive may start meanwhile)."""
            _, session, tag, sender, recipient, seq, _ = wire._peek_header(start, n,
                                                                           self._limits)
            self._check_header(peer, session, sender, recipient, seq)
            slot = self._slots[peer].get(tag)
            if slot is not None:
                if slot.has_value or slot.consumed or slot.expired:
                    self._check_slot(peer, tag, slot, n)  # raises: second or late
                self._check_bound(peer, tag, slot, n)
        return admit

    def _cut_off(self, peer: int, err: MpcaiError) -> None:
        """End ``peer``'s link from outside its reader (a frame refused when received)."""
        self._fail(peer, err)
        scope = self._reader_scopes.get(peer)
        if scope is not None:
            scope.cancel()

    def _check_slot(self, peer: int, tag: str, slot: _Slot, nbytes: int) -> int:
        """Whether a message for ``slot`` holding ``nbytes`` may be stored; returns its charge."""
        if slot.has_value or slot.consumed:
            raise MessageRejected(f"second message with tag {tag!r}", peer)
        if slot.expired:
            raise MessageRejected(f"{tag!r} arrived after its deadline", peer)
        if self._unread[peer] >= MAX_UNREAD_MESSAGES:
            raise MessageRejected(f"more than {MAX_UNREAD_MESSAGES} messages waiting unread", peer)
        if slot.wanted:
            return 0
        if self._unread_bytes[peer] + nbytes > self.max_unread_bytes:
            raise MessageRejected(
                f"unsolicited messages would hold more than {self.max_unread_bytes} bytes "
                f"({self._unread_bytes[peer]} waiting unread, then {tag!r} of {nbytes})", peer)
        return nbytes

    async def _say_goodbye(self) -> None:
        async def bye(p: int) -> None:
            if p in self._errors:
                return
            try:
                await self._send_body(p, "", ([b"\x00"], 1), wire.FrameKind.BYE, _BYE_TIMEOUT)
            except PeerError:
                pass

        with trio.move_on_after(_BYE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for p in self.peers:
                    nursery.start_soon(bye, p)


@asynccontextmanager
async def open_party(
    network: Network,
    party_id: int,
    session: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    limits: wire.Limits = wire.DEFAULT_LIMITS,
    max_unread_bytes: int = DEFAULT_MAX_UNREAD_BYTES,
    transcript: Transcript | None = None,
) -> AsyncIterator[Party]:
    """Connect ``party_id`` to its peers on ``network`` and yield its :class:`Party`.

    On exit the party says goodbye to its peers (so they see
    :class:`~mpcai.errors.PeerDropped` at once instead of waiting for a
    deadline) and closes its links.  With ``transcript`` (a
    :class:`~mpcai.audit.Transcript`), its header is written once the links
    are up, every message is recorded, and its end entry (``ok`` or the
    party's error) is written on exit.
    """
    failure: Exception | None = None
    ended: BaseException | None = None
    async with network.open_links(party_id) as links:
        party = Party(party_id, links, session, timeout=timeout, limits=limits,
                      max_unread_bytes=max_unread_bytes, transcript=transcript)
        if transcript is not None:  # outside the nursery: its error is raised as it is
            transcript.begin(session=session, party=party_id, peers=party.peers)
        async with trio.open_nursery() as nursery:
            for peer in party.peers:
                nursery.start_soon(party._reader, peer)
            _log.debug("party %d: session %s open with peers %s", party_id,
                       session.hex()[:8], list(party.peers))
            try:
                yield party
            except Exception as exc:
                # re-raised below, outside the nursery, so that the caller
                # sees the party's own exception rather than an ExceptionGroup
                failure = exc
                _log.debug("party %d: leaving on %s: %s", party_id, type(exc).__name__, exc)
            except BaseException as exc:  # a cancellation: recorded, then it goes on
                ended = exc
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await party._say_goodbye()
                if transcript is not None:
                    transcript.close(failure if failure is not None else ended)
                if party._shared:
                    _SHARED.forget(party._shared)
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
