/*
 * Packet loss concealment in the spirit of ITU-T G.711 Appendix I:
 *  - at the start of an erasure the pitch period P (5..15 ms) of the last output is found
 *    by normalised autocorrelation and the last one, then two, then three periods are
 *    repeated (one period for the first 10 ms, two up to 20 ms, three after), with a
 *    quarter-period overlap-add whenever the repeated span grows;
 *  - the level falls by 20 % per 10 ms after the first 10 ms (silent after 60 ms);
 *  - the first real samples after the erasure are cross-faded from the synthetic
 *    continuation over 4 ms, plus 4 ms per extra 10 ms lost (at most 10 ms).
 * Appendix I delays its output by a quarter period to overlap-add the history with the
 * repeated period. We cannot delay (the jitter buffer hands samples straight out), so the
 * mismatch between the last real sample and the repeated period is instead added to the
 * synthetic signal and decayed to zero over a quarter period.
 */
#include <math.h>
#include <string.h>

#include "plc.h"

static float corr_at(const int16_t *a, const int16_t *b, int win, float ea, int step)
{
    float xy = 0.f, eb = 0.f;
    for (int i = 0; i < win; i += step) {
        xy += (float)a[i] * (float)b[i];
        eb += (float)b[i] * (float)b[i];
    }
    if (ea <= 0.f || eb <= 0.f)
        return 0.f;
    return xy / sqrtf(ea * eb);
}

int pbx_pitch_search(const int16_t *x, int len, int win, int pmin, int pmax, float *corr)
{
    const int16_t *a = x + len - win;
    float ea = 0.f, ea2 = 0.f, best = -2.f;
    int bestp = pmin;

    if (pmax > len - win)
        pmax = len - win;
    if (pmin > pmax)
        pmin = pmax;
    for (int i = 0; i < win; i++) {
        ea += (float)a[i] * (float)a[i];
        if (!(i & 1))
            ea2 += (float)a[i] * (float)a[i];
    }
    if (ea < (float)win) {       /* digital silence: any period will do */
        if (corr)
            *corr = 0.f;
        return pmin;
    }
    /* Coarse search on even lags over every other sample, then refine around the winner
       at full resolution. */
    for (int p = pmin; p <= pmax; p += 2) {
        float c = corr_at(a, a - p, win, ea2, 2);
        if (c > best) {
            best = c;
            bestp = p;
        }
    }
    int lo = bestp - 2 < pmin ? pmin : bestp - 2, hi = bestp + 2 > pmax ? pmax : bestp + 2;
    best = -2.f;
    for (int p = lo; p <= hi; p++) {
        float c = corr_at(a, a - p, win, ea, 1);
        if (c > best) {
            best = c;
            bestp = p;
        }
    }
    if (corr)
        *corr = best;
    return bestp;
}

void pbx_plc_reset(pbx_plc_t *p)
{
    int silence_only = p->silence_only;
    memset(p, 0, sizeof *p);
    p->silence_only = silence_only;
    p->pitch = PBX_PLC_PITCH_MIN;
    p->periods = 1;
}

void pbx_plc_init(pbx_plc_t *p, int silence_only)
{
    p->silence_only = silence_only ? 1 : 0;
    pbx_plc_reset(p);
}

static void push_hist(pbx_plc_t *p, const int16_t *pcm, int n)
{
    if (n >= PBX_PLC_HIST) {
        memcpy(p->hist, pcm + n - PBX_PLC_HIST, sizeof p->hist);
        return;
    }
    memmove(p->hist, p->hist + n, (size_t)(PBX_PLC_HIST - n) * sizeof p->hist[0]);
    memcpy(p->hist + PBX_PLC_HIST - n, pcm, (size_t)n * sizeof pcm[0]);
}

static void start_erasure(pbx_plc_t *p)
{
    float c;
    int P = pbx_pitch_search(p->hist, PBX_PLC_HIST, PBX_PLC_CORR_LEN, PBX_PLC_PITCH_MIN,
                             PBX_PLC_PITCH_MAX, &c);
    const int16_t *end = p->hist + PBX_PLC_HIST;
    p->pitch = P;
    p->periods = 1;
    p->ola_left = 0;
    for (int i = 0; i < 3 * P; i++)
        p->pbuf[i] = (float)end[i - 3 * P];
    p->offset = (float)end[-1] - (float)end[-1 - P];
}

/* The repeated-period value at erasure position i using the last np periods. */
static float pattern(const pbx_plc_t *p, int np, int i)
{
    int L = np * p->pitch;
    return p->pbuf[3 * p->pitch - L + i % L];
}

/* Synthetic sample number i of the current erasure (before rounding). */
static float synth(pbx_plc_t *p, int i)
{
    if (p->silence_only || i >= PBX_PLC_SILENT_AFTER)
        return 0.f;
    int want = i < PBX_PLC_ATTEN_START ? 1 : i < 2 * PBX_PLC_ATTEN_START ? 2 : 3;
    if (want != p->periods) {
        p->ola_from = p->periods;
        p->periods = want;
        p->ola_left = p->pitch / 4;
    }
    float v = pattern(p, p->periods, i);
    if (p->ola_left > 0) {
        int L = p->pitch / 4;
        float w = (float)(L - p->ola_left + 1) / (float)(L + 1);
        v = w * v + (1.f - w) * pattern(p, p->ola_from, i);
        p->ola_left--;
    }
    int R = p->pitch / 4;
    if (i < R)
        v += p->offset * (float)(R - i) / (float)R;
    if (i >= PBX_PLC_ATTEN_START)
        v *= 1.f - 0.2f * (float)(i - PBX_PLC_ATTEN_START) / (float)PBX_PLC_ATTEN_START;
    return v;
}

static int16_t clip16(float v)
{
    if (v > 32767.f)
        return 32767;
    if (v < -32768.f)
        return -32768;
    return (int16_t)lrintf(v);
}

void pbx_plc_conceal(pbx_plc_t *p, int16_t *out, int n)
{
    if (p->merge_len > 0) {      /* lost again while merging: a new erasure starts */
        p->erased = 0;
        p->merge_len = p->merge_pos = 0;
    }
    if (p->erased == 0)
        start_erasure(p);
    for (int i = 0; i < n; i++)
        out[i] = clip16(synth(p, p->erased + i));
    p->erased += n;
    push_hist(p, out, n);
}

void pbx_plc_good(pbx_plc_t *p, int16_t *pcm, int n)
{
    if (p->silence_only)
        p->erased = 0;          /* silence fill: received audio is never altered */
    if (p->erased > 0) {
        if (p->merge_len == 0) {
            int extra = (p->erased - 1) / PBX_PLC_ATTEN_START;
            p->merge_len = 32 + 32 * extra > 80 ? 80 : 32 + 32 * extra;
            p->merge_pos = 0;
        }
        int i = 0;
        for (; i < n && p->merge_pos < p->merge_len; i++, p->merge_pos++) {
            float w = (float)(p->merge_pos + 1) / (float)(p->merge_len + 1);
            pcm[i] = clip16(w * (float)pcm[i] + (1.f - w) * synth(p, p->erased + p->merge_pos));
        }
        if (p->merge_pos >= p->merge_len) {
            p->erased = 0;
            p->merge_len = p->merge_pos = 0;
        }
    }
    push_hist(p, pcm, n);
}
