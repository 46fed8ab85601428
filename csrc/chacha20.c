/*
 * chacha20.c -- ChaCha20 (RFC 8439) keystream and the PRG built on it.
 *
 * The ChaCha20 block functions live in _chacha_core.h (shared with
 * fieldp.c).  Three paths produce bit-identical output: a portable scalar
 * path and, on x86-64 with GCC/Clang, an AVX2 path computing 9 blocks at
 * once (8 in vector registers, 1 on the scalar ALUs alongside) and an
 * AVX-512 path computing 17 (16 in zmm registers, 1 scalar; what is left
 * after its last whole group goes through the AVX2 groups, then block by
 * block), chosen at run time by the one SIMD switch of dispatch.c
 * (mpcai_simd_select).
 *
 * PRG streams: key = 32-byte seed, nonce = 0^12, block counter from 0,
 * read as little-endian 64-bit words (or 32-bit words for Z_2^32).  The
 * fused accumulate kernels add the words to the accumulator straight from
 * registers; the mask never exists in memory.
 */
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include "mpcai_native.h"
#include "_dispatch.h"
#include "_chacha_core.h"

#define GROUP_BLOCKS CHACHA_GROUP_BLOCKS
#define GROUP_WORDS CHACHA_GROUP_WORDS

static const uint64_t P61 = MPCAI_FIELD_P;

static void store32_le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int simd_level(void) { return mpcai_internal_simd_level(); }

/* ---- AVX2 group kernels (chacha9_avx2 in _chacha_core.h) -------------- */
#if MPCAI_HAVE_AVX2
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

/* The same over Z_2^32: a group is 9 blocks = 144 little-endian 32-bit words. */
__attribute__((target("avx2"))) static void
ring32_acc_avx2(const uint32_t st[16], uint32_t ctr, size_t ngroups, int sign, uint32_t *acc)
{
    __m256i o[16];
    uint64_t w8[8];
    uint32_t w16[16];
    for (size_t g = 0; g < ngroups; g++, ctr += GROUP_BLOCKS, acc += 2 * GROUP_WORDS) {
        chacha9_avx2(st, ctr, o, w8);
        memcpy(w16, w8, sizeof w16); /* x86 is little-endian: word 2k is the low half */
        if (sign > 0) {
            for (int i = 0; i < 16; i++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 8 * i));
                _mm256_storeu_si256((__m256i *)(acc + 8 * i), _mm256_add_epi32(a, o[i]));
            }
            for (int i = 0; i < 16; i++) acc[128 + i] += w16[i];
        } else {
            for (int i = 0; i < 16; i++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 8 * i));
                _mm256_storeu_si256((__m256i *)(acc + 8 * i), _mm256_sub_epi32(a, o[i]));
            }
            for (int i = 0; i < 16; i++) acc[128 + i] -= w16[i];
        }
    }
}
#endif /* MPCAI_HAVE_AVX2 */

/* ---- AVX-512 group kernels (chacha17_avx512 in _chacha_core.h) -------- */
#if MPCAI_HAVE_AVX512
#define ZG_BLOCKS CHACHA_Z_GROUP_BLOCKS
#define ZG_WORDS CHACHA_Z_GROUP_WORDS
#define AVX512_FN __attribute__((target(MPCAI_AVX512_TARGET))) static

/* ngroups groups of 17 blocks from block ctr, written to out. */
AVX512_FN void keystream_avx512(const uint32_t st[16], uint32_t ctr, size_t ngroups, uint8_t *out)
{
    __m512i o[16];
    uint64_t w16[8];
    for (size_t g = 0; g < ngroups; g++, ctr += ZG_BLOCKS, out += 8 * ZG_WORDS) {
        chacha17_avx512(st, ctr, o, w16);
        for (int i = 0; i < 16; i++) _mm512_storeu_si512((void *)(out + 64 * i), o[i]);
        memcpy(out + 1024, w16, 64); /* x86 is little-endian */
    }
}

