"""Protocol-aware verification of audit transcripts (``mpcai audit verify``).

:mod:`mpcai.audit` checks a transcript's bytes: canonical lines, the hash
chain, the signatures, and that several parties' transcripts of one run agree
message by message.  This module adds what needs the protocols: that the
stage sequence each party recorded is legal for the protocol its header
names (:data:`RULES`), and who took part in each stage.  :func:`verify` runs
everything over one run's files.

Threat model: as :mod:`mpcai.audit`.  A legal stage sequence says the party
recorded messages in an order the protocol allows; it does not say their
contents were honest (a transcript holds digests, not contents).  Keys prove
who signed only when pinned (``keys``: a PKI, e.g. ``SecAggConfig.identities``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpcai.protocols.secure_aggregation.stages import LEGAL, Stage

from mpcai.audit import RunCheck, TranscriptLog, cross_check, load_keys, read_transcript
from mpcai.errors import InvalidInput, InvalidTranscript

__all__ = ["RULES", "AuditReport", "check_he_aggregation", "check_he_inference",
           "check_inference", "check_replicated",
           "check_robust_aggregation", "check_secure_aggregation", "check_stages",
           "stage_participants", "verify"]


def _is_id(v: object) -> bool:
    """A party id as a transcript records it (bools and other hashables are not)."""
    return type(v) is int and v >= 0


def _bad(log: TranscriptLog, index: int | None, why: str) -> InvalidTranscript:
    where = f"entry {index}: " if index is not None else ""
    return InvalidTranscript(f"{log.source}: {where}{why}", source=log.source, entry=index)


def _one_tag_per_stream(log: TranscriptLog) -> None:
    seen: set[tuple[str, int, str]] = set()
    for e in log.messages():
        key = (e.type, e["peer"], e["tag"])
        if key in seen:
            raise _bad(log, e.index, f"a second {e.type} of {e['tag']!r} with party "
                                     f"{e['peer']} (each tag is used once per direction)")
        seen.add(key)


def check_secure_aggregation(log: TranscriptLog) -> None:
    """The stage rules of secure aggregation (:mod:`~mpcai.protocols.secure_aggregation`).

    Party 0 is the server, with every client as a peer; a client talks to
    the server only (its other peers, on a full mesh such as TCP, stay
    silent).  Every message's tag is a stage of :class:`Stage`; the
    stages of the party's messages, in the order recorded (consecutive
    repeats merged), must walk the :data:`LEGAL` transitions from ``setup``;
    the server sends nothing under ``masked_input``; every survivor the
    server's outcome note names sent it a masked input; a server that ended
    ``ok`` reached ``unmask`` and recorded a result.  Raises
    :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    if log.party == 0:
        if not log.peers:
            raise _bad(log, 0, "the server (party 0) must have the clients as peers")
    elif 0 not in log.peers:
        raise _bad(log, 0, "a client must have the server (party 0) as a peer")
    _one_tag_per_stream(log)
    stages = {s.value: s for s in Stage if s not in (Stage.SETUP, Stage.DONE)}
    current = Stage.SETUP
    for e in log.messages():
        stage = stages.get(e["tag"])
        if stage is None:
            raise _bad(log, e.index, f"{e['tag']!r} is not a stage of secure aggregation")
        if log.party == 0 and e.type == "send" and stage is Stage.MASKED_INPUT:
            raise _bad(log, e.index, "the server sent a masked input")
        if log.party != 0 and e["peer"] != 0:
            raise _bad(log, e.index, f"client {log.party} exchanged {e['tag']!r} with "
                                     f"party {e['peer']}, not the server")
        if stage is current:
            continue
        if stage not in LEGAL[current]:
            raise _bad(log, e.index, f"illegal stage sequence: {current.value} cannot be "
                                     f"followed by {stage.value}")
        current = stage
    if log.party == 0:  # a survivor's masked input is in the sum: it must have been received
        got = set(stage_participants(log).get(Stage.MASKED_INPUT.value, []))
        for note in log.notes("outcome"):
            survivors = note.get("survivors") if isinstance(note, dict) else None
            if not isinstance(survivors, list) or not all(_is_id(s) for s in survivors):
                raise _bad(log, None, "the outcome note names no survivors")
            phantom = sorted(set(survivors) - got, key=str)
            if phantom:
                raise _bad(log, None, f"the outcome names survivors {phantom} whose masked "
                                      "input the server never recorded receiving")
    if log.party == 0 and log.status == "ok":
        if current is not Stage.UNMASK:
            raise _bad(log, None, f"the server ended ok at {current.value}, before unmask")
        if log.result is None:
            raise _bad(log, None, "the server ended ok without recording a result")


