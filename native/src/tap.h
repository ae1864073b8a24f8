/*
 * Recording tap of a relayed stream. Private to the engine.
 *
 * A relaying bridge forwards packets without decoding them. When a recorder listens to it,
 * each member's received audio is decoded once per packet into this tap instead of going
 * through the jitter buffer: a ring indexed by RTP timestamp, read once per tick a fixed
 * delay (60 ms) behind the newest audio. Packets within that window may arrive in any order;
 * later ones are dropped (counted), missing audio is recorded as silence. The recording
 * follows the engine clock: when the sender's clock drifts, the read point is moved by a few
 * milliseconds at most once a second (a short repeat or skip), and a new SSRC, a timestamp
 * jump, or audio resuming after everything buffered was played re-anchors the timeline.
 * Sans-I/O: no clock, no allocation; one tap serves one stream from one thread.
 */
#ifndef PBX_TAP_H
#define PBX_TAP_H

#include <stdint.h>

#define PBX_TAP_RING 2048       /* samples held (256 ms), a power of two */
#define PBX_TAP_DELAY 480       /* read point behind the newest audio when anchored (60 ms) */
#define PBX_TAP_WINDOW 8000     /* samples read between drift decisions (1 s) */
#define PBX_TAP_MARGIN 40       /* drift: the newest audio is kept at least one read plus one
                                   packet plus this (5 ms) ahead of the read point... */
#define PBX_TAP_SLACK 280       /* ...and at most one more packet plus this (35 ms) beyond that */
#define PBX_TAP_STEP 40         /* 5 ms per drift correction (20 ms when far off) */
#define PBX_TAP_JUMP 16000      /* timestamps this far behind the read point: new timeline */

typedef struct {
    /* hot: read at every packet and every tick (small, so it shares the owner's cache lines) */
    int16_t *ring;              /* PBX_TAP_RING samples, owned by the caller: sample at RTP
                                   timestamp t in ring[t % RING]; zero = silence */
    int started;
    uint32_t ssrc;
    uint32_t rd;                /* timestamp of the next sample to read */
    uint32_t hi;                /* end of the newest audio received */
    int32_t lag_min;            /* smallest hi - rd seen by a read in this window */
    int window;                 /* samples read in this window */
    int puts;                   /* packets stored in this window */
    int pkt_n, get_n;           /* samples in the last packet, in the last read */
    /* counters */
    uint64_t late_samples;      /* received after their read time: not recorded */
    uint64_t repeated_samples;  /* drift corrections: recorded twice */
    uint64_t skipped_samples;   /* drift corrections: received, not recorded */
    uint64_t anchors;           /* timeline (re)starts */
} pbx_tap_t;

/** Start a tap on ring (PBX_TAP_RING samples, kept by the caller): silence until the first put. */
void pbx_tap_init(pbx_tap_t *t, int16_t *ring);
/** Forget the stream (the ring stays attached). */
void pbx_tap_reset(pbx_tap_t *t);
/** Store n (1..480) decoded samples with RTP timestamp ts from source ssrc. */
void pbx_tap_put(pbx_tap_t *t, uint32_t ssrc, uint32_t ts, const int16_t *pcm, int n);
/** Read the next n (1..480) samples (silence before the first packet and where nothing came). */
void pbx_tap_get(pbx_tap_t *t, int16_t *out, int n);

#endif
