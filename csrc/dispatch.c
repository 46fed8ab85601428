/*
 * dispatch.c -- CPU dispatch shared by every kernel (see _dispatch.h).
 *
 * One switch for chacha20.c, ring64.c and fieldp.c: AVX2 when it is
 * compiled in and the CPU supports it, unless mpcai_simd_select(0) chose
 * the portable scalar path.  Every path gives bit-identical output; the
 * switch exists so that tests and benchmarks can compare them.
 */
#include "mpcai_native.h"
#include "_dispatch.h"

/* -1: not decided yet; 0: scalar; 1: AVX2.  Written by mpcai_simd_select
 * (and once by the lazy first decision, which every thread computes the
 * same way); read by the kernels, possibly from several threads. */
static int simd_state = -1;

#if defined(__GNUC__) || defined(__clang__)
#define STATE_LOAD() __atomic_load_n(&simd_state, __ATOMIC_RELAXED)
#define STATE_STORE(v) __atomic_store_n(&simd_state, (v), __ATOMIC_RELAXED)
#else
#define STATE_LOAD() (*(volatile int *)&simd_state)
#define STATE_STORE(v) (*(volatile int *)&simd_state = (v))
#endif

int mpcai_simd_available(void)
{
#if MPCAI_HAVE_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int mpcai_simd_select(int level)
{
    int state = (level > 0) ? mpcai_simd_available() : 0;
    STATE_STORE(state);
    return state;
}

int mpcai_internal_use_avx2(void)
{
    int state = STATE_LOAD();
    if (state < 0) {
        state = mpcai_simd_available();
        STATE_STORE(state);
    }
    return state;
}
