"""HE aggregation (threshold Paillier): exact sums against plaintext Python ints, dropouts,
cheating committee members and clients, configuration checks, processes over TLS.

Most runs use a small 3-of-5 key from the unsafe test hook; two run a 2048-bit key
made from the fixed safe primes below (checked for primality when this module loads).
"""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest
import trio
from mpcai.protocols import he_aggregation as ha

from mpcai import encoding
from mpcai.errors import (
    AggregateOutOfRange,
    ClippingWarning,
    EncodingOverflow,
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    NotEnoughSurvivors,
    PeerError,
)
from mpcai.he import paillier as P
from mpcai.he.paillier._threshold import _unsafe_threshold_keys_for_tests
from mpcai.runtime import InMemoryNetwork, Party, run_local

# the two 1024-bit safe primes of tests/primitives/test_paillier_threshold.py (tests only)
P1024 = int(
    "e202d4ac2c5a5bcf81b524eb598b92c0beb8a9ba14af6e8d566bddc8234b7f28379d89984a4ee7b6d9d3a4b2"
    "e5271490c99569cc9ad9ae585205a049e1d92bc26f80fb657d5422fb7c326e0af26075f96b11d5157a4251d9"
    "75c488c54422ebf6713ce8cf375b47b3ba94f6624735e93c68bfe7f396a353edb9bdc01602ccbb8b", 16)
Q1024 = int(
    "e9edb0284cc1b2eca89cdfe8a988f4436998cf0dd8e731157e9f3725f7033a264b28758dc40a83e0ce2dd203"
    "084eaec7c0472340228a0be9dd725fab9fd62171b1986c4608e630931c9387eaf3443187129e1e72a061c035"
    "7086b930937c89f7280be8f875e96925f77979f7e932876c87aeaba38c79f1523fb57a8f11aad263", 16)
