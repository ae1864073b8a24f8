/*
 * In-band DTMF detector.
 *
 * Blocks of 102 samples (12.75 ms). The plain DFT energy at the 8 DTMF frequencies picks
 * the strongest row and column tone. Their frequency offsets from nominal are measured
 * from the phase advance between two Hann-windowed DFTs over samples [0, 68) and
 * [34, 102): arg(Xb * conj(Xa)) / 34 radians per sample (unambiguous to +-117 Hz; the
 * window keeps the other group's tone out of the phase even with 9 dB twist). ITU-T Q.24
 * tolerances are about frequency (operate within +-1.5 %, reject beyond +-3.5 %), which
 * magnitude alone cannot tell from level. Then a least-squares fit of the two tones at
 * their measured frequencies gives each tone's power and the share of the block's energy
 * they explain.
 *
 * A block "hits" digit d when
 *   - both offsets are within 2.5 % of nominal,
 *   - each fitted tone is above -38 dBm0 and their twist is within 9 dB,
 *   - the two tones explain >= 85 % of the block's energy: speech, noise and partly
 *     filled blocks fail here.
 * A digit starts after 2 consecutive hits (a tone >= 305 samples = 38 ms always contains
 * two full blocks; a 20 ms tone cannot give two blocks 85 % full) and ends after 3 blocks
 * without it (an interruption <= 10 ms touches at most 2 blocks; a pause >= 40 ms always
 * yields 3 misses). The partly covered blocks at both ends are measured (plain DFT energy
 * share) so the reported duration is not quantised to blocks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

#define BLOCK 102
#define WIN 68
#define HOP 34
#define NFREQ 8
#define START_HITS 2
#define END_MISSES 3
#define FILL_MIN 0.85
#define OFFSET_MAX 0.025
/* Sine amplitude of 0 dBm0 in 16-bit linear (G.711: +3.14 dBm0 is full scale). */
#define DBM0_AMP 22785.0
#define LEVEL_MIN_DBM0 (-38.0)
#define TWIST_MAX_DB 9.0

static const double freqs[NFREQ] = {697, 770, 852, 941, 1209, 1336, 1477, 1633};
static const char keypad[4][4] = {
    {'1', '2', '3', 'A'}, {'4', '5', '6', 'B'}, {'7', '8', '9', 'C'}, {'*', '0', '#', 'D'}};

struct pbx_dtmf_det {
    float cosv[NFREQ][BLOCK], sinv[NFREQ][BLOCK];
    float hann[WIN];
    float x[BLOCK];          /* samples of the current block */
    double energy;
    int pos;                 /* sample index inside the current block */
    uint64_t block_start;    /* absolute sample index of the current block */
    char last_hit;           /* hit of the previous block */
    int hits;                /* consecutive hits of last_hit */
    uint64_t first_hit_start;
    char digit;              /* digit being heard, 0 = none */
    uint64_t digit_start, digit_last_end;
    int misses;
    uint64_t tail;           /* part of the first missed block the tone still covered */
    char prev_cand;          /* strongest pair of the previous block, and its fill */
    double prev_fill;
    double min_tone_power;   /* per-sample power of the weakest acceptable tone */
};

int pbx_dtmf_det_create(pbx_dtmf_det_t **out)
{
    if (!out)
        return PBX_EINVAL;
    pbx_dtmf_det_t *d = calloc(1, sizeof(*d));
    if (!d)
        return PBX_ENOMEM;
    for (int k = 0; k < NFREQ; k++) {
        double w = 2.0 * M_PI * freqs[k] / 8000.0;
        for (int n = 0; n < BLOCK; n++) {
            d->cosv[k][n] = (float)cos(w * n);
            d->sinv[k][n] = (float)-sin(w * n);
        }
    }
    for (int n = 0; n < WIN; n++)
        d->hann[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (n + 0.5) / WIN));
    double amp = DBM0_AMP * pow(10.0, LEVEL_MIN_DBM0 / 20.0);
    d->min_tone_power = amp * amp / 2.0;
    pbx_dtmf_det_reset(d);
    *out = d;
    return PBX_OK;
}

void pbx_dtmf_det_destroy(pbx_dtmf_det_t *d)
{
    free(d);
}

