"""Paillier benchmarks: mpcai.he.paillier against python-paillier (``phe``).

Both libraries use the same modulus (phe's key objects are built from our
p and q) and run interleaved in the same process: each repetition times
ours, then phe, and the medians are compared.  Per-value times are batch
times divided by the batch size.  For the 100,000-value packed vector,
phe encrypts/decrypts a sample (``phe_sample`` values, one
``EncryptedNumber`` each) interleaved with ours, and the comparison is
per value; the baseline name says so.  Sizes: ours is the compact binary
form (per value for packed vectors), phe's the JSON ``{"v": ..., "e": ...}``
its CLI writes per value.  Multi-core records (``workers=0``) include pool
start-up and are noisy on a shared machine.

Side-channel cost (issue 8.6), measured in the same run: decryption with
``powmod_sec`` against the previous variable-time CRT decryption
(``gmpy2.powmod`` and ``mpz`` division by p, q), reproduced here; private-key
encryption (now the public key's) against the previous CRT fixed-base
tables modulo p^2, q^2; and the CRT exponentiation ``h_s^a`` modulo p^2, q^2
with ``powmod_sec`` against plain ``powmod`` (the constant-time CRT
encryption one could have had).  ``ratio < 1`` there is the price paid.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import gmpy2
import numpy as np
import phe

from mpcai.he import paillier as P
from mpcai.he.paillier._math import FixedBase, random_unit

from ._common import record


def _interleaved(fns: list[Callable[[], Any]], reps: int) -> list[float]:
    """Median time of each function; one warm-up round, then ``reps`` interleaved rounds."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, reps)):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in times]


def _phe_json_bytes(enc: phe.EncryptedNumber) -> int:
    return len(json.dumps({"v": str(enc.ciphertext()), "e": enc.exponent}))


def _vartime_decrypt(sk: P.PrivateKey, c: Any) -> Any:
    """The previous CRT decryption: variable-time powmod and division by p, q."""
    p, q, psq, qsq = sk.p, sk.q, sk.psquare, sk.qsquare
    mp = (gmpy2.powmod(c % psq, p - 1, psq) - 1) // p * sk.hp % p
    mq = (gmpy2.powmod(c % qsq, q - 1, qsq) - 1) // q * sk.hq % q
    return mp + p * ((mq - mp) * sk.p_inv % q)


def _crt_encrypt(sk: P.PrivateKey, residue: Any, pow_p: Callable[[int], Any],
                 pow_q: Callable[[int], Any], bits: int) -> Any:
    """CRT encryption ``(1 + m n) h_s^a`` modulo p^2 and q^2, ``h_s^a`` by ``pow_p``/``pow_q``,
    joined by the previous (plain ``mpz``) Garner step."""
    a = secrets.randbits(bits)
    psq, qsq = sk.psquare, sk.qsquare
    nude = 1 + residue * sk.public_key.n
    cp = nude % psq * pow_p(a) % psq
    cq = nude % qsq * pow_q(a) % qsq
    return cp + psq * ((cq - cp) * sk.p2_inv % qsq)


