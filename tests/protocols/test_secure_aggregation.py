"""Secure aggregation: exact sums over survivors, dropouts at every stage, cheating."""

from __future__ import annotations

import importlib
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mpcai.protocols import secure_aggregation as sa
from mpcai.protocols.secure_aggregation import Stage

from mpcai import encoding
from mpcai.errors import (
    AggregateOutOfRange,
    ClippingWarning,
    EncodingOverflow,
    IllegalTransition,
    InvalidInput,
    MisbehaviourDetected,
    NotEnoughSurvivors,
    ProtocolAbort,
)
from mpcai.runtime import InMemoryNetwork, Party
from mpcai.sharing import shamir
from mpcai.testing import run_local

STAGES = [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]
RNG = np.random.default_rng(1)  # data only


def plaintext_quantised_sum(cfg: sa.SecAggConfig, updates: list, weights: list[int],
                            survivors: list[int]) -> np.ndarray:
    """The sum the server must obtain, computed in the clear with Python ints:
    weight x quantised values, then the clipped count, then the weight."""
    total = None
    for cid in survivors:
        x = sa.flatten_update(updates[cid - 1])
        q = encoding.quantize(x, clip=cfg.clip, bits=cfg.bits, out_of_range=cfg.out_of_range)
        clipped = sum(1 for v in x if abs(float(v)) > cfg.clip)
        vec = [int(v) * weights[cid - 1] for v in q] + [clipped, weights[cid - 1]]
        total = vec if total is None else [a + b for a, b in zip(total, vec, strict=True)]
    assert total is not None
    return np.array([v % 2**64 for v in total], dtype=np.uint64)


def assert_exact_sum(agg: sa.AggregateResult, cfg: sa.SecAggConfig, updates: list,
                     weights: list[int] | None = None) -> None:
    """The unmasked sum equals the plaintext sum over the survivors the server announced."""
    weights = weights if weights is not None else [1] * len(updates)
    np.testing.assert_array_equal(
        agg.quantised_sum, plaintext_quantised_sum(cfg, updates, weights, agg.survivors))


@pytest.mark.parametrize("fraction", [0.0, 0.10, 0.25, 0.49])
@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.value)
def test_exact_sum_over_survivors(fraction: float, stage: Stage) -> None:
    n = 20
    cfg = sa.SecAggConfig(n_clients=n, threshold=10, clip=2.0, bits=20, max_weight=50)
    updates = [RNG.uniform(-2, 2, 257) for _ in range(n)]
    weights = [int(w) for w in RNG.integers(1, 51, n)]
    dropped = sorted(RNG.choice(np.arange(1, n + 1), int(fraction * n), replace=False).tolist())
    res = sa.simulate(updates, cfg, weights=weights, dropouts=dict.fromkeys(dropped, stage))
    agg = res.aggregate
    expected_survivors = sorted(set(range(1, n + 1)) - set(dropped))
    if stage == Stage.UNMASK:
        # clients that vanish at unmask already sent their masked input: they are in the sum
        expected_survivors = list(range(1, n + 1))
    assert agg.survivors == expected_survivors
    assert_exact_sum(agg, cfg, updates, weights)
    w = np.array([weights[c - 1] for c in agg.survivors], dtype=np.float64)
    mean = (np.array([updates[c - 1] for c in agg.survivors]) * w[:, None]).sum(0) / w.sum()
    assert np.max(np.abs(res.mean - mean)) <= 2 * 2.0 / (2**20 - 1)


def test_secagg_plus_graph_and_dict_updates() -> None:
    n = 30
    cfg = sa.SecAggConfig(n_clients=n, threshold=5, degree=8, clip=1.0, bits=16)
    updates = [{"layer.w": RNG.uniform(-1, 1, (4, 3)), "layer.b": RNG.uniform(-1, 1, 3)}
               for _ in range(n)]
    res = sa.simulate(updates, cfg, dropouts={4: Stage.MASKED_INPUT, 17: Stage.MASKED_INPUT})
    assert set(res.mean) == {"layer.w", "layer.b"} and res.mean["layer.w"].shape == (4, 3)
    surv = res.aggregate.survivors
    assert 4 not in surv and 17 not in surv and len(surv) == n - 2
    for k in ("layer.w", "layer.b"):
        ref = np.mean([updates[c - 1][k] for c in surv], axis=0)
        assert np.max(np.abs(res.mean[k] - ref)) < 1e-4
    # clients talk to the server only: 4 messages each, 2 for those that vanished
    assert [st.messages_sent for st in res.stats[1:]] == [2 if c in (4, 17) else 4
                                                          for c in range(1, n + 1)]


def test_consistency_check_round() -> None:
    n = 8
    cfg = sa.SecAggConfig(n_clients=n, threshold=5, consistency_check=True)
    updates = [RNG.uniform(-1, 1, 10) for _ in range(n)]
    res = sa.simulate(updates, cfg, dropouts={2: Stage.CONSISTENCY_CHECK})
    # 2 sent its masked input, then vanished: its input is in the sum, its signature is not
    assert res.aggregate.survivors == list(range(1, n + 1))
    assert res.aggregate.dropped["consistency_check"] == [2]
    assert "consistency_check" in res.aggregate.stage_seconds


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.value)
def test_below_threshold_is_not_enough_survivors(stage: Stage) -> None:
    n = 6
    cfg = sa.SecAggConfig(n_clients=n, threshold=4, timeout=10)
    updates = [np.zeros(5) for _ in range(n)]
    with pytest.raises(NotEnoughSurvivors):
        sa.simulate(updates, cfg, dropouts=dict.fromkeys([1, 2, 3], stage))


