/*
 * hadamard.c -- the normalised fast Walsh-Hadamard transform (float64, in
 * place) and the packing of b-bit residues into bytes.
 *
 * FWHT: radix-2 butterflies (x, y) -> (x + y, x - y) at distances h = 1, 2,
 * 4, ..., n / 2, then every value divided by sqrt(n).  Each output of a
 * stage depends only on the two values of the stage before at i and i ^ h,
 * so grouping the butterflies differently (the first stages inside blocks
 * that fit L1, the next ones inside chunks that fit L2, then two or three
 * stages per pass over memory) performs the
 * very same IEEE operations on the very same operands: the result is
 * bit-identical to stage-by-stage evaluation (mpcai.dp._fwht_reference).
 * Only additions, subtractions and one correctly rounded division per
 * value: no multiplication, so no FMA contraction can change a rounding.
 * The vector paths are the same loops compiled for AVX2 / AVX-512 (target
 * attributes); every path gives the same bits.
 *
 * Bit packing: value i (mod 2^bits) occupies bits [i bits, (i + 1) bits)
 * of the little-endian bit stream; the last byte is padded with zeros.
 */
#include <stdint.h>
#include <string.h>

#include "mpcai_native.h"
#include "_dispatch.h"

/* doubles per block of the in-cache stages: 2^11 x 8 bytes = 16 KiB (L1) */
#define FW_BLOCK_LOG 11
#define FW_BLOCK ((size_t)1 << FW_BLOCK_LOG)
/* doubles per chunk of the in-L2 stages: 2^15 x 8 bytes = 256 KiB */
#define FW_CHUNK ((size_t)1 << 15)

/* The passes, as one body compiled for every path.  `scale` is applied
 * (a division) to the outputs of a pass when `last` is set. */
