/*
 * _chacha_core.h -- internal: the one ChaCha20 implementation of the native
 * core, included by chacha20.c (keystream, ring and field PRG kernels) and
 * fieldp.c (the coefficient stream of the fused Shamir kernel).  Not part
 * of the API (mpcai_native.h is): everything here is static inline, so each
 * including file compiles its own copy of this one source.
 *
 * Streams, as mpcai_native.h documents them: RFC 8439 ChaCha20 blocks
 * (16 words, block counter in word 12); the PRG of a 32-byte seed is the
 * keystream for key = seed, nonce = 0^12, counter from 0, read as
 * little-endian 64-bit words w_0, w_1, ... (8 per block).
 *
 * Unit of work: a group of CHACHA_GROUP_BLOCKS = 9 consecutive blocks
 * (72 words).  The AVX2 path computes blocks 0..7 of a group in vector
 * registers and block 8 on the scalar ALUs alongside: the vector rounds are
 * bound by the vector shift/shuffle ports while the integer ALUs sit idle,
 * so the ninth block costs almost nothing (+10% throughput on Zen 3).  The
 * scalar path computes the same 9 blocks one by one.  The AVX-512 path has
 * its own unit, CHACHA_Z_GROUP_BLOCKS = 17 blocks (136 words): 16 in zmm
 * registers (one state word per register across the 16 blocks, vprold
 * rotations, a 16 x 16 word transpose to stream order) and the 17th on the
 * scalar ALUs alongside (+2% on Zen 5).  Streams are cut into groups by
 * block counter, so the paths agree on every word whatever the unit.
 *
 * Field-element reader: the stream of mpcai_prg_fieldp -- candidate j is
 * w_j & (2^61 - 1), rejected iff it equals p, element i is the i-th
 * accepted candidate -- read in order from any starting candidate, a group
 * at a time.  It counts the candidates it rejected, which is what the
 * multi-threaded Shamir kernel needs to check its guess of where each
 * thread's portion starts.
 */
#ifndef MPCAI_CHACHA_CORE_H
#define MPCAI_CHACHA_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mpcai_native.h"
#include "_dispatch.h"

#define CHACHA_GROUP_BLOCKS 9
#define CHACHA_GROUP_WORDS (8 * CHACHA_GROUP_BLOCKS)

#define CHACHA_ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define CHACHA_QR(a, b, c, d)                                             \
    do {                                                                  \
        a += b; d ^= a; d = CHACHA_ROTL32(d, 16);                         \
        c += d; b ^= c; b = CHACHA_ROTL32(b, 12);                         \
        a += b; d ^= a; d = CHACHA_ROTL32(d, 8);                          \
        c += d; b ^= c; b = CHACHA_ROTL32(b, 7);                          \
    } while (0)

static inline uint32_t chacha_load32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Initial state for a 32-byte key and 12-byte nonce (counter word 0). */
static inline void chacha_init(uint32_t st[16], const uint8_t key[32], const uint8_t nonce[12])
{
    st[0] = 0x61707865u;
    st[1] = 0x3320646eu;
    st[2] = 0x79622d32u;
    st[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) st[4 + i] = chacha_load32_le(key + 4 * i);
    st[12] = 0;
    for (int i = 0; i < 3; i++) st[13 + i] = chacha_load32_le(nonce + 4 * i);
}

/* One 64-byte block as 16 words (host order) for block counter ctr. */
static inline void chacha_block(const uint32_t st[16], uint32_t ctr, uint32_t out[16])
{
    uint32_t x[16];
    memcpy(x, st, sizeof x);
    x[12] = ctr;
    for (int i = 0; i < 10; i++) {
        CHACHA_QR(x[0], x[4], x[8], x[12]);
        CHACHA_QR(x[1], x[5], x[9], x[13]);
        CHACHA_QR(x[2], x[6], x[10], x[14]);
        CHACHA_QR(x[3], x[7], x[11], x[15]);
        CHACHA_QR(x[0], x[5], x[10], x[15]);
        CHACHA_QR(x[1], x[6], x[11], x[12]);
        CHACHA_QR(x[2], x[7], x[8], x[13]);
        CHACHA_QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + st[i];
    out[12] = x[12] + ctr;
}

/* ---- AVX2: 8 blocks in vector registers + 1 on the scalar ALUs --------- */
#if MPCAI_HAVE_AVX2
#define CHACHA_AVX2_INLINE __attribute__((target("avx2"))) static inline

#define CHACHA_VROT16(v) _mm256_shuffle_epi8(v, rot16)
#define CHACHA_VROT8(v) _mm256_shuffle_epi8(v, rot8)
#define CHACHA_VROTL(v, n) \
    _mm256_or_si256(_mm256_slli_epi32(v, n), _mm256_srli_epi32(v, 32 - (n)))
#define CHACHA_VQR(a, b, c, d)                                                          \
    do {                                                                                \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a); d = CHACHA_VROT16(d);   \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = CHACHA_VROTL(b, 12);\
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a); d = CHACHA_VROT8(d);    \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = CHACHA_VROTL(b, 7); \
    } while (0)

/* Transpose 8 vectors (vector i = word i of blocks 0..7) into 8 vectors
 * (vector b = words 0..7 of block b). */
