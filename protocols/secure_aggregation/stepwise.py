"""Secure aggregation one message at a time, for hosts that drive the round trips.

Frameworks such as Flower deliver each server message to a client call that
keeps nothing in memory between messages (only a byte store per node), and
let the server send a batch of messages and collect the replies
(``send_and_receive``).  This module runs the *same* stage functions as
:func:`~mpcai.protocols.secure_aggregation.client` and
:func:`~mpcai.protocols.secure_aggregation.server` on such a host:

* a client is :func:`client_begin` (on the first message: it advertises its
  keys and returns its state as bytes) then :func:`client_step` for each later
  message (state in, reply and new state out).  The state holds this client's
  secrets for the round (its X25519 private keys until its shares are dealt, its
  round signing key, self-mask seed, pairwise keys, the shares it holds; never its
  long-term identity key) and its update: keep it where only this client can read
  it, and delete it when the round ends;
* a state is **single-use**: stepping the same state twice (a message
  delivered twice, concurrently) would use the same masks or shares for two
  different replies.  A host that may run two steps of one client at once
  must claim each ``(session, stage)`` atomically before stepping (the Flower
  integration does, with a node-local file);
* the server is :func:`run_server`, given ``round_trip(tag, outgoing)``: deliver
  ``outgoing[client]`` (a list of ``(tag, object)`` the server sent that client
  since the last round trip; empty for the first one) and return ``{client:
  reply}`` for the clients that answered with a message of stage ``tag``; one that
  did not answer in time is a dropout.  With ``transcript`` (an
  :class:`mpcai.audit.Transcript` the host began for party 0 of the round's
  session), the server records every message it sends and every reply it is
  given, as the runtime's parties do: the message's stage tag, a sequence number
  per client and direction (from 0), and the digest of the message's
  :mod:`~mpcai.runtime.wire` encoding (the same whatever the host carries it in),
  then the round's outcome and result, as :func:`simulate` does
  (``mpcai audit verify`` checks the stage sequence).

With ``SecAggConfig.dp`` the round is the same (every weight 1; the state carries
the DPConfig); :func:`dp_guarantee` gives a DP round's privacy before it runs, from
the configuration alone (what a client checks against its own floor).

The threat model is the protocol's (see the package docstring): the host
transports messages and stores each client's state, and learns nothing the
server does not.  Every value is encoded with :mod:`mpcai.runtime.wire` (no
pickle); a malformed message or state is refused with a typed error.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mpcai import audit, dp
from mpcai.errors import InvalidInput, PeerDropped, ProtocolAbort, WireError
from mpcai.runtime import Gathered, wire
from mpcai.validation import check_bytes, check_int, check_real

from . import _crypto, _dp
from .client import (
    ClientState,
    _quantised,
    advertise_keys,
    consistency_check,
    flatten_update,
    masked_input,
    share_keys,
    unmask,
)
from .config import SecAggConfig
from .server import AggregateResult, server
from .simulation import _record_result
from .stages import LEGAL, Stage, StageMachine

__all__ = ["RoundTrip", "client_begin", "client_step", "dp_guarantee", "next_stage",
           "run_server"]

SERVER = 0
_STATE_VERSION = 5
#: a state's first two bytes: its version and its stage's index here (read by
#: :func:`next_stage` without decoding the rest; :func:`client_step` checks both)
_STAGES = tuple(Stage)

RoundTrip = Callable[[str, Mapping[int, list[tuple[str, Any]]]], Mapping[int, Any]]
"""``round_trip(tag, outgoing) -> {client: reply}``: see the module docstring."""

# the client stage that consumes the server's message of each stage
_NEXT: dict[str, Stage] = {
    Stage.ADVERTISE_KEYS.value: Stage.SHARE_KEYS,
    Stage.SHARE_KEYS.value: Stage.MASKED_INPUT,
    Stage.CONSISTENCY_CHECK.value: Stage.CONSISTENCY_CHECK,
    Stage.UNMASK.value: Stage.UNMASK,
}


# ---- the client ------------------------------------------------------------------


class _OneMessage:
    """A client's view of one round trip: the server's messages in, one reply out."""

    def __init__(self, me: int, session: bytes, incoming: Mapping[str, Any]) -> None:
        self.id = me
        self.session = session
        self._incoming = dict(incoming)
        self.sent: list[tuple[str, Any]] = []

    async def recv(self, frm: int, tag: str, *, timeout: float | None = None) -> Any:
        if frm != SERVER or tag not in self._incoming:
            raise ProtocolAbort(f"the server's message for {tag!r} is missing")
        return self._incoming.pop(tag)

    async def send(self, to: int, tag: str, obj: Any, *, timeout: float | None = None) -> None:
        self.sent.append((tag, obj))


def _raw_x25519(sk: Any) -> bytes:
    if sk is None or isinstance(sk, bytes):  # bytes: kept undecoded (see _decode_state)
        return b"" if sk is None else sk
    return _crypto.x25519_private_bytes(sk)


def _raw_ed25519(sk: Any) -> bytes:
    if sk is None or isinstance(sk, bytes):
        return b"" if sk is None else sk
    return sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


# A round's configuration is the same in every state of every client: encoded once and
# decoded once per process (a few hundred microseconds a step otherwise).
_CFG_CACHE_SIZE = 8
_cfg_lock = threading.Lock()
_cfg_bytes: dict[int, tuple[SecAggConfig, bytes]] = {}  # id(cfg) -> (cfg, its encoding)
_cfg_objects: dict[bytes, SecAggConfig] = {}  # an encoding -> its (immutable) config


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    with _cfg_lock:
        if key not in cache and len(cache) >= _CFG_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = value


def _encode_cfg(cfg: SecAggConfig) -> bytes:
    hit = _cfg_bytes.get(id(cfg))
    if hit is not None and hit[0] is cfg:  # the cache holds cfg: its id is not reused
        return hit[1]
    d = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if d["identities"] is not None:
        d["identities"] = {int(k): bytes(v) for k, v in d["identities"].items()}
    if d.get("dp") is not None:
        # SecAggConfig(dp=...) accepts the dict back
        d["dp"] = dataclasses.asdict(d["dp"])
    raw = wire.encode_payload(d)
    _remember(_cfg_bytes, id(cfg), (cfg, raw))
    return raw


def _decode_cfg(raw: Any) -> SecAggConfig:
    raw = bytes(raw)
    cfg = _cfg_objects.get(raw)
    if cfg is None:
        cfg = SecAggConfig(**wire.decode_payload(raw))
        _remember(_cfg_objects, raw, cfg)
        _remember(_cfg_bytes, id(cfg), (cfg, raw))
    return cfg


#: the private keys each stage uses (the others stay raw bytes in a decoded state)
_KEYS_FOR = {Stage.SHARE_KEYS: ("c_sk", "s_sk", "e_sk"), Stage.CONSISTENCY_CHECK: ("e_sk",)}


def _encode_state(state: ClientState, update: np.ndarray, weight: int) -> bytes:
    ids = lambda s: np.array(sorted(s), dtype=np.uint32)  # noqa: E731
    head = bytes([_STATE_VERSION, _STAGES.index(state.machine.stage)])
    return head + wire.encode_payload({
        "version": _STATE_VERSION, "cfg": _encode_cfg(state.cfg), "me": state.me,
        "session": state.session,
        "stage": state.machine.stage.value, "c_sk": _raw_x25519(state.c_sk),
        "s_sk": _raw_x25519(state.s_sk), "e_sk": _raw_ed25519(state.e_sk),
        "self_seed": state.self_seed, "signing_keys": dict(state.signing_keys),
        "graph": ids(state.graph), "u2": ids(state.u2), "signed_u3": ids(state.signed_u3),
        "share_keys": dict(state.share_keys), "mask_seeds": dict(state.mask_seeds),
        "held": dict(state.held), "length": state.length, "clipped": state.clipped,
        "update": update, "weight": weight,
    })


def _decode_state(blob: bytes, for_stage: Stage | None = None
                  ) -> tuple[ClientState, np.ndarray, int]:
    """A state's contents; with ``for_stage``, only the private keys that stage uses are
    loaded (loading an X25519 key computes its public key), the others kept as their raw
    bytes (for :func:`_encode_state`)."""
    stage = _state_stage(blob)
    try:
        d = wire.decode_payload(memoryview(blob)[2:])
        if d["version"] != _STATE_VERSION or d["stage"] != stage.value:
            raise InvalidInput("the client state's header does not match its payload")
        state = ClientState(cfg=_decode_cfg(d["cfg"]), me=int(d["me"]),
                            session=bytes(d["session"]))
        state.machine = StageMachine()
        state.machine.stage = Stage(d["stage"])
        load = None if for_stage is None else _KEYS_FOR.get(for_stage, ())
        for name, loader in (("c_sk", _crypto.x25519_from_bytes),
                             ("s_sk", _crypto.x25519_from_bytes),
                             ("e_sk", Ed25519PrivateKey.from_private_bytes)):
            raw = bytes(d[name])
            setattr(state, name, None if not raw else loader(raw)
                    if load is None or name in load else raw)
        state.self_seed = bytes(d["self_seed"])
        state.signing_keys = {int(k): bytes(v) for k, v in d["signing_keys"].items()}
        state.graph = frozenset(int(i) for i in d["graph"])
        state.u2 = frozenset(int(i) for i in d["u2"])
        state.signed_u3 = frozenset(int(i) for i in d["signed_u3"])
        state.share_keys = {int(k): bytes(v) for k, v in d["share_keys"].items()}
        state.mask_seeds = {int(k): bytes(v) for k, v in d["mask_seeds"].items()}
        state.held = {int(k): np.asarray(v, dtype=np.uint64) for k, v in d["held"].items()}
        state.length = int(d["length"])
        state.clipped = int(d["clipped"])
        return state, d["update"], int(d["weight"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"not a secure-aggregation client state: {exc!r}") from exc
    except WireError as exc:
        raise InvalidInput(f"not a secure-aggregation client state: {exc}") from exc


def _state_stage(blob: bytes) -> Stage:
    """The stage a client state is at, from its two-byte header alone."""
    blob = check_bytes(blob, "state")
    if len(blob) < 2 or blob[0] != _STATE_VERSION or blob[1] >= len(_STAGES):
        raise InvalidInput(f"not a secure-aggregation client state of version "
                           f"{_STATE_VERSION}")
    return _STAGES[blob[1]]


def _run_stage(coro_fn: Callable[[], Any]) -> None:
    """Run a client stage to completion without an event loop (its only awaits are on
    :class:`_OneMessage`, which never suspends), so a host may call it from inside its
    own loop -- even a trio run, e.g. a server and clients in one process."""
    coro = coro_fn()
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a client stage waited on something other than its one message")


def client_begin(cfg: SecAggConfig, me: int, session: bytes,
                 update: np.ndarray | Mapping[str, np.ndarray] | None = None,
                 weight: int | None = None, *,
                 identity_key: Any = None) -> tuple[Any, bytes]:
    """The client's first stage (advertise its keys) for a round of ``session``.

    ``me`` is this client's id in ``1..cfg.n_clients`` (the host assigns them),
    ``update`` its model update and ``weight`` its integer weight (e.g. its
    number of examples, at most ``cfg.max_weight``; 1 if not given), both
    checked now and kept in the state until they are sent masked.  Without
    ``update`` (``cfg.dim`` must then be set), the update and weight are given
    to the :func:`client_step` of stage ``"masked_input"`` instead: the state
    stays small until then, and the client may train after the key exchange.
    Returns ``(message for the server, state)``: send the message as this
    client's answer to stage ``"advertise_keys"`` and keep the state (bytes)
    for :func:`client_step`.
    """
    if not isinstance(cfg, SecAggConfig):
        raise InvalidInput("cfg must be a SecAggConfig")
    me = check_int(me, "client id", lo=1, hi=cfg.n_clients)
    session = check_bytes(session, "session", size=wire.SESSION_ID_BYTES)
    if update is None:
        if weight is not None:
            raise InvalidInput("a weight without an update: give both now, or both to the "
                               "masked_input step")
        if cfg.dim is None:
            raise InvalidInput("an update given later needs cfg.dim (its length)")
        vec, length = None, cfg.dim
    else:
        weight = check_int(1 if weight is None else weight, "weight", lo=1, hi=cfg.max_weight)
        vec = flatten_update(update)
        if cfg.dim is not None and vec.size != cfg.dim:
            raise InvalidInput(f"the update has {vec.size} values, the configuration says "
                               f"dim={cfg.dim}")
        length = int(vec.size)
    state = ClientState(cfg=cfg, me=me, session=session, length=length)
    if isinstance(identity_key, bytes):
        identity_key = Ed25519PrivateKey.from_private_bytes(identity_key)
    state.identity = identity_key
    host = _OneMessage(me, session, {})
    # bad values refused before any key is made; the state keeps the quantised,
    # weighted vector (the float update is not needed again)
    if vec is None:  # weight 0 in the state: the update comes with the masked_input step
        quantised, weight = np.zeros(0, dtype=np.uint64), 0
    else:
        assert weight is not None
        quantised = _quantised(state, vec, weight)
    _run_stage(lambda: advertise_keys(host, state))  # type: ignore[arg-type]
    (_, message), = host.sent
    return message, _encode_state(state, quantised, weight)


def client_step(state: bytes, incoming: Mapping[str, Any],
                update: np.ndarray | Mapping[str, np.ndarray] | None = None,
                weight: int | None = None) -> tuple[str, Any, bytes]:
    """The client's next stage: ``incoming`` holds the server's messages of one round trip
    (``{stage: object}``).  Returns ``(stage of the reply, reply, new state)``; once the
    reply's stage is ``"unmask"`` the round is over for this client: delete the state.
    The caller checks that the messages belong to this state's round (their session).
    ``update`` and ``weight`` (1 if not given) go to the step whose reply is
    ``"masked_input"`` (:func:`next_stage` tells) if :func:`client_begin` had none,
    and only then.

    Raises :class:`~mpcai.errors.ProtocolAbort` (or a subclass) if the server's
    messages are malformed or contradict earlier ones: the client then stops
    answering this round (a dropout), and its secrets never leave it.
    """
    stage = Stage(next_stage(incoming))
    st, held, held_weight = _decode_state(state, stage)
    deferred = held_weight == 0  # client_begin had no update: it comes with masked_input
    if (update is not None or weight is not None) and not (
            deferred and stage is Stage.MASKED_INPUT):
        raise InvalidInput("an update goes only to the masked_input step of a client "
                           "that began without one")
    host = _OneMessage(st.me, st.session, incoming)
    if stage is Stage.SHARE_KEYS:
        _run_stage(lambda: share_keys(host, st))  # type: ignore[arg-type]
        # its shares are dealt and its pairwise secrets derived: the X25519 private keys
        # are not needed again, so they do not stay in the state
        st.c_sk = st.s_sk = None
    elif stage is Stage.MASKED_INPUT and deferred:
        if update is None:
            raise InvalidInput("this client began without an update: give it to this step")
        weight = check_int(1 if weight is None else weight, "weight", lo=1,
                           hi=st.cfg.max_weight)
        vec = flatten_update(update)
        if vec.size != st.length:
            raise InvalidInput(f"the update has {vec.size} values, the round has {st.length}")
        held_weight = weight
        _run_stage(lambda: masked_input(host, st, vec, weight))  # type: ignore[arg-type]
    elif stage is Stage.MASKED_INPUT:
        vec = held if held.flags.writeable else held.copy()  # masked in place
        _run_stage(lambda: masked_input(host, st, None, held_weight,  # type: ignore[arg-type]
                                        quantised=vec))
    elif stage is Stage.CONSISTENCY_CHECK:
        _run_stage(lambda: consistency_check(host, st))  # type: ignore[arg-type]
    else:
        _run_stage(lambda: unmask(host, st))  # type: ignore[arg-type]
    (tag, reply), = host.sent
    if stage is not Stage.SHARE_KEYS:  # the masked update is sent: keep no copy of it
        held = np.zeros(0, dtype=held.dtype)
    return tag, reply, _encode_state(st, held, held_weight)


def next_stage(incoming: Mapping[str, Any], state: bytes | None = None) -> str:
    """The stage of the reply :func:`client_step` gives to the server's messages
    ``incoming`` (a host that trains late calls it to know when the update is due).
    With ``state``, also check that this client may take that stage now (raises
    :class:`~mpcai.errors.ProtocolAbort` if not, e.g. a masked_input before
    share_keys or a second time), before the host does any work for it."""
    if state is not None:  # the state's header only: client_step decodes (and checks) it
        now = _state_stage(state)
        stage = Stage(next_stage(incoming))
        if stage not in LEGAL[now]:
            raise ProtocolAbort(f"this client is at {now.value}: "
                                f"{stage.value} cannot come now")
        return stage.value
    if not isinstance(incoming, Mapping) or not incoming:
        raise ProtocolAbort("no message from the server")
    # the message that starts the next stage (a consistency check comes before unmask)
    order = [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.CONSISTENCY_CHECK, Stage.UNMASK]
    tags = [s.value for s in order if s.value in incoming]
    if not tags:
        raise ProtocolAbort(f"unexpected server messages {sorted(map(str, incoming))}")
    return _NEXT[tags[0]].value


def dp_guarantee(cfg: SecAggConfig, dim: int, honest_survivors: int | None = None, *,
                 delta: float | None = None) -> dp.RoundPrivacy:
    """The privacy record of a DP round of ``cfg`` (``cfg.dp`` set) on updates of ``dim``
    values *before it runs*, with the noise of ``honest_survivors`` honest clients in the
    sum (default: the fewest the round can unmask with, ``cfg.min_honest_survivors``),
    ``epsilon`` at ``delta`` (default ``cfg.dp.delta``; ``RoundPrivacy.delta`` adds the
    sampler's distance as the server's record does, :func:`mpcai.dp.sampler_delta`).
    Every client adds the noise ``cfg`` prescribes (``sigma_client``, calibrated for
    ``cfg.min_honest_survivors``): a host whose own adversary counts more corrupt
    clients than the server declared passes the honest survivors it believes in and
    gets a larger epsilon.  What a
    client checks against its own floor (the Flower mod) and a server may report in
    advance; ``clipped_clients`` is 0.  Raises :class:`~mpcai.errors.InvalidInput`
    without ``cfg.dp`` or if the round cannot run (no grid meets the wrap-around bound:
    too few ``dp.bits`` for the clients and values).
    """
    if not isinstance(cfg, SecAggConfig) or cfg.dp is None:
        raise InvalidInput("dp_guarantee needs a SecAggConfig with dp")
    dim = check_int(dim, "dim", lo=1)
    honest = cfg.min_honest_survivors if honest_survivors is None else check_int(
        honest_survivors, "honest_survivors", lo=1, hi=cfg.n_clients)
    delta = cfg.dp.delta if delta is None else check_real(delta, "delta", positive=True)
    if not delta < 1:
        raise InvalidInput(f"delta must be in (0, 1), got {delta}")
    p = _dp.params(cfg, dim)
    eps_z = dp.ddg_epsilon(p.l2_sensitivity, p.sigma_client, honest, p.d_pad)
    # every client that may survive samples noise: the corrupt ones count for the sampler
    tv = dp.sampler_tv_bound(p.sigma_client) * p.d_pad * min(cfg.n_clients,
                                                             honest + cfg.corrupt_clients)
    eps = dp.PrivacyAccountant(delta).add_round(eps_z)
    return dp.RoundPrivacy(epsilon=eps, delta=dp.sampler_delta(delta, eps, tv),
                           epsilon_zcdp=eps_z, honest_survivors=honest,
                           sigma_client=p.sigma_client,
                           sigma_present=p.sigma_client * math.sqrt(honest), gamma=p.gamma,
                           l2_sensitivity=p.l2_sensitivity,
                           wrap_probability=p.wrap_probability, sampler_tv=tv,
                           clipped_clients=0)


# ---- the server ------------------------------------------------------------------


class _Hub:
    """The server's view of a host that batches messages into round trips."""

    def __init__(self, session: bytes, clients: Sequence[int], round_trip: RoundTrip,
                 transcript: audit.Transcript | None = None) -> None:
        self.id = SERVER
        self.session = session
        self.peers = tuple(sorted(clients))
        self._round_trip = round_trip
        self._out: dict[int, list[tuple[str, Any]]] = {}
        self._replies: dict[str, dict[int, Any]] = {}
        self.transcript = transcript
        self._seq: dict[tuple[str, int], int] = {}

    def _record(self, direction: str, cid: int, tag: str, obj: Any) -> None:
        """One message in the transcript: the digest of ``obj``'s wire encoding."""
        assert self.transcript is not None
        parts, _ = wire.encode_payload_parts(obj)
        length, digest = self.transcript.digest(parts)
        seq = self._seq.get((direction, cid), 0)
        self._seq[direction, cid] = seq + 1
        self.transcript.record(direction, cid, seq, tag, length, digest)

    def _queue(self, tag: str, objs: Mapping[int, Any]) -> None:
        for cid, obj in objs.items():
            self._out.setdefault(int(cid), []).append((tag, obj))

    async def send_many(self, tag: str, objs: Mapping[int, Any], *,
                        timeout: float | None = None) -> None:
        self._queue(tag, objs)

    async def broadcast(self, tag: str, obj: Any, to: Sequence[int] | None = None, *,
                        timeout: float | None = None) -> None:
        self._queue(tag, {cid: obj for cid in (self.peers if to is None else to)})

    def _ensure(self, tag: str, ids: Sequence[int]) -> dict[int, Any]:
        if tag not in self._replies:
            outgoing = self._out or {int(cid): [] for cid in ids}
            self._out = {}
            if self.transcript is not None:  # sent once handed to the host (as the
                # runtime records a frame handed to its link), even if the host then fails
                for cid, items in sorted(outgoing.items()):
                    for item_tag, obj in items:
                        self._record("send", cid, item_tag, obj)
            got = self._round_trip(tag, outgoing)
            replies = self._replies[tag] = {int(cid): reply for cid, reply in dict(got).items()
                                            if int(cid) in outgoing}
            if self.transcript is not None:
                for cid in sorted(replies):
                    self._record("recv", cid, tag, replies[cid])
        return self._replies[tag]

    async def gather(self, tag: str, peers: Sequence[int] | None = None, *,
                     timeout: float | None = None, min_count: int | None = None) -> Gathered:
        ids = list(self.peers if peers is None else peers)
        got = self._ensure(tag, ids)
        answers = {cid: got[cid] for cid in ids if cid in got}
        missing = {cid: PeerDropped(f"client {cid} did not answer {tag!r}", cid)
                   for cid in ids if cid not in got}
        if missing and min_count is None:
            raise next(iter(missing.values()))
        return Gathered(answers, missing)

    async def recv(self, frm: int, tag: str, *, timeout: float | None = None) -> Any:
        got = self._ensure(tag, [frm])
        if frm not in got:
            raise PeerDropped(f"client {frm} did not answer {tag!r}", frm)
        return got[frm]


