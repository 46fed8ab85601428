/*
 * mpcai_native.h -- the whole C API of mpcai's native core.
 *
 * Conventions (see ../shared/DESIGN.md):
 *   - every exported function has the mpcai_ prefix;
 *   - buffers are passed as (pointer, length) with lengths in elements
 *     (uint64_t) or bytes (uint8_t) as named;
 *   - every function returns an int status: MPCAI_OK or a negative error;
 *   - nothing else is exported (internal helpers are static, or hidden
 *     when several .c files share them: _dispatch.h; shared inline code
 *     is in the internal headers _dispatch.h and _chacha_core.h).
 *
 * The text between BEGIN CDEF and END CDEF is fed verbatim to cffi's cdef,
 * so it must stay plain declarations (no #include, no #if).
 */
#ifndef MPCAI_NATIVE_H
#define MPCAI_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF */
#define MPCAI_OK 0
#define MPCAI_ERR_NULL -1      /* a required pointer is NULL             */
#define MPCAI_ERR_LENGTH -2    /* a length is wrong or too large         */
#define MPCAI_ERR_RANGE -3     /* an input field element is not below p  */
#define MPCAI_ERR_ARG -4       /* any other invalid argument             */
#define MPCAI_ERR_NOMEM -5     /* allocation failed                      */

/* ---- CPU dispatch (dispatch.c) ------------------------------------- */
/* Paths ("levels"): 0 = portable scalar, 1 = AVX2, 2 = AVX-512 (F, DQ,
 * BW, VL).  Output is bit-identical on every path; the switch exists so
 * tests and benchmarks can compare them.                               */
/* The highest level compiled in and supported by this CPU and OS.      */
int mpcai_simd_available(void);
/* Select the path of every kernel (ChaCha20/PRG, Z_2^64 and GF(p)):
 * min(level, mpcai_simd_available()), 0 for level <= 0.  Returns the
 * level now in effect.  The default is the highest level available,
 * capped by the environment variable MPCAI_SIMD ("scalar", "avx2",
 * "avx512") if it is set when the first kernel runs.                   */
int mpcai_simd_select(int level);
/* The level now in effect.                                             */
int mpcai_simd_level(void);

/* ---- ChaCha20, RFC 8439 (chacha20.c) ------------------------------- */
/* Keystream for a 32-byte key, 12-byte nonce and 32-bit initial block
 * counter.  out_len bytes; must not run past block counter 2^32 - 1. */
int mpcai_chacha20_keystream(const uint8_t *key, size_t key_len,
                             const uint8_t *nonce, size_t nonce_len,
                             uint32_t counter,
                             uint8_t *out, size_t out_len);

/* ---- PRG expansion of a 32-byte seed (chacha20.c) ------------------ */
/* The stream is ChaCha20(key = seed, nonce = 0^12, counter from 0),
 * read as little-endian uint64 words w_0, w_1, ...                     */
/* Ring Z_2^64: element i is w_i.  n <= MPCAI_PRG_MAX_WORDS.            */
int mpcai_prg_ring64(const uint8_t *seed, size_t seed_len,
                     uint64_t *out, size_t n);
/* acc[i] = acc[i] + sign * w_i  (mod 2^64), sign is +1 or -1.  The mask
 * is never written to memory. */
int mpcai_prg_ring64_acc(const uint8_t *seed, size_t seed_len, int sign,
                         uint64_t *acc, size_t n);
/* The same, split over up to n_threads threads (1..64; fewer are used for
 * short vectors).  Output identical to mpcai_prg_ring64_acc.            */
int mpcai_prg_ring64_acc_mt(const uint8_t *seed, size_t seed_len, int sign,
                            uint64_t *acc, size_t n, int n_threads);
/* Z_2^32: the same stream read as little-endian 32-bit words v_0, v_1,
 * ...; acc[i] = acc[i] + sign * v_i (mod 2^32), over up to n_threads
 * threads.  Half the keystream of the 64-bit kernel per element. */
int mpcai_prg_ring32_acc_mt(const uint8_t *seed, size_t seed_len, int sign,
                            uint32_t *acc, size_t n, int n_threads);
/* Z_2^24: the same stream read as little-endian 3-byte values u_0, u_1, ...
 * (u_i is bytes 3i..3i+2); acc[i] = acc[i] + sign * u_i (mod 2^32, so the
 * low 24 bits are the sum modulo 2^24), over up to n_threads threads.
 * Three quarters of the keystream of the 32-bit kernel per element. */
int mpcai_prg_ring24_acc_mt(const uint8_t *seed, size_t seed_len, int sign,
                            uint32_t *acc, size_t n, int n_threads);