_MPC2_SETUP = {"wmask-owner", "x-mask", "offline", "model"}
_MPC2_START = {"ready", "x"}
_MPC2_ANY = re.compile(r"dl/(?:hello|answer|extend|cot)\Z")
_MPC2_LAYER = re.compile(r"(?:relu|open)/([0-9]{1,18})\Z|dl/relu([0-9]{1,18})/[a-z0-9-]+\Z")


def check_inference(log: TranscriptLog) -> None:
    """The stage rules of two-party private inference (:mod:`~mpcai.protocols.inference`,
    with a dealer or dealerless).

    Every tag is ``inf2/<name>`` of the protocol and used once per direction
    and peer.  On each stream (one direction, one peer) the phases come in
    order: setup (``wmask-owner``, ``x-mask``, ``offline``, ``model``), start
    (``ready``, ``x``), the layers (``relu/<i>``, ``open/<i>``, the dealerless
    ``dl/relu<i>/...``) in non-decreasing layer order, then ``out``; the
    oblivious-transfer setup (``dl/hello``, ...) may come at any point.  (Each
    stream only: the roles one party plays run concurrently.)  Raises
    :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    _one_tag_per_stream(log)
    rank: dict[tuple[str, int], tuple[int, int]] = {}
    for e in log.messages():
        tag, stream = e["tag"], (e.type, e["peer"])
        name = tag[len("inf2/"):] if tag.startswith("inf2/") else None
        if name is None:
            raise _bad(log, e.index, f"{tag!r} is not a tag of two-party inference")
        if _MPC2_ANY.match(name):
            continue
        m = _MPC2_LAYER.match(name)
        if name in _MPC2_SETUP:
            now = (0, 0)
        elif name in _MPC2_START:
            now = (1, 0)
        elif m is not None:
            now = (2, int(m.group(1) or m.group(2)))
        elif name == "out":
            now = (3, 0)
        else:
            raise _bad(log, e.index, f"{tag!r} is not a tag of two-party inference")
        before = rank.get(stream, (0, 0))
        if now < before:
            raise _bad(log, e.index, f"illegal stage sequence: {tag!r} after a later stage on "
                                     f"the {e.type} stream with party {e['peer']}")
        if before[0] == 3:
            raise _bad(log, e.index, f"{tag!r} after the output")
        rank[stream] = now


_REP3 = re.compile(r"rep3/(?:([0-9]{1,18})(?:/[0-9]{1,18})?"
                   r"|(in|out)/([0-9]{1,18})/([0-9]{1,18}))\Z")


def check_replicated(log: TranscriptLog) -> None:
    """The stage rules of three-party inference on replicated shares (``mpc3``).

    Every tag is ``rep3/<step>[/<k>]``, ``rep3/in/<owner>/<k>`` or
    ``rep3/out/<owner>/<k>``, used once per direction and peer; every compute
    party runs one program, so the steps of its messages never decrease, nor
    the input and output counters of each owner.  Raises
    :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    _one_tag_per_stream(log)
    step = 0
    io: dict[tuple[str, int], int] = {}
    for e in log.messages():
        m = _REP3.match(e["tag"])
        if m is None:
            raise _bad(log, e.index, f"{e['tag']!r} is not a tag of three-party inference")
        if m.group(1) is not None:
            now = int(m.group(1))
            if now < step:
                raise _bad(log, e.index, f"illegal stage sequence: step {now} after {step}")
            step = now
        else:
            key, k = (m.group(2), int(m.group(3))), int(m.group(4))
            if k < io.get(key, 0):
                raise _bad(log, e.index, f"illegal stage sequence: {e['tag']!r} after "
                                         f"{key[0]} {io[key]} of party {key[1]}")
            io[key] = k


_ROBUST_RANK = {"robust/share": 0, "robust/present": 1, "robust/coin-commit": 2,
                "robust/coin-open": 3, "robust/sum": 5, "robust/verdict": 6}
_ROBUST_CHECK = re.compile(r"robust/(?:ot-hello|ot-answer|ot-extend|cot|cmp/[a-z0-9/-]+)\Z")


