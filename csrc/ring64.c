/*
 * ring64.c -- Z_2^64 kernels: C = A B mod 2^64 (uint64 GEMM).
 *
 * numpy's integer matmul has no BLAS behind it, so this is a packed,
 * cache-blocked GEMM (Goto/BLIS loop order) with a register-blocked AVX2
 * micro-kernel and a portable scalar fallback.  Every path computes the
 * exact product modulo 2^64, so the output is bit-identical on all of them.
 *
 * AVX2 has no 64 x 64 -> 64 multiply.  Write a = ah 2^32 + al; then
 *   a b mod 2^64 = al bl + ((al bh + ah bl) mod 2^32) 2^32.
 * vpmuludq gives al bl (full 64 bits) per 64-bit lane; vpmulld on the
 * 32-bit halves of a lane holding (bl, bh) times a lane holding (ah, al)
 * gives (ah bl, al bh) mod 2^32 -- both cross terms in one instruction.
 * So each output keeps two accumulators, ll (64-bit lanes) and cx (32-bit
 * lanes), combined once per tile: C = ll + ((cx_lo + cx_hi) << 32).  That
 * is 2 multiplies + 2 adds per 4 multiply-adds.
 *
 * Register tile: 4 x 4 outputs as four vectors of the 2 x 2 blocks
 * (rows r, r+1) x (columns c, c+2) / (c+1, c+3).  A is packed per k as
 * [a_r, a_r+1, rot(a_r), rot(a_r+1)] so both operands are one 128-bit
 * broadcast each (vbroadcasti128 is a pure load on current x86; a 64-bit
 * vpbroadcastq costs a vector ALU op on Zen), and B is packed per k as
 * [b_c, b_c, b_c+2, b_c+2, b_c+1, b_c+1, b_c+3, b_c+3].  rot() swaps the
 * 32-bit halves.  The 2 x 2 blocks go back to rows with unpack{lo,hi}.
 *
 * A with fewer than 4 rows (e.g. a vector times a matrix) skips packing
 * and runs a row loop compiled for AVX2 (or AVX-512).
 *
 * AVX-512 (DQ) has the 64 x 64 -> 64 multiply, vpmullq: its micro-kernel
 * is a plain 12 x 16 multiply-add tile (see the AVX-512 section).
 *
 * Path selection: the one SIMD switch of dispatch.c -- AVX-512 or AVX2 when
 * the CPU supports it, unless mpcai_simd_select() chose a lower level
 * (checked on every call, so tests compare the paths in-process).
 *
 * Single-threaded.  C must not overlap A or B (MPCAI_ERR_ARG if it does).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpcai_native.h"
#include "_dispatch.h"

#if defined(_MSC_VER)
#define R64_RESTRICT __restrict
#else
#define R64_RESTRICT restrict
#endif

/* ---- path selection -------------------------------------------------- */

static int simd_level(void) { return mpcai_internal_simd_level(); }

/* ---- scalar path ------------------------------------------------------ */

/* C row segments of SC_NB words stay in L1; B blocks of SC_KB rows x SC_NB
 * columns stay in L2.  The inner loop is a plain multiply-add that the
 * compiler may vectorise for the target ISA.  The same source is compiled
 * twice: for the baseline ISA (the portable path) and, below, for AVX2
 * (used when A has fewer than ROWS_MAX_M rows: the product is then
 * memory-bound and packing would only add memory traffic). */
#define SC_NB 256
#define SC_KB 128