AVX512_FN void ring_acc_avx512(const uint32_t st[16], uint32_t ctr, size_t ngroups, int sign,
                               uint64_t *acc)
{
    __m512i o[16];
    uint64_t w16[8];
    for (size_t g = 0; g < ngroups; g++, ctr += ZG_BLOCKS, acc += ZG_WORDS) {
        chacha17_avx512(st, ctr, o, w16);
        if (sign > 0) {
            for (int i = 0; i < 16; i++) {
                __m512i a = _mm512_loadu_si512((const void *)(acc + 8 * i));
                _mm512_storeu_si512((void *)(acc + 8 * i), _mm512_add_epi64(a, o[i]));
            }
            for (int i = 0; i < 8; i++) acc[128 + i] += w16[i];
        } else {
            for (int i = 0; i < 16; i++) {
                __m512i a = _mm512_loadu_si512((const void *)(acc + 8 * i));
                _mm512_storeu_si512((void *)(acc + 8 * i), _mm512_sub_epi64(a, o[i]));
            }
            for (int i = 0; i < 8; i++) acc[128 + i] -= w16[i];
        }
    }
}

/* Z_2^32: a group is 17 blocks = 272 little-endian 32-bit words. */
AVX512_FN void ring32_acc_avx512(const uint32_t st[16], uint32_t ctr, size_t ngroups, int sign,
                                 uint32_t *acc)
{
    __m512i o[16];
    uint64_t w16[8];
    uint32_t v16[16];
    for (size_t g = 0; g < ngroups; g++, ctr += ZG_BLOCKS, acc += 2 * ZG_WORDS) {
        chacha17_avx512(st, ctr, o, w16);
        memcpy(v16, w16, sizeof v16); /* x86 is little-endian: word 2k is the low half */
        if (sign > 0) {
            for (int i = 0; i < 16; i++) {
                __m512i a = _mm512_loadu_si512((const void *)(acc + 16 * i));
                _mm512_storeu_si512((void *)(acc + 16 * i), _mm512_add_epi32(a, o[i]));
            }
            for (int i = 0; i < 16; i++) acc[256 + i] += v16[i];
        } else {
            for (int i = 0; i < 16; i++) {
                __m512i a = _mm512_loadu_si512((const void *)(acc + 16 * i));
                _mm512_storeu_si512((void *)(acc + 16 * i), _mm512_sub_epi32(a, o[i]));
            }
            for (int i = 0; i < 16; i++) acc[256 + i] -= v16[i];
        }
    }
}
#endif /* MPCAI_HAVE_AVX512 */

/* Blocks per unit of work of the vector kernels of a level (1 = scalar). */
static uint32_t group_blocks(int level)
{
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) return CHACHA_Z_GROUP_BLOCKS;
#endif
    return level >= MPCAI_LEVEL_AVX2 ? GROUP_BLOCKS : 1;
}

static int seed_state(const uint8_t *seed, size_t seed_len, uint32_t st[16])
{
    static const uint8_t zero_nonce[12] = {0};
    if (!seed) return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
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
    const int level = simd_level();
    (void)level; /* unused when no SIMD path is compiled in */
    /* whole groups that end before the counter wraps (AVX-512 groups, then
     * AVX2 groups on what is left); the rest is scalar */
    uint64_t next = counter, end = (uint64_t)1 << 32; /* 64-bit: no wrap here */
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        size_t ngroups = out_len / (8 * ZG_WORDS);
        if (ngroups > (end - next) / ZG_BLOCKS) ngroups = (size_t)((end - next) / ZG_BLOCKS);
        keystream_avx512(st, (uint32_t)next, ngroups, out);
        done = ngroups * 8 * ZG_WORDS;
        next += ngroups * ZG_BLOCKS;
    }
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) {
        size_t ngroups = (out_len - done) / (8 * GROUP_WORDS);
        if (ngroups > (end - next) / GROUP_BLOCKS) ngroups = (size_t)((end - next) / GROUP_BLOCKS);
        keystream_avx2(st, (uint32_t)next, ngroups, out + done);
        done += ngroups * 8 * GROUP_WORDS;
        next += ngroups * GROUP_BLOCKS;
    }
