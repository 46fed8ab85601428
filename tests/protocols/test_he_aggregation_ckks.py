"""HE aggregation with the committee CKKS scheme (``scheme="ckks"``): sums against plaintext
Python ints, client dropouts, decryption sets (a member of the set dropping, too few
members), wrong partials (malformed: another set; not a sum of integers: the round
fails), malformed client messages, an aggregator asking for too many sets, configuration
checks, processes over TLS.

One 3-of-5 committee key (preset ``"n8192-agg"``) for the module; 5,002 values per
client, two ciphertexts.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trio
from mpcai.protocols import he_aggregation as ha
from mpcai.protocols.he_aggregation._ckks import CKKSScheme

from mpcai import encoding
from mpcai.errors import (
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    NotEnoughSurvivors,
    PeerError,
)
from mpcai.he import ckks
from mpcai.runtime import InMemoryNetwork, Party, run_local

N, DIM = 6, 5000
WEIGHTS = [1, 4, 2, 7, 3, 5]


@pytest.fixture(scope="module")
def keys() -> tuple[ckks.ThresholdContext, list[ckks.KeyShare]]:
    # a generous budget: every test of the module spends the same shares
    return ckks.deal_threshold_keys(5, 3, decryption_budget=4096)


@pytest.fixture(scope="module")
def updates() -> list[np.ndarray]:
    rng = np.random.default_rng(11)  # test data only
    return [rng.uniform(-1.5, 1.5, size=(50, DIM // 50)) for _ in range(N)]


def config(**kw: object) -> ha.HEAggConfig:
    base: dict[str, object] = {"n_clients": N, "dim": DIM, "committee": (3, 5), "clip": 2.0,
                               "bits": 16, "max_weight": 8, "timeout": 20.0,
                               "decrypt_timeout": 20.0, "scheme": "ckks"}
    return ha.HEAggConfig(**{**base, **kw})  # type: ignore[arg-type]


def plaintext_sums(updates: list[np.ndarray], ids: list[int], cfg: ha.HEAggConfig
                   ) -> list[int]:
    """sum over ids of weight x quantised update, the clipped count, the weight (ints)."""
    total = [0] * (cfg.dim + 2)
    for c in ids:
        x = updates[c - 1].ravel()
        q = encoding.quantize(x, clip=cfg.clip, bits=cfg.bits, out_of_range="clip")
        for j, v in enumerate(q.tolist()):
            total[j] += v * WEIGHTS[c - 1]
        total[-2] += int(np.count_nonzero(np.abs(x) > cfg.clip))
        total[-1] += WEIGHTS[c - 1]
    return total


def check_exact(res: ha.AggregateResult, updates: list[np.ndarray], ids: list[int],
                cfg: ha.HEAggConfig) -> None:
    assert res.participants == ids
    assert res.sums.tolist() == plaintext_sums(updates, ids, cfg)  # rounded: exact
    clipped = [np.clip(updates[c - 1], -cfg.clip, cfg.clip) * WEIGHTS[c - 1] for c in ids]
    mean = np.sum(clipped, axis=0) / sum(WEIGHTS[c - 1] for c in ids)
    step = 2 * cfg.clip / cfg.levels
    assert np.max(np.abs(res.mean.reshape(mean.shape) - mean)) <= step / 2 + 1e-12


def members(*holders: int) -> list[int]:
    return [N + h for h in holders]


def test_sum_is_exact_and_the_mean_within_the_quantisation_step(keys, updates) -> None:
    cfg = config()
    res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys)
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    assert res.mean.shape == updates[0].shape and res.total_weight == sum(WEIGHTS)
    assert res.decryption_sets == [members(1, 2, 3)] == [res.decrypted_by]
    assert res.misbehaving == res.committee_missing == res.dropped == res.rejected == []
    roles = res.roles
    assert roles["client"]["count"] == N and roles["client"]["bytes_received"] == 0
    assert roles["committee"]["count"] == 3  # members 4 and 5 were not asked to decrypt
    # two ciphertexts of two 8192-coefficient polynomials modulo two 60-bit primes
    assert 2 * 2 * 2 * 8192 * 8 < roles["client"]["bytes_sent"] < 2 * 2 * 2 * 8192 * 8 + 4096


def test_the_simulation_deals_a_key_when_given_none(updates) -> None:
    res = ha.simulate(updates[:3], WEIGHTS[:3], committee=(2, 3), clip=2.0, scheme="ckks")
    want = sum(w * np.clip(u, -2, 2) for w, u in zip(WEIGHTS, updates[:3], strict=False))
    assert np.max(np.abs(res.mean - want / sum(WEIGHTS[:3]))) <= 2 / 65535 + 1e-12
    with pytest.raises(InvalidInput, match="scheme"):
        ha.simulate(updates, WEIGHTS, cfg=config(scheme="paillier"), scheme="ckks")


@pytest.mark.parametrize("gone", [[2], [1, 4, 6], [1, 2, 3, 4]])
def test_clients_dropping_before_sending_leave_the_exact_sum_of_the_others(
        keys, updates, gone: list[int]) -> None:
    cfg = config()
    res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, dropouts=gone)
    check_exact(res, updates, [c for c in range(1, N + 1) if c not in gone], cfg)
    assert res.dropped == gone


@pytest.mark.parametrize(("gone", "sets"), [
    ([1], [(1, 2, 3), (2, 3, 4)]),
    ([2, 3], [(1, 2, 3), (1, 4, 5)]),
    ([5], [(1, 2, 3)]),  # outside the first set: nobody notices
])
def test_a_member_of_the_set_dropping_makes_the_aggregator_ask_another_set(
        keys, updates, gone: list[int], sets: list[tuple[int, ...]]) -> None:
    cfg = config()
    res = ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, committee_dropouts=gone)
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    assert res.decryption_sets == [members(*s) for s in sets]
    assert res.decrypted_by == members(*sets[-1])
    assert not set(members(*gone)) & set(res.decrypted_by)


def test_fewer_than_t_members_is_a_typed_error_not_a_hang(keys, updates) -> None:
    cfg = config()
    with pytest.raises(NotEnoughSurvivors, match="2 committee members left of the 3"):
        ha.simulate(updates, WEIGHTS, cfg=cfg, keys=keys, committee_dropouts=[1, 3, 4])


async def silent_member(party: Party) -> dict:
    """Connected but never answering: waits until the aggregator leaves."""
    try:
        await party.recv(0, "never sent", timeout=60)
    except PeerError:
        pass
    return {"silent": True}


def run_custom(cfg: ha.HEAggConfig, keys, updates, roles: dict) -> list:
    """Run every party; ``roles[pid](party)`` replaces party pid's honest role."""
    pk, shares = keys

    async def party_fn(party: Party) -> object:
        if party.id in roles:
            return await roles[party.id](party)
        if party.id == 0:
            return await ha.aggregator(party, cfg, pk)
        if party.id <= cfg.n_clients:
            return await ha.client(party, updates[party.id - 1], cfg, pk,
                                   WEIGHTS[party.id - 1])
        return await ha.committee_member(party, cfg, pk, shares[party.id - cfg.n_clients - 1])

    n = 1 + cfg.n_clients + cfg.committee_size
    return run_local(n, party_fn, network=InMemoryNetwork(n, hub=0), timeout=60,
                     return_exceptions=True)


