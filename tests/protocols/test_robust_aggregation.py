"""Robust aggregation: exact sums, norm-check soundness, cheaters, malformed messages."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytest
from mpcai.protocols import robust_aggregation as ra
from mpcai.protocols.robust_aggregation import config as rcfg

from mpcai import prg
from mpcai.errors import InvalidInput, MisbehaviourDetected
from mpcai.runtime import Party, run_local

D, F = 512, 16


def _ints(rng: np.random.Generator, norm: float) -> np.ndarray:
    """An update on the 2^-16 grid (stochastic rounding is then exact) of about ``norm``."""
    v = rng.normal(size=D)
    v *= norm / np.linalg.norm(v)
    return np.round(v * (1 << F)) / (1 << F)


def _shares(x_int: np.ndarray) -> tuple[bytes, np.ndarray]:
    """A client's two messages for the integer vector ``x_int`` (any uint64 values)."""
    seed = prg.new_seed()
    return seed, x_int.astype(np.uint64) - prg.ring_vector(seed, x_int.size)


def _q(u: np.ndarray) -> np.ndarray:
    return np.round(u * (1 << F)).astype(np.int64)


def _cfg(n: int, **kw: object) -> ra.RobustConfig:
    kw.setdefault("timeout", 5.0)
    return ra.RobustConfig(n_clients=n, dim=D, l2_bound=1.0, frac_bits=F, **kw)  # type: ignore[arg-type]


def test_honest_clients_exact_and_poisoned_rejected() -> None:
    rng = np.random.default_rng(1)
    ups = [_ints(rng, 0.9) for _ in range(4)]
    big = _q(_ints(rng, 10.0))  # 10x the bound, well-formed shares
    res = ra.simulate(ups, _cfg(4), messages={4: _shares(big)})
    assert res.accepted == [2, 3, 5] and res.rejected == [4]
    assert res.malformed == [] and res.dropped == []
    want = sum(_q(ups[i]) for i in (0, 1, 3))
    np.testing.assert_array_equal(res.sum, want)
    np.testing.assert_allclose(res.mean, want / 3 / (1 << F))
    assert len(res.stats) == 6 and res.stats[2].bytes_sent > 8 * D
    # every honest client was told it was accepted: the rounds finished on both sides
    assert res.roles["client"]["bytes_sent"] > 8 * D


def test_all_honest_sum_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    ups = [_ints(rng, rng.uniform(0.1, 0.99)) for _ in range(3)]
    res = ra.simulate(ups, _cfg(3))
    assert res.accepted == [2, 3, 4]
    np.testing.assert_array_equal(res.sum, sum(_q(u) for u in ups))


def test_twice_the_bound_rejected_by_the_norm_test() -> None:
    # ||X|| = 2 B: each |y_i| <= T (about 5.9 B_q) holds for all 256 rows w.p. ~0.99, so
    # the range rows alone would let it through; sum y_i^2 is ~2.2 tau (chi-square with
    # 256 degrees of freedom: ~14 standard deviations over tau).  The guarantee of
    # cfg.gamma (~3.1 B) is looser than what the sketch concentrates to.
    rng = np.random.default_rng(8)
    cfg = _cfg(2)
    x = rng.normal(size=D)
    x = np.round(x * (2.0 * cfg.quant_bound / np.linalg.norm(x))).astype(np.int64)
    ups = [_ints(rng, 0.5), np.zeros(D)]
    res = ra.simulate(ups, cfg, messages={3: _shares(x)})
    assert res.rejected == [3] and res.accepted == [2]


@pytest.mark.parametrize("kind", ["one", "pair", "many", "near"])
def test_wrapping_coordinates_rejected(kind: str) -> None:
    # coordinates of 2^63 (or near it) cancel in pairs of +-1 sketch entries mod 2^64
    # and contribute nothing to the squares if they wrap: the range rows catch them
    x = np.zeros(D, dtype=np.uint64)
    if kind == "one":
        x[7] = 1 << 63
    elif kind == "pair":
        x[[3, 400]] = 1 << 63
    elif kind == "many":
        x[::2] = 1 << 63
    else:
        x[5] = (1 << 63) + 12345
        x[6] = (1 << 63) - 12345
    rng = np.random.default_rng(3)
    ups = [_ints(rng, 0.5) for _ in range(2)]
    res = ra.simulate(ups, _cfg(2), messages={3: _shares(x)})
    assert res.rejected == [3] and res.accepted == [2]
    np.testing.assert_array_equal(res.sum, _q(ups[0]))


