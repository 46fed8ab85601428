"""HE aggregation (threshold Paillier, one message per client) against phe and against
our mask-based secure aggregation, in one run.

The workload: ``N = 50`` clients, ``d = 100,000`` values each, a 3-of-5 committee, a
2048-bit key (the floor; ``quick``: N = 10, d = 10,000).  Figures:

* **client**: quantising and encrypting one update (packed: 85 values per
  ciphertext) and serialising the message, timed directly in this thread (CPU
  time, ``time.thread_time``) from a freshly read public key, so the first
  client pays the 0.2 s fixed-base table and the steady state does not.  Against
  plain (unpacked) ``phe`` encrypting every value on its own under a key of the
  same size: phe takes minutes for d = 100,000, so it encrypts ``phe_sample``
  values (1,000) and the per-client time is **extrapolated** linearly (the
  baseline name says so; encryption is one independent operation per value).
* **aggregator**: adding the 50 inputs (the time of that step inside ``simulate``)
  against phe adding 50 ciphertexts per value (extrapolated from the sample);
  re-randomising the sum, verifying the ``t`` proofs it uses and combining them
  ride along (``aggregator_total_s``: all four, CPU time; phe has no counterpart
  to the last three).
* **committee member**: one partial decryption of the sum with its batched proof
  (each member's thread CPU time inside ``simulate``) against phe decrypting the
  ``d`` sums with the whole private key (one party, no threshold; extrapolated).
* **round**: the whole ``simulate`` in one process (wall time; the clients and
  the five members share this machine's cores) against mask-based secure
  aggregation (``protocols.secure_aggregation.simulate``) on the same N and d,
  with its bytes per client and rounds.  ``critical_path_s`` adds the CPU times of
  one client, the aggregator and one member: the latency of a deployment where
  each runs on its own machine, network excluded.

**Committee CKKS** (``HEAggConfig(scheme="ckks")``, preset ``"n8192-agg"``, the
same N, d, committee and updates), each record named ``he_aggregation CKKS ...``
with the threshold-Paillier figure of this run as its baseline (ratio > 1: CKKS
is faster): the dealer; one client (CPU time from a freshly read committee
context: quantise, encrypt, serialise; bytes of its message against Paillier's);
the aggregator adding the inputs; one member's flooded partial decryption (no
proof exists); combining the ``t`` partials with the integrality check; the
whole ``simulate`` round and its critical path (one client + the aggregator +
one member, CPU times).

Every record carries the CPU, its thread count and the load average before
and after (the machine may be shared).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import phe
from mpcai.protocols import he_aggregation as ha
from mpcai.protocols import secure_aggregation as sa

from mpcai.he import ckks
from mpcai.he import paillier as P

from ._common import record
from ._simd import cpu_model


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "threads": os.cpu_count() or 1, "load_avg": _load()}


def _client_once(pub_blob: bytes, cfg: ha.HEAggConfig, update: np.ndarray,
                 weight: int) -> tuple[float, float, int]:
    """(CPU seconds from a fresh key, CPU seconds with its table built, bytes): one client."""
    t0 = time.thread_time()
    tpk = P.ThresholdPublicKey.deserialize(pub_blob)  # as a client receives it
    pk = tpk.public_key
    values, _ = ha.quantize_update(update, cfg, weight)
    blob = P.encrypt_packed(tpk, values.astype(np.float64), cfg.spec).serialize()
    first = time.thread_time() - t0
    assert pk._table is not None  # built by the first encryption
    t1 = time.thread_time()
    values, _ = ha.quantize_update(update, cfg, weight)
    P.encrypt_packed(tpk, values.astype(np.float64), cfg.spec).serialize()
    steady = time.thread_time() - t1
    return first, steady, len(blob)


def _phe_sample(cfg: ha.HEAggConfig, updates: list[np.ndarray], sample: int,
                key_bits: int) -> dict[str, float]:
    """phe on the first ``sample`` values: per-value CPU seconds of encrypting, of adding
    N ciphertexts, and of decrypting a sum with the private key."""
    ppub, psk = phe.generate_paillier_keypair(n_length=key_bits)
    qs = [ha.quantize_update(u, cfg, 1)[0][:sample] for u in updates]
    t0 = time.thread_time()
    encs = [[ppub.encrypt(int(v)) for v in q.tolist()] for q in qs[:1]]
    enc_s = (time.thread_time() - t0) / sample
    # the other clients' ciphertexts for the sum: encrypt without obfuscation (cheap);
    # adding does not care how they were randomised
    for q in qs[1:]:
        encs.append([ppub.encrypt(int(v), r_value=1) for v in q.tolist()])
    t0 = time.thread_time()
    sums = []
    for j in range(sample):
        acc = encs[0][j]
        for row in encs[1:]:
            acc = acc + row[j]
        sums.append(acc)
    add_s = (time.thread_time() - t0) / sample
    t0 = time.thread_time()
    dec = [psk.decrypt(s) for s in sums]
    dec_s = (time.thread_time() - t0) / sample
    want = np.sum([q.astype(np.int64) for q in qs], axis=0)
    assert dec == want.tolist()
    return {"encrypt": enc_s, "add": add_s, "decrypt": dec_s,
            "ct_bytes": float(2 * ((ppub.n.bit_length() + 7) // 8))}


def run(quick: bool = False) -> list[dict]:
    """The records (see the module docstring); ``quick``: N = 10, d = 10,000."""
    n, d, committee, key_bits = (10, 10_000, (3, 5), 2048) if quick else \
        (50, 100_000, (3, 5), 2048)
    sample = 200 if quick else 1_000
    out: list[dict] = []
    machine = _machine()
    rng = np.random.default_rng(2024)  # benchmark data only
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    weights = [1] * n  # unweighted FedAvg, as the secure-aggregation benchmarks

    t0 = time.perf_counter()
    tpk, shares = P.deal_threshold_keys(committee[1], committee[0], key_bits)
    deal_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    P.generate_keypair(key_bits)
    keygen_s = time.perf_counter() - t0
    out.append(record(f"threshold Paillier dealer {committee[0]}-of-{committee[1]}, "
                      f"{key_bits}-bit (safe primes)", deal_s,
                      f"generate_keypair({key_bits}) (random primes)", keygen_s, **machine))

    cfg = ha.HEAggConfig(n_clients=n, dim=d, committee=committee, clip=1.0, bits=16,
                         max_weight=1, timeout=3600.0, decrypt_timeout=3600.0)
    blob = tpk.serialize()
    firsts, steadies = [], []
    nbytes = 0
    for i in range(3):
        f, s, nbytes = _client_once(blob, cfg, updates[i], weights[i])
        firsts.append(f)
        steadies.append(s)
    first, steady = float(np.median(firsts)), float(np.median(steadies))
    ph = _phe_sample(cfg, updates, sample, key_bits)
    label = (f"extrapolated from {sample} values x {d // sample}: plain phe, one "
             "ciphertext per value")
    cts = -(-cfg.length // cfg.spec.slot_count(tpk.public_key))
    common = {"n_clients": n, "dim": d, "committee": f"{committee[0]} of {committee[1]}",
              "key_bits": key_bits, "ciphertexts_per_client": cts, "phe_sample": sample,
              "extrapolated": True}
    out.append(record(f"he_aggregation client: quantise + encrypt + serialise d={d} "
                      f"(packed, {key_bits}-bit, first message incl. table)", first,
                      f"phe encrypt d={d} ({label})", ph["encrypt"] * d,
                      bytes_per_client=nbytes, phe_bytes_per_client=ph["ct_bytes"] * d,
                      **common, **machine))
    out.append(record("he_aggregation client: the same, fixed-base table already built",
                      steady, f"phe encrypt d={d} ({label})", ph["encrypt"] * d,
                      bytes_per_client=nbytes, **common))

    load_before = _load()
    t0 = time.perf_counter()
    res = ha.simulate(updates, weights, cfg=cfg, keys=(tpk, shares))
    round_s = time.perf_counter() - t0
    keep = np.sum([w * np.clip(u, -1, 1) for w, u in zip(weights, updates, strict=True)],
                  axis=0) / sum(weights)
    err = float(np.max(np.abs(res.mean - keep)))
    assert err <= 1 / cfg.levels + 1e-12, err
    roles = res.roles
    agg_total = roles["aggregator"]["seconds"]
    out.append(record(f"he_aggregation aggregator: add {n} inputs (its verify + combine "
                      "alongside)", res.seconds["add"],
                      f"phe add {n} ciphertexts per value, d={d} ({label})", ph["add"] * d,
                      aggregator_total_s=agg_total, rerandomize_s=res.seconds["rerandomize"],
                      verify_s=res.seconds["verify"],
                      combine_s=res.seconds["combine"],
                      aggregator_bytes_sent=roles["aggregator"]["bytes_sent"],
                      aggregator_bytes_received=roles["aggregator"]["bytes_received"],
                      **common))
    out.append(record(f"he_aggregation committee member: partial decryption + proof of the "
                      f"sum ({cts} ciphertexts, powmod_sec, 1 thread)",
                      roles["committee"]["seconds"],
                      f"phe decrypt d={d} sums with the whole private key, one party "
                      f"({label})", ph["decrypt"] * d,
                      member_bytes_sent=roles["committee"]["bytes_sent"],
                      member_bytes_received=roles["committee"]["bytes_received"],
                      members_answered=roles["committee"]["count"], **common))
    load_mid = _load()

    sa_cfg = sa.SecAggConfig(n_clients=n, clip=1.0, bits=16, max_weight=1, timeout=3600.0,
                             threads=1)
    t0 = time.perf_counter()
    sa_res = sa.simulate([u.astype(np.float32) for u in updates], sa_cfg, weights=weights)
    sa_s = time.perf_counter() - t0
    sa_bytes = float(np.mean([sa_res.stats[c].bytes_sent for c in range(1, n + 1)]))
    sa_rounds = float(np.mean([sa_res.stats[c].rounds for c in range(1, n + 1)]))
    out.append(record(f"he_aggregation round end to end (simulate: {n} clients, "
                      f"{committee[1]} members, one process)", round_s,
                      f"mask-based SecAgg (ours, simulate, same N and d, k={sa_cfg.neighbours}"
                      f", t={sa_cfg.threshold})", sa_s,
                      bytes_per_client=roles["client"]["bytes_sent"],
                      secagg_bytes_per_client=sa_bytes,
                      client_messages=1, secagg_client_rounds=sa_rounds,
                      client_cpu_s=roles["client"]["seconds"],
                      # one client, the aggregator and one member in sequence, each on its
                      # own machine (CPU times measured here; network time excluded)
                      critical_path_s=first + agg_total + roles["committee"]["seconds"],
                      max_abs_error=err, load_before=load_before, load_mid=load_mid,
                      load_after=_load(), **common))
    paillier_figures = {"deal": deal_s, "client": first, "bytes": float(nbytes),
                        "add": res.seconds["add"], "member": roles["committee"]["seconds"],
                        "combine": res.seconds["combine"], "round": round_s,
                        "critical": first + agg_total + roles["committee"]["seconds"]}
    out += _ckks_records(n, d, committee, updates, weights, paillier_figures, machine)
    return out


def _ckks_records(n: int, d: int, committee: tuple[int, int], updates: list[np.ndarray],
                  weights: list[int], pai: dict[str, float], machine: dict[str, Any]
                  ) -> list[dict]:
    """The committee-CKKS figures of the same workload, each against Paillier's."""
    out: list[dict] = []
    t, l_ = committee
    t0 = time.perf_counter()
    tctx, shares = ckks.deal_threshold_keys(l_, t)
    deal_s = time.perf_counter() - t0
    common = {"n_clients": n, "dim": d, "committee": f"{t} of {l_}", "scheme": "ckks",
              "preset": tctx.context.preset.name, "decryption_budget": tctx.decryption_budget}
    out.append(record(f"he_aggregation CKKS dealer {t}-of-{l_} (preset "
                      f"{tctx.context.preset.name})", deal_s,
                      "threshold Paillier dealer (this run)", pai["deal"], **common, **machine))
    cfg = ha.HEAggConfig(n_clients=n, dim=d, committee=committee, clip=1.0, bits=16,
                         max_weight=1, timeout=3600.0, decrypt_timeout=3600.0, scheme="ckks")
    blob = tctx.serialize()
    times = []
    nbytes = 0
    for i in range(3):
        t0 = time.thread_time()
        ctx = ckks.ThresholdContext.deserialize(blob).context  # as a client receives it
        values, _ = ha.quantize_update(updates[i], cfg, weights[i])
        msg = ctx.encrypt(values.astype(np.float64)).serialize()
        times.append(time.thread_time() - t0)
        nbytes = len(msg) + 20  # the scheme's tag and committee key id
    client_s = float(np.median(times))
    cts = -(-cfg.length // tctx.context.slot_count)
    common["ciphertexts_per_client"] = cts
    out.append(record(f"he_aggregation CKKS client: quantise + encrypt + serialise d={d} "
                      f"({cts} ciphertexts, from a fresh context)", client_s,
                      "threshold Paillier client, first message (this run)", pai["client"],
                      bytes_per_client=nbytes, paillier_bytes_per_client=pai["bytes"],
                      bytes_vs_paillier=nbytes / pai["bytes"], **common))
    load_before = _load()
    t0 = time.perf_counter()
    res = ha.simulate(updates, weights, cfg=cfg, keys=(tctx, shares))
    round_s = time.perf_counter() - t0
    keep = np.sum([w * np.clip(u, -1, 1) for w, u in zip(weights, updates, strict=True)],
                  axis=0) / sum(weights)
    err = float(np.max(np.abs(res.mean - keep)))
    assert err <= 1 / cfg.levels + 1e-12, err
    roles = res.roles
    agg_total = roles["aggregator"]["seconds"]
    member_s = roles["committee"]["seconds"]
    out.append(record(f"he_aggregation CKKS aggregator: add {n} inputs", res.seconds["add"],
                      "threshold Paillier aggregator add (this run)", pai["add"],
                      aggregator_total_s=agg_total, verify_s=res.seconds["verify"],
                      serialise_sum_s=res.seconds["rerandomize"],
                      aggregator_bytes_sent=roles["aggregator"]["bytes_sent"],
                      aggregator_bytes_received=roles["aggregator"]["bytes_received"],
                      decryption_sets=len(res.decryption_sets), **common))
    out.append(record(f"he_aggregation CKKS committee member: one flooded partial decryption "
                      f"of the sum ({cts} ciphertexts, no proof, 1 thread)", member_s,
                      "threshold Paillier member: partial decryption + proof (this run)",
                      pai["member"], member_bytes_sent=roles["committee"]["bytes_sent"],
                      member_bytes_received=roles["committee"]["bytes_received"],
                      members_decrypting=roles["committee"]["count"], **common))
    out.append(record(f"he_aggregation CKKS combine {t} partials (+ integrality check)",
                      res.seconds["combine"], "threshold Paillier combine (this run)",
                      pai["combine"], **common))
    critical = client_s + agg_total + member_s
    out.append(record(f"he_aggregation CKKS round end to end (simulate: {n} clients, {l_} "
                      "members, one process)", round_s,
                      "threshold Paillier round end to end (this run)", pai["round"],
                      critical_path_s=critical, paillier_critical_path_s=pai["critical"],
                      critical_path_ratio=pai["critical"] / critical,
                      bytes_per_client=roles["client"]["bytes_sent"], client_messages=1,
                      max_abs_error=err, load_before=load_before, load_after=_load(),
                      **common))
    return out


if __name__ == "__main__":
    import json
    import sys

    recs = run(quick="--quick" in sys.argv)
    print(json.dumps(recs, indent=2, default=str))
