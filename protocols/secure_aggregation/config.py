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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mpcai.encoding import MAX_QUANT_BITS
from mpcai.errors import InvalidInput

__all__ = ["SecAggConfig", "SecurityReport", "make_identities", "security_report"]


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
        dim: the number of values in every update, if known in advance (the
            server then refuses other lengths instead of taking the most
            common one).
        identities: ``{client id: Ed25519 public key (32 bytes)}`` for every
            client — long-term identity keys known to all in advance (a PKI).
            Clients then sign their advertised keys and check their
            neighbours' signatures, so the server cannot substitute keys;
            needed for privacy against a malicious server.
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
    dim: int | None = None
    identities: Mapping[int, bytes] | None = None

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
        if not (isinstance(self.bits, int) and 1 <= self.bits <= MAX_QUANT_BITS):
            raise InvalidInput(f"bits must be in [1, {MAX_QUANT_BITS}] (float64 holds every "
                               f"level of the grid exactly up to there), got {self.bits}")
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
        if self.dim is not None and not (isinstance(self.dim, int) and self.dim >= 1):
            raise InvalidInput(f"dim must be a positive int, got {self.dim}")
        if self.identities is not None:
            ids = {int(k) for k in self.identities}
            if ids != set(range(1, n + 1)) or not all(
                    isinstance(v, bytes) and len(v) == 32 for v in self.identities.values()):
                raise InvalidInput("identities must map every client 1..n to a 32-byte "
                                   "Ed25519 public key")
            object.__setattr__(self, "identities",
                               {int(k): bytes(v) for k, v in self.identities.items()})
        # the largest sum the server can see: every client at the top level (quantize
        # never exceeds ``levels``) with the largest weight; it must stay below 2^64
        worst = n * self.max_weight * self.levels
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
    * privacy against a malicious server (which may claim a client dropped
      to some and survived to others) needs authenticated client keys
      (``identities``), the consistency check, and that the server never
      obtains ``t`` shares of both secrets of one client:
      ``2 t > k + min(k, C)`` (Bonawitz et al., per neighbourhood).

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
    # Privacy against a malicious server needs authenticated client keys
    # (identities: each client signs its advertised keys with a long-term key);
    # without them the server could substitute a neighbour's key and read shares.
    malicious = (cfg.identities is not None and cfg.consistency_check
                 and 2 * t > k + min(k, corrupt))
    statement = (
        f"n={n} clients, k={k} neighbours, t={t}: "
        f"{'survives' if correct else 'may FAIL with'} {dropped} dropouts; "
        f"{'private' if semi else 'NOT private'} against a semi-honest server with "
        f"{corrupt} colluding clients; "
        f"{'private' if malicious else 'NOT private'} against a malicious server"
        f"{'' if cfg.identities is not None else ' (client keys unauthenticated: set identities)'}"
        f"{'' if cfg.consistency_check else ' (consistency check off)'}."
    )
    return SecurityReport(correct, semi, malicious, statement)


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
