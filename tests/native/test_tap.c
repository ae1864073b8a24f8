/*
 * The recording tap of relayed calls (native/src/tap.c), sans-I/O: streams of
 * position-coded audio (each sample tells its RTP timestamp) put in at simulated arrival
 * times and read every 20 ms. Checks: a clean stream comes out whole and exactly 60 ms
 * late; reordering inside the window changes nothing; a packet later than the window and a
 * lost one become silence; +-300 ppm of sender clock drift over 10 minutes is absorbed by
 * 5 ms corrections with nothing late; a new SSRC, a pause with a timestamp jump either way,
 * and timestamp wrap-around keep the audio in order.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"
#include "../src/tap.h"

static int fails;
static int16_t ring[PBX_TAP_RING];
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

/* Never 0 (0 is what the tap gives for silence); unique within 16384 positions, also across
 * the timestamp wrap. */
static int16_t code(uint32_t ts)
{
    return (int16_t)(1 + (ts & 0x3FFF));
}

static void frame(uint32_t ts, int16_t *pcm, int n)
{
    for (int i = 0; i < n; i++)
        pcm[i] = code(ts + (uint32_t)i);
}

/* What came out: for each output sample, the timestamp it carries (or silence). */
typedef struct {
    long silent, ok, wrong, backwards;
    int have_last, have_any;
    uint32_t last, last_any;
    long jumps;         /* consecutive audio samples whose timestamps are not consecutive */
} check_t;

/* Which timestamp in [lo, hi) an output sample carries: the nearest one (within 8191) to
 * where the previous audio sample left off. */
static void verify(check_t *c, const int16_t *out, int n, uint32_t lo, uint32_t hi)
{
    for (int i = 0; i < n; i++) {
        if (out[i] == 0) {
            c->silent++;
            c->have_last = 0;
            continue;
        }
        uint32_t hint = c->have_any ? c->last_any + 1 : lo;
        if ((uint32_t)(hint - lo) >= (uint32_t)(hi - lo))
            hint = lo;
        int found = 0;
        uint32_t ts = 0;
        for (uint32_t d = 0; d < 8192 && !found; d++) {
            uint32_t cand[2] = {hint + d, hint - d};
            for (int k = 0; k < 2 && !found; k++)
                if ((uint32_t)(cand[k] - lo) < (uint32_t)(hi - lo) && code(cand[k]) == out[i]) {
                    ts = cand[k];
                    found = 1;
                }
        }
        if (!found) {
            c->wrong++;
            continue;
        }
        c->ok++;
        if (c->have_last && ts != c->last + 1) {
            c->jumps++;
            if ((int32_t)(ts - c->last) <= 0)
                c->backwards++;
        }
        c->have_last = c->have_any = 1;
        c->last = c->last_any = ts;
    }
}

static void test_clean_stream_is_delayed_60_ms(void)
{
    pbx_tap_t t;
    pbx_tap_init(&t, ring);
    int16_t pcm[160], out[160];
    uint32_t ts0 = 1000;
    long zeros_before = 0;
    int bad = 0;
    for (int k = 0; k < 500; k++) {
        frame(ts0 + 160u * (uint32_t)k, pcm, 160);
        pbx_tap_put(&t, 7, ts0 + 160u * (uint32_t)k, pcm, 160);
        pbx_tap_get(&t, out, 160);
        for (int i = 0; i < 160; i++) {
            long pos = (long)k * 160 + i - PBX_TAP_DELAY;
            if (pos < 0) {
                zeros_before += out[i] == 0;
                continue;
            }
            if (out[i] != code(ts0 + (uint32_t)pos))
                bad++;
        }
    }
    CHECK(zeros_before == PBX_TAP_DELAY && bad == 0);
    CHECK(t.late_samples == 0 && t.repeated_samples == 0 && t.skipped_samples == 0 && t.anchors == 1);
}

static void test_before_the_first_packet_is_silence(void)
{
    pbx_tap_t t;
    pbx_tap_init(&t, ring);
    int16_t out[160];
    memset(out, 0x55, sizeof(out));
    pbx_tap_get(&t, out, 160);
    int zeros = 0;
    for (int i = 0; i < 160; i++)
        zeros += out[i] == 0;
    CHECK(zeros == 160);
}

