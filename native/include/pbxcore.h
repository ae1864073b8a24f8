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
/** G.711 on blocks of samples (same results as the per-sample functions, faster). */
void pbx_ulaw_encode(const int16_t *pcm, uint8_t *out, int n);
void pbx_ulaw_decode(const uint8_t *in, int16_t *pcm, int n);
void pbx_alaw_encode(const int16_t *pcm, uint8_t *out, int n);
void pbx_alaw_decode(const uint8_t *in, int16_t *pcm, int n);
/** u-law <-> A-law conversion of one code, ITU-T G.711 Tables 3 and 4. */
uint8_t pbx_ulaw2alaw(uint8_t code);
uint8_t pbx_alaw2ulaw(uint8_t code);

/* ---- RTP packets (RFC 3550) ---- */
/** Why a datagram is not a usable RTP packet (positive; 0 = good). */
enum pbx_rtp_verdict {
    PBX_RTP_GOOD = 0,
    PBX_RTP_TRUNCATED = 1,      /**< shorter than the 12-byte fixed header */
    PBX_RTP_BAD_VERSION = 2,    /**< version field is not 2 */
    PBX_RTP_BAD_CSRC = 3,       /**< CSRC list runs past the end of the packet */
    PBX_RTP_BAD_EXTENSION = 4,  /**< header extension runs past the end of the packet */
    PBX_RTP_BAD_PADDING = 5,    /**< padding count is 0 or larger than the payload */
    PBX_RTP_RTCP = 6            /**< payload type 72..79 with the marker: RTCP on the RTP port (RFC 5761) */
};
/** The fixed header fields of one RTP packet and where its payload lies. */
typedef struct {
    uint8_t marker;         /**< M bit */
    uint8_t payload_type;   /**< PT, 0..127 */
    uint16_t seq;           /**< sequence number */
    uint32_t ts;            /**< timestamp (clock-rate units, 8 kHz for G.711) */
    uint32_t ssrc;          /**< synchronisation source */
    uint16_t payload_offset;/**< bytes from the start of the packet to the payload */
    uint16_t payload_len;   /**< payload bytes, padding excluded (may be 0) */
} pbx_rtp_header_t;
/** Parse one datagram. Never reads outside pkt[0..len). Returns a pbx_rtp_verdict. */
int pbx_rtp_parse(const uint8_t *pkt, size_t len, pbx_rtp_header_t *h);
/** Write a 12-byte RTP header (no CSRC, no extension) into out[0..12). */
void pbx_rtp_write_header(uint8_t *out, int marker, int payload_type, uint16_t seq, uint32_t ts, uint32_t ssrc);

/* ---- mixing ---- */
/** out[i] = saturate(sum over k of in[k][i]). */
void pbx_mix_sum(const int16_t *const *in, int n_in, int16_t *out, int nsamples);
/** N-party mix-minus: out[k][i] = saturate(sum over j != k of in[j][i]), exact before saturation. */
void pbx_mix_minus(const int16_t *const *in, int n, int16_t *const *out, int nsamples);

/* ---- in-band DTMF (block DFT + measured frequency offset; ITU-T Q.24 operate/non-operate limits) ---- */
typedef struct pbx_dtmf_det pbx_dtmf_det_t;
/** One digit the detector has finished hearing. */
typedef struct {
    char digit;             /**< '0'-'9', '*', '#', 'A'-'D' */
    int duration_ms;        /**< how long the tone lasted */
    uint64_t start_sample;  /**< sample index (since create/reset) where it began */
} pbx_dtmf_digit_t;
int pbx_dtmf_det_create(pbx_dtmf_det_t **out);
void pbx_dtmf_det_destroy(pbx_dtmf_det_t *d);
void pbx_dtmf_det_reset(pbx_dtmf_det_t *d);
/** Feed 8 kHz samples; digits that ENDED in this chunk go to out[0..max). Returns how many. */
int pbx_dtmf_det_process(pbx_dtmf_det_t *d, const int16_t *pcm, int n, pbx_dtmf_digit_t *out, int max);
/** Digit being heard right now, or 0. */
char pbx_dtmf_det_current(const pbx_dtmf_det_t *d);

