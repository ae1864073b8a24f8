/*
 * pbxcore: the media engine of the office phone box.
 *
 * One public header. Everything the Python side (firmware/media/) may call is
 * declared here; the cffi build script copies the declarations between the
 * PBX_CDEF_BEGIN / PBX_CDEF_END markers into its cdef.
 */
#ifndef PBXCORE_H
#define PBXCORE_H

#include <stdint.h>
#include <stddef.h>

/* PBX_CDEF_BEGIN */
/* ---- errors ---- */
/** Return codes shared by every pbx_* function: 0 on success, a negative code on failure. */
enum pbx_status {
    PBX_OK = 0,
    PBX_EINVAL = -1,        /**< an argument is out of range or malformed */
    PBX_ENOMEM = -2,        /**< allocation failed (only at create time) */
    PBX_ESTATE = -3,        /**< not allowed in the object's current state (e.g. engine stopped) */
    PBX_EIO = -4,           /**< a system call failed (errno kept where the API says so) */
    PBX_ENOPORT = -5,       /**< no free port in the configured RTP range */
    PBX_EADDRINUSE = -6,    /**< the requested address/port is taken */
    PBX_ENOTFOUND = -7,     /**< no object with that id */
    PBX_EFULL = -8,         /**< a fixed-size table or queue is full */
    PBX_EFORMAT = -9,       /**< a file or buffer is not in the expected format */
    PBX_EBUSY = -10,        /**< the object is in use by another (e.g. a channel already bridged) */
    PBX_ENOSPC = -11        /**< no space left on the device */
};
/** Short English text for a status code (never NULL). */
const char *pbx_strerror(int code);

/** Version of the engine as "major.minor.patch". */
const char *pbx_version(void);

/** G.711 u-law (ITU-T G.711 / Sun reference) encode/decode of one sample. */
uint8_t pbx_linear2ulaw(int16_t pcm);
int16_t pbx_ulaw2linear(uint8_t code);
/** G.711 A-law encode/decode of one sample. */
uint8_t pbx_linear2alaw(int16_t pcm);
int16_t pbx_alaw2linear(uint8_t code);
/* ---- jitter buffer ---- */
/*
 * Adaptive jitter buffer with packet loss concealment for 8 kHz 16-bit mono audio
 * (decoded G.711). Sans-I/O: every time is passed in by the caller (microseconds on a
 * monotonic clock), nothing is allocated after pbx_jb_create(), and one buffer serves one
 * stream from one thread.
 *
 * The target delay follows the arrival statistics of the last ~10 s of packets (the delay
 * that keeps late packets rare, between min_delay_ms and max_delay_ms). The buffer moves
 * toward it, and absorbs clock drift between sender and playout, by time-scale changes:
 * one pitch period (or part of a quiet stretch) is removed or repeated with overlap-add,
 * never a bare cut. Missing audio is concealed in the spirit of ITU-T G.711 Appendix I
 * (pitch-period repetition with overlap-add, attenuation over 60 ms, a smooth merge into
 * the next real samples). Sequence numbers and timestamps wrap safely; a timestamp jump
 * or a new source resynchronises the buffer without playing stale audio.
 *
 * Delays: current_delay_ms is the audio a packet finds queued ahead of it when it arrives
 * (averaged), target_delay_ms the value the buffer steers that to.
 */
