/* Private structures of the media engine: everything below is owned by the engine thread
 * unless a comment says otherwise. */
#ifndef PBX_ENGINE_INT_H
#define PBX_ENGINE_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "jbuf.h"
#include "kfwd.h"
#include "pbxcore.h"
#include "tap.h"

#define MAX_TICK 240            /* samples per tick at ptime 30 ms */
#define MAX_FRAME 480           /* largest decoded packet accepted (60 ms) */
#define RX_BATCH 32             /* recvmmsg batch */
#define PKT_BUF 1536
#define TX_SLOTS 256            /* packets queued for one batched send */
#define TX_PKT 512              /* an outgoing packet: 12-byte header + at most MAX_FRAME bytes */
#define MAX_MEMBERS 64
#define SPARE_MAX 8             /* RTP socket pairs bound ahead (large port ranges only) */
#define DTMF_QUEUE 32
#define ID_TYPE_SHIFT 28
/* 0 dBm0 sine amplitude (G.711 full scale is +3.14 dBm0); DTMF sent at -7 / -5 dBm0. */
#define DBM0_AMPLITUDE 22785.0
#define DTMF_AMP_LOW 10178.0
#define DTMF_AMP_HIGH 12812.0

enum obj_type { OBJ_CHANNEL = 1, OBJ_BRIDGE = 2, OBJ_PLAYER = 3, OBJ_RECORDER = 4, OBJ_SOUND = 5 };
enum chan_kind { CH_RTP = 1, CH_PCM = 2 };
enum epoll_tag { TAG_TIMER = 1, TAG_CMD = 2, TAG_RTP = 3, TAG_RTCP = 4, TAG_PCM = 5 };

#define ID_TYPE(id) ((int)((id) >> ID_TYPE_SHIFT))

/* Wrap-around safe comparisons. */
#define SEQ_LT(a, b) ((int16_t)((uint16_t)(a) - (uint16_t)(b)) < 0)

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} paddr_t;

typedef struct table {
    void **slot;
    uint16_t *gen;
    int cap;
    int used;       /* slots ever handed out (high-water mark) */
    int *free_list;
    int n_free;
    pthread_mutex_t mu;         /* reserve/delete (any thread may reserve an id) */
    int mu_init;
} table_t;

struct pbx_engine;
struct bridge;
struct player;
struct recorder;

/* Where a channel's output packets come from, so SSRC/seq/ts stay continuous. */
typedef struct {
    uint32_t ssrc;
    uint16_t next_seq;          /* sequence number of the next packet we send */
    uint32_t last_ts;           /* timestamp of the last packet sent */
    int64_t last_ts_us;         /* when that timestamp's first sample was "now" */
    int started;
    const void *src;            /* relay source (partner channel) or NULL = local audio */
    uint32_t src_ssrc;
    uint16_t seq_off;
    uint32_t ts_off;
    int marker;                 /* set the M bit on the next packet */
} outstate_t;

typedef struct {
    char digit;
    int ms;
} dtmf_req_t;