def test_silent_members_of_the_set_end_at_the_deadline(keys, updates) -> None:
    cfg = config(decrypt_timeout=1.0)
    run = run_custom(cfg, keys, updates, {m: silent_member for m in members(2, 4, 5)})
    assert isinstance(run[0], NotEnoughSurvivors), run[0]
    run = run_custom(cfg, keys, updates, {m: silent_member for m in members(1)})
    res = run[0]
    assert res.decryption_sets == [members(1, 2, 3), members(2, 3, 4)]
    assert res.committee_missing == members(1)
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    for m in members(2, 3, 4, 5):  # told that the round is over: none waits for a deadline
        assert run[m]["done"] is True
    assert [run[m]["partials"] for m in members(2, 3, 4, 5)] == [2, 2, 1, 0]


def cheater(cfg: ha.HEAggConfig, keys, how: str):
    """A committee member of the first set that answers it with a wrong partial."""
    pk, shares = keys

    async def role(party: Party) -> dict:
        req = await party.recv(0, ha.Stage.DECRYPT.value)
        blob = req["sum"]
        m = struct.unpack_from("<H", blob, 8)[0]
        holders = struct.unpack_from(f"<{m}H", blob, 10)
        vec = ckks.CKKSVector.deserialize(pk.context, blob[10 + 2 * m:])
        mine = shares[party.id - cfg.n_clients - 1]
        if how == "garbage":
            answer = b"MPCKPD01" + bytes(200)
        else:
            part = ckks.partial_decrypt(mine, vec, holders, summands=cfg.n_clients)
            if how == "other set":  # a correct partial, for a set the sum did not name
                other = (1, 2, 4) if holders != (1, 2, 4) else (1, 2, 5)
                part = ckks.partial_decrypt(mine, vec, other, summands=cfg.n_clients)
            else:  # "tampered": a few NTT values off by one modulo the first prime
                row = part.values[0, 0, :16]
                part.values[0, 0, :16] = np.where(row > 0, row - np.uint64(1), np.uint64(1))
            answer = part.serialize()
        await party.send(0, ha.Stage.DECRYPT.value, answer)
        try:  # stay for the aggregator's next request or its "done"
            await party.recv(0, "decrypt/2", timeout=30)
        except PeerError:
            pass
        return {"cheated": how}

    return role


