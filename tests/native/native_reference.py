"""Pure-Python references for the C kernels (slow, obviously correct)."""

from __future__ import annotations

import struct

import numpy as np

P61 = (1 << 61) - 1
_M32 = 0xFFFFFFFF


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & _M32


def _qr(x: list[int], a: int, b: int, c: int, d: int) -> None:
    x[a] = (x[a] + x[b]) & _M32
    x[d] = _rotl(x[d] ^ x[a], 16)
    x[c] = (x[c] + x[d]) & _M32
    x[b] = _rotl(x[b] ^ x[c], 12)
    x[a] = (x[a] + x[b]) & _M32
    x[d] = _rotl(x[d] ^ x[a], 8)
    x[c] = (x[c] + x[d]) & _M32
    x[b] = _rotl(x[b] ^ x[c], 7)


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3, written from the RFC."""
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += list(struct.unpack("<8I", key))
    state += [counter & _M32]
    state += list(struct.unpack("<3I", nonce))
    x = list(state)
    for _ in range(10):
        _qr(x, 0, 4, 8, 12)
        _qr(x, 1, 5, 9, 13)
        _qr(x, 2, 6, 10, 14)
        _qr(x, 3, 7, 11, 15)
        _qr(x, 0, 5, 10, 15)
        _qr(x, 1, 6, 11, 12)
        _qr(x, 2, 7, 8, 13)
        _qr(x, 3, 4, 9, 14)
    return struct.pack("<16I", *[(a + b) & _M32 for a, b in zip(x, state, strict=True)])


def chacha20_keystream(key: bytes, nonce: bytes, counter: int, length: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        out += chacha20_block(key, counter, nonce)
        counter += 1
    return bytes(out[:length])


def prg_words(seed: bytes, n_words: int) -> list[int]:
    stream = chacha20_keystream(seed, bytes(12), 0, 8 * n_words)
    return list(struct.unpack(f"<{n_words}Q", stream))


def prg_ring64(seed: bytes, n: int) -> np.ndarray:
    return np.array(prg_words(seed, n), dtype=np.uint64)


def prg_fieldp_from_words(words: list[int], n: int) -> list[int]:
    out: list[int] = []
    for w in words:
        if len(out) == n:
            break
        v = w & P61
        if v != P61:
            out.append(v)
    return out


def prg_fieldp(seed: bytes, n: int) -> np.ndarray:
    out = prg_fieldp_from_words(prg_words(seed, n + 8), n)
    return np.array(out, dtype=np.uint64)


# ---- distributed comparison functions (csrc/fss.c) ------------------------
# Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee, "Function Secret Sharing
# for Mixed-Mode and Fixed-Point Secure Computation", EUROCRYPT 2021, Fig. 3,
# written from the paper with mpcai's PRG: G(s) = ChaCha20 block 0 of key s || 0^16,
# split as s_L | s_R | v_L | v_R (16 bytes each), t = lowest bit of s (then cleared);
# the final Convert(s) reads block 1 of the same key.  f(x) = beta if x < alpha else 0.

_M64 = (1 << 64) - 1


def _dcf_g(seed: bytes) -> tuple[bytes, int, bytes, int, list[int], list[int]]:
    blk = chacha20_block(seed + bytes(16), 0, bytes(12))
    sl, sr = bytearray(blk[0:16]), bytearray(blk[16:32])
    tl, tr = sl[0] & 1, sr[0] & 1
    sl[0] &= 0xFE
    sr[0] &= 0xFE
    vl = list(struct.unpack("<2Q", blk[32:48]))
    vr = list(struct.unpack("<2Q", blk[48:64]))
    return bytes(sl), tl, bytes(sr), tr, vl, vr


def _dcf_convert_final(seed: bytes) -> list[int]:
    return list(struct.unpack("<2Q", chacha20_block(seed + bytes(16), 1, bytes(12))[:16]))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def dcf_key_bytes(n_bits: int, width: int) -> int:
    """Correction words per key: n x (s_CW 16 B | V_CW 8w B), CW^(n+1) 8w B, t bits."""
    return n_bits * (16 + 8 * width) + 8 * width + (2 * n_bits + 7) // 8


def dcf_gen(n_bits: int, alpha: int, beta: list[int], s0: bytes, s1: bytes) -> bytes:
    """The correction words (common to both keys) for one DCF; keys are (s_b, cw)."""
    w = len(beta)
    sgn = [1, _M64]  # (-1)^t as a ring element
    seeds = [s0, s1]
    ts = [0, 1]
    va = [0] * w
    body = bytearray()
    tbits = [0] * ((2 * n_bits + 7) // 8)
    for i in range(n_bits):
        a = (alpha >> (n_bits - 1 - i)) & 1
        g = [_dcf_g(seeds[0]), _dcf_g(seeds[1])]
        keep, lose = (2, 0) if a else (0, 2)  # offsets into (sL, tL, sR, tR)
        s_cw = _xor(g[0][lose], g[1][lose])
        vkeep = [g[b][4 + keep // 2] for b in range(2)]
        vlose = [g[b][5 - keep // 2] for b in range(2)]
        sg = sgn[ts[1]]
        v_cw = [(sg * (vlose[1][j] - vlose[0][j] - va[j])) & _M64 for j in range(w)]
        if a:  # lose = L: every x going left here is below alpha
            v_cw = [(v_cw[j] + sg * beta[j]) & _M64 for j in range(w)]
        va = [(va[j] - vkeep[1][j] + vkeep[0][j] + sg * v_cw[j]) & _M64 for j in range(w)]
        t_cw_l = g[0][1] ^ g[1][1] ^ a ^ 1
        t_cw_r = g[0][3] ^ g[1][3] ^ a
        body += s_cw + struct.pack(f"<{w}Q", *v_cw)
        tbits[(2 * i) // 8] |= t_cw_l << ((2 * i) % 8)
        tbits[(2 * i + 1) // 8] |= t_cw_r << ((2 * i + 1) % 8)
        t_keep_cw = t_cw_r if a else t_cw_l
        for b in range(2):
            s_keep, t_keep = g[b][keep], g[b][keep + 1]
            seeds[b] = _xor(s_keep, s_cw) if ts[b] else s_keep
            ts[b] = t_keep ^ (ts[b] & t_keep_cw)
    c0, c1 = _dcf_convert_final(seeds[0]), _dcf_convert_final(seeds[1])
    sg = sgn[ts[1]]
    final = [(sg * (c1[j] - c0[j] - va[j])) & _M64 for j in range(w)]
    return bytes(body) + struct.pack(f"<{w}Q", *final) + bytes(tbits)


def dcf_eval(party: int, n_bits: int, width: int, seed: bytes, cw: bytes, x: int) -> list[int]:
    """Party ``party``'s share of f(x): the two shares add up to beta * [x < alpha]."""
    w = width
    sg = 1 if party == 0 else _M64
    step = 16 + 8 * w
    tb = cw[n_bits * step + 8 * w :]
    s, t = seed, party
    v = [0] * w
    for i in range(n_bits):
        s_cw = cw[i * step : i * step + 16]
        v_cw = struct.unpack(f"<{w}Q", cw[i * step + 16 : (i + 1) * step])
        t_cw_l = (tb[(2 * i) // 8] >> ((2 * i) % 8)) & 1
        t_cw_r = (tb[(2 * i + 1) // 8] >> ((2 * i + 1) % 8)) & 1
        sl, tl, sr, tr, vl, vr = _dcf_g(s)
        if t:
            sl, sr = _xor(sl, s_cw), _xor(sr, s_cw)
            tl, tr = tl ^ t_cw_l, tr ^ t_cw_r
        bit = (x >> (n_bits - 1 - i)) & 1
        vv = vr if bit else vl
        v = [(v[j] + sg * (vv[j] + t * v_cw[j])) & _M64 for j in range(w)]
        s, t = (sr, tr) if bit else (sl, tl)
    final = struct.unpack(f"<{w}Q", cw[n_bits * step : n_bits * step + 8 * w])
    c = _dcf_convert_final(s)
    return [(v[j] + sg * (c[j] + t * final[j])) & _M64 for j in range(w)]


def ternary_matrix(seed: bytes, k: int, d: int) -> np.ndarray:
    """The k x d int64 matrix of ``mpcai_ternary_sketch`` (entries -1, 0, +1)."""
    blocks = (d + 255) // 256
    rows = []
    for i in range(k):
        nonce = struct.pack("<I", i) + bytes(8)
        ks = np.frombuffer(chacha20_keystream(seed, nonce, 0, 64 * blocks), dtype="<u8")
        w = ks.reshape(blocks, 8)
        bits = ((w[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)
        pos = bits[:, :4, :].reshape(blocks, 256)
        neg = bits[:, 4:, :].reshape(blocks, 256)
        rows.append((pos - neg).reshape(-1)[:d])
    return np.array(rows, dtype=np.int64).reshape(k, d)


def ternary_sketch(vec: np.ndarray, seed: bytes, k: int) -> np.ndarray:
    """R @ vec modulo 2^64 with Python integers (the reference of the C kernel)."""
    r = ternary_matrix(seed, k, vec.size)
    xs = [int(v) for v in vec]
    return np.array([sum(int(c) * v for c, v in zip(row, xs, strict=True)) % (1 << 64)
                     for row in r], dtype=np.uint64)