#define FW_DEFINE(SUFFIX, ATTR)                                                              \
    ATTR static void fw_r2_##SUFFIX(double *restrict a, size_t n, size_t h, int last,        \
                                    double s)                                                \
    {                                                                                        \
        for (size_t b = 0; b < n; b += 2 * h) {                                              \
            double *restrict p = a + b, *restrict q = a + b + h;                             \
            if (last) {                                                                      \
                for (size_t i = 0; i < h; i++) {                                             \
                    double x = p[i], y = q[i];                                               \
                    p[i] = (x + y) / s;                                                      \
                    q[i] = (x - y) / s;                                                      \
                }                                                                            \
            } else {                                                                         \
                for (size_t i = 0; i < h; i++) {                                             \
                    double x = p[i], y = q[i];                                               \
                    p[i] = x + y;                                                            \
                    q[i] = x - y;                                                            \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* stages h and 2h in one pass */                                                        \
    ATTR static void fw_r4_##SUFFIX(double *restrict a, size_t n, size_t h, int last,        \
                                    double s)                                                \
    {                                                                                        \
        for (size_t b = 0; b < n; b += 4 * h) {                                              \
            double *restrict p0 = a + b, *restrict p1 = p0 + h, *restrict p2 = p1 + h,       \
                             *restrict p3 = p2 + h;                                          \
            if (last) {                                                                      \
                for (size_t i = 0; i < h; i++) {                                             \
                    double a0 = p0[i], a1 = p1[i], a2 = p2[i], a3 = p3[i];                   \
                    double b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;           \
                    p0[i] = (b0 + b2) / s;                                                   \
                    p1[i] = (b1 + b3) / s;                                                   \
                    p2[i] = (b0 - b2) / s;                                                   \
                    p3[i] = (b1 - b3) / s;                                                   \
                }                                                                            \
            } else {                                                                         \
                for (size_t i = 0; i < h; i++) {                                             \
                    double a0 = p0[i], a1 = p1[i], a2 = p2[i], a3 = p3[i];                   \
                    double b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;           \
                    p0[i] = b0 + b2;                                                         \
                    p1[i] = b1 + b3;                                                         \
                    p2[i] = b0 - b2;                                                         \
                    p3[i] = b1 - b3;                                                         \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* stages h, 2h and 4h in one pass */                                                    \
    ATTR static void fw_r8_##SUFFIX(double *restrict a, size_t n, size_t h, int last,        \
                                    double s)                                                \
    {                                                                                        \
        for (size_t b = 0; b < n; b += 8 * h) {                                              \
            double *restrict p[8];                                                           \
            for (int m = 0; m < 8; m++) p[m] = a + b + (size_t)m * h;                        \
            double *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2],            \
                             *restrict p3 = p[3], *restrict p4 = p[4], *restrict p5 = p[5],  \
                             *restrict p6 = p[6], *restrict p7 = p[7];                       \
            for (size_t i = 0; i < h; i++) {                                                 \
                double a0 = p0[i], a1 = p1[i], a2 = p2[i], a3 = p3[i];                       \
                double a4 = p4[i], a5 = p5[i], a6 = p6[i], a7 = p7[i];                       \
                double b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;               \
                double b4 = a4 + a5, b5 = a4 - a5, b6 = a6 + a7, b7 = a6 - a7;               \
                double c0 = b0 + b2, c2 = b0 - b2, c1 = b1 + b3, c3 = b1 - b3;               \
                double c4 = b4 + b6, c6 = b4 - b6, c5 = b5 + b7, c7 = b5 - b7;               \
                double d0 = c0 + c4, d4 = c0 - c4, d1 = c1 + c5, d5 = c1 - c5;               \
                double d2 = c2 + c6, d6 = c2 - c6, d3 = c3 + c7, d7 = c3 - c7;               \
                if (last) {                                                                  \
                    d0 /= s; d1 /= s; d2 /= s; d3 /= s;                                      \
                    d4 /= s; d5 /= s; d6 /= s; d7 /= s;                                      \
                }                                                                            \
                p0[i] = d0; p1[i] = d1; p2[i] = d2; p3[i] = d3;                              \
                p4[i] = d4; p5[i] = d5; p6[i] = d6; p7[i] = d7;                              \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* stages 1, 2 and 4 on each run of 8 consecutive values (n >= 8): the r8 */          \
    /* butterflies with h = 1, without the inner loop */                                    \
    ATTR static void fw_first8_##SUFFIX(double *restrict a, size_t n)                        \
    {                                                                                        \
        for (size_t b = 0; b < n; b += 8) {                                                  \
            double *restrict p = a + b;                                                      \
            double a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3];                               \
            double a4 = p[4], a5 = p[5], a6 = p[6], a7 = p[7];                               \
            double b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;                   \
            double b4 = a4 + a5, b5 = a4 - a5, b6 = a6 + a7, b7 = a6 - a7;                   \
            double c0 = b0 + b2, c2 = b0 - b2, c1 = b1 + b3, c3 = b1 - b3;                   \
            double c4 = b4 + b6, c6 = b4 - b6, c5 = b5 + b7, c7 = b5 - b7;                   \
            p[0] = c0 + c4; p[4] = c0 - c4; p[1] = c1 + c5; p[5] = c1 - c5;                  \
            p[2] = c2 + c6; p[6] = c2 - c6; p[3] = c3 + c7; p[7] = c3 - c7;                  \
        }                                                                                    \
    }                                                                                        \
    /* the stages at distances h0, 2 h0, ... < hend over n values, as few passes as */     \
    /* possible; the division by s on the last one if `last` */                             \
    ATTR static void fw_stages_##SUFFIX(double *a, size_t n, size_t h0, size_t hend,         \
                                        int last, double s)                                  \
    {                                                                                        \
        size_t h = h0;                                                                       \
        while (h < hend) {                                                                   \
            size_t left = 0;                                                                 \
            for (size_t t = h; t < hend; t *= 2) left++;                                     \
            /* 3 stages, unless 4 or 2 are left (then 2 + 2 or 2) */                        \
            size_t take = left >= 5 || left == 3 ? 3 : left >= 2 ? 2 : 1;                    \
            int fin = last && take == left;                                                  \
            if (take == 3) fw_r8_##SUFFIX(a, n, h, fin, s);                                  \
            else if (take == 2) fw_r4_##SUFFIX(a, n, h, fin, s);                             \
            else fw_r2_##SUFFIX(a, n, h, fin, s);                                            \
            h <<= take;                                                                      \
        }                                                                                    \
    }                                                                                        \
    /* every stage of len values (a power of two): L1 blocks first */                        \
    ATTR static void fw_local_##SUFFIX(double *a, size_t len, int last, double s)            \
    {                                                                                        \
        if (len <= FW_BLOCK) {                                                               \
            fw_stages_##SUFFIX(a, len, 1, len, last, s);                                     \
            return;                                                                          \
        }                                                                                    \
        for (size_t b = 0; b < len; b += FW_BLOCK) {                                         \
            fw_first8_##SUFFIX(a + b, FW_BLOCK);                                             \
            fw_stages_##SUFFIX(a + b, FW_BLOCK, 8, FW_BLOCK, 0, s);                          \
        }                                                                                    \
        fw_stages_##SUFFIX(a, len, FW_BLOCK, len, last, s);                                  \
    }                                                                                        \
    /* L2 chunks (each done whole while it is in cache), then the stages across them */     \
    ATTR static void fw_all_##SUFFIX(double *a, size_t n, double s)                          \
    {                                                                                        \
        if (n <= FW_CHUNK) {                                                                 \
            fw_local_##SUFFIX(a, n, 1, s);                                                   \
            return;                                                                          \
        }                                                                                    \
        for (size_t b = 0; b < n; b += FW_CHUNK) fw_local_##SUFFIX(a + b, FW_CHUNK, 0, s);    \
        fw_stages_##SUFFIX(a, n, FW_CHUNK, n, 1, s);                                         \
    }

FW_DEFINE(scalar, )
#if MPCAI_HAVE_AVX2
FW_DEFINE(avx2, __attribute__((target("avx2"))))
#endif
#if MPCAI_HAVE_AVX512
FW_DEFINE(avx512, __attribute__((target(MPCAI_AVX512_TARGET))))
#endif

int mpcai_fwht(double *a, size_t n)
{
    if (!a && n) return MPCAI_ERR_NULL;
    if (n == 0 || (n & (n - 1)) || (uint64_t)n > MPCAI_FWHT_MAX_LEN) return MPCAI_ERR_LENGTH;
    if (n == 1) {
        a[0] /= 1.0; /* as the reference: the value divided by sqrt(1) */
        return MPCAI_OK;
    }
    /* sqrt(n) correctly rounded, as Python's math.sqrt (without libm): n = 2^k, so
     * sqrt(n) = 2^(k/2) exactly for even k and the rounded sqrt(2) times 2^((k-1)/2)
     * (an exact scaling) for odd k */
    int k = 0;
    while (((size_t)1 << k) < n) k++;
    double s = (k & 1) ? 1.4142135623730951 : 1.0;
    for (int j = 0; j < k / 2; j++) s *= 2.0;
    const int level = mpcai_internal_simd_level();
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        fw_all_avx512(a, n, s);
        return MPCAI_OK;
    }
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) {
        fw_all_avx2(a, n, s);
        return MPCAI_OK;
    }
#endif
    fw_all_scalar(a, n, s);
    return MPCAI_OK;
}

/* ---- bit packing ---------------------------------------------------- */

static uint64_t packed_len(size_t n, int bits)
{
    /* in 64 bits even where size_t has 32 (n * bits would wrap there from n = 2^27);
       n <= MPCAI_PACK_MAX_COUNT: n * bits does not overflow 64 bits */
    return ((uint64_t)n * (uint64_t)bits + 7) / 8;
}

/* bits == 24 (the secure-aggregation ring Z_2^24): whole bytes, so the vector paths
 * move 8 (AVX2) or 16 (AVX-512) values per step with two shuffles; the same bytes as
 * the general loop below.  Each returns how many values it handled (the rest are
 * done by the scalar tail). */
static void pack24_scalar(const uint32_t *in, size_t i, size_t n, uint8_t *out)
{
    for (; i < n; i++) {
        out[3 * i] = (uint8_t)in[i];
        out[3 * i + 1] = (uint8_t)(in[i] >> 8);
        out[3 * i + 2] = (uint8_t)(in[i] >> 16);
    }
}

static void unpack24_scalar(const uint8_t *in, size_t i, size_t n, uint32_t *out)
{
    for (; i < n; i++)
        out[i] = (uint32_t)in[3 * i] | (uint32_t)in[3 * i + 1] << 8 | (uint32_t)in[3 * i + 2] << 16;
}

#if MPCAI_HAVE_AVX2
__attribute__((target("avx2"))) static size_t pack24_avx2(const uint32_t *in, size_t n,
                                                          uint8_t *out)
{
    const __m256i squeeze = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1,
                                             -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1,
                                             -1, -1);
    const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    size_t k = 0;
    /* each step stores 32 bytes of which 24 are its own: stop while 8 bytes remain */
    for (; k + 8 <= n && 3 * k + 32 <= 3 * n; k += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(in + k));
        v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, squeeze), join);
        _mm256_storeu_si256((__m256i *)(out + 3 * k), v);
    }
    return k;
}