/* ---- DLE shielding of 8-bit voice-modem audio (ITU-T V.253) ---- */
/** State of a DLE decoder (one per direction modem -> us; a DLE may end one read). */
typedef struct {
    int pending_dle;        /**< the previous chunk ended with a bare DLE */
} pbx_dle_state_t;
/**
 * Unshield in[0..n): audio bytes to audio[] (capacity >= n), DLE+code pairs to codes[]
 * (capacity >= n/2+1). DLE DLE is one audio byte 0x10. Sets *n_audio and *n_codes.
 */
void pbx_dle_decode(pbx_dle_state_t *st, const uint8_t *in, int n, uint8_t *audio, int *n_audio,
                    uint8_t *codes, int *n_codes);
/** Shield audio for the modem: every 0x10 doubled. out needs 2*n bytes. Returns bytes written. */
int pbx_dle_encode(const uint8_t *in, int n, uint8_t *out);

/* ---- WAV files ---- */
/** What pbx_wav_repair found and did. */
typedef struct {
    int changed;            /**< 1 if the file was modified */
    int channels;           /**< from the fmt chunk */
    int sample_rate;
    int bits_per_sample;
    uint64_t data_bytes;    /**< data chunk size after repair */
    uint64_t truncated_bytes; /**< bytes of a partial sample frame cut off the end */
} pbx_wav_info_t;
/**
 * Make a WAV file written by a recorder that was interrupted (power cut, kill) consistent:
 * RIFF and data sizes set from the file length, a trailing partial frame cut off.
 * Returns PBX_OK, PBX_EFORMAT (not a PCM WAV we can repair; the file is left untouched),
 * PBX_ENOTFOUND or PBX_EIO.
 */
int pbx_wav_repair(const char *path, pbx_wav_info_t *info);

/* ---- the engine ---- */
/** Everything the engine thread owns is addressed by a 32-bit id (0 is never valid). */
typedef struct pbx_engine pbx_engine_t;
typedef struct {
    const char *bind_ip;    /**< default local IP for RTP channels ("0.0.0.0" = any) */
    int rtp_port_min;       /**< first port of the RTP range (even ports are used, RTCP = +1) */
    int rtp_port_max;       /**< last port of the RTP range */
    int ptime_ms;           /**< the engine clock and the packet time sent (10, 20 or 30) */
    int max_channels;       /**< size of the channel table */
    int max_bridges;
    int max_players;
    int max_recorders;
    int event_queue_len;    /**< events kept for Python before the oldest are dropped */
    int jb_min_delay_ms;    /**< jitter buffer limits for decoded channels */
    int jb_max_delay_ms;
    int jb_initial_delay_ms;
    int flood_packets_per_tick; /**< packets one channel may deliver per tick before it is paused */
    int latch_packets;      /**< in-sequence packets needed to adopt a new RTP source */
    int io_uring;           /**< 1 (default): the packets of one wake-up are sent with one
                                 io_uring_enter() when the kernel allows it; 0: sendmsg/sendmmsg */
    int kernel_relay;       /**< 1 (default): once a relaying bridge's stream is established, its
                                 IPv4 audio packets are forwarded inside the kernel (tc/eBPF) when
                                 the kernel and privileges allow it; 0: always in the engine */
} pbx_engine_params_t;
void pbx_engine_params_default(pbx_engine_params_t *p);
/** Create the engine and start its thread. */
int pbx_engine_create(const pbx_engine_params_t *p, pbx_engine_t **out);
/** Stop the thread (finishing recordings) and free everything. NULL is allowed. */
void pbx_engine_destroy(pbx_engine_t *e);
/** A descriptor that is readable while events are waiting (for asyncio's add_reader). */
int pbx_engine_fd(const pbx_engine_t *e);

