/*
 * In-band DTMF detector.
 *
 * Blocks of 102 samples (12.75 ms). For the 8 DTMF frequencies the block is correlated
 * with a complex exponential in two halves (a, b). |a+b|^2 is the usual Goertzel energy;
 * arg(b * conj(a)) / 51 is the frequency offset of the tone from the nominal one, which is
 * what ITU-T Q.24 tolerances are about (operate within +-1.5 %, reject beyond +-3.5 %):
 * magnitude alone cannot tell an off-frequency tone from a quieter one.
 *
 * A block "hits" digit d when
 *   - the strongest row and column tones are each above the level threshold,
 *   - their twist is within limits,
 *   - both frequency offsets are within 2.5 %,
 *   - the two tones (energy corrected for the measured offset) hold >= 85 % of the
 *     block's energy: speech, noise and partially filled blocks fail here.
 * A digit starts after 2 consecutive hits (any tone >= 305 samples = 38 ms contains two
 * full blocks; a 20 ms tone cannot give two blocks 85 % full) and ends after 3 blocks
 * without it (an interruption <= 10 ms touches at most 2 blocks; a pause >= 40 ms
 * always yields 3 misses).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

#define BLOCK 102
#define HALF 51
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
    float ar[NFREQ], ai[NFREQ], br[NFREQ], bi[NFREQ];
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
    memset(d->ar, 0, sizeof(d->ar));
    memset(d->ai, 0, sizeof(d->ai));
    memset(d->br, 0, sizeof(d->br));
    memset(d->bi, 0, sizeof(d->bi));
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

/* |D(delta)|: the rectangular window's response to a tone delta Hz off the bin. */
static double window_gain(double delta_hz)
{
    double x = M_PI * delta_hz / 8000.0;
    if (fabs(x) < 1e-9)
        return 1.0;
    double g = fabs(sin(x * BLOCK) / (BLOCK * sin(x)));
    return g < 0.3 ? 0.3 : g;
}

/* Analyse the finished block: the digit it carries, or 0. *cand is the digit of the
 * strongest row/column pair and *fill the share of the block's energy it holds (about
 * the fraction of the block the tone covers), computed even when the block fails. */
static char classify(pbx_dtmf_det_t *d, char *cand, double *fill_out)
{
    double e[NFREQ];
    for (int k = 0; k < NFREQ; k++) {
        double re = (double)d->ar[k] + d->br[k], im = (double)d->ai[k] + d->bi[k];
        e[k] = re * re + im * im;
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
    double power[2], off[2];
    for (int i = 0; i < 2; i++) {
        int k = sel[i];
        /* b * conj(a): the phase advance over HALF samples. */
        double pr = (double)d->br[k] * d->ar[k] + (double)d->bi[k] * d->ai[k];
        double pi = (double)d->bi[k] * d->ar[k] - (double)d->br[k] * d->ai[k];
        off[i] = atan2(pi, pr) / HALF * 8000.0 / (2.0 * M_PI);
        double g = window_gain(off[i]);
        /* tone power per sample = 2|X|^2 / N^2, corrected for the off-bin loss */
        power[i] = 2.0 * e[k] / ((double)BLOCK * BLOCK) / (g * g);
    }
    double fill = (power[0] + power[1]) * BLOCK / d->energy;
    *fill_out = fill > 1.0 ? 1.0 : fill;
    for (int i = 0; i < 2; i++)
        if (fabs(off[i]) > OFFSET_MAX * freqs[sel[i]] || power[i] < d->min_tone_power)
            return 0;
    double twist_db = 10.0 * log10(power[1] / power[0]);
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
        int p = d->pos;
        d->energy += (double)x * x;
        if (p < HALF) {
            for (int k = 0; k < NFREQ; k++) {
                d->ar[k] += x * d->cosv[k][p];
                d->ai[k] += x * d->sinv[k][p];
            }
        } else {
            for (int k = 0; k < NFREQ; k++) {
                d->br[k] += x * d->cosv[k][p];
                d->bi[k] += x * d->sinv[k][p];
            }
        }
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
        memset(d->ar, 0, sizeof(d->ar));
        memset(d->ai, 0, sizeof(d->ai));
        memset(d->br, 0, sizeof(d->br));
        memset(d->bi, 0, sizeof(d->bi));
    }
    return found;
}