for _p in (P1024, Q1024):
    assert _p.bit_length() == 1024 and gmpy2.is_prime(_p, 40) and gmpy2.is_prime(_p // 2, 40)

N, DIM = 6, 150
WEIGHTS = [1, 4, 2, 7, 3, 5]


@pytest.fixture(scope="module")
def keys() -> tuple[P.ThresholdPublicKey, list[P.KeyShare]]:
    return _unsafe_threshold_keys_for_tests(5, 3, n_bits=512)


@pytest.fixture(scope="module")
def updates() -> list[np.ndarray]:
    rng = np.random.default_rng(7)  # test data only
    return [rng.uniform(-1.2, 1.2, size=(10, DIM // 10)) for _ in range(N)]


def config(**kw: object) -> ha.HEAggConfig:
    base: dict[str, object] = {"n_clients": N, "dim": DIM, "committee": (3, 5), "clip": 1.0,
                               "bits": 16, "max_weight": 8, "timeout": 20.0,
                               "decrypt_timeout": 20.0}
    return ha.HEAggConfig(**{**base, **kw})  # type: ignore[arg-type]


def plaintext_sums(updates: list[np.ndarray], weights: list[int], ids: list[int],
                   cfg: ha.HEAggConfig) -> list[int]:
    """sum over ids of weight x quantised update, then the clipped count, then the weight,
    in Python ints."""
    total = [0] * (cfg.dim + 2)
    for c in ids:
        x = updates[c - 1].ravel()
        q = encoding.quantize(x, clip=cfg.clip, bits=cfg.bits, out_of_range="clip")
        for j, v in enumerate(q.tolist()):
            total[j] += v * weights[c - 1]
        total[-2] += int(np.count_nonzero(np.abs(x) > cfg.clip))
        total[-1] += weights[c - 1]
    return total


def check_exact(res: ha.AggregateResult, updates: list[np.ndarray], ids: list[int],
                cfg: ha.HEAggConfig) -> None:
    assert res.participants == ids
    assert res.sums.tolist() == plaintext_sums(updates, WEIGHTS, ids, cfg)
    clipped = [np.clip(updates[c - 1], -cfg.clip, cfg.clip) * WEIGHTS[c - 1] for c in ids]
    mean = np.sum(clipped, axis=0) / sum(WEIGHTS[c - 1] for c in ids)
    step = 2 * cfg.clip / cfg.levels
    assert res.mean.size == mean.size  # simulate reshapes it, the aggregator alone does not
    assert np.max(np.abs(res.mean.reshape(mean.shape) - mean)) <= step / 2 + 1e-12


def test_sum_is_exact_and_the_mean_within_the_quantisation_step(keys, updates) -> None:
    cfg = config()
    with pytest.warns(ClippingWarning):  # uniform(-1.2, 1.2): ~17% of the values clipped
        res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys)
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    assert res.mean.shape == updates[0].shape
    assert res.total_weight == sum(WEIGHTS) and res.dropped == res.rejected == []
    assert res.clipped == res.sums[-2] > 0 and len(res.decrypted_by) == 3
    assert res.misbehaving == []
    roles = res.roles
    assert roles["client"]["count"] == N and roles["client"]["bytes_received"] == 0
    # one message per client: its ciphertexts plus the frame
    scheme_bytes = 32 + (-(-(DIM + 2) // cfg.spec.slot_count(keys[0].public_key))
                         * keys[0].public_key.ciphertext_bytes)
    assert scheme_bytes <= roles["client"]["bytes_sent"] < scheme_bytes + 200


@pytest.mark.parametrize("gone", [[2], [1, 4, 6], [1, 2, 3, 4]])
def test_clients_dropping_before_sending_leave_the_exact_sum_of_the_others(
        keys, updates, gone: list[int]) -> None:
    cfg = config(clip=2.0)
    res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, dropouts=gone)
    check_exact(res, updates, [c for c in range(1, N + 1) if c not in gone], cfg)
    assert res.dropped == gone and res.clipped == 0


def test_any_t_remaining_members_suffice(keys, updates) -> None:
    cfg = config(clip=2.0)
    for gone in ([1, 2], [4, 5], [1, 5], [3]):
        res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, committee_dropouts=gone)
        check_exact(res, updates, list(range(1, N + 1)), cfg)
        assert not {N + i for i in gone} & set(res.decrypted_by)


def test_fewer_than_t_members_is_a_typed_error_not_a_hang(keys, updates) -> None:
    cfg = config(clip=2.0)
    with pytest.raises(NotEnoughSurvivors, match="2 valid partial decryptions of 3"):
        ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, committee_dropouts=[1, 2, 3])


async def silent_member(party: Party) -> dict:
    """Connected but never answering: waits until the aggregator leaves."""
    try:
        await party.recv(0, "never sent", timeout=60)
    except PeerError:
        pass
    return {"silent": True}


def run_custom(cfg: ha.HEAggConfig, keys, updates, weights, roles: dict) -> list:
    """Run every party; ``roles[pid](party)`` replaces party pid's honest role."""
    pk, shares = keys

    async def party_fn(party: Party) -> object:
        if party.id in roles:
            return await roles[party.id](party)
        if party.id == 0:
            return await ha.aggregator(party, cfg, pk)
        if party.id <= cfg.n_clients:
            return await ha.client(party, updates[party.id - 1], cfg, pk,
                                   weights[party.id - 1])
        return await ha.committee_member(party, cfg, pk, shares[party.id - cfg.n_clients - 1])

    n = 1 + cfg.n_clients + cfg.committee_size
    return run_local(n, party_fn, network=InMemoryNetwork(n, hub=0), timeout=30,
                     return_exceptions=True)


def test_silent_members_end_at_the_deadline(keys, updates) -> None:
    cfg = config(clip=2.0, decrypt_timeout=1.0)
    run = run_custom(cfg, keys, updates, WEIGHTS, {N + 2: silent_member, N + 4: silent_member,
                                                   N + 5: silent_member})
    assert isinstance(run[0], NotEnoughSurvivors)
    run = run_custom(cfg, keys, updates, WEIGHTS, {N + 2: silent_member, N + 4: silent_member})
    assert run[0].decrypted_by == [N + 1, N + 3, N + 5]
    check_exact(run[0], updates, list(range(1, N + 1)), cfg)


def late_member(cfg: ha.HEAggConfig, keys):
    """An honest committee member that answers 0.3 s late."""
    pk, shares = keys

    async def role(party: Party) -> dict:
        await trio.sleep(0.3)
        return await ha.committee_member(party, cfg, pk, shares[party.id - cfg.n_clients - 1])

    return role


def cheater(cfg: ha.HEAggConfig, keys, how: str):
    """A committee member that answers with a bad partial decryption."""
    pk, shares = keys

    async def role(party: Party) -> dict:
        req = await party.recv(0, ha.Stage.DECRYPT.value)
        total = P.PackedCiphertext.deserialize(pk, req["sum"])
        mine = shares[party.id - cfg.n_clients - 1]
        if how == "garbage":
            await party.send(0, ha.Stage.DECRYPT.value, b"PTD\x01" + bytes(100))
            return {}
        if how == "other share":  # another holder's (correct) partial, sent as its own
            other = shares[party.id - cfg.n_clients - 1 - 1]
            blob = P.partial_decrypt(other, total).serialize()
        else:
            part = P.partial_decrypt(mine, total)
            values = list(part.values)
            n2 = pk.public_key.nsquare
            values[0] = values[0] * (1 + pk.n) % n2  # its plaintext + 1, in one slot
            blob = P.PartialDecryption(pk, part.index, values, part.digest, part.challenge,
                                       part.response).serialize()
        await party.send(0, ha.Stage.DECRYPT.value, blob)
        return {}

    return role


@pytest.mark.parametrize("how", ["wrong value", "other share", "garbage"])
def test_a_cheating_member_is_named_and_another_member_used(keys, updates, how: str) -> None:
    cfg = config(clip=2.0)
    bad = N + 2
    roles = {m: late_member(cfg, keys) for m in cfg.member_ids() if m != bad}
    roles[bad] = cheater(cfg, keys, how)  # answers first: the aggregator must read it
    run = run_custom(cfg, keys, updates, WEIGHTS, roles)
    res = run[0]
    assert isinstance(res, ha.AggregateResult), res
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    assert res.misbehaving == [bad] and bad not in res.decrypted_by
    assert len(res.decrypted_by) == 3


def test_cheaters_leaving_fewer_than_t_valid_partials_are_named(keys, updates) -> None:
    cfg = config(clip=2.0)
    bad = [N + 1, N + 3, N + 4]
    run = run_custom(cfg, keys, updates, WEIGHTS,
                     {m: cheater(cfg, keys, "wrong value") for m in bad})
    assert isinstance(run[0], MisbehaviourDetected)
    assert run[0].misbehaving == bad


def test_malformed_client_inputs_are_rejected_and_the_rest_summed(keys, updates) -> None:
    cfg = config(clip=2.0)
    pk = keys[0]
    other, _ = _unsafe_threshold_keys_for_tests(5, 3, n_bits=512)

    def sending(blob_of):
        async def role(party: Party) -> dict:
            await party.send(0, ha.Stage.INPUT.value, blob_of())
            return {}
        return role

    values, _ = ha.quantize_update(updates[2], cfg, WEIGHTS[2])
    good = P.encrypt_packed(pk, values.astype(float), cfg.spec)
    roles = {
        2: sending(lambda: b"garbage"),
        3: sending(lambda: P.encrypt_packed(other, values.astype(float), cfg.spec)
                   .serialize()),  # another key
        4: sending(lambda: (good + good).serialize()),  # a sum, not one input
        5: sending(lambda: np.zeros(3)),  # not bytes
    }
    run = run_custom(cfg, keys, updates, WEIGHTS, roles)
    res = run[0]
    assert res.rejected == [2, 3, 4, 5] and res.dropped == []
    check_exact(res, updates, [1, 6], cfg)


@pytest.mark.parametrize("how", ["weight", "raw plaintext"])
def test_out_of_range_client_input_gives_no_mean(keys, updates, how: str) -> None:
    cfg = config(clip=2.0)
    pk = keys[0]

    async def liar(party: Party) -> dict:
        values, _ = ha.quantize_update(updates[0], cfg, 1)
        if how == "weight":  # a weight that no N honest clients reach together
            values[-1] = N * cfg.max_weight + 1
            blob = P.encrypt_packed(pk, values.astype(float), cfg.spec).serialize()
        else:  # any plaintext mod n, packed or not: -1 carries into every slot
            honest = P.encrypt_packed(pk, values.astype(float), cfg.spec)
            minus_one = pk.public_key.encrypt(-1).ciphertext()
            cs = [minus_one] * honest.ciphertext_count
            blob = P.PackedCiphertext(pk, cs, cfg.length, cfg.spec).serialize()
        await party.send(0, ha.Stage.INPUT.value, blob)
        return {}

    run = run_custom(cfg, keys, updates, WEIGHTS, {1: liar})
    assert isinstance(run[0], AggregateOutOfRange), run[0]


def test_fewer_than_min_clients_never_reach_the_committee(keys, updates) -> None:
    cfg = config(min_clients=3)
    with pytest.raises(NotEnoughSurvivors, match="min_clients"):
        ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, dropouts=[1, 2, 3, 4])


