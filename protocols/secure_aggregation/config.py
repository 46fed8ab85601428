"""Configuration of secure aggregation: parameters, their checks, the security statement.

Masking is over the ring Z_2^32 whenever the sum fits in it, else Z_2^64
(:attr:`SecAggConfig.ring_bits`).  Each client's update is quantised into
``[0, 2^bits - 1]`` over an explicit clipping range and multiplied by its
(integer) weight; the weights are summed, masked, alongside.  The sum of at
most ``n_clients`` such vectors must not wrap around 2^64: a configuration
where it could is refused when it is built.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from mpcai.errors import InvalidInput

__all__ = ["SecAggConfig", "SecurityReport", "security_report"]


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one secure aggregation.

    Attributes:
        n_clients: number of clients (party ids ``1..n_clients``; the server is 0).
        threshold: ``t``, how many of a client's neighbours must survive to
            recover its secrets (and how many colluders it takes to learn them).
        degree: ``k``, neighbours per client in the SecAgg+ graph (even);
            ``None`` for every other client (classic SecAgg).
        clip: updates are clipped (or refused) outside ``[-clip, clip]``.
        bits: quantisation levels ``2^bits - 1`` over the clipping range.
        max_weight: largest per-client weight (e.g. sample count).
        out_of_range: ``"clip"`` values beyond ``clip`` (counted and reported)
            or ``"raise"``.
        consistency_check: run the Ed25519-signed survivor-list round.
        timeout: seconds the server waits for clients at each stage.
        threads: OS threads per mask expansion (long vectors only; results
            are identical for any value).
    """

    n_clients: int
    threshold: int
    degree: int | None = None
    clip: float = 1.0
    bits: int = 16
    max_weight: int = 1
    out_of_range: Literal["clip", "raise"] = "clip"
    consistency_check: bool = False
    timeout: float = 30.0
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        n = self.n_clients
        if not isinstance(n, int) or n < 2:
            raise InvalidInput(f"n_clients must be an int >= 2, got {n!r}")
        k = self.neighbours
        if self.degree is not None and (self.degree < 2 or self.degree % 2):
            raise InvalidInput(f"degree must be an even int >= 2, got {self.degree}")
        if not isinstance(self.threshold, int) or not 1 <= self.threshold <= k:
            raise InvalidInput(f"threshold must be in [1, {k}] (a client has {k} neighbours), "
                               f"got {self.threshold}")
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 62):
            raise InvalidInput(f"bits must be in [1, 62], got {self.bits}")
        if not (isinstance(self.max_weight, int) and self.max_weight >= 1):
            raise InvalidInput(f"max_weight must be a positive int, got {self.max_weight}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidInput(f"clip must be a positive number, got {self.clip}")
        if self.out_of_range not in ("clip", "raise"):
            raise InvalidInput("out_of_range must be 'clip' or 'raise'")
        if not self.timeout > 0:
            raise InvalidInput("timeout must be positive")
        if not (isinstance(self.threads, int) and 1 <= self.threads <= 64):
            raise InvalidInput(f"threads must be in [1, 64], got {self.threads}")
        worst = n * self.max_weight * ((1 << self.bits) - 1)
        if worst >= 1 << 64:
            raise InvalidInput(
                f"unsafe: {n} clients x weight {self.max_weight} x 2^{self.bits} levels can "
                f"reach {worst.bit_length()} bits and wrap around 2^64; lower bits or max_weight"
            )

    @property
    def neighbours(self) -> int:
        """``k``: how many neighbours each client has."""
        if self.degree is None or self.degree >= self.n_clients - 1:
            return self.n_clients - 1
        return self.degree

    @property
    def ring_bits(self) -> int:
        """Bits of the masking ring: Z_2^32 when the sum cannot reach 2^32, else Z_2^64.

        The 32-bit ring halves the traffic and the keystream needed for the
        masks (each mask element is one 32-bit word of the ChaCha20 stream).
        """
        worst = self.n_clients * self.max_weight * self.levels
        return 32 if worst < 1 << 32 else 64

    @property
    def levels(self) -> int:
        """Largest quantised value, ``2^bits - 1``."""
        return (1 << self.bits) - 1


@dataclass(frozen=True)
class SecurityReport:
    """What a configuration guarantees against ``corrupt`` colluding clients and
    ``dropouts`` dropping clients (worst-case placement)."""

    correct: bool
    private_semi_honest: bool
    private_malicious: bool
    statement: str


def security_report(cfg: SecAggConfig, corrupt_fraction: float,
                    dropout_fraction: float) -> SecurityReport:
    """Check ``threshold`` and ``degree`` against the declared adversary, worst case.

    * correctness: even if every dropout is a neighbour of one client, at
      least ``t`` of its ``k`` neighbours survive: ``k - min(k, D) >= t``;
    * privacy against a semi-honest server colluding with ``C`` clients:
      they can never hold ``t`` shares of an honest client's secrets:
      ``min(k, C) < t``;
    * privacy against a malicious server is **not** provided: it needs
      clients' advertised keys to be authenticated (a PKI), which is not
      implemented yet; ``private_malicious`` is always False.

    These are worst-case (adversarial placement) conditions; SecAgg+ with a
    random graph (Bell et al. 2020) holds with high probability under much
    weaker ones, which this check does not credit.
    """
    if not (0 <= corrupt_fraction < 1 and 0 <= dropout_fraction < 1):
        raise InvalidInput("fractions must be in [0, 1)")
    n, k, t = cfg.n_clients, cfg.neighbours, cfg.threshold
    corrupt = math.floor(corrupt_fraction * n)
    dropped = math.floor(dropout_fraction * n)
    correct = k - min(k, dropped) >= t
    semi = min(k, corrupt) < t
    # Privacy against a malicious server also needs authenticated client keys
    # (a PKI: each client signing its advertised keys with a long-term identity
    # key); without it the server can substitute a neighbour's key and decrypt
    # the shares.  mpcai does not implement that yet, so this is never claimed.
    malicious = False
    statement = (
        f"n={n} clients, k={k} neighbours, t={t}: "
        f"{'survives' if correct else 'may FAIL with'} {dropped} dropouts; "
        f"{'private' if semi else 'NOT private'} against a semi-honest server with "
        f"{corrupt} colluding clients; "
        "not private against a malicious server (client keys are not authenticated)."
    )
    return SecurityReport(correct, semi, malicious, statement)