enum pbx_event_type {
    PBX_EV_DTMF = 1,            /**< id = channel, code = digit, value = duration ms, source */
    PBX_EV_RTP_TIMEOUT = 2,     /**< id = channel; no RTP for the configured time */
    PBX_EV_RTP_LATCHED = 3,     /**< id = channel; now sending to addr:port */
    PBX_EV_PLAYER_DONE = 4,     /**< id = player; code = pbx_player_end */
    PBX_EV_RECORDER_ERROR = 5,  /**< id = recorder; code = errno; samples written */
    PBX_EV_RECORDER_STOPPED = 6,/**< id = recorder; samples written */
    PBX_EV_DLE = 7,             /**< id = channel; code = the byte after DLE */
    PBX_EV_CHANNEL_ERROR = 8,   /**< id = channel; code = errno (0 = end of file) */
    PBX_EV_RTP_RESUMED = 9,     /**< id = channel; RTP flows again after a timeout */
    PBX_EV_COMMAND_FAILED = 10  /**< a *_nowait call failed in the engine thread: id = its object,
                                     code = pbx_status, value = pbx_cmd_op */
};
/** Which *_nowait call a PBX_EV_COMMAND_FAILED reports. */
enum pbx_cmd_op {
    PBX_OP_CHANNEL_CREATE = 1, PBX_OP_CHANNEL_CONFIGURE = 2, PBX_OP_CHANNEL_DESTROY = 3,
    PBX_OP_BRIDGE_CREATE = 4, PBX_OP_BRIDGE_ADD = 5, PBX_OP_BRIDGE_REMOVE = 6, PBX_OP_BRIDGE_DESTROY = 7,
    PBX_OP_PLAYER_STOP = 8, PBX_OP_SOUND_RELEASE = 9, PBX_OP_RECORDER_CREATE = 10, PBX_OP_RECORDER_STOP = 11
};
enum pbx_dtmf_source { PBX_DTMF_RFC4733 = 0, PBX_DTMF_INBAND = 1 };
enum pbx_player_end { PBX_PLAYER_FINISHED = 0, PBX_PLAYER_STOPPED = 1, PBX_PLAYER_TARGET_GONE = 2 };
typedef struct {
    int type;               /**< pbx_event_type */
    uint32_t id;
    int code;
    int value;
    int source;
    uint64_t samples;
    char addr[48];          /**< numeric IP (RTP_LATCHED) */
    int port;
} pbx_event_t;
/** Move up to max waiting events to out (never blocks). Returns how many. */
int pbx_engine_poll_events(pbx_engine_t *e, pbx_event_t *out, int max);

/** Counters of the engine itself. */
typedef struct {
    uint64_t ticks;             /**< clock ticks processed */
    uint64_t ticks_missed;      /**< ticks the thread was too late for (skipped) */
    uint64_t events_dropped;    /**< events lost because Python did not drain the queue */
    uint64_t commands;          /**< control calls served */
    int channels, bridges, players, recorders;
    uint64_t cpu_ns;            /**< CPU time used by the engine thread */
    uint64_t packets_sent;      /**< RTP packets handed to the kernel (accepted or not) */
    uint64_t send_calls;        /**< system calls that sent them (sendmsg, sendmmsg, io_uring_enter) */
    int io_uring;               /**< 1 while sends are batched through io_uring */
    int kernel_relay;           /**< 1 while the in-kernel relay is loaded and attached */
    int kernel_relay_error;     /**< errno of its set-up when it could not be used (0 if on or not asked) */
    uint64_t packets_kernel;    /**< RTP packets relayed inside the kernel (counted at each sync) */
    uint64_t kernel_relay_run_ns; /**< time the kernel spent in the relay program (sysctl
                                       kernel.bpf_stats_enabled=1 only, else 0) */
    uint64_t kernel_relay_runs; /**< packets the program looked at (same condition) */
} pbx_engine_stats_t;
int pbx_engine_get_stats(pbx_engine_t *e, pbx_engine_stats_t *st);

