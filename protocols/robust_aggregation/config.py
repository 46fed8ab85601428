"""Configuration of robust aggregation: parameters, their checks, the soundness numbers.

Every bound below is derived when a :class:`RobustConfig` is built and kept on it
(:attr:`RobustConfig.report`); a configuration whose sketch could wrap around 2^64
is refused before anything is sent.

**Quantisation.**  A client's update ``x`` (``d`` reals, ``||x||_2 <= B``) is encoded as
``X = floor(2^f x + U)`` (stochastic rounding, ``U`` uniform in [0, 1)), so
``|X_j - 2^f x_j| <= 1`` (1 only when the float sum ``2^f x_j + U`` rounds up to the next
integer) and ``||X||_2 <= B_q = 2^f B + sqrt(d)``.  The rounding is unbiased up to that
float rounding of the sum (tested: ``E X_j = 2^f x_j``).

**The sketch.**  ``R`` is ``k x d`` with i.i.d. entries -1, 0, +1 (1/4, 1/2, 1/4),
drawn after every share has arrived; ``y = R X`` modulo 2^64.  The servers accept iff
every ``-T <= y_i < T`` (as signed 64-bit values, ``T = 2^(l-1)`` a power of two) and
``sum_i y_i^2 <= tau``.

*Range rows* (coordinates that wrap).  Let ``X_j`` be read as a signed 64-bit value
(centered modulo 2^64).  If some ``|X_j| > 2T``, fix every other entry of a row:
``y_i`` is one of ``u - X_j``, ``u``, ``u + X_j`` with probabilities 1/4, 1/2, 1/4.
The pass set ``[-T, T)`` has cyclic diameter below ``2T``, and ``u`` and ``u + X_j``
(likewise ``u`` and ``u - X_j``) are ``|X_j| > 2T`` apart modulo 2^64, so at most one
of each such pair lies in it: if ``u`` does, the row passes with probability 1/2; if it
does not, at most ``u +- X_j`` do, again 1/2.  For ``X_j = 2^63`` (``u + X_j = u -
X_j``) the two outcomes are ``u`` and ``u + 2^63``, one of which is out.  Rows are
independent, so all ``k`` pass with probability ``<= 2^-k``.  Otherwise every
``|X_j| <= 2T`` and (``2T d < 2^62``, checked) ``y = R X`` over the integers: no wrap.

*Honest clients* (``||X|| <= B_q``).  The entry ``R`` has ``E e^(l R) = cosh^2(l / 2)
<= e^(l^2 / 4)``, so ``y_i`` is sub-Gaussian with variance proxy ``s^2 = ||X||^2 / 2``:
``P(|y_i| > T) <= 2 exp(-T^2 / B_q^2)`` (Hoeffding), and ``E exp(t y_i^2) <= (1 - 2 t
s^2)^(-1/2)``, so ``P(sum y_i^2 >= c k s^2) <= exp(-k/2 (c - 1 - ln c))`` (Chernoff).
``T`` (the least power of two over the Hoeffding bound) and ``tau = c k B_q^2 / 2``
are chosen so that each part is at most
``2^-(h+1)``: an honest client is rejected with probability at most ``2^-h``
(``h = honest_failure_bits``, 40 by default).

*Cheating clients* (no coordinate wraps, ``mu = ||X||^2 / 2 = E y_i^2``).  ``E y_i^4
<= 3 mu^2`` (the ternary entries have ``E R^4 = E R^2 = 1/2``), and for ``Z = y_i^2
>= 0``, ``E e^(-t Z) <= 1 - t mu + t^2 E Z^2 / 2 <= exp(-t mu + 3 t^2 mu^2 / 2)``, so
``P(sum y_i^2 <= tau) <= exp(-(k mu - tau)^2 / (6 k mu^2))`` for ``k mu > tau``
(one-sided Bernstein / Paley-Zygmund-type bound).  A client whose (integer) update has
``||X|| >= gamma 2^f B`` is accepted with probability at most ``p(gamma) = max(2^-k,
that bound)``; :attr:`RobustConfig.gamma` is the least ``gamma`` with ``p <= 2^-40``
(about 3.1 for the default ``k = 256``: the servers can promise that no accepted update
is longer than ``gamma B``, except with probability ``2^-40`` per client).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from mpcai.errors import InvalidInput
from mpcai.validation import check_int, check_real

__all__ = ["RobustConfig", "accept_bound", "honest_tail", "lower_tail_bound"]

_LN2 = math.log(2.0)
_MAX = float(1 << 62)


def honest_tail(c: float, k: int) -> float:
    """``exp(-k/2 (c - 1 - ln c))``: the Chernoff bound on ``P(sum y_i^2 >= c k s^2)``
    for ``k`` rows of variance proxy ``s^2`` (``c > 1``)."""
    return math.exp(-0.5 * k * (c - 1.0 - math.log(c)))


def lower_tail_bound(mu: float, tau: float, k: int) -> float:
    """``exp(-(k mu - tau)^2 / (6 k mu^2))`` (1 if ``k mu <= tau``): the bound on
    ``P(sum_i y_i^2 <= tau)`` for ``k`` rows with ``E y_i^2 = mu``, ``E y_i^4 <= 3 mu^2``."""
    if k * mu <= tau:
        return 1.0
    return math.exp(-((k * mu - tau) ** 2) / (6.0 * k * mu * mu))


def _solve_c(k: int, bits: float) -> float:
    """The least ``c > 1`` with ``honest_tail(c, k) <= 2^-bits`` (bisection)."""
    target = bits * _LN2
    lo, hi = 1.0, 2.0
    while 0.5 * k * (hi - 1.0 - math.log(hi)) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * k * (mid - 1.0 - math.log(mid)) >= target:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class RobustConfig:
    """Parameters of one robust (norm-bounded) aggregation with two servers.

    Attributes:
        n_clients: number of clients (party ids ``2 .. n_clients + 1``; the servers
            are parties 0 and 1).
        dim: coordinates per update (``d``).
        l2_bound: the declared bound ``B`` on each update's L2 norm (real units).
        frac_bits: fixed-point fractional bits ``f`` (scale ``2^f``).
        k: sketch rows (the soundness exponent of the range part, at least 40; 256 by
            default; below 167, ``gamma`` is infinite: no 2^-40 promise on the norm).
        over_bound: what an honest client does with an update over the bound:
            ``"raise"`` (refuse locally, :class:`~mpcai.errors.InvalidInput`) or
            ``"clip"`` (scale it down to norm ``B``).
        honest_failure_bits: ``h``, an honest client is rejected w.p. ``<= 2^-h``.
        timeout: seconds the servers wait for clients and for each other.
        threads: OS threads for the sketch kernel on each server.
        check_batch: clients per group of the two-party check (each server holds the
            OT outputs of one group at a time, about 8 MB per client at ``k = 256``;
            each group costs about 35 round trips between the servers).

    Derived (read-only): ``quant_bound`` (``B_q``), ``honest_range_bound`` (the ``T``
    the honest tail needs), ``range_bits`` (``l``) and ``range_bound`` (``T = 2^(l-1)
    >=`` that: the rows test ``-T <= y_i < T``), ``tau``, ``gamma`` and :attr:`report`.
    """

    n_clients: int
    dim: int
    l2_bound: float
    frac_bits: int = 16
    k: int = 256
    over_bound: Literal["raise", "clip"] = "raise"
    honest_failure_bits: int = 40
    timeout: float = 60.0
    threads: int = 1
    check_batch: int = 16
    quant_bound: float = field(init=False)
    range_bound: int = field(init=False)
    range_bits: int = field(init=False)
    honest_range_bound: int = field(init=False)
    tau: int = field(init=False)
    gamma: float = field(init=False)

    def __post_init__(self) -> None:
        check_int(self.n_clients, "n_clients", lo=1, hi=1 << 20)
        d = check_int(self.dim, "dim", lo=1, hi=1 << 40)
        b = check_real(self.l2_bound, "l2_bound", positive=True)
        f = check_int(self.frac_bits, "frac_bits", lo=0, hi=40)
        # a coordinate that wraps passes all k range rows w.p. up to 2^-k: at least 40
        k = check_int(self.k, "k", lo=40, hi=1 << 16)
        h = check_int(self.honest_failure_bits, "honest_failure_bits", lo=1, hi=128)
        check_real(self.timeout, "timeout", positive=True)
        check_int(self.threads, "threads", lo=1, hi=64)
        check_int(self.check_batch, "check_batch", lo=1, hi=1 << 20)
        if self.over_bound not in ("raise", "clip"):
            raise InvalidInput("over_bound must be 'raise' or 'clip'")
        bq = b * float(1 << f) + math.sqrt(d)
        if bq >= _MAX:  # (the T and tau checks below would overflow a float first)
            raise InvalidInput(
                f"2^f B + sqrt(d) = {bq:.3g} must stay below 2^62: lower frac_bits ({f}) or "
                f"l2_bound ({b:g})")
        # P(|y_i| > T) <= 2 exp(-T^2 / B_q^2) <= 2^-(h+1) / k
        t_honest = math.ceil(bq * math.sqrt(math.log(2.0 * k) + (h + 1) * _LN2))
        # the range rows test -2^(l-1) <= y_i < 2^(l-1) (compare.in_range_bits): T is
        # the honest bound rounded up to a power of two
        range_bits = max(2, t_honest.bit_length() + 1)
        t = 1 << (range_bits - 1)
        c = _solve_c(k, h + 1)
        tau = math.ceil(c * k * bq * bq / 2.0)
        if k * float(t) * float(t) >= _MAX or tau >= _MAX:
            raise InvalidInput(
                f"the sum of the k = {k} squared sketch entries (up to k T^2 = "
                f"{k * float(t) ** 2:.3g}) must stay below 2^62: lower frac_bits ({f}) or "
                f"l2_bound ({b:g})")
        if 2.0 * t * d >= _MAX:
            raise InvalidInput(
                f"2 T d = {2.0 * t * d:.3g} must stay below 2^62 (no sketch wraps): lower "
                f"frac_bits, l2_bound or dim")
        # gamma: the least ||X|| / (2^f B) with lower_tail_bound <= 2^-40 (and 2^-k too)
        need = 40 * _LN2 * 6.0 / k
        if need >= 1.0:
            gamma = math.inf
        else:
            r = 1.0 - math.sqrt(need)  # tau / (k mu) at the 2^-40 point
            mu = tau / (k * r)
            gamma = math.sqrt(2.0 * mu) / (b * float(1 << f))
        object.__setattr__(self, "quant_bound", bq)
        object.__setattr__(self, "range_bound", int(t))
        object.__setattr__(self, "range_bits", int(range_bits))
        object.__setattr__(self, "honest_range_bound", int(t_honest))
        object.__setattr__(self, "tau", int(tau))
        object.__setattr__(self, "gamma", gamma)

    @property
    def scale(self) -> float:
        """The fixed-point scale ``2^frac_bits``."""
        return float(1 << self.frac_bits)

    def accept_probability(self, norm: float) -> float:
        """Upper bound on the probability that an update of L2 norm ``norm`` (real units,
        no wrapping coordinate) is accepted (see :func:`accept_bound`)."""
        return accept_bound(self, norm)

    @property
    def comparisons(self) -> int:
        """Two-party tests per client: ``k`` range tests and one norm test."""
        return self.k + 1

    @property
    def report(self) -> dict[str, Any]:
        """The soundness numbers (JSON-friendly)."""
        c = 2.0 * self.tau / (self.k * self.quant_bound ** 2)
        return {
            "k": self.k, "frac_bits": self.frac_bits, "l2_bound": self.l2_bound,
            "quant_bound": self.quant_bound, "range_bound_T": self.range_bound,
            "range_bits": self.range_bits, "honest_range_bound": self.honest_range_bound,
            "tau": self.tau, "tau_over_k_mu_honest": c,
            "honest_rejection_bound": 2.0 ** -self.honest_failure_bits,
            "gamma_at_2^-40": self.gamma,
            "accept_bound_at_10x": accept_bound(self, 10.0 * self.l2_bound),
            "wrap_accept_bound": 2.0 ** -self.k,
        }


def accept_bound(cfg: RobustConfig, norm: float) -> float:
    """``max(2^-k, exp(-(k mu - tau)^2 / (6 k mu^2)))`` with ``mu = (2^f norm)^2 / 2``:
    the probability bound that an update of L2 norm ``norm`` (after quantisation, real
    units) passes the check (a wrapping coordinate is caught w.p. ``>= 1 - 2^-k``)."""
    n = check_real(norm, "norm", finite=True)
    mu = (n * cfg.scale) ** 2 / 2.0
    return max(2.0 ** -cfg.k, lower_tail_bound(mu, cfg.tau, cfg.k))
