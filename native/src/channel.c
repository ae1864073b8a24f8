/*
 * Channels: RTP endpoints and raw PCM file descriptors.
 *
 * Receive path (engine thread): recvmmsg a batch, parse, check the source (symmetric
 * RTP latching), then either forward at once to the relay partner with the header
 * rewritten in place (no copy, no decode) or decode into the jitter buffer for the
 * 20 ms clock. Send path: packets stamped from the channel's own SSRC/seq/ts space
 * so the far end sees one continuous stream whatever feeds it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include "engine_int.h"

#define DLE 0x10
#define EVRX_TIMEOUT_US 300000
#define PCM_TXBUF 8192

static const int16_t zeros[MAX_TICK];

static uint32_t rand32(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        static uint32_t x = 2463534242u;
        x ^= (uint32_t)pbx__now_us();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v = x;
    }
    return v;
}

/* ---- addresses ---- */

static int parse_addr(const char *ip, int port, paddr_t *a)
{
    memset(a, 0, sizeof(*a));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        a->len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        a->len = sizeof(*s6);
        return 0;
    }
    return -1;
}

static int ip_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return 0;
}

static int port_of(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)a)->sin_port);
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return 0;
}

static int addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return ip_eq(a, b) && port_of(a) == port_of(b);
}

static void addr_text(const struct sockaddr_storage *a, char *out, size_t n)
{
    out[0] = 0;
    if (a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, out, (socklen_t)n);
    else if (a->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, out, (socklen_t)n);
}

static int recv_allowed(const chan_t *ch)
{
    return ch->direction == PBX_DIR_SENDRECV || ch->direction == PBX_DIR_RECVONLY;
}

static int send_allowed(const chan_t *ch)
{
    return ch->have_dest && (ch->direction == PBX_DIR_SENDRECV || ch->direction == PBX_DIR_SENDONLY);
}

static chan_t *relay_partner(const chan_t *ch);
static void kf_sync(engine_t *e, chan_t *ch);

/* ch changed: the entries that forward ch's audio or forward to ch may no longer fit. */
static void kf_check_around(engine_t *e, chan_t *ch)
{
    if (e->kf.map_fd < 0)
        return;
    pbx__chan_kf_check(e, ch);
    if (ch->br)
        for (int i = 0; i < ch->br->n; i++)
            if (ch->br->m[i]->kf_to == ch)
                pbx__chan_kf_check(e, ch->br->m[i]);
}

/* ---- creation ---- */

static chan_t *chan_alloc(engine_t *e, int kind)
{
    chan_t *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->kind = kind;
    ch->e = e;
    ch->fd = ch->rtcp_fd = ch->pcm_fd = -1;
    ch->pt = 0;
    ch->te_pt = -1;
    ch->inband_cfg = -1;
    ch->direction = PBX_DIR_SENDRECV;
    pbx_jb_params_t jp;
    pbx_jb_params_default(&jp);
    jp.min_delay_ms = e->p.jb_min_delay_ms;
    jp.max_delay_ms = e->p.jb_max_delay_ms;
    jp.initial_delay_ms = e->p.jb_initial_delay_ms;
    jp.plc = 1;
    if (pbx_jb_create(&jp, &ch->jb) != PBX_OK || pbx_dtmf_det_create(&ch->det) != PBX_OK) {
        pbx_jb_destroy(ch->jb);
        free(ch);
        return NULL;
    }
    ch->os.ssrc = rand32();
    ch->os.next_seq = (uint16_t)rand32();
    ch->os.last_ts = rand32();
    return ch;
}

static void chan_release(engine_t *e, chan_t *ch)
{
    if (ch->fd >= 0) close(ch->fd);
    if (ch->rtcp_fd >= 0) close(ch->rtcp_fd);
    if (ch->pcm_fd >= 0) close(ch->pcm_fd);
    if (ch->kind == CH_RTP && ch->port)
        pbx__release_port(e, ch->port);
    pbx_jb_destroy(ch->jb);
    pbx_dtmf_det_destroy(ch->det);
    free(ch->tap_ring);
    free(ch->txbuf);
    free(ch);
}

