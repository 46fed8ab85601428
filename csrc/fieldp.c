/*
 * fieldp.c -- GF(p), p = 2^61 - 1: element-wise kernels, polynomial
 * evaluation, fused Shamir sharing and linear combinations.
 *
 * Arithmetic.  2^61 = 1 (mod p), so a value s < 2^64 folds to
 * fold(s) = (s & p) + (s >> 61) <= p + 7, and one conditional subtraction
 * makes it canonical.  A 128-bit product splits into bits 0..60, 61..121
 * and 122..127, which are added (each weight is 1 mod p).  Hot loops keep
 * values lazily reduced (below 2^63 or 2^64, bounds stated at each place)
 * and canonicalise only what they store; every output is canonical, so
 * every path below is bit-identical.
 *
 * Polynomial evaluation (Shamir shares are evaluations) has two methods:
 *
 *  - forward differences, when the points are small and dense (the usual
 *    1..n): the differences of f at 0 are D_k = sum_m c_m T(m, k) with
 *    T(m, k) = k! S(m, k) (surjection numbers, small integers for degree
 *    <= 12), then f(x + 1) follows from f(x) by the update
 *    D_k += D_{k+1}: d additions per point instead of d multiplications.
 *    The products c_m T(m, k) are summed in two 64-bit accumulators
 *    (32-bit halves of c_m) and reduced once per D_k.
 *  - Horner otherwise, with a cheaper step when the point is below 2^32.
 *
 * The fused Shamir kernel draws the random coefficients from its own
 * streaming copy of the PRG (ChaCha20, key = seed, nonce = 0, counter from
 * 0, candidates w_j & (2^61 - 1), rejected iff equal to p -- the exact
 * stream of mpcai_prg_fieldp in chacha20.c), a block of elements at a
 * time, transposes the block to coefficient-major order in L1/L2 and
 * evaluates it at every point before moving on.
 *
 * Paths: AVX2 (4 lanes of 64 bits; function-level target attribute) when
 * the CPU supports it, else portable scalar.  Setting the environment
 * variable MPCAI_FORCE_SCALAR=1 selects the scalar path; unlike ring64.c
 * it is read on every call, so tests can compare the paths in-process.
 *
 * Linear combinations (AVX2) split each weight w and w 2^32 mod p into
 * 21-bit limbs and each row value into 32-bit halves, so all limb products
 * (vpmuludq) can be summed lazily and are reduced once per 1024 rows.
 *
 * Validation: NULL pointers, sizes whose product overflows, and any input
 * element >= p (MPCAI_ERR_RANGE).  Everything is checked before any output
 * is written, except the large matrix inputs of fp_poly_eval (coeffs) and
 * fp_lincomb (rows), which are checked as they are used (block by block,
 * or in the combining loop itself) so that they are read from memory once;
 * on MPCAI_ERR_RANGE from these two the contents of out are unspecified.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpcai_native.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FP_HAVE_AVX2 1
#include <immintrin.h>
#else
#define FP_HAVE_AVX2 0
#endif

#define FP_P MPCAI_FIELD_P
#define FP_M32 ((uint64_t)0xFFFFFFFFu)

/* ---- scalar arithmetic ------------------------------------------------ */

/* s < 2^64  ->  fold(s) = s (mod p) and fold(s) <= p + 7. */
static inline uint64_t fp_fold(uint64_t s)
{
    return (s & FP_P) + (s >> 61);
}

/* s < 2^64  ->  s mod p in [0, p). */
static inline uint64_t fp_canon(uint64_t s)
{
    s = fp_fold(s);
    return s >= FP_P ? s - FP_P : s;
}

#if defined(__SIZEOF_INT128__) && !defined(FP_NO_INT128)
typedef unsigned __int128 fp_u128;
static inline uint64_t fp_mul_wide(uint64_t a, uint64_t b, uint64_t *lo)
{
    fp_u128 pr = (fp_u128)a * b;
    *lo = (uint64_t)pr;
    return (uint64_t)(pr >> 64);
}
#else
static inline uint64_t fp_mul_wide(uint64_t a, uint64_t b, uint64_t *lo)
{
    uint64_t a0 = a & FP_M32, a1 = a >> 32, b0 = b & FP_M32, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & FP_M32) + (p10 & FP_M32);
    *lo = (mid << 32) | (p00 & FP_M32);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}
#endif

/* Any 128-bit value hi 2^64 + lo, reduced to [0, p). */
static inline uint64_t fp_red128(uint64_t hi, uint64_t lo)
{
    uint64_t s = (lo & FP_P) + ((lo >> 61) | ((hi << 3) & FP_P)) + (hi >> 58);
    return fp_canon(s); /* s < 2^62 + 64 */
}

static inline uint64_t fp_mulmod(uint64_t a, uint64_t b)
{
    uint64_t lo, hi = fp_mul_wide(a, b, &lo);
    return fp_red128(hi, lo);
}

/* 128-bit accumulator (hi, lo) += a b. */
static inline void fp_mac(uint64_t *hi, uint64_t *lo, uint64_t a, uint64_t b)
{
    uint64_t pl, ph = fp_mul_wide(a, b, &pl);
    uint64_t s = *lo + pl;
    *hi += ph + (s < pl);
    *lo = s;
}

/* Horner step acc x + c with acc < 2^63, x < 2^32, c < 2^61: result < 2^63
 * (x acc < 2^95, so (x acc) >> 61 < 2^34). */
static inline uint64_t fp_horner_small(uint64_t acc, uint64_t x, uint64_t c)
{
    uint64_t lo, hi = fp_mul_wide(acc, x, &lo);
    return (lo & FP_P) + ((lo >> 61) | (hi << 3)) + c;
}

/* Horner step for any x < p (acc < 2^64, c < 2^61): result < 2^62. */
static inline uint64_t fp_horner_big(uint64_t acc, uint64_t x, uint64_t c)
{
    return fp_mulmod(acc, x) + c;
}

