"""Secure aggregation with distributed differential privacy (SecAggConfig.dp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpcai.protocols import secure_aggregation as sa
from mpcai.protocols.secure_aggregation import DPConfig, SecAggConfig, Stage, _dp

from mpcai import dp, prg
from mpcai.errors import InvalidInput, InvalidType, NotEnoughSurvivors

SESSION = bytes(range(16))


def _updates(n: int, d: int, scale: float = 0.02, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)  # data only
    return [rng.normal(size=d) * scale for _ in range(n)]


def _clipped(x: np.ndarray, c: float) -> np.ndarray:
    norm = float(np.linalg.norm(x))
    return x * (c / norm) if norm > c else x


def _centred(total: np.ndarray, d_pad: int, bits: int) -> np.ndarray:
    s = total[:d_pad].astype(np.int64) & ((1 << bits) - 1)
    s[s >= 1 << (bits - 1)] -= 1 << bits
    return s


def test_without_noise_the_mean_is_the_clipped_mean_within_rounding() -> None:
    n, d = 5, 300
    ups = _updates(n, d)
    ups[2] = ups[2] * 1000  # norm ~ 350: clipped to 1
    cfg = SecAggConfig(n_clients=n, dp=DPConfig(l2_clip=1.0, noise_multiplier=0.0,
                                                 report_clipped=True))
    res = sa.simulate(ups, cfg, session=SESSION)
    want = np.mean([_clipped(u, 1.0) for u in ups], axis=0)
    priv = res.aggregate.privacy
    assert priv is not None and priv.epsilon == math.inf and priv.sigma_client == 0
    assert priv.clipped_clients == 1 == res.clipped
    assert res.mean.shape == (d,)
    # each client's rounding moves each rotated coordinate by < 1 grid step
    err = float(np.linalg.norm(res.mean - want))
    assert err <= priv.gamma * math.sqrt(dp.padded_length(d))
    assert err > 0  # rounding happened: the grid is real
    assert np.allclose(res.mean, want, atol=1e-4)


@pytest.mark.parametrize("drop", [0, 1, 2])
def test_noise_in_the_sum_has_the_calibrated_variance(drop: int) -> None:
    """Unmasked sum minus the plaintext sum of the scaled, rotated inputs: the
    survivors' noise (each sigma_client^2 = sigma_total^2 / n_min) plus rounding."""
    n, d, bits = 6, 8000, 20
    cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=0.8, bits=bits,
                                   min_survivors=4))
    assert cfg.min_honest_survivors == 4
    ups = _updates(n, d)
    dropped = list(range(1, drop + 1))
    res = sa.simulate(ups, cfg, session=SESSION,
                      dropouts=dict.fromkeys(dropped, Stage.MASKED_INPUT))
    priv = res.aggregate.privacy
    assert priv is not None
    survivors = res.aggregate.survivors
    assert len(survivors) == n - drop and priv.honest_survivors == n - drop
    p = _dp.params(cfg, d)
    seed = _dp.rotation_seed(SESSION)
    plain = sum(dp.rotate(ups[c - 1], seed) / p.gamma for c in survivors)
    resid = _centred(res.aggregate.quantised_sum, p.d_pad, bits) - plain
    sigma_total = 0.8 * p.scaled_clip  # z x clip, in grid units
    assert p.sigma_client == pytest.approx(sigma_total / 2)
    want = (n - drop) * p.sigma_client**2  # the rounding (< (n - drop) / 4) is negligible
    var = float(np.mean(resid**2))
    # 5 standard errors (sd of a variance estimate: var sqrt(2 / d_pad)); one client's
    # noise more or less (20%) is far outside
    assert abs(var - want) < 5 * want * math.sqrt(2 / p.d_pad)
    assert abs(float(resid.mean())) < 5 * math.sqrt(want / p.d_pad)
    assert priv.sigma_present == pytest.approx(math.sqrt(want))
    # the round's epsilon is Kairouz et al.'s for the survivors' noise
    eps_z = dp.ddg_epsilon(p.l2_sensitivity, p.sigma_client, n - drop, p.d_pad)
    assert priv.epsilon_zcdp == pytest.approx(eps_z)
    assert priv.epsilon == pytest.approx(dp.PrivacyAccountant(1e-5).add_round(eps_z))
    assert priv.delta > 1e-5 and priv.sampler_tv == pytest.approx(
        dp.sampler_tv_bound(p.sigma_client) * p.d_pad * (n - drop))
    assert priv.wrap_probability <= 1e-9