def test_every_illegal_transition_raises() -> None:
    for a, b in itertools.product(Stage, Stage):
        m = sa.StageMachine()
        m.stage = a
        if b in sa.LEGAL[a]:
            m.advance(b)
            assert m.stage == b
        else:
            with pytest.raises(IllegalTransition):
                m.advance(b)


def test_client_never_reveals_both_shares_for_one_peer() -> None:
    """A server that lists a client as both survivor and dropped gets nothing."""
    n, t = 5, 3
    cfg = sa.SecAggConfig(n_clients=n, threshold=t, timeout=10)
    srv = importlib.import_module("mpcai.protocols.secure_aggregation.server")

    async def equivocating(party: Party, cfg: sa.SecAggConfig) -> object:
        state = srv.ServerState(cfg=cfg, session=party.session)
        await srv.advertise_keys(party, state, list(range(1, n + 1)))
        await srv.share_keys(party, state)
        await srv.masked_input(party, state)
        await party.broadcast("unmask", {"u3": state.u3, "dropped": [state.u3[0]]}, to=state.u3)
        got = await party.gather("unmask", state.u3, timeout=5, min_count=0)
        return got

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await equivocating(party, cfg)
        return await sa.client(party, np.zeros(4), cfg)

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    assert res[0] == {}  # no client answered
    assert all(isinstance(r, ProtocolAbort) and "both" in str(r) for r in res[1:])


def test_tampered_share_ciphertext_is_ignored_and_others_finish() -> None:
    n, t = 6, 3
    cfg = sa.SecAggConfig(n_clients=n, threshold=t, timeout=10)
    srv = importlib.import_module("mpcai.protocols.secure_aggregation.server")

    original = srv.Party.send_many

    async def tampering_send_many(self: Party, tag: str, objs: dict, **kw: object) -> object:
        if tag == "share_keys":
            blob = objs[2]["blobs"][1]
            objs[2]["blobs"][1] = blob[:-1] + bytes([blob[-1] ^ 1])
        return await original(self, tag, objs, **kw)

    updates = [RNG.uniform(-1, 1, 7) for _ in range(n)]
    srv.Party.send_many = tampering_send_many  # type: ignore[method-assign]
    try:
        res = sa.simulate(updates, cfg)
    finally:
        srv.Party.send_many = original  # type: ignore[method-assign]
    assert res.aggregate.survivors == list(range(1, n + 1))
    assert np.max(np.abs(res.mean - np.mean(updates, axis=0))) < 1e-4


def test_configuration_checks() -> None:
    with pytest.raises(InvalidInput, match="wrap around"):
        sa.SecAggConfig(n_clients=1000, threshold=10, bits=40, max_weight=2**20)
    with pytest.raises(InvalidInput):
        sa.SecAggConfig(n_clients=10, threshold=11)
    with pytest.raises(InvalidInput):
        sa.SecAggConfig(n_clients=10, threshold=2, degree=3)
    rep = sa.security_report(sa.SecAggConfig(n_clients=100, threshold=51), 0.2, 0.3)
    assert rep.correct and rep.private_semi_honest and not rep.private_malicious
    rep = sa.security_report(sa.SecAggConfig(n_clients=100, threshold=60, consistency_check=True),
                             0.1, 0.3)
    # without identities (authenticated client keys) never claimed against a malicious server
    assert rep.correct and not rep.private_malicious and "NOT private against a malicious" in \
        rep.statement
    bad = sa.security_report(sa.SecAggConfig(n_clients=100, threshold=5, degree=10), 0.1, 0.1)
    assert not bad.correct and not bad.private_semi_honest


def test_clipping_is_explicit() -> None:
    """Clipping shows at the top of the result (the total travels masked) and warns."""
    n = 4
    updates = [np.array([0.5, 5.0]) for _ in range(n)]
    with pytest.warns(ClippingWarning, match="4 of 8 values were clipped"):
        res = sa.simulate(updates, sa.SecAggConfig(n_clients=n, threshold=3, clip=1.0))
    np.testing.assert_allclose(res.mean, [0.5, 1.0], atol=1e-4)
    assert res.clipped == 4 and res.aggregate.clipped == 4
    assert all(c["clipped"] == 1 for c in res.clients)
    strict = sa.SecAggConfig(n_clients=n, threshold=3, clip=1.0, out_of_range="raise",
                             timeout=5)
    # every client refuses its own input: the root cause is raised (the server's
    # NotEnoughSurvivors is what follows from it, named in a note)
    from mpcai.errors import EncodingOverflow

    with pytest.raises(EncodingOverflow) as info:
        sa.simulate(updates, strict)
    assert "NotEnoughSurvivors" in info.value.__notes__[-1]