static int bind_udp(const paddr_t *local, int port, int *fd_out)
{
    paddr_t a = *local;
    if (a.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a.ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons((uint16_t)port);
    int fd = socket(a.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PBX_EIO;
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
        int err = errno;
        close(fd);
        return err == EADDRINUSE ? PBX_EADDRINUSE : (err == EADDRNOTAVAIL ? PBX_EINVAL : PBX_EIO);
    }
    *fd_out = fd;
    return PBX_OK;
}

/* An RTP channel's bound sockets, made in the caller's thread (or taken from the spares). */
typedef struct {
    paddr_t local;
    int fd, rtcp_fd, port;
    int spare;
} socks_t;

/* Take the next free even port of the range (and port+1 for RTCP). Caller's thread. */
static int bind_pair(engine_t *e, socks_t *sk)
{
    int pairs = (e->p.rtp_port_max - e->p.rtp_port_min) / 2;
    int base = e->p.rtp_port_min + (e->p.rtp_port_min & 1);
    for (int tries = 0; tries < pairs; tries++) {
        pthread_mutex_lock(&e->port_mu);
        int k = e->port_cursor;
        e->port_cursor = (e->port_cursor + 1) % pairs;
        int taken = e->port_used[k];
        if (!taken)
            e->port_used[k] = 1;
        pthread_mutex_unlock(&e->port_mu);
        if (taken)
            continue;
        int port = base + 2 * k;
        if (port + 1 > e->p.rtp_port_max) {
            pbx__release_port(e, port);
            continue;
        }
        int fd, rfd;
        int rc = bind_udp(&sk->local, port, &fd);
        if (rc == PBX_OK) {
            rc = bind_udp(&sk->local, port + 1, &rfd);
            if (rc == PBX_OK) {
                sk->fd = fd;
                sk->rtcp_fd = rfd;
                sk->port = port;
                return PBX_OK;
            }
            close(fd);
        }
        pbx__release_port(e, port);
        if (rc != PBX_EADDRINUSE)
            return rc;
    }
    return PBX_ENOPORT;
}

typedef struct {
    chan_t *ch;
    uint32_t id;                /* reserved by a posted create, else 0 */
} add_arg_t;

static int cmd_add_channel(engine_t *e, void *arg)
{
    add_arg_t *a = arg;
    chan_t *ch = a->ch;
    uint32_t id = a->id;
    if (id)
        pbx__table_set(&e->channels, id, ch);
    else if (!(id = pbx__table_add(&e->channels, OBJ_CHANNEL, ch)))
        return PBX_EFULL;
    ch->id = id;
    int ok;
    if (ch->kind == CH_RTP)
        ok = pbx__epoll_set(e, ch->fd, TAG_RTP, id, 1) == 0 && pbx__epoll_set(e, ch->rtcp_fd, TAG_RTCP, id, 1) == 0;
    else
        ok = pbx__epoll_set(e, ch->pcm_fd, TAG_PCM, id, 1) == 0;
    if (!ok) {
        if (ch->kind == CH_RTP) {
            pbx__epoll_set(e, ch->fd, TAG_RTP, id, 0);
            pbx__epoll_set(e, ch->rtcp_fd, TAG_RTCP, id, 0);
        }
        pbx__table_del(&e->channels, id);
        return PBX_EIO;
    }
    pbx__active_add((void ***)&e->ach, &e->n_ach, ch, &ch->active_idx);
    ch->last_rx_us = e->now_us;
    pbx__chan_update_decoding(e, ch);
    a->id = id;
    return PBX_OK;
}

static int cmd_nop(engine_t *e, void *arg)
{
    (void)e;
    (void)arg;
    return PBX_OK;
}

static void socks_close(engine_t *e, const socks_t *sk)
{
    close(sk->fd);
    close(sk->rtcp_fd);
    pbx__release_port(e, sk->port);
}

/* Bind a pair now, in the caller's thread. */
static int socks_bind(engine_t *e, socks_t *sk)
{
    int rc = bind_pair(e, sk);
    if (rc != PBX_OK)
        return rc;
    int tos = IPTOS_DSCP_EF;
    if (sk->local.ss.ss_family == AF_INET)
        setsockopt(sk->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    int rcvbuf = 256 * 1024;
    setsockopt(sk->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    return PBX_OK;
}

static int on_bind_ip(engine_t *e, const char *local_ip)
{
    return !local_ip || strcmp(local_ip, e->bind_ip) == 0;
}

/* A pair the engine thread bound ahead, if there is one. */
static int spare_take(engine_t *e, socks_t *sk)
{
    pthread_mutex_lock(&e->port_mu);
    int ok = e->n_spare > 0;
    if (ok) {
        struct spare_socks *sp = &e->spare[--e->n_spare];
        sk->fd = sp->fd;
        sk->rtcp_fd = sp->rtcp_fd;
        sk->port = sp->port;
        sk->spare = 1;
    }
    pthread_mutex_unlock(&e->port_mu);
    return ok;
}

/* Engine thread, after it adopted a channel: bind pairs until the reserve is full again. */
static void spare_refill(engine_t *e)
{
    for (;;) {
        pthread_mutex_lock(&e->port_mu);
        int need = e->n_spare < e->spare_target;
        pthread_mutex_unlock(&e->port_mu);
        if (!need)
            return;
        socks_t sk;
        memset(&sk, 0, sizeof(sk));
        if (parse_addr(e->bind_ip, 0, &sk.local) < 0 || socks_bind(e, &sk) != PBX_OK)
            return;  /* no free port now: creating a channel binds (or fails) itself */
        pthread_mutex_lock(&e->port_mu);
        int kept = e->n_spare < e->spare_target;
        if (kept)
            e->spare[e->n_spare++] = (struct spare_socks){sk.fd, sk.rtcp_fd, sk.port};
        pthread_mutex_unlock(&e->port_mu);
        if (!kept)
            socks_close(e, &sk);
    }
}

/* Packets that reached a spare pair before it had a channel are nobody's media. */
static void spare_drain(int fd)
{
    char buf[64];
    for (int i = 0; i < 256 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0; i++)
        ;
}

static int socks_open(engine_t *e, const char *local_ip, socks_t *sk)
{
    memset(sk, 0, sizeof(*sk));
    if (parse_addr(local_ip ? local_ip : e->bind_ip, 0, &sk->local) < 0)
        return PBX_EINVAL;
    if (on_bind_ip(e, local_ip) && spare_take(e, sk))
        return PBX_OK;
    int rc = socks_bind(e, sk);
    if (rc == PBX_ENOPORT && pbx__run_cmd(e, cmd_nop, NULL) == PBX_OK)
        rc = socks_bind(e, sk);  /* ports of channels whose posted destroy had not run yet */
    return rc;
}

static chan_t *chan_from_socks(engine_t *e, const socks_t *sk)
{
    if (sk->spare) {
        spare_drain(sk->fd);
        spare_drain(sk->rtcp_fd);
    }
    chan_t *ch = chan_alloc(e, CH_RTP);
    if (!ch)
        return NULL;
    ch->local = sk->local;
    ch->fd = sk->fd;
    ch->rtcp_fd = sk->rtcp_fd;
    ch->port = sk->port;
    ch->st.local_port = sk->port;
    return ch;
}

typedef struct {
    socks_t sk;
    uint32_t id;
} adopt_arg_t;

/* Posted: the channel's memory (jitter buffer, detector) is allocated here, in the engine
 * thread; the sockets are the command's to close when it cannot be adopted. */
static int cmd_adopt_channel(engine_t *e, void *arg)
{
    adopt_arg_t *a = arg;
    chan_t *ch = chan_from_socks(e, &a->sk);
    if (!ch) {
        socks_close(e, &a->sk);
        pbx__table_unreserve(&e->channels, a->id);
        return PBX_ENOMEM;
    }
    add_arg_t add = {ch, a->id};
    int rc = cmd_add_channel(e, &add);
    if (rc != PBX_OK)
        chan_release(e, ch);
    spare_refill(e);
    return rc;
}

int pbx_rtp_channel_create(pbx_engine_t *e, const char *local_ip, uint32_t *id, int *port)
{
    if (!e || !id || !port)
        return PBX_EINVAL;
    socks_t sk;
    int rc = socks_open(e, local_ip, &sk);
    if (rc != PBX_OK)
        return rc;
    chan_t *ch = chan_from_socks(e, &sk);
    if (!ch) {
        socks_close(e, &sk);
        return PBX_ENOMEM;
    }
    add_arg_t a = {ch, 0};
    rc = pbx__run_cmd(e, cmd_add_channel, &a);
    if (rc != PBX_OK) {
        chan_release(e, ch);
        return rc;
    }
    *id = a.id;
    *port = sk.port;
    return PBX_OK;
}

int pbx_rtp_channel_create_nowait(pbx_engine_t *e, const char *local_ip, uint32_t *id, int *port)
{
    if (!e || !id || !port)
        return PBX_EINVAL;
    adopt_arg_t a;
    int rc = socks_open(e, local_ip, &a.sk);
    if (rc != PBX_OK)
        return rc;
    a.id = pbx__table_reserve(&e->channels, OBJ_CHANNEL);
    rc = a.id ? pbx__post_cmd(e, cmd_adopt_channel, &a, sizeof(a), a.id, PBX_OP_CHANNEL_CREATE, 0) : PBX_EFULL;
    if (rc != PBX_OK) {
        if (a.id)
            pbx__table_unreserve(&e->channels, a.id);
        socks_close(e, &a.sk);
        return rc;
    }
    *id = a.id;
    *port = a.sk.port;
    return PBX_OK;
}

int pbx_pcm_channel_create(pbx_engine_t *e, int fd, int format, int dle, int inband_dtmf, uint32_t *id)
{
    if (!e || !id || fd < 0 || format < PBX_PCM_S16LE || format > PBX_PCM_U8 || (dle && format == PBX_PCM_S16LE))
        return PBX_EINVAL;
    chan_t *ch = chan_alloc(e, CH_PCM);
    if (!ch)
        return PBX_ENOMEM;
    ch->pcm_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ch->txbuf = malloc(PCM_TXBUF);
    if (ch->pcm_fd < 0 || !ch->txbuf) {
        int rc = ch->pcm_fd < 0 ? (errno == EBADF ? PBX_EINVAL : PBX_EIO) : PBX_ENOMEM;
        chan_release(e, ch);
        return rc;
    }
    int fl = fcntl(ch->pcm_fd, F_GETFL);
    if (fl < 0 || fcntl(ch->pcm_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        chan_release(e, ch);
        return PBX_EIO;
    }
    ch->tx_cap = PCM_TXBUF;
    ch->pcm_format = format;
    ch->dle = dle ? 1 : 0;
    ch->inband_cfg = inband_dtmf ? 1 : 0;
    ch->det_on = inband_dtmf ? 1 : 0;
    ch->configured = 1;
    add_arg_t a = {ch, 0};
    int rc = pbx__run_cmd(e, cmd_add_channel, &a);
    if (rc != PBX_OK) {
        chan_release(e, ch);
        return rc;
    }
    *id = a.id;
    return PBX_OK;
}

/* ---- configuration ---- */

void pbx_rtp_config_default(pbx_rtp_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->remote_ip = NULL;
    c->signalling_ip = NULL;
    c->payload_type = 0;
    c->telephone_event_pt = -1;
    c->direction = PBX_DIR_SENDRECV;
    c->inactivity_timeout_ms = 0;
    c->inband_dtmf = -1;
}

typedef struct {
    uint32_t id;
    pbx_rtp_config_t c;
    paddr_t sdp, sig;
    int have_sdp, have_sig;
} conf_arg_t;

static int cmd_configure(engine_t *e, void *arg)
{
    conf_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    if (ch->kind != CH_RTP)
        return PBX_EINVAL;
    if ((a->have_sdp && a->sdp.ss.ss_family != ch->local.ss.ss_family) ||
        (a->have_sig && a->sig.ss.ss_family != ch->local.ss.ss_family))
        return PBX_EINVAL;
    if (a->have_sdp != ch->have_sdp || (a->have_sdp && !addr_eq(&a->sdp.ss, &ch->sdp.ss))) {
        ch->sdp = a->sdp;
        ch->have_sdp = a->have_sdp;
        ch->dest = a->sdp;
        ch->have_dest = a->have_sdp;
        ch->cand_count = 0;
    }
    ch->sig = a->have_sig ? a->sig : a->sdp;
    ch->have_sig = a->have_sig || a->have_sdp;
    int was_recv = recv_allowed(ch);
    ch->pt = a->c.payload_type;
    ch->te_pt = a->c.telephone_event_pt;
    ch->direction = a->c.direction;
    ch->timeout_ms = a->c.inactivity_timeout_ms;
    ch->inband_cfg = a->c.inband_dtmf;
    ch->det_on = ch->inband_cfg == 1 || (ch->inband_cfg == -1 && ch->te_pt < 0);
    if (!ch->configured || (!was_recv && recv_allowed(ch))) {
        ch->last_rx_us = e->now_us;
        ch->timed_out = 0;
    }
    ch->configured = 1;
    if (ch->br)
        pbx__bridge_update(e, ch->br);
    else
        pbx__chan_update_decoding(e, ch);
    return PBX_OK;
}

static int configure_arg(const pbx_rtp_config_t *c, uint32_t id, conf_arg_t *a)
{
    if (!c)
        return PBX_EINVAL;
    if (c->payload_type != 0 && c->payload_type != 8)
        return PBX_EINVAL;
    if (c->telephone_event_pt != -1 && (c->telephone_event_pt < 96 || c->telephone_event_pt > 127))
        return PBX_EINVAL;
    if (c->direction < PBX_DIR_SENDRECV || c->direction > PBX_DIR_INACTIVE)
        return PBX_EINVAL;
    if (c->inactivity_timeout_ms < 0 || c->inband_dtmf < -1 || c->inband_dtmf > 1)
        return PBX_EINVAL;
    memset(a, 0, sizeof(*a));
    a->id = id;
    a->c = *c;
    /* the strings are parsed here: the posted copy must not point into the caller's memory */
    a->c.remote_ip = a->c.signalling_ip = NULL;
    if (c->remote_ip) {
        if (c->remote_port < 1 || c->remote_port > 65535 || parse_addr(c->remote_ip, c->remote_port, &a->sdp) < 0)
            return PBX_EINVAL;
        a->have_sdp = 1;
    }
    if (c->signalling_ip) {
        if (parse_addr(c->signalling_ip, 0, &a->sig) < 0)
            return PBX_EINVAL;
        a->have_sig = 1;
    }
    return PBX_OK;
}

int pbx_rtp_channel_configure(pbx_engine_t *e, uint32_t id, const pbx_rtp_config_t *c)
{
    conf_arg_t a;
    if (!e || configure_arg(c, id, &a) != PBX_OK)
        return PBX_EINVAL;
    return pbx__run_cmd(e, cmd_configure, &a);
}

int pbx_rtp_channel_configure_nowait(pbx_engine_t *e, uint32_t id, const pbx_rtp_config_t *c)
{
    conf_arg_t a;
    if (!e || configure_arg(c, id, &a) != PBX_OK)
        return PBX_EINVAL;
    return pbx__post_cmd(e, cmd_configure, &a, sizeof(a), id, PBX_OP_CHANNEL_CONFIGURE, 0);
}

/* ---- topology helpers ---- */

void pbx__chan_update_decoding(engine_t *e, chan_t *ch)
{
    int tapped = ch->n_taps > 0;
    int relay = ch->br && ch->br->relay;
    if (ch->br) {
        /* a recorder on either member of a relay needs both directions decoded */
        tapped |= ch->br->n_taps > 0;
        for (int i = 0; i < ch->br->n && !tapped; i++)
            tapped |= ch->br->m[i]->n_taps > 0;
    }
    int need = ch->kind == CH_PCM || (ch->br && !relay) || (tapped && !relay) || ch->det_on;
    /* A recorded relay only needs the audio for the file: the tap, not the jitter buffer. */
    int tap = tapped && relay && !need;
    if (tap && !ch->tap_ring) {
        ch->tap_ring = malloc(PBX_TAP_RING * sizeof(*ch->tap_ring));
        if (!ch->tap_ring)
            need = 1, tap = 0;
    }
    if (tap && !ch->tapping)
        pbx_tap_init(&ch->tap, ch->tap_ring);
    ch->tapping = tap;
    if (need && !ch->decoding) {
        pbx_jb_reset(ch->jb);
        pbx_dtmf_det_reset(ch->det);
    }
    ch->decoding = need;
    kf_check_around(e, ch);
}

int pbx__chan_needs_local_output(const chan_t *ch)
{
    if (ch->kind == CH_PCM)
        return !ch->dead;
    return ch->has_play || ch->dtx.active == 2;
}

void pbx__chan_free(engine_t *e, chan_t *ch)
{
    if (ch->br)
        pbx__bridge_detach(e, ch);
    while (ch->players)
        pbx__player_end(e, ch->players, PBX_PLAYER_TARGET_GONE);
    for (int i = e->n_arec - 1; i >= 0; i--) {
        recorder_t *r = e->arec[i];
        if (r->sch == ch)
            pbx__recorder_detach(e, r);
    }
    if (ch->kind == CH_RTP) {
        pbx__epoll_set(e, ch->fd, TAG_RTP, ch->id, 0);
        pbx__epoll_set(e, ch->rtcp_fd, TAG_RTCP, ch->id, 0);
    } else if (!ch->dead) {
        pbx__epoll_set(e, ch->pcm_fd, TAG_PCM, ch->id, 0);
    }
    pbx__table_del(&e->channels, ch->id);
    pbx__active_del((void **)e->ach, &e->n_ach, ch->active_idx, offsetof(chan_t, active_idx));
    chan_release(e, ch);
}

static int cmd_destroy(engine_t *e, void *arg)
{
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, *(uint32_t *)arg);
    if (!ch)
        return PBX_ENOTFOUND;
    pbx__chan_free(e, ch);
    return PBX_OK;
}

int pbx_channel_destroy(pbx_engine_t *e, uint32_t id)
{
    return pbx__run_cmd(e, cmd_destroy, &id);
}

int pbx_channel_destroy_nowait(pbx_engine_t *e, uint32_t id)
{
    return pbx__post_cmd(e, cmd_destroy, &id, sizeof(id), id, PBX_OP_CHANNEL_DESTROY, PBX__CMD_QUIET_NOTFOUND);
}

/* ---- output stamping ---- */

/* Sequence number and timestamp for a packet of locally produced audio/events. */
static void local_stamp(engine_t *e, chan_t *ch, uint16_t *seq, uint32_t *ts, int *marker)
{
    outstate_t *os = &ch->os;
    int64_t now = e->now_us;
    if (!os->started) {
        os->started = 1;
        os->last_ts_us = now;
        *marker = 1;
        *ts = os->last_ts;
    } else {
        int64_t el = now - os->last_ts_us;
        if (os->src == NULL && el < e->tick_us + e->tick_us / 2 && el >= 0) {
            *ts = os->last_ts + (uint32_t)e->tick_samples;
            *marker = os->marker;
        } else {
            int64_t ticks = (el + e->tick_us / 2) / e->tick_us;
            if (ticks < 1)
                ticks = 1;
            *ts = os->last_ts + (uint32_t)(ticks * e->tick_samples);
            *marker = 1;
        }
    }
    os->marker = 0;
    os->src = NULL;
    os->last_ts = *ts;
    os->last_ts_us = now;
    *seq = os->next_seq++;
}

/* ---- DTMF ---- */

static const char dtmf_chars[] = "0123456789*#ABCD";

static int dtmf_event_code(char d)
{
    const char *p = strchr(dtmf_chars, d);
    return (p && d) ? (int)(p - dtmf_chars) : -1;
}

static void dtmf_freqs(char d, double *f1, double *f2)
{
    static const double rows[4] = {697, 770, 852, 941}, cols[4] = {1209, 1336, 1477, 1633};
    static const char keys[] = "123A456B789C*0#D";
    const char *p = strchr(keys, d);
    int k = p ? (int)(p - keys) : 0;
    *f1 = rows[k / 4];
    *f2 = cols[k % 4];
}

void pbx__chan_queue_dtmf(chan_t *ch, char digit, int ms)
{
    if (ch->dq_len >= DTMF_QUEUE)
        return;
    ch->dq[(ch->dq_head + ch->dq_len) % DTMF_QUEUE] = (dtmf_req_t){digit, ms};
    ch->dq_len++;
    kf_check_around(ch->e, ch);
}

void pbx__chan_dtmf_received(engine_t *e, chan_t *ch, char digit, int ms, int source)
{
    pbx_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = PBX_EV_DTMF;
    ev.id = ch->id;
    ev.code = digit;
    ev.value = ms;
    ev.source = source;
    pbx__post(e, &ev);
    ch->st.dtmf_in++;
    /* Pass RFC 4733 digits on to the other members unless the relay already forwarded them;
     * in-band digits travel inside the audio. */
    bridge_t *br = ch->br;
    if (!br || source != PBX_DTMF_RFC4733 || ch->mode != PBX_MEMBER_FULL)
        return;
    for (int i = 0; i < br->n; i++) {
        chan_t *o = br->m[i];
        if (o == ch || o->mode == PBX_MEMBER_LISTEN)
            continue;
        if (br->relay && o->te_pt >= 0)
            continue;
        pbx__chan_queue_dtmf(o, digit, ms < 40 ? 40 : ms);
    }
}

static void evrx_finish(engine_t *e, chan_t *ch)
{
    ch->evrx.active = 0;
    ch->evrx.done_valid = 1;
    ch->evrx.done_ts = ch->evrx.ts;
    if (ch->evrx.event >= 0 && ch->evrx.event <= 15)
        pbx__chan_dtmf_received(e, ch, dtmf_chars[ch->evrx.event], ch->evrx.duration / 8, PBX_DTMF_RFC4733);
}

/* RFC 4733 section 2.5.2: one event per timestamp; the E bit ends it; retransmitted
 * end packets carry the same timestamp and are ignored. */
static void rx_event(engine_t *e, chan_t *ch, const pbx_rtp_header_t *h, const uint8_t *pl)
{
    if (h->payload_len < 4)
        return;
    int event = pl[0], end = pl[1] & 0x80, dur = (pl[2] << 8) | pl[3];
    if (ch->evrx.done_valid && h->ts == ch->evrx.done_ts)
        return;
    if (!ch->evrx.active || h->ts != ch->evrx.ts) {
        if (ch->evrx.active)
            evrx_finish(e, ch);
        ch->evrx.active = 1;
        ch->evrx.ts = h->ts;
        ch->evrx.event = event;
        ch->evrx.duration = dur;
    } else if (dur > ch->evrx.duration) {
        ch->evrx.duration = dur;
    }
    ch->evrx.last_us = e->now_us;
    if (end)
        evrx_finish(e, ch);
}

static void send_event_packet(engine_t *e, chan_t *ch, int marker, int end, int duration)
{
    uint8_t *b = pbx__tx_slot(e);
    uint16_t seq = ch->os.next_seq++;
    pbx_rtp_write_header(b, marker, ch->te_pt, seq, ch->dtx.ts, ch->os.ssrc);
    b[12] = (uint8_t)dtmf_event_code(ch->dtx.digit);
    b[13] = (uint8_t)((end ? 0x80 : 0) | 10);
    b[14] = (uint8_t)(duration >> 8);
    b[15] = (uint8_t)duration;
    pbx__tx_commit(e, ch, &ch->dest, 16);
}

/* Start/continue/end the digit being sent, once per tick, after the audio of the tick. */
void pbx__chan_tick_dtmf(engine_t *e, chan_t *ch)
{
    int ts = e->tick_samples;
    if (ch->dtx.active == 3) {
        if (--ch->dtx.gap_left <= 0)
            ch->dtx.active = 0;
        return;
    }
    if (ch->dtx.active == 1) {
        if (ch->dtx.end_left == 3 && ch->dtx.elapsed + ts < ch->dtx.total) {
            ch->dtx.elapsed += ts;
            if (send_allowed(ch))
                send_event_packet(e, ch, 0, 0, ch->dtx.elapsed);
            return;
        }
        int dur = ch->dtx.total > 0xFFFF ? 0xFFFF : ch->dtx.total;
        if (send_allowed(ch))
            send_event_packet(e, ch, 0, 1, dur);
        if (--ch->dtx.end_left == 0) {
            ch->dtx.active = 3;
            ch->dtx.gap_left = 2;
            ch->st.dtmf_out++;
        }
        return;
    }
    if (ch->dtx.active == 2 || ch->dq_len == 0)
        return;
    dtmf_req_t r = ch->dq[ch->dq_head];
    ch->dq_head = (ch->dq_head + 1) % DTMF_QUEUE;
    ch->dq_len--;
    ch->dtx.digit = r.digit;
    ch->dtx.total = r.ms * 8;
    ch->dtx.elapsed = 0;
    if (ch->kind == CH_RTP && ch->te_pt >= 0) {
        uint16_t seq;
        uint32_t t;
        int marker;
        local_stamp(e, ch, &seq, &t, &marker);
        ch->os.next_seq--; /* the event packet below takes this sequence number */
        ch->dtx.ts = t;
        ch->dtx.active = 1;
        ch->dtx.end_left = 3;
        ch->dtx.elapsed = ts;
        if (send_allowed(ch))
            send_event_packet(e, ch, 1, 0, ts);
        else
            ch->os.next_seq++;
    } else {
        double f1, f2;
        dtmf_freqs(r.digit, &f1, &f2);
        ch->dtx.w1 = 2 * M_PI * f1 / 8000.0;
        ch->dtx.w2 = 2 * M_PI * f2 / 8000.0;
        ch->dtx.ph1 = ch->dtx.ph2 = 0;
        ch->dtx.active = 2;
        if (ch->br)
            pbx__bridge_update(e, ch->br);
    }
}

typedef struct {
    uint32_t id;
    char digit;
    int ms;
} dtmf_arg_t;

static int cmd_send_dtmf(engine_t *e, void *arg)
{
    dtmf_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    if (ch->dq_len >= DTMF_QUEUE)
        return PBX_EFULL;
    pbx__chan_queue_dtmf(ch, a->digit, a->ms);
    return PBX_OK;
}

int pbx_channel_send_dtmf(pbx_engine_t *e, uint32_t id, char digit, int duration_ms)
{
    if (dtmf_event_code(digit) < 0 || duration_ms < 40 || duration_ms > 5000)
        return PBX_EINVAL;
    dtmf_arg_t a = {id, digit, duration_ms};
    return pbx__run_cmd(e, cmd_send_dtmf, &a);
}

typedef struct {
    uint32_t id;
    int on;
} onoff_arg_t;

static int cmd_inband(engine_t *e, void *arg)
{
    onoff_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    ch->inband_cfg = a->on ? 1 : 0;
    ch->det_on = a->on ? 1 : 0;
    if (ch->br)
        pbx__bridge_update(e, ch->br);
    else
        pbx__chan_update_decoding(e, ch);
    return PBX_OK;
}

int pbx_channel_set_inband_dtmf(pbx_engine_t *e, uint32_t id, int on)
{
    onoff_arg_t a = {id, on};
    return pbx__run_cmd(e, cmd_inband, &a);
}

typedef struct {
    uint32_t id;
    uint8_t code;
} dle_arg_t;

static void pcm_flush(engine_t *e, chan_t *ch);

static int cmd_send_dle(engine_t *e, void *arg)
{
    dle_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    if (ch->kind != CH_PCM || !ch->dle)
        return PBX_EINVAL;
    if (ch->dead)
        return PBX_ESTATE;
    if (ch->tx_len + 2 > ch->tx_cap)
        return PBX_EFULL;
    ch->txbuf[ch->tx_len++] = DLE;
    ch->txbuf[ch->tx_len++] = a->code;
    pcm_flush(e, ch);
    return PBX_OK;
}

int pbx_pcm_channel_send_dle(pbx_engine_t *e, uint32_t id, uint8_t code)
{
    if (code == DLE)
        return PBX_EINVAL;
    dle_arg_t a = {id, code};
    return pbx__run_cmd(e, cmd_send_dle, &a);
}

/* ---- statistics ---- */

typedef struct {
    uint32_t id;
    pbx_channel_stats_t *st;
} stats_arg_t;

static int cmd_stats(engine_t *e, void *arg)
{
    stats_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    if (e->kf.map_fd >= 0) {
        kf_sync(e, ch);
        if (ch->br)
            for (int i = 0; i < ch->br->n; i++)
                if (ch->br->m[i]->kf_to == ch)
                    kf_sync(e, ch->br->m[i]);
    }
    *a->st = ch->st;
    a->st->kernel_relay = ch->kf_on;
    a->st->bridged = ch->br != NULL;
    a->st->relaying = ch->br != NULL && ch->br->relay;
    a->st->decoding = ch->decoding;
    a->st->local_port = ch->port;
    if (ch->have_dest) {
        addr_text(&ch->dest.ss, a->st->remote_addr, sizeof(a->st->remote_addr));
        a->st->remote_port = port_of(&ch->dest.ss);
    }
    return PBX_OK;
}

int pbx_channel_get_stats(pbx_engine_t *e, uint32_t id, pbx_channel_stats_t *st)
{
    if (!st)
        return PBX_EINVAL;
    memset(st, 0, sizeof(*st));
    stats_arg_t a = {id, st};
    return pbx__run_cmd(e, cmd_stats, &a);
}

typedef struct {
    uint32_t id;
    pbx_jb_stats_t *st;
} jbstats_arg_t;

static int cmd_jb_stats(engine_t *e, void *arg)
{
    jbstats_arg_t *a = arg;
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->id);
    if (!ch)
        return PBX_ENOTFOUND;
    pbx_jb_get_stats(ch->jb, a->st);
    return PBX_OK;
}

int pbx_channel_get_jb_stats(pbx_engine_t *e, uint32_t id, pbx_jb_stats_t *st)
{
    if (!st)
        return PBX_EINVAL;
    memset(st, 0, sizeof(*st));
    jbstats_arg_t a = {id, st};
    return pbx__run_cmd(e, cmd_jb_stats, &a);
}

/* ---- receive ---- */

static void post_latched(engine_t *e, chan_t *ch)
{
    pbx_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = PBX_EV_RTP_LATCHED;
    ev.id = ch->id;
    addr_text(&ch->dest.ss, ev.addr, sizeof(ev.addr));
    ev.port = port_of(&ch->dest.ss);
    pbx__post(e, &ev);
    ch->st.source_changes++;
    kf_check_around(e, ch);
}

/*
 * Symmetric RTP without RTP Bleed: the SDP address is trusted at once; any other source
 * must come from the signalling peer's IP and send latch_packets packets in sequence
 * (same port, same SSRC, seq + 1 each) before we send to it.
 */
static int accept_source(engine_t *e, chan_t *ch, const struct sockaddr_storage *from, const pbx_rtp_header_t *h)
{
    if (ch->have_dest && addr_eq(from, &ch->dest.ss))
        return 1;
    if (ch->have_sdp && addr_eq(from, &ch->sdp.ss)) {
        ch->dest = ch->sdp;
        ch->have_dest = 1;
        ch->cand_count = 0;
        post_latched(e, ch);
        return 1;
    }
    if (!ch->have_sig || !ip_eq(from, &ch->sig.ss))
        return 0;
    if (ch->cand_count > 0 && addr_eq(from, &ch->cand.ss) && h->ssrc == ch->cand_ssrc &&
        h->seq == (uint16_t)(ch->cand_seq + 1)) {
        ch->cand_count++;
    } else {
        memcpy(&ch->cand.ss, from, sizeof(*from));
        ch->cand.len = from->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        ch->cand_ssrc = h->ssrc;
        ch->cand_count = 1;
    }
    ch->cand_seq = h->seq;
    if (ch->cand_count < e->p.latch_packets)
        return 0;
    ch->dest = ch->cand;
    ch->have_dest = 1;
    ch->cand_count = 0;
    post_latched(e, ch);
    return 1;
}

static chan_t *relay_partner(const chan_t *ch)
{
    const bridge_t *br = ch->br;
    if (!br || !br->relay || br->n != 2)
        return NULL;
    return br->m[0] == ch ? br->m[1] : br->m[0];
}

/* ---- in-kernel relay (kfwd.h) ---- */

#define KF_SYNC_TICKS 50        /* counters read back about once a second */

/* The entry that would forward ch's audio to to now, without the route (0: none may). */
static int kf_want(const engine_t *e, const chan_t *ch, const chan_t *to, pbx_kfwd_val_t *v)
{
    if (e->kf.map_fd < 0 || !to || ch->kind != CH_RTP || to->kind != CH_RTP || ch->decoding || ch->tapping ||
        ch->det_on || !recv_allowed(ch) || !send_allowed(to) || to->dtx.active || to->dq_len ||
        (to->pt != 0 && to->pt != 8) || ch->pt != to->pt || !ch->have_dest || ch->dest.ss.ss_family != AF_INET ||
        to->dest.ss.ss_family != AF_INET || ch->local.ss.ss_family != AF_INET || !to->os.started ||
        to->os.src != ch)
        return 0;
    const struct sockaddr_in *src = (const void *)&ch->dest.ss, *dst = (const void *)&to->dest.ss,
                             *mine = (const void *)&ch->local.ss;
    memset(v, 0, sizeof(*v));
    v->src_ip = src->sin_addr.s_addr;
    v->src_port = src->sin_port;
    v->local_ip = mine->sin_addr.s_addr;
    v->in_ssrc = htonl(to->os.src_ssrc);
    v->pt = (uint8_t)to->pt;
    v->out_daddr = dst->sin_addr.s_addr;
    v->out_sport = htons((uint16_t)to->port);
    v->out_dport = dst->sin_port;
    v->out_ssrc = htonl(to->os.ssrc);
    v->ts_off = to->os.ts_off;
    v->seq_off = to->os.seq_off;
    v->win_limit = (uint32_t)(e->p.flood_packets_per_tick * 20 / e->p.ptime_ms);
    return 1;
}

static int kf_same(const pbx_kfwd_val_t *a, const pbx_kfwd_val_t *b)
{
    return a->src_ip == b->src_ip && a->src_port == b->src_port && a->local_ip == b->local_ip &&
           a->in_ssrc == b->in_ssrc && a->pt == b->pt && a->out_daddr == b->out_daddr &&
           a->out_sport == b->out_sport && a->out_dport == b->out_dport && a->out_ssrc == b->out_ssrc &&
           a->ts_off == b->ts_off && a->seq_off == b->seq_off;
}

/* Bring the entry's counters into the channels: what ch received, what its partner was sent,
 * the partner's output numbering, and ch's last packet time for the inactivity timer. */
static void kf_account(engine_t *e, chan_t *ch, const pbx_kfwd_val_t *v)
{
    uint64_t dp = v->packets - ch->kf_packets, db = v->bytes - ch->kf_bytes;
    if (dp == 0)
        return;
    ch->kf_packets = v->packets;
    ch->kf_bytes = v->bytes;
    ch->st.packets_in += dp;
    ch->st.bytes_in += db;
    e->stats.packets_kernel += dp;
    int64_t last_us = (int64_t)(v->last_ns / 1000);
    if (last_us > ch->last_rx_us)
        ch->last_rx_us = last_us;
    if (ch->timed_out) {
        ch->timed_out = 0;
        pbx__post_simple(e, PBX_EV_RTP_RESUMED, ch->id, 0, 0);
    }
    chan_t *to = ch->kf_to;
    to->st.packets_out += dp;
    to->st.bytes_out += db;
    /* even when the bridge has just reset the partner's source (relay -> mix) */
    outstate_t *os = &to->os;
    if (!SEQ_LT(v->last_seq, os->next_seq))
        os->next_seq = (uint16_t)(v->last_seq + 1);
    if ((int32_t)(v->last_ts - os->last_ts) > 0) {
        os->last_ts = v->last_ts;
        os->last_ts_us = last_us;
    }
}

/* Read ch's entry and bring its counters in (0), or -1. */
static int kf_read(engine_t *e, chan_t *ch, pbx_kfwd_val_t *v)
{
    if (!ch->kf_on || pbx__kfwd_get(&e->kf, (uint16_t)ch->port, v) < 0)
        return -1;
    kf_account(e, ch, v);
    return 0;
}

static void kf_sync(engine_t *e, chan_t *ch)
{
    pbx_kfwd_val_t v;
    kf_read(e, ch, &v);
}

static void kf_remove(engine_t *e, chan_t *ch)
{
    pbx_kfwd_val_t v;
    if (pbx__kfwd_take(&e->kf, (uint16_t)ch->port, &v) == 0)
        kf_account(e, ch, &v);
    ch->kf_on = 0;
    ch->kf_to = NULL;
}

static void kf_install(engine_t *e, chan_t *ch, chan_t *to, pbx_kfwd_val_t *v)
{
    uint32_t saddr, ifindex;
    int local;
    const struct sockaddr_in *out = (const void *)&to->local.ss;
    if (e->now_us < ch->kf_retry_us)
        return;
    if (pbx__kfwd_route(v->out_daddr, v->out_dport, &saddr, &ifindex, &local) < 0) {
        ch->kf_retry_us = e->now_us + 2000000;
        return;
    }
    v->out_saddr = out->sin_addr.s_addr != htonl(INADDR_ANY) ? out->sin_addr.s_addr : saddr;
    v->out_ifindex = ifindex;
    v->flags = local ? KFWD_LOCAL : 0;
    if (pbx__kfwd_put(&e->kf, (uint16_t)ch->port, v) < 0) {
        ch->kf_retry_us = e->now_us + 2000000;
        return;
    }
    ch->kf_on = 1;
    ch->kf_to = to;
    ch->kf_packets = ch->kf_bytes = 0;
}

/* After the engine relayed a packet of ch itself: hand the stream to the kernel, or take it
 * back when what the entry does is no longer what the engine would do. */
static void kf_update(engine_t *e, chan_t *ch, chan_t *to)
{
    pbx_kfwd_val_t want, have;
    int ok = kf_want(e, ch, to, &want);
    if (ch->kf_on) {
        if (ok && ch->kf_to == to && kf_read(e, ch, &have) == 0 && kf_same(&want, &have))
            return;
        kf_remove(e, ch);
    }
    if (ok)
        kf_install(e, ch, to, &want);
}

void pbx__chan_kf_check(engine_t *e, chan_t *ch)
{
    if (!ch->kf_on)
        return;
    pbx_kfwd_val_t want, have;
    chan_t *to = relay_partner(ch);
    if (to == ch->kf_to && kf_want(e, ch, to, &want) && kf_read(e, ch, &have) == 0 && kf_same(&want, &have))
        return;
    kf_remove(e, ch);
}

/* Queue the packet for to with our header (SSRC, sequence and timestamp spaces). */
static void forward(engine_t *e, chan_t *from, chan_t *to, uint8_t *pkt, const pbx_rtp_header_t *h,
                    int is_event)
{
    outstate_t *os = &to->os;
    if (!send_allowed(to) || to->dtx.active == 1 || to->dtx.active == 2)
        return;
    int out_pt;
    uint8_t *pl = pkt + h->payload_offset;
    if (h->payload_len > TX_PKT - 12)
        return;     /* only an event packet can be this long: far beyond any RFC 4733 block list */
    if (is_event) {
        if (to->te_pt < 0)
            return;
        out_pt = to->te_pt;
    } else {
        out_pt = to->pt;
        if (out_pt != h->payload_type)
            pbx__g711_transcode(pl, h->payload_len, out_pt == 8);
    }
    if (!os->started || os->src != from || os->src_ssrc != h->ssrc) {
        uint32_t expect = os->last_ts;
        if (os->started) {
            int64_t el = e->now_us - os->last_ts_us;
            if (el < 0)
                el = 0;
            expect += (uint32_t)(el / 125) + (uint32_t)e->tick_samples;
        }
        os->started = 1;
        os->src = from;
        os->src_ssrc = h->ssrc;
        os->seq_off = (uint16_t)(os->next_seq - h->seq);
        os->ts_off = expect - h->ts;
        os->marker = 1;
    }
    uint16_t seq = (uint16_t)(h->seq + os->seq_off);
    uint32_t ts = h->ts + os->ts_off;
    if (!SEQ_LT(seq, os->next_seq))
        os->next_seq = (uint16_t)(seq + 1);
    if (!is_event && (int32_t)(ts - os->last_ts) > 0) {
        os->last_ts = ts;
        os->last_ts_us = e->now_us;
    }
    int marker = h->marker || os->marker;
    os->marker = 0;
    uint8_t *out = pbx__tx_slot(e);
    pbx_rtp_write_header(out, marker, out_pt, seq, ts, os->ssrc);
    memcpy(out + 12, pl, h->payload_len);
    pbx__tx_commit(e, to, &to->dest, 12 + (size_t)h->payload_len);
}

static void rx_one(engine_t *e, chan_t *ch, uint8_t *pkt, size_t len, const struct sockaddr_storage *from,
                   chan_t *partner)
{
    pbx_rtp_header_t h;
    int v = pbx_rtp_parse(pkt, len, &h);
    if (v == PBX_RTP_RTCP) {
        ch->st.rtcp_in++;
        return;
    }
    if (v != PBX_RTP_GOOD) {
        ch->st.dropped_malformed++;
        return;
    }
    if (!accept_source(e, ch, from, &h)) {
        ch->st.dropped_source++;
        return;
    }
    if (ch->timed_out) {
        ch->timed_out = 0;
        pbx__post_simple(e, PBX_EV_RTP_RESUMED, ch->id, 0, 0);
    }
    ch->last_rx_us = e->now_us;
    if (!recv_allowed(ch)) {
        ch->st.dropped_direction++;
        return;
    }
    int pt = h.payload_type;
    const uint8_t *pl = pkt + h.payload_offset;
    if (pt == 0 || pt == 8) {
        if (h.payload_len == 0 || h.payload_len > MAX_FRAME) {
            ch->st.dropped_malformed++;
            return;
        }
        ch->st.packets_in++;
        ch->st.bytes_in += len;
        if (ch->decoding) {
            if (ch->have_rx_ssrc && h.ssrc != ch->rx_ssrc)
                pbx_jb_resync(ch->jb);
            ch->rx_ssrc = h.ssrc;
            ch->have_rx_ssrc = 1;
            if (pt == 0)
                pbx_ulaw_decode(pl, e->scratch, h.payload_len);
            else
                pbx_alaw_decode(pl, e->scratch, h.payload_len);
            pbx_jb_put(ch->jb, h.seq, h.ts, e->scratch, h.payload_len, e->now_us);
        } else if (ch->tapping) {
            if (pt == 0)
                pbx_ulaw_decode(pl, e->scratch, h.payload_len);
            else
                pbx_alaw_decode(pl, e->scratch, h.payload_len);
            pbx_tap_put(&ch->tap, h.ssrc, h.ts, e->scratch, h.payload_len);
        }
        if (partner) {
            forward(e, ch, partner, pkt, &h, 0);
            if (e->kf.map_fd >= 0 && (pt == partner->pt || ch->kf_on))
                kf_update(e, ch, partner);
        }
    } else if (ch->te_pt >= 0 && pt == ch->te_pt) {
        ch->st.packets_in++;
        ch->st.bytes_in += len;
        rx_event(e, ch, &h, pl);
        if (partner)
            forward(e, ch, partner, pkt, &h, 1);
    } else {
        ch->st.dropped_unknown_pt++;
    }
}

void pbx__chan_rx_rtp(engine_t *e, chan_t *ch)
{
    /* Normally one packet waits per wake-up (50/s per leg): a plain recvmsg. When several
     * arrive within a tick (backlog after a stall, 10 ms ptime, a flood) read in batches. */
    int batch = ch->tick_pkts >= 3;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < RX_BATCH; i++)
            e->rx_msgs[i].msg_hdr.msg_namelen = sizeof(e->rx_addr[i]);
        int n;
        if (batch) {
            n = recvmmsg(ch->fd, e->rx_msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        } else {
            ssize_t r = recvmsg(ch->fd, &e->rx_msgs[0].msg_hdr, MSG_DONTWAIT);
            n = r < 0 ? -1 : 1;
            if (r >= 0)
                e->rx_msgs[0].msg_len = (unsigned)r;
        }
        if (n <= 0)
            return;
        chan_t *partner = relay_partner(ch);
        for (int i = 0; i < n; i++) {
            if (++ch->tick_pkts > e->p.flood_packets_per_tick) {
                ch->st.dropped_flood += (uint64_t)(n - i);
                if (!ch->paused) {
                    ch->paused = 1;
                    pbx__epoll_set(e, ch->fd, TAG_RTP, ch->id, 3);
                }
                break;
            }
            rx_one(e, ch, e->rx_buf[i], e->rx_msgs[i].msg_len, &e->rx_addr[i], partner);
        }
        if (!batch || n < RX_BATCH || ch->paused)
            return;
    }
}

void pbx__chan_rx_rtcp(engine_t *e, chan_t *ch)
{
    for (int i = 0; i < 64; i++) {
        ssize_t r = recv(ch->rtcp_fd, e->rx_buf[0], PKT_BUF, MSG_DONTWAIT);
        if (r < 0)
            return;
        ch->st.rtcp_in++;
    }
}

static void pcm_dead(engine_t *e, chan_t *ch, int err)
{
    if (ch->dead)
        return;
    ch->dead = 1;
    pbx__epoll_set(e, ch->pcm_fd, TAG_PCM, ch->id, 0);
    pbx__post_simple(e, PBX_EV_CHANNEL_ERROR, ch->id, err, 0);
}

static void pcm_push(engine_t *e, chan_t *ch, const int16_t *s, int n)
{
    while (n > 0) {
        int take = e->tick_samples - ch->acc_n;
        if (take > n)
            take = n;
        memcpy(ch->acc + ch->acc_n, s, (size_t)take * sizeof(int16_t));
        ch->acc_n += take;
        s += take;
        n -= take;
        if (ch->acc_n == e->tick_samples) {
            pbx_jb_put(ch->jb, ch->pseq, ch->pts, ch->acc, ch->acc_n, e->now_us);
            ch->pseq++;
            ch->pts += (uint32_t)ch->acc_n;
            ch->acc_n = 0;
            ch->st.packets_in++;
        }
    }
}

void pbx__chan_rx_pcm(engine_t *e, chan_t *ch)
{
    uint8_t buf[1024], audio[1024], codes[520];
    ssize_t r = read(ch->pcm_fd, buf, sizeof(buf));
    if (r == 0) {
        pcm_dead(e, ch, 0);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            pcm_dead(e, ch, errno);
        return;
    }
    ch->st.bytes_in += (uint64_t)r;
    int16_t *s = e->scratch;
    if (ch->pcm_format == PBX_PCM_S16LE) {
        int n = 0, i = 0;
        if (ch->have_carry) {
            s[n++] = (int16_t)(ch->carry | (buf[0] << 8));
            i = 1;
            ch->have_carry = 0;
        }
        for (; i + 1 < r; i += 2)
            s[n++] = (int16_t)(buf[i] | (buf[i + 1] << 8));
        if (i < r) {
            ch->carry = buf[i];
            ch->have_carry = 1;
        }
        pcm_push(e, ch, s, n);
        return;
    }
    const uint8_t *a = buf;
    int na = (int)r;
    if (ch->dle) {
        int nc;
        pbx_dle_decode(&ch->dle_st, buf, (int)r, audio, &na, codes, &nc);
        for (int k = 0; k < nc; k++) {
            ch->st.dle_events++;
            pbx__post_simple(e, PBX_EV_DLE, ch->id, codes[k], 0);
        }
        a = audio;
    }
    if (ch->pcm_format == PBX_PCM_ULAW)
        pbx_ulaw_decode(a, s, na);
    else if (ch->pcm_format == PBX_PCM_ALAW)
        pbx_alaw_decode(a, s, na);
    else
        for (int k = 0; k < na; k++)
            s[k] = (int16_t)((a[k] - 128) << 8);
    pcm_push(e, ch, s, na);
}

static void pcm_flush(engine_t *e, chan_t *ch)
{
    if (ch->tx_len == 0 || ch->dead)
        return;
    ssize_t w = write(ch->pcm_fd, ch->txbuf, (size_t)ch->tx_len);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            pcm_dead(e, ch, errno);
        return;
    }
    ch->st.bytes_out += (uint64_t)w;
    memmove(ch->txbuf, ch->txbuf + w, (size_t)(ch->tx_len - w));
    ch->tx_len -= (int)w;
}