/*
 * Posted calls (*_nowait): the arguments are checked in the calling thread, the work is
 * queued behind every earlier call of any kind (synchronous calls queued later run after
 * it) and the call returns without waiting for the engine thread. A failure found there
 * is reported as PBX_EV_COMMAND_FAILED; a release or stop of an object already gone is
 * not reported. Ids of posted creations are valid at once.
 */

/* ---- channels ---- */
enum pbx_direction { PBX_DIR_SENDRECV = 0, PBX_DIR_SENDONLY = 1, PBX_DIR_RECVONLY = 2, PBX_DIR_INACTIVE = 3 };
/** Create an RTP channel on local_ip (NULL = the engine's bind_ip); binds an even port. */
int pbx_rtp_channel_create(pbx_engine_t *e, const char *local_ip, uint32_t *id, int *port);
/** Same, posted: the engine adopts the channel later. The ports come from the few pairs the engine
 * thread binds ahead on bind_ip (ranges of 32 ports and more), else are bound in the calling thread. */
int pbx_rtp_channel_create_nowait(pbx_engine_t *e, const char *local_ip, uint32_t *id, int *port);
/** The negotiated media of an RTP channel (from SDP); may be changed at any time (re-INVITE). */
typedef struct {
    const char *remote_ip;  /**< address from the SDP (NULL = not known yet) */
    int remote_port;
    const char *signalling_ip; /**< IP the SIP signalling came from; NULL = remote_ip */
    int payload_type;       /**< 0 (PCMU) or 8 (PCMA): what we send */
    int telephone_event_pt; /**< RFC 4733 payload type we send and expect, -1 = none */
    int direction;          /**< pbx_direction, seen from the engine */
    int inactivity_timeout_ms; /**< 0 = never */
    int inband_dtmf;        /**< -1 = detect in-band when telephone_event_pt < 0; 0 off; 1 on */
} pbx_rtp_config_t;
void pbx_rtp_config_default(pbx_rtp_config_t *c);
int pbx_rtp_channel_configure(pbx_engine_t *e, uint32_t id, const pbx_rtp_config_t *c);
int pbx_rtp_channel_configure_nowait(pbx_engine_t *e, uint32_t id, const pbx_rtp_config_t *c);

enum pbx_pcm_format { PBX_PCM_S16LE = 0, PBX_PCM_ULAW = 1, PBX_PCM_ALAW = 2, PBX_PCM_U8 = 3 };
/**
 * A channel reading/writing raw 8 kHz audio on fd (the engine dup()s it and sets it
 * non-blocking). dle = 1: V.253 DLE shielding (8-bit formats only), codes become PBX_EV_DLE.
 */
int pbx_pcm_channel_create(pbx_engine_t *e, int fd, int format, int dle, int inband_dtmf, uint32_t *id);
/** Send DLE + code to a DLE-framed PCM channel (e.g. 0x03 ETX to end voice transmit). */
int pbx_pcm_channel_send_dle(pbx_engine_t *e, uint32_t id, uint8_t code);
/** Close a channel (RTP or PCM): leaves its bridge, ends its players and recorders. */
int pbx_channel_destroy(pbx_engine_t *e, uint32_t id);
int pbx_channel_destroy_nowait(pbx_engine_t *e, uint32_t id);
/**
 * Send one DTMF digit: RFC 4733 on RTP channels with a telephone-event type, otherwise
 * an in-band tone pair. duration_ms 40..5000.
 */
int pbx_channel_send_dtmf(pbx_engine_t *e, uint32_t id, char digit, int duration_ms);
/** Turn the in-band detector on/off. */
int pbx_channel_set_inband_dtmf(pbx_engine_t *e, uint32_t id, int on);