typedef struct chan {
    /* hot: read or written at every tick and every relayed packet, kept in the first cache
     * lines (a tick visits every channel: fields it reads elsewhere cost a miss each) */
    uint32_t id;
    int kind;
    int fd;
    int direction, pt, te_pt;
    int have_dest, have_sdp, have_sig;
    int decoding, det_on, timed_out, configured;
    int tapping;                /* relayed and recorded: received audio goes to tap, not jb */
    int tick_pkts;              /* packets this tick (flood control) */
    int paused;
    int have_rx_ssrc;
    uint32_t rx_ssrc;           /* SSRC of the audio going into the jitter buffer */
    int out_valid;              /* out[] holds what we sent this tick */
    int timeout_ms;
    int n_taps;                 /* recorders on this channel */
    int mode;                   /* pbx_member_mode */
    int dq_len;                 /* DTMF digits queued */
    int has_play;               /* play[] holds its players' sum this tick */
    int dead;                   /* PCM fd gone */
    struct bridge *br;
    pbx_jb_t *jb;
    int16_t *tap_ring;          /* allocated the first time the channel is tapped */
    int64_t last_rx_us;

    /* RFC 4733 receive */
    struct {
        int active;
        uint32_t ts;
        int event;
        int duration;
        int64_t last_us;
        int done_valid;
        uint32_t done_ts;
    } evrx;
    outstate_t os;
    struct {
        int active;             /* 1 = RFC 4733 event, 2 = in-band tone, 3 = inter-digit gap */
        char digit;
        int total;              /* samples */
        int elapsed;            /* samples */
        uint32_t ts;
        int end_left;           /* end packets still to send */
        double ph1, ph2, w1, w2;
        int gap_left;
    } dtx;
    pbx_tap_t tap;              /* valid while tapping */
    pbx_channel_stats_t st;
    paddr_t dest;               /* where we send now */

    /* in-kernel relay of what this channel receives (kfwd.h) */
    int kf_on;
    struct chan *kf_to;         /* the partner it forwards to while kf_on */
    uint64_t kf_packets, kf_bytes;  /* the entry's counters at the last sync */
    int64_t kf_retry_us;        /* no new attempt before (after a failed one) */

    /* RTP, less often */
    int active_idx;
    struct pbx_engine *e;
    int rtcp_fd, port;
    int inband_cfg;
    paddr_t local;
    paddr_t sdp;                /* the address in the SDP */
    paddr_t sig;                /* IP of the signalling peer (port unused) */
    paddr_t cand;               /* a source waiting to be adopted */
    uint32_t cand_ssrc;
    uint16_t cand_seq;
    int cand_count;

    /* decode path */
    int16_t in[MAX_TICK];       /* what the far end said this tick */
    int16_t out[MAX_TICK];      /* what we sent it this tick */
    pbx_dtmf_det_t *det;

    /* DTMF send queue */
    dtmf_req_t dq[DTMF_QUEUE];
    int dq_head;

    /* topology */
    uint32_t whisper_to;
    struct player *players;     /* players whose target is this channel */
    int16_t play[MAX_TICK];     /* sum of its players this tick */

    /* PCM fd */
    int pcm_fd, pcm_format, dle;
    pbx_dle_state_t dle_st;
    uint8_t carry;
    int have_carry;
    int16_t acc[MAX_TICK];
    int acc_n;
    uint16_t pseq;
    uint32_t pts;
    uint8_t *txbuf;
    int tx_len, tx_cap;
} chan_t;

typedef struct bridge {
    uint32_t id;
    int active_idx;
    chan_t *m[MAX_MEMBERS];
    int n;
    int relay;
    struct player *players;
    int n_taps;
    int16_t play[MAX_TICK];
    int has_play;
} bridge_t;

typedef struct sound {
    uint32_t id;
    int refs;                   /* the caller's handle + players using it */
    int16_t *pcm;
    size_t n;
} sound_t;

typedef struct player {
    uint32_t id;
    int active_idx;
    int is_tone;
    sound_t *snd;
    size_t pos;
    int loop;
    float gain;
    pbx_tone_t tone;
    double ph1, ph2, w1, w2, amp;
    int seg, seg_pos, total_pos;
    chan_t *tch;
    bridge_t *tbr;
    struct player *next;
    int16_t frame[MAX_TICK];
    int finished;
} player_t;

typedef struct recorder {
    /* engine-thread fields */
    uint32_t id;
    int active_idx;
    chan_t *sch;
    bridge_t *sbr;
    int stereo;
    uint32_t left[8];
    int n_left;
    /* shared with the writer thread: under e->wr_mu */
    uint8_t *ring;
    size_t cap, head, fill;
    size_t chunk;               /* the writer writes once this much is waiting */
    uint64_t overruns;
    int stopping;               /* engine detached; writer finishes the file */
    int failed;                 /* errno of the writer's failure */
    /* writer-thread fields */
    char *path;                 /* a posted create: the writer creates the file (then freed) */
    int fd;
    uint64_t data_bytes;
    int64_t last_sync_us;
    int sync_interval_ms;
    int channels;
    int closed;
    dev_t dev;                  /* filesystem, for one syncfs per filesystem */
    int sync_pending;           /* header rewritten, not yet durable */
    int final_header;           /* the header after the last data is written */
    int pending_err;            /* a write or sync failed: end the recording */
    struct recorder *wnext;
} recorder_t;

