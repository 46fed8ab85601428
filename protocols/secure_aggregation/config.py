"""Configuration of secure aggregation: parameters, their checks, the security statement.

Masking is over the smallest of the rings Z_2^24, Z_2^32 and Z_2^64 the sum
fits in (:attr:`SecAggConfig.ring_bits`).  Each client's update is quantised into
``[0, 2^bits - 1]`` over an explicit clipping range and multiplied by its
(integer) weight; the weights are summed, masked, alongside.  The sum of at
most ``n_clients`` such vectors must not wrap around 2^64: a configuration
where it could is refused when it is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mpcai import prg
from mpcai.encoding import CLIP_RANGE, MAX_QUANT_BITS
from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_bool, check_int, check_real

from . import _crypto, _params

__all__ = [
    "CLIPPED_COUNT_CAP",
    "DPConfig",
    "SecAggConfig",
    "SecurityReport",
    "calibrate_noise",
    "make_identities",
    "security_report",
]

CLIPPED_COUNT_CAP: int = (1 << 16) - 1
"""Each client's count of clipped values travels masked next to its update (so the
server learns only the total), saturated at this value so the ring stays small."""


@dataclass(frozen=True)
class DPConfig:
    """Distributed differential privacy for secure aggregation: the distributed
    discrete Gaussian mechanism (Kairouz, Liu, Steinke, ICML 2021; :mod:`mpcai.dp`).

    Each client L2-clips its update to ``l2_clip``, rotates it (randomized
    Hadamard, public signs from the session), scales it to a grid ``gamma``,
    rounds it conditionally on its norm, adds discrete Gaussian noise and sends
    it modulo ``2^bits`` (inside the masking ring Z_2^32).  The server learns
    the noisy sum; it is differentially private against the server and the
    corrupt clients together, for the neighbouring relation "one client's
    update added or removed" with the L2 sensitivity of one rounded update
    (a removed update counts as a zero vector from a client that still adds
    its noise: the honest noise in the sum is the same on both sides).

    Dropouts and corruption: every client adds noise of variance
    ``sigma_total^2 / n_min`` where ``n_min = min_survivors - C`` is the least
    number of *honest* survivors (``C = ceil(corrupt_fraction * n_clients)``
    corrupt clients may add no noise; ``min_survivors`` defaults to the
    threshold, below which no round completes).  The server refuses to unmask
    with fewer than ``min_survivors`` survivors
    (:class:`~mpcai.errors.NotEnoughSurvivors`), and so does every client asked
    to unmask for fewer when it sees the whole survivor list (the complete graph,
    or the consistency check; in a sparse graph without it a client sees only its
    neighbourhood's survivors and leaves the count to the server), so the sum
    holds the noise of at least ``n_min`` honest clients; the round's report
    counts the actual survivors minus ``C``.  A client's masked input that the
    server declares dropped stays masked by its self-mask (its neighbours reveal
    the shares of one secret only), so it is left out of the sum, never seen alone.

    Against whom: the DP guarantee is for the noisy sum, so it needs the sum's
    own secrecy: against a semi-honest server always; against a malicious one
    only where :func:`security_report` says ``private_malicious`` (identities,
    the consistency check, the complete graph).  Otherwise a server that reads
    one client's masked input alone gets that client's update under its noise
    share only, ``sigma_total / sqrt(n_min)``: ``sqrt(n_min)`` times the round's
    epsilon.  Corrupt clients cannot cancel honest noise (they never see it) but
    may add anything to the sum; the sum has no integrity, and its wrap-around
    bound holds for honest inputs only.

    Attributes:
        l2_clip: each update is scaled down to this L2 norm if above it.
        noise_multiplier: ``z``, the total noise's standard deviation over
            ``l2_clip`` (``0``: no noise, ``eps = inf``: tests only).
        bits: the modulus ``2^bits`` of the values (16..32).
        delta: the target ``delta`` of the privacy report.
        wrap_bound: the largest acceptable probability that the sum wraps
            around (``gamma`` is chosen for it).
        beta: the conditional rounding's parameter (:func:`mpcai.dp.rounded_norm_bound`).
        min_survivors: see above (``None``: the threshold).
        report_clipped: send each client's clipped flag (masked) so that the server
            learns how many survivors were L2-clipped.  That count is exact, not
            noised: it is *outside* the DP guarantee (one client's update can change
            it by one with certainty), so it is off by default (the flag is sent as 0
            and ``AggregateResult.clipped`` is 0).
    """

    l2_clip: float
    noise_multiplier: float
    bits: int = 20
    delta: float = 1e-5
    wrap_bound: float = 1e-9
    beta: float = 0.6065306597126334  # exp(-1/2), as Kairouz et al.
    min_survivors: int | None = None
    report_clipped: bool = False

    def __post_init__(self) -> None:
        check_bool(self.report_clipped, "report_clipped")
        object.__setattr__(self, "l2_clip", check_real(self.l2_clip, "l2_clip", positive=True))
        object.__setattr__(self, "noise_multiplier", check_real(
            self.noise_multiplier, "noise_multiplier", lo=0.0))
        object.__setattr__(self, "bits", check_int(self.bits, "bits", lo=16, hi=32))
        for name in ("delta", "wrap_bound", "beta"):
            v = check_real(getattr(self, name), name, positive=True)
            if not v < 1:
                raise InvalidInput(f"{name} must be in (0, 1), got {v!r}")
            object.__setattr__(self, name, v)
        if self.min_survivors is not None:
            object.__setattr__(self, "min_survivors", check_int(
                self.min_survivors, "min_survivors", lo=1))


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one secure aggregation.

    Attributes:
        n_clients: number of clients (party ids ``1..n_clients``; the server is 0).
        threshold: ``t``, how many shares recover a client's secrets (its own
            share counts, so a surviving client needs ``t - 1`` surviving
            neighbours) and how many colluding neighbours it takes to learn
            them.  ``None`` (the default): chosen with ``degree`` so that a
            round fails with probability at most ``failure_bound`` and
            privacy fails with probability at most ``privacy_bound``, for the
            declared ``dropout_fraction`` and ``corrupt_fraction`` (see
            :func:`security_report`).
        degree: ``k``, neighbours per client in the SecAgg+ graph (even);
            ``None`` with an explicit ``threshold``: every other client
            (classic SecAgg); ``None`` without one: chosen as above.
        dropout_fraction: the fraction of clients that may drop out in a
            round (used to choose ``degree`` and ``threshold``).
        corrupt_fraction: the fraction of clients that may collude with the
            server (likewise).
        failure_bound: the largest acceptable probability that a round
            gives no result (``NotEnoughSurvivors``).
        privacy_bound: the largest acceptable probability that the server
            and the corrupt clients learn more than the sum.
        clip: updates are clipped (or refused) outside ``[-clip, clip]``.
        bits: quantisation levels ``2^bits - 1`` over the clipping range.
        max_weight: largest per-client weight (e.g. sample count).
        out_of_range: ``"clip"`` values beyond ``clip`` (counted and reported)
            or ``"raise"``.
        consistency_check: run the Ed25519-signed survivor-list round.
        timeout: seconds the server waits for clients at each stage.
        threads: OS threads per mask expansion (long vectors only; results
            are identical for any value).
        dim: the number of values in every update, if known in advance (the
            server then refuses other lengths instead of taking the most
            common one).
        identities: ``{client id: Ed25519 public key (32 bytes)}`` for every
            client — long-term identity keys known to all in advance (a PKI).
            Clients then sign their advertised keys and check their
            neighbours' signatures, so the server cannot substitute keys;
            needed for privacy against a malicious server.
        dp: distributed differential privacy (:class:`DPConfig`); then the
            weights are 1, ``clip``/``bits`` are not used (``dp`` clips and
            rounds), and the masked ring is Z_2^32.
    """

    n_clients: int
    threshold: int | None = None
    degree: int | None = None
    clip: float = 1.0
    bits: int = 16
    max_weight: int = 1
    out_of_range: Literal["clip", "raise"] = "clip"
    consistency_check: bool = False
    timeout: float = 30.0
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    dim: int | None = None
    identities: Mapping[int, bytes] | None = None
    dropout_fraction: float = 0.1
    corrupt_fraction: float = 0.1
    failure_bound: float = 2.0**-20
    privacy_bound: float = 2.0**-40
    dp: DPConfig | None = None

    def __post_init__(self) -> None:
        n = self.n_clients
        check_int(n, "n_clients", lo=2)
        if self.degree is not None:
            degree = check_int(self.degree, "degree", lo=2)
            if degree % 2:
                raise InvalidInput(f"degree must be even (a Harary graph), got {degree}")
            object.__setattr__(self, "degree", degree)
        for name in ("dropout_fraction", "corrupt_fraction"):
            v = check_real(getattr(self, name), name, lo=0.0)
            if not v < 1:
                raise InvalidInput(f"{name} must be in [0, 1), got {v!r}")
            object.__setattr__(self, name, v)
        for name in ("failure_bound", "privacy_bound"):
            v = check_real(getattr(self, name), name, positive=True)
            if not v < 1:
                raise InvalidInput(f"{name} must be in (0, 1), got {v!r}")
            object.__setattr__(self, name, v)
        check_bool(self.consistency_check, "consistency_check")
        if self.threshold is None:
            malicious = self.identities is not None and self.consistency_check
            chosen = _params.choose(n, self.dropout_fraction, self.corrupt_fraction,
                                    self.failure_bound, self.privacy_bound,
                                    self.degree, malicious)
            if chosen is None:
                raise InvalidInput(
                    f"no {'threshold for degree ' + str(self.degree) if self.degree else 'degree'}"
                    f" meets failure <= {self.failure_bound:.3g} and privacy <= "
                    f"{self.privacy_bound:.3g} with {n} clients, dropout fraction "
                    f"{self.dropout_fraction} and corrupt fraction {self.corrupt_fraction}: "
                    "declare smaller fractions, looser bounds, or set threshold yourself")
            k, t = chosen
            object.__setattr__(self, "threshold", t)
            object.__setattr__(self, "degree", None if k >= n - 1 else k)
        k = self.neighbours
        object.__setattr__(self, "threshold", check_int(
            self.threshold, f"threshold (a client and its {k} neighbours hold shares)",
            lo=1, hi=k + 1))
        object.__setattr__(self, "bits", check_int(self.bits, "bits", lo=1, hi=MAX_QUANT_BITS))
        object.__setattr__(self, "max_weight", check_int(self.max_weight, "max_weight", lo=1))
        object.__setattr__(self, "clip", check_real(self.clip, "clip", lo=CLIP_RANGE[0],
                                                    hi=CLIP_RANGE[1]))
        if self.out_of_range not in ("clip", "raise"):
            raise InvalidInput("out_of_range must be 'clip' or 'raise'")
        object.__setattr__(self, "timeout", check_real(self.timeout, "timeout", positive=True))
        object.__setattr__(self, "threads", check_int(self.threads, "threads", lo=1,
                                                      hi=prg.MAX_THREADS))
        if self.dim is not None:
            object.__setattr__(self, "dim", check_int(self.dim, "dim", lo=1))
        if self.identities is not None:
            ids = {int(k) for k in self.identities}
            if ids != set(range(1, n + 1)) or not all(
                    isinstance(v, bytes) and len(v) == _crypto.KEY_BYTES
                    for v in self.identities.values()):
                raise InvalidInput("identities must map every client 1..n to a 32-byte "
                                   "Ed25519 public key")
            object.__setattr__(self, "identities",
                               {int(k): bytes(v) for k, v in self.identities.items()})
        if self.dp is not None:
            if isinstance(self.dp, Mapping):  # from a config file / process_party
                object.__setattr__(self, "dp", DPConfig(**self.dp))
            if not isinstance(self.dp, DPConfig):
                raise InvalidInput("dp must be a DPConfig")
            if self.max_weight != 1:
                raise InvalidInput("with dp, every weight is 1 (the sensitivity assumes an "
                                   f"unweighted sum): max_weight must be 1, got {self.max_weight}")
            if self.min_honest_survivors < 1:
                raise InvalidInput(
                    f"with dp, at least one honest client must survive: min_survivors "
                    f"{self.dp_min_survivors} minus {self.corrupt_clients} corrupt clients "
                    f"leaves {self.min_honest_survivors}; raise min_survivors or the threshold")
            if self.dp_min_survivors > n:
                raise InvalidInput(f"dp.min_survivors {self.dp_min_survivors} > n_clients {n}")
        # the largest sum the server can see: every client at the top level (quantize
        # never exceeds ``levels``) with the largest weight; it must stay below 2^64
        worst = n * max(self.max_weight * self.levels, CLIPPED_COUNT_CAP)
        if worst >= 1 << 64:
            raise InvalidInput(
                f"unsafe: {n} clients x weight {self.max_weight} x {self.levels} (2^{self.bits}"
                f" - 1) can reach {worst} >= 2^64 and wrap around; lower bits or max_weight"
            )

    @property
    def neighbours(self) -> int:
        """``k``: how many neighbours each client has."""
        if self.degree is None or self.degree >= self.n_clients - 1:
            return self.n_clients - 1
        return self.degree

    @property
    def corrupt_clients(self) -> int:
        """``C = ceil(corrupt_fraction * n_clients)``: clients that may add no noise."""
        return _params._corrupt(self.n_clients, self.corrupt_fraction)

    @property
    def dp_min_survivors(self) -> int:
        """The fewest survivors a DP round unmasks with (``dp.min_survivors`` or ``t``)."""
        assert self.threshold is not None
        if self.dp is None or self.dp.min_survivors is None:
            return self.threshold
        return max(self.dp.min_survivors, self.threshold)

    @property
    def min_honest_survivors(self) -> int:
        """``n_min``: the fewest honest survivors of a DP round (each client's noise
        variance is the total's over this)."""
        return self.dp_min_survivors - self.corrupt_clients

    @property
    def ring_bits(self) -> int:
        """Bits of the masking ring: 24, 32 or 64, the smallest whose modulus the
        largest possible sum (``n_clients`` x ``max_weight`` x ``levels``, and the
        clipped count) stays below.

        Z_2^24 (e.g. 16 bits, weight 1, up to 256 clients): each mask element
        is 3 bytes of the ChaCha20 stream and each masked value 3 bytes on the
        wire (:func:`mpcai.encoding.pack_bits`), a quarter less than Z_2^32;
        Z_2^32: one 32-bit word each, half the traffic and keystream of Z_2^64.
        With ``dp`` always Z_2^32: the values are modulo ``2^dp.bits`` (at most
        2^32) and the clipped count and weights sum to at most ``n_clients <
        2^(dp.bits - 1)`` (the DP encoding refuses more).
        """
        if self.dp is not None:
            return 32
        worst = self.n_clients * max(self.max_weight * self.levels, CLIPPED_COUNT_CAP)
        return 24 if worst < 1 << 24 else 32 if worst < 1 << 32 else 64

    @property
    def mask_bits(self) -> int:
        """Bits of keystream per mask value (``prg.ring_accumulate(bits=)``): 24 in
        Z_2^24 and with ``dp`` of at most 24 bits (only the residues modulo
        ``2^dp.bits`` are sent and summed, and 3-byte masks are uniform modulo
        them), else the ring's 32 or 64."""
        if self.dp is not None:
            return 24 if self.dp.bits <= 24 else 32
        return self.ring_bits

    @property
    def levels(self) -> int:
        """Largest quantised value, ``2^bits - 1``."""
        return (1 << self.bits) - 1


def calibrate_noise(cfg: SecAggConfig, dim: int, target_epsilon: float, rounds: int) -> float:
    """The smallest ``noise_multiplier`` (to 0.1%) for which ``rounds`` rounds of
    ``cfg`` (its ``dp`` with any noise multiplier; the other ``dp`` fields kept) on
    updates of ``dim`` values compose to at most ``target_epsilon`` at ``dp.delta``,
    counting the noise of the fewest honest survivors (``cfg.min_honest_survivors``)
    in every round.  ``0.0`` for an infinite target.  (The grid, and with it the
    rounding's share of the sensitivity, depends on the noise: hence the search.)
    ``delta`` is for exact discrete Gaussians: the sampler adds ``(1 + e^eps)``
    times its total-variation distance over the rounds (``RoundPrivacy.sampler_tv``,
    :meth:`mpcai.dp.PrivacyAccountant.total_delta`).
    """
    import dataclasses
    import math

    from mpcai import dp

    from . import _dp

    if cfg.dp is None:
        raise InvalidInput("calibrate_noise needs a configuration with dp")
    dim = check_int(dim, "dim", lo=1)
    per_round = dp.calibrate_rounds(target_epsilon, rounds, cfg.dp.delta)
    if math.isinf(per_round):
        return 0.0

    def eps(z: float) -> float:
        c = dataclasses.replace(cfg, dp=dataclasses.replace(cfg.dp, noise_multiplier=z))
        p = _dp.params(c, dim)
        return dp.ddg_epsilon(p.l2_sensitivity, p.sigma_client, c.min_honest_survivors,
                              p.d_pad)

    lo, hi = 0.0, 1.0
    while eps(hi) > per_round:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise InvalidInput(f"no noise multiplier reaches eps {target_epsilon} in {rounds}"
                               " rounds (the rounding's sensitivity dominates: raise bits)")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if eps(mid) <= per_round else (mid, hi)
    return hi


@dataclass(frozen=True)
class SecurityReport:
    """What a configuration guarantees against a fraction of corrupt clients
    colluding with the server and a fraction of dropping clients.

    The booleans are worst-case statements (every dropout or corrupt client
    placed as badly as possible); the probabilities are upper bounds for a
    random SecAgg+ graph with the corrupt and dropping clients fixed
    independently of it (Bell et al. 2020; see ``_params``).
    """

    correct: bool
    private_semi_honest: bool
    private_malicious: bool
    #: P[a round gives no result] (upper bound)
    failure_probability: float
    #: P[a semi-honest server and the corrupt clients learn more than the sum]
    privacy_failure_probability: float
    #: the same against a malicious server (1.0 without identities and the
    #: consistency check)
    malicious_failure_probability: float
    statement: str


def security_report(cfg: SecAggConfig, corrupt_fraction: float | None = None,
                    dropout_fraction: float | None = None) -> SecurityReport:
    """Check ``threshold`` and ``degree`` against the declared adversary.

    The fractions default to the configuration's own.  Worst case, with ``D``
    dropouts and ``C`` corrupt clients:

    * correctness: a surviving client recovers its self-mask seed from its own
      share and ``t - 1`` of its neighbours' (``k - min(k, D) >= t - 1``), a
      dropped one from ``t`` neighbours (``k - min(k, D - 1) >= t``);
    * privacy against a semi-honest server colluding with ``C`` clients:
      they never hold ``t`` shares of an honest client's secrets
      (``min(k, C) < t``);
    * privacy against a malicious server (which may claim a client dropped
      to some and survived to others) needs authenticated client keys
      (``identities``), the consistency check, and that the server never
      obtains ``t`` shares of both secrets of one client:
      ``2 t > k + 1 + min(k, C)`` (Bonawitz et al.), and the complete graph:
      in a sparse one the server may claim a client's neighbours dropped and
      read its input as the sum of its component.

    The probabilities credit the random graph: a client's neighbourhood is a
    random subset, so far smaller ``k`` and ``t`` suffice with high
    probability.  The graph depends on the session id alone, so the server
    cannot draw others by choosing which clients count as having advertised
    keys (whoever picks the session id could).
    """
    if not isinstance(cfg, SecAggConfig):
        raise InvalidType(f"cfg must be a SecAggConfig, not {type(cfg).__name__}")
    gamma = cfg.corrupt_fraction if corrupt_fraction is None else corrupt_fraction
    delta = cfg.dropout_fraction if dropout_fraction is None else dropout_fraction
    if not (0 <= gamma < 1 and 0 <= delta < 1):
        raise InvalidInput("fractions must be in [0, 1)")
    n, k, t = cfg.n_clients, cfg.neighbours, cfg.threshold
    assert t is not None  # chosen in __post_init__
    corrupt = _params._corrupt(n, gamma)
    dropped = _params._dropped(n, delta)
    correct = (k - min(k, dropped) >= t - 1
               and (dropped == 0 or k - min(k, dropped - 1) >= t))
    semi = min(k, corrupt) < t
    # Privacy against a malicious server needs authenticated client keys
    # (identities: each client signs its advertised keys with a long-term key);
    # without them the server could substitute a neighbour's key and read shares.
    guarded = cfg.identities is not None and cfg.consistency_check
    # a sparse graph lets a malicious server isolate a client by claiming its neighbours
    # dropped: only the complete graph (classic SecAgg) is private against it
    malicious = guarded and k >= n - 1 and 2 * t > k + 1 + min(k, corrupt)
    p_fail = _params.failure_probability(n, k, t, delta)
    p_priv = _params.privacy_probability(n, k, t, gamma, delta)
    p_mal = _params.malicious_probability(n, k, t, gamma, delta) if guarded else 1.0
    if guarded:
        against_malicious = (f"against a malicious server P[privacy lost] <= {p_mal:.2g} "
                             f"(worst case: {'private' if malicious else 'NOT always private'})")
    else:
        missing = " and ".join(
            why for why, off in (("client keys unauthenticated: set identities",
                                  cfg.identities is None),
                                 ("consistency check off", not cfg.consistency_check)) if off)
        against_malicious = f"NOT private against a malicious server ({missing})"
    statement = (
        f"n={n} clients, k={k} neighbours, t={t}, with {dropped} dropouts and {corrupt} "
        f"corrupt: P[no result] <= {p_fail:.2g} "
        f"(worst case: {'never fails' if correct else 'may FAIL'}); against a semi-honest "
        f"server P[privacy lost] <= {p_priv:.2g} "
        f"(worst case: {'private' if semi else 'NOT always private'}); {against_malicious}."
    )
    return SecurityReport(correct, semi, malicious, p_fail, p_priv, p_mal, statement)


def make_identities(n_clients: int) -> tuple[dict[int, bytes], dict[int, Any]]:
    """Fresh Ed25519 identity keys for clients ``1..n``: (public keys for the
    config, private keys for the clients).  In a deployment each client makes
    its own and the public halves are distributed out of band."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = {c: Ed25519PrivateKey.generate() for c in range(1, n_clients + 1)}
    public = {c: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
              for c, k in private.items()}
    return public, private
