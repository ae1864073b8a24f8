/*
 * Adaptive jitter buffer with G.711 Appendix I style concealment.
 *
 * Timeline. Every timestamp is unwrapped into a 64-bit sample position ("ext"). Received
 * samples live in a ring indexed by position; a per-sample tag byte says which lap of the
 * ring a sample belongs to, so stale entries can never be taken for fresh ones. `play` is
 * the next position to hand out. `nominal` advances by exactly the samples pulled by
 * pbx_jb_get(): it is where `play` would be without any time-scaling, so
 * S = play - nominal is the playout shift this buffer has applied.
 *
 * Statistics. On arrival a packet's position relative to `nominal` is u = ext - nominal.
 * It is on time under shift S if ext >= play = nominal + S, i.e. u >= S. Because `nominal`
 * moves a whole get at a time, u only takes values on the grid of gets: a shift between two
 * grid points would only add delay (or cut every packet short), so targets stay on it.
 * The u of the last ~20 s of packets is kept as the 48 smallest values of each of four
 * sub-windows (late packets are the small ones). Among the smallest 4 % the target shift
 * S = u(k) minimises
 *     -u(k) + LATE_COST * (1 + spread / 40) * share * k / total   (+ hysteresis)
 * i.e. delay against late packets, a late packet costing more when covering the late tail
 * would take more delay (spread), and less when late packets have lately cost us only part
 * of a frame (share, see hole shrinking). For real clock drift (over 150 ppm, fitted on
 * trimmed sub-window means) the old values are projected to the present, in part when
 * that lowers the delay. Then the target is clamped so that the average delay of recent
 * packets stays within min_delay..max_delay (on the grid, with 2 ms of hysteresis).
 *
 * Steering. Each get moves S toward the target: by overlap-added time-scaling of whole
 * pitch periods where the audio repeats, of any amount where it is quiet, of anything only
 * when far off target; by holding the play point while concealing an underrun (delay
 * grows for free); and, when a packet is missing but the next one is there, by concealing
 * only 5 ms of the hole and skipping the rest (the delay given up, at most 15 ms below
 * target, is taken back by time-scaling received audio: less concealment than the network
 * lost). After more than 60 ms without audio the stream is considered paused: output is
 * silence, and the next audio is re-aligned to the target directly (faded in).
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "jbuf.h"
#include "plc.h"

#define JB_SUBWIN 250           /* packets per statistics sub-window */
#define JB_NSUB 4               /* sub-windows kept: ~20 s of 20 ms packets */
#define JB_TOPK 48              /* smallest values kept per sub-window */
#define JB_WARMUP 40            /* packets before the delay may go below the initial one */
#define JB_LATE_MAX 0.04        /* never plan for more than 4 % late packets */
#define JB_LATE_COST 1000.0     /* samples of delay worth 100 % late, times (1 + tail spread / 40) */
#define JB_TRUST_SLOPE 3e-3     /* projected earlier arrivals are trusted fully from 3000 ppm... */
#define JB_TRUST_MIN 0.2        /* ...and a fifth at the least */
#define JB_LATE_SHARE_MIN 0.25  /* a late packet costs at least this share of its audio */
#define JB_HYSTERESIS 0.004     /* extra late share charged to lowering the delay... */
#define JB_HYST_MAX 40.0        /* ...but never more than 5 ms of delay */
#define JB_MIN_SLOPE 1.5e-4     /* drift below 150 ppm is treated as none (keeps the frame grid) */
#define JB_SAFETY 0             /* samples of margin kept above the chosen late point */
#define JB_SEQ_WIN 1024         /* sequence numbers remembered for duplicate detection */
#define JB_MAX_DROPOUT 3000     /* larger sequence jumps restart the sequence context */
#define JB_GAP_AFTER 480        /* 60 ms without audio: the stream is paused */
#define JB_JUMP_AHEAD 1600      /* timestamps ahead of the clock by max delay + 200 ms: jump */
#define JB_JUMP_BEHIND 16000    /* behind the clock by max delay + 2 s: timestamps went back */
#define JB_TOLERANCE 16         /* targets this close (2 ms) count as the same */
#define JB_STRETCH_PMIN 32      /* pitch range for time-scaling: 250 Hz .. */
#define JB_STRETCH_PMAX 120     /* .. 66.7 Hz */
#define JB_SHRINK_KEEP 40       /* a hole is concealed for at least 5 ms (then merged) */
#define JB_SHRINK_DEBT 120      /* a hole may take the delay this far (15 ms) below target */
#define JB_STEP_MAX 360         /* largest time-scale step (45 ms; 3 periods of a low voice) */
#define JB_WORK (JB_STEP_MAX + JB_STRETCH_PMAX) /* audio a compress step may look at */
#define JB_PITCH_REUSE 10       /* gets a found period is trusted for "too small to step" */
#define JB_QUIET_FADE 32        /* cross-fade of a step in quiet audio (4 ms) */
#define JB_URGENT 320           /* 40 ms off target: time-scale even non-periodic audio */
#define JB_VOICED 0.7f          /* normalised correlation that counts as periodic */
#define JB_QUIET_RMS 256.f      /* below this the audio is quiet (about -42 dBFS) */

enum { ST_EMPTY, ST_GAP, ST_PLAYING };

typedef struct {
    int count;                  /* packets added to this sub-window */
    int filled;                 /* entries in lo[] */
    int32_t lo[JB_TOPK];        /* smallest u, ascending */
    uint16_t lo_wait[JB_TOPK];  /* their wait for the next get (samples) */
    int filled_w;               /* entries in lo_wait[] */
    float lo_fine[JB_TOPK];     /* smallest u + wait, ascending (trimmed from the mean) */
    double sum_u, sum_n;        /* for the sub-window's centre */
    double sum_wait;            /* sum of u plus the wait until the next get (delay) */
} jb_win_t;

struct pbx_jb {
    pbx_jb_params_t p;
    int min_s, max_s, init_s;   /* delays in samples */
    int span_s;                 /* most audio ever held ahead of the play point */