/* a * b as size_t, or 0 with *ok cleared if it overflows. */
static size_t fp_mul_size(size_t a, size_t b, int *ok)
{
    if (a && b > SIZE_MAX / a) {
        *ok = 0;
        return 0;
    }
    return a * b;
}

/* ---- path selection ---------------------------------------------------- */

static int fp_cpu_avx2 = -1;

static int fp_use_avx2(void)
{
#if FP_HAVE_AVX2
    const char *force = getenv("MPCAI_FORCE_SCALAR");
    if (force && strcmp(force, "1") == 0) return 0;
    if (fp_cpu_avx2 < 0) {
        __builtin_cpu_init();
        fp_cpu_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return fp_cpu_avx2;
#else
    (void)fp_cpu_avx2;
    return 0;
#endif
}

#if FP_HAVE_AVX2
#define FP_AVX2 __attribute__((target("avx2")))
#define FP_AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* fold / canon on 4 lanes (v < 2^64 resp. v < 2^64). */
FP_AVX2_INLINE __m256i v_fold(__m256i v, __m256i p)
{
    return _mm256_add_epi64(_mm256_and_si256(v, p), _mm256_srli_epi64(v, 61));
}

FP_AVX2_INLINE __m256i v_canon(__m256i v, __m256i p, __m256i pm1)
{
    v = v_fold(v, p); /* <= p + 7 < 2^63: signed compare is exact */
    return _mm256_sub_epi64(v, _mm256_and_si256(_mm256_cmpgt_epi64(v, pm1), p));
}

/* acc x + c for acc < 2^64, x < 2^32 (in the low half of each lane),
 * c < 2^61: with acc = ah 2^32 + al, L = al x < 2^64, H = ah x < 2^64,
 *   H 2^32 = (H >> 29) 2^61 + (H mod 2^29) 2^32 = (H >> 29) + ((H << 32) & p),
 * so the result is < (p + 8) + 2^35 + 2^61 + 2^61 < 2^63. */
FP_AVX2_INLINE __m256i v_horner_small(__m256i acc, __m256i x, __m256i c, __m256i p)
{
    __m256i lo = _mm256_mul_epu32(acc, x);
    __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(acc, 32), x);
    __m256i r = _mm256_add_epi64(v_fold(lo, p), _mm256_srli_epi64(hi, 29));
    r = _mm256_add_epi64(r, _mm256_and_si256(_mm256_slli_epi64(hi, 32), p));
    return _mm256_add_epi64(r, c);
}
#endif

/* ---- range checks ------------------------------------------------------ */

/* Nonzero iff some a[i] >= p.  a >= p  <=>  bit 61+ set in a or in a + 1
 * (a + 1 wraps only for a = 2^64 - 1, which has bit 63 set itself).
 * Several accumulators: the loop is bound by loads, not by the OR chain. */
static int fp_any_unreduced_scalar(const uint64_t *a, size_t n)
{
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        c0 |= a[i] | (a[i] + 1);
        c1 |= a[i + 1] | (a[i + 1] + 1);
        c2 |= a[i + 2] | (a[i + 2] + 1);
        c3 |= a[i + 3] | (a[i + 3] + 1);
    }
    for (; i < n; i++) c0 |= a[i] | (a[i] + 1);
    return ((c0 | c1 | c2 | c3) >> 61) != 0;
}

#if FP_HAVE_AVX2
FP_AVX2 static int fp_any_unreduced_avx2(const uint64_t *a, size_t n)
{
    const __m256i one = _mm256_set1_epi64x(1);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i y = _mm256_loadu_si256((const __m256i *)(a + i + 4));
        c0 = _mm256_or_si256(c0, _mm256_or_si256(x, _mm256_add_epi64(x, one)));
        c1 = _mm256_or_si256(c1, _mm256_or_si256(y, _mm256_add_epi64(y, one)));
    }
    c0 = _mm256_srli_epi64(_mm256_or_si256(c0, c1), 61);
    return !_mm256_testz_si256(c0, c0) || fp_any_unreduced_scalar(a + i, n - i);
}
#endif

static int fp_any_unreduced(const uint64_t *a, size_t n, int avx2)
{
#if FP_HAVE_AVX2
    if (avx2) return fp_any_unreduced_avx2(a, n);
#endif
    (void)avx2;
    return fp_any_unreduced_scalar(a, n);
}

/* Same for an nrows x cols block with row stride `stride`. */
static int fp_any_unreduced_block(const uint64_t *a, size_t stride, size_t nrows, size_t cols,
                                  int avx2)
{
    for (size_t r = 0; r < nrows; r++)
        if (fp_any_unreduced(a + r * stride, cols, avx2)) return 1;
    return 0;
}

/* ---- ChaCha20 field-element stream ----------------------------------- */
/* A private copy of the stream of chacha20.c (which keeps its own static);
 * tests check that both produce the same elements. */

#define FP_ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define FP_QR(a, b, c, d)                                                 \
    do {                                                                  \
        a += b; d ^= a; d = FP_ROTL32(d, 16);                             \
        c += d; b ^= c; b = FP_ROTL32(b, 12);                             \
        a += b; d ^= a; d = FP_ROTL32(d, 8);                              \
        c += d; b ^= c; b = FP_ROTL32(b, 7);                              \
    } while (0)

static uint32_t fp_load32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void fp_chacha_block(const uint32_t st[16], uint32_t ctr, uint32_t out[16])
{
    uint32_t x[16];
    memcpy(x, st, sizeof x);
    x[12] = ctr;
    for (int i = 0; i < 10; i++) {
        FP_QR(x[0], x[4], x[8], x[12]);
        FP_QR(x[1], x[5], x[9], x[13]);
        FP_QR(x[2], x[6], x[10], x[14]);
        FP_QR(x[3], x[7], x[11], x[15]);
        FP_QR(x[0], x[5], x[10], x[15]);
        FP_QR(x[1], x[6], x[11], x[12]);
        FP_QR(x[2], x[7], x[8], x[13]);
        FP_QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + st[i];
    out[12] = x[12] + ctr;
}

#if FP_HAVE_AVX2
#define FP_VROTL(v, n) _mm256_or_si256(_mm256_slli_epi32(v, n), _mm256_srli_epi32(v, 32 - (n)))
#define FP_VQR(a, b, c, d)                                                             \
    do {                                                                               \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a);                        \
        d = _mm256_shuffle_epi8(d, rot16);                                             \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = FP_VROTL(b, 12);   \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a);                        \
        d = _mm256_shuffle_epi8(d, rot8);                                              \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = FP_VROTL(b, 7);    \
    } while (0)