#endif
    (void)end;
    counter = (uint32_t)next; /* < 2^32 whenever bytes are left */
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
    const int level = simd_level();
    (void)level; /* unused when no SIMD path is compiled in */
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        size_t ngroups = n / ZG_WORDS;
        if (mode == 0)
            keystream_avx512(st, ctr, ngroups, (uint8_t *)acc); /* x86 is little-endian */
        else
            ring_acc_avx512(st, ctr, ngroups, mode, acc);
        i = ngroups * ZG_WORDS;
        ctr += (uint32_t)(ngroups * ZG_BLOCKS);
    }
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) { /* on AVX-512: the words after its last whole group */
        size_t ngroups = (n - i) / GROUP_WORDS;
        if (mode == 0)
            keystream_avx2(st, ctr, ngroups, (uint8_t *)(acc + i)); /* x86 is little-endian */
        else
            ring_acc_avx2(st, ctr, ngroups, mode, acc + i);
        i += ngroups * GROUP_WORDS;
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

/* Z_2^32 accumulate over 32-bit words [16 * first_block, 16 * first_block + n). */
static void ring32_range(const uint32_t st[16], uint32_t first_block, int mode, uint32_t *acc,
                         size_t n)
{
    uint32_t ctr = first_block;
    size_t i = 0;
    const int level = simd_level();
    (void)level; /* unused when no SIMD path is compiled in */
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        size_t ngroups = n / (2 * ZG_WORDS);
        ring32_acc_avx512(st, ctr, ngroups, mode, acc);
        i = ngroups * 2 * ZG_WORDS;
        ctr += (uint32_t)(ngroups * ZG_BLOCKS);
    }
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) { /* on AVX-512: the words after its last whole group */
        size_t ngroups = (n - i) / (2 * GROUP_WORDS);
        ring32_acc_avx2(st, ctr, ngroups, mode, acc + i);
        i += ngroups * 2 * GROUP_WORDS;
        ctr += (uint32_t)(ngroups * GROUP_BLOCKS);
    }
#endif
    uint32_t b[16];
    while (i < n) {
        chacha_block(st, ctr++, b);
        for (int k = 0; k < 16 && i < n; k++, i++) {
            if (mode > 0) acc[i] += b[k];
            else acc[i] -= b[k];
        }
    }
}

/* ---- Z_2^24: element i is bytes [3i, 3i + 3) of the stream, little-endian ----
 * 64 elements take exactly 3 blocks (192 bytes), so a unit of work is a multiple
 * of 3 blocks: scalar 3, AVX2 9 (one chacha9 group), AVX-512 51 (three chacha17
 * groups).  The keystream of a unit goes to an L1 buffer and is widened from
 * there (each 24-bit value zero-extended into the uint32 it is added to: the
 * sum is right modulo 2^24, its top byte is whatever the additions left). */
#define R24_SCALAR_BLOCKS 3
#define R24_SCALAR_ELEMS 64

/* b must be readable one byte past 3 m (a 4-byte little-endian load per value) */
static void r24_widen_scalar(const uint8_t *b, size_t m, int mode, uint32_t *acc)
{
    for (size_t k = 0; k < m; k++) {
        uint32_t v = chacha_load32_le(b + 3 * k) & 0xFFFFFFu;
        if (mode > 0) acc[k] += v;
        else acc[k] -= v;
    }
}

#if MPCAI_HAVE_AVX2
#define R24_AVX2_BLOCKS GROUP_BLOCKS              /* 9 */
#define R24_AVX2_ELEMS (GROUP_BLOCKS * 64 / 3)    /* 192 */
/* m (a multiple of 8) elements from b (readable 8 bytes past 3 m): lane j of
 * each 256-bit load gets 12 bytes (dwords 3j..3j+2), spread to 4 dwords. */
