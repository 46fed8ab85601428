/*
 * chacha20.c -- ChaCha20 (RFC 8439) keystream and the PRG built on it.
 *
 * Two paths produce bit-identical output: a portable scalar path and, on
 * x86-64 with GCC/Clang, an AVX2 path computing 9 blocks at once (8 in
 * vector registers, 1 on the scalar ALUs alongside) that is
 * chosen at run time from CPU features (mpcai_simd_select overrides it).
 *
 * PRG streams: key = 32-byte seed, nonce = 0^12, block counter from 0,
 * read as little-endian 64-bit words.  The fused accumulate kernels add the
 * words to the accumulator straight from registers; the mask never exists
 * in memory.
 */
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include "mpcai_native.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MPCAI_HAVE_AVX2 1
#include <immintrin.h>
#else
#define MPCAI_HAVE_AVX2 0
#endif

/* Blocks per group: the unit of work of the AVX2 path (and of the field
 * kernel on both paths). */
#define GROUP_BLOCKS 9
#define GROUP_WORDS (8 * GROUP_BLOCKS)

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QR(a, b, c, d)                                                    \
    do {                                                                  \
        a += b; d ^= a; d = ROTL32(d, 16);                                \
        c += d; b ^= c; b = ROTL32(b, 12);                                \
        a += b; d ^= a; d = ROTL32(d, 8);                                 \
        c += d; b ^= c; b = ROTL32(b, 7);                                 \
    } while (0)

static const uint64_t P61 = MPCAI_FIELD_P;

static uint32_t load32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void store32_le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void chacha_init(uint32_t st[16], const uint8_t key[32], const uint8_t nonce[12])
{
    st[0] = 0x61707865u;
    st[1] = 0x3320646eu;
    st[2] = 0x79622d32u;
    st[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) st[4 + i] = load32_le(key + 4 * i);
    st[12] = 0;
    for (int i = 0; i < 3; i++) st[13 + i] = load32_le(nonce + 4 * i);
}

/* One 64-byte block as 16 words (host order) for block counter ctr. */
static void chacha_block(const uint32_t st[16], uint32_t ctr, uint32_t out[16])
{
    uint32_t x[16];
    memcpy(x, st, sizeof x);
    x[12] = ctr;
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + st[i];
    out[12] = x[12] + ctr;
}

/* ---- AVX2: 8 blocks at once ------------------------------------------ */
#if MPCAI_HAVE_AVX2
#define AVX2_FN __attribute__((target("avx2"))) static inline

#define VROT16(v) _mm256_shuffle_epi8(v, rot16)
#define VROT8(v) _mm256_shuffle_epi8(v, rot8)
#define VROTL(v, n) _mm256_or_si256(_mm256_slli_epi32(v, n), _mm256_srli_epi32(v, 32 - (n)))
#define VQR(a, b, c, d)                                                          \
    do {                                                                         \
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a); d = VROT16(d);   \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = VROTL(b, 12);\
        a = _mm256_add_epi32(a, b); d = _mm256_xor_si256(d, a); d = VROT8(d);    \
        c = _mm256_add_epi32(c, d); b = _mm256_xor_si256(b, c); b = VROTL(b, 7); \
    } while (0)

/* Transpose 8 vectors (vector i = word i of blocks 0..7) into 8 vectors
 * (vector b = words 0..7 of block b). */
#define TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7)                 \
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

/* Compute blocks ctr..ctr+8: blocks ctr..ctr+7 in AVX2 registers, where
 * o[2b] holds bytes 0..31 of block b and o[2b+1] bytes 32..63 (little-endian
 * words, as in the byte stream), and block ctr+8 on the scalar ALUs into
 * w8[0..7] as 64-bit words.  The scalar block costs almost nothing: the
 * vector rounds are bound by the vector shift/shuffle ports while the
 * integer ALUs sit idle (+10% throughput measured on Zen 3). */
AVX2_FN void chacha9_avx2(const uint32_t st[16], uint32_t ctr, __m256i o[16], uint64_t w8[8])
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
        QR(s0, s4, s8, s12);
        QR(s1, s5, s9, s13);
        QR(s2, s6, s10, s14);
        QR(s3, s7, s11, s15);
        QR(s0, s5, s10, s15);
        QR(s1, s6, s11, s12);
        QR(s2, s7, s8, s13);
        QR(s3, s4, s9, s14);
        VQR(x0, x4, x8, x12);
        VQR(x1, x5, x9, x13);
        VQR(x2, x6, x10, x14);
        VQR(x3, x7, x11, x15);
        VQR(x0, x5, x10, x15);
        VQR(x1, x6, x11, x12);
        VQR(x2, x7, x8, x13);
        VQR(x3, x4, x9, x14);
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
#define W8(k, a, b) w8[k] = (uint64_t)(a + st[2 * k]) | ((uint64_t)(b + st[2 * k + 1]) << 32)
    W8(0, s0, s1); W8(1, s2, s3); W8(2, s4, s5); W8(3, s6, s7);
    W8(4, s8, s9); W8(5, s10, s11);
    w8[6] = (uint64_t)(s12 + ctr + 8) | ((uint64_t)(s13 + st[13]) << 32);
    W8(7, s14, s15);