def test_members_refuse_a_request_that_does_not_add_up(keys, updates) -> None:
    cfg = config(clip=2.0)
    pk = keys[0]

    async def greedy(party: Party) -> dict:  # asks for one client's input as "the sum"
        one = await party.recv(1, ha.Stage.INPUT.value)
        for c in range(2, N + 1):
            await party.recv(c, ha.Stage.INPUT.value)
        await party.broadcast(ha.Stage.DECRYPT.value,
                              {"sum": one, "participants": np.arange(1, N + 1, dtype=np.uint32)},
                              to=cfg.member_ids())
        await trio.sleep(0.5)
        return {}

    run = run_custom(cfg, keys, updates, WEIGHTS, {0: greedy})
    for m in cfg.member_ids():
        assert isinstance(run[m], MisbehaviourDetected) and run[m].misbehaving == [0]
    assert pk is keys[0]


def test_configuration_checks(keys) -> None:
    with pytest.raises(InvalidInput, match="2\\^53"):
        ha.HEAggConfig(n_clients=4, dim=10, bits=52)
    with pytest.raises(InvalidInput, match="2\\^53"):
        ha.HEAggConfig(n_clients=1 << 20, dim=10, bits=20, max_weight=(1 << 13) + 1)
    edge = ha.HEAggConfig(n_clients=1 << 20, dim=10, bits=20, max_weight=(1 << 13) - 1)
    assert edge.spec.slot_bits == 56  # 33 value bits + sign + 20 bits of headroom
    for bad in ({"committee": (4, 3)}, {"committee": (0, 3)}, {"committee": (1, 300)},
                {"min_clients": 7}, {"dim": 0}, {"scheme": "bfv"}, {"bits": 0},
                {"timeout": 0}, {"out_of_range": "wrap"}):
        with pytest.raises(InvalidInput):
            config(**bad)
    with pytest.raises(InvalidType):
        config(committee=3)
    cfg = config(committee=(2, 3))
    with pytest.raises(InvalidInput, match="committee"):  # a 3-of-5 key for a 2-of-3 round
        ha.simulate([np.zeros(DIM)] * N, cfg=cfg, keys=keys)
    with pytest.raises(InvalidInput):  # an update of the wrong length, before sending
        ha.quantize_update(np.zeros(DIM + 1), config())
    with pytest.raises(InvalidInput):
        ha.quantize_update(np.zeros(DIM), config(), weight=9)
    with pytest.raises(EncodingOverflow):
        ha.quantize_update(np.full(DIM, np.nan), config())