def test_just_under_the_bound_accepted() -> None:
    rng = np.random.default_rng(4)
    ups = [_ints(rng, 0.999), _ints(rng, 0.5)]
    cfg = _cfg(3)
    # a client's own integer vector at the quantised bound B_q (the largest an honest
    # client can produce) is accepted too
    edge = rng.normal(size=D)
    edge = np.floor(edge * (cfg.quant_bound * 0.999 / np.linalg.norm(edge))).astype(np.int64)
    res = ra.simulate([*ups, np.zeros(D)], cfg, messages={4: _shares(edge)})
    assert res.accepted == [2, 3, 4]
    np.testing.assert_array_equal(res.sum, _q(ups[0]) + _q(ups[1]) + edge)


def test_malformed_messages_rejected_round_finishes() -> None:
    rng = np.random.default_rng(5)
    ups = [_ints(rng, 0.5) for _ in range(6)]
    good_seed, good_vec = _shares(_q(ups[0]))
    msgs = {
        3: (b"short", good_vec),                                 # seed of the wrong size
        4: (good_seed, good_vec[:-1]),                           # wrong length
        5: (good_seed, good_vec.astype(np.int64)),               # wrong dtype
        6: ("not bytes", {"a": 1}),                              # wrong types
        7: (good_seed, np.zeros((D, 1), dtype=np.uint64)),       # wrong shape
    }
    res = ra.simulate(ups, _cfg(6), messages=msgs)
    assert res.malformed == [3, 4, 5, 6, 7] and res.accepted == [2]
    np.testing.assert_array_equal(res.sum, _q(ups[0]))


def test_dropouts_are_absent() -> None:
    rng = np.random.default_rng(6)
    ups = [_ints(rng, 0.5) for _ in range(4)]
    res = ra.simulate(ups, _cfg(4, timeout=1.0), dropouts=[3, 5])
    assert res.dropped == [3, 5] and res.accepted == [2, 4]
    np.testing.assert_array_equal(res.sum, _q(ups[0]) + _q(ups[2]))


def test_honest_client_over_the_bound_refuses_or_clips() -> None:
    cfg = _cfg(1)
    x = np.ones(D)  # norm sqrt(512) > 1
    with pytest.raises(InvalidInput, match="over the bound"):
        ra.quantize_update(x, cfg)
    clipped = ra.quantize_update(x, _cfg(1, over_bound="clip")).view(np.int64)
    assert np.linalg.norm(clipped) <= cfg.quant_bound
    with pytest.raises(InvalidInput):
        ra.quantize_update(np.ones(D - 1), cfg)
    with pytest.raises(InvalidInput):
        ra.quantize_update(np.full(D, np.nan), cfg)


def test_config_refuses_sketches_that_could_wrap() -> None:
    with pytest.raises(InvalidInput, match="2\\^62"):
        ra.RobustConfig(n_clients=2, dim=10**6, l2_bound=1e6)
    with pytest.raises(InvalidInput):
        ra.RobustConfig(n_clients=2, dim=10, l2_bound=1.0, over_bound="drop")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ra.RobustConfig(n_clients=2, dim=10, l2_bound=-1.0)


def _min_over_s(f: object, hi: float) -> float:
    s = np.linspace(hi * 1e-6, hi * (1 - 1e-9), 200001)
    return float(np.min(f(s)))  # type: ignore[operator]