__attribute__((target("avx2"))) static void
r24_widen_avx2(const uint8_t *b, size_t m, int mode, uint32_t *acc)
{
    const __m256i perm = _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0);
    const __m256i spread = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                            0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    for (size_t k = 0; k < m; k += 8) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(b + 3 * k));
        w = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(w, perm), spread);
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + k));
        a = mode > 0 ? _mm256_add_epi32(a, w) : _mm256_sub_epi32(a, w);
        _mm256_storeu_si256((__m256i *)(acc + k), a);
    }
}

__attribute__((target("avx2"))) static void
ring24_acc_avx2(const uint32_t st[16], uint32_t ctr, size_t nunits, int sign, uint32_t *acc)
{
    __m256i o[16];
    uint64_t w8[8];
    uint8_t buf[GROUP_BLOCKS * 64 + 32];
    for (size_t g = 0; g < nunits; g++, ctr += R24_AVX2_BLOCKS, acc += R24_AVX2_ELEMS) {
        chacha9_avx2(st, ctr, o, w8);
        for (int i = 0; i < 16; i++) _mm256_storeu_si256((__m256i *)(buf + 32 * i), o[i]);
        memcpy(buf + 512, w8, 64);
        r24_widen_avx2(buf, R24_AVX2_ELEMS, sign, acc);
    }
}
#endif

#if MPCAI_HAVE_AVX512
#define R24_Z_BLOCKS (3 * ZG_BLOCKS)              /* 51 */
#define R24_Z_ELEMS (ZG_BLOCKS * 64)              /* 1088 */
AVX512_FN void r24_widen_avx512(const uint8_t *b, size_t m, int mode, uint32_t *acc)
{
    const __m512i perm = _mm512_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0);
    const __m512i spread = _mm512_set4_epi32((int)0xFF0B0A09, (int)0xFF080706,
                                             (int)0xFF050403, (int)0xFF020100);
    for (size_t k = 0; k < m; k += 16) {
        __m512i w = _mm512_loadu_si512((const void *)(b + 3 * k));
        w = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(perm, w), spread);
        __m512i a = _mm512_loadu_si512((const void *)(acc + k));
        a = mode > 0 ? _mm512_add_epi32(a, w) : _mm512_sub_epi32(a, w);
        _mm512_storeu_si512((void *)(acc + k), a);
    }
}

AVX512_FN void ring24_acc_avx512(const uint32_t st[16], uint32_t ctr, size_t nunits, int sign,
                                 uint32_t *acc)
{
    __m512i o[16];
    uint64_t w16[8];
    uint8_t buf[3 * ZG_BLOCKS * 64 + 64];
    for (size_t g = 0; g < nunits; g++, acc += R24_Z_ELEMS) {
        for (int q = 0; q < 3; q++, ctr += ZG_BLOCKS) {
            uint8_t *out = buf + q * ZG_BLOCKS * 64;
            chacha17_avx512(st, ctr, o, w16);
            for (int i = 0; i < 16; i++) _mm512_storeu_si512((void *)(out + 64 * i), o[i]);
            memcpy(out + 1024, w16, 64);
        }
        r24_widen_avx512(buf, R24_Z_ELEMS, sign, acc);
    }
}
#endif

/* Elements a unit of the widest kernel of a level takes (a multiple of 64). */
static size_t r24_unit(int level)
{
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) return R24_Z_ELEMS;
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) return R24_AVX2_ELEMS;
#endif
    (void)level;
    return R24_SCALAR_ELEMS;
}