/* GF(p), p = 2^61 - 1, by rejection sampling: candidate j is
 * w_j & (2^61 - 1); it is rejected iff it equals p.  Element i is the
 * i-th accepted candidate (so the output is uniform, no modulo bias).   */
int mpcai_prg_fieldp(const uint8_t *seed, size_t seed_len,
                     uint64_t *out, size_t n);
/* acc[i] = acc[i] + sign * e_i mod p, where e_i is element i above.
 * Every acc[i] must be < p (MPCAI_ERR_RANGE otherwise, acc untouched). */
int mpcai_prg_fieldp_acc(const uint8_t *seed, size_t seed_len, int sign,
                         uint64_t *acc, size_t n);

/* ---- Z_2^64 kernels (ring64.c) ------------------------------------- */
/* C = A B mod 2^64; A is m x k, B is k x n, C is m x n, all row-major
 * and contiguous.  C must not alias A or B. */
int mpcai_ring64_gemm(const uint64_t *a, const uint64_t *b, uint64_t *c,
                      size_t m, size_t k, size_t n);

/* ---- GF(p), p = 2^61 - 1 (fieldp.c) -------------------------------- */
/* Element-wise; every input must be < p (MPCAI_ERR_RANGE otherwise).
 * out may alias a or b. */
int mpcai_fp_add(const uint64_t *a, const uint64_t *b, uint64_t *out,
                 size_t n);
int mpcai_fp_sub(const uint64_t *a, const uint64_t *b, uint64_t *out,
                 size_t n);
int mpcai_fp_mul(const uint64_t *a, const uint64_t *b, uint64_t *out,
                 size_t n);
/* Polynomial evaluation (Horner) of len polynomials at n_points points:
 * coeffs is n_coeffs x len row-major (row k holds coefficient k of every
 * polynomial), out is n_points x len:
 *   out[j][i] = sum_k coeffs[k][i] * points[j]^k  mod p.               */
int mpcai_fp_poly_eval(const uint64_t *coeffs, size_t n_coeffs, size_t len,
                       const uint64_t *points, size_t n_points,
                       uint64_t *out);
/* Shamir shares of a whole vector in one call: the polynomial for
 * element i is secret[i] + sum_{k=1..degree} r[i*degree + k-1] x^k with
 * r = mpcai_prg_fieldp(seed, len * degree); out is n_points x len.  The
 * random coefficients are never materialised as a whole.               */
int mpcai_fp_shamir_share(const uint64_t *secret, size_t len,
                          const uint8_t *seed, size_t seed_len,
                          size_t degree,
                          const uint64_t *points, size_t n_points,
                          uint64_t *out);
/* The same, split over up to n_threads threads (1..64; fewer are used for
 * short vectors).  Output identical to mpcai_fp_shamir_share.           */
int mpcai_fp_shamir_share_mt(const uint64_t *secret, size_t len,
                             const uint8_t *seed, size_t seed_len,
                             size_t degree,
                             const uint64_t *points, size_t n_points,
                             uint64_t *out, int n_threads);
/* FOR TESTS ONLY.  mpcai_prg_fieldp, except that the generator's raw
 * words at the indices force[0..n_force) of the stream (any order) are
 * replaced by 2^64 - 1, whose candidate is p, before the SIMD path's own
 * comparison with p: the rejection path, otherwise met with probability
 * 2^-61 per word, becomes reachable through the same detection, reader and
 * filter as a real rejection.                                          */
int mpcai_testhook_prg_fieldp(const uint8_t *seed, size_t seed_len,
                              const uint64_t *force, size_t n_force,
                              uint64_t *out, size_t n);
/* FOR TESTS ONLY -- never for real shares.  mpcai_fp_shamir_share_mt,
 * except that (a) the words of the coefficient stream at the indices
 * force[0..n_force) (any order) are forced to be rejected, as in
 * mpcai_testhook_prg_fieldp, which makes the rare paths of rejection
 * sampling reachable, and (b) a thread gets at least min_per_thread
 * elements (0 = the default).  The output equals the single-threaded
 * sharing with the same forced rejections.  If info is not NULL it
 * receives {threads used, index of the first thread whose successors'
 * portions were recomputed, or -1}.                                    */
int mpcai_testhook_fp_shamir_share_mt(const uint64_t *secret, size_t len,
                                      const uint8_t *seed, size_t seed_len,
                                      size_t degree,
                                      const uint64_t *points, size_t n_points,
                                      uint64_t *out, int n_threads,
                                      size_t min_per_thread,
                                      const uint64_t *force, size_t n_force,
                                      int *info);
/* Linear combination of rows (e.g. Lagrange interpolation at a point):
 *   out[i] = sum_j weights[j] * rows[j][i]  mod p;
 * rows is n_rows x len row-major.                                      */