#define CHACHA_TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7)          \
    do {                                                           \
        __m256i t0 = _mm256_unpacklo_epi32(x0, x1);                \
        __m256i t1 = _mm256_unpackhi_epi32(x0, x1);                \
        __m256i t2 = _mm256_unpacklo_epi32(x2, x3);                \
        __m256i t3 = _mm256_unpackhi_epi32(x2, x3);                \
        __m256i t4 = _mm256_unpacklo_epi32(x4, x5);                \
        __m256i t5 = _mm256_unpackhi_epi32(x4, x5);                \
        __m256i t6 = _mm256_unpacklo_epi32(x6, x7);                \
        __m256i t7 = _mm256_unpackhi_epi32(x6, x7);                \
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2);                \
        __m256i u1 = _mm256_unpackhi_epi64(t0, t2);                \
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3);                \
        __m256i u3 = _mm256_unpackhi_epi64(t1, t3);                \
        __m256i u4 = _mm256_unpacklo_epi64(t4, t6);                \
        __m256i u5 = _mm256_unpackhi_epi64(t4, t6);                \
        __m256i u6 = _mm256_unpacklo_epi64(t5, t7);                \
        __m256i u7 = _mm256_unpackhi_epi64(t5, t7);                \
        x0 = _mm256_permute2x128_si256(u0, u4, 0x20);              \
        x4 = _mm256_permute2x128_si256(u0, u4, 0x31);              \
        x1 = _mm256_permute2x128_si256(u1, u5, 0x20);              \
        x5 = _mm256_permute2x128_si256(u1, u5, 0x31);              \
        x2 = _mm256_permute2x128_si256(u2, u6, 0x20);              \
        x6 = _mm256_permute2x128_si256(u2, u6, 0x31);              \
        x3 = _mm256_permute2x128_si256(u3, u7, 0x20);              \
        x7 = _mm256_permute2x128_si256(u3, u7, 0x31);              \
    } while (0)

/* Blocks ctr..ctr+8 of one group: blocks ctr..ctr+7 in AVX2 registers, where
 * o[2b] holds bytes 0..31 of block b and o[2b+1] bytes 32..63 (little-endian
 * words, as in the byte stream), and block ctr+8 on the scalar ALUs into
 * w8[0..7] as 64-bit words.  The caller keeps ctr + 8 <= 2^32 - 1. */
CHACHA_AVX2_INLINE void chacha9_avx2(const uint32_t st[16], uint32_t ctr, __m256i o[16],
                                     uint64_t w8[8])
{
    const __m256i rot16 = _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                                          13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i rot8 = _mm256_set_epi8(14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3,
                                         14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3);
    const __m256i ctrv = _mm256_add_epi32(_mm256_set1_epi32((int)ctr),
                                          _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
    __m256i x0 = _mm256_set1_epi32((int)st[0]), x1 = _mm256_set1_epi32((int)st[1]);
    __m256i x2 = _mm256_set1_epi32((int)st[2]), x3 = _mm256_set1_epi32((int)st[3]);
    __m256i x4 = _mm256_set1_epi32((int)st[4]), x5 = _mm256_set1_epi32((int)st[5]);
    __m256i x6 = _mm256_set1_epi32((int)st[6]), x7 = _mm256_set1_epi32((int)st[7]);
    __m256i x8 = _mm256_set1_epi32((int)st[8]), x9 = _mm256_set1_epi32((int)st[9]);
    __m256i x10 = _mm256_set1_epi32((int)st[10]), x11 = _mm256_set1_epi32((int)st[11]);
    __m256i x12 = ctrv, x13 = _mm256_set1_epi32((int)st[13]);
    __m256i x14 = _mm256_set1_epi32((int)st[14]), x15 = _mm256_set1_epi32((int)st[15]);
    uint32_t s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3], s4 = st[4], s5 = st[5];
    uint32_t s6 = st[6], s7 = st[7], s8 = st[8], s9 = st[9], s10 = st[10], s11 = st[11];
    uint32_t s12 = ctr + 8, s13 = st[13], s14 = st[14], s15 = st[15];
    for (int i = 0; i < 10; i++) {
        CHACHA_QR(s0, s4, s8, s12);
        CHACHA_QR(s1, s5, s9, s13);
        CHACHA_QR(s2, s6, s10, s14);
        CHACHA_QR(s3, s7, s11, s15);
        CHACHA_QR(s0, s5, s10, s15);
        CHACHA_QR(s1, s6, s11, s12);
        CHACHA_QR(s2, s7, s8, s13);
        CHACHA_QR(s3, s4, s9, s14);
        CHACHA_VQR(x0, x4, x8, x12);
        CHACHA_VQR(x1, x5, x9, x13);
        CHACHA_VQR(x2, x6, x10, x14);
        CHACHA_VQR(x3, x7, x11, x15);
        CHACHA_VQR(x0, x5, x10, x15);
        CHACHA_VQR(x1, x6, x11, x12);
        CHACHA_VQR(x2, x7, x8, x13);
        CHACHA_VQR(x3, x4, x9, x14);
    }
    x0 = _mm256_add_epi32(x0, _mm256_set1_epi32((int)st[0]));
    x1 = _mm256_add_epi32(x1, _mm256_set1_epi32((int)st[1]));
    x2 = _mm256_add_epi32(x2, _mm256_set1_epi32((int)st[2]));
    x3 = _mm256_add_epi32(x3, _mm256_set1_epi32((int)st[3]));
    x4 = _mm256_add_epi32(x4, _mm256_set1_epi32((int)st[4]));
    x5 = _mm256_add_epi32(x5, _mm256_set1_epi32((int)st[5]));
    x6 = _mm256_add_epi32(x6, _mm256_set1_epi32((int)st[6]));
    x7 = _mm256_add_epi32(x7, _mm256_set1_epi32((int)st[7]));
    x8 = _mm256_add_epi32(x8, _mm256_set1_epi32((int)st[8]));
    x9 = _mm256_add_epi32(x9, _mm256_set1_epi32((int)st[9]));
    x10 = _mm256_add_epi32(x10, _mm256_set1_epi32((int)st[10]));
    x11 = _mm256_add_epi32(x11, _mm256_set1_epi32((int)st[11]));
    x12 = _mm256_add_epi32(x12, ctrv);
    x13 = _mm256_add_epi32(x13, _mm256_set1_epi32((int)st[13]));
    x14 = _mm256_add_epi32(x14, _mm256_set1_epi32((int)st[14]));
    x15 = _mm256_add_epi32(x15, _mm256_set1_epi32((int)st[15]));
#define CHACHA_W8(k, a, b) \
    w8[k] = (uint64_t)(a + st[2 * k]) | ((uint64_t)(b + st[2 * k + 1]) << 32)
    CHACHA_W8(0, s0, s1); CHACHA_W8(1, s2, s3); CHACHA_W8(2, s4, s5); CHACHA_W8(3, s6, s7);
    CHACHA_W8(4, s8, s9); CHACHA_W8(5, s10, s11);
    w8[6] = (uint64_t)(s12 + ctr + 8) | ((uint64_t)(s13 + st[13]) << 32);
    CHACHA_W8(7, s14, s15);
#undef CHACHA_W8
    CHACHA_TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7);
    CHACHA_TRANSPOSE8(x8, x9, x10, x11, x12, x13, x14, x15);
    o[0] = x0; o[1] = x8; o[2] = x1; o[3] = x9;
    o[4] = x2; o[5] = x10; o[6] = x3; o[7] = x11;
    o[8] = x4; o[9] = x12; o[10] = x5; o[11] = x13;
    o[12] = x6; o[13] = x14; o[14] = x7; o[15] = x15;
}