/* Z_2^24 accumulate over elements [64 k, 64 k + n) where first_block = 3 k. */
static void ring24_range(const uint32_t st[16], uint32_t first_block, int mode, uint32_t *acc,
                         size_t n)
{
    uint32_t ctr = first_block;
    size_t i = 0;
    const int level = simd_level();
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) {
        size_t nunits = n / R24_Z_ELEMS;
        ring24_acc_avx512(st, ctr, nunits, mode, acc);
        i = nunits * R24_Z_ELEMS;
        ctr += (uint32_t)(nunits * R24_Z_BLOCKS);
    }
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) {
        size_t nunits = (n - i) / R24_AVX2_ELEMS;
        ring24_acc_avx2(st, ctr, nunits, mode, acc + i);
        i += nunits * R24_AVX2_ELEMS;
        ctr += (uint32_t)(nunits * R24_AVX2_BLOCKS);
    }
#endif
    uint32_t b[16];
    uint8_t buf[R24_SCALAR_BLOCKS * 64 + 4] = {0}; /* the last value's load reads byte 192 */
    while (i < n) {
        for (int q = 0; q < R24_SCALAR_BLOCKS; q++) {
            chacha_block(st, ctr++, b);
            for (int k = 0; k < 16; k++) store32_le(buf + 64 * q + 4 * k, b[k]);
        }
        size_t m = n - i < R24_SCALAR_ELEMS ? n - i : R24_SCALAR_ELEMS;
        r24_widen_scalar(buf, m, mode, acc + i);
        i += m;
    }
}

#ifndef _WIN32
typedef struct {
    const uint32_t *st;
    uint32_t first_block;
    int mode;
    void *acc;
    size_t n;
    int width; /* 64, 32 or 24 */
} ring_job;

static void *ring_job_run(void *arg)
{
    ring_job *j = (ring_job *)arg;
    if (j->width == 64)
        ring64_range(j->st, j->first_block, j->mode, (uint64_t *)j->acc, j->n);
    else if (j->width == 24)
        ring24_range(j->st, j->first_block, j->mode, (uint32_t *)j->acc, j->n);
    else
        ring32_range(j->st, j->first_block, j->mode, (uint32_t *)j->acc, j->n);
    return NULL;
}
#endif

/* Below this many words per thread, starting threads costs more than it saves. */
#define MIN_WORDS_PER_THREAD ((size_t)1 << 16)

/* Shared driver: width 64 (uint64_t words), 32 (uint32_t words) or 24 (3-byte
 * elements added to uint32_t words). */
static int ring_kernel(const uint8_t *seed, size_t seed_len, int mode, void *acc, size_t n,
                       int n_threads, int width)
{
    uint32_t st[16];
    int rc = seed_state(seed, seed_len, st);
    if (rc) return rc;
    if (!acc && n) return MPCAI_ERR_NULL;
    const size_t per_block = width == 64 ? 8 : 16;
    const size_t group = width == 24 ? r24_unit(simd_level())
                                     : per_block * group_blocks(simd_level());
    if ((uint64_t)n > MPCAI_PRG_MAX_WORDS * (width == 64 ? 1 : 2)) return MPCAI_ERR_LENGTH;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    if ((size_t)n_threads > n / MIN_WORDS_PER_THREAD) n_threads = (int)(n / MIN_WORDS_PER_THREAD);
    if (n_threads < 1) n_threads = 1;
#ifndef _WIN32
    if (n_threads > 1) {
        /* contiguous slices of whole groups; each starts at its own block */
        pthread_t tid[MPCAI_MAX_THREADS];
        ring_job jobs[MPCAI_MAX_THREADS];
        size_t groups = n / group, start = 0;
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            size_t g = groups / (size_t)n_threads + ((size_t)t < groups % (size_t)n_threads);
            size_t len = (t == n_threads - 1) ? n - start : g * group;
            void *base = width == 64 ? (void *)((uint64_t *)acc + start)
                                     : (void *)((uint32_t *)acc + start);
            /* 24: start is a multiple of 64 elements = 3 blocks */
            uint32_t first = width == 24 ? (uint32_t)(start / 64 * 3) : (uint32_t)(start / per_block);
            jobs[t] = (ring_job){st, first, mode, base, len, width};
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
    if (width == 64)
        ring64_range(st, 0, mode, (uint64_t *)acc, n);
    else if (width == 24)
        ring24_range(st, 0, mode, (uint32_t *)acc, n);
    else
        ring32_range(st, 0, mode, (uint32_t *)acc, n);
    return MPCAI_OK;
}

static int ring64_kernel(const uint8_t *seed, size_t seed_len, int mode, uint64_t *acc, size_t n,
                         int n_threads)
{
    return ring_kernel(seed, seed_len, mode, acc, n, n_threads, 64);
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

int mpcai_prg_ring32_acc_mt(const uint8_t *seed, size_t seed_len, int sign, uint32_t *acc,
                            size_t n, int n_threads)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return ring_kernel(seed, seed_len, sign, acc, n, n_threads, 32);
}

int mpcai_prg_ring24_acc_mt(const uint8_t *seed, size_t seed_len, int sign, uint32_t *acc,
                            size_t n, int n_threads)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return ring_kernel(seed, seed_len, sign, acc, n, n_threads, 24);
}

