/*
 * fss.c -- distributed comparison functions (DCF), the function secret
 * sharing behind one-round comparison and ReLU.
 *
 * Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee, "Function Secret
 * Sharing for Mixed-Mode and Fixed-Point Secure Computation" (EUROCRYPT
 * 2021), Fig. 3: for a secret alpha in [0, 2^n) and payload beta in
 * (Z_2^64)^w, two keys whose evaluations at any x add up to beta if
 * x < alpha and to 0 otherwise.  Each key alone is pseudo-random.
 *
 * PRG: G(s) for a 16-byte seed is ChaCha20 block 0 of key s || 0^16 (nonce
 * 0), read as s_L | s_R | v_L | v_R (16 bytes each); the control bits t_L,
 * t_R are the lowest bits of s_L, s_R, cleared after reading.  Convert of
 * the last seed reads block 1 of the same key.  A payload component is a
 * little-endian uint64 (the first w of the two in v).  Keys are processed
 * DCF_LANES at a time: their ChaCha20 blocks of one tree level are computed
 * together (16 lanes of zmm registers, two halves of 8 in ymm registers, or
 * one by one on the scalar path, by the one SIMD switch of dispatch.c), the
 * rest per key; keys and outputs are bit-identical on every path.
 *
 * Key layout (mpcai_native.h): per key a 16-byte seed s_b, and correction
 * words common to both keys: n x (s_CW | V_CW), then CW^(n+1), then the
 * 2n control-bit corrections packed (bit 2i: t_CW^L of level i, 2i+1: t_CW^R).
 */
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include "mpcai_native.h"
#include "_dispatch.h"
#include "_chacha_core.h"

#define DCF_MIN_KEYS_PER_THREAD 64

static size_t dcf_cw_bytes(int n_bits, int width)
{
    return (size_t)n_bits * (16u + 8u * (size_t)width) + 8u * (size_t)width +
           (2u * (size_t)n_bits + 7u) / 8u;
}

static inline void load_seed(const uint8_t *p, uint32_t s[4])
{
    for (int i = 0; i < 4; i++) s[i] = chacha_load32_le(p + 4 * i);
}

static inline void store_seed(uint8_t *p, const uint32_t s[4])
{
    for (int i = 0; i < 4; i++) {
        p[4 * i] = (uint8_t)s[i];
        p[4 * i + 1] = (uint8_t)(s[i] >> 8);
        p[4 * i + 2] = (uint8_t)(s[i] >> 16);
        p[4 * i + 3] = (uint8_t)(s[i] >> 24);
    }
}

static inline uint64_t load64_le(const uint8_t *p)
{
    return (uint64_t)chacha_load32_le(p) | ((uint64_t)chacha_load32_le(p + 4) << 32);
}

static inline void store64_le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- ChaCha20 blocks of up to DCF_LANES different keys at once ---------
 * The lane functions of _chacha_core.h: key[k][l] is word k of lane l's
 * 32-byte key (a DCF seed fills words 0..3, the rest stay zero).          */
#define DCF_LANES CHACHA_LANES
typedef chacha_lanes_fn dcf_blocks_fn;

static dcf_blocks_fn dcf_blocks_for_level(void) { return chacha_lanes_for_level(); }

/* Half h (0 = L, 1 = R) of lane l's expansion: seed (bit cleared), t, v. */
static inline uint32_t dcf_half(uint32_t o[16][DCF_LANES], int l, int h, uint32_t s[4],
                                uint64_t v[2])
{
    for (int k = 0; k < 4; k++) s[k] = o[4 * h + k][l];
    const uint32_t t = s[0] & 1u;
    s[0] &= ~1u;
    v[0] = (uint64_t)o[8 + 4 * h][l] | ((uint64_t)o[9 + 4 * h][l] << 32);
    v[1] = (uint64_t)o[10 + 4 * h][l] | ((uint64_t)o[11 + 4 * h][l] << 32);
    return t;
}