/* io_uring used as a batch sender (uring.c). */
typedef struct {
    int fd;
    int broken;
    void *sq_map, *cq_map, *sqes;
    size_t sq_len, cq_len, sqes_len;
    unsigned *sq_head, *sq_tail, *sq_array, *cq_head, *cq_tail;
    unsigned sq_mask, cq_mask, sq_entries;
    void *cqes;
    uint64_t enters;
} pbx_uring_t;

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} txaddr_t;

/* A command: on the caller's stack (synchronous) or heap-allocated with a copy of its
 * argument in data[] (posted: run and freed by the engine thread, failures reported as
 * PBX_EV_COMMAND_FAILED with id and op). */
typedef struct cmd {
    int (*fn)(struct pbx_engine *e, void *arg);
    void *arg;
    int rc;
    int done;
    struct cmd *next;
    int posted;
    uint32_t id;
    int op;
    int flags;
    _Alignas(max_align_t) unsigned char data[];
} cmd_t;

#define PBX__CMD_QUIET_NOTFOUND 1   /* a release of something already gone is no failure */

struct pbx_engine {
    pbx_engine_params_t p;
    char bind_ip[64];
    int tick_samples;
    int64_t tick_us;

    pthread_t thread;
    int thread_started;
    int epfd, timerfd, cmd_efd, ev_efd;
    int clock_on;               /* the timerfd is armed */
    int stop;

    /* commands (any thread) */
    pthread_mutex_t cmd_mu;
    pthread_cond_t cmd_cv;
    cmd_t *cmd_head, *cmd_tail;
    int accepting;

    /* events (engine thread -> any thread) */
    pthread_mutex_t ev_mu;
    pbx_event_t *evq;
    int ev_head, ev_len;

    /* ports (any thread) */
    pthread_mutex_t port_mu;
    uint8_t *port_used;
    int port_cursor;
    /* RTP/RTCP socket pairs on bind_ip that the engine thread binds ahead, so that creating a
     * channel costs the caller (the event loop) no system calls; under port_mu */
    struct spare_socks { int fd, rtcp_fd, port; } spare[SPARE_MAX];
    int n_spare, spare_target;

    table_t channels, bridges, players, recorders, sounds;
    chan_t **ach;
    int n_ach;
    bridge_t **abr;
    int n_abr;
    player_t **apl;
    int n_apl;
    recorder_t **arec;
    int n_arec;

    /* receive/send batches */
    struct mmsghdr rx_msgs[RX_BATCH];
    struct iovec rx_iov[RX_BATCH];
    struct sockaddr_storage rx_addr[RX_BATCH];
    uint8_t rx_buf[RX_BATCH][PKT_BUF];
    /* outgoing packets of this wake-up, sent together by pbx__tx_flush() */
    int txn;
    struct mmsghdr tx_msgs[TX_SLOTS];
    struct iovec tx_iov[TX_SLOTS];
    txaddr_t tx_addr[TX_SLOTS];
    int tx_fd[TX_SLOTS];
    struct chan *tx_ch[TX_SLOTS];
    int tx_res[TX_SLOTS];
    uint8_t (*tx_buf)[TX_PKT];
    pbx_uring_t ur;
    int16_t scratch[MAX_FRAME];
    int32_t acc[MAX_TICK];

    /* recording writer */
    pthread_mutex_t wr_mu;
    pthread_cond_t wr_cv;
    pthread_t wr_thread;
    int wr_started;
    int wr_quit;
    recorder_t *wr_list;

    pbx_kfwd_t kf;              /* kf.map_fd < 0: relayed in the engine only */

    pbx_engine_stats_t stats;
    int64_t now_us;
};

typedef struct pbx_engine engine_t;