@pytest.mark.slow
@pytest.mark.parametrize("drop", [None, "masked_input"])
def test_over_tls_processes(drop: str | None) -> None:
    from mpcai.runtime.launcher import launch_local

    n = 4
    config = {"n_clients": n, "threshold": 2, "clip": 1.0, "bits": 16, "timeout": 20}
    updates = [RNG.uniform(-1, 1, 50) for _ in range(n)]
    args = [(config,)] + [(config, u, 1, drop if c == 2 else None)
                          for c, u in enumerate(updates, start=1)]
    run = launch_local(n + 1, "mpcai.protocols.secure_aggregation.simulation:process_party",
                       args_per_party=args, timeout=60)
    surv = [int(c) for c in run[0]["survivors"]]
    assert surv == ([1, 3, 4] if drop else [1, 2, 3, 4])
    cfg = sa.SecAggConfig(**config)
    np.testing.assert_array_equal(run[0]["quantised_sum"],
                                  plaintext_quantised_sum(cfg, updates, [1] * n, surv))
    assert run.stats[0].bytes_received > 0


@pytest.mark.parametrize(("bits", "max_weight", "ring"),
                         [(16, 1, 24), (20, 16, 32), (28, 100, 64)])
def test_ring_is_the_smallest_that_cannot_overflow(bits: int, max_weight: int, ring: int) -> None:
    n, d = 6, 3000
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, bits=bits, max_weight=max_weight)
    assert cfg.ring_bits == ring
    # values at both ends of the range: the sums fill the ring's top bits
    updates = [np.where(RNG.random(d) < 0.5, -1.0, 1.0) * RNG.uniform(0.9, 1.0, d)
               for _ in range(n)]
    weights = [max_weight] * n
    res = sa.simulate(updates, cfg, weights=weights, dropouts={2: Stage.MASKED_INPUT})
    assert_exact_sum(res.aggregate, cfg, updates, weights)
    assert int(res.aggregate.quantised_sum.max()) < 1 << ring
    # a masked input is the ring's bytes per value (and a small frame header)
    masked = res.stats[1].sent_to[0] - sa.simulate(
        [u[:1] for u in updates], cfg, weights=weights).stats[1].sent_to[0]
    assert masked == pytest.approx((d - 1) * ring // 8, abs=16)


@pytest.mark.parametrize(("n", "bits", "max_weight", "ring"),
                         [(256, 16, 1, 24), (257, 16, 1, 32), (3, 22, 1, 24), (5, 22, 1, 32),
                          (64, 8, 1, 24), (65536, 8, 1, 32), (4, 16, 64, 24), (4, 16, 65, 32),
                          (256, 1, 65536, 32), (128, 1, 65536, 24)])
def test_ring_bits_boundaries(n: int, bits: int, max_weight: int, ring: int) -> None:
    """Z_2^24 exactly while n x max(max_weight x (2^bits - 1), 2^16 - 1) < 2^24 (256 x
    65536 x 1 is 2^24 itself: the sum would wrap to 0)."""
    cfg = sa.SecAggConfig(n_clients=n, threshold=min(n, 3), bits=bits, max_weight=max_weight)
    assert cfg.ring_bits == ring


def _wire_tamper(kind: str):
    """A frame rewriter: another session's id, or a replay of the first frame."""
    first: list[bytes] = []

    def rewrite(frame: bytes) -> bytes:
        if not first:
            first.append(frame)
            return frame
        if kind == "session":
            return frame[:8] + bytes(16) + frame[24:]  # the session id field of the header
        return first[0]  # a replay: same sequence number, same tag

    return rewrite


@pytest.mark.parametrize("kind", ["session", "replay"])
def test_cross_session_and_replayed_messages_make_a_dropout(kind: str) -> None:
    from mpcai.testing import Fault, FaultyNetwork

    n = 6
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    updates = [RNG.uniform(-1, 1, 9) for _ in range(n)]

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await sa.server(party, cfg)
        return await sa.client(party, updates[party.id - 1], cfg)

    net = FaultyNetwork(InMemoryNetwork(n + 1, hub=0), {4: Fault(corrupt=_wire_tamper(kind))})
    res = run_local(n + 1, fn, network=net, session=b"\x07" * 16, return_exceptions=True)
    agg = res[0]
    assert agg.survivors == [1, 2, 3, 5, 6]  # 4 was cut off after its first message
    assert agg.dropped["share_keys"] == [4]
    assert_exact_sum(agg, cfg, updates)


def test_low_order_key_makes_a_dropout_not_an_abort() -> None:
    n = 6
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    updates = [RNG.uniform(-1, 1, 9) for _ in range(n)]

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await sa.server(party, cfg)
        if party.id == 1:  # advertises all-zero (low-order) keys, then plays along
            await party.send(0, "advertise_keys", [bytes(32), bytes(32), b""])
            return None
        return await sa.client(party, updates[party.id - 1], cfg)

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    agg = res[0]
    assert agg.survivors == [2, 3, 4, 5, 6] and agg.dropped["advertise_keys"] == [1]
    assert_exact_sum(agg, cfg, updates)


def test_malformed_unmask_answers_are_ignored() -> None:
    """A survivor returning garbage shares does not break the others' unmasking."""
    n, t = 6, 3
    cfg = sa.SecAggConfig(n_clients=n, threshold=t, timeout=10)
    updates = [RNG.uniform(-1, 1, 9) for _ in range(n)]
    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    original = client_mod.Party.send

    async def lying_send(self: Party, to: int, tag: str, obj: object, **kw: object) -> None:
        if tag == "unmask" and self.id == 2:
            obj = {"b_ids": obj["b_ids"], "b": np.full((obj["b_ids"].size, 3), 2**63,
                                                         dtype=np.uint64),
                   "s_ids": obj["s_ids"], "s": np.zeros((obj["s_ids"].size, 99),
                                                        dtype=np.uint64)}
        await original(self, to, tag, obj, **kw)

    client_mod.Party.send = lying_send  # type: ignore[method-assign]
    try:
        res = sa.simulate(updates, cfg, dropouts={5: Stage.MASKED_INPUT})
    finally:
        client_mod.Party.send = original  # type: ignore[method-assign]
    assert_exact_sum(res.aggregate, cfg, updates)


def test_authenticated_keys_and_malicious_server_claim() -> None:
    n = 8
    public, private = sa.make_identities(n)
    cfg = sa.SecAggConfig(n_clients=n, threshold=5, consistency_check=True, identities=public)
    assert sa.security_report(cfg, 0.1, 0.2).private_malicious
    updates = [RNG.uniform(-1, 1, 10) for _ in range(n)]
    res = sa.simulate(updates, cfg, identity_keys=private, dropouts={3: Stage.MASKED_INPUT})
    assert_exact_sum(res.aggregate, cfg, updates)


def test_substituted_key_is_detected() -> None:
    """A server that swaps a neighbour's key (to read its shares) makes clients abort."""
    n = 5
    public, private = sa.make_identities(n)
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, identities=public, timeout=10)
    srv = importlib.import_module("mpcai.protocols.secure_aggregation.server")
    original = srv.Party.send_many

    async def substituting(self: Party, tag: str, objs: dict, **kw: object) -> object:
        if tag == "advertise_keys":
            for msg in objs.values():
                c = bytearray(msg["keys"]["c"])
                c[:32] = srv._crypto.x25519_keypair()[1]  # the server's own key
                msg["keys"]["c"] = bytes(c)
        return await original(self, tag, objs, **kw)

    srv.Party.send_many = substituting  # type: ignore[method-assign]
    try:
        with pytest.raises((ProtocolAbort, NotEnoughSurvivors)):
            sa.simulate([np.zeros(4)] * n, cfg, identity_keys=private)
    finally:
        srv.Party.send_many = original  # type: ignore[method-assign]