/* Packets in a given order, one put per 20 ms slot; returns the check of everything read. */
static check_t run_order(const int *order, int n, uint32_t ts0, pbx_tap_t *t)
{
    int16_t pcm[160], out[160];
    check_t c;
    memset(&c, 0, sizeof(c));
    pbx_tap_init(t, ring);
    for (int k = 0; k < n + 10; k++) {
        if (k < n && order[k] >= 0) {
            uint32_t ts = ts0 + 160u * (uint32_t)order[k];
            frame(ts, pcm, 160);
            pbx_tap_put(t, 9, ts, pcm, 160);
        }
        pbx_tap_get(t, out, 160);
        verify(&c, out, 160, ts0 - 2000, ts0 + 160u * (uint32_t)n + 2000);
    }
    return c;
}

static void test_reordering_inside_the_window_is_undone(void)
{
    int order[200];
    for (int k = 0; k < 200; k++)
        order[k] = k;
    for (int k = 1; k + 1 < 200; k += 7) {
        int x = order[k];
        order[k] = order[k + 1];
        order[k + 1] = x;
    }
    pbx_tap_t t;
    check_t c = run_order(order, 200, 50000, &t);
    CHECK(c.wrong == 0 && c.backwards == 0 && c.jumps == 0);
    CHECK(c.ok == 200 * 160 && t.late_samples == 0);
}

static void test_late_and_lost_packets_become_silence(void)
{
    int order[200];
    for (int k = 0; k < 200; k++)
        order[k] = k;
    /* packet 50 is lost, packet 100 comes 5 slots (100 ms) late: past the 60 ms window */
    order[50] = -1;
    for (int k = 100; k < 105; k++)
        order[k] = k + 1;
    order[105] = 100;
    pbx_tap_t t;
    check_t c = run_order(order, 200, 123456, &t);
    CHECK(c.wrong == 0 && c.backwards == 0);
    CHECK(c.ok == 198 * 160 && t.late_samples == 160);
    CHECK(c.jumps == 0);    /* silence in the two holes, the rest in sequence */
}

/* Sender clock off by ppm; arrivals with a little jitter; 10 minutes. */
static void drift(double ppm)
{
    pbx_tap_t t;
    pbx_tap_init(&t, ring);
    int16_t pcm[160], out[160];
    check_t c;
    memset(&c, 0, sizeof(c));
    uint32_t ts0 = 4000000000u;   /* wraps during the run */
    double period = 160.0 / (1.0 + ppm * 1e-6);  /* samples of our clock between packets */
    long sent = 0, reads = 0;
    uint32_t rng = 12345;
    for (long now = 0; now < 8000L * 600; now += 160) {
        /* every packet whose arrival (send time + 0..5 ms jitter) falls in this tick */
        for (;;) {
            rng = rng * 1103515245u + 12345u;
            double arrival = sent * period + (double)(rng >> 16 & 0xFF) / 255.0 * 40.0;
            if (arrival >= (double)now + 160)
                break;
            uint32_t ts = ts0 + 160u * (uint32_t)sent;
            frame(ts, pcm, 160);
            pbx_tap_put(&t, 1, ts, pcm, 160);
            sent++;
        }
        pbx_tap_get(&t, out, 160);
        reads++;
        uint32_t expect = ts0 + (uint32_t)(now * (1.0 + ppm * 1e-6)) - PBX_TAP_DELAY;
        verify(&c, out, 160, expect - 3000, expect + 3000);
    }
    double drift_samples = 8000.0 * 600 * ppm * 1e-6;
    uint64_t corr = ppm > 0 ? t.skipped_samples : t.repeated_samples;
    uint64_t wrong_way = ppm > 0 ? t.repeated_samples : t.skipped_samples;
    printf("test_tap: drift %+.0f ppm: %.0f samples of drift, corrected %llu (other way %llu), late %llu, "
           "silent %ld\n", ppm, drift_samples, (unsigned long long)corr, (unsigned long long)wrong_way,
           (unsigned long long)t.late_samples, c.silent);
    CHECK(t.anchors == 1 && t.late_samples == 0 && c.wrong == 0);
    CHECK(c.silent == PBX_TAP_DELAY);
    /* the read point stays between the thresholds: corrections = the drift, give or take two steps */
    CHECK((double)corr >= fabs(drift_samples) - 700 && (double)corr <= fabs(drift_samples) + 2 * PBX_TAP_STEP);
    CHECK(wrong_way == 0);
    /* each correction is one jump in the timestamps read (skip: forward; repeat: backward) */
    CHECK(c.jumps == (long)(corr / PBX_TAP_STEP));
}