typedef struct {
    uint64_t packets_in;        /**< RTP packets accepted (audio and events) / PCM frames read */
    uint64_t bytes_in;
    uint64_t packets_out;
    uint64_t bytes_out;
    uint64_t dropped_malformed; /**< truncated, bad version, CSRC/extension/padding overruns */
    uint64_t dropped_unknown_pt;
    uint64_t dropped_source;    /**< from an address not (yet) accepted */
    uint64_t dropped_direction; /**< received while the direction forbids it */
    uint64_t dropped_flood;     /**< over the per-tick budget */
    uint64_t send_errors;
    uint64_t rtcp_in;
    uint64_t dtmf_in;
    uint64_t dtmf_out;
    uint64_t source_changes;    /**< latches onto a new remote address */
    uint64_t dle_events;
    int bridged;                /**< 1 while a member of a bridge */
    int relaying;               /**< 1 while forwarded without decoding */
    int kernel_relay;           /**< 1 while its received audio is forwarded inside the kernel */
    int decoding;               /**< 1 while received audio goes through the jitter buffer */
    int local_port;
    char remote_addr[48];       /**< where we send now */
    int remote_port;
} pbx_channel_stats_t;
int pbx_channel_get_stats(pbx_engine_t *e, uint32_t id, pbx_channel_stats_t *st);

/* ---- bridges ---- */
enum pbx_member_mode { PBX_MEMBER_FULL = 0, PBX_MEMBER_LISTEN = 1, PBX_MEMBER_WHISPER = 2 };
int pbx_bridge_create(pbx_engine_t *e, uint32_t *id);
/** Add a channel (not in another bridge). WHISPER: heard only by whisper_to (a member). */
int pbx_bridge_add(pbx_engine_t *e, uint32_t bridge, uint32_t channel, int mode, uint32_t whisper_to);
int pbx_bridge_remove(pbx_engine_t *e, uint32_t bridge, uint32_t channel);
int pbx_bridge_destroy(pbx_engine_t *e, uint32_t bridge);
int pbx_bridge_create_nowait(pbx_engine_t *e, uint32_t *id);
int pbx_bridge_add_nowait(pbx_engine_t *e, uint32_t bridge, uint32_t channel, int mode, uint32_t whisper_to);
int pbx_bridge_remove_nowait(pbx_engine_t *e, uint32_t bridge, uint32_t channel);
int pbx_bridge_destroy_nowait(pbx_engine_t *e, uint32_t bridge);
/** 1 if the bridge currently relays packets without decoding, 0 if it mixes. */
int pbx_bridge_is_relaying(pbx_engine_t *e, uint32_t bridge);

/* ---- sounds and players ---- */
/** An immutable 8 kHz s16 buffer shared by players (music on hold for many callers). */
int pbx_sound_create(pbx_engine_t *e, const int16_t *pcm, size_t nsamples, uint32_t *id);
/** Drop the caller's reference; freed when no player uses it. */
int pbx_sound_release(pbx_engine_t *e, uint32_t id);
int pbx_sound_release_nowait(pbx_engine_t *e, uint32_t id);
/** Play a sound into a channel or a bridge (target id), once or looped. */
int pbx_player_create(pbx_engine_t *e, uint32_t target, uint32_t sound, int loop, int gain_db, uint32_t *id);
/** A dual-tone cadence: f2 = 0 for one tone; cadence on/off ms pairs, n_cadence = 0: steady. */
typedef struct {
    int f1_hz, f2_hz;
    int level_dbm0;         /**< per tone */
    int cadence_ms[8];      /**< on, off, on, off, ... */
    int n_cadence;
    int duration_ms;        /**< total; 0 = until stopped */
} pbx_tone_t;
int pbx_tone_player_create(pbx_engine_t *e, uint32_t target, const pbx_tone_t *tone, uint32_t *id);
int pbx_player_stop(pbx_engine_t *e, uint32_t id);
int pbx_player_stop_nowait(pbx_engine_t *e, uint32_t id);

