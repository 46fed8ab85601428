"""Homomorphic aggregation: clients send one encrypted message each and leave.

Each client quantises its update, encrypts it under a committee's threshold
Paillier key (packed: ~85 values per 2048-bit ciphertext; or, with
``HEAggConfig(scheme="ckks")``, a committee CKKS key: see *Committee CKKS* below)
and sends it to the aggregator; nothing else is ever asked of it.  The aggregator multiplies
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

**Committee CKKS** (``scheme="ckks"``; :func:`~mpcai.he.ckks.deal_threshold_keys`,
preset ``"n8192-agg"``: 4,096 values per ciphertext).  The same roles, messages and
checks, with these differences, which weaken the threat model above:

* *Trusted dealer*, as for Paillier: it sees the secret key ``s`` before
  Shamir-sharing it (degree ``t - 1``) among the ``l`` members.
* *Decryption sets.*  A CKKS partial decryption is valid for one set ``S`` of
  ``t`` members named before anyone decrypts (each member weights its share by
  ``S``'s Lagrange coefficient, then floods).  The aggregator names ``S`` (the
  first ``t`` members not known to be gone) inside the sum it sends to every
  member; members outside ``S`` answer nothing.  If a member of ``S`` does not
  answer within ``decrypt_timeout`` or sends a malformed partial, the aggregator
  asks again with another set (``AggregateResult.decryption_sets``; each asked
  member decrypts the whole sum again), and members refuse (naming the
  aggregator) a request for another sum than the first, a set asked twice, or
  more than ``l - t + 1`` sets, the most that member dropouts can need.  Fewer
  than ``t`` members left gives :class:`~mpcai.errors.NotEnoughSurvivors`.
* *No proofs of correct decryption.*  A partial is checked for its structure only
  (exact length, the committee key, digests of the sum's ciphertexts, level, the
  set the sum named): a malformed one names its sender in ``misbehaving`` and
  another set is asked.  A well-formed but wrong partial is caught only through
  the result: the sums are integers and honest flooding errors are ~1e-7, so a
  combination farther than 0.25 from an integer anywhere fails the round with
  :class:`~mpcai.errors.MisbehaviourDetected` naming the whole set (the culprit
  is one of them, or a client's malformed ciphertext: see below) -- no other set
  is tried, since it may hold the cheater too.  That catches random or large
  tampering; a member that adds an exact multiple of the scale (an integer shift
  of the sum) is **not** detected beyond the range check after decryption, so
  with CKKS a malicious member can bias the result (it cannot learn more from
  it).  :func:`mpcai.he.ckks.combine` can cross-check two complete sets; the
  protocol does not (it would decrypt every ciphertext twice).
* *Flooding.*  Each member of ``S`` adds its own flood, wide enough to hide the
  ciphertext's error (which depends on the key) with statistical security 2^-40
  over its whole budget of decryptions (``decryption_budget``, 1024 ciphertext
  decryptions per holder by default, i.e. ~40 rounds of 100,000 values; beyond
  it :class:`~mpcai.errors.DecryptionBudgetExceeded`): as long as at most
  ``t - 1`` members are corrupt, every released sum says nothing more about the
  key (the statement of :mod:`mpcai.he.ckks`).  A member's a-priori noise bound
  is the declared number of summands, which it checks against the participant
  list; an aggregator that hides extra summands behind a short list would make
  the floods too narrow (the aggregator is semi-honest here, as for Paillier).
* *Clients are semi-honest as far as ciphertext well-formedness goes.*  An RLWE
  ciphertext shows neither its key nor how it was made, and there are no
  zero-knowledge proofs of encryption: a client message names the committee key
  (so a client set up with another key is rejected), but a ciphertext under
  another key with the right name makes the round fail (not integral), and a
  crafted ciphertext (a large ``c_1`` without error bound) makes the members
  release ``c_1 s`` plus the floods inside the decrypted sum, **revealing the
  committee key** to the aggregator and hence every client's update.  Use CKKS
  only where clients are trusted to run this code unmodified (e.g. attested
  deployments); Paillier's ciphertexts do not have this problem.
* *Range.*  Every value below 2^32 and every slot sum below 2^37 (checked by
  :class:`HEAggConfig`: ``n_clients * levels * max_weight < 2^37``); integer sums
  come out exact after rounding.  Message sizes are bounded, not fixed.

*Cost against Paillier* (``benchmarks/_he_aggregation.py``, N = 50, d = 100,000,
3-of-5, one run on a 2-core EPYC): a client message is ~11x larger (25
ciphertexts, 6.56 MB against 0.60 MB) and its encryption 7x faster (0.15 s
against 1.04 s); the aggregator adds the 50 inputs in 0.40 s (1.6 s); one
member's partial decryption takes 0.18 s against 35 s (~200x: no proofs, no
big-integer exponentiations) and only ``t`` members decrypt; combining takes
0.06 s.  The critical path (one client, the aggregator, one member, CPU) is
0.88 s against 40 s, so a CKKS round is bound by the clients' upload (6.6 MB
each, 330 MB at the aggregator) rather than by the committee.
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