def test_soundness_numbers_against_direct_computation() -> None:
    cfg = ra.RobustConfig(n_clients=1, dim=10**5, l2_bound=1.0)
    k, bq, tau, t = cfg.k, cfg.quant_bound, cfg.tau, cfg.range_bound
    assert bq == pytest.approx(2.0**16 + math.sqrt(1e5))
    # honest range rows: k * 2 exp(-T^2 / B_q^2) <= 2^-41
    assert k * 2 * math.exp(-(t / bq) ** 2) <= 2.0**-41
    # honest norm: the Chernoff bound, minimised numerically over s (log domain)
    sig2 = bq * bq / 2

    def log_upper(s: np.ndarray) -> np.ndarray:
        return -s * tau - k / 2 * np.log1p(-2 * s * sig2)

    direct = math.exp(_min_over_s(log_upper, 1 / (2 * sig2)))
    c = tau / (k * sig2)
    assert direct == pytest.approx(rcfg.honest_tail(c, k), rel=1e-3)
    assert direct <= 2.0**-41 * 1.001
    # cheater: the lower-tail bound, minimised numerically, at gamma and at 10x
    for gam in (cfg.gamma, 10.0):
        mu = (gam * cfg.scale) ** 2 / 2

        def log_lower(s: np.ndarray, mu: float = mu) -> np.ndarray:
            return s * tau - k * s * mu + 1.5 * k * s * s * mu * mu

        direct = math.exp(_min_over_s(log_lower, 2 / (3 * mu)))
        assert direct == pytest.approx(rcfg.lower_tail_bound(mu, tau, k), rel=1e-3)
    assert cfg.accept_probability(cfg.gamma) == pytest.approx(2.0**-40, rel=1e-6)
    assert cfg.accept_probability(10.0) < 2.0**-58
    assert 2.9 < cfg.gamma < 3.3
    rep = cfg.report
    assert rep["gamma_at_2^-40"] == cfg.gamma and rep["wrap_accept_bound"] == 2.0**-256


def test_sketch_moments_match_the_analysis() -> None:
    # E y_i^2 = ||X||^2 / 2 for the kernel's matrix (the quantity the bounds use)
    rng = np.random.default_rng(7)
    x = rng.integers(-1000, 1000, size=4096)
    # fixed seeds (deterministic; the mean of 16384 squares has a relative standard
    # deviation of ~1.1%, so 8% is 7 of them: a wrong distribution still fails)
    ys = np.concatenate([prg.ternary_sketch(x.astype(np.uint64), bytes([i]) * 32, 256)
                         .view(np.int64) for i in range(64)]).astype(np.float64)
    assert np.mean(ys**2) == pytest.approx(float(x @ x) / 2, rel=0.08)


def test_as_processes_over_tls(tmp_path: object) -> None:
    from mpcai.runtime.launcher import launch_local

    rng = np.random.default_rng(9)
    ups = [_ints(rng, 0.5) for _ in range(2)] + [_ints(rng, 0.5) * 20]  # the last: 10x
    conf = {"n_clients": 3, "dim": D, "l2_bound": 1.0, "frac_bits": F, "timeout": 30.0,
            "over_bound": "clip"}
    logs = [str(tmp_path / f"transcript-{p}.jsonl") for p in range(5)]  # type: ignore[operator]
    args = [[conf, None, logs[0]], [conf, None, logs[1]]] + [
        [conf, u, logs[c]] for c, u in enumerate(ups, 2)]
    run = launch_local(5, "mpcai.protocols.robust_aggregation:process_party",
                       args_per_party=args, timeout=90.0, workdir=tmp_path)
    from mpcai.protocols import audit as protocol_audit

    report = protocol_audit.verify(logs)  # each process's own transcript, over TLS
    assert report.run.matched > 0 and report.logs[0].result == report.logs[1].result
    for s in (0, 1):
        assert run[s]["accepted"].tolist() == [2, 3, 4] and run[s]["rejected"].tolist() == []
    np.testing.assert_array_equal(run[0]["sum"], run[1]["sum"])
    want = _q(ups[0]) + _q(ups[1])
    # the honest client over the bound clipped itself to norm B: that is in the sum
    clipped = (run[0]["sum"] - want) / (1 << F)
    assert np.max(np.abs(clipped - ups[2] / np.linalg.norm(ups[2]))) < 2.0**-F
    assert all(run[c]["accepted"] is True for c in (2, 3, 4))


def test_no_well_formed_client_gives_an_empty_sum() -> None:
    res = ra.simulate([np.zeros(D)] * 2, _cfg(2), messages={2: (b"x", None), 3: (None, b"y")})
    assert res.accepted == [] and res.malformed == [2, 3] and res.mean is None
    assert not res.sum.any()


def test_clipping_a_huge_update_keeps_its_direction() -> None:
    # entries over ~1e154 overflow the squares of a plain norm (inf): clipping by B / inf
    # used to give the zero vector; the norm is now taken of x / max|x|
    cfg = ra.RobustConfig(n_clients=1, dim=4, l2_bound=1.0, frac_bits=F, over_bound="clip")
    for x, want in ((np.full(4, 1e200), np.full(4, 0.5)),
                    (np.array([1e308, 0.0, 0.0, 0.0]), np.array([1.0, 0, 0, 0])),
                    (np.full(4, -1.7e308), np.full(4, -0.5)),
                    (np.array([3e160, 4e160, 0.0, 0.0]), np.array([0.6, 0.8, 0, 0]))):
        got = ra.quantize_update(x, cfg).view(np.int64) / (1 << F)
        assert np.max(np.abs(got - want)) <= 2.0**-F, (x, got)
    with pytest.raises(InvalidInput, match="over the bound"):
        ra.quantize_update(np.full(D, 1e200), _cfg(1))