#endif /* MPCAI_HAVE_AVX2 (reopened below: the forcing is used by every path) */

/* ---- tests only: forced rejections ------------------------------------- */

/* The test hooks of mpcai_native.h make the rejection path (probability
 * 2^-61 per word) reachable: the raw 64-bit words at the stream indices
 * force[0..n_force) that fall in [base, base + n) become 2^64 - 1, whose
 * candidate (word & p) is p.  The candidate-group functions below apply
 * this to the generator's raw words before their own comparison with p, so
 * a forced word is detected by the same code as a real one, on every SIMD
 * path.  Each path's body is instantiated twice: with force = NULL (the
 * real path; the forcing folds away, the code is the one without it) and
 * with the test hook's list (chacha_fp_reader_fill picks it when r->force
 * is set). */
static inline void chacha_force_words(uint64_t *raw, uint64_t base, size_t n,
                                      const uint64_t *force, size_t n_force)
{
    for (size_t k = 0; k < n_force; k++) {
        uint64_t j = force[k] - base; /* wraps to a huge value below base */
        if (j < n) raw[j] = UINT64_MAX;
    }
}

#if MPCAI_HAVE_AVX2

/* The 72 field candidates (word & (2^61 - 1)) of the group at ctr, in
 * stream order; nonzero iff one of them equals p (must be rejected).
 * force/n_force: see chacha_force_words. */
__attribute__((target("avx2"), always_inline)) static inline int
chacha_fp_cand_avx2_body(const uint32_t st[16], uint32_t ctr, uint64_t w[CHACHA_GROUP_WORDS],
                         const uint64_t *force, size_t n_force)
{
    const __m256i p = _mm256_set1_epi64x((long long)MPCAI_FIELD_P);
    __m256i o[16], bad = _mm256_setzero_si256();
    uint64_t w8[8], sbad = 0;
    chacha9_avx2(st, ctr, o, w8);
    if (force) {
        uint64_t raw[64];
        for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)(raw + 4 * i), o[i]);
        chacha_force_words(raw, 8 * (uint64_t)ctr, 64, force, n_force);
        chacha_force_words(w8, 8 * (uint64_t)ctr + 64, 8, force, n_force);
        for (int i = 0; i < 16; i++) o[i] = _mm256_loadu_si256((const __m256i *)(raw + 4 * i));
    }
    for (int i = 0; i < 16; i++) {
        __m256i v = _mm256_and_si256(o[i], p);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi64(v, p));
        _mm256_storeu_si256((__m256i *)(w + 4 * i), v);
    }
    for (int i = 0; i < 8; i++) {
        uint64_t v = w8[i] & MPCAI_FIELD_P;
        sbad |= (uint64_t)(v == MPCAI_FIELD_P);
        w[64 + i] = v;
    }
    return !_mm256_testz_si256(bad, bad) || sbad;
}

CHACHA_AVX2_INLINE int chacha_fp_cand_group_avx2(const uint32_t st[16], uint32_t ctr,
                                                 uint64_t w[CHACHA_GROUP_WORDS])
{
    return chacha_fp_cand_avx2_body(st, ctr, w, NULL, 0);
}

