/*
 * The engine thread: epoll over the RTP/PCM descriptors, a timerfd clock, a command
 * queue for control calls from other threads, and an event queue back to them.
 *
 * Threading rule: every channel, bridge, player, sound and recorder is touched only by
 * the engine thread. A control call packages its work as a function, queues it, wakes
 * the thread through an eventfd and waits for the result; the thread never waits for
 * a caller. Events go the other way through a mutex-protected ring and a second
 * eventfd that asyncio watches.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"

int64_t pbx__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- id tables ---- */

static int table_init(table_t *t, int cap)
{
    t->slot = calloc((size_t)cap, sizeof(void *));
    t->gen = calloc((size_t)cap, sizeof(uint16_t));
    t->free_list = calloc((size_t)cap, sizeof(int));
    t->cap = cap;
    t->used = 0;
    t->n_free = 0;
    pthread_mutex_init(&t->mu, NULL);
    t->mu_init = 1;
    return (t->slot && t->gen && t->free_list) ? PBX_OK : PBX_ENOMEM;
}

static void table_fini(table_t *t)
{
    free(t->slot);
    free(t->gen);
    free(t->free_list);
    if (t->mu_init)
        pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof(*t));
}

/*
 * Ids may be reserved by any thread (a posted create returns its id at once); slot[] is
 * written by the engine thread only, so lookups there need no lock: a reserved slot stays
 * NULL (not found) until the posted create runs. gen[] changes under mu only.
 */
uint32_t pbx__table_reserve(table_t *t, int type)
{
    int s;
    pthread_mutex_lock(&t->mu);
    if (t->n_free > 0)
        s = t->free_list[--t->n_free];
    else if (t->used < t->cap)
        s = t->used++;
    else
        s = -1;
    uint32_t id = s < 0 ? 0 : ((uint32_t)type << ID_TYPE_SHIFT) | ((uint32_t)(t->gen[s] & 0xFFF) << 16) | (uint32_t)s;
    pthread_mutex_unlock(&t->mu);
    return id;
}

void pbx__table_set(table_t *t, uint32_t id, void *obj)
{
    t->slot[id & 0xFFFF] = obj;
}

/* A reserved id whose object never came to be (engine thread). */
void pbx__table_unreserve(table_t *t, uint32_t id)
{
    int s = (int)(id & 0xFFFF);
    pthread_mutex_lock(&t->mu);
    t->slot[s] = NULL;
    t->gen[s]++;
    t->free_list[t->n_free++] = s;
    pthread_mutex_unlock(&t->mu);
}

uint32_t pbx__table_add(table_t *t, int type, void *obj)
{
    uint32_t id = pbx__table_reserve(t, type);
    if (id)
        pbx__table_set(t, id, obj);
    return id;
}

void *pbx__table_get(const table_t *t, int type, uint32_t id)
{
    if (ID_TYPE(id) != type)
        return NULL;
    int s = (int)(id & 0xFFFF);
    if (s >= t->cap || !t->slot[s])
        return NULL;
    if ((t->gen[s] & 0xFFF) != ((id >> 16) & 0xFFF))
        return NULL;
    return t->slot[s];
}

void pbx__table_del(table_t *t, uint32_t id)
{
    int s = (int)(id & 0xFFFF);
    if (s >= t->cap || !t->slot[s])
        return;
    pbx__table_unreserve(t, id);
}

/* Dense arrays of live objects for the per-tick loops; objects remember their index. */
void pbx__active_add(void ***arr, int *n, void *obj, int *idx)
{
    (*arr)[*n] = obj;
    *idx = *n;
    (*n)++;
}

void pbx__active_del(void **arr, int *n, int idx, size_t idx_offset)
{
    (*n)--;
    if (idx != *n) {
        arr[idx] = arr[*n];
        *(int *)((char *)arr[idx] + idx_offset) = idx;
    }
    arr[*n] = NULL;
}

/* ---- events ---- */

void pbx__post(engine_t *e, const pbx_event_t *ev)
{
    int was_empty;
    pthread_mutex_lock(&e->ev_mu);
    was_empty = e->ev_len == 0;
    if (e->ev_len == e->p.event_queue_len) {
        e->stats.events_dropped++;
        pthread_mutex_unlock(&e->ev_mu);
        return;
    }
    e->evq[(e->ev_head + e->ev_len) % e->p.event_queue_len] = *ev;
    e->ev_len++;
    pthread_mutex_unlock(&e->ev_mu);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(e->ev_efd, &one, sizeof(one));
        (void)w;
    }
}

