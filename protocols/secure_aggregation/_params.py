"""Failure and privacy probabilities of a SecAgg+ configuration, and the choice of
degree and threshold that meets given bounds (after Bell et al., CCS 2020, §4).

The model.  ``n`` clients; ``D = ceil(dropout_fraction * n)`` of them drop at
some stage and ``C = ceil(corrupt_fraction * n)`` are corrupt (colluding with
the server), both sets fixed independently of the graph.  The graph is the
Harary graph ``H(k, n)`` over a uniformly random order of the clients, so one
client's ``k`` neighbours are a uniformly random ``k``-subset of the other
``n - 1``: how many of them dropped (or are corrupt) is hypergeometric.  A
client's secrets are Shamir-shared with threshold ``t`` among its neighbours
*and itself* (its own share counts, as in SecAgg+).

In ``H(k, n)`` a client's closed neighbourhood is a window of ``k + 1``
consecutive clients of the random cyclic order, so each event below is "some
window holds ``m`` marked clients", bounded by :func:`_window_bound`.

* **Failure** (no result): a surviving client's self-mask seed needs ``t``
  shares from itself and its surviving neighbours, a dropped client's seed or
  mask key ``t`` from its surviving neighbours: it fails when a window holds
  ``k - t + 2`` dropouts (at any stage: the graph is fixed by the session
  before anyone advertises keys).
* **Privacy** against a semi-honest server with ``C`` colluding clients: no
  honest client may have ``t`` corrupt neighbours (a window holding ``t``
  corrupt clients), and the honest survivors must stay connected once
  corrupt and dropped clients are removed, else the server learns partial
  sums.  That needs a run of ``k / 2`` removed clients in the cyclic order,
  bounded by ``n * C(R, k/2) / C(n, k/2)`` with ``R = C + D``.
* **Malicious server** (identities and the consistency check on): it may get
  the self-mask shares from some honest neighbours and the mask-key shares
  from others, so an honest client is safe only if ``2t > k + 1 + C``; and it
  may *claim* that clients dropped, chosen after seeing the (public) graph.
  In a sparse graph, claiming a client's ``k`` neighbours dropped isolates
  that client, and the "sum" of its component is its input, so no privacy is
  claimed against a malicious server unless the graph is complete (classic
  SecAgg, where the consistency check guarantees the sum covers at least
  ``t`` clients, at least ``t - C`` of them honest).

All are upper bounds, exact hypergeometric terms inside.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["choose", "failure_probability", "malicious_probability", "privacy_probability"]


def _dropped(n: int, fraction: float) -> int:
    return min(n, math.ceil(fraction * n - 1e-9))


def _corrupt(n: int, fraction: float) -> int:
    # rounded up, like the dropouts: "10% of 8 clients" may still be one client
    return min(n, math.ceil(fraction * n - 1e-9))


@lru_cache(maxsize=4096)
def _tail(population: int, marked: int, draws: int) -> tuple[float, ...]:
    """``tail[i] = P[X >= i]`` for ``X ~ Hypergeometric(population, marked, draws)``."""
    lo, hi = max(0, draws - (population - marked)), min(draws, marked)
    lg = math.lgamma
    norm = lg(population + 1) - lg(draws + 1) - lg(population - draws + 1)
    pmf = [0.0] * (draws + 2)
    for i in range(lo, hi + 1):
        pmf[i] = math.exp(lg(marked + 1) - lg(i + 1) - lg(marked - i + 1)
                          + lg(population - marked + 1) - lg(draws - i + 1)
                          - lg(population - marked - draws + i + 1) - norm)
    tail = [0.0] * (draws + 2)
    for i in range(draws, -1, -1):  # small terms first: no cancellation
        tail[i] = tail[i + 1] + pmf[i]
    return tuple(min(1.0, v) for v in tail)


def _at_least(tail: tuple[float, ...], i: int) -> float:
    if i <= 0:
        return 1.0
    return tail[i] if i < len(tail) else 0.0


def _log_comb(a: int, b: int) -> float:
    if b < 0 or b > a:
        return -math.inf
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _window_bound(n: int, ones: int, w: int, m: int) -> float:
    """Upper bound on P[some ``w`` cyclically consecutive of ``n`` positions hold ``>= m``
    of ``ones`` marks placed uniformly at random].

    Either every window is full (so the first one is), or some window is full
    while the one before it is not: the position it gained is marked, the one
    it lost is not, and the ``w - 1`` between hold exactly ``m - 1`` marks.  So
    ``P <= P[X >= m] + n C(w-1, m-1) C(n-w-1, ones-m) / C(n, ones)`` with
    ``X ~ Hypergeometric(n, ones, w)`` -- about ``w`` times tighter than the
    union bound over clients, whose bad neighbourhoods come in runs.
    """
    if m <= 0:
        return 1.0
    first = _at_least(_tail(n, ones, w), m)
    log_edge = (_log_comb(w - 1, m - 1) + _log_comb(n - w - 1, ones - m)
                - _log_comb(n, ones))
    return min(1.0, first + (n * math.exp(log_edge) if log_edge > -math.inf else 0.0))


def failure_probability(n: int, k: int, t: int, dropout_fraction: float) -> float:
    """Upper bound on the probability that a round gives no result (see the module).

    A round fails exactly when some client's closed neighbourhood (itself and
    its ``k`` neighbours: ``k + 1`` consecutive clients of the graph's cyclic
    order) holds ``k - t + 2`` dropouts: a survivor there has fewer than
    ``t - 1`` surviving neighbours, a dropped client fewer than ``t``.
    """
    d = _dropped(n, dropout_fraction)
    if k >= n - 1:  # every other client: fails iff fewer than t survive
        return 1.0 if n - d < t else 0.0
    return _window_bound(n, d, k + 1, k - t + 2)


def _disconnected(n: int, k: int, removed: int) -> float:
    """Bound on P[the clients left are disconnected in H(k, n)] (needs a run of k/2
    removed clients in the cyclic order)."""
    if k >= n - 1:
        return 0.0
    h = k // 2
    if removed < h:
        return 0.0
    log_p = sum(math.log((removed - i) / (n - i)) for i in range(h))
    return min(1.0, n * math.exp(log_p))


def privacy_probability(n: int, k: int, t: int, corrupt_fraction: float,
                        dropout_fraction: float) -> float:
    """Upper bound on the probability that a semi-honest server colluding with the
    corrupt clients learns more than the sum of the honest survivors' inputs."""
    c = _corrupt(n, corrupt_fraction)
    if k >= n - 1:
        p = 1.0 if c >= t else 0.0
    else:  # an honest client with t corrupt neighbours: a window of k + 1 holding t
        p = _window_bound(n, c, k + 1, t)
    return min(1.0, p + _disconnected(n, k, c + _dropped(n, dropout_fraction)))