__attribute__((target("avx2"))) static size_t unpack24_avx2(const uint8_t *in, size_t n,
                                                            uint32_t *out)
{
    const __m256i perm = _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0);
    const __m256i spread = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                            0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    size_t k = 0;
    for (; k + 8 <= n && 3 * k + 32 <= 3 * n; k += 8) { /* each load reads 8 bytes ahead */
        __m256i w = _mm256_loadu_si256((const __m256i *)(in + 3 * k));
        w = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(w, perm), spread);
        _mm256_storeu_si256((__m256i *)(out + k), w);
    }
    return k;
}
#endif

#if MPCAI_HAVE_AVX512
__attribute__((target(MPCAI_AVX512_TARGET))) static size_t pack24_avx512(const uint32_t *in,
                                                                        size_t n, uint8_t *out)
{
    const __m512i squeeze = _mm512_set4_epi32(-1, 0x0E0D0C0A, 0x09080605, 0x04020100);
    const __m512i join = _mm512_setr_epi32(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 15, 15, 15);
    size_t k = 0;
    for (; k + 16 <= n; k += 16) { /* 48 of the 64 bytes stored (masked: no overrun) */
        __m512i v = _mm512_loadu_si512((const void *)(in + k));
        v = _mm512_permutexvar_epi32(join, _mm512_shuffle_epi8(v, squeeze));
        _mm512_mask_storeu_epi8((void *)(out + 3 * k), (__mmask64)0xFFFFFFFFFFFFull, v);
    }
    return k;
}

