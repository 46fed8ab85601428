/*
 * ot.c -- the bulk kernels of oblivious-transfer extension (mpcai.sharing.ot):
 *
 *   mpcai_chacha_many   ChaCha20 blocks under many short keys at once: the
 *                       correlation-robust hash of IKNP rows and the PRG of
 *                       OT messages (16 keys per group, as the DCF does);
 *   mpcai_bit_transpose a bit matrix transposed (the IKNP matrix), by 8x8
 *                       bit blocks in 64-bit words.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mpcai_native.h"
#include "_chacha_core.h"

static inline void store32_le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int mpcai_chacha_many(const uint8_t *keys, size_t n_keys, uint64_t tweak, size_t blocks,
                      uint8_t *out)
{
    if ((n_keys && (!keys || !out)) || blocks > (size_t)UINT32_MAX) return MPCAI_ERR_ARG;
    if (blocks && n_keys > SIZE_MAX / 64u / blocks) return MPCAI_ERR_LENGTH;
    const chacha_lanes_fn lanes_fn = chacha_lanes_for_level();
    uint32_t key[8][CHACHA_LANES] = {{0}};
    uint32_t o[16][CHACHA_LANES];
    for (size_t base = 0; base < n_keys; base += CHACHA_LANES) {
        const size_t lanes = n_keys - base < CHACHA_LANES ? n_keys - base : CHACHA_LANES;
        for (size_t l = 0; l < lanes; l++) {
            const uint64_t t = tweak + base + l;
            for (int k = 0; k < 4; k++) key[k][l] = chacha_load32_le(keys + 16 * (base + l) + 4 * k);
            key[4][l] = (uint32_t)t;
            key[5][l] = (uint32_t)(t >> 32);
        }
        for (size_t b = 0; b < blocks; b++) {
            lanes_fn(key, (uint32_t)b, o);
            for (size_t l = 0; l < lanes; l++) {
                uint8_t *p = out + ((base + l) * blocks + b) * 64u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                uint32_t w[16];
                for (int k = 0; k < 16; k++) w[k] = o[k][l];
                memcpy(p, w, sizeof w);
#else
                for (int k = 0; k < 16; k++) store32_le(p + 4 * k, o[k][l]);
#endif
            }
        }
    }
    return MPCAI_OK;
}

/* Bit (r, c) of an 8x8 block at bit 8 r + c of x -> at bit 8 c + r. */
static inline uint64_t transpose8(uint64_t x)
{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x = x ^ t ^ (t << 28);
    return x;
}

int mpcai_bit_transpose(const uint8_t *in, size_t rows, size_t row_bytes, uint8_t *out)
{
    if (rows % 8u || ((rows && row_bytes) && (!in || !out))) return MPCAI_ERR_ARG;
    const size_t out_bytes = rows / 8u;
    for (size_t g = 0; g < out_bytes; g++) {
        const uint8_t *src = in + 8u * g * row_bytes;
        for (size_t c = 0; c < row_bytes; c++) {
            uint64_t x = 0;
            for (int r = 0; r < 8; r++) x |= (uint64_t)src[(size_t)r * row_bytes + c] << (8 * r);
            x = transpose8(x);
            for (int b = 0; b < 8; b++) out[(8u * c + (size_t)b) * out_bytes + g] = (uint8_t)(x >> (8 * b));
        }
    }
    return MPCAI_OK;
}