def check_robust_aggregation(log: TranscriptLog) -> None:
    """The stage rules of robust aggregation (:mod:`~mpcai.protocols.robust_aggregation`).

    Parties 0 and 1 are the servers, the others clients.  A client sends only
    ``robust/share`` to the two servers, then receives only ``robust/verdict``
    from server 0.  A server's messages come in the order of its stages:
    ``share`` (from clients), ``present``, ``coin-commit``, ``coin-open``, the
    two-party check (``ot-*``, ``cot``, ``cmp/...``, in any order among
    themselves), ``sum``, then (server 0) ``verdict`` to clients; only the two
    servers talk to each other; a server that ended ``ok`` exchanged the sum and
    recorded a result.  Raises :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    _one_tag_per_stream(log)
    servers = (0, 1)
    client = log.party not in servers
    rank = 0
    for e in log.messages():
        tag, peer = e["tag"], e["peer"]
        if client:
            ok = (peer in servers and ((e.type == "send" and tag == "robust/share")
                                       or (e.type == "recv" and tag == "robust/verdict"
                                           and peer == 0)))
            now = 0 if tag == "robust/share" else 6
        else:
            now = _ROBUST_RANK.get(tag, 4 if _ROBUST_CHECK.match(tag) else -1)
            with_client = peer not in servers
            ok = now >= 0 and with_client == (now in (0, 6)) and (
                now != 0 or e.type == "recv") and (now != 6 or (e.type == "send"
                                                                and log.party == 0))
        if not ok:
            raise _bad(log, e.index, f"a {e.type} of {tag!r} with party {peer} is not a "
                                     "message of robust aggregation")
        if now < rank:
            raise _bad(log, e.index, f"illegal stage sequence: {tag!r} after a later stage")
        rank = now
    if not client and log.status == "ok":
        if rank < 5:
            raise _bad(log, None, "the server ended ok before the sum was exchanged")
        if log.result is None:
            raise _bad(log, None, "the server ended ok without recording a result")


_HE_INF = re.compile(r"he-inference/(?:(plan|keys|ready)|(query|result)/([0-9]{1,18}))\Z")
_HE_INF_SETUP = {"plan": 0, "keys": 1, "ready": 2}


def check_he_inference(log: TranscriptLog) -> None:
    """The stage rules of CKKS inference (:mod:`~mpcai.protocols.inference.he`).

    Party 0 is the client, party 1 the server, each the other's only peer.
    Every tag is ``he-inference/<step>``; the messages come in the protocol's
    one order: ``plan`` (server to client), ``keys`` (client to server),
    ``ready`` (server to client), then per batch ``i = 0, 1, ...`` in turn
    ``query/i`` (client to server) and ``result/i`` (server to client).
    Raises :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    if log.party not in (0, 1) or log.peers != (1 - log.party,):
        raise _bad(log, 0, "CKKS inference runs between party 0 (client) and 1 (server)")
    _one_tag_per_stream(log)
    client = log.party == 0
    want = 0  # the position of the next message in the one legal order
    for e in log.messages():
        m = _HE_INF.match(e["tag"])
        if m is None:
            raise _bad(log, e.index, f"{e['tag']!r} is not a tag of CKKS inference")
        if m.group(1) is not None:
            pos, from_client = _HE_INF_SETUP[m.group(1)], m.group(1) == "keys"
        else:
            pos = 3 + 2 * int(m.group(3)) + (m.group(2) == "result")
            from_client = m.group(2) == "query"
        if (e.type == "send") != (from_client == client):
            raise _bad(log, e.index, f"a {e.type} of {e['tag']!r} by the "
                                     f"{'client' if client else 'server'}")
        if pos != want:
            raise _bad(log, e.index, f"illegal stage sequence: {e['tag']!r} out of order")
        want += 1
    if log.status == "ok" and (want < 3 or want % 2 == 0):
        raise _bad(log, None, "ended ok before the setup or in the middle of a batch")


_HE_AGG = re.compile(r"(input|decrypt)(?:/([0-9]{1,18}))?\Z")