#undef W8
    TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7);
    TRANSPOSE8(x8, x9, x10, x11, x12, x13, x14, x15);
    o[0] = x0; o[1] = x8; o[2] = x1; o[3] = x9;
    o[4] = x2; o[5] = x10; o[6] = x3; o[7] = x11;
    o[8] = x4; o[9] = x12; o[10] = x5; o[11] = x13;
    o[12] = x6; o[13] = x14; o[14] = x7; o[15] = x15;
}

/* ngroups groups of GROUP_BLOCKS blocks from block ctr, written to out. */
__attribute__((target("avx2"))) static void
keystream_avx2(const uint32_t st[16], uint32_t ctr, size_t ngroups, uint8_t *out)
{
    __m256i o[16];
    uint64_t w8[8];
    for (size_t g = 0; g < ngroups; g++, ctr += GROUP_BLOCKS, out += 8 * GROUP_WORDS) {
        chacha9_avx2(st, ctr, o, w8);
        for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)(out + 32 * i), o[i]);
        memcpy(out + 512, w8, 64); /* x86 is little-endian */
    }
}

__attribute__((target("avx2"))) static void
ring_acc_avx2(const uint32_t st[16], uint32_t ctr, size_t ngroups, int sign, uint64_t *acc)
{
    __m256i o[16];
    uint64_t w8[8];
    for (size_t g = 0; g < ngroups; g++, ctr += GROUP_BLOCKS, acc += GROUP_WORDS) {
        chacha9_avx2(st, ctr, o, w8);
        if (sign > 0) {
            for (int i = 0; i < 16; i++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 4 * i));
                _mm256_storeu_si256((__m256i *)(acc + 4 * i), _mm256_add_epi64(a, o[i]));
            }
            for (int i = 0; i < 8; i++) acc[64 + i] += w8[i];
        } else {
            for (int i = 0; i < 16; i++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 4 * i));
                _mm256_storeu_si256((__m256i *)(acc + 4 * i), _mm256_sub_epi64(a, o[i]));
            }
            for (int i = 0; i < 8; i++) acc[64 + i] -= w8[i];
        }
    }
}

/* The GROUP_WORDS little-endian words of one group into w (host order). */
__attribute__((target("avx2"))) static void
words_avx2(const uint32_t st[16], uint32_t ctr, uint64_t w[GROUP_WORDS])
{
    __m256i o[16];
    chacha9_avx2(st, ctr, o, w + 64);
    for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)(w + 4 * i), o[i]);
}
#endif /* MPCAI_HAVE_AVX2 */

/* ---- dispatch --------------------------------------------------------- */
static int simd_state = -1; /* -1: not decided yet; 0: scalar; 1: AVX2 */

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
    simd_state = (level > 0) ? mpcai_simd_available() : 0;
    return simd_state;
}

static int use_avx2(void)
{
    if (simd_state < 0) simd_state = mpcai_simd_available();
    return simd_state;
}

/* ---- block sources shared by every kernel ------------------------------ */

/* Fill w with the GROUP_WORDS words of blocks ctr..ctr+GROUP_BLOCKS-1. */
static void words_group(const uint32_t st[16], uint32_t ctr, uint64_t w[GROUP_WORDS])
{
#if MPCAI_HAVE_AVX2
    if (use_avx2()) {
        words_avx2(st, ctr, w);
        return;
    }
#endif
    uint32_t b[16];
    for (int k = 0; k < GROUP_BLOCKS; k++) {
        chacha_block(st, ctr + (uint32_t)k, b);
        for (int i = 0; i < 8; i++) w[8 * k + i] = (uint64_t)b[2 * i] | ((uint64_t)b[2 * i + 1] << 32);
    }
}

static int seed_state(const uint8_t *seed, size_t seed_len, uint32_t st[16])
{
    static const uint8_t zero_nonce[12] = {0};
    if (!seed) return MPCAI_ERR_NULL;
    if (seed_len != 32) return MPCAI_ERR_LENGTH;
    chacha_init(st, seed, zero_nonce);
    return MPCAI_OK;
}