def test_identities_are_checked() -> None:
    public, _ = sa.make_identities(4)
    with pytest.raises(InvalidInput):
        sa.SecAggConfig(n_clients=5, threshold=3, identities=public)
    cfg = sa.SecAggConfig(n_clients=4, threshold=3, identities=public, timeout=5)
    with pytest.raises((InvalidInput, NotEnoughSurvivors)):
        sa.simulate([np.zeros(3)] * 4, cfg)  # clients without their identity keys


def test_declared_dim_refuses_other_lengths() -> None:
    n = 5
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, dim=8, timeout=10)
    updates = [RNG.uniform(-1, 1, 8) for _ in range(n)]
    res = sa.simulate(updates, cfg)
    assert res.aggregate.survivors == [1, 2, 3, 4, 5]
    with pytest.raises(InvalidInput):
        sa.SecAggConfig(n_clients=n, threshold=3, dim=0)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 62), n=st.integers(2, 5), beyond=st.booleans(),
       clip=st.sampled_from([0.5, 1.0, 4.0]),
       signs=st.lists(st.sampled_from([1.0, -1.0, 3.0, -3.0, 1e300, -1e300]), min_size=3,
                      max_size=3))
@example(bits=62, n=4, beyond=False, clip=1.0, signs=[1.0, 1.0, 1.0])  # mean -1.0 before
@example(bits=62, n=2, beyond=False, clip=1.0, signs=[1.0, 1.0, 1.0])
@example(bits=60, n=4, beyond=False, clip=1.0, signs=[1.0, 1.0, 1.0])
@example(bits=53, n=2, beyond=False, clip=1.0, signs=[1.0, 1.0, 1.0])
def test_sum_is_exact_or_the_configuration_is_refused(bits: int, n: int, beyond: bool,
                                                      clip: float, signs: list[float]) -> None:
    """At the overflow limit and one weight beyond it, with every value at or beyond
    +-clip: either the configuration is refused when built, or the unmasked sum is the
    exact plaintext sum (Python ints), never a wrapped one."""
    levels = (1 << bits) - 1
    at_limit = (2**64 - 1) // (n * levels)  # the largest weight whose worst sum fits
    max_weight = max(1, at_limit + 1 if beyond else at_limit)
    fits = bits <= 53 and n * max_weight * levels < 2**64
    kwargs = {"n_clients": n, "threshold": n - 1, "bits": bits, "clip": clip,
              "max_weight": max_weight, "timeout": 10}
    if not fits:
        with pytest.raises(InvalidInput):
            sa.SecAggConfig(**kwargs)
        return
    cfg = sa.SecAggConfig(**kwargs)
    # clients take turns through the signs, so every client is at the top for some value
    updates = [np.array(signs[c:] + signs[:c]) * clip for c in range(n)]
    # the oracle: values at or beyond +clip are the top level, at or beyond -clip level 0
    clipped = sum(1 for u in updates for v in u if abs(v) > clip)
    expected = [sum(max_weight * (levels if u[j] > 0 else 0) for u in updates)
                for j in range(3)] + [clipped, n * max_weight]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)  # values beyond clip, on purpose
        agg = sa.simulate(updates, cfg, weights=[max_weight] * n).aggregate
    assert [int(v) for v in agg.quantised_sum] == expected
    assert agg.total_weight == n * max_weight
    mean = np.mean([np.clip(u, -clip, clip) for u in updates], axis=0)
    np.testing.assert_allclose(agg.mean, mean, atol=1e-9 * clip)