CHACHA_AVX2_INLINE int chacha_fp_cand_group_avx2_forced(const uint32_t st[16], uint32_t ctr,
                                                        uint64_t w[CHACHA_GROUP_WORDS],
                                                        const uint64_t *force, size_t n_force)
{
    return chacha_fp_cand_avx2_body(st, ctr, w, force, n_force);
}
#endif /* MPCAI_HAVE_AVX2 */

/* ---- AVX-512: 16 blocks in zmm registers + 1 on the scalar ALUs ------- */
#if MPCAI_HAVE_AVX512
#define CHACHA_AVX512_INLINE \
    __attribute__((target(MPCAI_AVX512_TARGET), always_inline)) static inline

/* The AVX-512 unit of work: 17 consecutive blocks (136 words), 16 in zmm
 * registers and the 17th on the scalar ALUs alongside (as on the AVX2 path:
 * the vector rounds leave the integer ALUs idle). */
#define CHACHA_Z_GROUP_BLOCKS 17
#define CHACHA_Z_GROUP_WORDS (8 * CHACHA_Z_GROUP_BLOCKS)

#define CHACHA_ZQR(a, b, c, d)                                                        \
    do {                                                                              \
        a = _mm512_add_epi32(a, b); d = _mm512_xor_si512(d, a); d = _mm512_rol_epi32(d, 16); \
        c = _mm512_add_epi32(c, d); b = _mm512_xor_si512(b, c); b = _mm512_rol_epi32(b, 12); \
        a = _mm512_add_epi32(a, b); d = _mm512_xor_si512(d, a); d = _mm512_rol_epi32(d, 8);  \
        c = _mm512_add_epi32(c, d); b = _mm512_xor_si512(b, c); b = _mm512_rol_epi32(b, 7);  \
    } while (0)

/* 4 x 4 transpose of 32-bit words inside each 128-bit lane: on entry
 * vector i holds word w0 + i of blocks 0..15; on exit lane L of vector r
 * holds words w0..w0+3 of block 4L + r. */
#define CHACHA_ZT4(x0, x1, x2, x3)                              \
    do {                                                        \
        __m512i t0 = _mm512_unpacklo_epi32(x0, x1);             \
        __m512i t1 = _mm512_unpackhi_epi32(x0, x1);             \
        __m512i t2 = _mm512_unpacklo_epi32(x2, x3);             \
        __m512i t3 = _mm512_unpackhi_epi32(x2, x3);             \
        x0 = _mm512_unpacklo_epi64(t0, t2);                     \
        x1 = _mm512_unpackhi_epi64(t0, t2);                     \
        x2 = _mm512_unpacklo_epi64(t1, t3);                     \
        x3 = _mm512_unpackhi_epi64(t1, t3);                     \
    } while (0)

/* Blocks ctr..ctr+16: blocks ctr..ctr+15 into o[0..15], o[b] = the 64 bytes
 * of block ctr + b (little-endian words, as in the byte stream), and block
 * ctr + 16, computed on the scalar ALUs, into w16[0..7] as 64-bit words.
 * The caller keeps ctr + 16 <= 2^32 - 1. */