static void pcm_output(engine_t *e, chan_t *ch, const int16_t *pcm)
{
    int n = e->tick_samples;
    uint8_t raw[MAX_TICK * 2], shielded[MAX_TICK * 2];
    const uint8_t *bytes = raw;
    int nb;
    if (ch->dead)
        return;
    if (ch->pcm_format == PBX_PCM_S16LE) {
        for (int i = 0; i < n; i++) {
            raw[2 * i] = (uint8_t)(pcm[i] & 0xFF);
            raw[2 * i + 1] = (uint8_t)((uint16_t)pcm[i] >> 8);
        }
        nb = 2 * n;
    } else {
        if (ch->pcm_format == PBX_PCM_ULAW)
            pbx_ulaw_encode(pcm, raw, n);
        else if (ch->pcm_format == PBX_PCM_ALAW)
            pbx_alaw_encode(pcm, raw, n);
        else
            for (int i = 0; i < n; i++)
                raw[i] = (uint8_t)((pcm[i] >> 8) + 128);
        nb = n;
        if (ch->dle) {
            nb = pbx_dle_encode(raw, n, shielded);
            bytes = shielded;
        }
    }
    if (ch->tx_len + nb > ch->tx_cap) {
        /* the device stopped reading: drop this frame rather than grow */
        ch->st.send_errors++;
    } else {
        memcpy(ch->txbuf + ch->tx_len, bytes, (size_t)nb);
        ch->tx_len += nb;
        ch->st.packets_out++;
    }
    pcm_flush(e, ch);
}