@pytest.mark.parametrize("how", ["garbage", "other set"])
def test_a_malformed_partial_names_its_member_and_another_set_decrypts(
        keys, updates, how: str) -> None:
    cfg = config()
    bad = members(2)[0]
    run = run_custom(cfg, keys, updates, {bad: cheater(cfg, keys, how)})
    res = run[0]
    assert isinstance(res, ha.AggregateResult), res
    check_exact(res, updates, list(range(1, N + 1)), cfg)
    assert res.misbehaving == [bad]
    assert res.decryption_sets == [members(1, 2, 3), members(1, 3, 4)]


def test_a_wrong_partial_fails_the_integrality_check_and_the_round(keys, updates) -> None:
    """No proofs: the sum shows that a partial was wrong, not whose, so the round fails
    (naming the set) rather than ask another set that may hold the cheater too."""
    cfg = config()
    bad = members(3)[0]
    run = run_custom(cfg, keys, updates, {bad: cheater(cfg, keys, "tampered")})
    assert isinstance(run[0], MisbehaviourDetected), run[0]
    assert run[0].misbehaving == members(1, 2, 3)
    assert "not a sum of integers" in str(run[0])
    for m in members(1, 2, 4, 5):  # honest members were released, none hangs
        assert run[m]["done"] is True


def test_malformed_client_messages_are_rejected_and_the_rest_summed(keys, updates) -> None:
    cfg = config(min_clients=1)
    pk = keys[0]
    other, _ = ckks.deal_threshold_keys(5, 3)
    values, _ = ha.quantize_update(updates[2], cfg, WEIGHTS[2])
    head = b"HCI1" + pk.key_id
    good = head + pk.context.encrypt(values.astype(float)).serialize()

    def sending(blob_of):
        async def role(party: Party) -> dict:
            await party.send(0, ha.Stage.INPUT.value, blob_of())
            return {}
        return role

    roles = {
        2: sending(lambda: head + b"garbage"),
        3: sending(lambda: b"HCI1" + other.key_id  # a client set up with another key
                   + other.context.encrypt(values.astype(float)).serialize()),
        4: sending(lambda: head + pk.context.encrypt(values[:-1].astype(float)).serialize()),
        5: sending(lambda: good + bytes(cfg.length * 64)),  # beyond the length bound
        6: sending(lambda: np.zeros(3)),  # not bytes
    }
    run = run_custom(cfg, keys, updates, roles)
    res = run[0]
    assert isinstance(res, ha.AggregateResult), res
    assert res.rejected == [2, 3, 4, 5, 6] and res.dropped == []
    check_exact(res, updates, [1], cfg)