CHACHA_AVX512_INLINE void chacha17_avx512(const uint32_t st[16], uint32_t ctr, __m512i o[16],
                                          uint64_t w16[8])
{
    const __m512i ctrv = _mm512_add_epi32(
        _mm512_set1_epi32((int)ctr),
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    __m512i x0 = _mm512_set1_epi32((int)st[0]), x1 = _mm512_set1_epi32((int)st[1]);
    __m512i x2 = _mm512_set1_epi32((int)st[2]), x3 = _mm512_set1_epi32((int)st[3]);
    __m512i x4 = _mm512_set1_epi32((int)st[4]), x5 = _mm512_set1_epi32((int)st[5]);
    __m512i x6 = _mm512_set1_epi32((int)st[6]), x7 = _mm512_set1_epi32((int)st[7]);
    __m512i x8 = _mm512_set1_epi32((int)st[8]), x9 = _mm512_set1_epi32((int)st[9]);
    __m512i x10 = _mm512_set1_epi32((int)st[10]), x11 = _mm512_set1_epi32((int)st[11]);
    __m512i x12 = ctrv, x13 = _mm512_set1_epi32((int)st[13]);
    __m512i x14 = _mm512_set1_epi32((int)st[14]), x15 = _mm512_set1_epi32((int)st[15]);
    uint32_t s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3], s4 = st[4], s5 = st[5];
    uint32_t s6 = st[6], s7 = st[7], s8 = st[8], s9 = st[9], s10 = st[10], s11 = st[11];
    uint32_t s12 = ctr + 16, s13 = st[13], s14 = st[14], s15 = st[15];
    for (int i = 0; i < 10; i++) {
        CHACHA_QR(s0, s4, s8, s12);
        CHACHA_QR(s1, s5, s9, s13);
        CHACHA_QR(s2, s6, s10, s14);
        CHACHA_QR(s3, s7, s11, s15);
        CHACHA_QR(s0, s5, s10, s15);
        CHACHA_QR(s1, s6, s11, s12);
        CHACHA_QR(s2, s7, s8, s13);
        CHACHA_QR(s3, s4, s9, s14);
        CHACHA_ZQR(x0, x4, x8, x12);
        CHACHA_ZQR(x1, x5, x9, x13);
        CHACHA_ZQR(x2, x6, x10, x14);
        CHACHA_ZQR(x3, x7, x11, x15);
        CHACHA_ZQR(x0, x5, x10, x15);
        CHACHA_ZQR(x1, x6, x11, x12);
        CHACHA_ZQR(x2, x7, x8, x13);
        CHACHA_ZQR(x3, x4, x9, x14);
    }
    x0 = _mm512_add_epi32(x0, _mm512_set1_epi32((int)st[0]));
    x1 = _mm512_add_epi32(x1, _mm512_set1_epi32((int)st[1]));
    x2 = _mm512_add_epi32(x2, _mm512_set1_epi32((int)st[2]));
    x3 = _mm512_add_epi32(x3, _mm512_set1_epi32((int)st[3]));
    x4 = _mm512_add_epi32(x4, _mm512_set1_epi32((int)st[4]));
    x5 = _mm512_add_epi32(x5, _mm512_set1_epi32((int)st[5]));
    x6 = _mm512_add_epi32(x6, _mm512_set1_epi32((int)st[6]));
    x7 = _mm512_add_epi32(x7, _mm512_set1_epi32((int)st[7]));
    x8 = _mm512_add_epi32(x8, _mm512_set1_epi32((int)st[8]));
    x9 = _mm512_add_epi32(x9, _mm512_set1_epi32((int)st[9]));
    x10 = _mm512_add_epi32(x10, _mm512_set1_epi32((int)st[10]));
    x11 = _mm512_add_epi32(x11, _mm512_set1_epi32((int)st[11]));
    x12 = _mm512_add_epi32(x12, ctrv);
    x13 = _mm512_add_epi32(x13, _mm512_set1_epi32((int)st[13]));
    x14 = _mm512_add_epi32(x14, _mm512_set1_epi32((int)st[14]));
    x15 = _mm512_add_epi32(x15, _mm512_set1_epi32((int)st[15]));
#define CHACHA_W16(k, a, b) \
    w16[k] = (uint64_t)(a + st[2 * k]) | ((uint64_t)(b + st[2 * k + 1]) << 32)
    CHACHA_W16(0, s0, s1); CHACHA_W16(1, s2, s3); CHACHA_W16(2, s4, s5); CHACHA_W16(3, s6, s7);
    CHACHA_W16(4, s8, s9); CHACHA_W16(5, s10, s11);
    w16[6] = (uint64_t)(s12 + ctr + 16) | ((uint64_t)(s13 + st[13]) << 32);
    CHACHA_W16(7, s14, s15);
#undef CHACHA_W16
    /* U[g][r]: lane L = words 4g..4g+3 of block 4L + r */
    CHACHA_ZT4(x0, x1, x2, x3);
    CHACHA_ZT4(x4, x5, x6, x7);
    CHACHA_ZT4(x8, x9, x10, x11);
    CHACHA_ZT4(x12, x13, x14, x15);
    /* per r, a 4 x 4 transpose of 128-bit lanes across g */
#define CHACHA_ZL4(r, u0, u1, u2, u3)                                  \
    do {                                                               \
        __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44);               \
        __m512i v1 = _mm512_shuffle_i32x4(u0, u1, 0xEE);               \
        __m512i v2 = _mm512_shuffle_i32x4(u2, u3, 0x44);               \
        __m512i v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);               \
        o[r] = _mm512_shuffle_i32x4(v0, v2, 0x88);                     \
        o[4 + r] = _mm512_shuffle_i32x4(v0, v2, 0xDD);                 \
        o[8 + r] = _mm512_shuffle_i32x4(v1, v3, 0x88);                 \
        o[12 + r] = _mm512_shuffle_i32x4(v1, v3, 0xDD);                \
    } while (0)
    CHACHA_ZL4(0, x0, x4, x8, x12);
    CHACHA_ZL4(1, x1, x5, x9, x13);
    CHACHA_ZL4(2, x2, x6, x10, x14);
    CHACHA_ZL4(3, x3, x7, x11, x15);
#undef CHACHA_ZL4
}

/* The 136 field candidates of the 17 blocks at ctr, in stream order;
 * nonzero iff one of them equals p (must be rejected).  force/n_force: see
 * chacha_force_words. */
CHACHA_AVX512_INLINE int chacha_fp_cand_avx512_body(const uint32_t st[16], uint32_t ctr,
                                                    uint64_t w[CHACHA_Z_GROUP_WORDS],
                                                    const uint64_t *force, size_t n_force)
{
    const __m512i p = _mm512_set1_epi64((long long)MPCAI_FIELD_P);
    __m512i o[16];
    __mmask8 bad = 0;
    uint64_t w16[8], sbad = 0;
    chacha17_avx512(st, ctr, o, w16);
    if (force) {
        uint64_t raw[128];
        for (int i = 0; i < 16; i++) _mm512_storeu_si512((void *)(raw + 8 * i), o[i]);
        chacha_force_words(raw, 8 * (uint64_t)ctr, 128, force, n_force);
        chacha_force_words(w16, 8 * (uint64_t)ctr + 128, 8, force, n_force);
        for (int i = 0; i < 16; i++) o[i] = _mm512_loadu_si512((const void *)(raw + 8 * i));
    }
    for (int i = 0; i < 16; i++) {
        __m512i v = _mm512_and_si512(o[i], p);
        bad |= _mm512_cmpeq_epi64_mask(v, p);
        _mm512_storeu_si512((void *)(w + 8 * i), v);
    }
    for (int i = 0; i < 8; i++) {
        uint64_t v = w16[i] & MPCAI_FIELD_P;
        sbad |= (uint64_t)(v == MPCAI_FIELD_P);
        w[128 + i] = v;
    }
    return bad != 0 || sbad;
}

