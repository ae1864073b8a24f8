/*
 * Packet loss concealment for 8 kHz speech, in the spirit of ITU-T G.711 Appendix I.
 * Private to the engine (used by the jitter buffer).
 *
 * The caller hands every output sample to the concealer, in order: received audio through
 * pbx_plc_good() (which cross-fades it into the synthetic signal right after an erasure)
 * and gaps through pbx_plc_conceal(). No allocation; the state is a plain struct.
 */
#ifndef PBX_PLC_H
#define PBX_PLC_H

#include <stdint.h>

#define PBX_PLC_PITCH_MIN 40        /* 5 ms: 200 Hz */
#define PBX_PLC_PITCH_MAX 120       /* 15 ms: 66.7 Hz */
#define PBX_PLC_HIST 390            /* 3.25 longest periods (G.711 App. I HISTORYLEN) */
#define PBX_PLC_CORR_LEN 160        /* 20 ms correlation window for the pitch search */
#define PBX_PLC_ATTEN_START 80      /* full level for the first 10 ms of an erasure */
#define PBX_PLC_SILENT_AFTER 480    /* silent after 60 ms */

typedef struct {
    int16_t hist[PBX_PLC_HIST];     /* the last output samples, oldest first */
    float pbuf[3 * PBX_PLC_PITCH_MAX]; /* the last three periods, frozen at erasure start */
    int silence_only;               /* 1: fill gaps with zeros, no merge (plc = 0) */
    int erased;                     /* samples concealed in the current erasure, 0 = none */
    int pitch;                      /* period of the current erasure (samples) */
    int periods;                    /* 1..3 periods of pbuf in use */
    int ola_from;                   /* periods before the last extension (for its overlap-add) */
    int ola_left;                   /* samples of that overlap-add still to do */
    float offset;                   /* start-of-erasure mismatch, decayed over a quarter period */
    int merge_len;                  /* length of the cross-fade into real audio (0: none yet) */
    int merge_pos;                  /* samples of it done */
} pbx_plc_t;

void pbx_plc_init(pbx_plc_t *p, int silence_only);
/** Forget history and any erasure in progress. */
void pbx_plc_reset(pbx_plc_t *p);
/**
 * n received samples about to be output. If an erasure just ended they are cross-faded in
 * place from the synthetic continuation (4 ms, +4 ms per extra 10 ms lost, at most 10 ms).
 */
void pbx_plc_good(pbx_plc_t *p, int16_t *pcm, int n);
/** Make up n samples continuing the signal (attenuated; silent after 60 ms). */
void pbx_plc_conceal(pbx_plc_t *p, int16_t *out, int n);
/** 1 while an erasure or the merge after it is in progress. */
static inline int pbx_plc_erasing(const pbx_plc_t *p) { return p->erased > 0; }

/**
 * Best period of x[0..len) in [pmin, pmax] by normalised autocorrelation: compares the
 * last `win` samples with the same span one period earlier (len >= win + pmax).
 * *corr receives the normalised correlation (-1..1, 0 for silence).
 */
int pbx_pitch_search(const int16_t *x, int len, int win, int pmin, int pmax, float *corr);

#endif