#define FP_TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7)                \
    do {                                                             \
        __m256i t0 = _mm256_unpacklo_epi32(x0, x1);                  \
        __m256i t1 = _mm256_unpackhi_epi32(x0, x1);                  \
        __m256i t2 = _mm256_unpacklo_epi32(x2, x3);                  \
        __m256i t3 = _mm256_unpackhi_epi32(x2, x3);                  \
        __m256i t4 = _mm256_unpacklo_epi32(x4, x5);                  \
        __m256i t5 = _mm256_unpackhi_epi32(x4, x5);                  \
        __m256i t6 = _mm256_unpacklo_epi32(x6, x7);                  \
        __m256i t7 = _mm256_unpackhi_epi32(x6, x7);                  \
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2);                  \
        __m256i u1 = _mm256_unpackhi_epi64(t0, t2);                  \
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3);                  \
        __m256i u3 = _mm256_unpackhi_epi64(t1, t3);                  \
        __m256i u4 = _mm256_unpacklo_epi64(t4, t6);                  \
        __m256i u5 = _mm256_unpackhi_epi64(t4, t6);                  \
        __m256i u6 = _mm256_unpacklo_epi64(t5, t7);                  \
        __m256i u7 = _mm256_unpackhi_epi64(t5, t7);                  \
        x0 = _mm256_permute2x128_si256(u0, u4, 0x20);                \
        x4 = _mm256_permute2x128_si256(u0, u4, 0x31);                \
        x1 = _mm256_permute2x128_si256(u1, u5, 0x20);                \
        x5 = _mm256_permute2x128_si256(u1, u5, 0x31);                \
        x2 = _mm256_permute2x128_si256(u2, u6, 0x20);                \
        x6 = _mm256_permute2x128_si256(u2, u6, 0x31);                \
        x3 = _mm256_permute2x128_si256(u3, u7, 0x20);                \
        x7 = _mm256_permute2x128_si256(u3, u7, 0x31);                \
    } while (0)

/* Blocks ctr..ctr+7 as 64 candidates (word & (2^61 - 1)) in stream order;
 * returns nonzero iff some candidate equals p (must be rejected). */
FP_AVX2 static int fp_cand8_avx2(const uint32_t st[16], uint32_t ctr, uint64_t w[64])
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
    for (int i = 0; i < 10; i++) {
        FP_VQR(x0, x4, x8, x12);
        FP_VQR(x1, x5, x9, x13);
        FP_VQR(x2, x6, x10, x14);
        FP_VQR(x3, x7, x11, x15);
        FP_VQR(x0, x5, x10, x15);
        FP_VQR(x1, x6, x11, x12);
        FP_VQR(x2, x7, x8, x13);
        FP_VQR(x3, x4, x9, x14);
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
    FP_TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7);
    FP_TRANSPOSE8(x8, x9, x10, x11, x12, x13, x14, x15);
    /* block b: words 0..3 in x_b, words 4..7 in x_{b+8} */
    const __m256i p = _mm256_set1_epi64x((long long)FP_P);
    __m256i o[16] = {x0, x8, x1, x9, x2, x10, x3, x11, x4, x12, x5, x13, x6, x14, x7, x15};
    __m256i bad = _mm256_setzero_si256();
    for (int i = 0; i < 16; i++) {
        __m256i v = _mm256_and_si256(o[i], p);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi64(v, p));
        _mm256_storeu_si256((__m256i *)(w + 4 * i), v);
    }
    return !_mm256_testz_si256(bad, bad);
}
#endif

static int fp_cand8_scalar(const uint32_t st[16], uint32_t ctr, uint64_t w[64])
{
    uint32_t b[16];
    int bad = 0;
    for (int k = 0; k < 8; k++) {
        fp_chacha_block(st, ctr + (uint32_t)k, b);
        for (int i = 0; i < 8; i++) {
            uint64_t v = ((uint64_t)b[2 * i] | ((uint64_t)b[2 * i + 1] << 32)) & FP_P;
            bad |= v == FP_P;
            w[8 * k + i] = v;
        }
    }
    return bad;
}

typedef struct {
    uint32_t st[16];
    uint32_t ctr;     /* next block */
    int avx2;
    size_t pos, have; /* unread candidates buf[pos..have) */
    uint64_t buf[64];
} fp_stream;

static void fp_stream_init(fp_stream *s, const uint8_t seed[32], int avx2)
{
    s->st[0] = 0x61707865u;
    s->st[1] = 0x3320646eu;
    s->st[2] = 0x79622d32u;
    s->st[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) s->st[4 + i] = fp_load32_le(seed + 4 * i);
    s->st[12] = s->st[13] = s->st[14] = s->st[15] = 0; /* counter; nonce = 0^12 */
    s->ctr = 0;
    s->avx2 = avx2;
    s->pos = s->have = 0;
}

static int fp_stream_cand8(fp_stream *s, uint64_t w[64])
{
    uint32_t ctr = s->ctr;
    s->ctr += 8;
#if FP_HAVE_AVX2
    if (s->avx2) return fp_cand8_avx2(s->st, ctr, w);
#endif
    return fp_cand8_scalar(s->st, ctr, w);
}

/* The next m accepted elements.  Like chacha20.c, refuses to start a group
 * of 8 blocks past counter 2^32 - 9 (never reached: 2^35 candidates cover
 * the largest legal request, 2^34, unless 2^34 of them are rejected). */
