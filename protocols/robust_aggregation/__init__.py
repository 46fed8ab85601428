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
  define (it deals **no** correlations: every correlation of the check is made by the
  servers between themselves by oblivious transfer, so there is nothing it could deal
  inconsistently; malformed messages — a seed of the wrong size, a vector of the wrong
  length or dtype — reject that client, and the round goes on).  Since ``R`` is drawn
  after its shares are in, the guarantee is: an update with a coordinate beyond ``2T``
  (centered modulo 2^64, e.g. ``2^63`` values built to cancel in a +-1 sketch) is
  accepted with probability at most ``2^-k``; one with ``||X|| >= gamma 2^f B`` with
  probability at most ``2^-40`` (``gamma`` ~ 3.1 at ``k = 256``); an honest client
  (``||x|| <= B``) is rejected with probability at most ``2^-40``.  Accepted cheaters
  can still shift the sum by up to ``gamma B`` each (the bound is on norms, not on
  directions).
- *Dropouts*: a client that does not send to both servers before ``cfg.timeout`` is
  absent from the round (no recovery phase is needed: there are no pairwise masks).
  A server that fails ends the round (two servers, both required).
- *What a client learns*: nothing about the others; server 0 tells it whether it was
  accepted (a rejected client learns only that).

Network: messages go over the runtime's ``Party`` links (in-memory channels in
:func:`simulate`; TLS links over TCP, so the seed is confidential to server 0).
"""

from .client import SERVERS, client, quantize_update
from .config import RobustConfig, accept_bound
from .server import RobustResult, server
from .simulation import process_party, simulate

__all__ = ["SERVERS", "RobustConfig", "RobustResult", "accept_bound", "client",
           "process_party", "quantize_update", "server", "simulate"]
