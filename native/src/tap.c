/* Recording tap of a relayed stream (see tap.h). */
#include <stdint.h>
#include <string.h>

#include "jbuf.h"
#include "tap.h"

#define MASK (PBX_TAP_RING - 1)

/* Samples [ts, ts + n) of the ring as at most two contiguous pieces. */
static void copy_in(pbx_tap_t *t, uint32_t ts, const int16_t *src, int n)
{
    int at = (int)(ts & MASK), first = PBX_TAP_RING - at < n ? PBX_TAP_RING - at : n;
    memcpy(t->ring + at, src, (size_t)first * sizeof(*src));
    memcpy(t->ring, src + first, (size_t)(n - first) * sizeof(*src));
}

/* Read (dst may be NULL) and, if clear, empty the samples [ts, ts + n). */
static void copy_out(pbx_tap_t *t, uint32_t ts, int16_t *dst, int n, int clear)
{
    int at = (int)(ts & MASK), first = PBX_TAP_RING - at < n ? PBX_TAP_RING - at : n;
    if (dst) {
        memcpy(dst, t->ring + at, (size_t)first * sizeof(*dst));
        memcpy(dst + first, t->ring, (size_t)(n - first) * sizeof(*dst));
    }
    if (clear) {
        memset(t->ring + at, 0, (size_t)first * sizeof(*dst));
        memset(t->ring, 0, (size_t)(n - first) * sizeof(*dst));
    }
}

void pbx_tap_init(pbx_tap_t *t, int16_t *ring)
{
    t->ring = ring;
    pbx_tap_reset(t);
}

void pbx_tap_reset(pbx_tap_t *t)
{
    int16_t *ring = t->ring;
    memset(t, 0, sizeof(*t));
    t->ring = ring;
    memset(ring, 0, PBX_TAP_RING * sizeof(*ring));
    t->lag_min = INT32_MAX;
    t->pkt_n = t->get_n = 160;
}

/* Where the newest audio should stay relative to the read point (hi - rd, samples): a read
 * and a packet arriving one read late must not run past it. */
static int low_mark(const pbx_tap_t *t)
{
    return t->get_n + t->pkt_n + PBX_TAP_MARGIN;
}

static int high_mark(const pbx_tap_t *t)
{
    return low_mark(t) + (t->get_n > t->pkt_n ? t->get_n : t->pkt_n) + PBX_TAP_SLACK;
}

/* New timeline: ts plays PBX_TAP_DELAY samples from now. Anything buffered is dropped. */
static void anchor(pbx_tap_t *t, uint32_t ssrc, uint32_t ts)
{
    memset(t->ring, 0, PBX_TAP_RING * sizeof(*t->ring));
    t->started = 1;
    t->ssrc = ssrc;
    t->rd = ts - PBX_TAP_DELAY;
    t->hi = ts;
    t->lag_min = INT32_MAX;
    t->window = 0;
    t->puts = 0;
    t->anchors++;
}

void pbx_tap_put(pbx_tap_t *t, uint32_t ssrc, uint32_t ts, const int16_t *pcm, int n)
{
    if (!pcm || n <= 0 || n > PBX_JB_MAX_PUT)
        return;
    t->pkt_n = n;
    if (!t->started || ssrc != t->ssrc) {
        anchor(t, ssrc, ts);
    } else {
        int32_t off = PBX_TS_DIFF(ts, t->rd);
        int idle = PBX_TS_GE(t->rd, t->hi);    /* everything received has been read */
        if (off > PBX_TAP_RING - n || off < -PBX_TAP_JUMP || (idle && (off < 0 || off > high_mark(t)))) {
            /* beyond the ring, far behind, or resuming after an underrun or a pause off the
             * old timeline: when idle this only moves silence */
            anchor(t, ssrc, ts);
        } else if (off + n <= 0) {
            t->late_samples += (uint64_t)n;
            return;
        }
    }
    int32_t off = PBX_TS_DIFF(ts, t->rd);
    int k0 = off < 0 ? -off : 0;
    t->late_samples += (uint64_t)k0;
    copy_in(t, ts + (uint32_t)k0, pcm + k0, n - k0);
    if (PBX_TS_GT(ts + (uint32_t)n, t->hi))
        t->hi = ts + (uint32_t)n;
    t->puts++;
}

void pbx_tap_get(pbx_tap_t *t, int16_t *out, int n)
{
    if (!out || n <= 0)
        return;
    t->get_n = n > PBX_JB_MAX_PUT ? PBX_JB_MAX_PUT : n;
    if (!t->started) {
        memset(out, 0, (size_t)n * sizeof(*out));
        return;
    }
    int32_t lag = PBX_TS_DIFF(t->hi, t->rd);
    if (lag > 0 && lag < t->lag_min)
        t->lag_min = lag;
    int repeat = 0, skip = 0;
    t->window += n;
    if (t->window >= PBX_TAP_WINDOW) {
        int max_step = n / 2;
        if (t->puts > 0 && t->lag_min != INT32_MAX) {
            int lo = low_mark(t), hi = high_mark(t);
            if (t->lag_min < lo)
                repeat = lo - t->lag_min > 160 ? 160 : PBX_TAP_STEP;
            else if (t->lag_min > hi)
                skip = t->lag_min - hi > 160 ? 160 : PBX_TAP_STEP;
        }
        repeat = repeat > max_step ? max_step : repeat;
        skip = skip > max_step ? max_step : skip;
        t->window = 0;
        t->puts = 0;
        t->lag_min = INT32_MAX;
    }
    if (skip) {
        copy_out(t, t->rd, NULL, skip, 1);
        t->rd += (uint32_t)skip;
        t->skipped_samples += (uint64_t)skip;
    }
    copy_out(t, t->rd, out, repeat, 0);
    t->repeated_samples += (uint64_t)repeat;
    copy_out(t, t->rd, out + repeat, n - repeat, 1);
    t->rd += (uint32_t)(n - repeat);
}
