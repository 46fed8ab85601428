/*
 * quantize.c -- quantisation of floats onto the grid of mpcai.encoding.quantize,
 * times an integer weight, in one pass (secure aggregation's client step).
 *
 * For each x_i (float32 or float64, read as double -- exact):
 *   c   = min(max(x_i, -clip), clip)
 *   s   = (c + clip) * factor                 (two IEEE double roundings)
 *   q   = min(max(rint(s), 0), levels)        (rint: round half to even)
 *   out = weight * q   mod 2^32 or 2^64
 * which is numpy's np.clip / +, *= / np.rint / np.clip / astype(uint64) /
 * np.multiply, value for value: factor = levels / (2 clip) is computed by the
 * caller (Python) so that every operand is the one numpy sees.
 *
 * The clipping to [-clip, clip] is always done: in "raise" mode the output is
 * used only when no value lies outside, and then clipping changes nothing.
 * NaN ends up as level 0 (defined behaviour on every path); the caller refuses
 * it from the counts.
 *
 * Rounding without libm: s lies in [0, levels] after the clamp (clamp and rint
 * commute, the bounds being integers), levels < 2^53.  For s < 2^52, t = s + 2^52
 * lies in [2^52, 2^53], where doubles are spaced by 1, so the one rounding of
 * that addition is rint(s) (half to even: the parity of t is that of the
 * integer), and the bit pattern of t minus that of 2^52 is rint(s) as an integer
 * (the pattern is linear in the value on [2^52, 2^53], the top included).  For
 * s >= 2^52, s is an integer already and its pattern minus that of 2^51 is s.
 * So no float-to-integer conversion is needed (AVX2 has none for uint64) and
 * the loop vectorises on every path.  No multiplication feeds an addition
 * directly (the clamp stands between the product and s + 2^52), so no FMA
 * contraction can change a rounding, whatever the flags; the tests compare
 * every path with numpy bit for bit, ties made by the product's rounding
 * included.
 *
 * The counts (values outside [-clip, clip], NaNs, infinities) are integer
 * reductions of comparisons of the double values, so they are exact too.
 * The vector paths are the same loop compiled for AVX2 / AVX-512 (target
 * attributes); every path gives the same bits.
 */
#include <math.h> /* HUGE_VAL only: no libm call */
#include <stdint.h>
#include <string.h>

#include "mpcai_native.h"
#include "_dispatch.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QZ_TWO52 4503599627370496.0 /* 2^52 */
#define QZ_BITS_TWO52 0x4330000000000000ULL
#define QZ_BITS_TWO51 0x4320000000000000ULL
#define QZ_MAX_LEVELS (((uint64_t)1 << 53) - 1)
/* values per block: the counters are summed per block (a short vector loop) */
#define QZ_BLOCK 4096

typedef struct {
    uint64_t outside, nan, inf;
} qz_counts;

/* q for s in [0, levels]: `wide` (levels >= 2^52, i.e. bits = 53) takes the two cases,
 * else s < 2^52 always.  Only the low 32 bits are used for a uint32 output: they are
 * those of the pattern of t (both constants end in 32 zero bits). */
#define QZ_LEVEL(s, wide, q)                                                                 \
    do {                                                                                     \
        if (wide) {                                                                          \
            const int big_ = (s) >= QZ_TWO52;                                                \
            const double t_ = big_ ? (s) : (s) + QZ_TWO52;                                   \
            uint64_t u_;                                                                     \
            memcpy(&u_, &t_, sizeof u_);                                                     \
            (q) = u_ - (big_ ? QZ_BITS_TWO51 : QZ_BITS_TWO52);                               \
        } else {                                                                             \
            const double t_ = (s) + QZ_TWO52;                                                \
            uint64_t u_;                                                                     \
            memcpy(&u_, &t_, sizeof u_);                                                     \
            (q) = u_ - QZ_BITS_TWO52;                                                        \
        }                                                                                    \
    } while (0)

/* One body per (input type, output type, path, wide). */
#define QZ_DEFINE_ONE(NAME, IN_T, OUT_T, ATTR, WIDE)                                         \
    ATTR static void NAME(const IN_T *restrict x, size_t n, double clip, double factor,      \
                          double levels, uint64_t weight, OUT_T *restrict out,               \
                          qz_counts *counts)                                                 \
    {                                                                                        \
        const double lo = -clip, inf = HUGE_VAL;                                             \
        const OUT_T w = (OUT_T)weight; /* the product modulo 2^32 needs w mod 2^32 only */  \
        uint64_t outside = 0, nan = 0, infs = 0;                                             \
        for (size_t b = 0; b < n; b += QZ_BLOCK) {                                           \
            const size_t m = n - b < QZ_BLOCK ? n - b : QZ_BLOCK;                            \
            const IN_T *restrict xb = x + b;                                                 \
            OUT_T *restrict ob = out + b;                                                    \
            uint64_t o = 0, na = 0, in = 0;                                                  \
            for (size_t i = 0; i < m; i++) {                                                 \
                const double d = (double)xb[i];                                              \
                o += (uint64_t)((d < lo) | (d > clip));                                      \
                na += (uint64_t)(d != d);                                                    \
                in += (uint64_t)((d == inf) | (d == -inf));                                  \
                double c = d < lo ? lo : d;                                                  \
                c = c > clip ? clip : c;                                                     \
                double s = (c + clip) * factor;                                              \
                s = s > 0.0 ? s : 0.0; /* NaN -> 0 */                                        \
                s = s < levels ? s : levels;                                                 \
                uint64_t q;                                                                  \
                QZ_LEVEL(s, WIDE, q);                                                        \
                ob[i] = (OUT_T)((OUT_T)q * w);                                               \
            }                                                                                \
            outside += o;                                                                    \
            nan += na;                                                                       \
            infs += in;                                                                      \
        }                                                                                    \
        counts->outside = outside;                                                           \
        counts->nan = nan;                                                                   \
        counts->inf = infs;                                                                  \
    }

