/*
 * dgauss.c -- sampling by inversion of a 128-bit fixed-point cumulative table
 * (mpcai.dp's discrete Gaussian), with a guide table.
 *
 * The table has n entries c_j = (hi[j] << 64) | lo[j], non-decreasing in j.
 * For a 128-bit uniform u = (u_hi << 64) | u_lo the index is
 * min(#{j : c_j <= u}, n - 1) -- exactly what mpcai.dp's numpy reference
 * computes with searchsorted on the high words and the low words on ties.
 *
 * Guide table: bucket b of the 2^g buckets holds the u with u_hi >> (64 - g)
 * == b; guide[b] = #{j : hi[j] < b << (64 - g)} (guide[2^g] = n).  Every entry
 * below guide[b] is < u and every entry from guide[b + 1] on is > u, so the
 * index lies in [guide[b], guide[b + 1]] and a branch-free binary search of
 * that range (usually 0 to 3 entries) finds it.  The low words are read only
 * when the high words tie (probability about n 2^-64).
 *
 * mpcai_dgauss_sample fuses the uniforms: sample i takes the words w_2i
 * (high) and w_2i+1 (low) of the PRG of the seed (mpcai_prg_ring64's stream:
 * ChaCha20, key = seed, nonce 0, counter from 0), made a chunk of blocks at a
 * time in an L1 buffer on the SIMD path in effect (scalar, AVX2, AVX-512:
 * the same words), so the uniforms never reach memory.  A block holds four
 * samples: threads take contiguous ranges of whole blocks.
 *
 * Not constant time: the search's memory accesses depend on the sample.
 */
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#include "mpcai_native.h"
#include "_dispatch.h"
#include "_chacha_core.h"

/* Blocks of keystream made at a time: 4 * 153 = 612 samples, 9.8 KB. */
#define DG_CHUNK_BLOCKS 153
/* Below this many samples per thread, starting a thread costs more than it saves. */
#define DG_MIN_PER_THREAD ((size_t)1 << 15)

typedef struct {
    const uint64_t *hi, *lo;
    const uint32_t *guide;
    unsigned shift; /* 64 - guide_bits */
    size_t last;    /* n - 1 */
    int64_t offset;
} dg_table;

/* min(#{j : c_j <= u}, n - 1) */
static inline size_t dg_index(const dg_table *t, uint64_t uh, uint64_t ul)
{
    const uint64_t b = uh >> t->shift;
    size_t base = t->guide[b], len = (size_t)t->guide[b + 1] - base;
    const uint64_t *hi = t->hi;
    if (len) {
        /* invariant: entries below base are <= u, the count is in [base, base + len] */
        while (len > 1) {
            size_t half = len >> 1, j = base + half - 1;
            int le = hi[j] < uh || (hi[j] == uh && t->lo[j] <= ul);
            base = le ? base + half : base;
            len -= half;
        }
        base += hi[base] < uh || (hi[base] == uh && t->lo[base] <= ul);
    }
    return base < t->last ? base : t->last;
}

static void dg_invert_range(const dg_table *t, const uint64_t *u, size_t m, int64_t *out)
{
    for (size_t i = 0; i < m; i++)
        out[i] = (int64_t)dg_index(t, u[2 * i], u[2 * i + 1]) + t->offset;
}


typedef struct {
    const dg_table *t;
    const uint32_t *st; /* NULL: read the uniforms from u */
    const uint64_t *u;
    size_t first, count; /* samples [first, first + count); first % 4 == 0 with st */
    int64_t *out;
    int level;
} dg_job;

static void dg_job_do(const dg_job *j)
{
    if (!j->st) {
        dg_invert_range(j->t, j->u + 2 * j->first, j->count, j->out + j->first);
        return;
    }
    uint64_t ks[8 * DG_CHUNK_BLOCKS];
    size_t done = 0;
    uint32_t ctr = (uint32_t)(j->first / 4);
    while (done < j->count) {
        size_t left = j->count - done;
        size_t blocks = (left + 3) / 4;
        if (blocks > DG_CHUNK_BLOCKS) blocks = DG_CHUNK_BLOCKS;
        size_t take = 4 * blocks < left ? 4 * blocks : left;
        chacha_keystream_words(j->st, ctr, blocks, ks, j->level);
        dg_invert_range(j->t, ks, take, j->out + j->first + done);
        ctr += (uint32_t)blocks;
        done += take;
    }
}

static void *dg_job_run(void *arg)
{
    dg_job_do((const dg_job *)arg);
    return NULL;
}