/* Accumulating field kernels read this many elements at a time (8 groups:
 * whole groups go straight from the generator to this L1 buffer). */
#define FIELD_CHUNK (8 * GROUP_WORDS)

/* Generic field kernel: mode 0 = write, +1 = add, -1 = subtract (mod p). */
static int fieldp_kernel(const uint8_t *seed, size_t seed_len, int mode, uint64_t *acc, size_t n)
{
    chacha_fp_reader r;
    uint64_t w[FIELD_CHUNK];
    int rc;
    if (!seed) return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
    if (!acc && n) return MPCAI_ERR_NULL;
    if ((uint64_t)n > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    if (mode != 0)
        for (size_t i = 0; i < n; i++)
            if (acc[i] >= P61) return MPCAI_ERR_RANGE;
    chacha_fp_reader_init(&r, seed, simd_level(), 0);
    if (mode == 0) return chacha_fp_reader_read(&r, acc, n);
    for (size_t i = 0; i < n; i += FIELD_CHUNK) {
        size_t take = n - i < FIELD_CHUNK ? n - i : FIELD_CHUNK;
        rc = chacha_fp_reader_read(&r, w, take);
        if (rc) return rc;
        uint64_t *a = acc + i;
        /* branch-free, one constant: d in [-p, p) (as signed), + p if negative */
        if (mode > 0) {
            for (size_t k = 0; k < take; k++) {
                uint64_t d = a[k] + w[k] - P61;
                a[k] = d + (P61 & (0 - (d >> 63)));
            }
        } else {
            for (size_t k = 0; k < take; k++) {
                uint64_t d = a[k] - w[k];
                a[k] = d + (P61 & (0 - (d >> 63)));
            }
        }
    }
    return MPCAI_OK;
}

int mpcai_prg_fieldp(const uint8_t *seed, size_t seed_len, uint64_t *out, size_t n)
{
    return fieldp_kernel(seed, seed_len, 0, out, n);
}

int mpcai_testhook_prg_fieldp(const uint8_t *seed, size_t seed_len, const uint64_t *force,
                              size_t n_force, uint64_t *out, size_t n)
{
    chacha_fp_reader r;
    if (!seed || (!out && n) || (!force && n_force)) return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
    if ((uint64_t)n > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    chacha_fp_reader_init(&r, seed, simd_level(), 0);
    r.force = force;
    r.n_force = n_force;
    return chacha_fp_reader_read(&r, out, n);
}

int mpcai_prg_fieldp_acc(const uint8_t *seed, size_t seed_len, int sign, uint64_t *acc, size_t n)
{
    if (sign != 1 && sign != -1) return MPCAI_ERR_ARG;
    return fieldp_kernel(seed, seed_len, sign, acc, n);
}