static void test_new_ssrc_and_pauses_re_anchor(void)
{
    pbx_tap_t t;
    pbx_tap_init(&t, ring);
    int16_t pcm[160], out[160];
    check_t c;
    memset(&c, 0, sizeof(c));
    uint32_t ts = 777;
    for (int k = 0; k < 50; k++, ts += 160) {
        frame(ts, pcm, 160);
        pbx_tap_put(&t, 1, ts, pcm, 160);
        pbx_tap_get(&t, out, 160);
    }
    /* new source, unrelated timestamps: its audio comes out after 60 ms, in order */
    uint32_t ts2 = 99999999;
    long ok_before = 0;
    memset(&c, 0, sizeof(c));
    for (int k = 0; k < 50; k++, ts2 += 160) {
        frame(ts2, pcm, 160);
        pbx_tap_put(&t, 2, ts2, pcm, 160);
        pbx_tap_get(&t, out, 160);
        verify(&c, out, 160, 99999999 - 1000, ts2 + 160);
    }
    CHECK(t.anchors == 2 && c.wrong == 0 && c.backwards == 0 && c.ok == 50 * 160 - PBX_TAP_DELAY);
    ok_before = c.ok;
    /* a 2 s pause in which the sender's timestamps did not advance (hold, then resume):
     * the resumed audio would be "late"; instead the idle tap re-anchors */
    for (int k = 0; k < 100; k++)
        pbx_tap_get(&t, out, 160);
    memset(&c, 0, sizeof(c));
    for (int k = 0; k < 50; k++, ts2 += 160) {
        frame(ts2, pcm, 160);
        pbx_tap_put(&t, 2, ts2, pcm, 160);
        pbx_tap_get(&t, out, 160);
        verify(&c, out, 160, ts2 - 2000, ts2 + 160);
    }
    CHECK(t.anchors == 3 && c.wrong == 0 && c.backwards == 0 && c.ok == 50 * 160 - PBX_TAP_DELAY);
    CHECK(t.late_samples == 0);
    /* a pause after which the timestamps jumped ahead by 10 s: re-anchored too, nothing lost */
    for (int k = 0; k < 10; k++)
        pbx_tap_get(&t, out, 160);
    ts2 += 80000;
    memset(&c, 0, sizeof(c));
    for (int k = 0; k < 50; k++, ts2 += 160) {
        frame(ts2, pcm, 160);
        pbx_tap_put(&t, 2, ts2, pcm, 160);
        pbx_tap_get(&t, out, 160);
        verify(&c, out, 160, ts2 - 2000, ts2 + 160);
    }
    CHECK(t.anchors == 4 && c.ok == 50 * 160 - PBX_TAP_DELAY && c.wrong == 0 && c.backwards == 0);
    CHECK(ok_before > 0);
}

static void test_nonsense_is_ignored(void)
{
    pbx_tap_t t;
    pbx_tap_init(&t, ring);
    int16_t pcm[480] = {0}, out[160];
    pbx_tap_put(&t, 1, 0, NULL, 160);
    pbx_tap_put(&t, 1, 0, pcm, 0);
    pbx_tap_put(&t, 1, 0, pcm, 481);
    CHECK(!t.started);
    pbx_tap_get(&t, NULL, 160);
    pbx_tap_get(&t, out, 0);
    /* random timestamps, sizes and sources: never out of bounds (ASan), always n samples out */
    uint32_t r = 1;
    for (int k = 0; k < 200000; k++) {
        r = r * 1664525u + 1013904223u;
        int n = 1 + (int)(r >> 8) % 480;
        uint32_t ts = (r & 1) ? r : (uint32_t)k * 160u;
        pbx_tap_put(&t, r >> 30, ts, pcm, n);
        if (k % 3 == 0)
            pbx_tap_get(&t, out, 1 + (int)(r >> 4) % 160);
    }
    CHECK(t.started);
}

int main(void)
{
    test_before_the_first_packet_is_silence();
    test_clean_stream_is_delayed_60_ms();
    test_reordering_inside_the_window_is_undone();
    test_late_and_lost_packets_become_silence();
    drift(300);
    drift(-300);
    drift(0);
    test_new_ssrc_and_pauses_re_anchor();
    test_nonsense_is_ignored();
    if (fails)
        return 1;
    printf("test_tap: ok\n");
    return 0;
}
