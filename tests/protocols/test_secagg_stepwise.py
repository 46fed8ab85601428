"""Secure aggregation driven one message at a time (the shape of a Flower round):
clients keep nothing in memory between messages, only the state bytes they return."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import numpy as np
import pytest
from mpcai.protocols.secure_aggregation import SecAggConfig, make_identities
from mpcai.protocols.secure_aggregation import stepwise as sw

from mpcai.errors import (
    EncodingOverflow,
    InvalidInput,
    MpcaiError,
    NotEnoughSurvivors,
    ProtocolAbort,
)


class StatelessHost:
    """Stores each client's state as bytes between round trips, as a framework would;
    a client in ``drop[stage]`` does not answer that stage's round trip."""

    def __init__(self, cfg: SecAggConfig, updates: list[np.ndarray], weights: list[int],
                 drop: dict[str, set[int]] | None = None,
                 identity_keys: dict[int, Any] | None = None, late: bool = False) -> None:
        self.cfg, self.updates, self.weights = cfg, updates, weights
        self.late = late  # clients begin without their update and give it at masked_input
        self.drop = drop or {}
        self.identity_keys = identity_keys or {}
        self.session = secrets.token_bytes(16)
        self.state: dict[int, bytes] = {}
        self.trips: list[str] = []
        self.done: dict[int, Any] = {}

    def round_trip(self, tag: str, outgoing: dict[int, list[tuple[str, Any]]]) -> dict[int, Any]:
        self.trips.append(tag)
        replies = {}
        for cid, msgs in outgoing.items():
            if cid in self.drop.get(tag, set()):
                self.state.pop(cid, None)
                continue
            if not msgs:  # the first round trip: the client (trains and) advertises
                data = () if self.late else (self.updates[cid - 1], self.weights[cid - 1])
                msg, self.state[cid] = sw.client_begin(
                    self.cfg, cid, self.session, *data,
                    identity_key=self.identity_keys.get(cid))
                replies[cid] = msg
                continue
            data = ()
            if self.late and sw.next_stage(dict(msgs)) == "masked_input":
                data = (self.updates[cid - 1], self.weights[cid - 1])
            got, reply, self.state[cid] = sw.client_step(self.state[cid], dict(msgs), *data)
            assert got == tag
            replies[cid] = reply
        return replies


def _plain_mean(updates: list[np.ndarray], weights: list[int], ids: list[int]) -> np.ndarray:
    w = np.array([weights[i - 1] for i in ids], dtype=np.float64)
    return (np.stack([updates[i - 1] for i in ids]) * w[:, None]).sum(0) / w.sum()


@pytest.mark.parametrize("late", [False, True], ids=["update-at-begin", "update-late"])
@pytest.mark.parametrize("consistency", [False, True])
def test_stateless_clients_give_the_weighted_mean(consistency: bool, late: bool) -> None:
    rng = np.random.default_rng(1)
    n, d = 12, 300
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    weights = [int(w) for w in rng.integers(1, 50, n)]
    kw: dict[str, Any] = {}
    if consistency:
        pub, priv = make_identities(n)
        kw = {"identities": pub, "consistency_check": True}
    cfg = SecAggConfig(n_clients=n, max_weight=50, dim=d, **kw)
    host = StatelessHost(cfg, updates, weights, identity_keys=priv if consistency else None,
                         late=late)
    res = sw.run_server(cfg, host.session, host.round_trip)
    expect = ["advertise_keys", "share_keys", "masked_input"]
    expect += ["consistency_check"] if consistency else []
    assert host.trips == [*expect, "unmask"]
    assert res.survivors == list(range(1, n + 1))
    assert res.total_weight == sum(weights)
    step = 2 * cfg.clip / cfg.levels
    np.testing.assert_allclose(res.mean, _plain_mean(updates, weights, res.survivors),
                               atol=step)