def _lying_client(monkeypatch: pytest.MonkeyPatch, liar: int, tag: str, change) -> None:
    """Client ``liar`` passes what it sends under ``tag`` through ``change`` first."""
    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    original = client_mod.Party.send

    async def send(self: Party, to: int, t: str, obj: object, **kw: object) -> None:
        if t == tag and self.id == liar:
            obj = change(obj)
        await original(self, to, t, obj, **kw)

    monkeypatch.setattr(client_mod.Party, "send", send)


@pytest.mark.parametrize("ring", [24, 32])
@pytest.mark.parametrize("forged", ["zero_weight", "huge_value"])
def test_out_of_range_masked_input_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                                    forged: str, ring: int) -> None:
    """A client whose masked input hides a weight that cancels the others' (total 0:
    the mean was inf/NaN) or a value beyond any honest sum: refused, no mean."""
    n = 5
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10,
                          **({} if ring == 24 else {"bits": 20, "max_weight": 4}))
    assert cfg.ring_bits == ring
    size = 6 + 2

    def forge(vec: np.ndarray) -> np.ndarray:
        # Z_2^24 travels packed, 3 bytes a value
        vals = encoding.unpack_bits(vec, 24, size) if ring == 24 else vec.copy()
        if forged == "zero_weight":  # its weight becomes -(n - 1): the total is 0
            vals[-1] = (int(vals[-1]) - n) % 2**ring
        else:
            vals[0] = (int(vals[0]) + 2**(ring - 1)) % 2**ring
        return encoding.pack_bits(vals, 24) if ring == 24 else vals

    _lying_client(monkeypatch, 3, "masked_input", forge)
    with pytest.raises(AggregateOutOfRange):
        sa.simulate([RNG.uniform(-1, 1, 6) for _ in range(n)], cfg)


def _shift_one_share(answer: dict) -> dict:
    """Add 1 to one field element of every self-mask share revealed (still in range)."""
    b = answer["b"].copy()
    b[:, 2] = (b[:, 2] + np.uint64(1)) % np.uint64(2**61 - 1)
    return {**answer, "b": b}


def test_wrong_share_is_corrected_and_its_sender_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # every secret has 6 shares (classic SecAgg, n = 7) at threshold 3: one wrong one is
    # corrected; it used to abort the round
    n = 7
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    updates = [RNG.uniform(-1, 1, 5) for _ in range(n)]
    _lying_client(monkeypatch, 2, "unmask", _shift_one_share)
    agg = sa.simulate(updates, cfg, dropouts={6: Stage.MASKED_INPUT}).aggregate
    assert agg.misbehaving == [2]
    assert agg.survivors == [1, 2, 3, 4, 5, 7]
    assert_exact_sum(agg, cfg, updates)


@pytest.mark.parametrize("t", [4, 3])
def test_wrong_share_that_cannot_be_corrected_gives_no_result(
        monkeypatch: pytest.MonkeyPatch, t: int) -> None:
    # 4 clients: a self-mask seed has 4 shares (3 neighbours and the client's own).
    # t = 4: exactly t shares, the wrong one is undetectable as a share, but the seed it
    # yields leaves a random mask in the sum, which the range check refuses;
    # t = 3: t + 1 shares, seen but not correctable
    n = 4
    cfg = sa.SecAggConfig(n_clients=n, threshold=t, timeout=10)
    _lying_client(monkeypatch, 2, "unmask", _shift_one_share)
    with pytest.raises(ProtocolAbort):
        sa.simulate([RNG.uniform(-1, 1, 5) for _ in range(n)], cfg)


def test_unmask_answer_of_a_large_neighbourhood_fits_the_wire_budget() -> None:
    """Classic SecAgg with 5,000 clients: an answer naming 4,999 neighbours decodes under
    the runtime's default per-byte decoding budget (a dict of arrays per neighbour did not)."""
    from mpcai.runtime import wire

    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    m = 4999
    state = client_mod.ClientState(cfg=sa.SecAggConfig(n_clients=m + 1, threshold=10), me=1,
                                   session=b"s" * 16)
    elements = shamir.bytes_share_size(32)
    state.held = {v: np.stack([np.full(elements, v, dtype=np.uint64),
                               np.zeros(elements, np.uint64)]) for v in range(2, m + 2)}
    answer = client_mod._answer(state, sorted(state.held), [])
    back = wire.decode_payload(wire.encode_payload(answer))
    np.testing.assert_array_equal(back["b_ids"], np.arange(2, m + 2))
    assert back["b"].shape == (m, elements) and int(back["b"][-1, 0]) == m + 1


