/*
 * sketch.c -- y = R x over Z_2^64 for a ternary matrix R generated on the fly.
 *
 * R is k x d with entries in {-1, 0, +1} (probabilities 1/4, 1/2, 1/4).  Row i
 * is read from the ChaCha20 stream of key = seed, nonce = le32(i) || 0^8,
 * counter from 0: block c (64 bytes = little-endian uint64 words w_0..w_7)
 * holds entries 256 c .. 256 c + 255 of the row; entry 64 q + t of the block
 * is bit t of w_q minus bit t of w_(4 + q).  The matrix is never written to
 * memory: each block's keystream is consumed as it is made.
 *
 * Scalar, AVX2 and AVX-512 accumulation paths; addition modulo 2^64 is
 * associative and commutative, so every path gives the same output.
 * Rows are independent and may be split over threads.
 */
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#include "mpcai_native.h"
#include "_dispatch.h"
#include "_chacha_core.h"

/* Blocks of keystream made at a time (a multiple of 9 and 17 would be nicer;
 * the group functions are simply called until the chunk is full). */
#define SK_CHUNK_BLOCKS 153 /* 9 * 17 */


/* sum over 256 entries of one block: (bit of w[q]) x - (bit of w[4+q]) x */
static uint64_t sk_block_scalar(const uint64_t w[8], const uint64_t *x)
{
    uint64_t pos = 0, neg = 0;
    for (int q = 0; q < 4; q++) {
        uint64_t p = w[q], m = w[4 + q];
        const uint64_t *xq = x + 64 * q;
        for (int t = 0; t < 64; t++) {
            pos += xq[t] & (0 - ((p >> t) & 1));
            neg += xq[t] & (0 - ((m >> t) & 1));
        }
    }
    return pos - neg;
}

#if MPCAI_HAVE_AVX2
__attribute__((target("avx2"))) static uint64_t sk_row_avx2(const uint64_t *ks, size_t nblocks,
                                                            const uint64_t *x)
{
    const __m256i sel = _mm256_set_epi64x(8, 4, 2, 1);
    __m256i pos = _mm256_setzero_si256(), neg = _mm256_setzero_si256();
    for (size_t c = 0; c < nblocks; c++) {
        const uint64_t *w = ks + 8 * c, *xb = x + 256 * c;
        for (int q = 0; q < 4; q++) {
            uint64_t p = w[q], m = w[4 + q];
            for (int g = 0; g < 16; g++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xb + 64 * q + 4 * g));
                __m256i pb = _mm256_set1_epi64x((long long)((p >> (4 * g)) & 15));
                __m256i mb = _mm256_set1_epi64x((long long)((m >> (4 * g)) & 15));
                __m256i pm = _mm256_cmpeq_epi64(_mm256_and_si256(pb, sel), sel);
                __m256i mm = _mm256_cmpeq_epi64(_mm256_and_si256(mb, sel), sel);
                pos = _mm256_add_epi64(pos, _mm256_and_si256(xv, pm));
                neg = _mm256_add_epi64(neg, _mm256_and_si256(xv, mm));
            }
        }
    }
    uint64_t a[4], b[4];
    _mm256_storeu_si256((__m256i *)a, pos);
    _mm256_storeu_si256((__m256i *)b, neg);
    return (a[0] + a[1] + a[2] + a[3]) - (b[0] + b[1] + b[2] + b[3]);
}
#endif

#if MPCAI_HAVE_AVX512
__attribute__((target(MPCAI_AVX512_TARGET))) static uint64_t
sk_row_avx512(const uint64_t *ks, size_t nblocks, const uint64_t *x)
{
    __m512i pos = _mm512_setzero_si512(), neg = _mm512_setzero_si512();
    for (size_t c = 0; c < nblocks; c++) {
        const uint64_t *w = ks + 8 * c, *xb = x + 256 * c;
        for (int q = 0; q < 4; q++) {
            uint64_t p = w[q], m = w[4 + q];
            for (int g = 0; g < 8; g++) {
                __m512i xv = _mm512_loadu_si512((const void *)(xb + 64 * q + 8 * g));
                pos = _mm512_mask_add_epi64(pos, (__mmask8)(p >> (8 * g)), pos, xv);
                neg = _mm512_mask_add_epi64(neg, (__mmask8)(m >> (8 * g)), neg, xv);
            }
        }
    }
    return (uint64_t)_mm512_reduce_add_epi64(pos) - (uint64_t)_mm512_reduce_add_epi64(neg);
}
#endif