    int16_t *ring;
    uint8_t *tag;               /* 0: empty; else 0x80 | lap of the position */
    int ring_bits;
    int64_t ring_mask;

    pbx_plc_t plc;
    int state;
    int64_t play, nominal;
    int64_t newest_end;         /* end of the newest audio received */
    int64_t lead_end;           /* before this position missing audio is leading silence */
    int missing_run;            /* samples missing in a row */

    int have_ts;                /* the timestamp mapping is valid */
    uint32_t ref_ts;
    int64_t ref_ext;

    int have_seq;
    uint16_t max_seq16;
    int64_t max_seq, base_seq;
    uint64_t epoch_received;    /* unique packets since base_seq */
    uint64_t lost_before;       /* losses of earlier sequence contexts */
    uint64_t seen[JB_SEQ_WIN / 64];

    jb_win_t win[JB_NSUB];
    int cur_win;
    double mean_u;              /* mean u of the window, projected to now */
    double recent_wait;         /* EWMA (1/16) of u + wait: the delay of recent packets at S = 0 */
    double late_share;          /* EWMA (1/16) of the share of each hole that was concealed */
    int have_target;
    int64_t target;             /* the target shift decided at the last get */
    double target_delay;        /* and the delay it meant then (samples) */
    int have_last_new;
    int64_t last_new_ext;       /* position and arrival of the highest sequence number */
    int64_t last_new_arrival;

    int have_transit;
    int32_t last_transit;
    double jitter;              /* RFC 3550 A.8, timestamp units */

    int have_get;
    int64_t last_get_us;
    int last_get_n;

    float level;                /* EWMA of the rms of loud frames */
    int16_t work[JB_WORK];
    int16_t scaled[JB_STEP_MAX];
    int16_t pend[JB_STEP_MAX];
    int npend;
    int scale_backoff;          /* gets to wait before the next pitch search */
    int pitch, pitch_age;       /* the last period found for time-scaling, gets since */

    pbx_jb_stats_t st;
};

void pbx_jb_params_default(pbx_jb_params_t *p)
{
    if (!p)
        return;
    p->min_delay_ms = 20;
    p->max_delay_ms = 500;
    p->initial_delay_ms = 60;
    p->plc = 1;
}

/* Times from the caller, kept where differences of two cannot overflow (+-73 000 years). */
static inline int64_t clamp_time(int64_t t)
{
    const int64_t lim = (int64_t)1 << 61;
    return t > lim ? lim : t < -lim ? -lim : t;
}

/* ---- ring ---- */

static inline uint8_t pos_tag(const pbx_jb_t *jb, int64_t pos)
{
    return (uint8_t)(0x80u | ((uint64_t)pos >> jb->ring_bits & 0x7Fu));
}

static inline int has(const pbx_jb_t *jb, int64_t pos)
{
    return jb->tag[pos & jb->ring_mask] == pos_tag(jb, pos);
}

/* Forget positions [from, to); returns how many held received audio. */
static int64_t clear_range(pbx_jb_t *jb, int64_t from, int64_t to)
{
    int64_t dropped = 0;
    if (to - from > jb->ring_mask + 1)
        from = to - (jb->ring_mask + 1);
    for (int64_t pos = from; pos < to; pos++) {
        if (has(jb, pos))
            dropped++;
        jb->tag[pos & jb->ring_mask] = 0;
    }
    return dropped;
}

/* First position in [from, newest_end) holding audio, or -1. */
static int64_t next_audio(const pbx_jb_t *jb, int64_t from)
{
    for (int64_t pos = from; pos < jb->newest_end; pos++)
        if (has(jb, pos))
            return pos;
    return -1;
}

/* Positions in [play, before) without audio. */
static int64_t missing_before(const pbx_jb_t *jb, int64_t before)
{
    int64_t from = jb->play, n = 0;
    if (before - from > jb->ring_mask + 1)
        from = before - (jb->ring_mask + 1);
    for (int64_t pos = from; pos < before; pos++)
        n += !has(jb, pos);
    return n;
}

/* Contiguous received samples from `from`, at most limit. */
static int run_length(const pbx_jb_t *jb, int64_t from, int limit)
{
    int n = 0;
    while (n < limit && has(jb, from + n))
        n++;
    return n;
}

static void read_ring(const pbx_jb_t *jb, int64_t from, int16_t *dst, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = jb->ring[(from + i) & jb->ring_mask];
}

/* ---- statistics windows ---- */

static void win_add(pbx_jb_t *jb, int32_t v, double wait)
{
    jb_win_t *w = &jb->win[jb->cur_win];
    if (w->count >= JB_SUBWIN) {
        jb->cur_win = (jb->cur_win + 1) % JB_NSUB;
        w = &jb->win[jb->cur_win];
        w->count = w->filled = w->filled_w = 0;
        w->sum_u = w->sum_n = w->sum_wait = 0.0;
    }
    w->count++;
    w->sum_u += v;
    w->sum_wait += v + wait;
    w->sum_n += (double)jb->nominal;
    float fw = (float)(v + wait);
    if (w->filled_w < JB_TOPK || fw < w->lo_fine[JB_TOPK - 1]) {
        int i = w->filled_w < JB_TOPK ? w->filled_w++ : JB_TOPK - 1;
        while (i > 0 && w->lo_fine[i - 1] > fw) {
            w->lo_fine[i] = w->lo_fine[i - 1];
            i--;
        }
        w->lo_fine[i] = fw;
    }
    if (w->filled == JB_TOPK && v >= w->lo[JB_TOPK - 1])
        return;
    int i = w->filled < JB_TOPK ? w->filled++ : JB_TOPK - 1;
    while (i > 0 && w->lo[i - 1] > v) {
        w->lo[i] = w->lo[i - 1];
        w->lo_wait[i] = w->lo_wait[i - 1];
        i--;
    }
    w->lo[i] = v;
    w->lo_wait[i] = (uint16_t)lrint(wait);
}