#define CHACHA_AVX512_FN __attribute__((target(MPCAI_AVX512_TARGET))) static inline
CHACHA_AVX512_FN int chacha_fp_cand_group_avx512(const uint32_t st[16], uint32_t ctr,
                                                 uint64_t w[CHACHA_Z_GROUP_WORDS])
{
    return chacha_fp_cand_avx512_body(st, ctr, w, NULL, 0);
}

CHACHA_AVX512_FN int chacha_fp_cand_group_avx512_forced(const uint32_t st[16], uint32_t ctr,
                                                        uint64_t w[CHACHA_Z_GROUP_WORDS],
                                                        const uint64_t *force, size_t n_force)
{
    return chacha_fp_cand_avx512_body(st, ctr, w, force, n_force);
}
#undef CHACHA_AVX512_FN
#endif /* MPCAI_HAVE_AVX512 */

/* Scalar twin of chacha_fp_cand_avx2_body. */
static inline int
chacha_fp_cand_scalar_body(const uint32_t st[16], uint32_t ctr, uint64_t w[CHACHA_GROUP_WORDS],
                           const uint64_t *force, size_t n_force)
{
    uint32_t b[16];
    uint64_t raw[8], bad = 0;
    for (int k = 0; k < CHACHA_GROUP_BLOCKS; k++) {
        chacha_block(st, ctr + (uint32_t)k, b);
        for (int i = 0; i < 8; i++) raw[i] = (uint64_t)b[2 * i] | ((uint64_t)b[2 * i + 1] << 32);
        if (force)
            chacha_force_words(raw, 8 * ((uint64_t)ctr + (uint64_t)k), 8, force, n_force);
        for (int i = 0; i < 8; i++) {
            uint64_t v = raw[i] & MPCAI_FIELD_P;
            bad |= (uint64_t)(v == MPCAI_FIELD_P);
            w[8 * k + i] = v;
        }
    }
    return bad != 0;
}

static inline int chacha_fp_cand_group_scalar(const uint32_t st[16], uint32_t ctr,
                                              uint64_t w[CHACHA_GROUP_WORDS])
{
    return chacha_fp_cand_scalar_body(st, ctr, w, NULL, 0);
}

static inline int chacha_fp_cand_group_scalar_forced(const uint32_t st[16], uint32_t ctr,
                                                     uint64_t w[CHACHA_GROUP_WORDS],
                                                     const uint64_t *force, size_t n_force)
{
    return chacha_fp_cand_scalar_body(st, ctr, w, force, n_force);
}

/* ---- field-element reader ------------------------------------------------ */

/* Largest unit of work of any compiled-in path, in words. */
#if MPCAI_HAVE_AVX512
#define CHACHA_MAX_GROUP_WORDS CHACHA_Z_GROUP_WORDS
#else
#define CHACHA_MAX_GROUP_WORDS CHACHA_GROUP_WORDS
#endif

typedef struct {
    uint32_t st[16];
    uint64_t ctr;             /* first block of the next group (64-bit: never wraps) */
    int level;                /* SIMD level (_dispatch.h) */
    unsigned gblocks, gwords; /* blocks and candidates per group of this level */
    unsigned skip;            /* candidates to drop from the front of the next group */
    size_t pos, have;         /* unread candidates buf[pos..have) */
    int buf_bad;              /* some candidate in buf must be rejected */
    uint64_t rejected;        /* candidates rejected while reading so far */
    const uint64_t *force;    /* tests only: stream indices whose words are */
    size_t n_force;           /* forced to a rejected one (chacha_force_words) */
    uint64_t buf[CHACHA_MAX_GROUP_WORDS];
} chacha_fp_reader;

/* A reader of the field stream of a 32-byte seed positioned at candidate
 * index `first` (0 = the start of the stream), generating with the kernels
 * of SIMD level `level` (the stream is the same on every level). */
static inline void chacha_fp_reader_init(chacha_fp_reader *r, const uint8_t seed[32], int level,
                                         uint64_t first)
{
    static const uint8_t zero_nonce[12] = {0};
    chacha_init(r->st, seed, zero_nonce);
    r->ctr = first / 8;
    r->skip = (unsigned)(first % 8);
    r->level = level;
    r->gblocks = CHACHA_GROUP_BLOCKS;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) r->gblocks = CHACHA_Z_GROUP_BLOCKS;
#endif
    r->gwords = 8 * r->gblocks;
    r->pos = r->have = 0;
    r->buf_bad = 0;
    r->rejected = 0;
    r->force = NULL;
    r->n_force = 0;
}

/* chacha_fp_reader_fill for the test hooks (r->force set): out of line, so
 * that the real path's code stays as it is without the forcing. */
__attribute__((noinline, cold)) static int chacha_fp_reader_fill_forced(chacha_fp_reader *r,
                                                                        uint64_t *w)
{
    const uint32_t ctr = (uint32_t)r->ctr;
    r->ctr += r->gblocks;
#if MPCAI_HAVE_AVX512
    if (r->level >= MPCAI_LEVEL_AVX512)
        return chacha_fp_cand_group_avx512_forced(r->st, ctr, w, r->force, r->n_force);
#endif
#if MPCAI_HAVE_AVX2
    if (r->level >= MPCAI_LEVEL_AVX2)
        return chacha_fp_cand_group_avx2_forced(r->st, ctr, w, r->force, r->n_force);
#endif
    return chacha_fp_cand_group_scalar_forced(r->st, ctr, w, r->force, r->n_force);
}