#define QZ_DEFINE(NAME, IN_T, OUT_T, ATTR)                                                   \
    QZ_DEFINE_ONE(NAME##_narrow, IN_T, OUT_T, ATTR, 0)                                       \
    QZ_DEFINE_ONE(NAME##_wide, IN_T, OUT_T, ATTR, 1)                                         \
    ATTR static void NAME(const IN_T *restrict x, size_t n, double clip, double factor,      \
                          double levels, uint64_t weight, OUT_T *restrict out,               \
                          qz_counts *counts)                                                 \
    {                                                                                        \
        if (levels >= QZ_TWO52) NAME##_wide(x, n, clip, factor, levels, weight, out, counts); \
        else NAME##_narrow(x, n, clip, factor, levels, weight, out, counts);                 \
    }

#define QZ_DEFINE_PATH(SUFFIX, ATTR)                                                         \
    QZ_DEFINE(qz_f32_u32_##SUFFIX, float, uint32_t, ATTR)                                    \
    QZ_DEFINE(qz_f32_u64_##SUFFIX, float, uint64_t, ATTR)                                    \
    QZ_DEFINE(qz_f64_u32_##SUFFIX, double, uint32_t, ATTR)                                   \
    QZ_DEFINE(qz_f64_u64_##SUFFIX, double, uint64_t, ATTR)

QZ_DEFINE_PATH(scalar, )
#if MPCAI_HAVE_AVX2
QZ_DEFINE_PATH(avx2, __attribute__((target("avx2"))))
#endif
#if MPCAI_HAVE_AVX512
QZ_DEFINE_PATH(avx512, __attribute__((target(MPCAI_AVX512_TARGET))))
#endif

/* The kernel for (input bits, output bits) on the path in effect. */
static void qz_run(int in_bits, int out_bits, const void *x, size_t n, double clip,
                   double factor, double levels, uint64_t weight, void *out, qz_counts *c)
{
    const int level = mpcai_internal_simd_level();
    (void)level;
#define QZ_CALL(SUFFIX)                                                                      \
    do {                                                                                     \
        if (in_bits == 32 && out_bits == 32)                                                 \
            qz_f32_u32_##SUFFIX(x, n, clip, factor, levels, weight, out, c);                 \
        else if (in_bits == 32)                                                              \
            qz_f32_u64_##SUFFIX(x, n, clip, factor, levels, weight, out, c);                 \
        else if (out_bits == 32)                                                             \
            qz_f64_u32_##SUFFIX(x, n, clip, factor, levels, weight, out, c);                 \
        else                                                                                 \
            qz_f64_u64_##SUFFIX(x, n, clip, factor, levels, weight, out, c);                 \
        return;                                                                              \
    } while (0)
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) QZ_CALL(avx512);
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) QZ_CALL(avx2);
#endif
    QZ_CALL(scalar);
#undef QZ_CALL
}

static int qz_entry(int in_bits, const void *x, size_t n, double clip, double factor,
                    uint64_t levels, uint64_t weight, int clip_mode, void *out, int out_bits,
                    uint64_t *counts)
{
    if ((!x && n) || (!out && n) || !counts) return MPCAI_ERR_NULL;
    if (out_bits != 32 && out_bits != 64) return MPCAI_ERR_ARG;
    if (clip_mode != 0 && clip_mode != 1) return MPCAI_ERR_ARG;
    /* finite and positive (NaN fails every comparison) */
    if (!(clip > 0.0 && clip <= 1.7976931348623157e308)) return MPCAI_ERR_ARG;
    if (!(factor > 0.0 && factor <= 1.7976931348623157e308)) return MPCAI_ERR_ARG;
    if (levels < 1 || levels > QZ_MAX_LEVELS) return MPCAI_ERR_ARG;
    qz_counts c = {0, 0, 0};
    if (n) qz_run(in_bits, out_bits, x, n, clip, factor, (double)levels, weight, out, &c);
    counts[0] = c.outside;
    counts[1] = c.nan;
    counts[2] = c.inf;
    if (c.nan || c.inf || (!clip_mode && c.outside)) return MPCAI_ERR_RANGE;
    return MPCAI_OK;
}

int mpcai_quantize_f32(const float *x, size_t n, double clip, double factor, uint64_t levels,
                       uint64_t weight, int clip_mode, void *out, int out_bits,
                       uint64_t *counts)
{
    return qz_entry(32, x, n, clip, factor, levels, weight, clip_mode, out, out_bits, counts);
}

int mpcai_quantize_f64(const double *x, size_t n, double clip, double factor, uint64_t levels,
                       uint64_t weight, int clip_mode, void *out, int out_bits,
                       uint64_t *counts)
{
    return qz_entry(64, x, n, clip, factor, levels, weight, clip_mode, out, out_bits, counts);
}