def test_config_with_a_huge_bound_is_a_typed_error() -> None:
    for b in (1e300, 1e14):  # 1e300 * 2^16 used to overflow math.ceil (OverflowError)
        with pytest.raises(InvalidInput, match="2\\^62"):
            ra.RobustConfig(n_clients=1, dim=4, l2_bound=b)


class _Tamper:
    """A server's Party whose message under ``tag`` is replaced by ``fn(message)``."""

    def __init__(self, party: Party, tag: str, fn: Any) -> None:
        self._p, self._tag, self._fn = party, tag, fn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    async def send(self, to: int, tag: str, obj: Any, **kw: Any) -> None:
        await self._p.send(to, tag, self._fn(obj) if tag == self._tag else obj, **kw)


_TAMPER = {
    "both-ok-and-bad": ("robust/present", lambda o: {"ok": o["ok"], "bad": o["ok"]}),
    "list-not-dict": ("robust/present", lambda o: ["junk"]),
    "coin-not-committed": ("robust/coin-open", lambda o: bytes(32)),
    "ot-hello-not-a-point": ("robust/ot-hello", lambda o: bytes(32)),
    "ot-extend-short": ("robust/cmp/0/ot-extend", lambda o: [u[:, :-1] for u in o]),
    "gate-opening-short": ("robust/cmp/0/range/cleaf", lambda o: o[:-1]),
    "accept-bits-wrong-type": ("robust/cmp/0/open", lambda o: o.astype(np.uint16)),
    "sum-wrong-length": ("robust/sum", lambda o: o[:-1]),
}


@pytest.mark.parametrize("evil", [0, 1])
@pytest.mark.parametrize("case", sorted(_TAMPER))
def test_a_misbehaving_server_is_a_typed_error(case: str, evil: int) -> None:
    tag, fn = _TAMPER[case]
    cfg = ra.RobustConfig(n_clients=2, dim=16, l2_bound=1.0, timeout=5.0)
    srv, cli = sys.modules[ra.__name__ + ".server"], sys.modules[ra.__name__ + ".client"]

    async def party(p: Party) -> Any:
        if p.id < 2:
            return await srv.server(_Tamper(p, tag, fn) if p.id == evil else p, cfg)
        return await cli.client(p, np.full(16, 0.1), cfg, wait_verdict=False)

    out = run_local(4, party, timeout=5.0, return_exceptions=True)
    assert isinstance(out[1 - evil], MisbehaviourDetected), out


def test_stochastic_rounding_is_unbiased() -> None:
    # x_j = (j + 1/4) 2^-f: X_j is j or j + 1, the latter w.p. 1/4 (round-to-nearest or
    # floor would give 0); 6 standard deviations of the binomial mean at d = 20000
    d = 20000
    cfg = ra.RobustConfig(n_clients=1, dim=d, l2_bound=30.0, frac_bits=F)
    j = np.arange(d)
    up = ra.quantize_update((j + 0.25) / (1 << F), cfg).view(np.int64) - j
    assert set(np.unique(up).tolist()) <= {0, 1}
    assert abs(up.mean() - 0.25) < 6 * math.sqrt(0.25 * 0.75 / d)
    neg = ra.quantize_update(-(j + 0.75) / (1 << F), cfg).view(np.int64) + j
    assert set(np.unique(neg).tolist()) <= {-1, 0}  # floor(-j - 3/4 + U): -j - 1 or -j
    assert abs(neg.mean() + 0.75) < 6 * math.sqrt(0.25 * 0.75 / d)