/* Up to DCF_LANES keys: correction words cw + l * cwb for lane l. */
static void dcf_gen_group(dcf_blocks_fn blocks, int n, int w, int lanes, const uint64_t *alpha,
                          const uint64_t *beta, const uint8_t *s0b, const uint8_t *s1b,
                          uint8_t *cw, size_t cwb)
{
    uint32_t key[2][8][DCF_LANES] = {{{0}}};
    uint32_t o[2][16][DCF_LANES];
    uint32_t t[2][DCF_LANES];
    uint64_t va[DCF_LANES][2];
    const size_t step = 16u + 8u * (size_t)w;
    for (int l = 0; l < lanes; l++) {
        for (int k = 0; k < 4; k++) {
            key[0][k][l] = chacha_load32_le(s0b + 16 * l + 4 * k);
            key[1][k][l] = chacha_load32_le(s1b + 16 * l + 4 * k);
        }
        t[0][l] = 0;
        t[1][l] = 1;
        va[l][0] = va[l][1] = 0;
        memset(cw + (size_t)l * cwb + (size_t)n * step + 8u * (size_t)w, 0,
               (2u * (size_t)n + 7u) / 8u);
    }
    for (int i = 0; i < n; i++) {
        blocks(key[0], 0, o[0]);
        blocks(key[1], 0, o[1]);
        for (int l = 0; l < lanes; l++) {
            const uint32_t a = (uint32_t)((alpha[l] >> (n - 1 - i)) & 1u);
            const int keep = (int)a, lose = 1 - (int)a; /* 0 = L, 1 = R */
            uint32_t sk[2][4], sl[2][4], tk[2], tl[2], tother[2];
            uint64_t vk[2][2], vl[2][2];
            for (int b = 0; b < 2; b++) {
                tk[b] = dcf_half(o[b], l, keep, sk[b], vk[b]);
                tl[b] = dcf_half(o[b], l, lose, sl[b], vl[b]);
                tother[b] = tl[b];
            }
            uint32_t scw[4];
            for (int k = 0; k < 4; k++) scw[k] = sl[0][k] ^ sl[1][k];
            const uint64_t sg = t[1][l] ? (uint64_t)-1 : 1u; /* (-1)^t1 */
            uint64_t vcw[2];
            for (int j = 0; j < w; j++) {
                vcw[j] = sg * (vl[1][j] - vl[0][j] - va[l][j]);
                if (a) vcw[j] += sg * beta[(size_t)l * (size_t)w + (size_t)j];
                va[l][j] = va[l][j] - vk[1][j] + vk[0][j] + sg * vcw[j];
            }
            /* t_CW^L = t0L ^ t1L ^ a ^ 1, t_CW^R = t0R ^ t1R ^ a */
            const uint32_t tcw_keep = tk[0] ^ tk[1] ^ (keep == 0 ? a ^ 1u : a);
            const uint32_t tcw_lose = tother[0] ^ tother[1] ^ (lose == 0 ? a ^ 1u : a);
            const uint32_t tcw_l = keep == 0 ? tcw_keep : tcw_lose;
            const uint32_t tcw_r = keep == 0 ? tcw_lose : tcw_keep;
            uint8_t *p = cw + (size_t)l * cwb + (size_t)i * step;
            uint8_t *tb = cw + (size_t)l * cwb + (size_t)n * step + 8u * (size_t)w;
            store_seed(p, scw);
            for (int j = 0; j < w; j++) store64_le(p + 16 + 8 * j, vcw[j]);
            tb[(2 * i) / 8] |= (uint8_t)(tcw_l << ((2 * i) % 8));
            tb[(2 * i + 1) / 8] |= (uint8_t)(tcw_r << ((2 * i + 1) % 8));
            for (int b = 0; b < 2; b++) {
                const uint32_t m = 0u - t[b][l];
                for (int k = 0; k < 4; k++) key[b][k][l] = sk[b][k] ^ (scw[k] & m);
                t[b][l] = tk[b] ^ (t[b][l] & tcw_keep);
            }
        }
    }
    blocks(key[0], 1, o[0]);
    blocks(key[1], 1, o[1]);
    for (int l = 0; l < lanes; l++) {
        const uint64_t sg = t[1][l] ? (uint64_t)-1 : 1u;
        for (int j = 0; j < w; j++) {
            const uint64_t c0 = (uint64_t)o[0][2 * j][l] | ((uint64_t)o[0][2 * j + 1][l] << 32);
            const uint64_t c1 = (uint64_t)o[1][2 * j][l] | ((uint64_t)o[1][2 * j + 1][l] << 32);
            store64_le(cw + (size_t)l * cwb + (size_t)n * step + 8u * (size_t)j,
                       sg * (c1 - c0 - va[l][j]));
        }
    }
}

