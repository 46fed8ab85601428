"""ChaCha20 PRG benchmarks: ours (C, fused) against OpenSSL through ``cryptography``."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from mpcai import _bindings as nb
from mpcai import prg

from ._common import median_time, record

P61 = np.uint64((1 << 61) - 1)


def run(reps: int = 9, quick: bool = False) -> list[dict]:
    n = 10_000 if quick else 1 << 20
    label = "1M" if n == 1 << 20 else f"{n}"
    seed = prg.new_seed()
    acc = np.zeros(n, dtype=np.uint64)
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

    facc = np.zeros(n, dtype=np.uint64)
    nb.simd_select(1)
    ours_acc = median_time(lambda: prg.ring_accumulate(acc, seed), reps)
    t_pipe = median_time(openssl_pipeline, reps)
    t_bare = median_time(openssl_bare, reps)
    ours_expand = median_time(lambda: prg.ring_vector(seed, n), reps)
    ours_facc = median_time(lambda: prg.field_accumulate(facc, seed), reps)
    t_fpipe = median_time(openssl_field_pipeline, reps)
    ours_acc_mt = median_time(lambda: prg.ring_accumulate(acc, seed, threads=2), reps)
    nb.simd_select(0)
    scalar_acc = median_time(lambda: prg.ring_accumulate(acc, seed), reps)
    nb.simd_select(1)
    gbs = 8 * n / ours_acc / 1e9
    return [
        record(f"prg ring64 fused acc {label}", ours_acc,
               "OpenSSL ChaCha20 update_into + numpy add", t_pipe, gb_per_s=gbs),
        record(f"prg ring64 fused acc {label}", ours_acc,
               "OpenSSL ChaCha20 keystream only (no add)", t_bare),
        record(f"prg ring64 fused acc {label}, 2 threads", ours_acc_mt,
               "OpenSSL ChaCha20 update_into + numpy add", t_pipe,
               gb_per_s=8 * n / ours_acc_mt / 1e9),
        record(f"prg ring64 expand {label}", ours_expand,
               "OpenSSL ChaCha20 keystream only", t_bare),
        record(f"prg fieldp fused acc {label}", ours_facc,
               "OpenSSL keystream + numpy mask/add mod p", t_fpipe),
        record(f"prg ring64 fused acc {label} (AVX2 path)", ours_acc,
               "same kernel, portable scalar path", scalar_acc),
    ]