void pbx_dtmf_det_reset(pbx_dtmf_det_t *d)
{
    d->energy = 0;
    d->pos = 0;
    d->block_start = 0;
    d->last_hit = 0;
    d->hits = 0;
    d->digit = 0;
    d->misses = 0;
    d->tail = 0;
    d->prev_cand = 0;
    d->prev_fill = 0;
    d->first_hit_start = 0;
}

char pbx_dtmf_det_current(const pbx_dtmf_det_t *d)
{
    return d->digit;
}

/*
 * Fit x[n] ~ a1 cos(w1 n) + b1 sin(w1 n) + a2 cos(w2 n) + b2 sin(w2 n) over the block by
 * least squares (4x4 normal equations, Gaussian elimination). power[i] = (a^2 + b^2) / 2,
 * per sample; returns the energy the fit explains.
 */
static double fit_tones(const pbx_dtmf_det_t *d, double f1, double f2, double power[2])
{
    double phi[4][BLOCK];
    double w[2] = {2.0 * M_PI * f1 / 8000.0, 2.0 * M_PI * f2 / 8000.0};
    for (int t = 0; t < 2; t++) {
        double cw = cos(w[t]), sw = sin(w[t]), c = 1.0, s = 0.0;
        for (int n = 0; n < BLOCK; n++) {
            phi[2 * t][n] = c;
            phi[2 * t + 1][n] = s;
            double c2 = c * cw - s * sw;
            s = s * cw + c * sw;
            c = c2;
        }
    }
    double g[4][5];
    for (int i = 0; i < 4; i++) {
        for (int j = i; j < 4; j++) {
            double acc = 0;
            for (int n = 0; n < BLOCK; n++)
                acc += phi[i][n] * phi[j][n];
            g[i][j] = g[j][i] = acc;
        }
        double acc = 0;
        for (int n = 0; n < BLOCK; n++)
            acc += phi[i][n] * d->x[n];
        g[i][4] = acc;
    }
    double h[4] = {g[0][4], g[1][4], g[2][4], g[3][4]};
    for (int col = 0; col < 4; col++) {
        int piv = col;
        for (int i = col + 1; i < 4; i++)
            if (fabs(g[i][col]) > fabs(g[piv][col]))
                piv = i;
        if (fabs(g[piv][col]) < 1e-9) {
            power[0] = power[1] = 0;
            return 0;
        }
        if (piv != col)
            for (int j = 0; j < 5; j++) {
                double tmp = g[col][j];
                g[col][j] = g[piv][j];
                g[piv][j] = tmp;
            }
        for (int i = col + 1; i < 4; i++) {
            double f = g[i][col] / g[col][col];
            for (int j = col; j < 5; j++)
                g[i][j] -= f * g[col][j];
        }
    }
    double cf[4];
    for (int i = 3; i >= 0; i--) {
        double acc = g[i][4];
        for (int j = i + 1; j < 4; j++)
            acc -= g[i][j] * cf[j];
        cf[i] = acc / g[i][i];
    }
    power[0] = (cf[0] * cf[0] + cf[1] * cf[1]) / 2.0;
    power[1] = (cf[2] * cf[2] + cf[3] * cf[3]) / 2.0;
    return h[0] * cf[0] + h[1] * cf[1] + h[2] * cf[2] + h[3] * cf[3];
}

/* Analyse the finished block: the digit it carries, or 0. *cand is the digit of the
 * strongest row/column pair and *fill the share of the block's energy it holds (about
 * the fraction of the block the tone covers), computed even when the block fails. */
