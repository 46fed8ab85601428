/*
 * _dispatch.h -- internal: the one SIMD switch of the native core.
 *
 * Not part of the API (mpcai_native.h is).  Every kernel file includes this
 * header and asks mpcai_internal_simd_level() (or the shorthands below)
 * which path to take; the answer is decided once from CPU features (and the
 * MPCAI_SIMD environment variable, which can only lower it) and changed only
 * by the public mpcai_simd_select() (dispatch.c), so tests compare the
 * paths in-process.
 *
 * Levels: 0 = portable scalar, 1 = AVX2, 2 = AVX-512 (F, DQ, BW, VL: every
 * AVX-512 CPU since Skylake-SP has all four).  Level 2 kernels may call the
 * level-1 ones (e.g. the GF(p) arithmetic has no AVX-512 variant and uses
 * AVX2 on level 2 too).
 * The function has hidden visibility: it links across the .c files of the
 * extension but is not exported from the shared object (only mpcai_
 * functions declared in mpcai_native.h are).
 */
#ifndef MPCAI_DISPATCH_H
#define MPCAI_DISPATCH_H

/* MPCAI_HAVE_AVX2: the AVX2 paths are compiled in (per function, with
 * target attributes; the baseline ISA stays portable).  Building with
 * -DMPCAI_HAVE_AVX2=0 (MPCAI_EXTRA_CFLAGS) leaves only the portable paths. */
#ifndef MPCAI_HAVE_AVX2
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MPCAI_HAVE_AVX2 1
#else
#define MPCAI_HAVE_AVX2 0
#endif
#endif

/* MPCAI_HAVE_AVX512: the AVX-512 paths are compiled in (same mechanism;
 * -DMPCAI_HAVE_AVX512=0 leaves them out).  They need the AVX2 ones. */
#ifndef MPCAI_HAVE_AVX512
#define MPCAI_HAVE_AVX512 MPCAI_HAVE_AVX2
#endif
#if MPCAI_HAVE_AVX512 && !MPCAI_HAVE_AVX2
#error "MPCAI_HAVE_AVX512 needs MPCAI_HAVE_AVX2"
#endif

#if MPCAI_HAVE_AVX2
#include <immintrin.h>
#endif

/* The target attribute string of every AVX-512 function. */
#define MPCAI_AVX512_TARGET "avx2,avx512f,avx512dq,avx512bw,avx512vl"

#define MPCAI_LEVEL_SCALAR 0
#define MPCAI_LEVEL_AVX2 1
#define MPCAI_LEVEL_AVX512 2

#if defined(__GNUC__) || defined(__clang__)
#define MPCAI_INTERNAL __attribute__((visibility("hidden")))
#else
#define MPCAI_INTERNAL
#endif

/* The level in effect (0, 1 or 2): compiled in, supported by the CPU and
 * the OS (XGETBV), not capped by MPCAI_SIMD or mpcai_simd_select().  Cheap:
 * one load after the first call.  Safe to call from any thread. */
MPCAI_INTERNAL int mpcai_internal_simd_level(void);

/* 1 if the AVX2 kernels are to be used (level >= 1), else 0. */
MPCAI_INTERNAL int mpcai_internal_use_avx2(void);

#endif /* MPCAI_DISPATCH_H */