def _bench_key(bits: int, reps: int, batch: int, out: list[dict]) -> tuple[Any, ...]:
    t0 = time.perf_counter()
    pub, sk = P.generate_keypair(bits)
    keygen_s = time.perf_counter() - t0
    ppub = phe.PaillierPublicKey(int(pub.n))
    psk = phe.PaillierPrivateKey(ppub, int(sk.p), int(sk.q))
    t0 = time.perf_counter()
    pub._fixed_base()
    table_s = time.perf_counter() - t0
    rng = np.random.default_rng(bits)
    vals = [float(v) for v in rng.uniform(-1000, 1000, batch)]

    def ours(mode: str) -> Callable[[], Any]:
        return lambda: [pub.encrypt(v, randomness=mode) for v in vals]  # type: ignore[arg-type]

    def ours_sk() -> None:
        for v in vals:
            sk.encrypt(v)

    def theirs() -> None:
        for v in vals:
            ppub.encrypt(v)

    # the previous CRT encryption (tables modulo p^2, q^2) and CRT with (sec) powmod
    L = pub.exponent_bits()
    hs_p, hs_q = pub.hs % sk.psquare, pub.hs % sk.qsquare
    tp, tq = FixedBase(hs_p, sk.psquare, L), FixedBase(hs_q, sk.qsquare, L)
    residues = [pub._encode(round(v * 2**16)) for v in vals]

    def crt(pow_p: Callable[[int], Any], pow_q: Callable[[int], Any]) -> Callable[[], Any]:
        return lambda: [_crt_encrypt(sk, m, pow_p, pow_q, L) for m in residues]

    for c in crt(tp.pow, tq.pow)()[:3]:
        assert sk.decrypt_raw(c) in residues
    for c in crt(lambda a: gmpy2.powmod_sec(hs_p, a, sk.psquare),
                 lambda a: gmpy2.powmod_sec(hs_q, a, sk.qsquare))()[:3]:
        assert sk.decrypt_raw(c) in residues

    t_cons, t_phe, t_short, t_sk, t_crt_tab = _interleaved(
        [ours("conservative"), theirs, ours("short"), ours_sk, crt(tp.pow, tq.pow)], reps)
    t_crt_sec, t_crt_var = _interleaved(
        [crt(lambda a: gmpy2.powmod_sec(hs_p, a, sk.psquare),
             lambda a: gmpy2.powmod_sec(hs_q, a, sk.qsquare)),
         crt(lambda a: gmpy2.powmod(hs_p, a, sk.psquare),
             lambda a: gmpy2.powmod(hs_q, a, sk.qsquare))], max(1, reps // 2))
    our_bytes = len(pub.encrypt(1.5).serialize())
    phe_bytes = _phe_json_bytes(ppub.encrypt(1.5))
    sizes = {"ours_ct_bytes": our_bytes, "phe_ct_bytes": phe_bytes}
    label = f"paillier encrypt {bits}"
    out.append(record(f"{label} (DJN, conservative {pub.exponent_bits()}-bit exponent)",
                      t_cons / batch, "phe encrypt", t_phe / batch,
                      values_per_s=batch / t_cons, table_build_s=table_s,
                      keygen_s=keygen_s, **sizes))
    out.append(record(f"{label} (DJN, short 2k={pub.exponent_bits('short')}-bit exponent; "
                      "stronger assumption)", t_short / batch, "phe encrypt", t_phe / batch,
                      values_per_s=batch / t_short, **sizes))
    out.append(record(f"{label} (private key = its public key's, conservative exponent)",
                      t_sk / batch, "phe encrypt", t_phe / batch, values_per_s=batch / t_sk,
                      **sizes))
    out.append(record(f"{label} (private key = its public key's)", t_sk / batch,
                      "previous CRT: fixed-base tables mod p^2, q^2 (variable time in p, q)",
                      t_crt_tab / batch))
    out.append(record(f"{label} CRT h_s^a mod p^2, q^2 with powmod_sec (not used)",
                      t_crt_sec / batch, "same with variable-time gmpy2.powmod",
                      t_crt_var / batch, vs_public_key_path=t_sk / t_crt_sec))

    # a key without h_s (imported from phe): r^n mod n^2 with a secret base r
    nohs = P.PublicKey(int(pub.n))
    few = vals[:max(5, batch // 10)]
    rs = [random_unit(pub.n) for _ in few]
    t_nohs, t_phe_few, t_rn_var = _interleaved(
        [lambda: [nohs.encrypt(v) for v in few], lambda: [ppub.encrypt(v) for v in few],
         lambda: [gmpy2.powmod(r, pub.n, pub.nsquare) for r in rs]], max(1, reps // 2))
    t_rn_sec = _interleaved([lambda: [gmpy2.powmod_sec(r, pub.n, pub.nsquare) for r in rs]],
                            max(1, reps // 2))[0]
    out.append(record(f"{label} (key without h_s: r^n with powmod_sec)", t_nohs / len(few),
                      "phe encrypt", t_phe_few / len(few), values_per_s=len(few) / t_nohs,
                      powmod_sec_over_powmod_r_n=t_rn_sec / t_rn_var))

    cts = [pub.encrypt(v) for v in vals]
    pcts = [ppub.encrypt(v) for v in vals]
    raw = [c._c for c in cts]
    assert [_vartime_decrypt(sk, c) for c in raw] == [sk.decrypt_raw(c) for c in raw]
    t_dec, t_pdec, t_dec_var = _interleaved([lambda: [sk.decrypt(c) for c in cts],
                                             lambda: [psk.decrypt(c) for c in pcts],
                                             lambda: [_vartime_decrypt(sk, c) for c in raw]],
                                            reps)
    out.append(record(f"paillier decrypt {bits} (CRT, powmod_sec)", t_dec / batch,
                      "phe decrypt", t_pdec / batch, values_per_s=batch / t_dec, **sizes))
    out.append(record(f"paillier decrypt {bits} (CRT, powmod_sec)", t_dec / batch,
                      "previous CRT decrypt: variable-time powmod, mpz division by p, q",
                      t_dec_var / batch))
    return pub, sk, ppub, psk, t_phe / batch, t_pdec / batch, phe_bytes, batch


def _bench_packed(keys: tuple[Any, ...], size: int, reps: int, out: list[dict],
                  extras: bool = False) -> None:
    """Packed vector vs phe per value; phe runs on a sample, interleaved with ours."""
    pub, sk, ppub, psk, _, _, phe_bytes, sample = keys
    spec = P.PackingSpec(int_bits=8, frac_bits=16, max_summands=100)
    x = np.random.default_rng(7).uniform(-100, 100, size)
    sample_vals = [float(v) for v in x[:sample]]
    sample_cts = [ppub.encrypt(v) for v in sample_vals]
    label = f"{size:,}" if size < 100_000 else "100k"
    head = f"paillier packed {{}} {label} values {pub.n_bits}-bit key, K=100"
    layout = f"{spec.slot_bits}-bit slots x {spec.slot_count(pub)}"
    base_enc = f"phe encrypt, one EncryptedNumber per value (sample of {sample})"
    base_dec = f"phe decrypt, one EncryptedNumber per value (sample of {sample})"
    r = max(1, reps // 2)

    def phe_enc() -> None:
        for v in sample_vals:
            ppub.encrypt(v)

    def phe_dec() -> None:
        for c in sample_cts:
            psk.decrypt(c)

    def packed_case(what: str, fn: Callable[[], P.PackedCiphertext], **extra: Any) -> None:
        t_ours, t_phe = _interleaved([fn, phe_enc], r)
        out.append(record(f"{head.format('encrypt')} ({what}; per value)", t_ours / size,
                          base_enc, t_phe / sample, values_per_s=size / t_ours,
                          phe_sample=sample, phe_ct_bytes=phe_bytes, **extra))

    packed = P.encrypt_packed(pub, x, spec)
    per_value_bytes = len(packed.serialize()) / size
    sizes = {"ours_ct_bytes": per_value_bytes, "ciphertexts": packed.ciphertext_count}
    packed_case(f"public key, {layout}", lambda: P.encrypt_packed(pub, x, spec), **sizes)
    packed_case(f"private key = its public key's, {layout}",
                lambda: P.encrypt_packed(sk, x, spec), **sizes)
    packed_case("public key, short 2k-bit exponent; stronger assumption",
                lambda: P.encrypt_packed(pub, x, spec, randomness="short"), **sizes)
    if extras:
        pub.precompute(window_bits=10)
        packed_case("public key, 10-bit window: 57 MB table",
                    lambda: P.encrypt_packed(pub, x, spec), **sizes)
        pub.precompute(window_bits=8)
        cores = os.cpu_count() or 1
        packed_case(f"public key, workers=0: {cores} processes incl. start-up",
                    lambda: P.encrypt_packed(pub, x, spec, workers=0), **sizes)
    total = packed
    for _ in range(spec.max_summands - 1):
        total = total + packed
    expected = 100 * np.rint(x * 2.0**16) / 2.0**16
    assert np.array_equal(P.decrypt_packed(sk, total), expected)
    t_dec, t_pdec = _interleaved([lambda: P.decrypt_packed(sk, total), phe_dec], r)
    out.append(record(f"{head.format('decrypt')} (sum of 100 vectors; per value)",
                      t_dec / size, base_dec, t_pdec / sample, values_per_s=size / t_dec,
                      phe_sample=sample))
    if extras:
        cores = os.cpu_count() or 1
        t_dec, t_pdec = _interleaved([lambda: P.decrypt_packed(sk, total, workers=0),
                                      phe_dec], r)
        out.append(record(f"{head.format('decrypt')} (workers=0: {cores} threads; per value)",
                          t_dec / size, base_dec, t_pdec / sample, values_per_s=size / t_dec,
                          phe_sample=sample))


def run(reps: int = 5, quick: bool = False) -> list[dict]:
    out: list[dict] = []
    if quick:
        keys = _bench_key(2048, min(reps, 3), 10, out)
        _bench_packed(keys, 5_000, min(reps, 3), out)
        return out
    keys2048 = _bench_key(2048, reps, 100, out)
    keys3072 = _bench_key(3072, reps, 50, out)
    _bench_packed(keys2048, 100_000, reps, out, extras=True)
    _bench_packed(keys3072, 100_000, reps, out)
    return out
