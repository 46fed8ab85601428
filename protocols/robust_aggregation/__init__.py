"""Robust (norm-bounded, poisoning-resistant) secure aggregation with two servers.

After ELSA (Rathee et al., IEEE S&P 2023), with the norm checked on a random linear
sketch so that only ``O(k)`` values per client (``k = 256``, independent of the update's
length ``d``) go through two-party computation.

**Parties.**  Two servers (party ids 0 and 1) and ``n`` clients (ids ``2 .. n + 1``).
Each client quantises its update ``x`` (``||x||_2 <= B`` declared in
:class:`RobustConfig`) to ``X`` in Z_2^64 (stochastic rounding at scale ``2^f``), draws
a 32-byte seed ``s`` and sends ``s`` to server 0 and ``X - PRG(s)`` (``d`` uint64) to
server 1: about ``8 d`` bytes per client, twice plain secure aggregation's 32-bit ring.
After all shares of the round are in, the servers toss a coin for a ternary sketch
matrix ``R`` (``k x d``, entries -1, 0, +1 w.p. 1/4, 1/2, 1/4, expanded by ChaCha20:
:func:`mpcai.prg.ternary_sketch`), sketch their shares locally (``R`` is linear), and
under two-party computation check that every ``-T <= y_i < T`` and ``sum_i y_i^2 <= tau``
for ``y = R X``; only one accept bit per client is opened.  They then add the accepted
clients' shares and open the sum.  The soundness argument and the numbers are in
:mod:`.config` (:attr:`RobustConfig.report`).

**Threat model.**

- *Servers*: two, semi-honest, not colluding.  Each sees one share of each update
  (server 0 a seed, server 1 a uniformly masked vector: each alone is independent of
  ``X``), the transcripts of the two-party check (OT-based: Chou-Orlandi base OTs on
  Ed25519, IKNP extension with ChaCha20, AND triples, Gilboa's product; simulatable
  from the outputs), the accept bits, the sum of the accepted updates and the set of
  accepted / rejected / malformed / dropped clients.  Nothing about a rejected update
  is revealed beyond its rejection.  Two colluding servers learn every update.
- *Clients*: any number may be malicious (and collude with each other, not with a
  server).  A client's whole influence is the vector ``X`` in Z_2^64^d its two shares
  define: any seed and any vector define some ``X``, so "inconsistent shares" do not
  exist; a malformed message (a seed of the wrong size, a vector of the wrong length or
  dtype, wrong types) rejects that client, and the round goes on; any other message it
  sends is never read.  **Guarantee** (per client and round, both servers following
  the protocol, ``R`` pseudo-random: ChaCha20 keyed by a hash of the two servers' coins,
  drawn only after every share of the round is in and never shown to a client, fresh
  each round, so nothing a client saw in earlier rounds tells it about ``R``): an ``X``
  with a coordinate beyond ``2T`` (centered modulo 2^64, e.g. ``2^63`` values built to
  cancel in a +-1 sketch) is accepted with probability at most ``2^-k``; one with
  ``||X|| >= gamma 2^f B`` with probability at most ``2^-40`` (``gamma`` is computed
  from ``k``, ``tau`` and ``B_q`` in :class:`RobustConfig`: 3.07 to 3.11 at ``k =
  256``, ``f = 16``, ``B = 1``, ``d <= 10^6``; infinite, i.e. no such promise, for
  ``k < 167``); an honest client (``||x|| <= B``) is rejected with probability at most
  ``2^-h`` (``h = honest_failure_bits``, 40 by default).  Accepted cheaters can still
  shift the sum by up to ``gamma B`` each (the bound is on norms, not on directions).
  A server that deviates can accept or reject anything: soundness, like privacy, needs
  both servers to follow the protocol.
- *Correlations, a deviation from ELSA.*  In ELSA (and in the issue this implements)
  each client acts as an untrusted dealer of the correlated randomness its own check
  consumes, which the servers must then verify (a client dealing inconsistent
  correlations must be caught).  Here clients deal **nothing**: every AND triple and every
  Gilboa OT of the check is made by the two servers between themselves by OT
  extension, so a client has no input to the check but ``X`` and there is no dealt
  correlation to be inconsistent (the issue's "inconsistent dealer" test becomes: a
  client sending correlation-like extra messages changes nothing, and the cheaters'
  tests above).  This is sound for the threat model here (semi-honest servers:
  IKNP and Gilboa are semi-honest protocols; it does not give ELSA's security against a
  malicious server).  Cost: ~53k OTs per client (36,790 AND triples at ``l = 20``,
  16,384 Gilboa OTs), ~1.55 MB between the servers per client whatever ``d`` (measured at
  ``k = 256``), OT CPU on the servers instead of ``O(k l)`` extra upload per client.
- *Dropouts*: a client that does not send to both servers before ``cfg.timeout`` is
  absent from the round (no recovery phase is needed: there are no pairwise masks).
  A server that fails ends the round (two servers, both required).
- *What a client learns*: nothing about the others; server 0 tells it whether it was
  accepted (a rejected client learns only that, not ``R`` nor its sketch).
- *What the sum reveals*: both servers learn the sum of the accepted updates however
  few they are; with one accepted client that is its update (there is no minimum count:
  a caller that needs one checks ``len(result.accepted)`` before using the sum, and
  the servers learn it anyway).

Network: messages go over the runtime's ``Party`` links (in-memory channels in
:func:`simulate`; TLS links over TCP, so the seed is confidential to server 0).
"""

from .client import SERVERS, client, quantize_update
from .config import RobustConfig, accept_bound
from .server import RobustResult, server
from .simulation import process_party, simulate

__all__ = ["SERVERS", "RobustConfig", "RobustResult", "accept_bound", "client",
           "process_party", "quantize_update", "server", "simulate"]