static int fp_stream_read(fp_stream *s, uint64_t *out, size_t m)
{
    size_t i = 0;
    while (i < m) {
        if (s->pos < s->have) {
            uint64_t v = s->buf[s->pos++];
            if (v != FP_P) out[i++] = v;
            continue;
        }
        if (s->ctr > UINT32_MAX - 8) return MPCAI_ERR_LENGTH;
        if (m - i >= 64) {
            if (!fp_stream_cand8(s, out + i)) {
                i += 64;
                continue;
            }
            memcpy(s->buf, out + i, sizeof s->buf); /* rare: filter one by one */
        } else {
            fp_stream_cand8(s, s->buf);
        }
        s->pos = 0;
        s->have = 64;
    }
    return MPCAI_OK;
}

/* ---- evaluation plans ---------------------------------------------------- */

#define STEP_DMAX 12   /* forward differences up to this degree */
#define STEP_XMAX 65536
#define HORNER_LANES 64
#define HORNER_PTS 16

typedef struct {
    size_t d; /* degree = number of coefficients - 1 */
    const uint64_t *points;
    size_t n_points;
    int avx2;
    int stepping;
    uint64_t maxx;                              /* stepping: largest point */
    uint64_t T[STEP_DMAX + 1][STEP_DMAX + 1];   /* T[m][k] = k! S(m, k) */
    size_t *start;                              /* rows for x: order[start[x]..start[x+1]) */
    size_t *order;
} fp_plan;

static void fp_plan_free(fp_plan *pl)
{
    free(pl->start);
    free(pl->order);
    pl->start = pl->order = NULL;
}

/* Decide the method and precompute its tables. */
static int fp_plan_init(fp_plan *pl, size_t d, const uint64_t *points, size_t n_points, int avx2)
{
    memset(pl, 0, sizeof *pl);
    pl->d = d;
    pl->points = points;
    pl->n_points = n_points;
    pl->avx2 = avx2;
    if (d < 1 || d > STEP_DMAX || n_points == 0) return MPCAI_OK;
    uint64_t maxx = 0;
    for (size_t j = 0; j < n_points; j++)
        if (points[j] > maxx) maxx = points[j];
    /* cost in vector ops per lane: stepping ~ d^2 / 2 + 3 maxx d (after the
     * first point); Horner ~ 3 n d.  Prefer stepping when clearly cheaper. */
    if (maxx > STEP_XMAX || 2 * (uint64_t)d + 3 * maxx >= 12 * (uint64_t)n_points) return MPCAI_OK;
    /* T(m, k) = k (T(m-1, k-1) + T(m-1, k)); exact for d <= 12 in 64 bits.
     * The lazy sum in the transform needs sum_m T(m, k) < 2^32 for each k
     * (then sum_m (c_m mod 2^32) T(m, k) < 2^64). */
    pl->T[0][0] = 1;
    for (size_t m = 1; m <= d; m++)
        for (size_t k = 1; k <= m; k++) pl->T[m][k] = k * (pl->T[m - 1][k - 1] + pl->T[m - 1][k]);
    for (size_t k = 1; k <= d; k++) {
        uint64_t sum = 0;
        for (size_t m = k; m <= d; m++) sum += pl->T[m][k];
        if (sum >> 32) return MPCAI_OK;
    }
    pl->maxx = maxx;
    pl->start = calloc((size_t)maxx + 2, sizeof *pl->start);
    pl->order = malloc(n_points * sizeof *pl->order);
    if (!pl->start || !pl->order) {
        fp_plan_free(pl);
        return MPCAI_ERR_NOMEM;
    }
    for (size_t j = 0; j < n_points; j++) pl->start[points[j] + 1]++;
    for (uint64_t x = 0; x <= maxx; x++) pl->start[x + 1] += pl->start[x];
    {
        size_t *fill = malloc(((size_t)maxx + 1) * sizeof *fill);
        if (!fill) {
            fp_plan_free(pl);
            return MPCAI_ERR_NOMEM;
        }
        memcpy(fill, pl->start, ((size_t)maxx + 1) * sizeof *fill);
        for (size_t j = 0; j < n_points; j++) pl->order[fill[points[j]]++] = j;
        free(fill);
    }
    pl->stepping = 1;
    return MPCAI_OK;
}

/* ---- forward differences ------------------------------------------------- */

/* One lane (scalar).  c(m) = src[m * sstride]; outputs out[row * ostride]. */
static void fp_step_lane(const fp_plan *pl, const uint64_t *src, size_t sstride, uint64_t *out,
                         size_t ostride)
{
    const size_t d = pl->d;
    uint64_t D[STEP_DMAX + 1];
    D[0] = src[0];
    for (size_t k = 1; k <= d; k++) {
        uint64_t sl = 0, sh = 0;
        for (size_t m = k; m <= d; m++) {
            uint64_t c = src[m * sstride], t = pl->T[m][k];
            sl += (c & FP_M32) * t; /* < 2^64 in total, see fp_plan_init */
            sh += (c >> 32) * t;    /* < 2^61 */
        }
        D[k] = fp_fold(fp_fold(sl) + (sh >> 29) + ((sh << 32) & FP_P)); /* <= p + 7 */
    }
    for (size_t q = pl->start[0]; q < pl->start[1]; q++)
        out[pl->order[q] * ostride] = fp_canon(D[0]);
    for (uint64_t x = 1; x <= pl->maxx; x++) {
        /* all D <= p + 7 after an even step; <= 4 (p + 7) < 2^64 before the fold */
        for (size_t k = 0; k < d; k++) D[k] += D[k + 1];
        if (!(x & 1))
            for (size_t k = 0; k < d; k++) D[k] = fp_fold(D[k]);
        size_t q0 = pl->start[x], q1 = pl->start[x + 1];
        if (q0 < q1) {
            uint64_t v = fp_canon(D[0]);
            for (size_t q = q0; q < q1; q++) out[pl->order[q] * ostride] = v;
        }
    }
}

#if FP_HAVE_AVX2
/* Four lanes; d is a compile-time constant at every call site so that the
 * D vectors live in registers. */