/* ---- recorders ---- */
typedef struct {
    const char *path;       /**< created (truncated) by the calling thread */
    int stereo;             /**< 1: left = members in left[], right = the others */
    uint32_t left[8];
    int n_left;
    int sync_interval_ms;   /**< header rewrite + fdatasync period (<= 1000) */
    int buffer_ms;          /**< writer ring size; overflow drops audio, never blocks */
} pbx_recorder_params_t;
void pbx_recorder_params_default(pbx_recorder_params_t *p);
/** Record a bridge or a single channel (source id). For a channel: left = heard from it, right = sent to it. */
int pbx_recorder_create(pbx_engine_t *e, uint32_t source, const pbx_recorder_params_t *p, uint32_t *id);
/** Stop; the writer finalises the file and then posts PBX_EV_RECORDER_STOPPED. */
int pbx_recorder_stop(pbx_engine_t *e, uint32_t id);
/**
 * Same as pbx_recorder_create, posted: the writer thread creates the file. A file that
 * cannot be created ends the recording with PBX_EV_RECORDER_ERROR (code = errno); a
 * source that is gone by then gives PBX_EV_COMMAND_FAILED.
 */
int pbx_recorder_create_nowait(pbx_engine_t *e, uint32_t source, const pbx_recorder_params_t *p, uint32_t *id);
int pbx_recorder_stop_nowait(pbx_engine_t *e, uint32_t id);
/* ---- jitter buffer ---- */
/*
 * Adaptive jitter buffer with packet loss concealment for 8 kHz 16-bit mono audio
 * (decoded G.711). Sans-I/O: every time is passed in by the caller (microseconds on a
 * monotonic clock), nothing is allocated after pbx_jb_create(), and one buffer serves one
 * stream from one thread.
 *
 * The target delay follows the arrival statistics of the last ~20 s of packets (the delay
 * that keeps late packets rare, between min_delay_ms and max_delay_ms). The buffer moves
 * toward it, and absorbs clock drift between sender and playout, by time-scale changes:
 * whole pitch periods (or part of a quiet stretch) are removed or repeated with
 * overlap-add, never a bare cut. A missing packet with the next one already there is
 * concealed for only 5 ms; the delay given up is taken back by time-scaling received
 * audio. Missing audio is concealed in the spirit of ITU-T G.711 Appendix I
 * (pitch-period repetition with overlap-add, attenuation over 60 ms, a smooth merge into
 * the next real samples). Sequence numbers and timestamps wrap safely; a timestamp jump
 * or a new source resynchronises the buffer without playing stale audio.
 *
 * Delays: current_delay_ms is how long a packet's first sample waits after the packet
 * arrived (averaged over the last ~10 s; the wait for the caller's next get comes on top),
 * target_delay_ms the value the buffer steers that to. Call pbx_jb_get() at the playout
 * rate: the nominal playout clock is the number of samples pulled.
 */
