"""Private inference with secret sharing: a model owner's network on a data owner's inputs.

Two compute parties evaluate a model (linear layers and ReLUs: an
scikit-learn ``MLPClassifier`` / ``LogisticRegression``, a torch
``nn.Sequential`` of Linear, ReLU, Conv2d, AvgPool2d, Flatten (:func:`from_torch`,
``pip install 'mpcai[torch]'``) or numpy weights, :mod:`.model`) on
additive secret shares over Z_2^64 in fixed point, with
correlated randomness from a dealer (:mod:`.mpc2`): linear layers on masked
wires (local GEMMs), ReLUs by function secret sharing (one round, one ring
element per element and party), truncation by SecureML's local share shift.
Only the data owner learns the logits.  :func:`simulate` runs every party in
one process; :func:`run_party` is one party of a deployment (each role in
its own process or machine, or several roles in one).  With one server and
no third party, :mod:`mpcai.protocols.inference.he` evaluates models with
:class:`Square` / :class:`Polynomial` activations on CKKS ciphertexts
instead (the secret-sharing paths refuse those activations).

**Threat model.**  Semi-honest (every party follows the protocol) and no
collusion between the two compute parties, nor between the dealer and
either of them.  Then:

* a compute party sees only uniformly masked values (``W + B``, ``X + R``,
  ``y + r``, ``h + R'``) and its own shares: nothing about the weights, the
  features or any intermediate value;
* the dealer receives nothing at all (it only sends): it learns no input,
  no weight and no output; colluding with a compute party it would learn
  everything, which is why it must be a separate party;
* the data owner learns the logits (and what they reveal about the model);
  the model owner learns nothing about the features;
* the public parameters are the layer widths, ``frac_bits``, the agreed
  ``input_bound`` and the model owner's truncation failure probability
  (a function of the weights' magnitudes).

An owner may also be a compute party (e.g. the data owner is party 0 and
the model owner party 1: classic two-party inference with a dealer).

**Without a dealer** (``Roles(dealer=None)``, ``simulate(...,
provider="dealerless")``, :class:`DealerlessCorrelations`): when no third
party exists that both trust, the two compute parties make the
correlations themselves by oblivious transfer (:mod:`mpcai.sharing.ot`):
the mask products by Gilboa's correlated-OT product, the ReLUs by a
comparison circuit on AND triples from random OTs (FSS keys need a
dealer).  Same semi-honest, non-colluding assumption on the two compute
parties, plus the hardness of discrete logarithms in Ed25519 (base OTs)
and ChaCha20 as a correlation-robust hash (extension).  Each sees only
OT messages (pseudorandom), masked values and AND-gate openings (masked
by one-time triples).  Costs for a digits MLP 64-32-10 at batch 100: 31 MB
and 4.6 MB offline when the model owner is a compute party (no weight mask:
the owner chooses OTs with its weights' bits, which reveals to the other
party the bit length of each layer's largest fixed-point weight: a public
parameter of that mode), 88 MB per party otherwise
(the mask products dominate); 11 online rounds instead of 4.
Malicious behaviour is not detected beyond malformed messages
(:class:`~mpcai.errors.MisbehaviourDetected`); a party that stops
answering gives every other party a typed
:class:`~mpcai.errors.PeerError` after its timeout.

**Correctness.**  Logits carry the fixed-point rounding error only (the last
layer is decoded by the data owner without truncation); each hidden
truncation is off by at most one unit in the last place except with the
failure probability the model owner computes from the weights and
``input_bound`` and refuses above ``max_failure`` (2^-20 per inference, i.e.
per row of a batch, by default; a batch of ``n`` rows fails with at most ``n``
times that).
"""

from ._dealerless import DealerlessCorrelations
from ._torch import from_torch
from .model import Linear, Model, Polynomial, ReLU, Square, from_numpy, from_sklearn
from .mpc2 import (
    Correlations,
    DealerCorrelations,
    InferenceConfig,
    LayerStats,
    ModelSpec,
    PartyResult,
    ReluGate,
    Roles,
    bounds,
    run_party,
)
from .simulation import InferenceResult, simulate

__all__ = [
    "Correlations",
    "DealerCorrelations",
    "DealerlessCorrelations",
    "InferenceConfig",
    "InferenceResult",
    "LayerStats",
    "Linear",
    "Model",
    "ModelSpec",
    "PartyResult",
    "Polynomial",
    "ReLU",
    "ReluGate",
    "Roles",
    "Square",
    "bounds",
    "from_numpy",
    "from_sklearn",
    "from_torch",
    "run_party",
    "simulate",
]

from_torch.__module__ = __name__
DealerlessCorrelations.__module__ = __name__