static char classify(pbx_dtmf_det_t *d, char *cand, double *fill_out)
{
    double e[NFREQ];
    for (int k = 0; k < NFREQ; k++) {
        float re = 0, im = 0;
        for (int n = 0; n < BLOCK; n++) {
            re += d->x[n] * d->cosv[k][n];
            im += d->x[n] * d->sinv[k][n];
        }
        e[k] = (double)re * re + (double)im * im;
    }
    int r = 0, c = 4;
    for (int k = 1; k < 4; k++)
        if (e[k] > e[r]) r = k;
    for (int k = 5; k < 8; k++)
        if (e[k] > e[c]) c = k;
    *cand = keypad[r][c - 4];
    *fill_out = 0;
    if (d->energy <= 0)
        return 0;
    int sel[2] = {r, c};
    double off[2];
    for (int i = 0; i < 2; i++) {
        int k = sel[i];
        float ar = 0, ai = 0, br = 0, bi = 0;
        for (int n = 0; n < WIN; n++) {
            float wa = d->hann[n] * d->x[n], wb = d->hann[n] * d->x[n + HOP];
            ar += wa * d->cosv[k][n];
            ai += wa * d->sinv[k][n];
            br += wb * d->cosv[k][n + HOP];
            bi += wb * d->sinv[k][n + HOP];
        }
        /* b * conj(a): the phase advance over HOP samples */
        double pr = (double)br * ar + (double)bi * ai;
        double pi = (double)bi * ar - (double)br * ai;
        off[i] = atan2(pi, pr) / HOP * 8000.0 / (2.0 * M_PI);
    }
    /* Share of the block a tone covers, from the plain DFT energies: m/N for a tone over
     * m of the N samples. Used to place digit edges inside partly filled blocks. */
    double raw = 2.0 * (e[r] + e[c]) / ((double)BLOCK * BLOCK) * BLOCK / d->energy;
    *fill_out = raw > 1.0 ? 1.0 : raw;
    for (int i = 0; i < 2; i++)
        if (fabs(off[i]) > OFFSET_MAX * freqs[sel[i]])
            return 0;
    /* Least-squares fit of the two tones at their measured frequencies: their powers, and
     * the share of the block's energy they explain (what is left is noise or speech). */
    double fit[2];
    double fill = fit_tones(d, freqs[r] + off[0], freqs[c] + off[1], fit) / d->energy;
    for (int i = 0; i < 2; i++)
        if (fit[i] < d->min_tone_power)
            return 0;
    double twist_db = 10.0 * log10(fit[1] / fit[0]);
    if (twist_db > TWIST_MAX_DB || twist_db < -TWIST_MAX_DB)
        return 0;
    if (fill < FILL_MIN)
        return 0;
    return *cand;
}

int pbx_dtmf_det_process(pbx_dtmf_det_t *d, const int16_t *pcm, int n, pbx_dtmf_digit_t *out, int max)
{
    int found = 0;
    for (int i = 0; i < n; i++) {
        float x = pcm[i];
        d->energy += (double)x * x;
        d->x[d->pos] = x;
        if (++d->pos < BLOCK)
            continue;

        char cand;
        double fill;
        char hit = classify(d, &cand, &fill);
        uint64_t bstart = d->block_start, bend = d->block_start + BLOCK;
        if (hit && hit == d->last_hit) {
            d->hits++;
        } else {
            d->hits = hit ? 1 : 0;
            if (hit) {
                /* the tone may have begun inside the previous block: count that part */
                d->first_hit_start = bstart;
                if (d->prev_cand == hit)
                    d->first_hit_start -= (uint64_t)(d->prev_fill * BLOCK + 0.5);
            }
        }
        d->last_hit = hit;
        if (d->digit) {
            if (hit == d->digit) {
                d->misses = 0;
                d->digit_last_end = bend;
                d->tail = 0;
            } else {
                if (d->misses == 0 && cand == d->digit)
                    d->tail = (uint64_t)(fill * BLOCK + 0.5);
                if (++d->misses >= END_MISSES) {
                    if (found < max) {
                        out[found].digit = d->digit;
                        out[found].duration_ms = (int)((d->digit_last_end + d->tail - d->digit_start) / 8);
                        out[found].start_sample = d->digit_start;
                        found++;
                    }
                    d->digit = 0;
                    d->misses = 0;
                }
            }
        }
        if (!d->digit && hit && d->hits >= START_HITS && d->misses == 0) {
            d->digit = hit;
            d->digit_start = d->first_hit_start;
            d->digit_last_end = bend;
            d->tail = 0;
        }
        d->prev_cand = cand;
        d->prev_fill = fill;
        d->block_start = bend;
        d->pos = 0;
        d->energy = 0;
    }
    return found;
}