def check_he_aggregation(log: TranscriptLog) -> None:
    """The stage rules of homomorphic aggregation (:mod:`~mpcai.protocols.he_aggregation`).

    Party 0 is the aggregator; every other party talks to it only, and is
    either a client (it sends ``input`` once, receives nothing) or a
    committee member (it receives decryption requests ``decrypt``,
    ``decrypt/2``, ... and answers a request only after receiving it, in
    non-decreasing attempts).  The aggregator receives the inputs before any
    decryption message, sends no input, and takes an answer under a tag only
    after sending that request to the member.  Raises
    :class:`~mpcai.errors.InvalidTranscript` otherwise.
    """
    _one_tag_per_stream(log)
    hub = log.party == 0
    if not hub and log.peers != (0,):
        raise _bad(log, 0, "a client or committee member talks to the aggregator (0) only")
    role: str | None = None  # for a non-hub party: client or member
    decrypting, attempt = False, 0
    asked: set[tuple[int, str]] = set()
    for e in log.messages():
        m = _HE_AGG.match(e["tag"])
        if m is None or (m.group(1) == "input" and m.group(2) is not None) or (
                m.group(2) is not None and int(m.group(2)) < 2):
            raise _bad(log, e.index, f"{e['tag']!r} is not a tag of HE aggregation")
        now = 1 if m.group(2) is None else int(m.group(2))
        kind, peer = m.group(1), e["peer"]
        if hub:
            ok = (kind == "input" and e.type == "recv" and not decrypting) or (
                kind == "decrypt" and (e.type == "send" or (peer, e["tag"]) in asked))
            if kind == "decrypt":
                decrypting = True
                if e.type == "send":
                    asked.add((peer, e["tag"]))
        else:
            this = "client" if kind == "input" else "member"
            ok = (role in (None, this) and (
                (kind == "input" and e.type == "send")
                or (kind == "decrypt" and now >= attempt
                    and (e.type == "recv" or (0, e["tag"]) in asked))))
            role = this
            if kind == "decrypt":
                attempt = now
                if e.type == "recv":
                    asked.add((0, e["tag"]))
        if not ok:
            raise _bad(log, e.index, f"a {e.type} of {e['tag']!r} with party {peer} is not a "
                                     "legal step of HE aggregation here")
    if hub and log.status == "ok" and log.result is None:
        raise _bad(log, None, "the aggregator ended ok without recording a result")


RULES: dict[str, Callable[[TranscriptLog], None]] = {
    "secure_aggregation": check_secure_aggregation,
    "inference-dealer": check_inference,
    "inference-dealerless": check_inference,
    "inference-replicated": check_replicated,
    "robust_aggregation": check_robust_aggregation,
    "inference-he": check_he_inference,
    "he_aggregation": check_he_aggregation,
}
"""The stage check of each protocol, by the name transcripts give in their header."""


def check_stages(log: TranscriptLog) -> None:
    """The stage check of the protocol ``log``'s header names (:data:`RULES`); an unknown
    protocol is refused (:class:`~mpcai.errors.InvalidTranscript`)."""
    rule = RULES.get(log.protocol)
    if rule is None:
        raise _bad(log, 0, f"no stage rules for protocol {log.protocol!r} (known: "
                           f"{', '.join(sorted(RULES))})")
    rule(log)


def stage_participants(log: TranscriptLog) -> dict[str, list[int]]:
    """``{tag: [peers this party received it from]}``, tags in first-seen order (for
    the secure-aggregation server: who took part in each stage)."""
    out: dict[str, list[int]] = {}
    for e in log.messages("recv"):
        out.setdefault(e["tag"], []).append(e["peer"])
    return {t: sorted(p) for t, p in out.items()}


@dataclass
class AuditReport:
    """What :func:`verify` found: every transcript verified, and the run's cross-check."""

    logs: list[TranscriptLog]
    run: RunCheck
    #: ``{stage: [clients]}`` who took part in each stage, as the hub (party 0) recorded
    participants: dict[str, list[int]] = field(default_factory=dict)
    #: ``{stage: [clients]}`` who took part in the previous stage but not this one
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """One line per transcript, then the run's lines."""
        lines = []
        for log in self.logs:
            state = "complete" if log.complete else (
                "INCOMPLETE (a verified prefix"
                + (f"; {log.unsigned_tail} unsigned entries after it dropped"
                   if log.unsigned_tail else "") + ")")
            res = f", result {log.result.hex()[:16]}..." if log.result else ""
            err = f" ({log.error})" if log.error else ""
            key = "pinned key" if log.pinned else "key from its own header (not pinned)"
            lines.append(f"party {log.party}: {log.protocol}/{log.version}, "
                         f"{len(log.entries)} entries, {state}, {log.status or 'no end'}{err}"
                         f"{res}, {key}")
        r = self.run
        lines.append(f"run {r.session.hex()[:16]}...: {len(r.parties)} transcripts, "
                     f"{r.matched} messages match on both sides, {len(r.undelivered)} "
                     f"sends not received"
                     + (f", {len(r.unconfirmed)} receives past the end of an incomplete "
                        "sender's transcript" if r.unconfirmed else "")
                     + (f", no transcript of parties {r.absent}" if r.absent else ""))
        for stage, who in self.participants.items():
            gone = self.dropped.get(stage, [])
            lines.append(f"  {stage}: {len(who)} took part"
                         + (f", dropped: {gone}" if gone else ""))
        return lines


