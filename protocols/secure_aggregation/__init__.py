"""Secure aggregation for federated learning: SecAgg with the SecAgg+ graph.

A server learns the weighted sum (and mean) of many clients' model updates
and nothing else, even when clients drop out at any stage.  The protocol is
Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning" (CCS 2017), with the sparse neighbour graph of Bell et
al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead"
(CCS 2020, SecAgg+).

**Threat model.**  One server (party 0) and ``n`` clients (``1..n``).  The
server may collude with up to ``C`` clients; a client's secrets are shared
among its ``k`` neighbours and itself with threshold ``t`` (its own share
counts when it survives, as in SecAgg+).  Against a semi-honest
server (one that follows the protocol), the colluders learn nothing beyond
the sum of the honest survivors' inputs as long as they never hold ``t``
shares of one honest client (``min(k, C) < t``).  A *malicious* server could
substitute the keys clients advertise unless they are authenticated: give
every client a long-term Ed25519 identity key (``SecAggConfig.identities``,
a PKI; :func:`make_identities` for tests), and clients sign their keys and
check their neighbours' signatures.  Then, with the consistency check on
and the complete graph (a sparse one lets a malicious server claim that a
client's neighbours dropped and read its input as the sum of its component;
automatic parameters choose the complete graph in this case), the remaining
defences of Bonawitz et al. apply: a client reveals, for each
neighbour, either its self-mask share (survivor) or its mask-key share
(dropped), never both; it answers one unmask request only, and only for the
survivor list it signed and that ``t`` of its neighbours signed.  Without
identities, privacy holds against a semi-honest server only.  A surviving
client needs ``t - 1`` surviving neighbours, a dropped one ``t``; fewer
anywhere gives :class:`~mpcai.errors.NotEnoughSurvivors`, never a wrong
result.  By default ``k`` and ``t`` are chosen from the declared dropout
and corruption fractions so that a round fails with probability at most
2^-20 and privacy with at most 2^-40 (:class:`SecAggConfig`,
:func:`security_report`).  Clients do not learn the sum.  The server learns which clients
survived and the total weight.  Every share a client deals comes with its
hash commitment (kept by the server, hiding: a share has >= 256 bits of
entropy): a client that reveals at unmask anything but what it was dealt is
caught and its share dropped; a dealer whose shares do not lie on one
polynomial is out-voted when a secret has ``m >= t + 2`` shares (up to
``(m - t) // 2`` wrong ones corrected, Berlekamp–Welch).  Both kinds of
cheater are listed in ``AggregateResult.misbehaving`` (honest clients never
are).  With ``t + 1`` shares a wrong one stops the round with
:class:`~mpcai.errors.ProtocolAbort`; with exactly ``t`` it is undetectable
as such (information-theoretically) but leaves a random mask in the sum,
which the range check then refuses.  The range
check: the total weight must lie in ``[|U3|, |U3| * max_weight]`` and every
value of the sum below ``total weight * (2^bits - 1)``, else
:class:`~mpcai.errors.AggregateOutOfRange` and no mean.  A client that cheats
*within* those ranges shifts the sum undetected: masking gives privacy, not
robustness against poisoned inputs.  :func:`security_report` checks a
configuration against declared fractions of corrupt and dropping clients.

**Mechanics.**  X25519 key agreement and HKDF (``cryptography``); shares
travel encrypted with ChaCha20-Poly1305 whose associated data binds session,
stage, sender and recipient; Shamir sharing over GF(2^61 - 1); every mask is
expanded by mpcai's ChaCha20 PRG and added in one fused pass; the neighbour
graph is a Harary graph over a pseudorandom order of the client ids keyed by
the session id alone, so a client finds its neighbours in ``O(k)`` and the
server cannot draw other graphs by choosing which clients count.  Each
client receives only what concerns its neighbourhood (``O(k)`` keys, shares
and ids per stage; the consistency check adds the survivor list).
Updates are clipped to ``[-clip, clip]`` (NaN and infinities are refused),
quantised to ``bits`` bits and multiplied by integer weights; the weights
are masked too, and so is each client's count of clipped values, so the
server reports the total (``AggregateResult.clipped``) and issues a
:class:`~mpcai.errors.ClippingWarning` above 1% of the values.  Masks live in
the smallest of Z_2^24, Z_2^32 and Z_2^64 that holds the largest possible
sum (every client at the top level ``2^bits - 1`` with the largest weight;
Z_2^24 takes 3 bytes of keystream and of wire per value) and the
configuration refuses any size whose sum could overflow Z_2^64; ``bits``
is at most 53, the grid float64 holds exactly.

**Differential privacy** (``SecAggConfig(dp=DPConfig(...))``).  The
distributed discrete Gaussian of Kairouz, Liu and Steinke (ICML 2021,
:mod:`mpcai.dp`): each client L2-clips, rotates (public signs from the
session), scales to a grid, rounds conditionally on the norm, adds discrete
Gaussian noise of variance ``sigma_total^2 / n_min`` and sends its vector
modulo ``2^dp.bits`` inside the Z_2^32 masks; the server centres the modular
sum and rotates it back.  Then what the server (with up to ``C`` colluding
clients, who may add no noise) learns about any one client is bounded: the
sum holds the noise of at least ``n_min = min_survivors - C`` honest clients,
because the server refuses to unmask with fewer than ``min_survivors``
survivors (:class:`~mpcai.errors.NotEnoughSurvivors`, before any share is
requested), and so does each client that sees the whole survivor list
(the complete graph or the consistency check).  Neighbouring inputs: one
client's update present or replaced by a zero vector (the client still adding
its noise).  Against a malicious server the guarantee needs the sum's own
secrecy (:func:`security_report`'s ``private_malicious``: identities, the
consistency check, the complete graph).
``AggregateResult.privacy`` (:class:`mpcai.dp.RoundPrivacy`) reports the
round's ``(eps, delta)`` for the actual survivors minus ``C`` (more survivors,
more noise, smaller eps), the wrap-around bound and the sampler's
total-variation distance (included in delta, times ``1 + e^eps``); compose rounds with
:class:`mpcai.dp.PrivacyAccountant`, calibrate with :func:`calibrate_noise`.
Weights are all 1 (the sensitivity is that of an unweighted sum).  Outside
the DP guarantee: who took part and survived (no amplification by sampling
is claimed: the server sees the participants) and, only with
``DPConfig.report_clipped``, how many survivors clipped their update
(``AggregateResult.clipped``, exact; 0 otherwise).
"""

from .client import client as client
from .client import flatten_update as flatten_update
from .config import DPConfig as DPConfig
from .config import SecAggConfig as SecAggConfig
from .config import SecurityReport as SecurityReport
from .config import calibrate_noise as calibrate_noise
from .config import make_identities as make_identities
from .config import security_report as security_report
from .server import AggregateResult as AggregateResult
from .server import server as server
from .simulation import SimulationResult as SimulationResult
from .simulation import simulate as simulate
from .stages import LEGAL as LEGAL
from .stages import Stage as Stage
from .stages import StageMachine as StageMachine

__all__ = [
    "LEGAL",
    "AggregateResult",
    "DPConfig",
    "SecAggConfig",
    "SecurityReport",
    "SimulationResult",
    "Stage",
    "StageMachine",
    "calibrate_noise",
    "client",
    "flatten_update",
    "make_identities",
    "security_report",
    "server",
    "simulate",
]
