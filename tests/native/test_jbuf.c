/* Jitter buffer: a steady stream across sequence and timestamp wrap, with one loss and one duplicate. */
#include <math.h>
#include <stdio.h>

#include "pbxcore.h"

int main(void)
{
    pbx_jb_params_t p;
    pbx_jb_t *jb;
    pbx_jb_params_default(&p);
    if (pbx_jb_create(&p, &jb) != PBX_OK)
        return 1;
    int16_t pcm[160], out[160];
    uint16_t seq = 65500;
    uint32_t ts = 4294967295u - 8000;
    int64_t t = 1000000;
    int bad = 0;
    for (int k = 0; k < 1000; k++) {
        for (int i = 0; i < 160; i++)
            pcm[i] = (int16_t)(8000 * sin(2 * M_PI * 440 * (k * 160 + i) / 8000.0));
        if (k != 500 && pbx_jb_put(jb, seq, ts, pcm, 160, t + (k % 7) * 1000) != PBX_JB_PUT_STORED)
            bad++;
        if (k == 200 && pbx_jb_put(jb, seq, ts, pcm, 160, t) != PBX_JB_PUT_DUPLICATE)
            bad++;
        seq++;
        ts += 160;
        if (pbx_jb_get(jb, out, 160, t + 5000) < 0)
            bad++;
        t += 20000;
    }
    pbx_jb_stats_t s;
    pbx_jb_get_stats(jb, &s);
    if (s.received != 999 || s.lost != 1 || s.duplicated != 1 || s.late_discarded != 0)
        bad++;
    if (s.concealed_samples == 0 || s.concealed_samples > 320)
        bad++;
    if (s.played_samples + s.concealed_samples + s.silence_samples != 1000 * 160)
        bad++;
    pbx_jb_destroy(jb);
    if (bad) {
        fprintf(stderr, "test_jbuf: %d failures\n", bad);
        return 1;
    }
    return 0;
}