FP_AVX2_INLINE void fp_step_group_avx2(const size_t d, const fp_plan *pl, const uint64_t *src,
                                       size_t sstride, uint64_t *out, size_t ostride)
{
    const __m256i p = _mm256_set1_epi64x((long long)FP_P);
    const __m256i pm1 = _mm256_set1_epi64x((long long)(FP_P - 1));
    __m256i D[STEP_DMAX + 1], chi[STEP_DMAX + 1];
    D[0] = _mm256_loadu_si256((const __m256i *)src);
    for (size_t m = 1; m <= d; m++)
        chi[m] = _mm256_srli_epi64(_mm256_loadu_si256((const __m256i *)(src + m * sstride)), 32);
    for (size_t k = 1; k <= d; k++) {
        __m256i sl = _mm256_setzero_si256(), sh = _mm256_setzero_si256();
        for (size_t m = k; m <= d; m++) {
            __m256i t = _mm256_set1_epi64x((long long)pl->T[m][k]);
            __m256i c = _mm256_loadu_si256((const __m256i *)(src + m * sstride));
            sl = _mm256_add_epi64(sl, _mm256_mul_epu32(c, t));
            sh = _mm256_add_epi64(sh, _mm256_mul_epu32(chi[m], t));
        }
        __m256i r = _mm256_add_epi64(v_fold(sl, p), _mm256_srli_epi64(sh, 29));
        r = _mm256_add_epi64(r, _mm256_and_si256(_mm256_slli_epi64(sh, 32), p));
        D[k] = v_fold(r, p);
    }
    for (size_t q = pl->start[0]; q < pl->start[1]; q++)
        _mm256_storeu_si256((__m256i *)(out + pl->order[q] * ostride), v_canon(D[0], p, pm1));
    for (uint64_t x = 1; x <= pl->maxx; x++) {
        for (size_t k = 0; k < d; k++) D[k] = _mm256_add_epi64(D[k], D[k + 1]);
        if (!(x & 1))
            for (size_t k = 0; k < d; k++) D[k] = v_fold(D[k], p);
        size_t q0 = pl->start[x], q1 = pl->start[x + 1];
        if (q0 < q1) {
            __m256i v = v_canon(D[0], p, pm1);
            for (size_t q = q0; q < q1; q++)
                _mm256_storeu_si256((__m256i *)(out + pl->order[q] * ostride), v);
        }
    }
}

FP_AVX2 static void fp_step_groups_avx2(const fp_plan *pl, const uint64_t *src, size_t sstride,
                                        size_t ngroups, uint64_t *out, size_t ostride)
{
    switch (pl->d) {
#define FP_STEP_CASE(D)                                                              \
    case D:                                                                          \
        for (size_t g = 0; g < ngroups; g++)                                         \
            fp_step_group_avx2(D, pl, src + 4 * g, sstride, out + 4 * g, ostride);   \
        break;
        FP_STEP_CASE(1)
        FP_STEP_CASE(2)
        FP_STEP_CASE(3)
        FP_STEP_CASE(4)
        FP_STEP_CASE(5)
        FP_STEP_CASE(6)
        FP_STEP_CASE(7)
        FP_STEP_CASE(8)
        FP_STEP_CASE(9)
        FP_STEP_CASE(10)
        FP_STEP_CASE(11)
        FP_STEP_CASE(12)
#undef FP_STEP_CASE
    default:
        for (size_t g = 0; g < 4 * ngroups; g++)
            fp_step_lane(pl, src + g, sstride, out + g, ostride);
    }
}
#endif

/* ---- Horner ----------------------------------------------------------- */

/* Columns [0, cols) scalar; acc is a HORNER_PTS x HORNER_LANES scratch. */
static void fp_horner_scalar(const fp_plan *pl, const uint64_t *src, size_t sstride, size_t cols,
                             uint64_t *out, size_t ostride, uint64_t *acc)
{
    const size_t d = pl->d;
    for (size_t c0 = 0; c0 < cols; c0 += HORNER_LANES) {
        size_t w = cols - c0 < HORNER_LANES ? cols - c0 : HORNER_LANES;
        for (size_t j0 = 0; j0 < pl->n_points; j0 += HORNER_PTS) {
            size_t np = pl->n_points - j0 < HORNER_PTS ? pl->n_points - j0 : HORNER_PTS;
            const uint64_t *top = src + d * sstride + c0;
            for (size_t pj = 0; pj < np; pj++)
                memcpy(acc + pj * HORNER_LANES, top, w * sizeof *acc);
            for (size_t k = d; k-- > 0;) {
                const uint64_t *ck = src + k * sstride + c0;
                for (size_t pj = 0; pj < np; pj++) {
                    uint64_t x = pl->points[j0 + pj], *a = acc + pj * HORNER_LANES;
                    if (x >> 32) {
                        for (size_t l = 0; l < w; l++) a[l] = fp_horner_big(a[l], x, ck[l]);
                    } else {
                        for (size_t l = 0; l < w; l++) a[l] = fp_horner_small(a[l], x, ck[l]);
                    }
                }
            }
            for (size_t pj = 0; pj < np; pj++) {
                uint64_t *o = out + (j0 + pj) * ostride + c0, *a = acc + pj * HORNER_LANES;
                for (size_t l = 0; l < w; l++) o[l] = fp_canon(a[l]);
            }
        }
    }
}