/* Candidates of the next group (r->gwords of them) into w; nonzero iff one
 * must be rejected. */
static inline int chacha_fp_reader_fill(chacha_fp_reader *r, uint64_t *w)
{
    int bad;
    if (__builtin_expect(r->force != NULL, 0)) return chacha_fp_reader_fill_forced(r, w);
#if MPCAI_HAVE_AVX512
    if (r->level >= MPCAI_LEVEL_AVX512)
        bad = chacha_fp_cand_group_avx512(r->st, (uint32_t)r->ctr, w);
    else
#endif
#if MPCAI_HAVE_AVX2
    if (r->level >= MPCAI_LEVEL_AVX2)
        bad = chacha_fp_cand_group_avx2(r->st, (uint32_t)r->ctr, w);
    else
#endif
        bad = chacha_fp_cand_group_scalar(r->st, (uint32_t)r->ctr, w);
    r->ctr += r->gblocks;
    return bad;
}

/* The next m accepted elements into out.  Refuses (MPCAI_ERR_LENGTH) to
 * start a group that would run past block counter 2^32 - 1 -- never reached
 * by a legal request (2^32 blocks hold 2^35 candidates, requests are at
 * most 2^34), unless a third of them are rejected. */
static inline int chacha_fp_reader_read(chacha_fp_reader *r, uint64_t *out, size_t m)
{
    size_t i = 0;
    while (i < m) {
        if (r->pos < r->have) {
            if (!r->buf_bad) { /* the usual case: the rest of the group as it is */
                size_t take = r->have - r->pos < m - i ? r->have - r->pos : m - i;
                const uint64_t *src = r->buf + r->pos;
                uint64_t *dst = out + i;
                size_t k = 0; /* fixed-size chunks: inlined, no libc call */
                for (; k + 8 <= take; k += 8) memcpy(dst + k, src + k, 8 * sizeof *dst);
                for (; k < take; k++) dst[k] = src[k];
                r->pos += take;
                i += take;
                continue;
            }
            uint64_t v = r->buf[r->pos++]; /* rare: filter one by one */
            if (v != MPCAI_FIELD_P)
                out[i++] = v;
            else
                r->rejected++; /* reject: keeps the output uniform */
            continue;
        }
        if (r->ctr + (r->gblocks - 1) > (uint64_t)UINT32_MAX) return MPCAI_ERR_LENGTH;
        if (!r->skip && m - i >= r->gwords) {
            /* fast path: a whole group straight to out, if nothing is rejected */
            if (!chacha_fp_reader_fill(r, out + i)) {
                i += r->gwords;
                continue;
            }
            memcpy(r->buf, out + i, r->gwords * sizeof *r->buf);
            r->buf_bad = 1;
        } else {
            r->buf_bad = chacha_fp_reader_fill(r, r->buf);
        }
        r->pos = r->skip;
        r->skip = 0;
        r->have = r->gwords;
    }
    return MPCAI_OK;
}

/* ---- one ChaCha20 block for each of CHACHA_LANES different keys ---------
 * key[k][l] is word k (0..7) of lane l's 32-byte key; nonce 0, counter
 * ctr; out[k][l] is word k of lane l's block.  Lanes the caller does not
 * use hold whatever it left there and are ignored.  The three paths
 * compute the same function (used by fss.c's DCF and ot.c's hashing).   */
#define CHACHA_LANES 16
typedef void (*chacha_lanes_fn)(const uint32_t key[8][CHACHA_LANES], uint32_t ctr,
                                uint32_t out[16][CHACHA_LANES]);

static inline void chacha_lanes_scalar(const uint32_t key[8][CHACHA_LANES], uint32_t ctr,
                                       uint32_t out[16][CHACHA_LANES])
{
    for (int l = 0; l < CHACHA_LANES; l++) {
        uint32_t st[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u}, o[16];
        for (int k = 0; k < 8; k++) st[4 + k] = key[k][l];
        for (int k = 12; k < 16; k++) st[k] = 0;
        chacha_block(st, ctr, o);
        for (int k = 0; k < 16; k++) out[k][l] = o[k];
    }
}

#if MPCAI_HAVE_AVX2
__attribute__((target("avx2"))) static inline void
chacha_lanes_avx2(const uint32_t key[8][CHACHA_LANES], uint32_t ctr,
                  uint32_t out[16][CHACHA_LANES])
{
    const __m256i rot16 = _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                                          13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i rot8 = _mm256_set_epi8(14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3,
                                         14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3);
    for (int h = 0; h < CHACHA_LANES; h += 8) {
        __m256i in[16], x[16];
        in[0] = _mm256_set1_epi32(0x61707865);
        in[1] = _mm256_set1_epi32(0x3320646e);
        in[2] = _mm256_set1_epi32(0x79622d32);
        in[3] = _mm256_set1_epi32(0x6b206574);
        for (int k = 0; k < 8; k++) in[4 + k] = _mm256_loadu_si256((const __m256i *)&key[k][h]);
        for (int k = 13; k < 16; k++) in[k] = _mm256_setzero_si256();
        in[12] = _mm256_set1_epi32((int)ctr);
        for (int k = 0; k < 16; k++) x[k] = in[k];
        for (int r = 0; r < 10; r++) {
            CHACHA_VQR(x[0], x[4], x[8], x[12]);
            CHACHA_VQR(x[1], x[5], x[9], x[13]);
            CHACHA_VQR(x[2], x[6], x[10], x[14]);
            CHACHA_VQR(x[3], x[7], x[11], x[15]);
            CHACHA_VQR(x[0], x[5], x[10], x[15]);
            CHACHA_VQR(x[1], x[6], x[11], x[12]);
            CHACHA_VQR(x[2], x[7], x[8], x[13]);
            CHACHA_VQR(x[3], x[4], x[9], x[14]);
        }
        for (int k = 0; k < 16; k++)
            _mm256_storeu_si256((__m256i *)&out[k][h], _mm256_add_epi32(x[k], in[k]));
    }
}
#endif