def test_a_ciphertext_under_another_key_spoils_the_round_not_the_sum(keys, updates) -> None:
    """An RLWE ciphertext does not show its key: one under another key behind this key's
    id is accepted, and the decryption of the sum is then not integral: the round fails
    (naming the set, which is innocent here) instead of giving a wrong sum."""
    cfg = config()
    pk = keys[0]
    other, _ = ckks.deal_threshold_keys(5, 3)
    values, _ = ha.quantize_update(updates[1], cfg, WEIGHTS[1])

    async def liar(party: Party) -> dict:
        blob = b"HCI1" + pk.key_id + other.context.encrypt(values.astype(float)).serialize()
        await party.send(0, ha.Stage.INPUT.value, blob)
        return {}

    run = run_custom(cfg, keys, updates, {2: liar})
    assert isinstance(run[0], MisbehaviourDetected), run[0]
    assert "not a sum of integers" in str(run[0])


def greedy_aggregator(cfg: ha.HEAggConfig, keys, how: str):
    """An aggregator that asks the committee for more than the protocol allows."""
    pk, _ = keys
    scheme = CKKSScheme(cfg, pk)

    async def role(party: Party) -> dict:
        total = None
        for c in cfg.client_ids():
            one = scheme.load_input(await party.recv(c, ha.Stage.INPUT.value))
            assert one.summands == 1
            total = one if total is None else scheme.add(total, one)
        ids = np.arange(1, cfg.n_clients + 1, dtype=np.uint32)
        if how == "another sum":
            plan = [(total, (1, 2, 3)), (one, (1, 2, 4))]
            one.summands = total.summands  # one client's input, declared as the sum
        elif how == "same set twice":
            plan = [(total, (1, 2, 3)), (total, (1, 2, 3))]
        else:  # "too many sets": l - t + 1 = 3 sets allowed, a fourth asked
            plan = [(total, s) for s in ((1, 2, 3), (1, 2, 4), (1, 2, 5), (1, 3, 4))]
        for k, (ct, s) in enumerate(plan, start=1):
            tag = ha.Stage.DECRYPT.value if k == 1 else f"decrypt/{k}"
            await party.broadcast(tag, {"sum": scheme.dump_sum(ct, s), "participants": ids},
                                  to=cfg.member_ids())
            for m in s:
                if m in (1, 2):
                    try:
                        await party.recv(N + m, tag, timeout=10)
                    except PeerError:
                        pass
        await trio.sleep(0.5)
        return {}

    return role


@pytest.mark.parametrize("how", ["another sum", "same set twice", "too many sets"])
def test_members_refuse_requests_beyond_one_sum_and_l_minus_t_plus_1_sets(
        keys, updates, how: str) -> None:
    cfg = config()
    run = run_custom(cfg, keys, updates, {0: greedy_aggregator(cfg, keys, how)})
    refused = [m for m in cfg.member_ids() if isinstance(run[m], MisbehaviourDetected)]
    assert refused == cfg.member_ids(), [run[m] for m in cfg.member_ids()]
    assert all(run[m].misbehaving == [0] for m in refused)