def test_a_dealer_of_inconsistent_shares_is_named_not_its_honest_holder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Client 3 deals client 5 a self-mask share off its polynomial (committing to it):
    client 5 reveals exactly what it was dealt, so the commitment clears it and the
    decoder's verdict falls on the dealer (it used to name client 5)."""
    import sys

    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    real = client_mod.shamir.share_bytes

    def lying_share_bytes(secret: bytes, t: int, n: int, **kw: object) -> list:
        shares = real(secret, t, n, **kw)
        state = sys._getframe(1).f_locals.get("state")
        if state is not None and state.me == 3 and secret == state.self_seed:
            bad = next(s for s in shares if s.x == 5)
            bad.values[1] = (bad.values[1] + np.uint64(1)) % np.uint64(2**61 - 1)
        return shares

    proxy = type("ShamirProxy", (), {"__getattr__": lambda _, n: getattr(shamir_mod, n),
                                     "share_bytes": staticmethod(lying_share_bytes)})()
    shamir_mod = client_mod.shamir
    monkeypatch.setattr(client_mod, "shamir", proxy)
    n = 7
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    updates = [RNG.uniform(-1, 1, 5) for _ in range(n)]
    agg = sa.simulate(updates, cfg).aggregate
    assert agg.misbehaving == [3]
    assert_exact_sum(agg, cfg, updates)


def test_a_few_clients_of_other_lengths_cannot_crowd_out_the_honest_length() -> None:
    """Without a declared dim, 4 colluders with 4 different update lengths (which used to
    take every per-length slot and evict the honest vectors): the majority's length is
    fixed at advertise_keys from counts alone, the colluders drop out, the rest is exact."""
    n = 10
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=3)  # the colluders wait it out
    updates = [RNG.uniform(-1, 1, 6 + (c if c <= 4 else 0)) for c in range(1, n + 1)]

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await sa.server(party, cfg)
        return await sa.client(party, updates[party.id - 1], cfg)

    run = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    agg = run[0]
    assert isinstance(agg, sa.AggregateResult)
    assert agg.survivors == list(range(5, n + 1))
    assert agg.dropped["masked_input"] == [1, 2, 3, 4]
    assert_exact_sum(agg, cfg, updates)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_updates_are_refused_not_clipped(bad: float) -> None:
    updates = [np.array([0.5, 0.1]) for _ in range(4)]
    updates[2] = np.array([0.5, bad])
    with pytest.raises(EncodingOverflow):
        sa.simulate(updates, sa.SecAggConfig(n_clients=4, threshold=3, timeout=5))


def test_simulate_refuses_inputs_it_would_misread() -> None:
    cfg = sa.SecAggConfig(n_clients=3, threshold=2, timeout=5)
    good = [np.zeros(4) for _ in range(3)]
    with pytest.raises(InvalidInput, match="other keys"):  # was labelled with client 1's keys
        sa.simulate([{"a": np.zeros(2)}, {"b": np.zeros(2)}, {"a": np.zeros(2)}], cfg)
    with pytest.raises(InvalidInput, match="is None"):
        sa.simulate([np.zeros(4), None, np.zeros(4)], cfg)
    with pytest.raises(InvalidInput, match="empty"):
        sa.simulate([np.zeros(4), np.zeros(0), np.zeros(4)], cfg)
    with pytest.raises(InvalidInput, match="not a stage"):
        sa.simulate(good, cfg, dropouts={1: "before_lunch"})
    with pytest.raises(InvalidInput, match=r"ids are 1\.\.3"):
        sa.simulate(good, cfg, dropouts={0: Stage.MASKED_INPUT})
    with pytest.raises(TypeError, match="integers"):  # was NotEnoughSurvivors
        sa.simulate(good, cfg, weights=[1.5, 2, 3])
    with pytest.raises(InvalidInput, match="max_weight"):
        sa.simulate(good, cfg, weights=[1, 2, 3])
    with pytest.raises(InvalidInput, match="2 weights for 3"):
        sa.simulate(good, cfg, weights=[1, 1])
    with pytest.raises(InvalidInput, match="2 clients"):
        sa.simulate([np.zeros(4), np.zeros(4)])


def test_a_stage_name_drops_the_client_and_ids_follow_list_positions() -> None:
    cfg = sa.SecAggConfig(n_clients=4, threshold=2, timeout=5)
    updates = [np.full(3, float(i) / 10) for i in range(4)]
    res = sa.simulate(updates, cfg, dropouts={2: "masked_input"})  # was ignored
    assert res.aggregate.survivors == [1, 3, 4]
    assert res.by_client[2] == {"dropped_before": "masked_input"}
    np.testing.assert_allclose(res.mean, np.mean([updates[0], updates[2], updates[3]], axis=0),
                               atol=1e-4)
    # without a configuration, max_weight follows the weights given
    res = sa.simulate(updates, weights=[10, 200, 3000, 4])
    assert res.aggregate.total_weight == 3214