/* Mean of u + wait over a sub-window without its latest 10 % (spikes would skew it). */
static double trimmed_wait(const jb_win_t *w)
{
    int m = w->count / 10;
    if (m > w->filled_w)
        m = w->filled_w;
    double sum = w->sum_wait;
    for (int i = 0; i < m; i++)
        sum -= w->lo_fine[i];
    return sum / (w->count - m);
}

static int win_total(const pbx_jb_t *jb)
{
    int t = 0;
    for (int i = 0; i < JB_NSUB; i++)
        t += jb->win[i].count;
    return t;
}

/*
 * Per sub-window correction that projects its u values to the present: the slope of u
 * against nominal time (clock drift between sender and playout, at most 2 %) fitted
 * through the sub-window centres (trimmed means of the arrival delay, robust to spikes). Returns the projected mean u of the whole window and
 * in *wait the projected mean of u plus the wait for the next get: the delay at shift 0.
 */
static double project(const pbx_jb_t *jb, double shift[JB_NSUB], double *wait, double *slope_out)
{
    double sw = 0, sn = 0, su = 0, snn = 0, snu = 0;
    int used = 0;
    for (int j = 0; j < JB_NSUB; j++) {
        const jb_win_t *w = &jb->win[j];
        shift[j] = 0.0;
        if (w->count < JB_SUBWIN)
            continue;           /* only complete sub-windows: a young one is skewed by a spike */
        double n = w->sum_n / w->count - (double)jb->nominal, u = trimmed_wait(w);
        sw += w->count;
        sn += w->count * n;
        su += w->count * u;
        snn += w->count * n * n;
        snu += w->count * n * u;
        used++;
    }
    double slope = 0.0;
    if (used >= 3) {
        double var = snn / sw - (sn / sw) * (sn / sw);
        if (var > 8000.0 * 8000.0 / 4)
            slope = (snu / sw - (sn / sw) * (su / sw)) / var;
        if (slope > 0.02)
            slope = 0.02;
        if (slope < -0.02)
            slope = -0.02;
        if (fabs(slope) < JB_MIN_SLOPE)
            slope = 0.0;
    }
    if (slope_out)
        *slope_out = slope;
    double tot = 0, mean = 0, mwait = 0;
    for (int j = 0; j < JB_NSUB; j++) {
        const jb_win_t *w = &jb->win[j];
        if (w->count == 0)
            continue;
        shift[j] = -slope * (w->sum_n / w->count - (double)jb->nominal);
        mean += w->sum_u + w->count * shift[j];
        mwait += w->sum_wait + w->count * shift[j];
        tot += w->count;
    }
    *wait = tot > 0 ? mwait / tot : (double)jb->init_s;
    return tot > 0 ? mean / tot : (double)jb->init_s;
}

/*
 * Target shift S (play - nominal) from the statistics, clamped to the delay limits.
 * Candidates are the smallest u of the window (at most 4 % of it): choosing S = u(k) makes
 * the k packets below it late. Each costs LATE_COST * (1 + spread / 40) / total samples of
 * delay, where spread is how far the candidates reach: when avoiding the late tail would
 * take a lot of delay, losing some of it is worth more. Lowering the delay below the
 * last target is charged a little extra (hysteresis).
 */
static int64_t target_shift(const pbx_jb_t *jb)
{
    double ref = jb->have_target ? (double)jb->target : (double)(jb->play - jb->npend - jb->nominal);
    int total = win_total(jb);
    double s = 0.0;             /* the initial alignment */
    double grid = 0.0;          /* a shift on the grid of gets */
    double G = jb->have_get ? jb->last_get_n : 160;
    double shift[JB_NSUB], mean_wait, slope;
    project(jb, shift, &mean_wait, &slope);
    /* Arrivals getting earlier (sender clock fast) would let the delay come down; trust
       that projection only in part for small drifts, where stragglers are likely. */
    double up = fabs(slope) / JB_TRUST_SLOPE;
    up = up < JB_TRUST_MIN ? JB_TRUST_MIN : up > 1.0 ? 1.0 : up;
    if (total > 0) {
        double cand[JB_NSUB * JB_TOPK];
        int nc = 0;
        int kmax = (int)ceil(JB_LATE_MAX * total);
        if (kmax > JB_TOPK)
            kmax = JB_TOPK;
        if (kmax < 1)
            kmax = 1;
        int drifting = 0;
        for (int j = 0; j < JB_NSUB; j++)
            drifting |= shift[j] != 0.0;
        if (!drifting) {
            int pos[JB_NSUB] = {0};
            while (nc < kmax) {
                int next = -1;
                for (int j = 0; j < JB_NSUB; j++)
                    if (pos[j] < jb->win[j].filled &&
                        (next < 0 || jb->win[j].lo[pos[j]] < jb->win[next].lo[pos[next]]))
                        next = j;
                if (next < 0)
                    break;
                cand[nc++] = jb->win[next].lo[pos[next]++];
            }
        } else {
            /* A packet's u can only take values on the grid of gets: project its fine
               arrival time (u + wait) and see which get it would now have missed. */
            for (int j = 0; j < JB_NSUB; j++) {
                const jb_win_t *w = &jb->win[j];
                for (int i = 0; i < w->filled; i++) {
                    double v = w->lo[i] + G * floor((w->lo_wait[i] + (shift[j] > 0 ? up * shift[j] : 0.0)) / G);
                    int k = nc++;
                    while (k > 0 && cand[k - 1] > v) {
                        cand[k] = cand[k - 1];
                        k--;
                    }
                    cand[k] = v;
                }
            }
            if (nc > kmax)
                nc = kmax;
        }
        if (nc == 0)
            cand[nc++] = 0.0;
        double share = jb->late_share < JB_LATE_SHARE_MIN ? JB_LATE_SHARE_MIN : jb->late_share;
        double per_late = (0.5 + 0.5 * share) * JB_LATE_COST * (1.0 + (cand[nc - 1] - cand[0]) / 40.0);
        double best_cost = 1e300, best = cand[0];
        double hyst = per_late * JB_HYSTERESIS > JB_HYST_MAX ? JB_HYST_MAX : per_late * JB_HYSTERESIS;
        for (int k = 0; k < nc; k++) {
            if (k > 0 && cand[k] == cand[k - 1])
                continue;
            double cost = -cand[k] + per_late * k / total + (cand[k] > ref + JB_TOLERANCE ? hyst : 0.0);
            if (cost < best_cost) {
                best_cost = cost;
                best = cand[k];
            }
        }
        s = best - JB_SAFETY;
        grid = cand[0];
        if (total < JB_WARMUP && s > 0.0)
            s = G * floor(-grid / G) + grid;     /* not below the initial delay yet */
    }
    /* Clamp to the delay limits, staying on the grid of gets: a shift between two grid
       points only adds delay (or cuts every packet short) without saving any. */
    double w = jb->recent_wait;
    double most = grid + G * floor((w - jb->min_s - grid) / G);    /* least delay allowed */
    double least = grid + G * ceil((w - jb->max_s - grid) / G);    /* most delay allowed */
    if (s > most || most < least)       /* limits closer than a get apart: min wins */
        s = most;
    else if (s < least)
        s = least;
    /* The average delay wanders: do not step onto a delay limit unless it holds with
       2 ms to spare, or the buffer would time-scale back and forth across it. */
    if (jb->have_target) {
        double prev = (double)jb->target;
        if (s > prev && w - JB_TOLERANCE - s < jb->min_s && prev >= least)
            s = prev;
        else if (s < prev && w + JB_TOLERANCE - s > jb->max_s && prev <= most)
            s = prev;
    }
    return (int64_t)floor(s);
}