def test_configuration_checks(keys) -> None:
    # 2^10 clients x 2^12 weight x (2^16 - 1): below 2^53 (Paillier), not below 2^37
    big = {"n_clients": 1 << 10, "dim": 10, "bits": 16, "max_weight": 1 << 12}
    assert ha.HEAggConfig(**big).scheme == "paillier"
    with pytest.raises(InvalidInput, match="2\\^37"):
        ha.HEAggConfig(**big, scheme="ckks")
    assert ha.HEAggConfig(n_clients=2, dim=10, bits=32, scheme="ckks").top == (1 << 32) - 1
    with pytest.raises(InvalidInput, match="2\\^32"):  # one value of 2^33 - 2: too big
        ha.HEAggConfig(n_clients=2, dim=10, bits=32, max_weight=2, scheme="ckks")
    edge = ha.HEAggConfig(n_clients=1 << 10, dim=10, bits=16, max_weight=(1 << 11) - 1,
                          scheme="ckks")  # 2^10 x (2^11 - 1) x (2^16 - 1) < 2^37
    assert edge.n_clients * edge.top < 1 << 37
    with pytest.raises(InvalidInput):
        config(scheme="bfv")
    _, shares = keys
    with pytest.raises(InvalidInput, match="committee"):  # a 3-of-5 key, a 2-of-3 round
        ha.simulate([np.zeros(DIM)] * N, cfg=config(committee=(2, 3)), keys=keys)
    with pytest.raises(InvalidType, match="ThresholdContext"):  # a Paillier-shaped key
        ha.simulate([np.zeros(DIM)] * N, cfg=config(), keys=(object(), shares))
    other_preset, other_shares = ckks.deal_threshold_keys(5, 3, preset="n8192")
    with pytest.raises(InvalidInput, match="n8192-agg"):
        ha.simulate([np.zeros(DIM)] * N, cfg=config(), keys=(other_preset, other_shares))


def test_as_processes_over_tls(tmp_path) -> None:
    from mpcai.runtime.launcher import launch_local

    pub, shares = ckks.deal_threshold_keys(3, 2)
    n, dim = 3, 100
    conf = {"n_clients": n, "dim": dim, "committee": [2, 3], "timeout": 30.0,
            "decrypt_timeout": 30.0, "clip": 1.0, "bits": 16, "scheme": "ckks"}
    rng = np.random.default_rng(5)
    ups = [rng.uniform(-1, 1, size=dim) for _ in range(n)]
    blob = pub.serialize()
    args = [[conf, blob]]
    args += [[conf, blob, None, ups[i], 1, i == 1] for i in range(n)]  # client 2 drops
    args += [[conf, blob, s.serialize(), None, 1, i == 0]  # member 1 (in the set) drops
             for i, s in enumerate(shares)]
    run = launch_local(1 + n + 3, "mpcai.protocols.he_aggregation:process_party",
                       args_per_party=args, timeout=90.0, workdir=tmp_path)
    out = run[0]
    assert out["participants"].tolist() == [1, 3]
    want = (ups[0] + ups[2]) / 2
    assert np.max(np.abs(out["mean"] - want)) <= 1 / 65535 + 1e-12


def test_a_vector_at_another_scale_is_rejected_before_it_is_added(keys, updates) -> None:
    # valid alone (every ciphertext at one level and one scale), but adding it to the
    # others' sum would fail: the aggregator once raised out of its round here
    from mpcai.errors import InvalidCiphertext
    from mpcai.he import _ckks_seal

    cfg = config(min_clients=1)
    pk = keys[0]
    scheme = CKKSScheme(cfg, pk)
    values, _ = ha.quantize_update(updates[2], cfg, WEIGHTS[2])
    vec = pk.context.encrypt(values.astype(float))
    sizes, cts, scale = _ckks_seal.parse_vector_proto(vec.serialize()[8:])

    def doubled(raw: bytes) -> bytes:
        ct = _ckks_seal.load_ciphertext(pk.context._mirror, raw)
        ct.scale = 2 * scale
        return _ckks_seal.seal_bytes(ct)

    head = b"HCI1" + pk.key_id
    odd = head + b"MPCKVEC1" + _ckks_seal.vector_proto(sizes, [doubled(c) for c in cts],
                                                       2 * scale)
    with pytest.raises(InvalidCiphertext, match="fresh scale"):
        scheme.load_input(odd)
    assert scheme.load_input(head + vec.serialize()).summands == 1