def test_2048_bit_key_end_to_end() -> None:
    keys = _unsafe_threshold_keys_for_tests(5, 3, p=P1024, q=Q1024)
    rng = np.random.default_rng(3)
    ups = [rng.uniform(-1, 1, size=300) for _ in range(3)]
    res = ha.simulate(ups, [1, 2, 3], committee=(3, 5), keys=keys, committee_dropouts=[2])
    want = sum(w * u for w, u in zip([1, 2, 3], ups, strict=True)) / 6
    assert np.max(np.abs(res.mean - want)) <= 1 / 65535 + 1e-12
    assert res.roles["client"]["bytes_sent"] > 4 * 512  # 4 ciphertexts of 512 bytes


def test_as_processes_over_tls(tmp_path) -> None:
    from mpcai.runtime.launcher import launch_local

    keys = _unsafe_threshold_keys_for_tests(3, 2, p=P1024, q=Q1024)
    pk, shares = keys
    n, dim = 3, 100
    conf = {"n_clients": n, "dim": dim, "committee": [2, 3], "timeout": 30.0,
            "decrypt_timeout": 30.0, "clip": 1.0, "bits": 16}
    rng = np.random.default_rng(5)
    ups = [rng.uniform(-1, 1, size=dim) for _ in range(n)]
    blob = pk.serialize()
    args = [[conf, blob]]
    args += [[conf, blob, None, ups[i], 1, i == 1] for i in range(n)]  # client 2 drops
    args += [[conf, blob, s.serialize()] for s in shares]
    run = launch_local(1 + n + 3, "mpcai.protocols.he_aggregation:process_party",
                       args_per_party=args, timeout=60.0, workdir=tmp_path)
    out = run[0]
    assert out["participants"].tolist() == [1, 3]
    want = (ups[0] + ups[2]) / 2
    assert np.max(np.abs(out["mean"] - want)) <= 1 / 65535 + 1e-12