/* ---- public kernels ---------------------------------------------------- */

int mpcai_chacha20_keystream(const uint8_t *key, size_t key_len, const uint8_t *nonce,
                             size_t nonce_len, uint32_t counter, uint8_t *out, size_t out_len)
{
    uint32_t st[16], b[16];
    if (!key || !nonce || (!out && out_len)) return MPCAI_ERR_NULL;
    if (key_len != 32 || nonce_len != 12) return MPCAI_ERR_LENGTH;
    uint64_t nblocks = ((uint64_t)out_len + 63) / 64;
    if (nblocks > ((uint64_t)1 << 32) - counter) return MPCAI_ERR_LENGTH;
    chacha_init(st, key, nonce);
    size_t done = 0;
#if MPCAI_HAVE_AVX2
    if (use_avx2()) {
        /* whole groups that end before the counter wraps; the rest is scalar */
        size_t ngroups = out_len / (8 * GROUP_WORDS);
        uint64_t room = (((uint64_t)1 << 32) - counter) / GROUP_BLOCKS;
        if (ngroups > room) ngroups = (size_t)room;
        keystream_avx2(st, counter, ngroups, out);
        done = ngroups * 8 * GROUP_WORDS;
        counter += (uint32_t)(ngroups * GROUP_BLOCKS);
    }
#endif
    while (done < out_len) {
        chacha_block(st, counter++, b);
        size_t take = out_len - done < 64 ? out_len - done : 64;
        if (take == 64) {
            for (int i = 0; i < 16; i++) store32_le(out + done + 4 * i, b[i]);
        } else {
            uint8_t tmp[64];
            for (int i = 0; i < 16; i++) store32_le(tmp + 4 * i, b[i]);
            memcpy(out + done, tmp, take);
        }
        done += take;
    }
    return MPCAI_OK;
}

/* Ring kernel over words [8 * first_block, 8 * first_block + n) of the
 * stream; acc points at the first of them.  mode 0 = write, +1 = add,
 * -1 = subtract. */
static void ring64_range(const uint32_t st[16], uint32_t first_block, int mode, uint64_t *acc,
                         size_t n)
{
    uint32_t ctr = first_block;
    size_t i = 0;
#if MPCAI_HAVE_AVX2
    if (use_avx2()) {
        size_t ngroups = n / GROUP_WORDS;
        if (mode == 0)
            keystream_avx2(st, ctr, ngroups, (uint8_t *)acc); /* x86 is little-endian */
        else
            ring_acc_avx2(st, ctr, ngroups, mode, acc);
        i = ngroups * GROUP_WORDS;
        ctr += (uint32_t)(ngroups * GROUP_BLOCKS);
    }
#endif
    uint32_t b[16];
    while (i < n) {
        chacha_block(st, ctr++, b);
        for (int k = 0; k < 8 && i < n; k++, i++) {
            uint64_t w = (uint64_t)b[2 * k] | ((uint64_t)b[2 * k + 1] << 32);
            if (mode == 0) acc[i] = w;
            else if (mode > 0) acc[i] += w;
            else acc[i] -= w;
        }
    }
}

#ifndef _WIN32
typedef struct {
    const uint32_t *st;
    uint32_t first_block;
    int mode;
    uint64_t *acc;
    size_t n;
} ring_job;

static void *ring_job_run(void *arg)
{
    ring_job *j = (ring_job *)arg;
    ring64_range(j->st, j->first_block, j->mode, j->acc, j->n);
    return NULL;
}
#endif

#define MPCAI_MAX_THREADS 64
/* Below this many words per thread, starting threads costs more than it saves. */
#define MIN_WORDS_PER_THREAD ((size_t)1 << 16)