static void dcf_eval_group(dcf_blocks_fn blocks, int party, int n, int w, int lanes,
                           const uint8_t *seeds, const uint8_t *cw, size_t cwb,
                           const uint64_t *x, uint64_t *out)
{
    uint32_t key[8][DCF_LANES] = {{0}};
    uint32_t o[16][DCF_LANES];
    uint32_t t[DCF_LANES];
    uint64_t v[DCF_LANES][2];
    const uint64_t sg = party ? (uint64_t)-1 : 1u;
    const size_t step = 16u + 8u * (size_t)w;
    for (int l = 0; l < lanes; l++) {
        for (int k = 0; k < 4; k++) key[k][l] = chacha_load32_le(seeds + 16 * l + 4 * k);
        t[l] = (uint32_t)party;
        v[l][0] = v[l][1] = 0;
    }
    for (int i = 0; i < n; i++) {
        blocks(key, 0, o);
        for (int l = 0; l < lanes; l++) {
            const uint8_t *p = cw + (size_t)l * cwb + (size_t)i * step;
            const uint8_t *tb = cw + (size_t)l * cwb + (size_t)n * step + 8u * (size_t)w;
            const int bit = (int)((x[l] >> (n - 1 - i)) & 1u);
            uint32_t s[4];
            uint64_t vv[2];
            const uint32_t th = dcf_half(o, l, bit, s, vv);
            const uint32_t tcw = (tb[(2 * i + bit) / 8] >> ((2 * i + bit) % 8)) & 1u;
            const uint32_t m = 0u - t[l];
            const uint64_t m64 = 0u - (uint64_t)t[l];
            for (int j = 0; j < w; j++) v[l][j] += sg * (vv[j] + (load64_le(p + 16 + 8 * j) & m64));
            for (int k = 0; k < 4; k++) key[k][l] = s[k] ^ (chacha_load32_le(p + 4 * k) & m);
            t[l] = th ^ (t[l] & tcw);
        }
    }
    blocks(key, 1, o);
    for (int l = 0; l < lanes; l++) {
        const uint64_t m64 = 0u - (uint64_t)t[l];
        const uint8_t *f = cw + (size_t)l * cwb + (size_t)n * step;
        for (int j = 0; j < w; j++) {
            const uint64_t c = (uint64_t)o[2 * j][l] | ((uint64_t)o[2 * j + 1][l] << 32);
            out[(size_t)l * (size_t)w + (size_t)j] =
                v[l][j] + sg * (c + (load64_le(f + 8 * j) & m64));
        }
    }
}

static int dcf_check(int n_bits, int width, const uint64_t *xs, size_t n_keys)
{
    if (n_bits < 1 || n_bits > 64 || width < 1 || width > 2) return MPCAI_ERR_ARG;
    if (n_bits < 64)
        for (size_t i = 0; i < n_keys; i++)
            if (xs[i] >> n_bits) return MPCAI_ERR_RANGE;
    return MPCAI_OK;
}

int mpcai_dcf_key_bytes(int n_bits, int width, size_t *out)
{
    if (!out) return MPCAI_ERR_NULL;
    if (n_bits < 1 || n_bits > 64 || width < 1 || width > 2) return MPCAI_ERR_ARG;
    *out = dcf_cw_bytes(n_bits, width);
    return MPCAI_OK;
}

