"""ChaCha20 PRG benchmarks: ours (C, fused) against OpenSSL through ``cryptography``.

Every variant is timed round by round in turn (``_simd.interleaved``), so the
ratios come from the same rounds.  Ours runs on the best SIMD path and, when
that is above AVX2, on the AVX2 path forced too (records marked
``(AVX2 path forced)``): OpenSSL picks its own ChaCha20 code from the CPU
(AVX-512 where the CPU has it), so the comparison is path against path.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from mpcai import _bindings as nb
from mpcai import prg

from . import _simd
from ._common import record

P61 = np.uint64(prg.FIELD_P)


def run(reps: int = 9, quick: bool = False) -> list[dict]:
    n = 10_000 if quick else 1 << 20
    label = "1M" if n == 1 << 20 else f"{n}"
    seed = prg.new_seed()
    acc = np.zeros(n, dtype=np.uint64)
    facc = np.zeros(n, dtype=np.uint64)
    zeros = bytes(8 * n)
    buf = bytearray(8 * n + 15)  # update_into needs len(data) + block_size - 1
    nonce16 = bytes(16)

    def openssl_bare() -> None:
        Cipher(algorithms.ChaCha20(seed, nonce16), None).encryptor().update_into(zeros, buf)

    def openssl_pipeline() -> None:
        Cipher(algorithms.ChaCha20(seed, nonce16), None).encryptor().update_into(zeros, buf)
        np.add(acc, np.frombuffer(buf, dtype=np.uint64, count=n), out=acc)

    def openssl_field_pipeline() -> None:
        Cipher(algorithms.ChaCha20(seed, nonce16), None).encryptor().update_into(zeros, buf)
        mask = np.frombuffer(buf, dtype=np.uint64, count=n) & P61  # (rejection ignored)
        s = facc + mask
        np.subtract(s, P61, out=s, where=s >= P61)
        facc[:] = s

    levels = _simd.compared_paths()
    fns = {"pipe": openssl_pipeline, "bare": openssl_bare, "fpipe": openssl_field_pipeline}
    for lv in levels:
        fns[f"acc{lv}"] = _simd.on_path(lv, lambda: prg.ring_accumulate(acc, seed))
        fns[f"expand{lv}"] = _simd.on_path(lv, lambda: prg.ring_vector(seed, n))
        fns[f"facc{lv}"] = _simd.on_path(lv, lambda: prg.field_accumulate(facc, seed))
    best = levels[0]
    fns["acc_mt"] = _simd.on_path(best, lambda: prg.ring_accumulate(acc, seed, threads=2))
    fns["scalar"] = _simd.on_path(0, lambda: prg.ring_accumulate(acc, seed))
    t = _simd.interleaved(fns, reps)
    med = {k: _simd.median(v) for k, v in t.items()}

    def rec(name: str, ours: str, base_name: str, base: str, level: int, **extra: object) -> dict:
        return record(name, med[ours], base_name, med[base], simd_path=_simd.path_name(level),
                      ratio_q1_q3=_simd.ratio_spread(t[base], t[ours]), **extra)

    records = []
    for lv in levels:
        tag = "" if lv == best else f" ({_simd.path_name(lv).upper()} path forced)"
        records += [
            rec(f"prg ring64 fused acc {label}{tag}", f"acc{lv}",
                "OpenSSL ChaCha20 update_into + numpy add", "pipe", lv,
                gb_per_s=8 * n / med[f"acc{lv}"] / 1e9),
            rec(f"prg ring64 fused acc {label}{tag}", f"acc{lv}",
                "OpenSSL ChaCha20 keystream only (no add)", "bare", lv),
            rec(f"prg ring64 expand {label}{tag}", f"expand{lv}",
                "OpenSSL ChaCha20 keystream only", "bare", lv),
            rec(f"prg fieldp fused acc {label}{tag}", f"facc{lv}",
                "OpenSSL keystream + numpy mask/add mod p", "fpipe", lv),
        ]
    records += [
        rec(f"prg ring64 fused acc {label}, 2 threads", "acc_mt",
            "OpenSSL ChaCha20 update_into + numpy add", "pipe", best, threads=2,
            gb_per_s=8 * n / med["acc_mt"] / 1e9),
        rec(f"prg ring64 fused acc {label} ({_simd.path_name(best).upper()} path)", f"acc{best}",
            "same kernel, portable scalar path", "scalar", best),
    ]
    assert nb.simd_level() == best
    return records