#if FP_HAVE_AVX2
/* Columns [0, cols), cols a multiple of 4. */
FP_AVX2 static void fp_horner_avx2(const fp_plan *pl, const uint64_t *src, size_t sstride,
                                   size_t cols, uint64_t *out, size_t ostride, uint64_t *acc)
{
    const size_t d = pl->d;
    const __m256i p = _mm256_set1_epi64x((long long)FP_P);
    const __m256i pm1 = _mm256_set1_epi64x((long long)(FP_P - 1));
    for (size_t c0 = 0; c0 < cols; c0 += HORNER_LANES) {
        size_t w = cols - c0 < HORNER_LANES ? cols - c0 : HORNER_LANES;
        for (size_t j0 = 0; j0 < pl->n_points; j0 += HORNER_PTS) {
            size_t np = pl->n_points - j0 < HORNER_PTS ? pl->n_points - j0 : HORNER_PTS;
            const uint64_t *top = src + d * sstride + c0;
            for (size_t pj = 0; pj < np; pj++)
                memcpy(acc + pj * HORNER_LANES, top, w * sizeof *acc);
            for (size_t k = d; k-- > 0;) {
                const uint64_t *ck = src + k * sstride + c0;
                for (size_t pj = 0; pj < np; pj++) {
                    uint64_t x = pl->points[j0 + pj], *a = acc + pj * HORNER_LANES;
                    if (x >> 32) {
                        for (size_t l = 0; l < w; l++) a[l] = fp_horner_big(a[l], x, ck[l]);
                        continue;
                    }
                    const __m256i xv = _mm256_set1_epi64x((long long)x);
                    for (size_t l = 0; l < w; l += 4) {
                        __m256i v = _mm256_loadu_si256((const __m256i *)(a + l));
                        __m256i c = _mm256_loadu_si256((const __m256i *)(ck + l));
                        _mm256_storeu_si256((__m256i *)(a + l), v_horner_small(v, xv, c, p));
                    }
                }
            }
            for (size_t pj = 0; pj < np; pj++) {
                uint64_t *o = out + (j0 + pj) * ostride + c0, *a = acc + pj * HORNER_LANES;
                for (size_t l = 0; l < w; l += 4) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(a + l));
                    _mm256_storeu_si256((__m256i *)(o + l), v_canon(v, p, pm1));
                }
            }
        }
    }
}
#endif

/* Evaluate columns [0, cols) of a coefficient block: coefficient k of
 * column i is src[k * sstride + i], all < p; out[j * ostride + i]. */
static void fp_eval_cols(const fp_plan *pl, const uint64_t *src, size_t sstride, size_t cols,
                         uint64_t *out, size_t ostride, uint64_t *acc)
{
    size_t done = 0;
    if (pl->stepping) {
#if FP_HAVE_AVX2
        if (pl->avx2) {
            fp_step_groups_avx2(pl, src, sstride, cols / 4, out, ostride);
            done = cols & ~(size_t)3;
        }
#endif
        for (size_t i = done; i < cols; i++) fp_step_lane(pl, src + i, sstride, out + i, ostride);
        return;
    }
#if FP_HAVE_AVX2
    if (pl->avx2) {
        done = cols & ~(size_t)3;
        fp_horner_avx2(pl, src, sstride, done, out, ostride, acc);
    }
#endif
    if (done < cols)
        fp_horner_scalar(pl, src + done, sstride, cols - done, out + done, ostride, acc);
}

static uint64_t *fp_alloc_acc(void)
{
    return malloc(HORNER_PTS * HORNER_LANES * sizeof(uint64_t));
}

/* ---- public kernels -------------------------------------------------- */

int mpcai_fp_add(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{
    if (n && (!a || !b || !out)) return MPCAI_ERR_NULL;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(a, n, avx2) || fp_any_unreduced(b, n, avx2)) return MPCAI_ERR_RANGE;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = a[i] + b[i];
        out[i] = s >= FP_P ? s - FP_P : s;
    }
    return MPCAI_OK;
}

int mpcai_fp_sub(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{
    if (n && (!a || !b || !out)) return MPCAI_ERR_NULL;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(a, n, avx2) || fp_any_unreduced(b, n, avx2)) return MPCAI_ERR_RANGE;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = a[i], y = b[i];
        out[i] = x - y + (x < y ? FP_P : 0);
    }
    return MPCAI_OK;
}

int mpcai_fp_mul(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{
    if (n && (!a || !b || !out)) return MPCAI_ERR_NULL;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(a, n, avx2) || fp_any_unreduced(b, n, avx2)) return MPCAI_ERR_RANGE;
    for (size_t i = 0; i < n; i++) out[i] = fp_mulmod(a[i], b[i]);
    return MPCAI_OK;
}

#define EVAL_COLS 256 /* columns per block in fp_poly_eval */

int mpcai_fp_poly_eval(const uint64_t *coeffs, size_t n_coeffs, size_t len, const uint64_t *points,
                       size_t n_points, uint64_t *out)
{
    int ok = 1;
    size_t ncoef_total = fp_mul_size(n_coeffs, len, &ok);
    fp_mul_size(n_points, len, &ok);
    if (!ok) return MPCAI_ERR_LENGTH;
    if ((ncoef_total && !coeffs) || (n_points && !points) || (n_points && len && !out))
        return MPCAI_ERR_NULL;
    if (n_coeffs == 0) return MPCAI_ERR_LENGTH;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(points, n_points, avx2)) return MPCAI_ERR_RANGE;
    if (!len || !n_points)
        return fp_any_unreduced(coeffs, ncoef_total, avx2) ? MPCAI_ERR_RANGE : MPCAI_OK;
    fp_plan pl;
    int rc = fp_plan_init(&pl, n_coeffs - 1, points, n_points, avx2);
    if (rc) return rc;
    uint64_t *acc = fp_alloc_acc();
    if (!acc) {
        fp_plan_free(&pl);
        return MPCAI_ERR_NOMEM;
    }
    for (size_t c0 = 0; c0 < len; c0 += EVAL_COLS) {
        size_t w = len - c0 < EVAL_COLS ? len - c0 : EVAL_COLS;
        if (fp_any_unreduced_block(coeffs + c0, len, n_coeffs, w, avx2)) {
            rc = MPCAI_ERR_RANGE; /* out partly written: see the file comment */
            break;
        }
        fp_eval_cols(&pl, coeffs + c0, len, w, out + c0, len, acc);
    }
    free(acc);
    fp_plan_free(&pl);
    return rc;
}

#define SHARE_BLOCK_WORDS 2048 /* coefficients per block (x 2 buffers) */
#define SHARE_BLOCK_MAX 256