typedef struct pbx_jb pbx_jb_t;
typedef struct {
    int min_delay_ms;       /**< lower bound of the target delay (ms, >= 0) */
    int max_delay_ms;       /**< upper bound of the target delay and of the audio held (ms, <= 2000) */
    int initial_delay_ms;   /**< target before statistics exist (ms, clamped to min..max) */
    int plc;                /**< 1: conceal losses (G.711 App. I style); 0: fill silence */
} pbx_jb_params_t;
/** What pbx_jb_get() produced. */
enum pbx_jb_status {
    PBX_JB_OK = 0,          /**< all samples are received audio */
    PBX_JB_CONCEALED = 1,   /**< some or all samples were concealed (or silence-filled, plc = 0) */
    PBX_JB_SILENCE = 2      /**< nothing to play: before the first packet, in a pause, stream ended */
};
/** Non-negative results of pbx_jb_put() (negative: a PBX_E* error, nothing stored). */
enum pbx_jb_put_result {
    PBX_JB_PUT_STORED = 0,  /**< the packet will be played */
    PBX_JB_PUT_LATE = 1,    /**< its time has passed: discarded (counted in late_discarded) */
    PBX_JB_PUT_DUPLICATE = 2, /**< already received: discarded (counted in duplicated) */
    PBX_JB_PUT_RESYNC = 3   /**< a new timeline (jump/restart): buffer flushed, packet stored */
};
typedef struct {
    uint64_t received;      /**< packets accepted by put (duplicates excluded, late ones included) */
    uint64_t lost;          /**< packets never received (sequence gaps, RFC 3550 A.3) */
    uint64_t late_discarded;/**< packets that arrived after their play time */
    uint64_t duplicated;    /**< packets received more than once */
    uint64_t reordered;     /**< packets that arrived after a higher sequence number */
    uint64_t concealed_samples;   /**< output samples made up for missing audio */
    uint64_t played_samples;      /**< output samples of received audio (time-scaled included) */
    uint64_t silence_samples;     /**< output silence: before the first packet, pauses, stream end */
    uint64_t dropped_samples_drift;   /**< input samples removed by time-scaling (drift, delay down) */
    uint64_t inserted_samples_drift;  /**< output samples added by time-scaling (drift, delay up) */
    uint64_t overflow_dropped_samples;/**< received samples discarded to stay within max_delay_ms */
    uint64_t resyncs;       /**< timeline restarts (timestamp jump, new source) */
    int current_delay_ms;   /**< queued audio ahead of an arriving packet, averaged (ms) */
    int target_delay_ms;    /**< what current_delay_ms is steered to (ms) */
    int buffered_ms;        /**< audio held right now ahead of the play point (ms) */
    int playing;            /**< 1 once a stream is being played (0 before the first packet / after reset) */
    uint32_t play_ts;       /**< RTP timestamp of the next sample to play (valid while playing) */
    double jitter_ms;       /**< RFC 3550 interarrival jitter (A.8), in ms */
} pbx_jb_stats_t;
/** min 20, max 500, initial 60, plc 1. */
void pbx_jb_params_default(pbx_jb_params_t *p);
/** Allocate a buffer (all memory is taken here). Returns PBX_OK, PBX_EINVAL or PBX_ENOMEM. */
int pbx_jb_create(const pbx_jb_params_t *p, pbx_jb_t **out);
/** Free a buffer. NULL is allowed. */
void pbx_jb_destroy(pbx_jb_t *jb);
/** Forget everything (audio, statistics, counters): as after create. */
void pbx_jb_reset(pbx_jb_t *jb);
/** The source changed (new SSRC): drop queued audio and the sequence context, keep the delay. */
void pbx_jb_resync(pbx_jb_t *jb);
/**
 * One received frame of decoded audio: 1..480 samples, its RTP sequence number and
 * timestamp (8 kHz units) and its arrival time. Returns a pbx_jb_put_result, or PBX_EINVAL
 * (bad arguments; nothing stored).
 */
int pbx_jb_put(pbx_jb_t *jb, uint16_t seq, uint32_t ts, const int16_t *pcm, int nsamples, int64_t arrival_us);
/**
 * Pull exactly nsamples (1..960, normally 160 = 20 ms) for playout at now_us; `out` is
 * always filled. Returns a pbx_jb_status, or PBX_EINVAL (out is then zeroed if not NULL).
 */
int pbx_jb_get(pbx_jb_t *jb, int16_t *out, int nsamples, int64_t now_us);
/** Copy the counters and the current delays. */
void pbx_jb_get_stats(const pbx_jb_t *jb, pbx_jb_stats_t *st);
/* PBX_CDEF_END */

#endif