/*
 * The sender's timeline moved ahead of ours by `by` samples (audio arrived earlier than the
 * buffer may hold): move the history with it, or it would ask for that much more delay
 * until it ages out.
 */
static void shift_history(pbx_jb_t *jb, int64_t by)
{
    if (by > INT32_MAX / 4)
        by = INT32_MAX / 4;
    for (int j = 0; j < JB_NSUB; j++) {
        jb_win_t *w = &jb->win[j];
        for (int i = 0; i < w->filled; i++)
            w->lo[i] = w->lo[i] + (int32_t)by > INT32_MAX / 2 ? INT32_MAX / 2 : w->lo[i] + (int32_t)by;
        for (int i = 0; i < w->filled_w; i++)
            w->lo_fine[i] += (float)by;
        w->sum_u += (double)by * w->count;
        w->sum_wait += (double)by * w->count;
    }
    jb->mean_u += (double)by;
}

/* ---- create / reset ---- */

static void clear_stream(pbx_jb_t *jb)
{
    memset(jb->tag, 0, (size_t)(jb->ring_mask + 1));
    jb->newest_end = jb->play;
    jb->npend = 0;
    jb->missing_run = 0;
}

void pbx_jb_reset(pbx_jb_t *jb)
{
    if (!jb)
        return;
    memset(jb->tag, 0, (size_t)(jb->ring_mask + 1));
    pbx_plc_init(&jb->plc, !jb->p.plc);
    jb->state = ST_EMPTY;
    jb->play = jb->nominal = jb->newest_end = jb->lead_end = 0;
    jb->missing_run = 0;
    jb->have_ts = jb->have_seq = jb->have_transit = jb->have_get = 0;
    jb->epoch_received = jb->lost_before = 0;
    memset(jb->seen, 0, sizeof jb->seen);
    memset(jb->win, 0, sizeof jb->win);
    jb->cur_win = 0;
    jb->mean_u = 0.0;
    jb->have_last_new = 0;
    jb->have_target = 0;
    jb->late_share = 1.0;
    jb->jitter = 0.0;
    jb->level = 0.f;
    jb->npend = 0;
    jb->scale_backoff = 0;
    jb->pitch = JB_STRETCH_PMIN;
    jb->pitch_age = JB_PITCH_REUSE;
    memset(&jb->st, 0, sizeof jb->st);
}

int pbx_jb_create(const pbx_jb_params_t *p, pbx_jb_t **out)
{
    if (!p || !out)
        return PBX_EINVAL;
    *out = NULL;
    if (p->min_delay_ms < 0 || p->max_delay_ms < 1 || p->max_delay_ms > PBX_JB_MAX_DELAY_MS ||
        p->min_delay_ms > p->max_delay_ms || p->initial_delay_ms < 0 ||
        p->initial_delay_ms > PBX_JB_MAX_DELAY_MS)
        return PBX_EINVAL;
    pbx_jb_t *jb = calloc(1, sizeof *jb);
    if (!jb)
        return PBX_ENOMEM;
    jb->p = *p;
    jb->p.plc = p->plc ? 1 : 0;
    jb->min_s = p->min_delay_ms * 8;
    jb->max_s = p->max_delay_ms * 8;
    int init = p->initial_delay_ms;
    if (init < p->min_delay_ms)
        init = p->min_delay_ms;
    if (init > p->max_delay_ms)
        init = p->max_delay_ms;
    jb->init_s = init * 8;
    jb->span_s = jb->max_s + PBX_JB_MAX_PUT + PBX_JB_MAX_GET;
    /* Room for the held span, a re-alignment back by max delay, and the largest get. */
    int64_t need = 2 * (int64_t)jb->span_s + PBX_JB_MAX_GET + 2 * JB_WORK;
    jb->ring_bits = 10;
    while (((int64_t)1 << jb->ring_bits) < need)
        jb->ring_bits++;
    jb->ring_mask = ((int64_t)1 << jb->ring_bits) - 1;
    jb->ring = calloc((size_t)(jb->ring_mask + 1), sizeof *jb->ring);
    jb->tag = calloc((size_t)(jb->ring_mask + 1), 1);
    if (!jb->ring || !jb->tag) {
        free(jb->ring);
        free(jb->tag);
        free(jb);
        return PBX_ENOMEM;
    }
    pbx_jb_reset(jb);
    *out = jb;
    return PBX_OK;
}