def run_server(cfg: SecAggConfig, session: bytes, round_trip: RoundTrip, *,
               transcript: audit.Transcript | None = None) -> AggregateResult:
    """Run the server of one round on a host: ``round_trip`` carries each stage's messages
    (see the module docstring); clients are ``1..cfg.n_clients``.  Returns the
    :class:`~mpcai.protocols.secure_aggregation.AggregateResult`, or raises as
    :func:`~mpcai.protocols.secure_aggregation.server` does (e.g.
    :class:`~mpcai.errors.NotEnoughSurvivors`).  ``transcript``: the server's audit
    transcript of this round, begun by the host as party 0 of ``session`` with the
    clients as peers (see the module docstring); the host closes it."""
    if not isinstance(cfg, SecAggConfig):
        raise InvalidInput("cfg must be a SecAggConfig")
    session = check_bytes(session, "session", size=wire.SESSION_ID_BYTES)
    clients = range(1, cfg.n_clients + 1)
    if transcript is not None:
        if not isinstance(transcript, audit.Transcript):
            raise InvalidInput("transcript must be an mpcai.audit.Transcript")
        if (transcript.session != session or transcript.party != SERVER
                or transcript.closed):
            raise InvalidInput("transcript must be begun for party 0 of this round's "
                               "session, and open")
    hub = _Hub(session, clients, round_trip, transcript)
    agg = trio.run(lambda: server(hub, cfg))  # type: ignore[arg-type]
    if transcript is not None:
        _record_result(transcript, agg)
    return agg
