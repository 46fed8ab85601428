"""Homomorphic aggregation: clients send one encrypted message each and leave.

Each client quantises its update, encrypts it under a committee's threshold
Paillier key (packed: ~85 values per 2048-bit ciphertext) and sends it to
the aggregator; nothing else is ever asked of it.  The aggregator multiplies
the ciphertexts that arrived before its deadline (adding the plaintexts), and
a committee of ``l`` key holders decrypts only that sum: each member sends a
partial decryption with a proof, and any ``t`` valid ones give the sum.
There is no dropout-recovery round: a client that did not send is simply
not in the sum.  The scheme is Damgård–Jurik's threshold Paillier (PKC 2001,
section 4) on :mod:`mpcai.he.paillier` (see :func:`~mpcai.he.paillier.combine`).

**Threat model.**  Parties: the aggregator (party 0), clients ``1..N``, the
committee (parties ``N + 1 .. N + l``, member ``i`` holding key share
``i``), and a **trusted dealer at set-up** (:func:`~mpcai.he.paillier.deal_threshold_keys`):
it makes the key and the shares, knows the factorisation, and must be
trusted to hand each share to its member privately and then forget;
there is no distributed key generation.  Security rests on the decisional
composite residuosity assumption (and, for the clients' fast DJN randomness,
on the short-exponent assumption stated in :mod:`mpcai.he.paillier`).

* *Privacy against a semi-honest aggregator* (one that follows the protocol)
  colluding with any number of clients and with at most ``t - 1`` committee
  members: it learns the weighted sum of the participants' quantised
  updates, their total weight, their total count of clipped values, and the
  set of participants (who sent in time) — nothing about any one honest
  client's update beyond what the sum reveals.  Committee members learn the
  participant list and the ciphertext of the sum, not the sum.  ``t`` members
  colluding with anyone who holds client ciphertexts (the aggregator, or an
  observer of unencrypted links: run over TLS) can decrypt every client's
  update.
* *A malicious aggregator* is **not** covered for privacy: it can ask the
  committee to decrypt any ciphertext it holds, e.g. one client's input
  presented as the sum.  Members check what they can (the committee key, the
  slot layout and size, a participant list that matches the declared number
  of summands and reaches ``min_clients``) and answer one request per
  session, so such an aggregator reads at most one chosen ciphertext per
  session; the declared count is the aggregator's word.  Verifiable sums
  (clients signing their ciphertexts, members recomputing the product) are
  not implemented.  The aggregator computes the result, so it can also
  report anything it likes; clients do not learn the result.
* *Committee members may be malicious*: a wrong partial decryption fails its
  proof of correct decryption (Chaum–Pedersen, Fiat–Shamir over SHA-256;
  soundness error ~2^-128 in the random-oracle model), its sender is named
  in ``AggregateResult.misbehaving`` and another member's valid partial is
  used.  The result is correct whenever ``t`` honest members answer before
  ``decrypt_timeout``; otherwise :class:`~mpcai.errors.NotEnoughSurvivors`
  (too few answered) or :class:`~mpcai.errors.MisbehaviourDetected` (cheaters
  left too few valid partials) — never a wrong sum.
* *Clients* may drop at any time: up to ``N - min_clients`` may be missing.
  A malformed message (wrong length, key, slot layout) is rejected and the
  client listed in ``AggregateResult.rejected``.  Clients may lie in their
  inputs: a value within range shifts the sum undetected, and a client that
  encrypts an arbitrary plaintext can corrupt every slot; the range check
  after decryption (slots, total weight, values, clipped count) refuses
  sums that no honest inputs give (:class:`~mpcai.errors.AggregateOutOfRange`)
  but is no defence against poisoning: that needs robust aggregation (norm
  bounds with proofs), out of scope here.

**Mechanics.**  Updates are clipped to ``[-clip, clip]`` (counted; NaN and
infinities refused), quantised to ``bits`` bits (:func:`mpcai.encoding.quantize`)
and multiplied by the client's integer weight; the clipped count and the
weight are two more values.  They are packed as integers
(:class:`~mpcai.he.paillier.PackingSpec`, no fractional bits, ``K = N``
summands of headroom) and encrypted with
:func:`~mpcai.he.paillier.encrypt_packed`; :class:`HEAggConfig` refuses any
configuration whose sums could overflow a slot or exceed float64's exact
range.  The scheme sits behind a small private interface (``_scheme.py``:
encrypt, add, partial decryption, combine, formats) so a CKKS committee
scheme can plug in.  Every received object is length-checked before it is
parsed.  Cost at 2048 bits (``benchmarks/_he_aggregation.py``, 2-core EPYC):
0.8-1.0 s per client for 100,000 values (1,177 ciphertexts, 603 KB, one
message; plain phe: ~915 s), ~4 s for the aggregator with 50 clients, and
~29 ms per ciphertext of the sum for each committee member (34 s for 1,177,
one thread; no CRT without the factorisation).
"""

from .aggregator import AggregateResult as AggregateResult
from .aggregator import aggregator as aggregator
from .client import client as client
from .client import quantize_update as quantize_update
from .committee import committee_member as committee_member
from .config import HEAggConfig as HEAggConfig
from .config import Stage as Stage
from .simulation import process_party as process_party
from .simulation import simulate as simulate

__all__ = [
    "AggregateResult",
    "HEAggConfig",
    "Stage",
    "aggregator",
    "client",
    "committee_member",
    "process_party",
    "quantize_update",
    "simulate",
]