void pbx__post_simple(engine_t *e, int type, uint32_t id, int code, int value)
{
    pbx_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.id = id;
    ev.code = code;
    ev.value = value;
    pbx__post(e, &ev);
}

int pbx_engine_poll_events(pbx_engine_t *e, pbx_event_t *out, int max)
{
    if (!e || !out || max <= 0)
        return PBX_EINVAL;
    uint64_t v;
    ssize_t r = read(e->ev_efd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&e->ev_mu);
    int n = e->ev_len < max ? e->ev_len : max;
    for (int i = 0; i < n; i++)
        out[i] = e->evq[(e->ev_head + i) % e->p.event_queue_len];
    e->ev_head = (e->ev_head + n) % e->p.event_queue_len;
    e->ev_len -= n;
    int left = e->ev_len;
    pthread_mutex_unlock(&e->ev_mu);
    if (left) {
        uint64_t one = 1;
        ssize_t w = write(e->ev_efd, &one, sizeof(one));
        (void)w;
    }
    return n;
}

int pbx_engine_fd(const pbx_engine_t *e)
{
    return e ? e->ev_efd : -1;
}

/* ---- commands ---- */

int pbx__run_cmd(engine_t *e, int (*fn)(engine_t *, void *), void *arg)
{
    if (!e)
        return PBX_EINVAL;
    if (e->thread_started && pthread_equal(pthread_self(), e->thread))
        return fn(e, arg);
    cmd_t c;
    memset(&c, 0, sizeof(c));
    c.fn = fn;
    c.arg = arg;
    pthread_mutex_lock(&e->cmd_mu);
    if (!e->accepting) {
        pthread_mutex_unlock(&e->cmd_mu);
        return PBX_ESTATE;
    }
    if (e->cmd_tail)
        e->cmd_tail->next = &c;
    else
        e->cmd_head = &c;
    e->cmd_tail = &c;
    pthread_mutex_unlock(&e->cmd_mu);
    uint64_t one = 1;
    ssize_t w = write(e->cmd_efd, &one, sizeof(one));
    (void)w;
    pthread_mutex_lock(&e->cmd_mu);
    while (!c.done)
        pthread_cond_wait(&e->cmd_cv, &e->cmd_mu);
    pthread_mutex_unlock(&e->cmd_mu);
    return c.rc;
}

static void posted_failed(engine_t *e, const cmd_t *c, int rc)
{
    if (rc >= 0 || (rc == PBX_ENOTFOUND && (c->flags & PBX__CMD_QUIET_NOTFOUND)))
        return;
    pbx__post_simple(e, PBX_EV_COMMAND_FAILED, c->id, rc, c->op);
}

int pbx__post_cmd(engine_t *e, int (*fn)(engine_t *, void *), const void *arg, size_t size, uint32_t id, int op,
                  int flags)
{
    if (!e)
        return PBX_EINVAL;
    cmd_t *c = malloc(sizeof(*c) + size);
    if (!c)
        return PBX_ENOMEM;
    memset(c, 0, sizeof(*c));
    c->fn = fn;
    c->arg = c->data;
    memcpy(c->data, arg, size);
    c->posted = 1;
    c->id = id;
    c->op = op;
    c->flags = flags;
    if (e->thread_started && pthread_equal(pthread_self(), e->thread)) {
        posted_failed(e, c, fn(e, c->arg));
        free(c);
        return PBX_OK;
    }
    pthread_mutex_lock(&e->cmd_mu);
    if (!e->accepting) {
        pthread_mutex_unlock(&e->cmd_mu);
        free(c);
        return PBX_ESTATE;
    }
    int was_empty = e->cmd_head == NULL;
    if (e->cmd_tail)
        e->cmd_tail->next = c;
    else
        e->cmd_head = c;
    e->cmd_tail = c;
    pthread_mutex_unlock(&e->cmd_mu);
    /* a non-empty queue has its wake-up pending already */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(e->cmd_efd, &one, sizeof(one));
        (void)w;
    }
    return PBX_OK;
}

/* refuse: the engine is shutting down; synchronous callers get PBX_ESTATE, posted commands
 * still run (their copies may own descriptors or memory) and are freed. */