/* engine.c */
int64_t pbx__now_us(void);
void pbx__post(engine_t *e, const pbx_event_t *ev);
void pbx__post_simple(engine_t *e, int type, uint32_t id, int code, int value);
uint32_t pbx__table_add(table_t *t, int type, void *obj);
uint32_t pbx__table_reserve(table_t *t, int type);
void pbx__table_set(table_t *t, uint32_t id, void *obj);
void pbx__table_unreserve(table_t *t, uint32_t id);
void *pbx__table_get(const table_t *t, int type, uint32_t id);
void pbx__table_del(table_t *t, uint32_t id);
void pbx__active_add(void ***arr, int *n, void *obj, int *idx);
void pbx__active_del(void **arr, int *n, int idx, size_t idx_offset);
int pbx__run_cmd(engine_t *e, int (*fn)(engine_t *, void *), void *arg);
/* Queue fn with a copy of arg[0..size) and return at once (same queue, same order as
 * pbx__run_cmd). PBX_ESTATE once the engine stops accepting commands. */
int pbx__post_cmd(engine_t *e, int (*fn)(engine_t *, void *), const void *arg, size_t size, uint32_t id, int op,
                  int flags);
void pbx__release_port(engine_t *e, int port);
int pbx__epoll_set(engine_t *e, int fd, int tag, uint32_t id, int on);

/* engine.c: the send queue. pbx__tx_slot() returns room for one packet of ch (flushing
 * first when the queue is full); pbx__tx_commit() queues it. Everything queued is sent by
 * pbx__tx_flush() before the engine sleeps and before any command runs. */
uint8_t *pbx__tx_slot(engine_t *e);
void pbx__tx_commit(engine_t *e, struct chan *ch, const paddr_t *dest, size_t len);
void pbx__tx_flush(engine_t *e);

/* uring.c */
int pbx__uring_init(pbx_uring_t *u, unsigned entries);
void pbx__uring_fini(pbx_uring_t *u);
/* Send msgs[i] on fds[i] (MSG_DONTWAIT); res[i] = bytes or -errno. -1: nothing sent. */
int pbx__uring_sendmsgs(pbx_uring_t *u, const int *fds, struct mmsghdr *msgs, int n, int *res);

/* channel.c */
void pbx__chan_rx_rtp(engine_t *e, chan_t *ch);
void pbx__chan_rx_rtcp(engine_t *e, chan_t *ch);
void pbx__chan_rx_pcm(engine_t *e, chan_t *ch);
void pbx__chan_tick_input(engine_t *e, chan_t *ch);
void pbx__chan_output(engine_t *e, chan_t *ch, const int16_t *pcm);
void pbx__chan_tick_dtmf(engine_t *e, chan_t *ch);
void pbx__chan_update_decoding(engine_t *e, chan_t *ch);
void pbx__chan_free(engine_t *e, chan_t *ch);
int pbx__chan_needs_local_output(const chan_t *ch);
void pbx__chan_dtmf_received(engine_t *e, chan_t *ch, char digit, int ms, int source);
void pbx__chan_queue_dtmf(chan_t *ch, char digit, int ms);
/* Take ch's received audio back from the kernel if it may no longer be forwarded there
 * (bridge, direction, DTMF, recording or destination changed). */
void pbx__chan_kf_check(engine_t *e, chan_t *ch);

/* bridge.c */
void pbx__bridge_update(engine_t *e, bridge_t *br);
void pbx__bridge_tick(engine_t *e, bridge_t *br);
void pbx__bridge_detach(engine_t *e, chan_t *ch);
void pbx__bridge_free_all(engine_t *e);

/* player.c */
void pbx__players_tick(engine_t *e);
void pbx__players_reap(engine_t *e);
void pbx__player_end(engine_t *e, player_t *p, int reason);
void pbx__players_free_all(engine_t *e);
void pbx__sounds_free_all(engine_t *e);

/* recorder.c */
void pbx__recorders_tick(engine_t *e);
void pbx__recorder_detach(engine_t *e, recorder_t *r);
void pbx__recorders_stop_all(engine_t *e);
void pbx__writer_shutdown(engine_t *e);

/* g711.c */
void pbx__g711_transcode(uint8_t *p, int n, int to_alaw);

/* wav.c */
void pbx__wav_header(uint8_t out[44], int channels, int rate, uint32_t data_bytes);

#endif
