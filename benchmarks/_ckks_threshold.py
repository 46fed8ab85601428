"""Committee CKKS decryption (:func:`mpcai.he.ckks.deal_threshold_keys`): what an
aggregation pays, each step beside the nearest single-key operation in the same run.

``d`` values per client (100,000; quick: 20,000), ``K`` clients (50; quick: 8), a
3-of-5 committee on ``"n8192-agg"`` (4096 values per ciphertext) with a budget of
``Q = 1024`` ciphertexts per holder (40 rounds of 25 ciphertexts):

* encrypt one client's ``d`` values -- against TenSEAL's ``ckks_vector`` on the
  same context (chunk by chunk, as ours does);
* add the ``K`` client vectors -- against TenSEAL's ``+`` on the same ciphertexts;
* one holder's partial decryption of the sum -- against the single key owner's
  ``decrypt_flooded`` of the same sum (same preset and budget);
* combining ``t`` partials -- against the owner's exact ``decrypt``.

Extra fields: bytes per client and per partial, the measured error against numpy
and its predicted standard deviation, the CPU, the 1-minute load average.  Every
step runs in one thread.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import tenseal as ts

from mpcai.he.ckks import (
    CKKSContext,
    PartialDecryption,
    combine,
    deal_threshold_keys,
    partial_decrypt,
)

from ._common import record
from ._simd import cpu_model


def _median(fn: Any, reps: int) -> tuple[float, Any]:
    out = None
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], out


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    d, k = (20_000, 8) if quick else (100_000, 50)
    n, t, budget = 5, 3, 1024
    holders = (1, 2, 3)
    machine = {"cpu": cpu_model(), "load_1min": os.getloadavg()[0], "threads": 1}
    tctx, shares = deal_threshold_keys(n, t, decryption_budget=budget)
    ctx = tctx.context
    rng = np.random.default_rng(4)  # data only
    xs = rng.uniform(-1, 1, (k, d))
    want = xs.sum(axis=0)
    slots = ctx.slot_count
    ts_ctx = ctx.tenseal_context

    def ours_encrypt() -> Any:
        return ctx.encrypt(xs[0])

    def tenseal_encrypt() -> Any:
        return [ts.ckks_vector(ts_ctx, xs[0, i:i + slots].tolist()) for i in range(0, d, slots)]

    enc_s, first = _median(ours_encrypt, reps)
    ts_enc_s, _ = _median(tenseal_encrypt, reps)
    vecs = [first] + [ctx.encrypt(x) for x in xs[1:]]
    client_bytes = len(vecs[0].serialize())
    records = [record(f"ckks committee: encrypt d={d} (one client, {vecs[0].ciphertext_count} "
                      "ciphertexts, n8192-agg)", enc_s, "TenSEAL ckks_vector per 4096-slot chunk",
                      ts_enc_s, client_bytes=client_bytes, bytes_per_value=client_bytes / d,
                      **machine)]

    def ours_sum() -> Any:
        acc = vecs[0]
        for v in vecs[1:]:
            acc = acc + v
        return acc

    raw = [v.tenseal() for v in vecs]

    def tenseal_sum() -> Any:
        acc = raw[0]
        for v in raw[1:]:
            acc = acc + v
        return acc

    add_s, total = _median(ours_sum, reps)
    ts_add_s, _ = _median(tenseal_sum, reps)
    records.append(record(f"ckks committee: add {k} vectors of d={d}", add_s,
                          "TenSEAL CKKSVector +", ts_add_s, **machine))

    # one holder's partial decryption against the single-key flooded decryption
    owner = CKKSContext.create("n8192-agg", galois_keys=False, decryption_budget=budget)
    owner_total = owner.encrypt(want)
    part_s, _ = _median(lambda: partial_decrypt(shares[0], total, holders, summands=k), reps)
    flood_s, _ = _median(lambda: owner.decrypt_flooded(owner_total), reps)
    parts = [partial_decrypt(shares[i - 1], total, holders, summands=k) for i in holders]
    part_bytes = len(parts[0].serialize())
    records.append(record(f"ckks committee: one holder's partial decryption of the sum "
                          f"(d={d}, {total.ciphertext_count} ciphertexts)", part_s,
                          "single key owner's decrypt_flooded", flood_s,
                          partial_bytes=part_bytes, sigma_log2=float(np.log2(parts[0].sigma)),
                          **machine))

    blobs = [p.serialize() for p in parts]

    def ours_combine() -> Any:
        return combine(tctx, total, [PartialDecryption.deserialize(tctx, b) for b in blobs])

    comb_s, out = _median(ours_combine, reps)
    dec_s, _ = _median(lambda: owner.decrypt(owner_total), reps)
    err = out - want
    records.append(record(f"ckks committee: combine {t} partials (parse included, d={d})", comb_s,
                          "single key owner's exact decrypt", dec_s,
                          error_std=float(np.std(err)), error_max=float(np.max(np.abs(err))),
                          predicted_error_std=tctx.value_error_std(tctx.fresh_noise_bound(k)),
                          budget_per_holder=budget, **machine))
    return records


if __name__ == "__main__":  # pragma: no cover - a manual run
    import json
    import sys

    for rec in run(quick="--quick" in sys.argv):
        print(json.dumps(rec))