def test_sum_exact_against_the_quantised_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    # off-grid updates (stochastic rounding at work): the opened sum is exactly the sum of
    # the integer vectors the clients quantised to, and within n 2^-f of the real sum
    cli = sys.modules[ra.__name__ + ".client"]
    seen: list[np.ndarray] = []

    def spy(update: Any, cfg: ra.RobustConfig) -> np.ndarray:
        out = ra.quantize_update(update, cfg)
        seen.append(out.copy())
        return out

    monkeypatch.setattr(cli, "quantize_update", spy)
    rng = np.random.default_rng(11)
    ups = [v * (0.9 / np.linalg.norm(v)) for v in rng.normal(size=(3, D))]
    res = ra.simulate(ups, _cfg(3))
    assert res.accepted == [2, 3, 4] and len(seen) == 3
    np.testing.assert_array_equal(res.sum, sum(s.view(np.int64) for s in seen))
    assert np.max(np.abs(res.total - sum(ups))) <= 3 * 2.0**-F
    assert np.any(res.sum != sum(_q(u) for u in ups))  # really off the grid


@pytest.mark.parametrize("value", [1.0, -1.0, 0.37])
def test_one_client_one_coordinate_at_the_bound(value: float) -> None:
    # d = 1, n = 1, |x| = B exactly (not over: accepted) and below it
    cfg = ra.RobustConfig(n_clients=1, dim=1, l2_bound=1.0, frac_bits=F, timeout=5.0)
    res = ra.simulate([np.array([value])], cfg)
    assert res.accepted == [2] and res.mean is not None
    assert abs(float(res.total[0]) - value) <= 2.0**-F
    with pytest.raises(InvalidInput, match="over the bound"):
        ra.quantize_update(np.array([np.nextafter(1.0, 2.0)]), cfg)


def test_one_client_one_coordinate_cheating() -> None:
    cfg = ra.RobustConfig(n_clients=1, dim=1, l2_bound=1.0, frac_bits=F, timeout=5.0)
    for bad in (1 << 63, 2 * cfg.range_bound + 1, 3 * int(cfg.quant_bound)):
        res = ra.simulate([np.zeros(1)], cfg,
                          messages={2: _shares(np.array([bad], dtype=np.uint64))})
        assert res.rejected == [2] and res.accepted == [] and not res.sum.any(), bad


def test_all_rejected_gives_an_empty_sum() -> None:
    rng = np.random.default_rng(12)
    msgs = {c: _shares(_q(_ints(rng, 10.0))) for c in (2, 3, 4)}
    res = ra.simulate([np.zeros(D)] * 3, _cfg(3), messages=msgs)
    assert res.rejected == [2, 3, 4] and res.accepted == [] and res.mean is None
    assert not res.sum.any()


@pytest.mark.parametrize("kind", ["over-2T", "at-2T-everywhere", "quarter-ring", "minus-2^63",
                                  "in-range-but-long", "wrap-to-small"])
def test_more_cheaters_rejected(kind: str) -> None:
    cfg = _cfg(2)
    t = cfg.range_bound
    x = np.zeros(D, dtype=np.uint64)
    if kind == "over-2T":  # one coordinate just past 2T: no wrap, a row passes w.p. 1/2
        x[9] = 2 * t + 1
    elif kind == "at-2T-everywhere":  # every |X_j| <= 2T: no wrap (2 T d < 2^62), too long
        x[:] = np.int64(-2 * t).astype(np.uint64)
    elif kind == "quarter-ring":  # +-2^62 terms: sketch sums that wrap to 0 mod 2^64 often
        x[:8] = 1 << 62
    elif kind == "minus-2^63":
        x[[0, D - 1]] = 1 << 63
    elif kind == "in-range-but-long":  # y_i in {0, +-(T - 1)}: every row in range,
        x[0] = t - 1  # sum y_i^2 ~ k T^2 / 2 >> tau: the norm test catches it
    else:  # 4 entries of 2^62 + 1: they sum to 4 mod 2^64 (the +1 sketch of all four)
        x[:4] = np.uint64((1 << 62) + 1)
    rng = np.random.default_rng(13)
    honest = _ints(rng, 0.5)
    res = ra.simulate([honest, np.zeros(D)], cfg, messages={3: _shares(x)})
    assert res.rejected == [3] and res.accepted == [2]
    np.testing.assert_array_equal(res.sum, _q(honest))