def test_more_survivors_give_a_smaller_epsilon() -> None:
    n, d = 6, 64
    cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0, min_survivors=3))
    ups = _updates(n, d)
    full = sa.simulate(ups, cfg).aggregate.privacy
    fewer = sa.simulate(ups, cfg, dropouts=dict.fromkeys([1, 2, 3], "masked_input")
                        ).aggregate.privacy
    assert full is not None and fewer is not None
    assert full.epsilon < fewer.epsilon
    # calibrated for 3 honest survivors: with exactly 3 the noise is z x clip
    assert fewer.sigma_present == pytest.approx(1.0 / fewer.gamma, rel=1e-9)


def test_too_few_survivors_refuse_the_round_before_unmasking() -> None:
    cfg = SecAggConfig(n_clients=6, threshold=3, corrupt_fraction=0.0,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0, min_survivors=5))
    with pytest.raises(NotEnoughSurvivors, match="dp needs 5"):
        sa.simulate(_updates(6, 16), cfg, dropouts={1: "masked_input", 2: "masked_input"})


def test_corrupt_clients_are_not_counted_as_noise() -> None:
    # 10 clients, 20% corrupt -> C = 2; honest survivors = survivors - 2
    cfg = SecAggConfig(n_clients=10, threshold=6, corrupt_fraction=0.2,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0))
    assert cfg.corrupt_clients == 2 and cfg.min_honest_survivors == 4
    priv = sa.simulate(_updates(10, 32), cfg).aggregate.privacy
    assert priv is not None and priv.honest_survivors == 8


def test_bad_dp_configurations_are_refused() -> None:
    with pytest.raises(InvalidInput, match="max_weight"):
        SecAggConfig(n_clients=4, max_weight=3, dp=DPConfig(1.0, 1.0))
    with pytest.raises(InvalidInput):
        DPConfig(l2_clip=1.0, noise_multiplier=1.0, bits=12)
    with pytest.raises(InvalidInput):
        DPConfig(l2_clip=1.0, noise_multiplier=1.0, bits=33)
    with pytest.raises(InvalidInput):
        DPConfig(l2_clip=0.0, noise_multiplier=1.0)
    with pytest.raises(InvalidInput):
        DPConfig(l2_clip=1.0, noise_multiplier=-1.0)
    with pytest.raises(InvalidInput):
        DPConfig(l2_clip=1.0, noise_multiplier=1.0, delta=1.0)
    with pytest.raises(InvalidInput, match="honest"):  # 3 survivors, all may be corrupt
        SecAggConfig(n_clients=6, threshold=3, corrupt_fraction=0.5, dp=DPConfig(1.0, 1.0))
    with pytest.raises(InvalidInput, match="dp must be"):
        SecAggConfig(n_clients=4, dp=1.0)  # type: ignore[arg-type]
    # a dict (config files, process_party) becomes a DPConfig
    cfg = SecAggConfig(n_clients=4, threshold=3, corrupt_fraction=0.0,
                       dp={"l2_clip": 2.0, "noise_multiplier": 0.5})  # type: ignore[arg-type]
    assert cfg.dp == DPConfig(2.0, 0.5) and cfg.ring_bits == 32
    with pytest.raises(InvalidInput, match="weight"):
        sa.simulate(_updates(4, 8), cfg, weights=[1, 2, 1, 1])


def test_sixteen_bits_leave_a_coarser_grid_than_twenty() -> None:
    base = dict(n_clients=8, threshold=5, corrupt_fraction=0.0)
    g16 = _dp.params(SecAggConfig(**base, dp=DPConfig(1.0, 1.0, bits=16)), 1000).gamma
    g20 = _dp.params(SecAggConfig(**base, dp=DPConfig(1.0, 1.0, bits=20)), 1000).gamma
    assert g16 == pytest.approx(16 * g20, rel=0.01)
    cfg = SecAggConfig(**base, dp=DPConfig(1.0, 1.0, bits=16))
    ups = _updates(8, 1000, scale=0.01)
    res = sa.simulate(ups, cfg)
    err = res.mean - np.mean(ups, axis=0)
    priv = res.aggregate.privacy
    assert priv is not None
    # the noise of the mean: sigma_present x gamma / 8 per coordinate
    assert float(np.std(err)) == pytest.approx(priv.sigma_present * priv.gamma / 8, rel=0.15)