void pbx_jb_destroy(pbx_jb_t *jb)
{
    if (!jb)
        return;
    free(jb->ring);
    free(jb->tag);
    free(jb);
}

/* Forget the sequence context (losses so far stay counted). */
static void seq_restart(pbx_jb_t *jb)
{
    if (jb->have_seq) {
        int64_t expected = jb->max_seq - jb->base_seq + 1;
        if (expected > (int64_t)jb->epoch_received)
            jb->lost_before += (uint64_t)(expected - (int64_t)jb->epoch_received);
    }
    jb->have_seq = 0;
    jb->epoch_received = 0;
    memset(jb->seen, 0, sizeof jb->seen);
}

void pbx_jb_resync(pbx_jb_t *jb)
{
    if (!jb || jb->state == ST_EMPTY)
        return;
    seq_restart(jb);
    jb->have_ts = 0;
    jb->have_transit = 0;
    jb->st.overflow_dropped_samples += (uint64_t)clear_range(jb, jb->play, jb->newest_end);
    clear_stream(jb);
    jb->state = ST_GAP;
}

/* ---- put ---- */

enum { SEQ_NEW, SEQ_OLD, SEQ_DUP, SEQ_UNKNOWN };

static int seq_update(pbx_jb_t *jb, uint16_t seq)
{
    if (!jb->have_seq) {
        jb->have_seq = 1;
        jb->max_seq16 = seq;
        jb->max_seq = jb->base_seq = (int64_t)1 << 32;
        jb->seen[0] = 0;
        memset(jb->seen, 0, sizeof jb->seen);
        jb->seen[(jb->max_seq % JB_SEQ_WIN) / 64] |= 1ull << (jb->max_seq % 64);
        jb->epoch_received = 1;
        return SEQ_NEW;
    }
    int d = PBX_SEQ_DIFF(seq, jb->max_seq16);
    if (d > JB_MAX_DROPOUT || d < -JB_MAX_DROPOUT) {
        seq_restart(jb);
        return seq_update(jb, seq);
    }
    int64_t ext = jb->max_seq + d;
    if (d <= -JB_SEQ_WIN)
        return SEQ_UNKNOWN;
    uint64_t bit = 1ull << (ext % 64);
    uint64_t *word = &jb->seen[(ext % JB_SEQ_WIN) / 64];
    if (d <= 0) {
        if (*word & bit)
            return SEQ_DUP;
        *word |= bit;
        jb->epoch_received++;
        if (ext < jb->base_seq)
            jb->base_seq = ext;     /* arrived after later ones but precedes the first received */
        return SEQ_OLD;
    }
    for (int64_t s = jb->max_seq + 1; s < ext && s <= jb->max_seq + JB_SEQ_WIN; s++)
        jb->seen[(s % JB_SEQ_WIN) / 64] &= ~(1ull << (s % 64));
    jb->max_seq = ext;
    jb->max_seq16 = seq;
    jb->seen[(ext % JB_SEQ_WIN) / 64] |= bit;
    jb->epoch_received++;
    return SEQ_NEW;
}

static void note_arrival(pbx_jb_t *jb, uint32_t ts, int64_t arrival_us, int64_t u)
{
    int32_t arr_ts = (int32_t)(uint32_t)(uint64_t)(arrival_us / PBX_JB_US_PER_SAMPLE);
    int32_t transit = (int32_t)(uint32_t)((uint32_t)arr_ts - ts);
    if (jb->have_transit) {
        int32_t d = (int32_t)((uint32_t)transit - (uint32_t)jb->last_transit);
        double ad = d < 0 ? -(double)d : (double)d;
        jb->jitter += (ad - jb->jitter) / 16.0;
    }
    jb->have_transit = 1;
    jb->last_transit = transit;
    if (u > INT32_MAX / 2)
        u = INT32_MAX / 2;
    if (u < -INT32_MAX / 2)
        u = -INT32_MAX / 2;
    double wait = 0.0;
    if (jb->have_get) {
        int64_t next_get = jb->last_get_us + (int64_t)jb->last_get_n * PBX_JB_US_PER_SAMPLE;
        if (next_get > arrival_us)
            wait = (double)(next_get - arrival_us) / PBX_JB_US_PER_SAMPLE;
        if (wait > jb->last_get_n)
            wait = jb->last_get_n;
    }
    win_add(jb, (int32_t)u, wait);
    if (jb->state == ST_GAP && jb->newest_end <= jb->play && u > jb->play - jb->nominal) {
        jb->recent_wait = (double)u + wait;     /* audio after a pause: start afresh */
    } else {
        double v = (double)u + wait;            /* a late straggler moves it a frame at most */
        double g = jb->have_get ? jb->last_get_n : 160;
        jb->recent_wait += ((v < jb->recent_wait - g ? jb->recent_wait - g : v) - jb->recent_wait) / 16.0;
    }
    double shift[JB_NSUB], mean_wait;
    jb->mean_u = project(jb, shift, &mean_wait, NULL);
}