/* ---- the tick ---- */

void pbx__chan_tick_input(engine_t *e, chan_t *ch)
{
    int n = e->tick_samples;
    if (ch->paused) {
        ch->paused = 0;
        pbx__epoll_set(e, ch->fd, TAG_RTP, ch->id, 2);
    }
    ch->tick_pkts = 0;
    ch->out_valid = 0;
    if (ch->decoding) {
        if (ch->kind == CH_PCM || recv_allowed(ch))
            pbx_jb_get(ch->jb, ch->in, n, e->now_us);
        else
            memset(ch->in, 0, (size_t)n * sizeof(int16_t));
        if (ch->det_on) {
            pbx_dtmf_digit_t d[4];
            int k = pbx_dtmf_det_process(ch->det, ch->in, n, d, 4);
            for (int i = 0; i < k; i++)
                pbx__chan_dtmf_received(e, ch, d[i].digit, d[i].duration_ms, PBX_DTMF_INBAND);
        }
    } else if (ch->tapping) {
        if (recv_allowed(ch))
            pbx_tap_get(&ch->tap, ch->in, n);
        else
            memset(ch->in, 0, (size_t)n * sizeof(int16_t));
    }
    if (ch->kind != CH_RTP)
        return;
    if (ch->evrx.active && e->now_us - ch->evrx.last_us > EVRX_TIMEOUT_US)
        evrx_finish(e, ch);
    if (ch->kf_on && (e->stats.ticks + ch->id) % KF_SYNC_TICKS == 0)
        pbx__chan_kf_check(e, ch);      /* reads the counters back too */
    if (ch->timeout_ms > 0 && ch->configured && recv_allowed(ch) && !ch->timed_out &&
        e->now_us - ch->last_rx_us > (int64_t)ch->timeout_ms * 1000) {
        if (ch->kf_on) {
            kf_sync(e, ch);
            if (e->now_us - ch->last_rx_us <= (int64_t)ch->timeout_ms * 1000)
                return;
        }
        ch->timed_out = 1;
        pbx__post_simple(e, PBX_EV_RTP_TIMEOUT, ch->id, 0, ch->timeout_ms);
    }
}