@pytest.mark.parametrize("stage", ["share_keys", "masked_input", "unmask"])
def test_dropouts_at_each_stage(stage: str) -> None:
    rng = np.random.default_rng(2)
    n, d = 15, 50
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    weights = [1] * n
    cfg = SecAggConfig(n_clients=n)
    host = StatelessHost(cfg, updates, weights, drop={stage: {3, 9}})
    res = sw.run_server(cfg, host.session, host.round_trip)
    # a client that does not deliver its masked input is not in the sum; one that leaves
    # at unmask already contributed
    gone = {3, 9} if stage in ("share_keys", "masked_input") else set()
    assert set(res.survivors) == set(range(1, n + 1)) - gone
    np.testing.assert_allclose(res.mean, _plain_mean(updates, weights, res.survivors),
                               atol=2 * cfg.clip / cfg.levels)


def test_too_many_dropouts_raise_not_a_wrong_result() -> None:
    n = 6
    cfg = SecAggConfig(n_clients=n, threshold=5)
    host = StatelessHost(cfg, [np.zeros(4)] * n, [1] * n, drop={"share_keys": {1, 2, 3}})
    with pytest.raises(NotEnoughSurvivors):
        sw.run_server(cfg, host.session, host.round_trip)


def test_state_holds_no_plain_update_for_others_and_is_refused_when_corrupt() -> None:
    cfg = SecAggConfig(n_clients=4)
    session = secrets.token_bytes(16)
    msg, state = sw.client_begin(cfg, 2, session, np.ones(8), 1)
    assert isinstance(msg, list) and len(msg) == 5  # keys, signature, update length
    with pytest.raises(InvalidInput):
        sw.client_step(state[:-3], {"advertise_keys": {}})
    with pytest.raises(InvalidInput):
        sw.client_step(b"garbage", {"advertise_keys": {}})
    # the header (version, stage) must match the payload: a state cannot claim a stage
    later = state[:1] + bytes([list(sw.Stage).index(sw.Stage.SHARE_KEYS)]) + state[2:]
    assert sw.next_stage({"share_keys": {}}, later) == "masked_input"  # header only
    with pytest.raises(InvalidInput):
        sw.client_step(later, {"share_keys": {}})
    with pytest.raises(ProtocolAbort):  # from the header: masked_input cannot come yet
        sw.next_stage({"share_keys": {}}, state)
    with pytest.raises(InvalidInput):
        sw.next_stage({"share_keys": {}}, bytes([sw._STATE_VERSION - 1]) + state[1:])
    with pytest.raises(ProtocolAbort):  # malformed key list from the server
        sw.client_step(state, {"advertise_keys": {"keys": 5}})
    with pytest.raises(ProtocolAbort):
        sw.client_step(state, {"nonsense": 1})


def test_client_begin_checks_its_arguments() -> None:
    cfg = SecAggConfig(n_clients=4, max_weight=3, dim=8)
    s = secrets.token_bytes(16)
    with pytest.raises(InvalidInput):
        sw.client_begin(cfg, 5, s, np.ones(8))
    with pytest.raises(InvalidInput):
        sw.client_begin(cfg, 1, s, np.ones(8), weight=4)
    with pytest.raises(InvalidInput):
        sw.client_begin(cfg, 1, s, np.ones(7))
    with pytest.raises(InvalidInput):
        sw.client_begin(cfg, 1, s[:8], np.ones(8))
    with pytest.raises(EncodingOverflow):
        sw.client_begin(cfg, 1, s, np.full(8, np.nan))


def test_the_state_drops_the_update_once_it_is_sent_masked() -> None:
    n = 5
    cfg = SecAggConfig(n_clients=n)
    host = StatelessHost(cfg, [np.full(16, 0.25)] * n, [1] * n)
    states: dict[str, dict[int, int]] = {}
    orig = host.round_trip

    def spy(tag: str, outgoing: dict[int, list[tuple[str, Any]]]) -> dict[int, Any]:
        out = orig(tag, outgoing)
        states[tag] = {cid: sw._decode_state(st)[1].size for cid, st in host.state.items()}
        return out

    host.round_trip = spy  # type: ignore[method-assign]
    sw.run_server(cfg, host.session, host.round_trip)
    # kept until it is masked: the quantised, weighted vector + clipped count and weight
    assert set(states["advertise_keys"].values()) == {16 + 2}
    assert set(states["share_keys"].values()) == {16 + 2}
    assert set(states["masked_input"].values()) == {0}  # sent: no copy kept
    assert set(states["unmask"].values()) == {0}


