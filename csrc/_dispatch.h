/*
 * _dispatch.h -- internal: the one SIMD switch of the native core.
 *
 * Not part of the API (mpcai_native.h is).  Every kernel file includes this
 * header and asks mpcai_internal_use_avx2() which path to take; the answer
 * is decided once from CPU features and changed only by the public
 * mpcai_simd_select() (dispatch.c), so tests compare the paths in-process.
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
#if MPCAI_HAVE_AVX2
#include <immintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MPCAI_INTERNAL __attribute__((visibility("hidden")))
#else
#define MPCAI_INTERNAL
#endif

/* 1 if the AVX2 paths are to be used (compiled in, supported by the CPU
 * and not switched off by mpcai_simd_select(0)), else 0.  Cheap: one load
 * after the first call.  Safe to call from any thread. */
MPCAI_INTERNAL int mpcai_internal_use_avx2(void);

#endif /* MPCAI_DISPATCH_H */
