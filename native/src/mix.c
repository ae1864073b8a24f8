/* Saturating mixers. Sums are exact in 32 bits (up to 65536 inputs) and clamped once. */
#include "pbxcore.h"

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

void pbx_mix_sum(const int16_t *const *in, int n_in, int16_t *out, int nsamples)
{
    for (int i = 0; i < nsamples; i++) {
        int32_t acc = 0;
        for (int k = 0; k < n_in; k++)
            acc += in[k][i];
        out[i] = sat16(acc);
    }
}

void pbx_mix_minus(const int16_t *const *in, int n, int16_t *const *out, int nsamples)
{
    for (int i = 0; i < nsamples; i++) {
        int32_t total = 0;
        for (int k = 0; k < n; k++)
            total += in[k][i];
        for (int k = 0; k < n; k++)
            out[k][i] = sat16(total - in[k][i]);
    }
}