static void run_commands(engine_t *e, int refuse)
{
    /* a command may destroy a channel with packets still queued, or read its counters */
    pbx__tx_flush(e);
    pthread_mutex_lock(&e->cmd_mu);
    cmd_t *c = e->cmd_head;
    e->cmd_head = e->cmd_tail = NULL;
    pthread_mutex_unlock(&e->cmd_mu);
    if (!c)
        return;
    cmd_t *waiting = NULL, **wtail = &waiting;
    while (c) {
        cmd_t *next = c->next;
        if (c->posted) {
            posted_failed(e, c, c->fn(e, c->arg));
            free(c);
        } else {
            c->rc = refuse ? PBX_ESTATE : c->fn(e, c->arg);
            c->next = NULL;
            *wtail = c;
            wtail = &c->next;
        }
        e->stats.commands++;
        c = next;
    }
    if (!waiting)
        return;
    pthread_mutex_lock(&e->cmd_mu);
    /* c->next must be read before done is set: the caller's stack frame vanishes after. */
    for (c = waiting; c;) {
        cmd_t *next = c->next;
        c->done = 1;
        c = next;
    }
    pthread_cond_broadcast(&e->cmd_cv);
    pthread_mutex_unlock(&e->cmd_mu);
}

/* ---- ports ---- */

void pbx__release_port(engine_t *e, int port)
{
    if (port < e->p.rtp_port_min || port > e->p.rtp_port_max)
        return;
    pthread_mutex_lock(&e->port_mu);
    e->port_used[(port - e->p.rtp_port_min) / 2] = 0;
    pthread_mutex_unlock(&e->port_mu);
}