def test_process_party_takes_dp_as_a_dict_and_returns_the_record() -> None:
    from mpcai.protocols.secure_aggregation.simulation import process_party

    from mpcai.runtime import run_local, wire

    n, d = 4, 40
    config = {"n_clients": n, "threshold": 3, "corrupt_fraction": 0.0,
              "dp": {"l2_clip": 1.0, "noise_multiplier": 0.0, "bits": 16}}
    assert wire.decode_payload(wire.encode_payload(config)) == config  # launch_local's path
    ups = _updates(n, d)

    async def party_fn(party):  # type: ignore[no-untyped-def]
        return await process_party(party, config, None if party.id == 0 else ups[party.id - 1])

    run = run_local(n + 1, party_fn, session=SESSION)
    out = wire.decode_payload(wire.encode_payload(run[0]))  # what the launcher hands back
    assert out["privacy"]["epsilon"] == math.inf and out["privacy"]["honest_survivors"] == n
    assert np.allclose(out["mean"], np.mean(ups, axis=0), atol=1e-3)


def test_calibrated_noise_meets_the_target_over_the_rounds() -> None:
    cfg = SecAggConfig(n_clients=10, threshold=6, corrupt_fraction=0.1,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0, bits=20))
    d, rounds = 1000, 10
    z = sa.calibrate_noise(cfg, d, 3.0, rounds)
    tuned = SecAggConfig(n_clients=10, threshold=6, corrupt_fraction=0.1,
                         dp=DPConfig(l2_clip=1.0, noise_multiplier=z, bits=20))
    p = _dp.params(tuned, d)
    eps_r = dp.ddg_epsilon(p.l2_sensitivity, p.sigma_client, tuned.min_honest_survivors, p.d_pad)
    acc = dp.PrivacyAccountant(1e-5)
    for _ in range(rounds):
        eps = acc.add_round(eps_r)
    assert 2.9 < eps <= 3.0  # met, and not by much more noise than needed
    assert sa.calibrate_noise(cfg, d, math.inf, rounds) == 0.0
    assert sa.calibrate_noise(cfg, d, 8.0, rounds) < z


@pytest.mark.parametrize("bits", [16, 17, 20, 31, 32])
def test_packing_keeps_the_residues_and_sends_bits_per_value(bits: int) -> None:
    from mpcai import prg

    for count in (1, 7, 8, (1 << 16) + 3):
        v = prg.ring_vector(SEED32, count).astype(np.uint32)
        packed = _dp.pack(v, bits)
        assert packed.dtype == np.uint8 and packed.size == (count * bits + 7) // 8
        want = v if bits == 32 else v & np.uint32((1 << bits) - 1)
        assert np.array_equal(_dp.unpack(packed, bits, count), want)


SEED32 = bytes(range(32))


def test_a_dp_client_sends_bits_not_words() -> None:
    n, d = 4, 4096
    ups = _updates(n, d, scale=0.01)  # norms ~0.64: none clipped
    base = dict(n_clients=n, threshold=3, corrupt_fraction=0.0)
    sent = {}
    for bits in (16, 20):
        res = sa.simulate(ups, SecAggConfig(**base, dp=DPConfig(1.0, 0.0, bits=bits)))
        sent[bits] = res.stats[1].bytes_sent
        assert np.allclose(res.mean, np.mean(ups, axis=0), atol=1e-3)
    plain = sa.simulate(ups, SecAggConfig(**base, bits=16)).stats[1].bytes_sent
    # the masked vector dominates: 4096 values x (20 - 16) bits / 8 = 2048 bytes more
    assert sent[20] - sent[16] == pytest.approx(4096 * 4 / 8, abs=16)
    assert plain - sent[16] == pytest.approx(4096 * 1, abs=64)  # Z_2^24: 24 bits vs 16


def test_clients_refuse_a_server_that_unmasks_fewer_survivors_than_dp_needs() -> None:
    """A server that skips its own check and claims that clients 4..6 dropped (after
    their masked inputs arrived) gets no share: the noise in a sum of 3 was
    calibrated for 5."""
    import importlib

    from mpcai.runtime import InMemoryNetwork, Party
    from mpcai.testing import run_local

    n = 6
    cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0, timeout=10,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0, min_survivors=5))
    srv = importlib.import_module("mpcai.protocols.secure_aggregation.server")

    async def lying(party: Party) -> object:
        state = srv.ServerState(cfg=cfg, session=party.session)
        await srv.advertise_keys(party, state, list(range(1, n + 1)))
        await srv.share_keys(party, state)
        await srv.masked_input(party, state)
        assert state.u3 == list(range(1, n + 1))
        request = {"u3": np.array([1, 2, 3], dtype=np.uint32),
                   "dropped": np.array([4, 5, 6], dtype=np.uint32)}
        await party.send_many("unmask", dict.fromkeys(range(1, n + 1), request))
        return await party.gather("unmask", [1, 2, 3], timeout=5, min_count=0)

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await lying(party)
        return await sa.client(party, np.zeros(8), cfg)

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    assert res[0] == {}  # no share of anything
    assert all(isinstance(r, NotEnoughSurvivors) and "dp needs 5" in str(r) for r in res[1:4])