int mpcai_fp_lincomb(const uint64_t *rows, size_t n_rows, size_t len,
                     const uint64_t *weights, uint64_t *out);
/* ---- distributed comparison functions (fss.c) ---------------------- */
/* DCF of Boyle et al. (EUROCRYPT 2021) over n_bits-bit inputs (1..64)
 * with payloads of width 1 or 2 elements of Z_2^64: for key k, the two
 * parties' outputs at x add up to beta[k] if x < alpha[k], else to 0.
 * A key is a 16-byte seed per party plus correction words common to both
 * parties, mpcai_dcf_key_bytes(n_bits, width) bytes per key.            */
int mpcai_dcf_key_bytes(int n_bits, int width, size_t *out);
/* Correction words of n_keys keys: alpha[k] < 2^n_bits (MPCAI_ERR_RANGE
 * otherwise), beta is n_keys x width, s0 and s1 are n_keys x 16 bytes of
 * fresh randomness (the two parties' seeds), cw receives n_keys x
 * key_bytes.  Over up to n_threads threads (1..64); same output.        */
int mpcai_dcf_gen(int n_bits, int width, const uint64_t *alpha, const uint64_t *beta,
                  const uint8_t *s0, const uint8_t *s1, size_t n_keys, uint8_t *cw,
                  int n_threads);
/* Party 0 or 1's output shares, out is n_keys x width, for its seeds
 * (n_keys x 16 bytes), the correction words and points x[k] < 2^n_bits. */
int mpcai_dcf_eval(int party, int n_bits, int width, const uint8_t *seeds, const uint8_t *cw,
                   const uint64_t *x, size_t n_keys, uint64_t *out, int n_threads);
/* ---- oblivious-transfer extension (ot.c) ----------------------------- */
/* For each of n_keys 16-byte keys k_j: `blocks` ChaCha20 blocks (64 bytes
 * each, counter 0..blocks-1, nonce 0) under the 32-byte key
 * k_j || le64(tweak + j) || 0^8, written to out + 64 * blocks * j.      */
int mpcai_chacha_many(const uint8_t *keys, size_t n_keys, uint64_t tweak, size_t blocks,
                      uint8_t *out);
/* The transpose of a rows x (8 row_bytes) bit matrix (rows % 8 == 0; bit c
 * of a row is bit c % 8 of its byte c / 8): out is (8 row_bytes) rows of
 * rows / 8 bytes, bit r of row c = bit c of input row r.                */
int mpcai_bit_transpose(const uint8_t *in, size_t rows, size_t row_bytes, uint8_t *out);
/* ---- ternary sketch (sketch.c) ------------------------------------ */
/* out[i] = sum_j R[i, j] x[j] (mod 2^64), i < k, for the k x d matrix R
 * with entries in {-1, 0, +1}: row i is read from ChaCha20(key = seed,
 * nonce = le32(i) || 0^8, counter from 0); block c gives entries 256 c ..
 * 256 c + 255, entry 64 q + t = bit t of word q minus bit t of word 4 + q
 * (little-endian uint64 words).  d <= MPCAI_SKETCH_MAX_DIM, k <=
 * MPCAI_SKETCH_MAX_ROWS, rows split over up to n_threads threads.       */
int mpcai_ternary_sketch(const uint8_t *seed, size_t seed_len, const uint64_t *x, size_t d,
                         uint64_t *out, size_t k, int n_threads);
/* ---- sampling by inversion of a cumulative table (dgauss.c) --------- */
/* A table of n entries c_j = (hi[j] << 64) | lo[j] (128-bit fixed point,
 * non-decreasing in j; 1 <= n <= MPCAI_DGAUSS_MAX_TABLE).  The index of a
 * 128-bit uniform u = (u_hi << 64) | u_lo is min(#{j : c_j <= u}, n - 1).
 * guide has 2^guide_bits + 1 entries (1 <= guide_bits <=
 * MPCAI_DGAUSS_MAX_GUIDE_BITS): guide[b] = #{j : hi[j] < b 2^(64 -
 * guide_bits)}, guide[2^guide_bits] = n.  mpcai_dgauss_guide makes it
 * (MPCAI_ERR_ARG if hi decreases somewhere); the other two check only that
 * it is non-decreasing and ends at n (a wrong guide gives wrong indices,
 * never an access outside the table).  Not constant time.              */
int mpcai_dgauss_guide(const uint64_t *hi, size_t n, int guide_bits, uint32_t *guide,
                       size_t guide_len);
/* out[i] = offset + the index of (u[2i] << 64) | u[2i+1], i < m, over up
 * to n_threads threads (1..64; fewer for short inputs).                 */
