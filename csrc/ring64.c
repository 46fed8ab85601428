/* ring64.c -- Z_2^64 kernels.  (placeholder; being written) */
#include "mpcai_native.h"

int mpcai_ring64_gemm(const uint64_t *a, const uint64_t *b, uint64_t *c,
                      size_t m, size_t k, size_t n)
{
    if ((!a || !b) && m * k * n) return MPCAI_ERR_NULL;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            uint64_t s = 0;
            for (size_t l = 0; l < k; l++) s += a[i * k + l] * b[l * n + j];
            c[i * n + j] = s;
        }
    return MPCAI_OK;
}