int mpcai_fp_shamir_share(const uint64_t *secret, size_t len, const uint8_t *seed, size_t seed_len,
                          size_t degree, const uint64_t *points, size_t n_points, uint64_t *out)
{
    int ok = 1;
    fp_mul_size(n_points, len, &ok);
    size_t nrand = fp_mul_size(len, degree, &ok);
    if (!ok || degree == SIZE_MAX) return MPCAI_ERR_LENGTH;
    if ((len && !secret) || !seed || (n_points && !points) || (n_points && len && !out))
        return MPCAI_ERR_NULL;
    if (seed_len != 32) return MPCAI_ERR_LENGTH;
    if ((uint64_t)nrand > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(secret, len, avx2) || fp_any_unreduced(points, n_points, avx2))
        return MPCAI_ERR_RANGE;
    if (!len || !n_points) return MPCAI_OK;

    const size_t ncoef = degree + 1;
    size_t B = SHARE_BLOCK_WORDS / ncoef;
    if (B > SHARE_BLOCK_MAX) B = SHARE_BLOCK_MAX;
    B &= ~(size_t)3;
    if (B < 4) B = 4;
    if (B > len) B = len;
    if (ncoef > SIZE_MAX / B / 2 / sizeof(uint64_t)) return MPCAI_ERR_LENGTH;

    fp_plan pl;
    int rc = fp_plan_init(&pl, degree, points, n_points, avx2);
    if (rc) return rc;
    uint64_t *rbuf = malloc((degree ? B * degree : 1) * sizeof *rbuf);
    uint64_t *ct = malloc(B * ncoef * sizeof *ct);
    uint64_t *acc = fp_alloc_acc();
    fp_stream *st = malloc(sizeof *st);
    if (!rbuf || !ct || !acc || !st) {
        rc = MPCAI_ERR_NOMEM;
        goto done;
    }
    fp_stream_init(st, seed, pl.avx2);
    for (size_t i0 = 0; i0 < len; i0 += B) {
        size_t b = len - i0 < B ? len - i0 : B;
        rc = fp_stream_read(st, rbuf, b * degree);
        if (rc) goto done;
        /* coefficient-major block: row 0 = secrets, row k = coefficient k */
        memcpy(ct, secret + i0, b * sizeof *ct);
        for (size_t i = 0; i < b; i++) {
            const uint64_t *r = rbuf + i * degree;
            for (size_t k = 0; k < degree; k++) ct[(k + 1) * B + i] = r[k];
        }
        fp_eval_cols(&pl, ct, B, b, out + i0, len, acc);
    }
done:
    free(st);
    free(acc);
    free(ct);
    free(rbuf);
    fp_plan_free(&pl);
    return rc;
}

#define LC_COLS 256
#define LC_ROWS 32 /* products per 128-bit accumulator: < 2^122 each, so <= 64 */

/* Scalar: columns [0, cols) of the combination. */
static void fp_lincomb_scalar(const uint64_t *rows, size_t n_rows, size_t len,
                              const uint64_t *weights, uint64_t *out, size_t cols)
{
    uint64_t part[LC_COLS];
    for (size_t c0 = 0; c0 < cols; c0 += LC_COLS) {
        size_t w = cols - c0 < LC_COLS ? cols - c0 : LC_COLS;
        for (size_t j0 = 0; j0 < n_rows; j0 += LC_ROWS) {
            size_t nr = n_rows - j0 < LC_ROWS ? n_rows - j0 : LC_ROWS;
            const uint64_t *r0 = rows + j0 * len + c0;
            const uint64_t *wt = weights + j0;
            for (size_t i = 0; i < w; i++) {
                uint64_t hi = 0, lo = j0 ? part[i] : 0;
                const uint64_t *r = r0 + i;
                for (size_t j = 0; j < nr; j++) fp_mac(&hi, &lo, wt[j], r[j * len]);
                part[i] = fp_red128(hi, lo);
            }
        }
        memcpy(out + c0, part, w * sizeof *out);
    }
}

#if FP_HAVE_AVX2
#define LCV_ROWS 1024 /* two products < 2^53 + 2^50 per row: 2^10 rows fit 64 bits */

/* v <= p: v 2^e mod p is a rotation of the 61-bit word (0 < e < 61). */
FP_AVX2_INLINE __m256i v_rot61(__m256i v, int e, __m256i p)
{
    return _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi64(v, e), p),
                           _mm256_srli_epi64(v, 61 - e));
}

static inline uint64_t fp_rot61(uint64_t v, int e)
{
    return ((v << e) & FP_P) | (v >> (61 - e));
}

/* Weight limbs for the AVX2 combination, pre-broadcast: row j has 6
 * vectors, limbs b = 0, 1, 2 (21, 21, 19 bits) of w_j and then of
 * w'_j = w_j 2^32 mod p. */
static void fp_lincomb_limbs(const uint64_t *weights, size_t n_rows, uint64_t *wl)
{
    for (size_t j = 0; j < n_rows; j++) {
        uint64_t w[2] = {weights[j], fp_rot61(weights[j], 32)};
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < 3; b++) {
                uint64_t limb = (w[h] >> (21 * b)) & (((uint64_t)1 << 21) - 1);
                for (int l = 0; l < 4; l++) wl[24 * j + 4 * (3 * h + b) + l] = limb;
            }
    }
}

/* nv groups of 4 columns.  With r = r0 + r1 2^32 (32-bit halves),
 *   r w = r0 w + r1 w'  (mod p),  w' = w 2^32 mod p,
 * and w, w' split into limbs of 2^0, 2^21, 2^42, every limb product is
 * < 2^53 and the products of equal limb weight are summed lazily in one
 * 64-bit lane (T_b); at the end T_0 + T_1 2^21 + T_2 2^42 with the shifts
 * as 61-bit rotations.  tot (<= p) carries over row chunks.  The range
 * check is fused (bits 61+ of r | (r + 1), OR-ed into *bad), so the rows
 * are read once. */