static uint64_t sk_row_blocks(const uint64_t *ks, size_t nblocks, const uint64_t *x, int level)
{
    (void)level;
#if MPCAI_HAVE_AVX512
    if (level >= MPCAI_LEVEL_AVX512) return sk_row_avx512(ks, nblocks, x);
#endif
#if MPCAI_HAVE_AVX2
    if (level >= MPCAI_LEVEL_AVX2) return sk_row_avx2(ks, nblocks, x);
#endif
    uint64_t s = 0;
    for (size_t c = 0; c < nblocks; c++) s += sk_block_scalar(ks + 8 * c, x + 256 * c);
    return s;
}

typedef struct {
    const uint8_t *seed;
    const uint64_t *x;
    size_t d, row0, row1;
    uint64_t *out;
    int level;
} sk_job;

static void sk_rows(const sk_job *j)
{
    uint64_t ks[8 * SK_CHUNK_BLOCKS];
    uint64_t tail[256];
    const size_t full = j->d / 256, rest = j->d % 256;
    for (size_t i = j->row0; i < j->row1; i++) {
        uint8_t nonce[12] = {0};
        nonce[0] = (uint8_t)i;
        nonce[1] = (uint8_t)(i >> 8);
        nonce[2] = (uint8_t)(i >> 16);
        nonce[3] = (uint8_t)(i >> 24);
        uint32_t st[16];
        chacha_init(st, j->seed, nonce);
        uint64_t acc = 0;
        for (size_t c = 0; c < full; c += SK_CHUNK_BLOCKS) {
            size_t n = full - c < SK_CHUNK_BLOCKS ? full - c : SK_CHUNK_BLOCKS;
            chacha_keystream_words(st, (uint32_t)c, n, ks, j->level);
            acc += sk_row_blocks(ks, n, j->x + 256 * c, j->level);
        }
        if (rest) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, j->x + 256 * full, rest * sizeof(uint64_t));
            chacha_keystream_words(st, (uint32_t)full, 1, ks, 0);
            acc += sk_block_scalar(ks, tail);
        }
        j->out[i] = acc;
    }
}

static void *sk_run(void *arg)
{
    sk_rows((const sk_job *)arg);
    return NULL;
}

int mpcai_ternary_sketch(const uint8_t *seed, size_t seed_len, const uint64_t *x, size_t d,
                         uint64_t *out, size_t k, int n_threads)
{
    if (!seed || (!x && d) || (!out && k)) return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
    if ((uint64_t)d > MPCAI_SKETCH_MAX_DIM || (uint64_t)k > MPCAI_SKETCH_MAX_ROWS)
        return MPCAI_ERR_LENGTH;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    const int level = mpcai_internal_simd_level();
    if ((size_t)n_threads > k) n_threads = k ? (int)k : 1;
    if (d < 4096) n_threads = 1;
#ifndef _WIN32
    if (n_threads > 1) {
        pthread_t tid[MPCAI_MAX_THREADS];
        sk_job jobs[MPCAI_MAX_THREADS];
        size_t start = 0;
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            size_t len = k / (size_t)n_threads + ((size_t)t < k % (size_t)n_threads);
            jobs[t] = (sk_job){seed, x, d, start, start + len, out, level};
            start += len;
        }
        for (int t = 1; t < n_threads; t++) {
            if (pthread_create(&tid[t], NULL, sk_run, &jobs[t]) != 0) break;
            started = t;
        }
        sk_rows(&jobs[0]);
        for (int t = started + 1; t < n_threads; t++) sk_rows(&jobs[t]);
        for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
        return MPCAI_OK;
    }
#endif
    sk_job job = {seed, x, d, 0, k, out, level};
    sk_rows(&job);
    return MPCAI_OK;
}