def test_a_dealer_whose_shares_cannot_be_decoded_is_named_in_the_abort(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Client 1 commits to 3 off-polynomial shares of 6 (beyond what decoding corrects):
    the round stops, and the abort names the dealer (it used to blame "a neighbour")."""
    import sys

    client_mod = importlib.import_module("mpcai.protocols.secure_aggregation.client")
    shamir_mod = client_mod.shamir
    real = shamir_mod.share_bytes

    def lying_share_bytes(secret: bytes, t: int, n: int, **kw: object) -> list:
        shares = real(secret, t, n, **kw)
        state = sys._getframe(1).f_locals.get("state")
        if state is not None and state.me == 1 and secret == state.self_seed:
            for s in shares[1:4]:
                s.values[1] = (s.values[1] + np.uint64(1)) % np.uint64(2**61 - 1)
        return shares

    proxy = type("ShamirProxy", (), {"__getattr__": lambda _, n: getattr(shamir_mod, n),
                                     "share_bytes": staticmethod(lying_share_bytes)})()
    monkeypatch.setattr(client_mod, "shamir", proxy)
    cfg = sa.SecAggConfig(n_clients=6, threshold=2, timeout=10)
    with pytest.raises(MisbehaviourDetected) as info:
        sa.simulate([np.full(3, 0.1 * i) for i in range(6)], cfg)
    assert info.value.misbehaving == [1] and "client 1 dealt" in str(info.value)


def test_half_the_clients_cannot_decide_the_update_length() -> None:
    n = 4
    cfg = sa.SecAggConfig(n_clients=n, threshold=2, timeout=3)
    updates = [np.zeros(1), np.zeros(1), np.zeros(4), np.zeros(4)]

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await sa.server(party, cfg)
        return await sa.client(party, updates[party.id - 1], cfg)

    run = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    assert isinstance(run[0], ProtocolAbort) and "majority" in str(run[0])


@pytest.mark.parametrize("conf", [{"n_clients": 3, "foo": 1},
                                  {"n_clients": 3, "dim": 4, "mask_bits": 32},
                                  {"dim": 4},
                                  {}])
def test_process_party_config_errors_are_typed(conf: dict[str, object]) -> None:
    # unknown or missing fields were an untyped TypeError from SecAggConfig(**config)
    import trio
    from mpcai.protocols.secure_aggregation import simulation

    from mpcai.errors import InvalidType

    with pytest.raises(InvalidInput, match="config"):
        trio.run(simulation.process_party, object(), conf)
    with pytest.raises(InvalidType, match="config"):
        trio.run(simulation.process_party, object(), [("n_clients", 3)])


def _spy_receives(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int | None]]:
    """(tag, frame length, max_bytes) of every message any party takes."""
    seen: list[tuple[str, int, int | None]] = []
    real = Party._take

    def spy(self: Party, peer: int, tag: str, slot: object, max_bytes: int | None = None) -> object:
        seen.append((tag, slot.size, max_bytes))  # type: ignore[attr-defined]
        return real(self, peer, tag, slot, max_bytes)  # type: ignore[arg-type]

    monkeypatch.setattr(Party, "_take", spy)
    return seen


@pytest.mark.parametrize("case", ["n3-dim1", "sparse", "identities", "dp", "ring64", "wide"])
def test_receive_bounds_admit_honest_rounds(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # every receive of the protocol has a max_bytes bound; an honest round's frames stay
    # well inside them (a too tight bound would refuse an honest client: a dropout)
    from mpcai.protocols.secure_aggregation import DPConfig

    seen = _spy_receives(monkeypatch)
    n, dim, kw, drops, keys = 8, 33, {}, {}, None
    if case == "n3-dim1":
        n, dim = 3, 1
    elif case == "sparse":  # SecAgg+: a Harary graph of degree 4, dropouts at two stages
        n, dim, kw = 24, 257, {"degree": 4, "threshold": 3}
        drops = {3: Stage.MASKED_INPUT, 7: Stage.UNMASK}
    elif case == "identities":
        public, keys = sa.make_identities(n)
        kw = {"threshold": 4, "consistency_check": True, "identities": public}
        drops = {2: Stage.CONSISTENCY_CHECK}
    elif case == "dp":
        n, dim = 10, 100
        kw = {"dp": DPConfig(l2_clip=1.0, noise_multiplier=0.5)}
    elif case == "ring64":
        kw = {"bits": 24, "max_weight": 1 << 10}
    elif case == "wide":
        n, dim = 40, 3000
    cfg = sa.SecAggConfig(n_clients=n, dim=dim, timeout=20, **kw)  # type: ignore[arg-type]
    if case == "ring64":
        assert cfg.ring_bits == 64
    rng = np.random.default_rng(n + dim)
    updates = [rng.uniform(-0.5, 0.5, dim) / (dim ** 0.5 if case == "dp" else 1)
               for _ in range(n)]
    res = sa.simulate(updates, cfg, dropouts=drops, identity_keys=keys)
    agg = res.aggregate
    early = (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT)  # before sending x
    assert agg.survivors == [c for c in range(1, n + 1) if drops.get(c) not in early]
    if cfg.dp is None:
        assert_exact_sum(agg, cfg, updates)
    stages = {s.value for s in (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT,
                                Stage.CONSISTENCY_CHECK, Stage.UNMASK)}
    ours = [(tag, size, bound) for tag, size, bound in seen if tag in stages]
    assert {tag for tag, _, _ in ours} == stages - ({"consistency_check"}
                                                   if not cfg.consistency_check else set())
    for tag, size, bound in ours:
        assert bound is not None, tag
        assert size * 1.25 <= bound, (tag, size, bound)  # honest frames well inside


@pytest.mark.parametrize("order", ["waited-for", "unsolicited"])
def test_an_oversized_masked_input_is_refused(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # waited-for: the server's receive is waiting; unsolicited: the frame may come before
    # it, but the server declared the bound (Party.expect) before asking.  Either way it
    # is refused from its header, undecoded, and client 4 is a dropout.
    import trio

    from mpcai.runtime import wire

    n = 6
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, dim=64, timeout=10)
    updates = [RNG.uniform(-1, 1, 64) for _ in range(n)]
    decoded: list[int] = []  # lengths of masked-input frames decoded
    inline = wire._decode_payload_at

    def spy(data: object, buf: memoryview, pos: int, *args: object) -> object:
        if wire._parse_header(buf)[2] == Stage.MASKED_INPUT.value:
            decoded.append(len(buf))
        return inline(data, buf, pos, *args)

    monkeypatch.setattr(wire, "_decode_payload_at", spy)
    monkeypatch.setattr(wire, "decode_frame", lambda data, limits=wire.DEFAULT_LIMITS:
                        pytest.fail("no frame of this round needs a worker thread"))

    class Liar:  # client 4: honest until it sends a masked input 1000 times too long
        def __init__(self, party: Party) -> None:
            self._party = party

        def __getattr__(self, name: str) -> object:
            return getattr(self._party, name)

        async def send(self, to: int, tag: str, obj: object, **kw: object) -> None:
            if tag == Stage.MASKED_INPUT.value:
                obj = np.zeros(1000 * 66, dtype=np.uint32)
                if order == "waited-for":
                    await trio.sleep(0.5)  # the server's receive is waiting by then
            await self._party.send(to, tag, obj, **kw)  # type: ignore[arg-type]

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await sa.server(party, cfg)
        me = Liar(party) if party.id == 4 else party
        return await sa.client(me, updates[party.id - 1], cfg)  # type: ignore[arg-type]

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    agg = res[0]
    assert isinstance(agg, sa.AggregateResult)
    assert agg.survivors == [1, 2, 3, 5, 6] and agg.dropped["masked_input"] == [4]
    assert_exact_sum(agg, cfg, updates)
    assert len(decoded) == 5 and max(decoded) < 4096  # the liar's 264 KB never decoded


def test_a_client_refuses_an_oversized_server_message_undecoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcai.errors import MessageRejected
    from mpcai.runtime import wire

    n = 4
    cfg = sa.SecAggConfig(n_clients=n, threshold=3, timeout=10)
    decoded: list[int] = []
    inline = wire._decode_payload_at

    def spy(data: object, buf: memoryview, pos: int, *args: object) -> object:
        decoded.append(len(buf))
        return inline(data, buf, pos, *args)

    monkeypatch.setattr(wire, "_decode_payload_at", spy)
    monkeypatch.setattr(wire, "decode_frame", lambda data, limits=wire.DEFAULT_LIMITS:
                        pytest.fail("no frame of this round needs a worker thread"))

    async def fn(party: Party) -> object:
        if party.id == 0:  # a server sending a 1 MiB "key list" to every client
            await party.gather(Stage.ADVERTISE_KEYS.value, timeout=10)
            await party.broadcast(Stage.ADVERTISE_KEYS.value, np.zeros(1 << 20, np.uint8))
            return None
        return await sa.client(party, np.zeros(4), cfg)

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    assert all(isinstance(r, MessageRejected) and r.peer == 0 for r in res[1:]), list(res)
    assert max(decoded) < 4096  # only the clients' key advertisements were decoded


def test_dropouts_as_a_list_is_a_typed_error() -> None:
    from mpcai.errors import InvalidType

    updates = [np.zeros(4, np.float32) for _ in range(5)]
    with pytest.raises(InvalidType, match="dropouts must map client ids"):
        sa.simulate(updates, sa.SecAggConfig(n_clients=5), dropouts=[3])


def test_bad_updates_config_and_transcript_path_are_typed_errors(tmp_path) -> None:
    from mpcai.errors import InvalidInput, InvalidType

    updates = [np.zeros(4, np.float32) for _ in range(4)] + [np.array(["a"] * 4)]
    with pytest.raises(InvalidType, match="real numbers"):
        sa.simulate(updates, sa.SecAggConfig(n_clients=5))
    with pytest.raises(InvalidType, match="SecAggConfig"):
        sa.security_report(5)  # type: ignore[arg-type]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(InvalidInput, match="is a file, not a directory"):
        sa.simulate([np.zeros(4, np.float32)] * 5, sa.SecAggConfig(n_clients=5),
                    transcript=a_file)
