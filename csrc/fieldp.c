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
 * The fused Shamir kernel streams the random coefficients with the
 * field-element reader of _chacha_core.h (the exact stream of
 * mpcai_prg_fieldp: ChaCha20, key = seed, nonce = 0, counter from 0,
 * candidates w_j & (2^61 - 1), rejected iff equal to p), a block of
 * elements at a time, transposes the block to coefficient-major order in
 * L1/L2 and evaluates it at every point before moving on.  Split over
 * threads, each thread starts its reader where its portion begins if no
 * earlier candidate was rejected, and a rejection before the last portion
 * is repaired exactly after the join (see shamir_share_impl).
 *
 * Paths: AVX2 (4 lanes of 64 bits; function-level target attribute) when
 * the CPU supports it, else portable scalar, chosen on every call by the
 * one SIMD switch of dispatch.c (mpcai_simd_select), so tests compare the
 * paths in-process.  The AVX-512 level uses the AVX2 arithmetic here; only
 * the coefficient stream (the ChaCha20 reader) has 17-block AVX-512 code.
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

#ifndef _WIN32
#include <pthread.h>
#endif

#include "mpcai_native.h"
#include "_dispatch.h"
#include "_chacha_core.h"

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

/* The one switch of dispatch.c (mpcai_simd_select). */
static int fp_use_avx2(void) { return mpcai_internal_use_avx2(); }

#if MPCAI_HAVE_AVX2
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

#if MPCAI_HAVE_AVX2
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
#if MPCAI_HAVE_AVX2
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

#if MPCAI_HAVE_AVX2
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

#if MPCAI_HAVE_AVX2
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
#if MPCAI_HAVE_AVX2
        if (pl->avx2) {
            fp_step_groups_avx2(pl, src, sstride, cols / 4, out, ostride);
            done = cols & ~(size_t)3;
        }
#endif
        for (size_t i = done; i < cols; i++) fp_step_lane(pl, src + i, sstride, out + i, ostride);
        return;
    }
#if MPCAI_HAVE_AVX2
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
/* Fewer elements per thread than this: starting a thread costs more than
 * it saves (a thread start is ~ the work of a few hundred elements). */
#define SHARE_MIN_PER_THREAD ((size_t)1 << 12)

typedef struct {
    const fp_plan *pl;
    const uint64_t *secret;
    size_t len, degree, B; /* B: elements per block (columns of ct) */
    uint64_t *out;
} share_ctx;

/* One thread's portion of the elements and everything it writes to. */
typedef struct {
    const share_ctx *cx;
    size_t begin, end;        /* elements [begin, end) */
    uint64_t *rbuf, *ct, *acc; /* scratch: B x degree, (degree + 1) x B, Horner */
    chacha_fp_reader rd;      /* coefficient stream, from candidate begin * degree */
    int rc;
    char pad[64];             /* keeps neighbouring jobs off each other's cache lines */
} share_job;

/* Shares of elements [begin, end), their coefficients read from rd. */
static int share_range(const share_ctx *cx, chacha_fp_reader *rd, size_t begin, size_t end,
                       uint64_t *rbuf, uint64_t *ct, uint64_t *acc)
{
    const size_t degree = cx->degree, B = cx->B;
    for (size_t i0 = begin; i0 < end; i0 += B) {
        size_t b = end - i0 < B ? end - i0 : B;
        int rc = chacha_fp_reader_read(rd, rbuf, b * degree);
        if (rc) return rc;
        /* coefficient-major block: row 0 = secrets, row k = coefficient k
         * (one loop: a separate memcpy of the secrets, a libc call per
         * block, measured 3-5% slower overall) */
        const uint64_t *sec = cx->secret + i0;
        for (size_t i = 0; i < b; i++) {
            const uint64_t *r = rbuf + i * degree;
            ct[i] = sec[i];
            for (size_t k = 0; k < degree; k++) ct[(k + 1) * B + i] = r[k];
        }
        fp_eval_cols(cx->pl, ct, B, b, cx->out + i0, cx->len, acc);
    }
    return MPCAI_OK;
}

static void *share_job_run(void *arg)
{
    share_job *j = (share_job *)arg;
    j->rc = share_range(j->cx, &j->rd, j->begin, j->end, j->rbuf, j->ct, j->acc);
    return NULL;
}

/* The Shamir kernel behind the three entry points below.
 *
 * Threads.  Element i takes candidates from index i * degree of the field
 * stream on -- if no candidate before it was rejected.  Each thread takes a
 * contiguous portion of the elements and starts its own reader at that
 * guess (block (begin * degree) / 8, word (begin * degree) % 8), and the
 * reader counts the candidates it rejects.  Thread 0's guess is exact, and
 * by induction so is the guess of every thread whose predecessors saw no
 * rejection.  After the join, if a thread other than the last saw one, its
 * reader stands exactly after its portion: the portions after it are
 * recomputed from there, sequentially (probability about
 * len * degree * 2^-61; the result is the single-threaded one either way).
 *
 * min_per_thread: 0 for the default; force/n_force: candidate indices to
 * reject as if they equalled p (tests only); info, if not NULL, receives
 * {threads used, first thread whose successors were recomputed or -1}. */
