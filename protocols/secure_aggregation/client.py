"""The client role of secure aggregation: one function per stage over an explicit state."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpcai import encoding, prg
from mpcai.errors import InvalidInput, InvalidType, NotEnoughSurvivors, ProtocolAbort
from mpcai.runtime import Party
from mpcai.sharing import shamir

from . import _crypto, _dp
from .config import CLIPPED_COUNT_CAP, SecAggConfig
from .stages import Stage, StageMachine

__all__ = ["ClientState", "client", "flatten_update"]

_log = logging.getLogger(__name__)

SERVER = 0

# ---- the largest frame each receive accepts (Party.recv/gather max_bytes) -----------
#
# Generous bounds from the configuration, not tight ones: each is what an honest
# message can hold, with every per-entry size at least doubled, plus _FRAMING for the
# frame's header, tag and payload encoding.  A frame beyond its bound is refused from
# its header before it is decoded (the sender is cut off), so no party makes another
# hold more than about what the protocol lets it send.

_FRAMING = 4096
#: an Ed25519 signature, a key, a commitment: any one small field, doubled
_SMALL = 2 * 64
#: one dealt share blob (commitment, nonce, sealed shares and tag) with its dict key,
#: doubled
_BLOB = 2 * (_crypto.COMMITMENT_BYTES + 12 + 8 + 16 * _crypto.SHARE_ELEMENTS + 16 + 16)
#: one row of an unmask answer (an id, a share), doubled
_SHARE_ROW = 2 * (4 + 8 * _crypto.SHARE_ELEMENTS)


def max_frame(cfg: SecAggConfig, stage: Stage, *, to_server: bool, length: int = 0) -> int:
    """The largest frame (bytes) a party accepts at ``stage``: sent by a client to the
    server (``to_server``) or by the server to a client; ``length`` is the update's
    length (the masked input's only).  ``k`` neighbours, ``n`` clients:

    ============================  ===================================================
    to the server                 advertise keys, consistency check: 4 small fields;
                                  share keys: k blobs; masked input: the vector
                                  (``wire_length`` values of 4 or 8 bytes, or
                                  ``packed_bytes`` with dp or in Z_2^24); unmask:
                                  2 (k + 1) rows
    to a client                   advertise keys: k + 1 keys and signatures;
                                  share keys: k blobs and k ids; consistency check:
                                  n ids; unmask: n + k ids and k + 1 signatures
    ============================  ===================================================

    Each plus :data:`_FRAMING`, every size above counted at least twice.
    """
    k, n = cfg.neighbours, cfg.n_clients
    if to_server:
        if stage is Stage.MASKED_INPUT:
            if _dp.packed_bits(cfg) is not None:
                body = _dp.packed_bytes(cfg, length)
            else:
                body = _dp.wire_length(cfg, length) * cfg.ring_bits // 8  # 32 or 64
        elif stage is Stage.SHARE_KEYS:
            body = k * _BLOB
        elif stage is Stage.UNMASK:
            body = 2 * (k + 1) * _SHARE_ROW
        else:  # ADVERTISE_KEYS (3 keys, a signature, the length), CONSISTENCY_CHECK
            body = 5 * _SMALL
    elif stage is Stage.ADVERTISE_KEYS:
        body = (k + 1) * (8 + 4 * _SMALL)
    elif stage is Stage.SHARE_KEYS:
        body = k * (_BLOB + 8)
    elif stage is Stage.CONSISTENCY_CHECK:
        body = 8 * n
    else:  # UNMASK: the dropped neighbours, the survivors, their signatures
        body = 8 * (n + k + 1) + (k + 1) * (_SMALL + 16)
    return body + _FRAMING


def bounded(party: Any, max_bytes: int) -> dict[str, int]:
    """``{"max_bytes": max_bytes}`` for a :class:`~mpcai.runtime.Party`, else nothing
    (the stepwise adapters, whose messages come through the host's own transport)."""
    return {"max_bytes": max_bytes} if isinstance(party, Party) else {}

@dataclass
class ClientState:
    """Everything one client holds during one aggregation."""

    cfg: SecAggConfig
    me: int
    session: bytes
    machine: StageMachine = field(default_factory=StageMachine)
    c_sk: Any = None
    s_sk: Any = None
    e_sk: Any = None
    self_seed: bytes = b""
    #: the neighbours' (and this client's) Ed25519 keys, for the consistency check only
    signing_keys: dict[int, bytes] = field(default_factory=dict)
    graph: frozenset[int] = frozenset()
    u2: frozenset[int] = frozenset()
    # pairwise keys with each neighbour (one X25519 exchange each, computed once)
    share_keys: dict[int, bytes] = field(default_factory=dict)
    mask_seeds: dict[int, bytes] = field(default_factory=dict)
    # shares this client holds for its neighbours: {v: (b-share values, s-share values)}
    #: (one (2, elements) array each: row 0 the self-mask seed's share, row 1 the mask key's)
    held: dict[int, np.ndarray] = field(default_factory=dict)
    signed_u3: frozenset[int] = frozenset()
    #: the number of values in this client's update
    length: int = 0
    identity: Any = None
    clipped: int = 0


def flatten_update(update: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
    """A model update (an array, or a dict of named arrays) as one float vector
    (float32 stays float32, so a large update is not copied to float64; anything
    else becomes float64).

    Dicts are flattened in sorted key order, so every party agrees on it.
    """
    def flat(a: object) -> np.ndarray:
        arr = np.asarray(a)
        if arr.dtype not in (np.float32, np.float64):
            if arr.dtype.kind not in "biuf":  # strings, objects, complex: not an update
                raise InvalidType(f"an update must hold real numbers, not {arr.dtype}")
            arr = arr.astype(np.float64)
        return arr.ravel()

    if isinstance(update, Mapping):
        if not update:
            raise InvalidInput("the update dict is empty")
        return np.concatenate([flat(update[k]) for k in sorted(update)])
    return flat(update)


def _ctx(state: ClientState) -> bytes:
    return state.session


# ---- stages ------------------------------------------------------------------


async def advertise_keys(party: Party, state: ClientState) -> None:
    """Send this client's public keys (share encryption, masking, signing) to the server."""
    state.machine.advance(Stage.ADVERTISE_KEYS)
    state.c_sk, c_pk = _crypto.x25519_keypair()
    state.s_sk, s_pk = _crypto.x25519_keypair()
    e_pk = b""
    if state.cfg.consistency_check:
        state.e_sk, e_pk = _crypto.ed25519_keypair()
    sig = b""
    if state.cfg.identities is not None:
        if state.identity is None:
            raise InvalidInput("this configuration has identities: the client needs its "
                               "identity_key")
        sig = state.identity.sign(_crypto.key_message(state.session, state.me,
                                                      (c_pk, s_pk, e_pk)))
    # the update's length too: the server fixes the length from the majority before any
    # vector arrives (a few cheaters cannot crowd out the honest length later)
    await party.send(SERVER, Stage.ADVERTISE_KEYS.value, [c_pk, s_pk, e_pk, sig, state.length])


#: what parsing a malformed server message raises (an array where a dict was expected:
#: IndexError; an infinite id: OverflowError), each turned into ProtocolAbort
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


async def share_keys(party: Party, state: ClientState) -> None:
    """Receive everyone's keys; send Shamir shares of this client's secrets to its neighbours.

    The shares of the self-mask seed and of the masking private key travel
    encrypted (ChaCha20-Poly1305 under an X25519 key shared with the
    recipient; associated data binds session, stage, sender and recipient).
    """
    state.machine.advance(Stage.SHARE_KEYS)
    raw = await party.recv(SERVER, Stage.ADVERTISE_KEYS.value, **bounded(
        party, max_frame(state.cfg, Stage.ADVERTISE_KEYS, to_server=False)))
    try:
        keys = _crypto.unpack_keys(raw["keys"])
        sigs = raw["sigs"]
    except _MALFORMED as exc:
        raise ProtocolAbort("the server sent a malformed key list") from exc
    # the neighbours follow from the session alone; those without keys did not advertise
    mine_all = _crypto.Graph(state.session, state.cfg.n_clients,
                             state.cfg.neighbours).neighbours(state.me)
    if not set(keys) - {state.me} <= mine_all:
        raise ProtocolAbort("the server sent keys for other clients than this one's neighbours")
    if state.cfg.identities is not None:  # (every id now a neighbour's: it has an identity)
        order = sorted(keys)
        if not isinstance(sigs, bytes) or len(sigs) != 64 * len(order):
            raise ProtocolAbort("the server did not forward the key signatures")
        for j, cid in enumerate(order):
            if not _crypto.verify(state.cfg.identities[cid], sigs[64 * j:64 * j + 64],
                                  _crypto.key_message(state.session, cid, keys[cid])):
                raise ProtocolAbort(f"client {cid}'s keys are not signed by its identity key")
    mine = keys.get(state.me)
    own = (state.c_sk.public_key().public_bytes(*_crypto._RAW),
           state.s_sk.public_key().public_bytes(*_crypto._RAW),
           state.e_sk.public_key().public_bytes(*_crypto._RAW) if state.e_sk else b"")
    if mine != own:
        raise ProtocolAbort("the server's key list does not hold this client's own keys")
    state.graph = frozenset(keys) - {state.me}
    if state.cfg.consistency_check:
        state.signing_keys = {v: k[2] for v, k in keys.items()}
    try:  # both pairwise keys now: a low-order key aborts before any share is sent
        for v in state.graph:
            ctx = _crypto.pair_context(state.session, state.me, v)
            state.share_keys[v] = _crypto.agree(state.c_sk, keys[v][0], "secagg/share", ctx)
            state.mask_seeds[v] = _crypto.agree(state.s_sk, keys[v][1], "secagg/mask", ctx)
    except InvalidInput as exc:
        raise ProtocolAbort("the server sent an unusable (low-order) public key") from exc
    t = state.cfg.threshold
    if len(state.graph) + 1 < t:
        raise NotEnoughSurvivors(f"only {len(state.graph)} neighbours advertised keys, "
                                 f"{t - 1} needed")
    state.self_seed = prg.new_seed()
    # shares for the neighbours and one for this client itself (SecAgg+): a survivor's
    # own self-mask share counts toward the threshold at unmask
    points = sorted(state.graph | {state.me})
    b_shares = shamir.share_bytes(state.self_seed, t, len(points), points=points)
    s_raw = _crypto.x25519_private_bytes(state.s_sk)
    s_shares = shamir.share_bytes(s_raw, t, len(points), points=points)
    out: dict[int, bytes] = {}
    for v, bs, ss in zip(points, b_shares, s_shares, strict=True):
        if v == state.me:  # copies: the rows would keep the whole share arrays alive
            state.held[v] = np.stack([bs.values, ss.values])
            continue
        key = state.share_keys[v]
        plain = struct.pack("<II", state.me, v) + bs.values.tobytes() + ss.values.tobytes()
        # the commitment in the clear (the server keeps it), the shares sealed for v
        out[v] = (_crypto.share_commitment(state.session, state.me, v, bs.values, ss.values)
                  + _crypto.seal(key, plain, _crypto.ad(state.session,
                                                        Stage.SHARE_KEYS.value, state.me, v)))
    await party.send(SERVER, Stage.SHARE_KEYS.value, out)


def _quantised(state: ClientState, update: np.ndarray, weight: int) -> np.ndarray:
    cfg = state.cfg
    x = flatten_update(update)
    if cfg.dim is not None and x.size != cfg.dim:
        raise InvalidInput(f"the update has {x.size} values, the configuration says {cfg.dim}")
    if cfg.dp is not None:
        if weight != 1:
            raise InvalidInput(f"with dp every weight is 1, got {weight}")
        vec, was_clipped = _dp.encode(cfg, state.session, x)
        state.clipped = int(was_clipped)
        return vec
    dtype = np.uint64 if cfg.ring_bits == 64 else np.uint32  # fits: checked by the config
    # [weight x quantised values..., clipped count (saturated), weight]: the count is
    # masked too, so the server learns how many values were clipped in all, no more
    vec = np.empty(x.size + 2, dtype=dtype)
    # weight x the levels straight into the vector, in one pass in C (no temporaries);
    # NaN and inf raise here.  The clipped count compares the values as float64, as the
    # clipping does (a float32 compared with clip rounded to float32 could miss one)
    clipped = encoding.quantize_into(x, vec[:-2], clip=cfg.clip, bits=cfg.bits,
                                     out_of_range=cfg.out_of_range, weight=weight)
    state.clipped = clipped
    vec[-2] = min(clipped, CLIPPED_COUNT_CAP)
    vec[-1] = weight
    return vec


async def masked_input(party: Party, state: ClientState, update: np.ndarray | None,
                       weight: int, *, quantised: np.ndarray | None = None) -> None:
    """Store the shares received; send the weighted, quantised update under its masks.
    ``quantised``: the vector ``_quantised`` made of ``update`` earlier (then ``update``
    is not needed; it is consumed: the masks are added in place)."""
    state.machine.advance(Stage.MASKED_INPUT)
    if not (isinstance(weight, (int, np.integer)) and 1 <= weight <= state.cfg.max_weight):
        raise InvalidInput(f"weight must be an int in [1, {state.cfg.max_weight}], got {weight}")
    if quantised is None:
        vec = _quantised(state, update, int(weight))  # bad input fails before anything is sent
    else:
        want = np.uint64 if state.cfg.ring_bits == 64 else np.uint32
        if (quantised.dtype != want or quantised.ndim != 1
                or quantised.size != _dp.wire_length(state.cfg, state.length)
                or int(quantised[-1]) != int(weight)):
            raise InvalidInput("the quantised update does not match this client's round")
        vec = quantised
    msg = await party.recv(SERVER, Stage.SHARE_KEYS.value, **bounded(
        party, max_frame(state.cfg, Stage.SHARE_KEYS, to_server=False)))
    try:
        blobs: dict[int, bytes] = dict(msg["blobs"])
        u2 = frozenset(int(i) for i in msg["u2"]) | {state.me}  # neighbours in U2, and me
    except _MALFORMED as exc:
        raise ProtocolAbort("the server sent a malformed share_keys message") from exc
    if not u2 - {state.me} <= state.graph:
        raise ProtocolAbort("the server's survivor list names clients that are not neighbours")
    state.u2 = u2
    for u, blob in blobs.items():
        if u not in state.graph or u not in u2:
            continue
        if not isinstance(blob, bytes) or len(blob) < _crypto.COMMITMENT_BYTES:
            continue
        commitment, sealed = blob[:_crypto.COMMITMENT_BYTES], blob[_crypto.COMMITMENT_BYTES:]
        plain = _crypto.open_sealed(state.share_keys[u], sealed, _crypto.ad(
            state.session, Stage.SHARE_KEYS.value, u, state.me))
        if (plain is None or len(plain) != 8 + 16 * _crypto.SHARE_ELEMENTS
                or struct.unpack("<II", plain[:8]) != (u, state.me)):
            continue  # tampered, misdirected or malformed: this neighbour's shares are not held
        body = np.frombuffer(plain[8:], dtype="<u8").astype(np.uint64)
        pair = body.reshape(2, _crypto.SHARE_ELEMENTS)
        if np.any(body >= np.uint64(shamir.FIELD_P)) or commitment != _crypto.share_commitment(
                state.session, u, state.me, pair[0], pair[1]):
            continue  # not the shares u committed to: not held (u's fault, not ours)
        state.held[u] = pair
    threads, ring = state.cfg.threads, state.cfg.mask_bits
    prg.ring_accumulate(vec, state.self_seed, +1, threads=threads, bits=ring)
    for v in sorted(state.graph & u2):
        prg.ring_accumulate(vec, state.mask_seeds[v], +1 if state.me < v else -1,
                            threads=threads, bits=ring)
    # the pairwise keys have done their work: keep no secret longer than needed
    state.share_keys.clear()
    state.mask_seeds.clear()
    packed = _dp.packed_bits(state.cfg)
    if packed is not None:  # only the residues mod 2^bits count: that many bits a value
        await party.send(SERVER, Stage.MASKED_INPUT.value, _dp.pack(vec, packed))
        return
    await party.send(SERVER, Stage.MASKED_INPUT.value, vec)


def _survivor_message(session: bytes, u3: list[int]) -> bytes:
    return b"mpcai/secagg/u3|" + session + struct.pack(f"<{len(u3)}I", *u3)


async def consistency_check(party: Party, state: ClientState) -> None:
    """Sign the survivor list the server announced (Ed25519)."""
    state.machine.advance(Stage.CONSISTENCY_CHECK)
    raw = await party.recv(SERVER, Stage.CONSISTENCY_CHECK.value, **bounded(
        party, max_frame(state.cfg, Stage.CONSISTENCY_CHECK, to_server=False)))
    try:
        u3 = sorted(int(i) for i in raw)
    except _MALFORMED as exc:
        raise ProtocolAbort("the server sent a malformed survivor list") from exc
    if len(set(u3)) != len(u3) or not set(u3) & state.graph <= state.u2:
        raise ProtocolAbort("the survivor list contradicts the earlier one")
    state.signed_u3 = frozenset(u3)
    if state.me not in u3 or len(u3) < state.cfg.threshold:
        raise NotEnoughSurvivors(f"{len(u3)} survivors announced, {state.cfg.threshold} needed")
    sig = state.e_sk.sign(_survivor_message(state.session, u3))
    await party.send(SERVER, Stage.CONSISTENCY_CHECK.value, sig)


async def unmask(party: Party, state: ClientState) -> None:
    """Reveal, for each neighbour, exactly one kind of share: the self-mask seed's share
    if it survived, the masking key's share if it dropped.  Never both."""
    state.machine.advance(Stage.UNMASK)
    msg = await party.recv(SERVER, Stage.UNMASK.value, **bounded(
        party, max_frame(state.cfg, Stage.UNMASK, to_server=False)))
    try:
        u3 = frozenset(int(i) for i in msg["u3"])
        dropped = frozenset(int(i) for i in msg["dropped"])
        sigs = dict(msg.get("sigs") or {})
    except _MALFORMED as exc:
        raise ProtocolAbort("the server sent a malformed unmask request") from exc
    t = state.cfg.threshold
    # the survivors of this client's neighbourhood (the server sends only those, or,
    # with the consistency check, the whole list this client signed)
    local = u3 & (state.graph | {state.me})
    if u3 & dropped:
        raise ProtocolAbort("the server lists a client as both surviving and dropped")
    if not (local | dropped) <= state.u2 or state.me not in u3:
        raise ProtocolAbort("the unmask request contradicts the earlier survivor list")
    counted = u3 if state.cfg.consistency_check else local
    if len(counted) < t:
        raise NotEnoughSurvivors(f"{len(counted)} survivors, {t} needed")
    whole = state.cfg.consistency_check or state.cfg.neighbours >= state.cfg.n_clients - 1
    if state.cfg.dp is not None and whole and len(counted) < state.cfg.dp_min_survivors:
        # the noise was calibrated for dp_min_survivors: a server that unmasks fewer gets
        # no share from this client.  It sees the whole list with the complete graph or
        # the consistency check; in a sparse graph without it only its neighbourhood's
        # survivors, which say nothing of the total (the server's own check stands, and
        # a malicious server is not kept out of such a graph anyway: security_report)
        raise NotEnoughSurvivors(f"{len(counted)} survivors, dp needs "
                                 f"{state.cfg.dp_min_survivors}")
    if state.cfg.consistency_check:
        if u3 != state.signed_u3:
            raise ProtocolAbort("the unmask request names other survivors than the list signed")
        message = _survivor_message(state.session, sorted(u3))
        good = sum(1 for cid, sig in sigs.items()
                   if cid in u3 and cid in state.signing_keys
                   and _crypto.verify(state.signing_keys[cid], sig, message))
        if good < t:
            raise ProtocolAbort(f"only {good} valid signatures on the survivor list, {t} needed")
    b_ids = sorted(v for v in state.held if v in u3)
    s_ids = sorted(v for v in state.held if v in dropped and v not in u3)
    await party.send(SERVER, Stage.UNMASK.value, _answer(state, b_ids, s_ids))
    state.machine.advance(Stage.DONE)


def _answer(state: ClientState, b_ids: list[int], s_ids: list[int]) -> dict[str, np.ndarray]:
    """The unmask answer as four arrays (ids, and one row of share values per id): cheap
    to encode and decode for any number of neighbours."""
    def rows(ids: list[int], which: int) -> np.ndarray:
        out = np.zeros((len(ids), _crypto.SHARE_ELEMENTS), dtype=np.uint64)
        for j, v in enumerate(ids):
            out[j] = state.held[v][which]
        return out

    return {"b_ids": np.array(b_ids, dtype=np.uint32), "b": rows(b_ids, 0),
            "s_ids": np.array(s_ids, dtype=np.uint32), "s": rows(s_ids, 1)}


async def client(party: Party, update: np.ndarray | Mapping[str, np.ndarray],
                 cfg: SecAggConfig, weight: int = 1, *,
                 identity_key: Any = None,
                 drop_before: Stage | None = None) -> dict[str, Any]:
    """Run one client of secure aggregation against the server (party 0).

    ``identity_key`` is this client's Ed25519 private key (a
    ``cryptography`` key object or its 32 raw bytes) when ``cfg.identities``
    is set.  ``drop_before`` (tests and simulations) makes the client vanish
    just before it would send in that stage.  Returns a small status dict.
    """
    state = ClientState(cfg=cfg, me=party.id, session=party.session,
                        length=int(flatten_update(update).size))
    if isinstance(identity_key, bytes):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        identity_key = Ed25519PrivateKey.from_private_bytes(identity_key)
    state.identity = identity_key
    if isinstance(party, Party):  # the server's messages' bounds, before any can come
        for stage in (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.CONSISTENCY_CHECK,
                      Stage.UNMASK):
            party.expect(stage.value, [SERVER],
                         max_bytes=max_frame(cfg, stage, to_server=False))
    steps = [
        (Stage.ADVERTISE_KEYS, lambda: advertise_keys(party, state)),
        (Stage.SHARE_KEYS, lambda: share_keys(party, state)),
        (Stage.MASKED_INPUT, lambda: masked_input(party, state, update, weight)),
    ]
    if cfg.consistency_check:
        steps.append((Stage.CONSISTENCY_CHECK, lambda: consistency_check(party, state)))
    steps.append((Stage.UNMASK, lambda: unmask(party, state)))
    for stage, step in steps:
        if stage == drop_before:
            _log.info("client %d: dropping out before %s (drop_before)", party.id, stage.value)
            return {"dropped_before": stage.value}
        _log.debug("client %d: %s", party.id, stage.value)
        await step()
    _log.debug("client %d: done (%d values clipped)", party.id, state.clipped)
    return {"done": True, "clipped": state.clipped}
