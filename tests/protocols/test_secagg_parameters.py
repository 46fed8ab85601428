"""Degree and threshold chosen from failure and privacy bounds; the failure
probability against observed rounds.

Many rounds are needed for statistics, more than full cryptographic rounds
allow in a test suite, so rounds are replayed at the level of who holds which
share: ``outcome`` below restates, independently of the protocol code, which
secrets the server can rebuild (the neighbour graph is the protocol's own).
``test_outcome_predicts_full_rounds`` checks that restatement against full
``simulate`` rounds, round by round.
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest
from mpcai.protocols import secure_aggregation as sa
from mpcai.protocols.secure_aggregation import Stage, _crypto

from mpcai.errors import InvalidInput, NotEnoughSurvivors

DROP_STAGES = [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]


def outcome(cfg: sa.SecAggConfig, drops: dict[int, Stage], session: bytes) -> bool:
    """Whether the server can finish the round, given who vanished before which stage."""
    n, t = cfg.n_clients, cfg.threshold
    before = {s: {c for c, st in drops.items() if st == s} for s in DROP_STAGES}
    u1 = sorted(set(range(1, n + 1)) - before[Stage.ADVERTISE_KEYS])
    u2 = set(u1) - before[Stage.SHARE_KEYS]
    u3 = u2 - before[Stage.MASKED_INPUT]
    answering = u3 - before[Stage.UNMASK]
    if min(len(u1), len(u2), len(u3), len(answering)) < t:
        return False
    full = _crypto.Graph(session, n, cfg.neighbours)
    graph = {c: full.neighbours(c) & set(u1) for c in u1}  # who advertised keys
    if any(len(graph[c]) + 1 < t for c in u1):
        return False
    for v in u3:  # self-mask seed: its neighbours' shares and its own
        if len(((graph[v] & u2) | {v}) & answering) < t:
            return False
    # mask key of a client that shared it but sent no masked input: neighbours only
    return all(len(graph[v] & u2 & answering) >= t for v in u2 - u3)


def random_drops(rng: random.Random, n: int, count: int,
                 stages: list[Stage] | None = None) -> dict[int, Stage]:
    return {c: rng.choice(stages or DROP_STAGES) for c in rng.sample(range(1, n + 1), count)}


def session_of(i: int) -> bytes:
    return hashlib.sha256(b"test round %d" % i).digest()[:16]


@pytest.mark.slow
def test_outcome_predicts_full_rounds() -> None:
    """The restatement agrees with the protocol, failures included (a weak config)."""
    n = 24
    cfg = sa.SecAggConfig(n_clients=n, threshold=4, degree=6, timeout=10, threads=1)
    rng = random.Random(5)
    seen = {True: 0, False: 0}
    for _ in range(16):
        drops = random_drops(rng, n, rng.randrange(3, 8))
        sess = rng.randbytes(16)
        try:
            res = sa.simulate([np.zeros(3) for _ in range(n)], cfg, dropouts=drops,
                              session=sess)
            ok = True
            assert res.aggregate.total_weight == len(res.aggregate.survivors)
        except NotEnoughSurvivors:
            ok = False
        assert outcome(cfg, drops, sess) == ok, drops
        seen[ok] += 1
    assert seen[True] and seen[False]  # both kinds of round were exercised


@pytest.mark.slow
@pytest.mark.parametrize("n", [50, 500])
def test_defaults_never_fail_at_ten_percent_dropout(n: int) -> None:
    """200 seeded rounds with 10% of the clients dropping at random stages (replayed
    by ``outcome``): no failure."""
    cfg = sa.SecAggConfig(n_clients=n)
    rep = sa.security_report(cfg)
    assert rep.failure_probability <= 2.0**-20 and rep.privacy_failure_probability <= 2.0**-40
    assert cfg.neighbours < n - 1  # a sparse graph
    rng = random.Random(n)
    failures = sum(not outcome(cfg, random_drops(rng, n, n // 10), session_of(i))
                   for i in range(200))
    assert failures == 0


@pytest.mark.slow
def test_defaults_never_fail_in_full_rounds() -> None:
    """The same at N = 50 with the whole protocol: 32 rounds (the outcome model above
    runs 200 per size), each mean exact."""
    n = 50
    cfg = sa.SecAggConfig(n_clients=n, threads=1)
    rng = random.Random(9)
    for i in range(32):
        drops = random_drops(rng, n, n // 10)
        res = sa.simulate([np.full(3, 0.5) for _ in range(n)], cfg, dropouts=drops,
                          session=session_of(i))
        np.testing.assert_allclose(res.mean, 0.5, atol=1e-4)


def _hyper_tail(pop: int, marked: int, draws: int, at_least: int) -> float:
    """P[X >= at_least], X hypergeometric, in exact integers."""
    total = math.comb(pop, draws)
    hits = sum(math.comb(marked, i) * math.comb(pop - marked, draws - i)
               for i in range(max(0, at_least), min(marked, draws) + 1))
    return hits / total


@pytest.mark.slow
def test_failure_probability_matches_observed_rate() -> None:
    """Flower's num_shares = 7 (k = 6) with t = 4 at N = 100 and 10 dropouts before the
    masked input: the reported probability, an independent exact computation of the
    same bound, and the rate over 2000 rounds must agree."""
    n, k, t, d = 100, 6, 4, 10
    cfg = sa.SecAggConfig(n_clients=n, threshold=t, degree=k, dropout_fraction=0.1)
    # a round fails iff some k + 1 consecutive clients of the cyclic order hold m dropouts;
    # P <= P[first window full] + n P[a window fills as it moves one step]
    w, m = k + 1, k - t + 2
    first = _hyper_tail(n, d, w, m)
    step = math.comb(w - 1, m - 1) * math.comb(n - w - 1, d - m) / math.comb(n, d)
    bound = first + n * step
    reported = sa.security_report(cfg).failure_probability
    assert reported == pytest.approx(bound, rel=1e-9)
    rng = random.Random(2)
    rounds = 2000
    failed = sum(not outcome(cfg, random_drops(rng, n, d, [Stage.MASKED_INPUT]), session_of(i))
                 for i in range(rounds))
    rate = failed / rounds
    sigma = math.sqrt(bound * (1 - bound) / rounds)
    # an upper bound, and a tight one: within 4 sigma of the observed rate
    assert abs(rate - bound) <= 4 * sigma, (rate, bound)


def test_choice_meets_the_bounds_and_refuses_the_impossible() -> None:
    for n in (3, 8, 10, 100, 2000):
        cfg = sa.SecAggConfig(n_clients=n)
        assert cfg.threshold >= 2  # one colluding client never suffices (10% rounds up)
        rep = sa.security_report(cfg)
        assert rep.failure_probability <= cfg.failure_bound
        assert rep.privacy_failure_probability <= cfg.privacy_bound
        # the smallest degree: one less fails a bound (unless already the smallest)
        k = cfg.neighbours
        if 2 < k < n - 1:
            for t2 in range(1, k):
                weaker = sa.SecAggConfig(n_clients=n, degree=k - 2, threshold=t2)
                r2 = sa.security_report(weaker)
                assert (r2.failure_probability > cfg.failure_bound
                        or r2.privacy_failure_probability > cfg.privacy_bound)
    sparse = sa.SecAggConfig(n_clients=10_000)
    assert sparse.neighbours <= 100  # O(log N) neighbours, not N
    with pytest.raises(InvalidInput, match="no degree"):
        sa.SecAggConfig(n_clients=100, dropout_fraction=0.5, corrupt_fraction=0.5)
    # two clients: the other one may be the corrupt one, and then the sum reveals the input
    with pytest.raises(InvalidInput, match="no degree"):
        sa.SecAggConfig(n_clients=2)
    assert sa.SecAggConfig(n_clients=2, corrupt_fraction=0.0).threshold == 1
    with pytest.raises(InvalidInput, match="dropout_fraction"):
        sa.SecAggConfig(n_clients=10, dropout_fraction=1.5)


def test_malicious_mode_chooses_parameters_private_against_a_malicious_server() -> None:
    n = 40
    public, _ = sa.make_identities(n)
    cfg = sa.SecAggConfig(n_clients=n, identities=public, consistency_check=True)
    rep = sa.security_report(cfg)
    # the complete graph, and 2t > n + C: t self-mask and t mask-key shares never both
    assert cfg.neighbours == n - 1 and 2 * cfg.threshold > n + 4
    assert rep.private_malicious and rep.malicious_failure_probability == 0.0
    assert rep.failure_probability <= cfg.failure_bound
    # a sparse graph is never claimed private against a malicious server
    sparse = sa.SecAggConfig(n_clients=n, degree=10, threshold=9, identities=public,
                             consistency_check=True)
    rep = sa.security_report(sparse)
    assert not rep.private_malicious and rep.malicious_failure_probability == 1.0


def test_a_huge_client_count_does_not_enumerate_every_degree() -> None:
    # the candidate degrees were a list of n/2 ints: 2^40 clients (one int from a Flower
    # server's round config) raised MemoryError, 10^8 took 13 s and gigabytes
    from mpcai.protocols.secure_aggregation import SecAggConfig

    cfg = SecAggConfig(n_clients=2**40, max_weight=5, dim=7)
    assert 2 <= cfg.neighbours < 200