def test_a_client_dealing_extra_messages_changes_nothing() -> None:
    # the issue's "client that deals inconsistent correlations": here clients deal none;
    # a client that sends correlation-like extra messages to the servers (AND-triple
    # shares, gate openings under the servers' own tags) is ignored, and its well-formed
    # shares are judged on X alone
    cfg = _cfg(2)
    srv, cli = sys.modules[ra.__name__ + ".server"], sys.modules[ra.__name__ + ".client"]
    rng = np.random.default_rng(14)
    good, big = _ints(rng, 0.5), _q(_ints(rng, 10.0))
    fake = {"a": np.ones(4096, dtype=np.uint8), "b": np.zeros(4096, dtype=np.uint8)}

    async def party(p: Party, kind: str) -> Any:
        if p.id < 2:
            return await srv.server(p, cfg)
        for s in (0, 1):
            await p.send(s, "robust/triples", fake)
            await p.send(s, "robust/cmp/0/open", np.full(1, 255, dtype=np.uint8))
        if kind == "honest":
            return await cli.client(p, good, cfg)
        m0, m1 = _shares(big)
        await p.send(0, "robust/share", m0)
        await p.send(1, "robust/share", m1)
        return await p.recv(0, "robust/verdict", timeout=20.0)

    out = run_local(4, party, args_per_party=[["s"], ["s"], ["honest"], ["big"]], timeout=20.0)
    assert out[0].accepted == [2] and out[0].rejected == [3]
    np.testing.assert_array_equal(out[0].sum, _q(good))
    assert out[2]["accepted"] is True and out[3] is False