/* Checks shared by the kernels; fills t. */
static int dg_setup(const uint64_t *hi, const uint64_t *lo, size_t n, const uint32_t *guide,
                    int guide_bits, int64_t offset, dg_table *t)
{
    if (!hi || !lo || !guide) return MPCAI_ERR_NULL;
    if (n == 0 || (uint64_t)n > MPCAI_DGAUSS_MAX_TABLE) return MPCAI_ERR_LENGTH;
    if (guide_bits < 1 || guide_bits > MPCAI_DGAUSS_MAX_GUIDE_BITS) return MPCAI_ERR_ARG;
    /* the guide must stay in the table: non-decreasing, ending at n (O(2^guide_bits)) */
    const size_t buckets = (size_t)1 << guide_bits;
    if (guide[buckets] != n) return MPCAI_ERR_ARG;
    for (size_t b = 0; b < buckets; b++)
        if (guide[b] > guide[b + 1]) return MPCAI_ERR_ARG;
    *t = (dg_table){hi, lo, guide, (unsigned)(64 - guide_bits), n - 1, offset};
    return MPCAI_OK;
}

static int dg_run(const dg_table *t, const uint32_t *st, const uint64_t *u, size_t m,
                  int64_t *out, int n_threads)
{
    const int level = mpcai_internal_simd_level();
    if ((size_t)n_threads > m / DG_MIN_PER_THREAD) n_threads = (int)(m / DG_MIN_PER_THREAD);
    if (n_threads < 1) n_threads = 1;
#ifndef _WIN32
    if (n_threads > 1) {
        pthread_t tid[MPCAI_MAX_THREADS];
        dg_job jobs[MPCAI_MAX_THREADS];
        /* contiguous ranges of whole blocks (4 samples); the last takes the rest */
        const size_t blocks = m / 4;
        size_t start = 0;
        int started = 0;
        for (int k = 0; k < n_threads; k++) {
            size_t nb = blocks / (size_t)n_threads + ((size_t)k < blocks % (size_t)n_threads);
            size_t len = k == n_threads - 1 ? m - start : 4 * nb;
            jobs[k] = (dg_job){t, st, u, start, len, out, level};
            start += len;
        }
        for (int k = 1; k < n_threads; k++) {
            if (pthread_create(&tid[k], NULL, dg_job_run, &jobs[k]) != 0) break;
            started = k;
        }
        dg_job_do(&jobs[0]);
        for (int k = started + 1; k < n_threads; k++) dg_job_do(&jobs[k]);
        for (int k = 1; k <= started; k++) pthread_join(tid[k], NULL);
        return MPCAI_OK;
    }
#endif
    dg_job job = {t, st, u, 0, m, out, level};
    dg_job_do(&job);
    return MPCAI_OK;
}

int mpcai_dgauss_guide(const uint64_t *hi, size_t n, int guide_bits, uint32_t *guide,
                       size_t guide_len)
{
    if (!hi || !guide) return MPCAI_ERR_NULL;
    if (n == 0 || (uint64_t)n > MPCAI_DGAUSS_MAX_TABLE) return MPCAI_ERR_LENGTH;
    if (guide_bits < 1 || guide_bits > MPCAI_DGAUSS_MAX_GUIDE_BITS) return MPCAI_ERR_ARG;
    const size_t buckets = (size_t)1 << guide_bits;
    if (guide_len != buckets + 1) return MPCAI_ERR_LENGTH;
    for (size_t j = 1; j < n; j++)
        if (hi[j] < hi[j - 1]) return MPCAI_ERR_ARG;
    /* one merge pass: guide[b] = #{j : hi[j] < b << (64 - g)} */
    const unsigned shift = (unsigned)(64 - guide_bits);
    size_t j = 0;
    for (size_t b = 0; b < buckets; b++) {
        const uint64_t edge = (uint64_t)b << shift;
        while (j < n && hi[j] < edge) j++;
        guide[b] = (uint32_t)j;
    }
    guide[buckets] = (uint32_t)n;
    return MPCAI_OK;
}

int mpcai_dgauss_invert(const uint64_t *hi, const uint64_t *lo, size_t n, const uint32_t *guide,
                        int guide_bits, const uint64_t *u, size_t m, int64_t offset,
                        int64_t *out, int n_threads)
{
    dg_table t;
    int rc = dg_setup(hi, lo, n, guide, guide_bits, offset, &t);
    if (rc) return rc;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    if (m == 0) return MPCAI_OK;
    if (!u || !out) return MPCAI_ERR_NULL;
    return dg_run(&t, NULL, u, m, out, n_threads);
}

int mpcai_dgauss_sample(const uint8_t *seed, size_t seed_len, const uint64_t *hi,
                        const uint64_t *lo, size_t n, const uint32_t *guide, int guide_bits,
                        size_t m, int64_t offset, int64_t *out, int n_threads)
{
    static const uint8_t zero_nonce[12] = {0};
    if (!seed) return MPCAI_ERR_NULL;
    if (seed_len != MPCAI_SEED_BYTES) return MPCAI_ERR_LENGTH;
    dg_table t;
    int rc = dg_setup(hi, lo, n, guide, guide_bits, offset, &t);
    if (rc) return rc;
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    if ((uint64_t)m > MPCAI_PRG_MAX_WORDS / 2) return MPCAI_ERR_LENGTH;
    if (m == 0) return MPCAI_OK;
    if (!out) return MPCAI_ERR_NULL;
    uint32_t st[16];
    chacha_init(st, seed, zero_nonce);
    return dg_run(&t, st, NULL, m, out, n_threads);
}