int pbx_jb_put(pbx_jb_t *jb, uint16_t seq, uint32_t ts, const int16_t *pcm, int nsamples,
               int64_t arrival_us)
{
    if (!jb || !pcm || nsamples < 1 || nsamples > PBX_JB_MAX_PUT)
        return PBX_EINVAL;
    arrival_us = clamp_time(arrival_us);
    int sq = seq_update(jb, seq);
    if (sq == SEQ_DUP) {
        jb->st.duplicated++;
        return PBX_JB_PUT_DUPLICATE;
    }
    if (sq == SEQ_UNKNOWN) {
        jb->st.late_discarded++;
        return PBX_JB_PUT_LATE;
    }
    int result = PBX_JB_PUT_STORED;
    int64_t ext;
    if (jb->state == ST_EMPTY) {
        /* First packet: it waits initial_delay before its first sample is due. */
        ext = (int64_t)1 << 40;
        jb->play = jb->nominal = jb->newest_end = ext - jb->init_s;
        jb->mean_u = (double)jb->init_s;
        jb->recent_wait = (double)jb->init_s;
        jb->have_ts = 1;
        jb->ref_ts = ts;
        jb->ref_ext = ext;
        jb->state = ST_GAP;
    } else if (!jb->have_ts) {
        ext = jb->nominal + (int64_t)llround(jb->mean_u);
        jb->have_ts = 1;
        jb->ref_ts = ts;
        jb->ref_ext = ext;
        jb->st.resyncs++;
        result = PBX_JB_PUT_RESYNC;
    } else {
        ext = jb->ref_ext + PBX_TS_DIFF(ts, jb->ref_ts);
        /* Timestamps moving much more (or less) than the time between two packets in
           sequence: the timestamps jumped or a new source took over. */
        int64_t gap = jb->have_last_new ? (ext - jb->last_new_ext) -
                                              (arrival_us - jb->last_new_arrival) / PBX_JB_US_PER_SAMPLE : 0;
        if (sq == SEQ_NEW && (gap > jb->span_s + JB_JUMP_AHEAD || gap < -(jb->span_s + JB_JUMP_BEHIND))) {
            jb->st.overflow_dropped_samples += (uint64_t)clear_range(jb, jb->play, jb->newest_end);
            clear_stream(jb);
            jb->state = ST_GAP;
            ext = jb->nominal + (int64_t)llround(jb->mean_u);
            jb->ref_ts = ts;
            jb->ref_ext = ext;
            jb->have_transit = 0;
            jb->st.resyncs++;
            result = PBX_JB_PUT_RESYNC;
        }
    }
    if (sq == SEQ_NEW) {
        jb->have_last_new = 1;
        jb->last_new_ext = ext;
        jb->last_new_arrival = arrival_us;
    }
    if (sq == SEQ_OLD)
        jb->st.reordered++;
    if (ext > jb->ref_ext) {
        jb->ref_ext = ext;
        jb->ref_ts = ts;
    }
    jb->st.received++;
    note_arrival(jb, ts, arrival_us, ext - jb->nominal);

    int64_t end = ext + nsamples;
    if (end <= jb->play && jb->play - ext <= 2 * nsamples && jb->state == ST_GAP &&
        sq == SEQ_NEW && jb->newest_end <= jb->play) {
        /* Nothing is playing, nothing else waits, and this packet is only just behind the
           silent play point: the stream flows again, start it here rather than drop it. */
        jb->play = ext;
    }
    if (end <= jb->play) {
        jb->st.late_discarded++;
        return PBX_JB_PUT_LATE;
    }
    int64_t hold_max = jb->max_s + nsamples + (jb->have_get ? jb->last_get_n : 160);
    if (end - jb->play > hold_max && end - jb->play - missing_before(jb, ext) > hold_max) {
        /* Its first sample would wait too long, holes not counted (playout shrinks a hole
           with audio after it): let the oldest audio go. */
        int64_t np = end - hold_max;
        jb->st.overflow_dropped_samples += (uint64_t)clear_range(jb, jb->play, np);
        shift_history(jb, np - jb->play);
        jb->play = np;
        jb->npend = 0;
    }
    for (int i = 0; i < nsamples; i++) {
        int64_t pos = ext + i;
        if (pos < jb->play)
            continue;
        jb->ring[pos & jb->ring_mask] = pcm[i];
        jb->tag[pos & jb->ring_mask] = pos_tag(jb, pos);
    }
    if (end > jb->newest_end)
        jb->newest_end = end;
    return result;
}

/* ---- get ---- */

/* Deliver samples produced by time-scaling: to out as far as it goes, the rest to pend. */
static int deliver(pbx_jb_t *jb, int16_t *y, int ny, int16_t *out, int space)
{
    pbx_plc_good(&jb->plc, y, ny);
    int take = ny < space ? ny : space;
    memcpy(out, y, (size_t)take * sizeof *y);
    jb->npend = ny - take;
    memcpy(jb->pend, y + take, (size_t)jb->npend * sizeof *y);
    return take;
}

static float energy(const int16_t *x, int n)
{
    float e = 0.f;
    for (int i = 0; i < n; i++)
        e += (float)x[i] * (float)x[i];
    return e;
}

static float ncorr(const int16_t *a, const int16_t *b, int n)
{
    float ea = energy(a, n), eb = energy(b, n), xy = 0.f;
    for (int i = 0; i < n; i++)
        xy += (float)a[i] * (float)b[i];
    return ea > 0.f && eb > 0.f ? xy / sqrtf(ea * eb) : 0.f;
}

/*
 * Move the play point toward the target with one overlap-add step at the play point.
 * The step d is a whole number of pitch periods of the audio just played (the concealer's
 * history) where the audio repeats with that period, any amount where it is quiet, and
 * nothing in between unless the buffer is far off target. A compress step never goes past
 * the target; an expand step may, by half a period (the next quiet moment corrects it).
 *   compress (delta > 0): y[i] = x[i] faded into x[i + d] over L samples; x[0..L+d) -> L.
 *   expand (delta < 0): the d samples before x[0] are played again, the first L of them
 *   faded in from x[0..L) so they start like the natural continuation; nothing consumed.
 * Returns the samples written to out (the rest waits in pend); *shift receives input
 * consumed minus output made.
 */