/* One tick of audio to the far end (pcm NULL = silence). */
void pbx__chan_output(engine_t *e, chan_t *ch, const int16_t *pcm)
{
    int n = e->tick_samples;
    const int16_t *src = pcm ? pcm : zeros;
    if (ch->dtx.active == 2) {
        double amp1 = DTMF_AMP_LOW, amp2 = DTMF_AMP_HIGH;
        for (int i = 0; i < n; i++) {
            int on = ch->dtx.elapsed + i < ch->dtx.total;
            double v = on ? amp1 * sin(ch->dtx.ph1) + amp2 * sin(ch->dtx.ph2) : 0.0;
            ch->out[i] = (int16_t)lrint(v);
            ch->dtx.ph1 += ch->dtx.w1;
            ch->dtx.ph2 += ch->dtx.w2;
        }
        ch->dtx.ph1 = fmod(ch->dtx.ph1, 2 * M_PI);
        ch->dtx.ph2 = fmod(ch->dtx.ph2, 2 * M_PI);
        ch->dtx.elapsed += n;
        if (ch->dtx.elapsed >= ch->dtx.total) {
            ch->dtx.active = 3;
            ch->dtx.gap_left = 2;
            ch->st.dtmf_out++;
            if (ch->br)
                pbx__bridge_update(e, ch->br);
        }
    } else if (src != ch->out) {
        memcpy(ch->out, src, (size_t)n * sizeof(int16_t));
    }
    ch->out_valid = 1;
    if (ch->kind == CH_PCM) {
        pcm_output(e, ch, ch->out);
        return;
    }
    if (!send_allowed(ch) || ch->dtx.active == 1)
        return;
    uint8_t *b = pbx__tx_slot(e);
    uint16_t seq;
    uint32_t ts;
    int marker;
    local_stamp(e, ch, &seq, &ts, &marker);
    pbx_rtp_write_header(b, marker, ch->pt, seq, ts, ch->os.ssrc);
    if (ch->pt == 8)
        pbx_alaw_encode(ch->out, b + 12, n);
    else
        pbx_ulaw_encode(ch->out, b + 12, n);
    pbx__tx_commit(e, ch, &ch->dest, 12 + (size_t)n);
}
