/*
 * dispatch.c -- CPU dispatch shared by every kernel (see _dispatch.h).
 *
 * One switch for chacha20.c, ring64.c and fieldp.c: the best level that is
 * compiled in and that both the CPU (CPUID) and the OS (XGETBV: the YMM
 * state for AVX2, the opmask and ZMM states for AVX-512) support, capped
 * by the environment variable MPCAI_SIMD ("scalar", "avx2" or "avx512",
 * read once, at the first kernel call) and afterwards by
 * mpcai_simd_select().  Every path gives bit-identical output; the switch
 * exists so that tests and benchmarks can compare them.
 */
#include <stdlib.h>
#include <string.h>

#include "mpcai_native.h"
#include "_dispatch.h"

#if MPCAI_HAVE_AVX2
#include <cpuid.h>
#endif

/* -1: not decided yet; else the level in effect.  Written by
 * mpcai_simd_select (and once by the lazy first decision, which every
 * thread computes the same way); read by the kernels, possibly from
 * several threads. */
static int simd_state = -1;

#if defined(__GNUC__) || defined(__clang__)
#define LOAD_INT(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_INT(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define LOAD_INT(p) (*(volatile int *)(p))
#define STORE_INT(p, v) (*(volatile int *)(p) = (v))
#endif
#define STATE_LOAD() LOAD_INT(&simd_state)
#define STATE_STORE(v) STORE_INT(&simd_state, (v))

#if MPCAI_HAVE_AVX2
/* XCR0: which register states the OS saves on a context switch. */
static unsigned long long read_xcr0(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(ecx & bit_OSXSAVE)) return 0; /* XGETBV would fault */
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int detect_level(void)
{
    const unsigned long long xcr0 = read_xcr0();
    /* bit 1 SSE, 2 AVX (YMM upper halves); 5 opmask, 6 ZMM0-15 upper
     * halves, 7 ZMM16-31 */
    const int os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xE6) == 0xE6;
    __builtin_cpu_init();
    if (!os_ymm || !__builtin_cpu_supports("avx2")) return MPCAI_LEVEL_SCALAR;
#if MPCAI_HAVE_AVX512
    if (os_zmm && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return MPCAI_LEVEL_AVX512;
#else
    (void)os_zmm;
#endif
    return MPCAI_LEVEL_AVX2;
}
#else
static int detect_level(void) { return MPCAI_LEVEL_SCALAR; }
#endif

int mpcai_simd_available(void)
{
    static int cached = -1; /* CPU features do not change: decide once */
    int v = LOAD_INT(&cached);
    if (v < 0) {
        v = detect_level();
        STORE_INT(&cached, v);
    }
    return v;
}

/* The cap from MPCAI_SIMD; unset or unknown values do not cap. */
static int env_cap(void)
{
    const char *e = getenv("MPCAI_SIMD");
    if (!e) return MPCAI_LEVEL_AVX512;
    if (!strcmp(e, "scalar")) return MPCAI_LEVEL_SCALAR;
    if (!strcmp(e, "avx2")) return MPCAI_LEVEL_AVX2;
    return MPCAI_LEVEL_AVX512;
}

int mpcai_simd_select(int level)
{
    int avail = mpcai_simd_available();
    int state = level <= 0 ? 0 : (level < avail ? level : avail);
    STATE_STORE(state);
    return state;
}

int mpcai_internal_simd_level(void)
{
    int state = STATE_LOAD();
    if (state < 0) {
        int avail = mpcai_simd_available(), cap = env_cap();
        state = avail < cap ? avail : cap;
        STATE_STORE(state);
    }
    return state;
}

int mpcai_simd_level(void) { return mpcai_internal_simd_level(); }

int mpcai_internal_use_avx2(void) { return mpcai_internal_simd_level() >= MPCAI_LEVEL_AVX2; }