int pbx__epoll_set(engine_t *e, int fd, int tag, uint32_t id, int on)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = ((uint64_t)id << 8) | (uint64_t)tag;
    if (on == 2)
        return epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (on == 3) {
        ev.events = 0;
        return epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    return epoll_ctl(e->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

/* ---- the send queue ---- */

uint8_t *pbx__tx_slot(engine_t *e)
{
    if (e->txn == TX_SLOTS)
        pbx__tx_flush(e);
    return e->tx_buf[e->txn];
}

void pbx__tx_commit(engine_t *e, chan_t *ch, const paddr_t *dest, size_t len)
{
    int k = e->txn++;
    memcpy(&e->tx_addr[k], &dest->ss, dest->len);
    e->tx_msgs[k].msg_hdr.msg_namelen = dest->len;
    e->tx_iov[k].iov_len = len;
    e->tx_fd[k] = ch->fd;
    e->tx_ch[k] = ch;
}

static void tx_account(chan_t *ch, long res)
{
    if (res < 0) {
        ch->st.send_errors++;
    } else {
        ch->st.packets_out++;
        ch->st.bytes_out += (uint64_t)res;
    }
}

/* Without io_uring: one sendmmsg per run of packets on the same socket, else sendmsg. */
static void tx_flush_plain(engine_t *e, int n)
{
    int i = 0;
    while (i < n) {
        int fd = e->tx_fd[i], j = i + 1;
        while (j < n && e->tx_fd[j] == fd)
            j++;
        e->stats.send_calls++;
        if (j - i == 1) {
            ssize_t w = sendmsg(fd, &e->tx_msgs[i].msg_hdr, MSG_DONTWAIT);
            tx_account(e->tx_ch[i], w < 0 ? -1 : (long)w);
            i++;
            continue;
        }
        int r = sendmmsg(fd, &e->tx_msgs[i], (unsigned)(j - i), MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        for (int k = 0; k < r; k++)
            tx_account(e->tx_ch[i + k], (long)e->tx_msgs[i + k].msg_len);
        if (r > 0) {
            i += r;
            continue;
        }
        /* the first message failed: a full socket buffer drops the rest of this run */
        int full = r == 0 || errno == EAGAIN || errno == EWOULDBLOCK;
        for (int k = i; k < (full ? j : i + 1); k++)
            tx_account(e->tx_ch[k], -1);
        i = full ? j : i + 1;
    }
}

void pbx__tx_flush(engine_t *e)
{
    int n = e->txn;
    if (n == 0)
        return;
    e->txn = 0;
    e->stats.packets_sent += (uint64_t)n;
    if (e->ur.fd >= 0) {
        int rc = pbx__uring_sendmsgs(&e->ur, e->tx_fd, e->tx_msgs, n, e->tx_res);
        if (e->ur.broken)
            pbx__uring_fini(&e->ur);
        if (rc == 0) {
            e->stats.send_calls++;
            for (int i = 0; i < n; i++)
                tx_account(e->tx_ch[i], e->tx_res[i]);
            return;
        }
    }
    tx_flush_plain(e, n);
}

/* ---- the clock ---- */

static void tick(engine_t *e)
{
    e->stats.ticks++;
    pbx__players_tick(e);
    for (int i = 0; i < e->n_ach; i++)
        pbx__chan_tick_input(e, e->ach[i]);
    for (int i = 0; i < e->n_abr; i++)
        pbx__bridge_tick(e, e->abr[i]);
    for (int i = 0; i < e->n_ach; i++) {
        chan_t *ch = e->ach[i];
        if (!ch->br && pbx__chan_needs_local_output(ch))
            pbx__chan_output(e, ch, ch->has_play ? ch->play : NULL);
        else if (!ch->br)
            ch->out_valid = 0;
        pbx__chan_tick_dtmf(e, ch);
    }
    pbx__recorders_tick(e);
    pbx__players_reap(e);
}

/* The 20 ms clock runs only while something needs it: an idle box sleeps. */
static void clock_update(engine_t *e)
{
    int need = e->n_ach > 0 || e->n_arec > 0 || e->n_apl > 0;
    if (need == e->clock_on)
        return;
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    if (need) {
        its.it_interval.tv_nsec = (long)e->p.ptime_ms * 1000000L;
        its.it_value = its.it_interval;
    }
    if (timerfd_settime(e->timerfd, 0, &its, NULL) == 0)
        e->clock_on = need;
}

static void *engine_main(void *arg)
{
    engine_t *e = arg;
    struct epoll_event evs[256];
    pthread_setname_np(pthread_self(), "pbx-engine");
    /* created here: a single-issuer ring belongs to the thread that submits */
    if (e->p.io_uring)
        pbx__uring_init(&e->ur, TX_SLOTS);
    while (!e->stop) {
        clock_update(e);
        int n = epoll_wait(e->epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        e->now_us = pbx__now_us();
        for (int i = 0; i < n && !e->stop; i++) {
            int tag = (int)(evs[i].data.u64 & 0xFF);
            uint32_t id = (uint32_t)(evs[i].data.u64 >> 8);
            if (tag == TAG_TIMER) {
                uint64_t exp = 0;
                if (read(e->timerfd, &exp, sizeof(exp)) != sizeof(exp))
                    continue;
                /* what this wake-up relayed so far leaves before the tick's work */
                pbx__tx_flush(e);
                /* Catch up a little after a stall; beyond that the ticks are lost. */
                uint64_t run = exp > 3 ? 3 : exp;
                e->stats.ticks_missed += exp - run;
                for (uint64_t k = 0; k < run; k++)
                    tick(e);
            } else if (tag == TAG_CMD) {
                uint64_t v;
                ssize_t r = read(e->cmd_efd, &v, sizeof(v));
                (void)r;
                run_commands(e, 0);
            } else {
                chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, id);
                if (!ch)
                    continue;
                if (tag == TAG_RTP)
                    pbx__chan_rx_rtp(e, ch);
                else if (tag == TAG_RTCP)
                    pbx__chan_rx_rtcp(e, ch);
                else if (tag == TAG_PCM)
                    pbx__chan_rx_pcm(e, ch);
            }
        }
        pbx__tx_flush(e);
    }
    /* Shut down: refuse new commands, finish recordings, free every object. */
    pthread_mutex_lock(&e->cmd_mu);
    e->accepting = 0;
    pthread_mutex_unlock(&e->cmd_mu);
    run_commands(e, 1);
    pbx__recorders_stop_all(e);
    pbx__players_free_all(e);
    pbx__bridge_free_all(e);
    pbx__tx_flush(e);
    while (e->n_ach > 0)
        pbx__chan_free(e, e->ach[e->n_ach - 1]);
    pbx__sounds_free_all(e);
    pbx__uring_fini(&e->ur);
    return NULL;
}

static int cmd_stop(engine_t *e, void *arg)
{
    (void)arg;
    e->stop = 1;
    return PBX_OK;
}

/* ---- create / destroy ---- */

void pbx_engine_params_default(pbx_engine_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->bind_ip = "0.0.0.0";
    p->rtp_port_min = 10000;
    p->rtp_port_max = 20000;
    p->ptime_ms = 20;
    p->max_channels = 4096;
    p->max_bridges = 2048;
    p->max_players = 4096;
    p->max_recorders = 1024;
    p->event_queue_len = 4096;
    p->jb_min_delay_ms = 20;
    p->jb_max_delay_ms = 300;
    p->jb_initial_delay_ms = 60;
    p->flood_packets_per_tick = 25;
    p->latch_packets = 5;
    p->io_uring = 1;
    p->kernel_relay = 1;
}

static int params_ok(const pbx_engine_params_t *p)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (!p->bind_ip || (inet_pton(AF_INET, p->bind_ip, &a4) != 1 && inet_pton(AF_INET6, p->bind_ip, &a6) != 1))
        return 0;
    if (p->rtp_port_min < 1024 || p->rtp_port_max > 65534 || p->rtp_port_min > p->rtp_port_max - 1)
        return 0;
    if (p->ptime_ms != 10 && p->ptime_ms != 20 && p->ptime_ms != 30)
        return 0;
    if (p->max_channels < 1 || p->max_channels > 65535 || p->max_bridges < 1 || p->max_bridges > 65535 ||
        p->max_players < 1 || p->max_players > 65535 || p->max_recorders < 1 || p->max_recorders > 65535)
        return 0;
    if (p->event_queue_len < 16 || p->event_queue_len > 1 << 20)
        return 0;
    if (p->flood_packets_per_tick < 4 || p->latch_packets < 1 || p->latch_packets > 100)
        return 0;
    return 1;
}

static void engine_free(engine_t *e)
{
    if (e->epfd >= 0) close(e->epfd);
    if (e->timerfd >= 0) close(e->timerfd);
    if (e->cmd_efd >= 0) close(e->cmd_efd);
    if (e->ev_efd >= 0) close(e->ev_efd);
    pbx__kfwd_close(&e->kf);
    for (int i = 0; i < e->n_spare; i++) {
        close(e->spare[i].fd);
        close(e->spare[i].rtcp_fd);
    }
    table_fini(&e->channels);
    table_fini(&e->bridges);
    table_fini(&e->players);
    table_fini(&e->recorders);
    table_fini(&e->sounds);
    free(e->ach);
    free(e->abr);
    free(e->apl);
    free(e->arec);
    free(e->evq);
    free(e->port_used);
    free(e->tx_buf);
    pthread_mutex_destroy(&e->cmd_mu);
    pthread_cond_destroy(&e->cmd_cv);
    pthread_mutex_destroy(&e->ev_mu);
    pthread_mutex_destroy(&e->port_mu);
    pthread_mutex_destroy(&e->wr_mu);
    pthread_cond_destroy(&e->wr_cv);
    free(e);
}

int pbx_engine_create(const pbx_engine_params_t *p, pbx_engine_t **out)
{
    if (!p || !out || !params_ok(p))
        return PBX_EINVAL;
    engine_t *e = calloc(1, sizeof(*e));
    if (!e)
        return PBX_ENOMEM;
    e->p = *p;
    snprintf(e->bind_ip, sizeof(e->bind_ip), "%s", p->bind_ip);
    e->p.bind_ip = e->bind_ip;
    e->tick_samples = p->ptime_ms * 8;
    e->tick_us = p->ptime_ms * 1000;
    e->epfd = e->timerfd = e->cmd_efd = e->ev_efd = -1;
    e->ur.fd = -1;
    e->kf.map_fd = e->kf.prog_fd = -1;
    pthread_mutex_init(&e->cmd_mu, NULL);
    pthread_cond_init(&e->cmd_cv, NULL);
    pthread_mutex_init(&e->ev_mu, NULL);
    pthread_mutex_init(&e->port_mu, NULL);
    pthread_mutex_init(&e->wr_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->wr_cv, &ca);
    pthread_condattr_destroy(&ca);

    int rc = PBX_ENOMEM;
    if (table_init(&e->channels, p->max_channels) || table_init(&e->bridges, p->max_bridges) ||
        table_init(&e->players, p->max_players) || table_init(&e->recorders, p->max_recorders) ||
        table_init(&e->sounds, p->max_players))
        goto fail;
    e->ach = calloc((size_t)p->max_channels, sizeof(*e->ach));
    e->abr = calloc((size_t)p->max_bridges, sizeof(*e->abr));
    e->apl = calloc((size_t)p->max_players, sizeof(*e->apl));
    e->arec = calloc((size_t)p->max_recorders, sizeof(*e->arec));
    e->evq = calloc((size_t)p->event_queue_len, sizeof(pbx_event_t));
    e->port_used = calloc((size_t)(p->rtp_port_max - p->rtp_port_min) / 2 + 1, 1);
    e->tx_buf = malloc(sizeof(*e->tx_buf) * TX_SLOTS);
    if (!e->ach || !e->abr || !e->apl || !e->arec || !e->evq || !e->port_used || !e->tx_buf)
        goto fail;
    e->port_cursor = 0;
    /* a sixteenth of the range at most: small ranges (tests of exhaustion) keep exact order */
    e->spare_target = (p->rtp_port_max - p->rtp_port_min) / 2 / 16;
    if (e->spare_target > SPARE_MAX)
        e->spare_target = SPARE_MAX;

    for (int i = 0; i < RX_BATCH; i++) {
        e->rx_iov[i].iov_base = e->rx_buf[i];
        e->rx_iov[i].iov_len = PKT_BUF;
        e->rx_msgs[i].msg_hdr.msg_iov = &e->rx_iov[i];
        e->rx_msgs[i].msg_hdr.msg_iovlen = 1;
        e->rx_msgs[i].msg_hdr.msg_name = &e->rx_addr[i];
        e->rx_msgs[i].msg_hdr.msg_namelen = sizeof(e->rx_addr[i]);
    }
    for (int i = 0; i < TX_SLOTS; i++) {
        e->tx_iov[i].iov_base = e->tx_buf[i];
        e->tx_msgs[i].msg_hdr.msg_iov = &e->tx_iov[i];
        e->tx_msgs[i].msg_hdr.msg_iovlen = 1;
        e->tx_msgs[i].msg_hdr.msg_name = &e->tx_addr[i];
    }

    rc = PBX_EIO;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e->cmd_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->ev_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->epfd < 0 || e->timerfd < 0 || e->cmd_efd < 0 || e->ev_efd < 0)
        goto fail;
    /* the clock starts with the first channel (clock_update) */
    if (pbx__epoll_set(e, e->timerfd, TAG_TIMER, 0, 1) < 0 || pbx__epoll_set(e, e->cmd_efd, TAG_CMD, 0, 1) < 0)
        goto fail;
    if (p->kernel_relay && pbx__kfwd_open(&e->kf, e->bind_ip, p->max_channels) < 0)
        e->stats.kernel_relay_error = e->kf.err;
    e->accepting = 1;
    e->now_us = pbx__now_us();
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        goto fail;
    e->thread_started = 1;
    *out = e;
    return PBX_OK;
fail:
    engine_free(e);
    return rc;
}

void pbx_engine_destroy(pbx_engine_t *e)
{
    if (!e)
        return;
    if (e->thread_started) {
        pbx__run_cmd(e, cmd_stop, NULL);
        pthread_join(e->thread, NULL);
        e->thread_started = 0;
    }
    pbx__writer_shutdown(e);
    engine_free(e);
}

typedef struct {
    pbx_engine_stats_t *st;
} stats_arg_t;

static int cmd_stats(engine_t *e, void *arg)
{
    stats_arg_t *a = arg;
    *a->st = e->stats;
    a->st->channels = e->n_ach;
    a->st->bridges = e->n_abr;
    a->st->players = e->n_apl;
    a->st->recorders = e->n_arec;
    a->st->io_uring = e->ur.fd >= 0;
    a->st->kernel_relay = e->kf.map_fd >= 0;
    pbx__kfwd_prog_stats(&e->kf, &a->st->kernel_relay_run_ns, &a->st->kernel_relay_runs);
    return PBX_OK;
}

int pbx_engine_get_stats(pbx_engine_t *e, pbx_engine_stats_t *st)
{
    if (!e || !st)
        return PBX_EINVAL;
    stats_arg_t a = {st};
    int rc = pbx__run_cmd(e, cmd_stats, &a);
    if (rc == PBX_OK) {
        clockid_t cid;
        struct timespec ts;
        if (pthread_getcpuclockid(e->thread, &cid) == 0 && clock_gettime(cid, &ts) == 0)
            st->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    return rc;
}