typedef struct pbx_jb pbx_jb_t;
typedef struct {
    int min_delay_ms;       /**< lower bound of the target delay (ms, >= 0) */
    int max_delay_ms;       /**< upper bound of the target delay (ms, <= 2000); audio held never
                                 exceeds it by more than a packet and a get period */
    int initial_delay_ms;   /**< target before statistics exist (ms, clamped to min..max) */
    int plc;                /**< 1: conceal losses (G.711 App. I style); 0: fill silence */
} pbx_jb_params_t;
/** What pbx_jb_get() produced. */
enum pbx_jb_status {
    PBX_JB_OK = 0,          /**< received audio, none concealed (silence may lead in or trail off) */
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
    uint64_t silence_samples;     /**< output silence: before the first packet, pauses (> 60 ms without audio), stream end */
    uint64_t dropped_samples_drift;   /**< input samples removed by time-scaling (drift, delay down) */
    uint64_t inserted_samples_drift;  /**< output samples added by time-scaling (drift, delay up) */
    uint64_t overflow_dropped_samples;/**< received samples discarded: over max_delay_ms, or the reader stalled */
    uint64_t resyncs;       /**< timeline restarts (timestamp jump, new source) */
    int current_delay_ms;   /**< wait of a packet's first sample after arrival, averaged (ms) */
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

/* ---- engine: jitter buffer of a channel ---- */
/** The statistics of a channel's jitter buffer (meaningful while it decodes). */
int pbx_channel_get_jb_stats(pbx_engine_t *e, uint32_t id, pbx_jb_stats_t *st);
/* ---- datagram sender (SIP over UDP) ---- */
/**
 * A thread that sends datagrams for one UDP socket the caller owns, so that the caller's
 * thread (the Python event loop) does not pay for the send system call and, on loopback,
 * the receiver's delivery that the kernel runs inside it. Datagrams leave in the order
 * they were given, in batches (sendmmsg). The socket must stay open until close.
 */
typedef struct pbx_dgram_sender pbx_dgram_sender_t;
typedef struct {
    uint64_t queued;        /**< datagrams accepted by pbx_dgram_send */
    uint64_t sent;          /**< handed to the kernel */
    uint64_t failed;        /**< refused by the kernel (unreachable, bad address family...) */
    uint64_t dropped;       /**< not accepted: the queue stayed full for max_wait_ms */
    uint64_t send_calls;    /**< system calls that sent them */
    uint64_t cpu_ns;        /**< CPU time of the sender thread */
    int last_errno;         /**< errno of the last failure (0 = none) */
    int backlog;            /**< datagrams waiting right now */
} pbx_dgram_stats_t;
/**
 * Start a sender for the datagram socket fd (not dup()ed; non-blocking or not), queueing at
 * most `capacity` datagrams (1..65536). Returns PBX_OK, PBX_EINVAL, PBX_ENOMEM or PBX_EIO.
 */
int pbx_dgram_sender_open(int fd, int capacity, pbx_dgram_sender_t **out);
/**
 * Queue one datagram (1..65507 bytes) to ip (IPv4 or IPv6 text) and port. When the queue
 * is full it waits for room up to max_wait_ms, then drops the datagram (PBX_EFULL).
 * Returns PBX_OK, PBX_EINVAL (address, port or size), PBX_EFULL or PBX_ESTATE (closed).
 */
int pbx_dgram_send(pbx_dgram_sender_t *s, const char *ip, int port, const void *data, size_t len, int max_wait_ms);
/**
 * pbx_dgram_send without waking a sleeping sender thread: the datagram waits until the
 * next pbx_dgram_send, pbx_dgram_wake, flush or close (or until the queue is full). For a
 * caller that queues several datagrams in a row and then calls pbx_dgram_wake once.
 */
int pbx_dgram_queue(pbx_dgram_sender_t *s, const char *ip, int port, const void *data, size_t len, int max_wait_ms);
/** Wake the sender thread if datagrams are waiting. NULL is allowed. */
void pbx_dgram_wake(pbx_dgram_sender_t *s);
/** Wait until everything queued has been handed to the kernel (or timeout_ms). 0 = done, PBX_EFULL = still busy. */
int pbx_dgram_sender_flush(pbx_dgram_sender_t *s, int timeout_ms);
/** Counters of the sender. */
void pbx_dgram_sender_get_stats(pbx_dgram_sender_t *s, pbx_dgram_stats_t *st);
/** Send what is queued, stop the thread, free everything (not the socket). NULL is allowed. */
void pbx_dgram_sender_close(pbx_dgram_sender_t *s);
/* PBX_CDEF_END */

#endif