def test_an_update_given_late_keeps_the_state_small_and_goes_only_to_masked_input() -> None:
    n, d = 4, 5000
    cfg = SecAggConfig(n_clients=n, dim=d)
    rng = np.random.default_rng(3)
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    host = StatelessHost(cfg, updates, [1] * n, late=True)
    sizes: dict[str, int] = {}
    orig = host.round_trip

    def spy(tag: str, outgoing: dict[int, list[tuple[str, Any]]]) -> dict[int, Any]:
        if tag == "masked_input":  # before the clients get their update
            sizes["before"] = max(len(st) for st in host.state.values())
            step_msgs = outgoing[1]
            with pytest.raises(InvalidInput, match="give it to this step"):
                sw.client_step(host.state[1], dict(step_msgs))
            with pytest.raises(InvalidInput, match="values"):
                sw.client_step(host.state[1], dict(step_msgs), np.zeros(d - 1))
            with pytest.raises(InvalidInput, match="weight"):
                sw.client_step(host.state[1], dict(step_msgs), updates[0], cfg.max_weight + 1)
        out = orig(tag, outgoing)
        if tag == "masked_input":
            st = host.state[2]
            with pytest.raises(InvalidInput, match="only to the masked_input step"):
                sw.client_step(st, {"unmask": [1]}, updates[1], 1)
        return out

    host.round_trip = spy  # type: ignore[method-assign]
    res = sw.run_server(cfg, host.session, host.round_trip)
    assert sizes["before"] < 4 * d  # no update (8 * d bytes as float64) held before it
    step = 2 * cfg.clip / cfg.levels
    np.testing.assert_allclose(res.mean, np.mean(updates, axis=0), atol=step)


def test_begin_without_an_update_needs_the_length_and_no_weight() -> None:
    session = secrets.token_bytes(16)
    with pytest.raises(InvalidInput, match="dim"):
        sw.client_begin(SecAggConfig(n_clients=3), 1, session)
    with pytest.raises(InvalidInput, match="weight without an update"):
        sw.client_begin(SecAggConfig(n_clients=3, dim=4), 1, session, None, 2)
    _, state = sw.client_begin(SecAggConfig(n_clients=3, dim=4), 1, session, np.zeros(4), 1)
    with pytest.raises(InvalidInput, match="only to the masked_input step"):
        sw.client_step(state, {"advertise_keys": {}}, np.zeros(4), 1)


def test_next_stage_with_the_state_refuses_a_stage_out_of_order() -> None:
    n = 3
    cfg = SecAggConfig(n_clients=n, dim=4)
    host = StatelessHost(cfg, [np.zeros(4)] * n, [1] * n, late=True)
    seen: dict[str, bytes] = {}
    orig = host.round_trip

    def spy(tag: str, outgoing: dict[int, list[tuple[str, Any]]]) -> dict[int, Any]:
        if 1 in host.state:
            seen[tag] = host.state[1]  # client 1's state before this round trip
        return orig(tag, outgoing)

    host.round_trip = spy  # type: ignore[method-assign]
    sw.run_server(cfg, host.session, host.round_trip)
    after_begin, after_share = seen["share_keys"], seen["masked_input"]
    assert sw.next_stage({"share_keys": {}}, after_share) == "masked_input"
    with pytest.raises(ProtocolAbort, match="cannot come now"):
        sw.next_stage({"share_keys": {}}, after_begin)  # masked_input before share_keys
    with pytest.raises(ProtocolAbort, match="cannot come now"):
        sw.next_stage({"share_keys": {}}, seen["unmask"])  # masked_input a second time


