/* DLE shielding of voice-modem audio, ITU-T V.253 section 4.7 (voice data stream). */
#include "pbxcore.h"

#define DLE 0x10

void pbx_dle_decode(pbx_dle_state_t *st, const uint8_t *in, int n, uint8_t *audio, int *n_audio,
                    uint8_t *codes, int *n_codes)
{
    int na = 0, nc = 0;
    int pending = st->pending_dle;
    for (int i = 0; i < n; i++) {
        uint8_t b = in[i];
        if (pending) {
            pending = 0;
            if (b == DLE)
                audio[na++] = DLE;
            else
                codes[nc++] = b;
        } else if (b == DLE) {
            pending = 1;
        } else {
            audio[na++] = b;
        }
    }
    st->pending_dle = pending;
    *n_audio = na;
    *n_codes = nc;
}

int pbx_dle_encode(const uint8_t *in, int n, uint8_t *out)
{
    int o = 0;
    for (int i = 0; i < n; i++) {
        out[o++] = in[i];
        if (in[i] == DLE)
            out[o++] = DLE;
    }
    return o;
}