int mpcai_dgauss_invert(const uint64_t *hi, const uint64_t *lo, size_t n, const uint32_t *guide,
                        int guide_bits, const uint64_t *u, size_t m, int64_t offset,
                        int64_t *out, int n_threads);
/* The same with u = mpcai_prg_ring64(seed, 2 m) (m <= MPCAI_PRG_MAX_WORDS
 * / 2), made on the fly (never in memory): sample i inverts (w_2i << 64) |
 * w_2i+1.                                                               */
int mpcai_dgauss_sample(const uint8_t *seed, size_t seed_len, const uint64_t *hi,
                        const uint64_t *lo, size_t n, const uint32_t *guide, int guide_bits,
                        size_t m, int64_t offset, int64_t *out, int n_threads);
/* ---- Walsh-Hadamard transform and bit packing (hadamard.c) --------- */
/* In place: a = H a / sqrt(n) for the n x n Sylvester-Hadamard matrix H
 * (n a power of two, 1 <= n <= MPCAI_FWHT_MAX_LEN): radix-2 butterflies
 * (x, y) -> (x + y, x - y) at distances 1, 2, ..., n/2, then each value
 * divided by sqrt(n); bit-identical to evaluating the stages one by one
 * (on every SIMD path).                                                 */
int mpcai_fwht(double *a, size_t n);
/* in[i] mod 2^bits (1 <= bits <= 32) as bits [i bits, (i + 1) bits) of a
 * little-endian bit stream, zero-padded to out_len = ceil(n bits / 8)
 * bytes (MPCAI_ERR_LENGTH otherwise); n <= MPCAI_PACK_MAX_COUNT.        */
int mpcai_pack_bits(const uint32_t *in, size_t n, int bits, uint8_t *out, size_t out_len);
/* The inverse: n values below 2^bits from in_len = ceil(n bits / 8)
 * bytes (the padding bits are ignored).                                 */
int mpcai_unpack_bits(const uint8_t *in, size_t in_len, int bits, uint32_t *out, size_t n);
/* ---- quantisation (quantize.c) ------------------------------------- */
/* mpcai.encoding.quantize times a weight, in one pass: for x_i read as a
 * double and c_i = x_i clipped to [-clip, clip],
 *   out[i] = weight * min(max(rint((c_i + clip) * factor), 0), levels)
 * modulo 2^out_bits (out is uint32_t[n] for out_bits 32, uint64_t[n] for
 * 64), with round half to even and the IEEE double operations in this
 * order (factor = levels / (2 clip), computed by the caller).  clip and
 * factor finite and > 0, 1 <= levels <= 2^53 - 1, clip_mode 0 ("raise")
 * or 1 ("clip").  counts[0..2] receive the number of x_i < -clip or >
 * clip (infinities included), of NaNs and of infinities.  Returns
 * MPCAI_ERR_RANGE (counts written, out holds the values of the clipped
 * inputs, NaN as level 0) if there is a NaN or an infinity, or, in
 * "raise" mode, a value outside [-clip, clip].                          */
int mpcai_quantize_f32(const float *x, size_t n, double clip, double factor, uint64_t levels,
                       uint64_t weight, int clip_mode, void *out, int out_bits,
                       uint64_t *counts);
int mpcai_quantize_f64(const double *x, size_t n, double clip, double factor, uint64_t levels,
                       uint64_t weight, int clip_mode, void *out, int out_bits,
                       uint64_t *counts);
/* END CDEF */

#define MPCAI_FIELD_P ((uint64_t)0x1FFFFFFFFFFFFFFFULL)
/* Length of every PRG seed (a ChaCha20 key).                            */
#define MPCAI_SEED_BYTES 32
/* Upper bound of every n_threads argument. */
#define MPCAI_MAX_THREADS 64
/* 2^32 blocks of 64 bytes = 2^35 words.                                */
#define MPCAI_PRG_MAX_WORDS ((uint64_t)1 << 35)
/* Limits of mpcai_ternary_sketch: 2^32 blocks of 256 entries per row. */
#define MPCAI_SKETCH_MAX_DIM ((uint64_t)1 << 40)
#define MPCAI_SKETCH_MAX_ROWS ((uint64_t)1 << 32)
/* Limits of the dgauss.c kernels (the guide holds uint32 indices). */
#define MPCAI_DGAUSS_MAX_TABLE (((uint64_t)1 << 32) - 1)
#define MPCAI_DGAUSS_MAX_GUIDE_BITS 24
/* Limits of the hadamard.c kernels. */
#define MPCAI_FWHT_MAX_LEN ((uint64_t)1 << 40)
#define MPCAI_PACK_MAX_COUNT ((uint64_t)1 << 40)

#endif /* MPCAI_NATIVE_H */