def test_the_state_never_holds_the_identity_key_and_drops_x25519_keys_once_used() -> None:
    """The long-term identity key signs the advertised keys and never enters the state;
    the X25519 private keys leave it once share_keys has used them."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    n = 4
    pub, priv = make_identities(n)
    cfg = SecAggConfig(n_clients=n, identities=pub, consistency_check=True)
    host = StatelessHost(cfg, [np.full(8, 0.25)] * n, [1] * n, identity_keys=priv)
    raw_identity = {c: k if isinstance(k, bytes) else k.private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()) for c, k in priv.items()}
    seen: dict[str, dict[int, tuple[bytes, Any]]] = {}
    x25519: dict[int, bytes] = {}
    orig = host.round_trip

    def spy(tag: str, outgoing: dict[int, list[tuple[str, Any]]]) -> dict[int, Any]:
        out = orig(tag, outgoing)
        seen[tag] = {cid: (st, sw._decode_state(st)[0]) for cid, st in host.state.items()}
        return out

    host.round_trip = spy  # type: ignore[method-assign]
    res = sw.run_server(cfg, host.session, host.round_trip)
    assert res.survivors == [1, 2, 3, 4]
    for tag, states in seen.items():
        for cid, (blob, st) in states.items():
            assert raw_identity[cid] not in blob, (tag, cid)
            if tag == "advertise_keys":  # needed for share_keys
                assert st.c_sk is not None and st.s_sk is not None
                x_raw = sw._raw_x25519(st.c_sk), sw._raw_x25519(st.s_sk)
                assert all(r in blob for r in x_raw)
                x25519[cid] = b"".join(x_raw)
            else:
                assert st.c_sk is None and st.s_sk is None, (tag, cid)
                assert st.e_sk is not None  # the round's signing key, for the check
    for tag in ("share_keys", "consistency_check", "unmask"):
        for cid, (blob, _) in seen[tag].items():
            assert x25519[cid][:32] not in blob and x25519[cid][32:] not in blob


@pytest.mark.parametrize("consistency", [False, True])
def test_the_server_records_a_transcript_as_the_runtimes_server_does(
        consistency: bool, tmp_path: Any) -> None:
    from mpcai.protocols import audit as protocol_audit
    from mpcai.protocols import secure_aggregation as sa

    from mpcai import audit

    rng = np.random.default_rng(5)
    n, d = 9, 64
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    kw: dict[str, Any] = {}
    priv: dict[int, Any] | None = None
    if consistency:
        pub, priv = make_identities(n)
        kw = {"identities": pub, "consistency_check": True}
    cfg = SecAggConfig(n_clients=n, dim=d, **kw)
    host = StatelessHost(cfg, updates, [1] * n, drop={"masked_input": {4}},
                         identity_keys=priv)
    (log,) = audit.open_transcripts(tmp_path / "step", [0], protocol="secure_aggregation",
                                    config=cfg)
    log.begin(session=host.session, party=0, peers=range(1, n + 1))
    res = sw.run_server(cfg, host.session, host.round_trip, transcript=log)
    log.close()
    rep = protocol_audit.verify([tmp_path / "step"], keys=tmp_path / "step" / "keys.json")
    assert rep.participants["masked_input"] == res.survivors == [c for c in range(1, n + 1)
                                                                 if c != 4]
    # the same kinds of messages, in the same stage order, as the runtime's server records
    sa.simulate(updates, cfg, dropouts={4: sa.Stage.MASKED_INPUT}, transcript=tmp_path / "rt",
                identity_keys=priv)

    def walk(path: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for e in audit.read_transcript(path).messages():
            if (e.type, e["tag"]) not in out:
                out.append((e.type, e["tag"]))
        return out

    assert walk(tmp_path / "step" / "party-0.jsonl") == walk(tmp_path / "rt" / "party-0.jsonl")
    # the sum's digest is the runtime's: SHA-256 of the exact quantised sum
    import hashlib

    total = np.ascontiguousarray(res.quantised_sum)
    assert rep.logs[0].result == hashlib.sha256(
        total.astype(total.dtype.newbyteorder("<")).tobytes()).digest()
    other = audit.Transcript(tmp_path / "x.jsonl", protocol="secure_aggregation")
    other.begin(session=secrets.token_bytes(16), party=0, peers=range(1, n + 1))
    with pytest.raises(InvalidInput):  # a transcript of another session
        sw.run_server(cfg, host.session, host.round_trip, transcript=other)
    other.close()
    with pytest.raises(InvalidInput):
        sw.run_server(cfg, host.session, host.round_trip, transcript="a path")  # type: ignore[arg-type]


def _to_stage(cfg: SecAggConfig, upto: str) -> tuple[Any, dict[str, Any]]:
    """Client 1's state and the server's messages to it at stage ``upto`` of an honest
    round (the others answer as honest clients)."""
    from mpcai.runtime import wire

    session = secrets.token_bytes(16)
    state: dict[int, Any] = {}
    got: dict[str, Any] = {}

    def round_trip(tag: str, outgoing: dict[int, Any]) -> dict[int, Any]:
        replies = {}
        for cid, msgs in outgoing.items():
            if tag == upto and cid == 1:
                got["state"], got["msgs"] = state[1], dict(msgs)
                continue
            if not msgs:
                replies[cid], state[cid] = sw.client_begin(cfg, cid, session, np.zeros(7), 1)
            else:
                _, replies[cid], state[cid] = sw.client_step(state[cid], dict(msgs))
        return replies

    with contextlib.suppress(MpcaiError):  # client 1 never answers: a dropout
        sw.run_server(cfg, session, round_trip)
    got["msgs"] = {k: wire.decode_payload(wire.encode_payload(v))
                   for k, v in got["msgs"].items()}
    return got["state"], got["msgs"]


@pytest.mark.parametrize(("upto", "key", "bad"), [
    ("masked_input", "share_keys", np.zeros((2, 3), np.uint32)),  # an array: IndexError
    ("masked_input", "share_keys", {"blobs": {}, "u2": [float("inf")]}),  # OverflowError
    ("unmask", "unmask", np.zeros((2, 2), np.uint64)),
    ("unmask", "unmask", {"u3": [float("inf")], "dropped": []}),
    ("consistency_check", "consistency_check", [float("inf")]),
])
def test_a_malformed_server_message_is_a_protocol_abort(upto: str, key: str, bad: Any) -> None:
    from mpcai.runtime import wire

    cfg = SecAggConfig(n_clients=6, max_weight=5, dim=7,
                       consistency_check=upto == "consistency_check")
    state, msgs = _to_stage(cfg, upto)
    msgs[key] = wire.decode_payload(wire.encode_payload(bad))
    with pytest.raises(ProtocolAbort, match="malformed"):
        sw.client_step(state, msgs)


def test_malformed_or_foreign_key_lists_are_a_protocol_abort() -> None:
    from mpcai.runtime import wire

    pub, priv = make_identities(6)
    for cfg, key, msg in [
        (SecAggConfig(n_clients=6, max_weight=5, dim=7), None, np.zeros(3)),
        (SecAggConfig(n_clients=6, max_weight=5, dim=7), None,
         {"keys": np.zeros(3, np.uint64), "sigs": b""}),
        (SecAggConfig(n_clients=6, max_weight=5, dim=7), None,
         {"keys": {"ids": [float("inf")], "c": b"", "s": b"", "e": b""}, "sigs": b""}),
        # an id with no identity key (0): looked up before the neighbour check, a KeyError
        (SecAggConfig(n_clients=6, max_weight=5, dim=7, identities=pub,
                      consistency_check=True), priv[1],
         {"keys": {"ids": np.array([0], np.uint32), "c": b"\x09" * 32, "s": b"\x09" * 32,
                   "e": b"\x00" * 32}, "sigs": b"\x00" * 64}),
    ]:
        _, st = sw.client_begin(cfg, 1, secrets.token_bytes(16), np.zeros(7), 1,
                                identity_key=key)
        with pytest.raises(ProtocolAbort):
            sw.client_step(st, {"advertise_keys": wire.decode_payload(
                wire.encode_payload(msg))})