static int time_scale(pbx_jb_t *jb, int64_t delta, int16_t *out, int space, int64_t *shift)
{
    const int16_t *h = jb->plc.hist + PBX_PLC_HIST;     /* h[-1] is the last sample played */
    int16_t *x = jb->work;
    int64_t mag = delta < 0 ? -delta : delta;
    int urgent = mag >= JB_URGENT;
    int avail = run_length(jb, jb->play, JB_WORK);
    if (avail < 1)
        return 0;
    read_ring(jb, jb->play, x, avail);

    int look = avail < 160 ? avail : 160;
    float rms_h = sqrtf(energy(h - 160, 160) / 160.f), rms_x = sqrtf(energy(x, look) / (float)look);
    float loud = rms_h > rms_x ? rms_h : rms_x;
    int quiet = loud < JB_QUIET_RMS || loud < 0.1f * jb->level;

    int d, L;
    if (quiet) {
        d = mag > JB_STEP_MAX ? JB_STEP_MAX : (int)mag;
        L = d < JB_QUIET_FADE ? d : JB_QUIET_FADE;
    } else {
        if (!urgent && (2 * mag < JB_STRETCH_PMIN || jb->scale_backoff > 0)) {
            if (jb->scale_backoff > 0)
                jb->scale_backoff--;
            return 0;
        }
        /* Off target by less than the last period found: no step would fit, do not search
           again for it until that period is 200 ms old. */
        if (!urgent && jb->pitch_age < JB_PITCH_REUSE &&
            (delta > 0 ? mag < jb->pitch : 2 * mag < jb->pitch))
            return 0;
        float c;
        int P = pbx_pitch_search(jb->plc.hist, PBX_PLC_HIST, PBX_PLC_CORR_LEN, JB_STRETCH_PMIN,
                                 JB_STRETCH_PMAX, &c);
        jb->pitch = P;
        jb->pitch_age = 0;
        if (c < JB_VOICED && !urgent)
            jb->scale_backoff = 2;      /* not periodic: look again in 40 ms */
        int k = delta > 0 ? (int)(mag / P) : (int)((mag + P / 2) / P);
        if (k * P > JB_STEP_MAX)
            k = JB_STEP_MAX / P;
        if (k < 1 && urgent)
            k = 1;
        if (k < 1 || (c < JB_VOICED && !urgent))
            return 0;
        d = k * P;
        L = c < JB_VOICED ? d : P;  /* not periodic (urgent): fade over all of it, repeat nothing */
    }
    if (d < 1)
        return 0;
    if (delta > 0) {
        if (avail < L + d)
            return 0;
        if (!quiet && !urgent && ncorr(x, x + d, L) < JB_VOICED)
            return 0;
        for (int i = 0; i < L; i++) {
            float w = (float)(i + 1) / (float)(L + 1);
            jb->scaled[i] = (int16_t)lrintf((1.f - w) * x[i] + w * x[i + d]);
        }
        clear_range(jb, jb->play, jb->play + L + d);
        jb->play += L + d;
        jb->st.dropped_samples_drift += (uint64_t)d;
        *shift = d;
        return deliver(jb, jb->scaled, L, out, space);
    }
    if (avail < L)
        return 0;
    if (!quiet && !urgent && ncorr(x, h - d, L) < JB_VOICED)
        return 0;
    for (int i = 0; i < L; i++) {
        float w = (float)(i + 1) / (float)(L + 1);
        jb->scaled[i] = (int16_t)lrintf((1.f - w) * x[i] + w * h[i - d]);
    }
    memcpy(jb->scaled + L, h - d + L, (size_t)(d - L) * sizeof *h);
    jb->st.inserted_samples_drift += (uint64_t)d;
    *shift = -d;
    return deliver(jb, jb->scaled, d, out, space);
}