static int ring64_kernel(const uint8_t *seed, size_t seed_len, int mode, uint64_t *acc, size_t n,
                         int n_threads)
{
    uint32_t st[16];
    int rc = seed_state(seed, seed_len, st);
    if (rc) return rc;
    if (!acc && n) return MPCAI_ERR_NULL;
    if ((uint64_t)n > MPCAI_PRG_MAX_WORDS) return MPCAI_ERR_LENGTH;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    if ((size_t)n_threads > n / MIN_WORDS_PER_THREAD) n_threads = (int)(n / MIN_WORDS_PER_THREAD);
#ifndef _WIN32
    if (n_threads > 1) {
        /* contiguous slices of whole groups; each starts at its own block */
        pthread_t tid[MPCAI_MAX_THREADS];
        ring_job jobs[MPCAI_MAX_THREADS];
        size_t groups = n / GROUP_WORDS, start = 0;
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            size_t g = groups / (size_t)n_threads + ((size_t)t < groups % (size_t)n_threads);
            size_t len = (t == n_threads - 1) ? n - start : g * GROUP_WORDS;
            jobs[t] = (ring_job){st, (uint32_t)(start / 8), mode, acc + start, len};
            start += len;
        }
        for (int t = 1; t < n_threads; t++) {
            if (pthread_create(&tid[t], NULL, ring_job_run, &jobs[t]) != 0) break;
            started = t;
        }
        /* run our own slice, then any slice whose thread failed to start */
        ring_job_run(&jobs[0]);
        for (int t = started + 1; t < n_threads; t++) ring_job_run(&jobs[t]);
        for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
        return MPCAI_OK;
    }
#endif
    ring64_range(st, 0, mode, acc, n);
    return MPCAI_OK;
}

int mpcai_prg_ring64(const uint8_t *seed, size_t seed_len, uint64_t *out, size_t n)
{
    return ring64_kernel(seed, seed_len, 0, out, n, 1);
}

int mpcai_prg_ring64_acc(const uint8_t *seed, size_t seed_len, int sign, uint64_t *acc, size_t n)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return ring64_kernel(seed, seed_len, sign, acc, n, 1);
}

int mpcai_prg_ring64_acc_mt(const uint8_t *seed, size_t seed_len, int sign, uint64_t *acc,
                            size_t n, int n_threads)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return ring64_kernel(seed, seed_len, sign, acc, n, n_threads);
}

/* Generic field kernel: mode 0 = write, +1 = add, -1 = subtract (mod p). */
static int fieldp_kernel(const uint8_t *seed, size_t seed_len, int mode, uint64_t *acc, size_t n)
{
    uint32_t st[16];
    uint64_t w[GROUP_WORDS];
    int rc = seed_state(seed, seed_len, st);
    if (rc) return rc;
    if (!acc && n) return MPCAI_ERR_NULL;
    if ((uint64_t)n > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    if (mode != 0)
        for (size_t i = 0; i < n; i++)
            if (acc[i] >= P61) return MPCAI_ERR_RANGE;
    uint32_t ctr = 0;
    size_t i = 0;
    while (i < n) {
        /* Rejections are rare (2^-61 each) but the counter still bounds
         * the stream: 2^32 blocks hold 2^35 candidates >= 2 n. */
        if (ctr > UINT32_MAX - GROUP_BLOCKS) return MPCAI_ERR_LENGTH;
        words_group(st, ctr, w);
        ctr += GROUP_BLOCKS;
        size_t take = n - i;
        if (take >= GROUP_WORDS) {
            /* fast path: the common case of no rejection in this group */
            uint64_t bad = 0;
            for (int k = 0; k < GROUP_WORDS; k++) {
                w[k] &= P61;
                bad |= (uint64_t)(w[k] == P61);
            }
            if (!bad) {
                if (mode == 0) {
                    memcpy(acc + i, w, sizeof w);
                } else if (mode > 0) {
                    for (int k = 0; k < GROUP_WORDS; k++) {
                        uint64_t s = acc[i + k] + w[k];
                        acc[i + k] = s >= P61 ? s - P61 : s;
                    }
                } else {
                    for (int k = 0; k < GROUP_WORDS; k++) {
                        uint64_t a = acc[i + k], v = w[k];
                        acc[i + k] = a >= v ? a - v : a + P61 - v;
                    }
                }
                i += GROUP_WORDS;
                continue;
            }
        }
        for (int k = 0; k < GROUP_WORDS && i < n; k++) {
            uint64_t v = w[k] & P61;
            if (v == P61) continue; /* reject: keeps the output uniform */
            if (mode == 0) {
                acc[i] = v;
            } else if (mode > 0) {
                uint64_t s = acc[i] + v;
                acc[i] = s >= P61 ? s - P61 : s;
            } else {
                acc[i] = acc[i] >= v ? acc[i] - v : acc[i] + P61 - v;
            }
            i++;
        }
    }
    return MPCAI_OK;
}

int mpcai_prg_fieldp(const uint8_t *seed, size_t seed_len, uint64_t *out, size_t n)
{
    return fieldp_kernel(seed, seed_len, 0, out, n);
}

int mpcai_prg_fieldp_acc(const uint8_t *seed, size_t seed_len, int sign, uint64_t *acc, size_t n)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return fieldp_kernel(seed, seed_len, sign, acc, n);
}