def test_the_clipped_count_is_not_released_unless_asked_for() -> None:
    """The count of clipped clients is exact: with it, two neighbouring datasets (client
    1's update of norm 300 or a zero vector) are told apart with certainty, whatever
    the noise.  By default every flag is 0 and the server learns nothing from it."""
    n, d = 4, 32
    big = _updates(n, d)
    big[0] = np.full(d, 50.0)  # norm ~283 > l2_clip
    zero = [u.copy() for u in big]
    zero[0] = np.zeros(d)
    counts = {}
    for report in (True, False):
        cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0,
                           dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0,
                                       report_clipped=report))
        for name, ups in (("big", big), ("zero", zero)):
            res = sa.simulate(ups, cfg)
            priv = res.aggregate.privacy
            assert priv is not None and priv.clipped_clients == res.clipped
            assert int(res.aggregate.quantised_sum[-2]) == res.clipped
            counts[report, name] = res.clipped
    assert counts[True, "big"] == 1 and counts[True, "zero"] == 0  # the leak, when asked
    assert counts[False, "big"] == counts[False, "zero"] == 0
    with pytest.raises(InvalidType):
        DPConfig(1.0, 1.0, report_clipped=1)  # type: ignore[arg-type]


def test_a_sparse_graph_completes_with_more_survivors_needed_than_neighbours() -> None:
    """SecAgg+ (k neighbours): a client sees its neighbourhood's survivors only, at most
    k + 1, so it cannot count dp.min_survivors > k + 1 itself; it used to refuse every
    such round.  The server's count stands (and refuses below it)."""
    n = 30
    cfg = SecAggConfig(n_clients=n, corrupt_fraction=0.05, dropout_fraction=0.05,
                       dp=DPConfig(1.0, 1.0, min_survivors=20))
    assert cfg.neighbours + 1 < cfg.dp_min_survivors == 20
    ups = _updates(n, 16)
    res = sa.simulate(ups, cfg, dropouts={1: "masked_input", 2: "masked_input"})
    priv = res.aggregate.privacy
    assert priv is not None and priv.honest_survivors == n - 2 - cfg.corrupt_clients
    with pytest.raises(NotEnoughSurvivors, match="dp needs 20"):
        sa.simulate(ups, cfg, dropouts=dict.fromkeys(range(1, 12), "masked_input"))


def test_edge_updates_dims_and_bits() -> None:
    base = dict(n_clients=4, threshold=3, corrupt_fraction=0.0)
    # an update whose squared norm overflows float64 is clipped, not zeroed
    ups = [np.full(4, 1e200)] + [np.full(4, 0.1)] * 3
    res = sa.simulate(ups, SecAggConfig(**base, dp=DPConfig(1.0, 0.0)))
    assert np.allclose(res.mean, (0.5 + 0.3) / 4, atol=1e-4)  # (0.5, ..) has norm 1
    # one value; 32 bits (the whole masking ring) with and without noise
    one = [np.array([0.3])] * 4
    assert np.allclose(sa.simulate(one, SecAggConfig(**base, dp=DPConfig(1.0, 0.0))).mean,
                       0.3, atol=1e-4)
    three = [np.array([0.3, -0.2, 0.1])] * 4
    res = sa.simulate(three, SecAggConfig(**base, dp=DPConfig(1.0, 0.0, bits=32)))
    assert np.allclose(res.mean, three[0], atol=1e-7)
    res = sa.simulate(three, SecAggConfig(**base, dp=DPConfig(1.0, 1.0, bits=32)))
    priv = res.aggregate.privacy
    assert priv is not None and priv.sigma_client == dp.MAX_SIGMA  # the sampler's cap
    noise = priv.sigma_present * priv.gamma / 4  # the mean's noise per value
    assert np.all(np.abs(res.mean - three[0]) < 6 * noise)
    for bad in (np.array([np.nan, 0.2]), np.array([np.inf, 0.2])):
        with pytest.raises(InvalidInput, match="NaN or infinite"):
            sa.simulate([bad] + [np.array([0.1, 0.2])] * 3,
                        SecAggConfig(**base, dp=DPConfig(1.0, 0.0)))