#if MPCAI_HAVE_AVX512
__attribute__((target(MPCAI_AVX512_TARGET))) static inline void
chacha_lanes_avx512(const uint32_t key[8][CHACHA_LANES], uint32_t ctr,
                    uint32_t out[16][CHACHA_LANES])
{
    __m512i in[16], x[16];
    in[0] = _mm512_set1_epi32(0x61707865);
    in[1] = _mm512_set1_epi32(0x3320646e);
    in[2] = _mm512_set1_epi32(0x79622d32);
    in[3] = _mm512_set1_epi32(0x6b206574);
    for (int k = 0; k < 8; k++) in[4 + k] = _mm512_loadu_si512((const void *)&key[k][0]);
    for (int k = 13; k < 16; k++) in[k] = _mm512_setzero_si512();
    in[12] = _mm512_set1_epi32((int)ctr);
    for (int k = 0; k < 16; k++) x[k] = in[k];
    for (int r = 0; r < 10; r++) {
        CHACHA_ZQR(x[0], x[4], x[8], x[12]);
        CHACHA_ZQR(x[1], x[5], x[9], x[13]);
        CHACHA_ZQR(x[2], x[6], x[10], x[14]);
        CHACHA_ZQR(x[3], x[7], x[11], x[15]);
        CHACHA_ZQR(x[0], x[5], x[10], x[15]);
        CHACHA_ZQR(x[1], x[6], x[11], x[12]);
        CHACHA_ZQR(x[2], x[7], x[8], x[13]);
        CHACHA_ZQR(x[3], x[4], x[9], x[14]);
    }
    for (int k = 0; k < 16; k++)
        _mm512_storeu_si512((void *)&out[k][0], _mm512_add_epi32(x[k], in[k]));
}
#endif

/* The lane function of the SIMD path in force. */
static inline chacha_lanes_fn chacha_lanes_for_level(void)
{
#if MPCAI_HAVE_AVX512
    if (mpcai_internal_simd_level() >= MPCAI_LEVEL_AVX512) return chacha_lanes_avx512;
#endif
#if MPCAI_HAVE_AVX2
    if (mpcai_internal_simd_level() >= MPCAI_LEVEL_AVX2) return chacha_lanes_avx2;
#endif
    return chacha_lanes_scalar;
}

#if MPCAI_HAVE_AVX512
__attribute__((target(MPCAI_AVX512_TARGET))) static inline size_t
chacha_keystream_words_avx512(const uint32_t st[16], uint32_t ctr, size_t n, uint64_t *out)
{
    size_t i = 0;
    for (; i + CHACHA_Z_GROUP_BLOCKS <= n; i += CHACHA_Z_GROUP_BLOCKS) {
        __m512i o[16];
        uint64_t w16[8];
        chacha17_avx512(st, ctr + (uint32_t)i, o, w16);
        for (int b = 0; b < 16; b++) _mm512_storeu_si512((void *)(out + 8 * (i + b)), o[b]);
        memcpy(out + 8 * (i + 16), w16, 64);
    }
    return i;
}
#endif

#if MPCAI_HAVE_AVX2
__attribute__((target("avx2"))) static inline size_t
chacha_keystream_words_avx2(const uint32_t st[16], uint32_t ctr, size_t i, size_t n, uint64_t *out)
{
    for (; i + CHACHA_GROUP_BLOCKS <= n; i += CHACHA_GROUP_BLOCKS) {
        __m256i o[16];
        uint64_t w8[8];
        chacha9_avx2(st, ctr + (uint32_t)i, o, w8);
        for (int v = 0; v < 16; v++) _mm256_storeu_si256((__m256i *)(out + 8 * i + 4 * v), o[v]);
        memcpy(out + 8 * (i + 8), w8, 64);
    }
    return i;
}
#endif

/* keystream blocks [ctr, ctr + n) into out as 8 n little-endian 64-bit words, on the
 * fastest path up to SIMD level `level` (the sketch and the discrete Gaussian sampler) */
static inline void chacha_keystream_words(const uint32_t st[16], uint32_t ctr, size_t n, uint64_t *out, int level)
{
    size_t i = 0;
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) i = chacha_keystream_words_avx512(st, ctr, n, out);
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) i = chacha_keystream_words_avx2(st, ctr, i, n, out);
#endif
    uint32_t b[16];
    for (; i < n; i++) {
        chacha_block(st, ctr + (uint32_t)i, b);
        for (int k = 0; k < 8; k++)
            out[8 * i + k] = (uint64_t)b[2 * k] | ((uint64_t)b[2 * k + 1] << 32);
    }
}

#endif /* MPCAI_CHACHA_CORE_H */