__attribute__((target(MPCAI_AVX512_TARGET))) static size_t unpack24_avx512(const uint8_t *in,
                                                                          size_t n, uint32_t *out)
{
    const __m512i perm = _mm512_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0);
    const __m512i spread = _mm512_set4_epi32((int)0xFF0B0A09, (int)0xFF080706,
                                             (int)0xFF050403, (int)0xFF020100);
    size_t k = 0;
    for (; k + 16 <= n; k += 16) { /* a masked load of the 48 bytes: no overread */
        __m512i w = _mm512_maskz_loadu_epi8((__mmask64)0xFFFFFFFFFFFFull, (const void *)(in + 3 * k));
        w = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(perm, w), spread);
        _mm512_storeu_si512((void *)(out + k), w);
    }
    return k;
}
#endif

static void pack24(const uint32_t *in, size_t n, uint8_t *out)
{
    size_t i = 0;
    const int level = mpcai_internal_simd_level();
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) i = pack24_avx512(in, n, out);
    else
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) i = pack24_avx2(in, n, out);
#endif
    pack24_scalar(in, i, n, out);
}

static void unpack24(const uint8_t *in, size_t n, uint32_t *out)
{
    size_t i = 0;
    const int level = mpcai_internal_simd_level();
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) i = unpack24_avx512(in, n, out);
    else
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) i = unpack24_avx2(in, n, out);
#endif
    unpack24_scalar(in, i, n, out);
}