def test_the_dp_ring_is_32_bits_for_any_number_of_clients() -> None:
    """70000 clients made the ring Z_2^64 (the non-dp sum's bound) while the DP encoding
    is uint32: every masked input was then refused as malformed."""
    cfg = SecAggConfig(n_clients=70_000, threshold=40, degree=60, corrupt_fraction=1e-4,
                       dp=DPConfig(1.0, 1.0, bits=20))
    assert cfg.ring_bits == 32
    vec, _ = _dp.encode(cfg, SESSION, np.full(8, 0.1))
    assert vec.dtype == np.uint32 and vec.size == _dp.wire_length(cfg, 8)


@pytest.mark.parametrize(("bits", "mask_bits"), [(16, 24), (24, 24), (25, 32), (32, 32)])
def test_dp_masks_take_3_bytes_of_keystream_up_to_24_bits(monkeypatch: pytest.MonkeyPatch,
                                                           bits: int, mask_bits: int) -> None:
    """Only the residues modulo 2^dp.bits are sent and summed: up to 24 bits the masks
    come from the 3-byte stream; the round is exact either way (no noise: the mean is
    the clipped mean within rounding, against the plaintext)."""
    n, d = 5, 300
    cfg = SecAggConfig(n_clients=n, threshold=3, dp=DPConfig(1.0, 0.0, bits=bits))
    assert cfg.mask_bits == mask_bits and cfg.ring_bits == 32
    ups = _updates(n, d)
    widths: list[object] = []
    real = prg.ring_accumulate

    def spy(*args: object, **kw: object) -> None:
        widths.append(kw.get("bits"))
        real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(prg, "ring_accumulate", spy)
    res = sa.simulate(ups, cfg, session=SESSION, dropouts={4: sa.Stage.MASKED_INPUT})
    want = np.mean([_clipped(u, 1.0) for i, u in enumerate(ups, 1) if i != 4], axis=0)
    assert np.allclose(res.mean, want, atol=1e-4)
    assert widths and set(widths) == {mask_bits}  # clients' and server's masks
    assert SecAggConfig(n_clients=n, threshold=3).mask_bits == 24  # plain: the ring's


def test_with_the_consistency_check_a_smaller_signed_list_gets_no_share() -> None:
    """The malicious-server setting (identities, consistency check, complete graph): a
    server that has every masked input but has the clients sign a list of 3 (claiming
    4..6 dropped after sending) gets the signatures but no share at unmask."""
    import importlib

    from mpcai.runtime import InMemoryNetwork, Party
    from mpcai.testing import run_local

    n = 6
    public, private = sa.make_identities(n)
    cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0, timeout=10,
                       identities=public, consistency_check=True,
                       dp=DPConfig(l2_clip=1.0, noise_multiplier=1.0, min_survivors=5))
    srv = importlib.import_module("mpcai.protocols.secure_aggregation.server")
    few = [1, 2, 3]

    async def lying(party: Party) -> object:
        state = srv.ServerState(cfg=cfg, session=party.session)
        await srv.advertise_keys(party, state, list(range(1, n + 1)))
        await srv.share_keys(party, state)
        await srv.masked_input(party, state)
        assert state.u3 == list(range(1, n + 1))
        state.u3 = few
        await srv.consistency_check(party, state)
        assert sorted(state.sigs) == few  # signing is harmless: the list is checked later
        request = {"u3": np.array(few, dtype=np.uint32),
                   "dropped": np.array([4, 5, 6], dtype=np.uint32), "sigs": state.sigs}
        await party.send_many("unmask", dict.fromkeys(few, request))
        return await party.gather("unmask", few, timeout=5, min_count=0)

    async def fn(party: Party) -> object:
        if party.id == 0:
            return await lying(party)
        return await sa.client(party, np.zeros(8), cfg, identity_key=private[party.id])

    res = run_local(n + 1, fn, network=InMemoryNetwork(n + 1, hub=0), return_exceptions=True)
    assert res[0] == {}
    assert all(isinstance(r, NotEnoughSurvivors) and "dp needs 5" in str(r) for r in res[1:4])