def malicious_probability(n: int, k: int, t: int, corrupt_fraction: float,
                          dropout_fraction: float) -> float:
    """As :func:`privacy_probability` against a malicious server (identities and the
    consistency check assumed; the caller checks that they are on): 0 or 1, since
    the server chooses what it does.  1 for every sparse graph (see the module)."""
    if k < n - 1:
        return 1.0
    return 0.0 if 2 * t > n + _corrupt(n, corrupt_fraction) else 1.0


@lru_cache(maxsize=256)
def choose(n: int, dropout_fraction: float, corrupt_fraction: float, failure_bound: float,
           privacy_bound: float, degree: int | None = None,
           malicious: bool = False) -> tuple[int, int] | None:
    """The smallest degree ``k`` (even, or ``n - 1``: every other client) with a
    threshold ``t`` meeting both bounds, and the smallest such ``t`` (the one that
    tolerates the most dropouts).  With ``degree`` given, only ``t`` is chosen.
    With ``malicious`` (identities and the consistency check on), privacy must
    hold against a malicious server too, which needs the complete graph.
    ``None`` if nothing meets the bounds."""
    candidates: Iterable[int]
    if degree is not None:
        candidates = [min(degree, n - 1)]
    else:  # lazily: the smallest k that meets the bounds ends the search (n may be huge)
        candidates = itertools.chain(range(2, n - 1, 2), [n - 1])
    if malicious:
        candidates = [k for k in candidates if k >= n - 1] if degree is not None else [n - 1]
    for k in candidates:
        if _disconnected(n, k, _corrupt(n, corrupt_fraction)
                         + _dropped(n, dropout_fraction)) > privacy_bound:
            continue
        for t in range(1, k + 2):
            p = privacy_probability(n, k, t, corrupt_fraction, dropout_fraction)
            if malicious:
                p = max(p, malicious_probability(n, k, t, corrupt_fraction, dropout_fraction))
            if p <= privacy_bound:
                if failure_probability(n, k, t, dropout_fraction) <= failure_bound:
                    return k, t
                break  # a larger t only fails more often
    return None