def _expand(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    paths: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            # natural order: party-2 before party-10
            found = sorted(p.glob("*.jsonl"), key=lambda f: [
                (0, int(part), "") if part.isdigit() else (1, 0, part)
                for part in re.split(r"(\d+)", f.name)])
            if not found:
                raise InvalidInput(f"{p}: no transcripts (*.jsonl) in this directory")
            paths.extend(found)
        else:
            paths.append(p)
    if not paths:
        raise InvalidInput("no transcripts given")
    return paths


def verify(
    sources: Sequence[str | os.PathLike[str]],
    *,
    keys: Mapping[int, bytes] | str | os.PathLike[str] | None = None,
    key: bytes | None = None,
    allow_incomplete: bool = False,
    session: bytes | None = None,
    max_bytes: int | None = None,
) -> AuditReport:
    """Verify the transcripts of one run (files, or directories of ``*.jsonl``).

    Each transcript: :func:`mpcai.audit.read_transcript` (canonical lines,
    chain, signatures; under its pinned key if ``keys`` (``{party: key}`` or
    a keys file, see :func:`mpcai.audit.load_keys`) names its party, and
    then every party must be named) and :func:`check_stages`.  Together:
    :func:`mpcai.audit.cross_check`.  ``key`` pins the key of a single
    transcript.  ``max_bytes`` bounds each transcript read (default
    :data:`mpcai.audit.MAX_TRANSCRIPT_BYTES`).  ``session`` (the run's session
    id) refuses transcripts of any other run: without it an old run's
    transcripts, replayed whole, verify as well as the new ones (they are
    genuine, just not of the run in question).
    Raises :class:`~mpcai.errors.InvalidTranscript` at the first failure.

    What it proves: with pinned keys, that each party signed exactly this
    record and that the parties' records agree message by message (a party
    that recorded a digest other than what its peer recorded is exposed, as
    is one that hid a message its peer recorded); without pinned keys only
    that the files are intact and mutually consistent: whoever can write
    them can replace a header's key and re-sign.  It never proves a message's
    content was honest: transcripts hold digests.
    """
    paths = _expand(sources)
    pinned = None if keys is None else load_keys(keys)
    if key is not None and len(paths) != 1:
        raise InvalidInput("key pins one transcript's key; use keys for several")
    logs = []
    for p in paths:
        log = read_transcript(p, key=key, allow_incomplete=allow_incomplete,
                              max_bytes=max_bytes)
        if session is not None and log.session != session:
            raise InvalidTranscript(f"{p}: of session {log.session.hex()}, not the expected "
                                    f"{session.hex()} (another run's transcript)",
                                    source=str(p))
        if pinned is not None:  # the signatures were checked under the header's key
            if log.party not in pinned:
                raise InvalidTranscript(f"{p}: party {log.party} has no pinned key",
                                        source=str(p))
            if log.public_key != pinned[log.party]:
                raise InvalidTranscript(f"{p}: party {log.party} signed with key "
                                        f"{log.public_key.hex()[:16]}..., not its pinned key "
                                        f"{pinned[log.party].hex()[:16]}...", source=str(p))
            log.pinned = True
        check_stages(log)
        logs.append(log)
    report = AuditReport(logs, cross_check(logs))
    hub = next((log for log in logs if log.party == 0), None)
    if hub is not None and hub.protocol == "robust_aggregation":
        clients = [p for p in hub.peers if p != 1]
        sent = stage_participants(hub).get("robust/share", [])
        report.participants = {"robust/share": sent}
        report.dropped = {"robust/share": sorted(set(clients) - set(sent))}
    if hub is not None and hub.protocol == "secure_aggregation":
        report.participants = stage_participants(hub)
        before = list(hub.peers)
        for stage, who in report.participants.items():
            report.dropped[stage] = sorted(set(before) - set(who))
            before = who
    return report