int pbx_jb_get(pbx_jb_t *jb, int16_t *out, int nsamples, int64_t now_us)
{
    if (!jb || !out || nsamples < 1 || nsamples > PBX_JB_MAX_GET) {
        if (out && nsamples > 0 && nsamples <= PBX_JB_MAX_GET)
            memset(out, 0, (size_t)nsamples * sizeof *out);
        return PBX_EINVAL;
    }
    const int n = nsamples;
    now_us = clamp_time(now_us);
    int64_t stall = 0;
    if (jb->have_get) {
        int64_t elapsed = (now_us - jb->last_get_us) / PBX_JB_US_PER_SAMPLE;
        if (elapsed > 3 * jb->last_get_n && elapsed - jb->last_get_n > JB_GAP_AFTER)
            stall = elapsed - jb->last_get_n;
    }
    jb->have_get = 1;
    jb->last_get_us = now_us;
    jb->last_get_n = n;

    if (jb->state == ST_EMPTY) {
        memset(out, 0, (size_t)n * sizeof *out);
        jb->st.silence_samples += (uint64_t)n;
        return PBX_JB_SILENCE;
    }
    if (stall > 0) {
        /* The reader stopped for a while: the audio that was due meanwhile is stale. */
        if (stall > 2 * (int64_t)jb->span_s)
            stall = 2 * (int64_t)jb->span_s;
        jb->st.overflow_dropped_samples += (uint64_t)clear_range(jb, jb->play, jb->play + stall);
        jb->play += stall;
        jb->nominal += stall;
        jb->npend = 0;
    }

    if (jb->pitch_age < JB_PITCH_REUSE)
        jb->pitch_age++;
    jb->target = target_shift(jb);
    jb->target_delay = jb->recent_wait - (double)jb->target;
    jb->have_target = 1;
    int64_t delta = jb->target - (jb->play - jb->npend - jb->nominal);
    int pos = 0, real = 0, conc = 0, sil = 0;

    if (jb->npend > 0) {
        int take = jb->npend < n ? jb->npend : n;
        memcpy(out, jb->pend, (size_t)take * sizeof *out);
        memmove(jb->pend, jb->pend + take, (size_t)(jb->npend - take) * sizeof *out);
        jb->npend -= take;
        pos += take;
        real += take;
    }

    if (jb->state == ST_GAP) {
        int64_t q = next_audio(jb, jb->play);
        if (q >= 0) {
            /* Audio again after a pause: start it at the target delay. */
            int64_t np = jb->nominal + jb->target;
            if (np > q)
                np = q;
            if (np < jb->play - jb->span_s)
                np = jb->play - jb->span_s;
            if (np > jb->play)
                clear_range(jb, jb->play, np);
            jb->play = np;
            jb->lead_end = q;
            delta = jb->target - (jb->play - jb->npend - jb->nominal);
        }
    }

    int full = jb->newest_end - jb->play >= jb->max_s;
    if (jb->state == ST_PLAYING && !pbx_plc_erasing(&jb->plc) && pos < n &&
        (delta > 0 || (delta < 0 && !full))) {
        int64_t shift = 0;
        int k = time_scale(jb, delta, out + pos, n - pos, &shift);
        pos += k;
        real += k;
        delta -= shift;
    }

    while (pos < n) {
        if (has(jb, jb->play)) {
            int run = run_length(jb, jb->play, n - pos);
            read_ring(jb, jb->play, out + pos, run);
            clear_range(jb, jb->play, jb->play + run);
            jb->play += run;
            pbx_plc_good(&jb->plc, out + pos, run);
            pos += run;
            real += run;
            jb->missing_run = 0;
            jb->state = ST_PLAYING;
            continue;
        }
        if (jb->play < jb->lead_end) {
            /* Silence before audio that starts after a pause. */
            int64_t m = jb->lead_end - jb->play;
            if (m > n - pos)
                m = n - pos;
            if (pbx_plc_erasing(&jb->plc)) {
                /* Keep the erasure open (its signal has faded to zero by now) so that the
                   audio after the pause is faded in rather than started with a click. */
                pbx_plc_conceal(&jb->plc, out + pos, (int)m);
                memset(out + pos, 0, (size_t)m * sizeof *out);
            } else {
                memset(out + pos, 0, (size_t)m * sizeof *out);
                pbx_plc_good(&jb->plc, out + pos, (int)m);
            }
            jb->play += m;
            pos += (int)m;
            sil += (int)m;
            continue;
        }
        int64_t q = next_audio(jb, jb->play + 1);
        int64_t gap = q >= 0 ? q - jb->play : INT64_MAX;
        int64_t gap0 = gap;
        int crowded = jb->newest_end - jb->play > jb->max_s + n;
        if (q >= 0 && (delta + JB_SHRINK_DEBT > 0 || crowded) && jb->state == ST_PLAYING) {
            /* A hole with audio after it: conceal only part of it. The delay given up is
               taken back by time-scaling received audio, which sounds better than
               concealment. */
            int64_t keep = gap < JB_SHRINK_KEEP ? gap : JB_SHRINK_KEEP;
            int64_t skip = delta + JB_SHRINK_DEBT < gap - keep ? delta + JB_SHRINK_DEBT : gap - keep;
            if (crowded) {
                /* Holding more than max delay allows after this get: skip as much of the
                   hole as brings it back to max delay (all of it at most) rather than drop
                   received audio at the next put. Skipping the whole hole would play the
                   next packet at once, and a packet of the hole arriving just after it
                   (reordered within the jitter) would be discarded as late. */
                int64_t excess = jb->newest_end - jb->play - (jb->max_s + n);
                keep = 0;
                skip = excess < gap ? excess : gap;
            }
            if (skip > 0) {
                clear_range(jb, jb->play, jb->play + skip);
                jb->play += skip;
                gap -= skip;
                delta -= skip;
            }
        }
        if (jb->missing_run == 0 && jb->state == ST_PLAYING) {
            /* What a missing packet really costs: the share of a hole we had to conceal. */
            double share = q >= 0 ? (double)gap / (double)gap0 : 1.0;
            jb->late_share += (share - jb->late_share) / 16.0;
        }
        int m = gap < n - pos ? (int)gap : n - pos;
        int hold = 0;
        if (q < 0 && delta < 0 && jb->state == ST_PLAYING && !full)
            hold = -delta < m ? (int)-delta : m;    /* an underrun raises the delay for free */
        pbx_plc_conceal(&jb->plc, out + pos, m);
        int c = JB_GAP_AFTER - jb->missing_run;
        if (c < 0)
            c = 0;
        if (c > m)
            c = m;
        conc += c;
        sil += m - c;
        jb->missing_run += m;
        if (jb->missing_run >= JB_GAP_AFTER)
            jb->state = ST_GAP;
        clear_range(jb, jb->play, jb->play + (m - hold));
        jb->play += m - hold;
        delta += hold;
        pos += m;
    }
    jb->nominal += n;

    if (real == n) {
        float e = 0.f;
        for (int i = 0; i < n; i++)
            e += (float)out[i] * (float)out[i];
        float rms = sqrtf(e / (float)n);
        if (rms > 4.f * JB_QUIET_RMS)
            jb->level += (rms - jb->level) * 0.05f;
    }
    jb->st.played_samples += (uint64_t)real;
    jb->st.concealed_samples += (uint64_t)conc;
    jb->st.silence_samples += (uint64_t)sil;
    if (conc > 0)
        return PBX_JB_CONCEALED;
    return real > 0 ? PBX_JB_OK : PBX_JB_SILENCE;
}

void pbx_jb_get_stats(const pbx_jb_t *jb, pbx_jb_stats_t *st)
{
    if (!jb || !st)
        return;
    *st = jb->st;
    uint64_t lost = jb->lost_before;
    if (jb->have_seq) {
        int64_t expected = jb->max_seq - jb->base_seq + 1;
        if (expected > (int64_t)jb->epoch_received)
            lost += (uint64_t)(expected - (int64_t)jb->epoch_received);
    }
    st->lost = lost;
    st->jitter_ms = jb->jitter / 8.0;
    st->playing = jb->state != ST_EMPTY;
    if (jb->state == ST_EMPTY) {
        st->current_delay_ms = st->target_delay_ms = jb->init_s / 8;
        st->buffered_ms = 0;
        st->play_ts = 0;
        return;
    }
    double cur = jb->recent_wait - (double)(jb->play - jb->npend - jb->nominal);
    double tgt = jb->have_target ? jb->target_delay : jb->recent_wait - (double)target_shift(jb);
    st->current_delay_ms = (int)lrint(cur / 8.0);
    st->target_delay_ms = (int)lrint(tgt / 8.0);
    int64_t held = jb->newest_end - jb->play;
    st->buffered_ms = (int)((held > 0 ? held : 0) / 8);
    st->play_ts = jb->have_ts ? jb->ref_ts + (uint32_t)(jb->play - jb->ref_ext) : 0;
}