FP_AVX2_INLINE void fp_lincomb_cols_avx2(const int nv, const uint64_t *rows, size_t n_rows,
                                         size_t len, const uint64_t *wl, uint64_t *out,
                                         __m256i *bad)
{
    const __m256i p = _mm256_set1_epi64x((long long)FP_P);
    const __m256i pm1 = _mm256_set1_epi64x((long long)(FP_P - 1));
    const __m256i one = _mm256_set1_epi64x(1);
    __m256i chk = _mm256_setzero_si256();
    __m256i tot[2];
    for (int v = 0; v < nv; v++) tot[v] = _mm256_setzero_si256();
    for (size_t j0 = 0; j0 < n_rows; j0 += LCV_ROWS) {
        size_t nr = n_rows - j0 < LCV_ROWS ? n_rows - j0 : LCV_ROWS;
        const uint64_t *r = rows + j0 * len;
        const uint64_t *w = wl + 24 * j0;
        __m256i t0[2], t1[2], t2[2];
        for (int v = 0; v < nv; v++) t0[v] = t1[v] = t2[v] = _mm256_setzero_si256();
        for (size_t j = 0; j < nr; j++, r += len, w += 24) {
            for (int v = 0; v < nv; v++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(r + 4 * v));
                __m256i xh = _mm256_srli_epi64(x, 32);
                chk = _mm256_or_si256(chk, _mm256_or_si256(x, _mm256_add_epi64(x, one)));
                __m256i a0 = _mm256_mul_epu32(x, _mm256_loadu_si256((const __m256i *)w));
                __m256i a1 = _mm256_mul_epu32(x, _mm256_loadu_si256((const __m256i *)(w + 4)));
                __m256i a2 = _mm256_mul_epu32(x, _mm256_loadu_si256((const __m256i *)(w + 8)));
                __m256i b0 = _mm256_mul_epu32(xh, _mm256_loadu_si256((const __m256i *)(w + 12)));
                __m256i b1 = _mm256_mul_epu32(xh, _mm256_loadu_si256((const __m256i *)(w + 16)));
                __m256i b2 = _mm256_mul_epu32(xh, _mm256_loadu_si256((const __m256i *)(w + 20)));
                t0[v] = _mm256_add_epi64(t0[v], _mm256_add_epi64(a0, b0));
                t1[v] = _mm256_add_epi64(t1[v], _mm256_add_epi64(a1, b1));
                t2[v] = _mm256_add_epi64(t2[v], _mm256_add_epi64(a2, b2));
            }
        }
        for (int v = 0; v < nv; v++) {
            /* fold twice: <= p; four terms <= p each: < 2^63 */
            __m256i acc = _mm256_add_epi64(tot[v], v_fold(v_fold(t0[v], p), p));
            acc = _mm256_add_epi64(acc, v_rot61(v_fold(v_fold(t1[v], p), p), 21, p));
            acc = _mm256_add_epi64(acc, v_rot61(v_fold(v_fold(t2[v], p), p), 42, p));
            tot[v] = v_canon(acc, p, pm1);
        }
    }
    for (int v = 0; v < nv; v++) _mm256_storeu_si256((__m256i *)(out + 4 * v), tot[v]);
    *bad = _mm256_or_si256(*bad, chk);
}

/* Columns [0, cols), cols a multiple of 4; nonzero iff some row element
 * in them is >= p. */
FP_AVX2 static int fp_lincomb_avx2(const uint64_t *rows, size_t n_rows, size_t len,
                                   const uint64_t *wl, uint64_t *out, size_t cols)
{
    __m256i bad = _mm256_setzero_si256();
    size_t c = 0;
    for (; c + 8 <= cols; c += 8)
        fp_lincomb_cols_avx2(2, rows + c, n_rows, len, wl, out + c, &bad);
    for (; c < cols; c += 4) fp_lincomb_cols_avx2(1, rows + c, n_rows, len, wl, out + c, &bad);
    bad = _mm256_srli_epi64(bad, 61);
    return !_mm256_testz_si256(bad, bad);
}
#endif

int mpcai_fp_lincomb(const uint64_t *rows, size_t n_rows, size_t len, const uint64_t *weights,
                     uint64_t *out)
{
    int ok = 1;
    size_t total = fp_mul_size(n_rows, len, &ok);
    if (!ok) return MPCAI_ERR_LENGTH;
    if ((total && !rows) || (n_rows && !weights) || (len && !out)) return MPCAI_ERR_NULL;
    int avx2 = fp_use_avx2();
    if (fp_any_unreduced(weights, n_rows, avx2)) return MPCAI_ERR_RANGE;
    if (!len) return MPCAI_OK;
    if (!n_rows) {
        memset(out, 0, len * sizeof *out);
        return MPCAI_OK;
    }
    uint64_t *wl = NULL;
#if FP_HAVE_AVX2
    if (avx2 && n_rows <= SIZE_MAX / 24 / sizeof(uint64_t)) {
        wl = malloc(n_rows * 24 * sizeof(uint64_t));
        if (!wl) return MPCAI_ERR_NOMEM;
        fp_lincomb_limbs(weights, n_rows, wl);
    }
#endif
    int rc = MPCAI_OK;
    size_t done = 0;
#if FP_HAVE_AVX2
    if (wl) {
        done = len & ~(size_t)3;
        if (fp_lincomb_avx2(rows, n_rows, len, wl, out, done)) rc = MPCAI_ERR_RANGE;
    }
#endif
    /* scalar path / tail columns: check each block, then combine it */
    for (size_t c0 = done; c0 < len && rc == MPCAI_OK; c0 += LC_COLS) {
        size_t w = len - c0 < LC_COLS ? len - c0 : LC_COLS;
        if (fp_any_unreduced_block(rows + c0, len, n_rows, w, avx2))
            rc = MPCAI_ERR_RANGE; /* out partly written: see the file comment */
        else
            fp_lincomb_scalar(rows + c0, n_rows, len, weights, out + c0, w);
    }
    free(wl);
    return rc;
}
