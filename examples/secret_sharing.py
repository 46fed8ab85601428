"""Three parties compute the sum and a weighted sum of private vectors.

Run:  python examples/secret_sharing.py

Each party holds a private float vector. They encode it as fixed point,
split it into additive shares over Z_2^64 (one per party), add up the shares
they hold, and publish only the partial sums.  Then the same with Shamir
2-of-3 sharing, where one party may go missing.
"""

from __future__ import annotations

import numpy as np

from mpcai import encoding
from mpcai.sharing import additive, shamir

rng = np.random.default_rng(7)  # test data only; crypto randomness is mpcai's own
inputs = [rng.normal(size=5) for _ in range(3)]
weights = [3, 1, 2]  # public integer weights

# --- additive sharing: all three parties are needed -----------------------
shares = [additive.share(encoding.encode_fixed(x), 3) for x in inputs]  # shares[i][j]: i -> j
held = []
for j in range(3):
    acc = additive.mul_public(shares[0][j], weights[0])
    for i in (1, 2):
        acc = additive.add(acc, additive.mul_public(shares[i][j], weights[i]))
    held.append(acc)
weighted = encoding.decode_fixed(additive.reconstruct(held))
print("weighted sum (MPC)  :", np.round(weighted, 4))
clear = sum(w * x for w, x in zip(weights, inputs, strict=True))
print("weighted sum (clear):", np.round(clear, 4))

# --- Shamir 2-of-3: any two parties suffice ----------------------------------
scaled = [shamir.to_field(np.rint(x * 2**16).astype(np.int64)) for x in inputs]
sh = [shamir.share(v, t=2, n=3) for v in scaled]
held_sh = []
for j in range(3):
    acc = sh[0][j]
    for i in (1, 2):
        acc = shamir.add(acc, sh[i][j])
    held_sh.append(acc)
total = shamir.from_field(shamir.reconstruct([held_sh[0], held_sh[2]], t=2)) / 2**16
print("sum from parties 1 and 3 only:", np.round(total, 4))
print("sum (clear)                  :", np.round(sum(inputs), 4))