def _ternary_rows(seed: bytes, k: int, d: int) -> np.ndarray:
    """The sketch matrix from the `cryptography` package's ChaCha20 (an independent
    reference of the kernel's): row i is the stream of nonce le32(i) || 0^8, counter 0."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    blocks = (d + 255) // 256
    rows = []
    for i in range(k):
        nonce = bytes(4) + i.to_bytes(4, "little") + bytes(8)  # counter || IETF nonce
        enc = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
        w = np.frombuffer(enc.update(bytes(64 * blocks)), dtype="<u8").reshape(blocks, 8)
        bits = ((w[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)
        rows.append((bits[:, :4, :] - bits[:, 4:, :]).reshape(-1)[:d])
    return np.array(rows)


@pytest.mark.parametrize("blocks,rest", [(26, 0), (30, 5), (153 + 30, 255), (8, 1), (0, 7)])
def test_sketch_kernel_mixed_simd_groups(blocks: int, rest: int) -> None:
    # a row's blocks go in groups of 17 (AVX-512), then 9 (AVX2), then one at a time
    # (scalar), then a zero-padded tail: sizes that use several of them in one chunk, on
    # every path and with threads, against the reference; values at the ring's edges
    from mpcai import _bindings as nb

    d = 256 * blocks + rest
    seed = prg.new_seed()
    x = prg.random_ring(d)
    x[:8] = np.array([0, 1, 2**64 - 1, 2**63, 2**63 - 1, 2**32, 2**32 - 1, 3 << 62],
                     dtype=np.uint64)[: min(8, d)]
    r = _ternary_rows(seed, 3, d)
    lo, hi = (x & np.uint64(0xFFFFFFFF)).astype(np.int64), (x >> np.uint64(32)).astype(np.int64)
    want = np.array([(int(row @ lo) + (int(row @ hi) << 32)) % (1 << 64) for row in r],
                    dtype=np.uint64)
    before = nb.simd_level()
    try:
        for level in range(nb.simd_available() + 1):
            nb.simd_select(level)
            for threads in (1, 2):
                np.testing.assert_array_equal(prg.ternary_sketch(x, seed, 3, threads=threads),
                                              want)
    finally:
        nb.simd_select(before)


def test_check_in_groups_of_clients() -> None:
    # check_batch = 2: five clients in three groups of the two-party check (each with its
    # own OT batches and gates), cheaters in the first and the middle group
    rng = np.random.default_rng(15)
    ups = [_ints(rng, 0.6) for _ in range(5)]
    msgs = {3: _shares(_q(_ints(rng, 10.0))), 4: _shares(np.full(D, 1 << 63, np.uint64))}
    res = ra.simulate(ups, _cfg(5, check_batch=2), messages=msgs)
    assert res.accepted == [2, 5, 6] and res.rejected == [3, 4]
    np.testing.assert_array_equal(res.sum, _q(ups[0]) + _q(ups[3]) + _q(ups[4]))
    with pytest.raises(InvalidInput):
        _cfg(1, check_batch=0)


def test_the_sketch_is_fresh_each_round_and_shared_by_the_servers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # both servers sketch with one seed per round; a second round (even under the same
    # session id) has another, so nothing learned in one round says anything of the next
    seeds: list[bytes] = []
    real = prg.ternary_sketch

    def spy(vec: np.ndarray, seed: bytes, k: int, **kw: Any) -> np.ndarray:
        seeds.append(seed)
        return real(vec, seed, k, **kw)

    monkeypatch.setattr(prg, "ternary_sketch", spy)
    ups = [np.full(D, 0.01)] * 2
    for _ in range(2):
        ra.simulate(ups, _cfg(2), session=b"s" * 16)
    assert len(seeds) == 8 and len(set(seeds[:4])) == 1 and len(set(seeds[4:])) == 1
    assert seeds[0] != seeds[4]


@pytest.mark.parametrize("conf", [{"n_clients": 1, "dim": 4, "l2_bound": 1.0, "foo": 1},
                                  {"n_clients": 1, "dim": 4, "l2_bound": 1.0, "tau": 5},
                                  {"dim": 4}])
def test_process_party_config_errors_are_typed(conf: dict[str, Any]) -> None:
    # unknown, derived (init=False) or missing fields were an untyped TypeError
    import trio

    with pytest.raises(InvalidInput, match="config"):
        trio.run(ra.process_party, object(), conf)


def test_too_few_sketch_rows_refused() -> None:
    # k = 8: a coordinate of 2^63 would pass every range row w.p. 2^-8 (and be in the sum)
    with pytest.raises(InvalidInput, match="k must be"):
        ra.RobustConfig(n_clients=1, dim=4, l2_bound=1.0, k=8)
    assert math.isinf(ra.RobustConfig(n_clients=1, dim=4, l2_bound=1.0, k=166).gamma)
    assert math.isfinite(ra.RobustConfig(n_clients=1, dim=4, l2_bound=1.0, k=167).gamma)


def test_accept_bits_equal_the_plaintext_predicate(monkeypatch: pytest.MonkeyPatch) -> None:
    # updates near the norm threshold (each accepted or not at random, by R): the opened
    # bit of every client is exactly [all -T <= y_i < T and sum y_i^2 <= tau] for the
    # round's R (recomputed in the clear from the seed the servers used)
    seeds: list[bytes] = []
    real = prg.ternary_sketch

    def spy(vec: np.ndarray, seed: bytes, k: int, **kw: Any) -> np.ndarray:
        seeds.append(seed)
        return real(vec, seed, k, **kw)

    monkeypatch.setattr(prg, "ternary_sketch", spy)
    cfg = _cfg(10)
    rng = np.random.default_rng(16)
    xs = {}
    for c, rel in zip(range(2, 12), np.linspace(1.28, 1.42, 10), strict=True):
        v = rng.normal(size=D)
        xs[c] = np.round(v * (rel * cfg.quant_bound / np.linalg.norm(v))).astype(np.int64)
    res = ra.simulate([np.zeros(D)] * 10, cfg, messages={c: _shares(x) for c, x in xs.items()})
    want = []
    for c, x in xs.items():
        y = real(x.astype(np.uint64), seeds[0], cfg.k).view(np.int64)
        t = cfg.range_bound
        if np.all((y >= -t) & (y < t)) and int((y.astype(object) ** 2).sum()) <= cfg.tau:
            want.append(c)
    assert res.accepted == want and res.rejected == sorted(set(xs) - set(want))
    assert 0 < len(want) < 10  # both outcomes occur (else the test shows little)


def test_an_oversized_share_is_refused_undecoded_and_malformed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the review's reproducer, scaled down: a client sends server 1 an array 256 times
    # the size of its share (and server 0 a long "seed"); each server refuses the frame
    # from its header (max_bytes), never decodes it, and marks the client malformed
    import trio

    from mpcai.runtime import wire

    cfg = _cfg(3)
    srv, cli = sys.modules[ra.__name__ + ".server"], sys.modules[ra.__name__ + ".client"]
    decoded: list[int] = []  # the lengths of the share frames decoded
    inline, whole = wire._decode_payload_at, wire.decode_frame

    def spy_inline(data: Any, buf: memoryview, pos: int, *args: Any) -> Any:
        if wire._parse_header(data)[2] == "robust/share":
            decoded.append(len(data))
        return inline(data, buf, pos, *args)

    def spy_whole(data: Any, limits: wire.Limits = wire.DEFAULT_LIMITS) -> wire.Frame:
        frame = whole(data, limits)
        if frame.tag == "robust/share":
            decoded.append(len(data))
        return frame

    monkeypatch.setattr(wire, "_decode_payload_at", spy_inline)
    monkeypatch.setattr(wire, "decode_frame", spy_whole)
    rng = np.random.default_rng(21)
    good = _ints(rng, 0.5)
    huge = np.zeros(256 * D, dtype=np.uint64)  # 1 MiB instead of 4 KiB

    async def party(p: Party, kind: str) -> Any:
        if p.id < 2:
            return await srv.server(p, cfg)
        if kind == "honest":
            return await cli.client(p, good, cfg)
        await trio.sleep(0.5)  # the servers' receives are waiting by then
        for s, obj in ((0, b"s" * 100_000), (1, huge)) if kind == "both" else ((1, huge),):
            try:
                await p.send(s, "robust/share", obj)
            except Exception:  # cut off by that server
                pass
        if kind == "one":
            await p.send(0, "robust/share", prg.new_seed())
        return None

    out = run_local(5, party, args_per_party=[["s"], ["s"], ["honest"], ["both"], ["one"]],
                    timeout=20.0)
    assert out[0].malformed == [3, 4] and out[1].malformed == [3, 4]
    assert out[0].accepted == [2] and out[0].dropped == []
    np.testing.assert_array_equal(out[0].sum, _q(good))
    assert sorted(decoded) == [101, 101, 4176]  # the honest shares; the big ones undecoded


def test_share_bounds_admit_an_honest_round_at_several_dims() -> None:
    for dim in (1, 7, 4096):
        rng = np.random.default_rng(dim)
        ups = [np.round(rng.normal(size=dim) * 0.01 * (1 << F)) / (1 << F) for _ in range(3)]
        cfg = ra.RobustConfig(n_clients=3, dim=dim, l2_bound=10.0, frac_bits=F, timeout=5.0)
        res = ra.simulate(ups, cfg)
        assert res.accepted == [2, 3, 4] and res.malformed == [] and res.dropped == []
        np.testing.assert_array_equal(res.sum, sum(_q(u) for u in ups))


_OVERSIZED = [("robust/present", 0), ("robust/present", 1), ("robust/coin-commit", 1),
              ("robust/coin-open", 0), ("robust/ot-hello", 0), ("robust/ot-answer", 1),
              ("robust/cmp/0/ot-extend", 0), ("robust/cmp/0/ot-extend", 1),
              ("robust/cmp/0/cot", 0), ("robust/cmp/0/range/cleaf", 1),
              ("robust/cmp/0/open", 0), ("robust/sum", 1)]


@pytest.mark.parametrize(("tag", "evil"), _OVERSIZED)
def test_an_oversized_server_message_is_refused_unread(tag: str, evil: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every server-to-server message is bounded by its size in the protocol: 16 MiB in
    place of any of them is refused from its header (never decoded) as misbehaviour."""
    from mpcai.runtime import wire

    cfg = ra.RobustConfig(n_clients=2, dim=16, l2_bound=1.0, timeout=5.0)
    srv, cli = sys.modules[ra.__name__ + ".server"], sys.modules[ra.__name__ + ".client"]
    decoded: list[str] = []
    inline, whole = wire._decode_payload_at, wire.decode_frame

    def spy_inline(data: Any, buf: memoryview, pos: int, *args: Any) -> Any:
        if len(data) > 16 << 20:
            decoded.append(wire._parse_header(data)[2])
        return inline(data, buf, pos, *args)

    def spy_whole(data: Any, limits: wire.Limits = wire.DEFAULT_LIMITS) -> wire.Frame:
        if len(data) > 16 << 20:
            decoded.append(wire._parse_header(data)[2])
        return whole(data, limits)

    monkeypatch.setattr(wire, "_decode_payload_at", spy_inline)
    monkeypatch.setattr(wire, "decode_frame", spy_whole)
    big = np.zeros(16 << 20, dtype=np.uint8)  # the honest messages here are < 2 MB

    async def party(p: Party) -> Any:
        if p.id < 2:
            return await srv.server(_Tamper(p, tag, lambda o: big) if p.id == evil else p, cfg)
        return await cli.client(p, np.full(16, 0.1), cfg, wait_verdict=False)

    out = run_local(4, party, timeout=10.0, return_exceptions=True)
    assert isinstance(out[1 - evil], MisbehaviourDetected), out
    assert "refused" in str(out[1 - evil]) and tag in str(out[1 - evil])
    if "range" not in tag:  # declared before it can arrive (a gate opening: when awaited)
        assert decoded == []