#define GEMM_ROWS_BODY                                                                      \
    for (size_t i = 0; i < m; i++) memset(c + i * n, 0, n * sizeof *c);                     \
    for (size_t jc = 0; jc < n; jc += SC_NB) {                                              \
        size_t nb = n - jc < SC_NB ? n - jc : SC_NB;                                        \
        for (size_t pc = 0; pc < k; pc += SC_KB) {                                          \
            size_t kb = k - pc < SC_KB ? k - pc : SC_KB;                                    \
            for (size_t i = 0; i < m; i++) {                                                \
                uint64_t *R64_RESTRICT ci = c + i * n + jc;                                 \
                const uint64_t *ai = a + i * k + pc;                                        \
                for (size_t l = 0; l < kb; l++) {                                           \
                    const uint64_t av = ai[l];                                              \
                    const uint64_t *R64_RESTRICT bl = b + (pc + l) * n + jc;                \
                    for (size_t j = 0; j < nb; j++) ci[j] += av * bl[j];                    \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

static void gemm_scalar(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k,
                        size_t n)
{
    GEMM_ROWS_BODY
}

/* ---- AVX2 path -------------------------------------------------------- */
#if MPCAI_HAVE_AVX2

#define MR 4    /* rows of the register tile                          */
#define NR 4    /* columns of the register tile                       */
#define KC 256  /* depth of a packed panel                            */
#define MC 64   /* rows of a packed A block (MC x KC, 2 words each)   */
#define NC 1024 /* columns of a packed B panel (KC x NC, 2 words each) */
#define ROWS_MAX_M 4 /* fewer rows of A than this: unpacked row loop    */

#define AVX2_FN __attribute__((target("avx2"))) static

AVX2_FN void gemm_rows_avx2(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m,
                            size_t k, size_t n)
{
    GEMM_ROWS_BODY
}

static inline uint64_t rot32(uint64_t x) { return (x >> 32) | (x << 32); }

/* Pack rows [0, mc) x depth [0, kc) of A (leading dimension lda) into
 * strips of MR rows: per k, for each row pair, [a_r, a_r+1, rot a_r,
 * rot a_r+1].  Rows past mc are zero. */
static void pack_a(const uint64_t *a, size_t lda, size_t mc, size_t kc, uint64_t *pa)
{
    for (size_t i0 = 0; i0 < mc; i0 += MR) {
        const uint64_t *rows[MR];
        size_t live = mc - i0 < MR ? mc - i0 : MR;
        for (size_t r = 0; r < MR; r++) rows[r] = r < live ? a + (i0 + r) * lda : NULL;
        for (size_t p = 0; p < kc; p++) {
            for (size_t r = 0; r < MR; r += 2) {
                uint64_t x0 = rows[r] ? rows[r][p] : 0;
                uint64_t x1 = rows[r + 1] ? rows[r + 1][p] : 0;
                pa[0] = x0;
                pa[1] = x1;
                pa[2] = rot32(x0);
                pa[3] = rot32(x1);
                pa += 4;
            }
        }
    }
}

/* Pack depth [0, kc) x columns [0, nc) of B (leading dimension ldb) into
 * strips of NR columns: per k, [b0, b0, b2, b2, b1, b1, b3, b3].  Columns
 * past nc are zero. */
AVX2_FN void pack_b(const uint64_t *b, size_t ldb, size_t kc, size_t nc, uint64_t *pb)
{
    size_t full = nc / NR * NR;
    for (size_t p = 0; p < kc; p++) {
        const uint64_t *row = b + p * ldb;
        uint64_t *dst = pb + p * 2 * NR;
        size_t j0 = 0;
        for (; j0 < full; j0 += NR, dst += 2 * NR * kc) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(row + j0));
            _mm256_store_si256((__m256i *)dst, _mm256_permute4x64_epi64(v, 0xA0));
            _mm256_store_si256((__m256i *)(dst + 4), _mm256_permute4x64_epi64(v, 0xF5));
        }
        if (j0 < nc) {
            uint64_t t[NR] = {0};
            for (size_t j = j0; j < nc; j++) t[j - j0] = row[j];
            dst[0] = dst[1] = t[0];
            dst[2] = dst[3] = t[2];
            dst[4] = dst[5] = t[1];
            dst[6] = dst[7] = t[3];
        }
    }
}

/* The k loop of one MR x NR tile, in inline assembly: compilers spill or
 * shuffle the eight accumulators of the intrinsics version.  Accumulators
 * ymm4..ymm7 = ll00 ll01 ll10 ll11 and ymm8..ymm11 = cx00 cx01 cx10 cx11
 * (first digit: row pair, second: B vector); they are stored to acc[8]. */
#define R64_STEP(O)                                                        \
    "vmovdqa " #O "(%[pb]), %%ymm0\n\t"                                    \
    "vmovdqa " #O "+32(%[pb]), %%ymm1\n\t"                                 \
    "vbroadcasti128 " #O "(%[pa]), %%ymm2\n\t"                             \
    "vbroadcasti128 " #O "+16(%[pa]), %%ymm3\n\t"                          \
    "vpmuludq %%ymm0, %%ymm2, %%ymm12\n\t"                                 \
    "vpmuludq %%ymm1, %%ymm2, %%ymm13\n\t"                                 \
    "vpmulld %%ymm0, %%ymm3, %%ymm14\n\t"                                  \
    "vpmulld %%ymm1, %%ymm3, %%ymm15\n\t"                                  \
    "vpaddq %%ymm12, %%ymm4, %%ymm4\n\t"                                   \
    "vpaddq %%ymm13, %%ymm5, %%ymm5\n\t"                                   \
    "vpaddd %%ymm14, %%ymm8, %%ymm8\n\t"                                   \
    "vpaddd %%ymm15, %%ymm9, %%ymm9\n\t"                                   \
    "vbroadcasti128 " #O "+32(%[pa]), %%ymm2\n\t"                          \
    "vbroadcasti128 " #O "+48(%[pa]), %%ymm3\n\t"                          \
    "vpmuludq %%ymm0, %%ymm2, %%ymm12\n\t"                                 \
    "vpmuludq %%ymm1, %%ymm2, %%ymm13\n\t"                                 \
    "vpmulld %%ymm0, %%ymm3, %%ymm14\n\t"                                  \
    "vpmulld %%ymm1, %%ymm3, %%ymm15\n\t"                                  \
    "vpaddq %%ymm12, %%ymm6, %%ymm6\n\t"                                   \
    "vpaddq %%ymm13, %%ymm7, %%ymm7\n\t"                                   \
    "vpaddd %%ymm14, %%ymm10, %%ymm10\n\t"                                 \
    "vpaddd %%ymm15, %%ymm11, %%ymm11\n\t"

AVX2_FN void kernel_loop(size_t kc, const uint64_t *pa, const uint64_t *pb, __m256i acc[8])
{
    size_t k4 = kc / 4, kr = kc % 4;
    __asm__ volatile(
        "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"
        "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"
        "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"
        "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"
        "vpxor %%xmm8, %%xmm8, %%xmm8\n\t"
        "vpxor %%xmm9, %%xmm9, %%xmm9\n\t"
        "vpxor %%xmm10, %%xmm10, %%xmm10\n\t"
        "vpxor %%xmm11, %%xmm11, %%xmm11\n\t"
        "test %[k4], %[k4]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        R64_STEP(0) R64_STEP(64) R64_STEP(128) R64_STEP(192)
        "add $256, %[pa]\n\t"
        "add $256, %[pb]\n\t"
        "dec %[k4]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %[kr], %[kr]\n\t"
        "jz 4f\n"
        "3:\n\t"
        R64_STEP(0)
        "add $64, %[pa]\n\t"
        "add $64, %[pb]\n\t"
        "dec %[kr]\n\t"
        "jnz 3b\n"
        "4:\n\t"
        "vmovdqu %%ymm4, 0(%[acc])\n\t"
        "vmovdqu %%ymm5, 32(%[acc])\n\t"
        "vmovdqu %%ymm6, 64(%[acc])\n\t"
        "vmovdqu %%ymm7, 96(%[acc])\n\t"
        "vmovdqu %%ymm8, 128(%[acc])\n\t"
        "vmovdqu %%ymm9, 160(%[acc])\n\t"
        "vmovdqu %%ymm10, 192(%[acc])\n\t"
        "vmovdqu %%ymm11, 224(%[acc])\n\t"
        : [pa] "+r"(pa), [pb] "+r"(pb), [k4] "+r"(k4), [kr] "+r"(kr)
        : [acc] "r"(acc)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#undef R64_STEP

/* One MR x NR tile over depth kc.  c points at the tile's top-left corner
 * (leading dimension ldc); only rows < mr and columns < nr are written.
 * With accumulate == 0 the tile is stored, else added. */
AVX2_FN void kernel_4x4(size_t kc, const uint64_t *pa, const uint64_t *pb, uint64_t *c,
                        size_t ldc, size_t mr, size_t nr, int accumulate)
{
    __m256i acc[8];
    kernel_loop(kc, pa, pb, acc);
    __m256i ll00 = acc[0], ll01 = acc[1], ll10 = acc[2], ll11 = acc[3];
    const __m256i cx00 = acc[4], cx01 = acc[5], cx10 = acc[6], cx11 = acc[7];
    /* combine: lane = ll + ((cx_lo + cx_hi) << 32) */
    const __m256i hi = _mm256_set1_epi64x((long long)0xFFFFFFFF00000000ULL);
#define COMBINE(ll, cx) \
    _mm256_add_epi64(ll, _mm256_and_si256(_mm256_add_epi32(cx, _mm256_slli_epi64(cx, 32)), hi))
    ll00 = COMBINE(ll00, cx00);
    ll01 = COMBINE(ll01, cx01);
    ll10 = COMBINE(ll10, cx10);
    ll11 = COMBINE(ll11, cx11);
#undef COMBINE
    /* llX0 = (r c0, r+1 c0, r c2, r+1 c2), llX1 = (r c1, r+1 c1, r c3, r+1 c3) */
    __m256i row[MR];
    row[0] = _mm256_unpacklo_epi64(ll00, ll01);
    row[1] = _mm256_unpackhi_epi64(ll00, ll01);
    row[2] = _mm256_unpacklo_epi64(ll10, ll11);
    row[3] = _mm256_unpackhi_epi64(ll10, ll11);
    if (mr == MR && nr == NR) {
        for (size_t r = 0; r < MR; r++) {
            __m256i *d = (__m256i *)(c + r * ldc);
            if (accumulate) row[r] = _mm256_add_epi64(row[r], _mm256_loadu_si256(d));
            _mm256_storeu_si256(d, row[r]);
        }
    } else {
        uint64_t t[MR][NR];
        for (int r = 0; r < MR; r++) _mm256_storeu_si256((__m256i *)t[r], row[r]);
        for (size_t r = 0; r < mr; r++)
            for (size_t j = 0; j < nr; j++)
                c[r * ldc + j] = accumulate ? c[r * ldc + j] + t[r][j] : t[r][j];
    }
}

AVX2_FN void gemm_avx2(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k,
                       size_t n, uint64_t *pa, uint64_t *pb)
{
    for (size_t jc = 0; jc < n; jc += NC) {
        size_t nc = n - jc < NC ? n - jc : NC;
        for (size_t pc = 0; pc < k; pc += KC) {
            size_t kc = k - pc < KC ? k - pc : KC;
            pack_b(b + pc * n + jc, n, kc, nc, pb);
            for (size_t ic = 0; ic < m; ic += MC) {
                size_t mc = m - ic < MC ? m - ic : MC;
                pack_a(a + ic * k + pc, k, mc, kc, pa);
                for (size_t jr = 0; jr < nc; jr += NR) {
                    size_t nr = nc - jr < NR ? nc - jr : NR;
                    const uint64_t *pbs = pb + jr * 2 * kc;
                    for (size_t ir = 0; ir < mc; ir += MR) {
                        size_t mr = mc - ir < MR ? mc - ir : MR;
                        kernel_4x4(kc, pa + ir * 2 * kc, pbs, c + (ic + ir) * n + jc + jr, n, mr,
                                   nr, pc != 0);
                    }
                }
            }
        }
    }
}
#endif /* MPCAI_HAVE_AVX2 */

/* ---- AVX-512 path ----------------------------------------------------- */
#if MPCAI_HAVE_AVX512
/* vpmullq (AVX-512DQ) is a 64 x 64 -> 64 multiply per lane: the product
 * mod 2^64 in one instruction.  Register tile Z_MR x Z_NR = 12 x 16: 24
 * zmm accumulators (12 rows x 2 vectors of 8 columns), 2 B vectors and the
 * broadcast A element; per k, 24 vpmullq + 24 vpaddq.  A is packed per k
 * as the Z_MR values of a row strip, B per k as the Z_NR values of a
 * column strip (both zero-padded), so the kernel reads both sequentially. */
#define Z_MR 12
#define Z_NR 16
#define Z_KC 256
#define Z_MC 96
#define Z_NC 2048
#define AVX512_FN __attribute__((target(MPCAI_AVX512_TARGET))) static

/* The unpacked row loop (m < ROWS_MAX_M) compiled for AVX-512: the
 * compiler vectorises its multiply-add with vpmullq. */
AVX512_FN void gemm_rows_avx512(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m,
                                size_t k, size_t n)
{
    GEMM_ROWS_BODY
}

/* Rows [0, mc) x depth [0, kc) of A into strips of Z_MR rows (per k, the
 * Z_MR values of the strip; rows past mc are zero). */
static void z_pack_a(const uint64_t *a, size_t lda, size_t mc, size_t kc, uint64_t *pa)
{
    for (size_t i0 = 0; i0 < mc; i0 += Z_MR) {
        size_t live = mc - i0 < Z_MR ? mc - i0 : Z_MR;
        for (size_t p = 0; p < kc; p++) {
            size_t r = 0;
            for (; r < live; r++) pa[r] = a[(i0 + r) * lda + p];
            for (; r < Z_MR; r++) pa[r] = 0;
            pa += Z_MR;
        }
    }
}

/* Depth [0, kc) x columns [0, nc) of B into strips of Z_NR columns (per
 * k, the Z_NR values of the strip; columns past nc are zero). */
AVX512_FN void z_pack_b(const uint64_t *b, size_t ldb, size_t kc, size_t nc, uint64_t *pb)
{
    for (size_t j0 = 0; j0 < nc; j0 += Z_NR, pb += Z_NR * kc) {
        size_t live = nc - j0 < Z_NR ? nc - j0 : Z_NR;
        __mmask8 m0 = (__mmask8)(live >= 8 ? 0xFF : (1u << live) - 1);
        __mmask8 m1 = (__mmask8)(live >= 16 ? 0xFF : live <= 8 ? 0 : (1u << (live - 8)) - 1);
        for (size_t p = 0; p < kc; p++) {
            const uint64_t *row = b + p * ldb + j0;
            _mm512_store_si512((void *)(pb + p * Z_NR), _mm512_maskz_loadu_epi64(m0, row));
            _mm512_store_si512((void *)(pb + p * Z_NR + 8), _mm512_maskz_loadu_epi64(m1, row + 8));
        }
    }
}

/* One Z_MR x Z_NR tile over depth kc.  c points at the tile's top-left
 * corner (leading dimension ldc); only rows < mr and columns < nr are
 * written; with accumulate == 0 the tile is stored, else added. */
AVX512_FN void z_kernel(size_t kc, const uint64_t *pa, const uint64_t *pb, uint64_t *c,
                        size_t ldc, size_t mr, size_t nr, int accumulate)
{
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m512i c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
    __m512i c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    for (size_t p = 0; p < kc; p++, pa += Z_MR, pb += Z_NR) {
        const __m512i b0 = _mm512_load_si512((const void *)pb);
        const __m512i b1 = _mm512_load_si512((const void *)(pb + 8));
        __m512i a;
#define Z_ROW(r, x0, x1)                                                   \
        a = _mm512_set1_epi64((long long)pa[r]);                           \
        x0 = _mm512_add_epi64(x0, _mm512_mullo_epi64(a, b0));              \
        x1 = _mm512_add_epi64(x1, _mm512_mullo_epi64(a, b1));
        Z_ROW(0, c00, c01) Z_ROW(1, c10, c11) Z_ROW(2, c20, c21) Z_ROW(3, c30, c31)
        Z_ROW(4, c40, c41) Z_ROW(5, c50, c51) Z_ROW(6, c60, c61) Z_ROW(7, c70, c71)
        Z_ROW(8, c80, c81) Z_ROW(9, c90, c91) Z_ROW(10, ca0, ca1) Z_ROW(11, cb0, cb1)
#undef Z_ROW
    }
    __m512i t[Z_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41},
                          {c50, c51}, {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91},
                          {ca0, ca1}, {cb0, cb1}};
    __mmask8 m0 = (__mmask8)(nr >= 8 ? 0xFF : (1u << nr) - 1);
    __mmask8 m1 = (__mmask8)(nr >= 16 ? 0xFF : nr <= 8 ? 0 : (1u << (nr - 8)) - 1);
    for (size_t r = 0; r < mr; r++) {
        uint64_t *d = c + r * ldc;
        __m512i v0 = t[r][0], v1 = t[r][1];
        if (accumulate) {
            v0 = _mm512_add_epi64(v0, _mm512_maskz_loadu_epi64(m0, d));
            v1 = _mm512_add_epi64(v1, _mm512_maskz_loadu_epi64(m1, d + 8));
        }
        _mm512_mask_storeu_epi64(d, m0, v0);
        _mm512_mask_storeu_epi64(d + 8, m1, v1);
    }
}

AVX512_FN void gemm_avx512(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k,
                           size_t n, uint64_t *pa, uint64_t *pb)
{
    for (size_t jc = 0; jc < n; jc += Z_NC) {
        size_t nc = n - jc < Z_NC ? n - jc : Z_NC;
        for (size_t pc = 0; pc < k; pc += Z_KC) {
            size_t kc = k - pc < Z_KC ? k - pc : Z_KC;
            z_pack_b(b + pc * n + jc, n, kc, nc, pb);
            for (size_t ic = 0; ic < m; ic += Z_MC) {
                size_t mc = m - ic < Z_MC ? m - ic : Z_MC;
                z_pack_a(a + ic * k + pc, k, mc, kc, pa);
                for (size_t jr = 0; jr < nc; jr += Z_NR) {
                    size_t nr = nc - jr < Z_NR ? nc - jr : Z_NR;
                    const uint64_t *pbs = pb + jr * kc;
                    for (size_t ir = 0; ir < mc; ir += Z_MR) {
                        size_t mr = mc - ir < Z_MR ? mc - ir : Z_MR;
                        z_kernel(kc, pa + ir * kc, pbs, c + (ic + ir) * n + jc + jr, n, mr, nr,
                                 pc != 0);
                    }
                }
            }
        }
    }
}
#endif /* MPCAI_HAVE_AVX512 */

/* ---- public entry point ------------------------------------------------ */

static int mul_overflows(size_t x, size_t y) { return y != 0 && x > SIZE_MAX / y; }

static int overlaps(const uint64_t *p, size_t np, const uint64_t *q, size_t nq)
{
    uintptr_t p0 = (uintptr_t)p, q0 = (uintptr_t)q;
    return np && nq && p0 < q0 + nq * sizeof *q && q0 < p0 + np * sizeof *p;
}

int mpcai_ring64_gemm(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k,
                      size_t n)
{
    if (mul_overflows(m, k) || mul_overflows(k, n) || mul_overflows(m, n) ||
        mul_overflows(m * n, sizeof *c) || mul_overflows(m * k, sizeof *a) ||
        mul_overflows(k * n, sizeof *b))
        return MPCAI_ERR_LENGTH;
    if ((!a && m * k != 0) || (!b && k * n != 0) || (!c && m * n != 0)) return MPCAI_ERR_NULL;
    if (overlaps(c, m * n, a, m * k) || overlaps(c, m * n, b, k * n)) return MPCAI_ERR_ARG;
    if (m * n == 0) return MPCAI_OK;
    if (k == 0) {
        memset(c, 0, m * n * sizeof *c);
        return MPCAI_OK;
    }
#if MPCAI_HAVE_AVX2
    const int level = simd_level(), avx2 = level >= MPCAI_LEVEL_AVX2;
    if (avx2 && m < ROWS_MAX_M) {
#if MPCAI_HAVE_AVX512
        if (level >= MPCAI_LEVEL_AVX512) {
            gemm_rows_avx512(a, b, c, m, k, n);
            return MPCAI_OK;
        }
#endif
        gemm_rows_avx2(a, b, c, m, k, n);
        return MPCAI_OK;
    }
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        size_t kc = k < Z_KC ? k : Z_KC;
        size_t mc = m < Z_MC ? m : Z_MC, nc = n < Z_NC ? n : Z_NC;
        size_t na = (mc + Z_MR - 1) / Z_MR * Z_MR * kc, nb = (nc + Z_NR - 1) / Z_NR * Z_NR * kc;
        na = (na + 7) & ~(size_t)7; /* keep the B panel 64-byte aligned */
        unsigned char *raw = malloc((na + nb) * sizeof(uint64_t) + 64);
        if (!raw) return MPCAI_ERR_NOMEM;
        uint64_t *buf = (uint64_t *)(raw + (64 - (uintptr_t)raw % 64)); /* 64-byte aligned */
        gemm_avx512(a, b, c, m, k, n, buf, buf + na);
        free(raw);
        return MPCAI_OK;
    }
#endif
    if (avx2) {
        size_t kc = k < KC ? k : KC;
        size_t mc = m < MC ? m : MC, nc = n < NC ? n : NC;
        size_t na = (mc + MR - 1) / MR * MR * 2 * kc, nb = (nc + NR - 1) / NR * NR * 2 * kc;
        unsigned char *raw = malloc((na + nb) * sizeof(uint64_t) + 64);
        if (!raw) return MPCAI_ERR_NOMEM;
        uint64_t *buf = (uint64_t *)(raw + (64 - (uintptr_t)raw % 64)); /* 64-byte aligned */
        gemm_avx2(a, b, c, m, k, n, buf, buf + na);
        free(raw);
        return MPCAI_OK;
    }
#else
    (void)simd_level;
#endif
    gemm_scalar(a, b, c, m, k, n);
    return MPCAI_OK;
}