/* ---- batches, optionally over threads ---------------------------------- */
typedef struct {
    int gen, party, n, w;
    const uint64_t *x;    /* alphas (gen) or points (eval) */
    const uint64_t *beta; /* gen */
    const uint8_t *s0, *s1;
    uint8_t *cw_out;      /* gen */
    const uint8_t *cw_in; /* eval */
    uint64_t *out;        /* eval */
    size_t lo, hi;
} dcf_job;

static void *dcf_job_run(void *arg)
{
    dcf_job *j = (dcf_job *)arg;
    const size_t cwb = dcf_cw_bytes(j->n, j->w);
    const dcf_blocks_fn blocks = dcf_blocks_for_level();
    for (size_t k = j->lo; k < j->hi; k += DCF_LANES) {
        const int lanes = (int)(j->hi - k < DCF_LANES ? j->hi - k : DCF_LANES);
        if (j->gen)
            dcf_gen_group(blocks, j->n, j->w, lanes, j->x + k, j->beta + k * (size_t)j->w,
                          j->s0 + 16 * k, j->s1 + 16 * k, j->cw_out + k * cwb, cwb);
        else
            dcf_eval_group(blocks, j->party, j->n, j->w, lanes, j->s0 + 16 * k,
                           j->cw_in + k * cwb, cwb, j->x + k, j->out + k * (size_t)j->w);
    }
    return NULL;
}

static int dcf_run(dcf_job *base, size_t n_keys, int n_threads)
{
    if (n_threads < 1 || n_threads > MPCAI_MAX_THREADS) return MPCAI_ERR_ARG;
    if ((size_t)n_threads > n_keys / DCF_MIN_KEYS_PER_THREAD)
        n_threads = (int)(n_keys / DCF_MIN_KEYS_PER_THREAD);
    if (n_threads < 1) n_threads = 1;
#ifndef _WIN32
    if (n_threads > 1) {
        dcf_job jobs[MPCAI_MAX_THREADS];
        pthread_t tid[MPCAI_MAX_THREADS];
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            jobs[t] = *base;
            jobs[t].lo = n_keys * (size_t)t / (size_t)n_threads;
            jobs[t].hi = n_keys * (size_t)(t + 1) / (size_t)n_threads;
        }
        for (int t = 1; t < n_threads; t++) {
            if (pthread_create(&tid[t], NULL, dcf_job_run, &jobs[t]) != 0) break;
            started = t;
        }
        dcf_job_run(&jobs[0]);
        for (int t = started + 1; t < n_threads; t++) dcf_job_run(&jobs[t]);
        for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
        return MPCAI_OK;
    }
#endif
    base->lo = 0;
    base->hi = n_keys;
    dcf_job_run(base);
    return MPCAI_OK;
}

int mpcai_dcf_gen(int n_bits, int width, const uint64_t *alpha, const uint64_t *beta,
                  const uint8_t *s0, const uint8_t *s1, size_t n_keys, uint8_t *cw,
                  int n_threads)
{
    if (n_keys && (!alpha || !beta || !s0 || !s1 || !cw)) return MPCAI_ERR_NULL;
    int rc = dcf_check(n_bits, width, alpha, n_keys);
    if (rc) return rc;
    dcf_job j = {1, 0, n_bits, width, alpha, beta, s0, s1, cw, NULL, NULL, 0, 0};
    return dcf_run(&j, n_keys, n_threads);
}

int mpcai_dcf_eval(int party, int n_bits, int width, const uint8_t *seeds, const uint8_t *cw,
                   const uint64_t *x, size_t n_keys, uint64_t *out, int n_threads)
{
    if (party != 0 && party != 1) return MPCAI_ERR_ARG;
    if (n_keys && (!seeds || !cw || !x || !out)) return MPCAI_ERR_NULL;
    int rc = dcf_check(n_bits, width, x, n_keys);
    if (rc) return rc;
    dcf_job j = {0, party, n_bits, width, x, NULL, seeds, NULL, NULL, cw, out, 0, 0};
    return dcf_run(&j, n_keys, n_threads);
}