static int shamir_share_impl(const uint64_t *secret, size_t len, const uint8_t *seed,
                             size_t seed_len, size_t degree, const uint64_t *points,
                             size_t n_points, uint64_t *out, int n_threads,
                             size_t min_per_thread, const uint64_t *force, size_t n_force,
                             int *info)
{
    int ok = 1;
    fp_mul_size(n_points, len, &ok);
    size_t nrand = fp_mul_size(len, degree, &ok);
    if (info) {
        info[0] = 0;
        info[1] = -1;
    }
    if (!ok || degree == SIZE_MAX) return MPCAI_ERR_LENGTH;
    if ((len && !secret) || !seed || (n_points && !points) || (n_points && len && !out) ||
        (n_force && !force))
        return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
    if ((uint64_t)nrand > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    const int level = mpcai_internal_simd_level(); /* one level for the whole call */
    int avx2 = level >= MPCAI_LEVEL_AVX2;
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

    if (!min_per_thread) min_per_thread = SHARE_MIN_PER_THREAD;
    if ((size_t)n_threads > len / min_per_thread) n_threads = (int)(len / min_per_thread);
    if (n_threads < 1) n_threads = 1;
#ifdef _WIN32
    n_threads = 1;
#endif
    if (info) info[0] = n_threads;

    fp_plan pl;
    int rc = fp_plan_init(&pl, degree, points, n_points, avx2);
    if (rc) return rc;
    share_ctx cx = {&pl, secret, len, degree, B, out};
    share_job *jobs = calloc((size_t)n_threads, sizeof *jobs);
    if (!jobs) {
        fp_plan_free(&pl);
        return MPCAI_ERR_NOMEM;
    }
    size_t begin = 0;
    for (int t = 0; t < n_threads; t++) {
        share_job *j = &jobs[t];
        size_t count = len / (size_t)n_threads + ((size_t)t < len % (size_t)n_threads);
        j->cx = &cx;
        j->begin = begin;
        j->end = begin += count;
        j->rbuf = malloc((degree ? B * degree : 1) * sizeof *j->rbuf);
        j->ct = malloc(B * ncoef * sizeof *j->ct);
        j->acc = fp_alloc_acc();
        if (!j->rbuf || !j->ct || !j->acc) {
            rc = MPCAI_ERR_NOMEM;
            goto done;
        }
        chacha_fp_reader_init(&j->rd, seed, level, (uint64_t)j->begin * degree);
        j->rd.force = force;
        j->rd.n_force = n_force;
    }
#ifndef _WIN32
    if (n_threads > 1) {
        pthread_t tid[MPCAI_MAX_THREADS];
        int started = 0;
        for (int t = 1; t < n_threads; t++) {
            if (pthread_create(&tid[t], NULL, share_job_run, &jobs[t]) != 0) break;
            started = t;
        }
        /* run our own portion, then any portion whose thread failed to start */
        share_job_run(&jobs[0]);
        for (int t = started + 1; t < n_threads; t++) share_job_run(&jobs[t]);
        for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
    } else
#endif
        share_job_run(&jobs[0]);
    /* Portions up to and including the first with a rejection started at
     * the right candidate; the ones after it may not have. */
    for (int t = 0; t < n_threads; t++) {
        share_job *j = &jobs[t];
        rc = j->rc;
        if (rc || t == n_threads - 1) break;
        if (j->rd.rejected) {
            if (info) info[1] = t;
            rc = share_range(&cx, &j->rd, j->end, len, j->rbuf, j->ct, j->acc);
            break;
        }
    }
done:
    for (int t = 0; t < n_threads; t++) {
        free(jobs[t].rbuf);
        free(jobs[t].ct);
        free(jobs[t].acc);
    }
    free(jobs);
    fp_plan_free(&pl);
    return rc;
}

int mpcai_fp_shamir_share(const uint64_t *secret, size_t len, const uint8_t *seed, size_t seed_len,
                          size_t degree, const uint64_t *points, size_t n_points, uint64_t *out)
{
    return shamir_share_impl(secret, len, seed, seed_len, degree, points, n_points, out, 1, 0,
                             NULL, 0, NULL);
}

int mpcai_fp_shamir_share_mt(const uint64_t *secret, size_t len, const uint8_t *seed,
                             size_t seed_len, size_t degree, const uint64_t *points,
                             size_t n_points, uint64_t *out, int n_threads)
{
    return shamir_share_impl(secret, len, seed, seed_len, degree, points, n_points, out,
                             n_threads, 0, NULL, 0, NULL);
}

int mpcai_testhook_fp_shamir_share_mt(const uint64_t *secret, size_t len, const uint8_t *seed,
                                      size_t seed_len, size_t degree, const uint64_t *points,
                                      size_t n_points, uint64_t *out, int n_threads,
                                      size_t min_per_thread, const uint64_t *force,
                                      size_t n_force, int *info)
{
    return shamir_share_impl(secret, len, seed, seed_len, degree, points, n_points, out,
                             n_threads, min_per_thread, force, n_force, info);
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

#if MPCAI_HAVE_AVX2
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
#if MPCAI_HAVE_AVX2
    if (avx2 && n_rows <= SIZE_MAX / 24 / sizeof(uint64_t)) {
        wl = malloc(n_rows * 24 * sizeof(uint64_t));
        if (!wl) return MPCAI_ERR_NOMEM;
        fp_lincomb_limbs(weights, n_rows, wl);
    }
#endif
    int rc = MPCAI_OK;
    size_t done = 0;
#if MPCAI_HAVE_AVX2
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