int mpcai_pack_bits(const uint32_t *in, size_t n, int bits, uint8_t *out, size_t out_len)
{
    if ((!in && n) || (!out && out_len)) return MPCAI_ERR_NULL;
    if (bits < 1 || bits > 32) return MPCAI_ERR_ARG;
    if ((uint64_t)n > MPCAI_PACK_MAX_COUNT || (uint64_t)out_len != packed_len(n, bits))
        return MPCAI_ERR_LENGTH;
    if (bits == 24) {
        pack24(in, n, out);
        return MPCAI_OK;
    }
    const uint64_t mask = bits == 32 ? 0xFFFFFFFFu : (((uint64_t)1 << bits) - 1);
    uint64_t acc = 0;
    int nacc = 0;
    uint8_t *o = out;
    for (size_t i = 0; i < n; i++) {
        acc |= ((uint64_t)in[i] & mask) << nacc;
        nacc += bits;
        if (nacc >= 32) {
            o[0] = (uint8_t)acc;
            o[1] = (uint8_t)(acc >> 8);
            o[2] = (uint8_t)(acc >> 16);
            o[3] = (uint8_t)(acc >> 24);
            o += 4;
            acc >>= 32;
            nacc -= 32;
        }
    }
    while (nacc > 0) {
        *o++ = (uint8_t)acc;
        acc >>= 8;
        nacc -= 8;
    }
    return MPCAI_OK;
}

int mpcai_unpack_bits(const uint8_t *in, size_t in_len, int bits, uint32_t *out, size_t n)
{
    if ((!in && in_len) || (!out && n)) return MPCAI_ERR_NULL;
    if (bits < 1 || bits > 32) return MPCAI_ERR_ARG;
    if ((uint64_t)n > MPCAI_PACK_MAX_COUNT || (uint64_t)in_len != packed_len(n, bits))
        return MPCAI_ERR_LENGTH;
    if (bits == 24) {
        unpack24(in, n, out);
        return MPCAI_OK;
    }
    const uint64_t mask = bits == 32 ? 0xFFFFFFFFu : (((uint64_t)1 << bits) - 1);
    size_t i = 0;
    /* values whose 8-byte window lies inside the input: one load each */
    for (; i < n; i++) {
        uint64_t bit = (uint64_t)i * (uint64_t)bits; /* 64 bits: no wrap on 32-bit size_t */
        size_t byte = (size_t)(bit >> 3);
        if (byte + 8 > in_len) break;
        const uint8_t *p = in + byte;
        uint64_t w = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                     (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
                     (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
        out[i] = (uint32_t)((w >> (bit & 7)) & mask);
    }
    for (; i < n; i++) {
        uint64_t bit = (uint64_t)i * (uint64_t)bits; /* 64 bits: no wrap on 32-bit size_t */
        size_t byte = (size_t)(bit >> 3);
        uint64_t w = 0;
        for (size_t k = 0; k < 8 && byte + k < in_len; k++) w |= (uint64_t)in[byte + k] << (8 * k);
        out[i] = (uint32_t)((w >> (bit & 7)) & mask);
    }
    return MPCAI_OK;
}
