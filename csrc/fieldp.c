/* fieldp.c -- GF(2^61 - 1) kernels.  (placeholder; being written) */
#include "mpcai_native.h"

int mpcai_fp_add(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{ (void)a; (void)b; (void)out; (void)n; return MPCAI_ERR_ARG; }
int mpcai_fp_sub(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{ (void)a; (void)b; (void)out; (void)n; return MPCAI_ERR_ARG; }
int mpcai_fp_mul(const uint64_t *a, const uint64_t *b, uint64_t *out, size_t n)
{ (void)a; (void)b; (void)out; (void)n; return MPCAI_ERR_ARG; }
int mpcai_fp_poly_eval(const uint64_t *coeffs, size_t n_coeffs, size_t len,
                       const uint64_t *points, size_t n_points, uint64_t *out)
{ (void)coeffs; (void)n_coeffs; (void)len; (void)points; (void)n_points; (void)out; return MPCAI_ERR_ARG; }
int mpcai_fp_shamir_share(const uint64_t *secret, size_t len, const uint8_t *seed, size_t seed_len,
                          size_t degree, const uint64_t *points, size_t n_points, uint64_t *out)
{ (void)secret; (void)len; (void)seed; (void)seed_len; (void)degree; (void)points; (void)n_points; (void)out; return MPCAI_ERR_ARG; }
int mpcai_fp_lincomb(const uint64_t *rows, size_t n_rows, size_t len, const uint64_t *weights, uint64_t *out)
{ (void)rows; (void)n_rows; (void)len; (void)weights; (void)out; return MPCAI_ERR_ARG; }
