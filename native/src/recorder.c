/*
 * Recorders and their writer thread.
 *
 * The engine thread appends each tick's frames to the recorder's ring under wr_mu (a
 * memcpy, never a system call). The writer thread drains the rings in large writes,
 * rewrites the header and makes the file durable at least every sync_interval_ms, so a
 * power cut loses at most about that much. A full ring drops audio (counted), never blocks.
 * Write errors (ENOSPC, EIO, EFBIG) end the recording with PBX_EV_RECORDER_ERROR; the
 * call goes on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"

#define WRITE_CHUNK (32 * 1024)

void pbx_recorder_params_default(pbx_recorder_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->path = NULL;
    p->stereo = 1;
    p->n_left = 0;
    p->sync_interval_ms = 1000;
    p->buffer_ms = 4000;
}

/* ---- writer thread ---- */

static int write_all(int fd, const uint8_t *b, size_t n, size_t *done)
{
    *done = 0;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        b += w;
        n -= (size_t)w;
        *done += (size_t)w;
    }
    return 0;
}

/* writev until everything went out (the iovecs are consumed); *done = bytes written. */
static int writev_all(int fd, struct iovec *iov, int n, size_t *done)
{
    *done = 0;
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        *done += (size_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int write_header(recorder_t *r)
{
    uint8_t h[44];
    uint32_t data = (uint32_t)(r->data_bytes > 0xFFFFFF00u ? 0xFFFFFF00u : r->data_bytes);
    data -= data % (uint32_t)(2 * r->channels);
    pbx__wav_header(h, r->channels, 8000, data);
    for (size_t off = 0; off < sizeof(h);) {
        ssize_t w = pwrite(r->fd, h + off, sizeof(h) - off, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        off += (size_t)w;
    }
    return 0;
}

static void post_end(engine_t *e, recorder_t *r, int type, int err)
{
    pbx_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.id = r->id;
    ev.code = err;
    ev.samples = r->data_bytes / (uint64_t)(2 * r->channels);
    pbx__post(e, &ev);
}

/* Create the file and write a provisional header; errno on failure (r->fd stays -1). */
static int create_file(recorder_t *r, const char *path)
{
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->fd < 0)
        return errno;
    struct stat sb;
    if (fstat(r->fd, &sb) == 0)
        r->dev = sb.st_dev;
    uint8_t h[44];
    pbx__wav_header(h, r->channels, 8000, 0);
    size_t done;
    return write_all(r->fd, h, sizeof(h), &done);
}

/* Called without wr_mu. */
static void writer_fail(engine_t *e, recorder_t *r, int err)
{
    if (r->fd >= 0) {
        write_header(r);
        close(r->fd);
    }
    r->fd = -1;
    post_end(e, r, PBX_EV_RECORDER_ERROR, err);
}

/*
 * Durability once per cycle for all recordings: one syncfs() per filesystem instead of one
 * fdatasync() per file (100 recordings on an SD card would otherwise queue 100 journal
 * commits a second). If syncfs reports an error, each file is fdatasync()ed to find which.
 */
#define MAX_DEVS 8

static void sync_pending(engine_t *e)
{
    dev_t devs[MAX_DEVS];
    int fds[MAX_DEVS], nd = 0, overflow = 0;
    for (recorder_t *r = e->wr_list; r; r = r->wnext) {
        if (!r->sync_pending || r->closed)
            continue;
        int k = 0;
        while (k < nd && devs[k] != r->dev)
            k++;
        if (k == nd) {
            if (nd == MAX_DEVS) {
                overflow = 1;
                continue;
            }
            devs[nd] = r->dev;
            fds[nd++] = r->fd;
        }
    }
    int bad[MAX_DEVS] = {0};
    pthread_mutex_unlock(&e->wr_mu);
    for (int k = 0; k < nd; k++)
        bad[k] = syncfs(fds[k]) < 0;
    pthread_mutex_lock(&e->wr_mu);
    for (recorder_t *r = e->wr_list; r; r = r->wnext) {
        if (!r->sync_pending || r->closed)
            continue;
        int k = 0;
        while (k < nd && devs[k] != r->dev)
            k++;
        if (k < nd && !bad[k]) {
            r->sync_pending = 0;
            continue;
        }
        (void)overflow;
        pthread_mutex_unlock(&e->wr_mu);
        int err = fdatasync(r->fd) < 0 && errno != EINVAL ? errno : 0;
        pthread_mutex_lock(&e->wr_mu);
        r->sync_pending = 0;
        if (err && !r->pending_err)
            r->pending_err = err;
    }
}

static void *writer_main(void *arg)
{
    engine_t *e = arg;
    pthread_setname_np(pthread_self(), "pbx-recwriter");
    pthread_mutex_lock(&e->wr_mu);
    for (;;) {
        int64_t now = pbx__now_us();
        /* 1: data and headers */
        for (recorder_t *r = e->wr_list; r; r = r->wnext) {
            if (r->closed) {
                r->fill = 0;
                continue;
            }
            int err = 0;
            if (r->path) {
                char *path = r->path;
                r->path = NULL;
                pthread_mutex_unlock(&e->wr_mu);
                err = create_file(r, path);
                free(path);
                pthread_mutex_lock(&e->wr_mu);
            }
            int sync_due = now - r->last_sync_us >= (int64_t)r->sync_interval_ms * 1000;
            while (!err && r->fill > 0 && (r->fill >= r->chunk || sync_due || r->stopping)) {
                /* Straight from the ring: the engine only appends past head, and what is
                   being written stays counted in fill until the write is done. */
                size_t n = r->fill;
                size_t tail = (r->head + r->cap - r->fill) % r->cap;
                size_t first = r->cap - tail < n ? r->cap - tail : n;
                struct iovec iov[2] = {{r->ring + tail, first}, {r->ring, n - first}};
                pthread_mutex_unlock(&e->wr_mu);
                size_t done;
                err = writev_all(r->fd, iov, n - first ? 2 : 1, &done);
                pthread_mutex_lock(&e->wr_mu);
                r->fill -= done;
                r->data_bytes += done;
            }
            if (!err && (sync_due || r->stopping)) {
                int final = r->stopping && r->fill == 0;
                pthread_mutex_unlock(&e->wr_mu);
                err = write_header(r);
                pthread_mutex_lock(&e->wr_mu);
                r->last_sync_us = now;
                r->sync_pending = 1;
                r->final_header |= final;
            }
            if (err && !r->pending_err)
                r->pending_err = err;
        }
        /* 2: make it durable */
        sync_pending(e);
        /* 3: failures, finished recordings */
        recorder_t **pp = &e->wr_list;
        while (*pp) {
            recorder_t *r = *pp;
            if (r->closed) {
                if (r->stopping) {
                    *pp = r->wnext;
                    free(r->path);
                    free(r->ring);
                    free(r);
                    continue;
                }
            } else if (r->pending_err) {
                r->failed = r->pending_err;
                pthread_mutex_unlock(&e->wr_mu);
                writer_fail(e, r, r->failed);
                pthread_mutex_lock(&e->wr_mu);
                r->closed = 1;
            } else if (r->stopping && r->final_header && !r->sync_pending) {
                pthread_mutex_unlock(&e->wr_mu);
                close(r->fd);
                r->fd = -1;
                post_end(e, r, PBX_EV_RECORDER_STOPPED, 0);
                pthread_mutex_lock(&e->wr_mu);
                r->closed = 1;
                continue;   /* freed on the next pass */
            }
            pp = &r->wnext;
        }
        if (e->wr_quit && !e->wr_list)
            break;
        int pending = 0;
        for (recorder_t *r = e->wr_list; r; r = r->wnext)
            pending |= r->stopping;
        if (pending)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->wr_cv, &e->wr_mu, &ts);
    }
    pthread_mutex_unlock(&e->wr_mu);
    return NULL;
}

void pbx__writer_shutdown(engine_t *e)
{
    if (!e->wr_started)
        return;
    pthread_mutex_lock(&e->wr_mu);
    e->wr_quit = 1;
    pthread_cond_signal(&e->wr_cv);
    pthread_mutex_unlock(&e->wr_mu);
    pthread_join(e->wr_thread, NULL);
    e->wr_started = 0;
}

/* ---- engine side ---- */

static void update_taps(engine_t *e, recorder_t *r, int delta)
{
    if (r->sch) {
        r->sch->n_taps += delta;
        if (r->sch->br)
            pbx__bridge_update(e, r->sch->br);
        else
            pbx__chan_update_decoding(e, r->sch);
    } else if (r->sbr) {
        r->sbr->n_taps += delta;
        pbx__bridge_update(e, r->sbr);
    }
}

/* Engine thread: stop feeding r and hand it to the writer to finish (or free). */
void pbx__recorder_detach(engine_t *e, recorder_t *r)
{
    update_taps(e, r, -1);
    pbx__table_del(&e->recorders, r->id);
    pbx__active_del((void **)e->arec, &e->n_arec, r->active_idx, offsetof(recorder_t, active_idx));
    pthread_mutex_lock(&e->wr_mu);
    r->stopping = 1;
    pthread_cond_signal(&e->wr_cv);
    pthread_mutex_unlock(&e->wr_mu);
}

void pbx__recorders_stop_all(engine_t *e)
{
    while (e->n_arec > 0)
        pbx__recorder_detach(e, e->arec[e->n_arec - 1]);
}

static int is_left(const recorder_t *r, uint32_t id)
{
    for (int i = 0; i < r->n_left; i++)
        if (r->left[i] == id)
            return 1;
    return 0;
}

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

static inline uint16_t le16(uint16_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint16_t)(v << 8 | v >> 8);
#else
    return v;
#endif
}

/* One side of a frame: the saturated sum of its sources (none: silence). */
static void mix_side(const int16_t *const *src, int ns, int16_t *out, int n)
{
    if (ns == 0) {
        memset(out, 0, (size_t)n * sizeof(*out));
    } else if (ns == 1) {
        memcpy(out, src[0], (size_t)n * sizeof(*out));
    } else {
        for (int i = 0; i < n; i++) {
            int32_t acc = 0;
            for (int k = 0; k < ns; k++)
                acc += src[k][i];
            out[i] = sat16(acc);
        }
    }
}

void pbx__recorders_tick(engine_t *e)
{
    int n = e->tick_samples;
    for (int k = e->n_arec - 1; k >= 0; k--) {
        recorder_t *r = e->arec[k];
        const int16_t *ls[MAX_MEMBERS + 1], *rs[MAX_MEMBERS + 1];
        int nl = 0, nr = 0;
        if (r->sch) {
            chan_t *ch = r->sch;
            if (ch->decoding || ch->tapping)
                ls[nl++] = ch->in;
            if (ch->out_valid)
                rs[nr++] = ch->out;
        } else {
            bridge_t *br = r->sbr;
            for (int m = 0; m < br->n; m++) {
                chan_t *ch = br->m[m];
                if (r->stereo && is_left(r, ch->id))
                    ls[nl++] = ch->in;
                else
                    rs[nr++] = ch->in;
            }
            if (br->has_play)
                rs[nr++] = br->play;
        }
        int16_t a[MAX_TICK], b[MAX_TICK];
        uint16_t words[MAX_TICK * 2];   /* the WAV frame: 16-bit little-endian samples */
        size_t nw;
        if (r->stereo) {
            mix_side(ls, nl, a, n);
            mix_side(rs, nr, b, n);
            for (int i = 0; i < n; i++) {
                words[2 * i] = le16((uint16_t)a[i]);
                words[2 * i + 1] = le16((uint16_t)b[i]);
            }
            nw = (size_t)n * 2;
        } else {
            for (int i = 0; i < nr; i++)
                ls[nl++] = rs[i];
            mix_side(ls, nl, a, n);
            for (int i = 0; i < n; i++)
                words[i] = le16((uint16_t)a[i]);
            nw = (size_t)n;
        }
        const uint8_t *frame = (const uint8_t *)words;
        size_t bytes = nw * 2;
        pthread_mutex_lock(&e->wr_mu);
        int failed = r->failed;
        if (!failed) {
            if (r->fill + bytes > r->cap) {
                r->overruns++;
            } else {
                size_t first = r->cap - r->head < bytes ? r->cap - r->head : bytes;
                memcpy(r->ring + r->head, frame, first);
                memcpy(r->ring, frame + first, bytes - first);
                r->head = (r->head + bytes) % r->cap;
                r->fill += bytes;
            }
            /* the writer comes every 100 ms anyway; wake it early only for a ring half full */
            if (r->fill >= r->cap / 2 && r->fill - bytes < r->cap / 2)
                pthread_cond_signal(&e->wr_cv);
        }
        pthread_mutex_unlock(&e->wr_mu);
        if (failed)
            pbx__recorder_detach(e, r);
    }
}

typedef struct {
    recorder_t *r;
    uint32_t source;
    uint32_t id;                /* reserved by a posted create, else 0 */
} rec_arg_t;

static int cmd_create(engine_t *e, void *arg)
{
    rec_arg_t *a = arg;
    recorder_t *r = a->r;
    if (ID_TYPE(a->source) == OBJ_CHANNEL)
        r->sch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->source);
    else if (ID_TYPE(a->source) == OBJ_BRIDGE)
        r->sbr = pbx__table_get(&e->bridges, OBJ_BRIDGE, a->source);
    if (!r->sch && !r->sbr)
        return PBX_ENOTFOUND;
    if (!e->wr_started) {
        if (pthread_create(&e->wr_thread, NULL, writer_main, e) != 0)
            return PBX_EIO;
        e->wr_started = 1;
    }
    uint32_t id = a->id;
    if (id)
        pbx__table_set(&e->recorders, id, r);
    else if (!(id = pbx__table_add(&e->recorders, OBJ_RECORDER, r)))
        return PBX_EFULL;
    r->id = id;
    pbx__active_add((void ***)&e->arec, &e->n_arec, r, &r->active_idx);
    update_taps(e, r, +1);
    r->last_sync_us = pbx__now_us();
    pthread_mutex_lock(&e->wr_mu);
    r->wnext = e->wr_list;
    e->wr_list = r;
    if (r->path)
        pthread_cond_signal(&e->wr_cv);
    pthread_mutex_unlock(&e->wr_mu);
    a->id = id;
    return PBX_OK;
}

static void recorder_free(recorder_t *r)
{
    free(r->path);
    free(r->ring);
    free(r);
}

/* Posted: the recorder (no file yet) is the command's to free when it cannot start. */
static int cmd_create_posted(engine_t *e, void *arg)
{
    rec_arg_t *a = arg;
    int rc = cmd_create(e, a);
    if (rc != PBX_OK) {
        pbx__table_unreserve(&e->recorders, a->id);
        recorder_free(a->r);
    }
    return rc;
}

static int recorder_new(const pbx_recorder_params_t *p, recorder_t **out)
{
    if (!p || !p->path || !p->path[0] || p->n_left < 0 || p->n_left > 8 ||
        p->sync_interval_ms < 50 || p->sync_interval_ms > 1000 || p->buffer_ms < 200 || p->buffer_ms > 60000)
        return PBX_EINVAL;
    recorder_t *r = calloc(1, sizeof(*r));
    if (!r)
        return PBX_ENOMEM;
    r->fd = -1;
    r->stereo = p->stereo ? 1 : 0;
    r->channels = r->stereo ? 2 : 1;
    r->n_left = p->n_left;
    memcpy(r->left, p->left, sizeof(r->left));
    r->sync_interval_ms = p->sync_interval_ms;
    r->cap = (size_t)p->buffer_ms * 8 * 2 * (size_t)r->channels;
    r->chunk = r->cap / 4 < WRITE_CHUNK ? r->cap / 4 : WRITE_CHUNK;
    r->ring = malloc(r->cap);
    if (!r->ring) {
        free(r);
        return PBX_ENOMEM;
    }
    *out = r;
    return PBX_OK;
}

int pbx_recorder_create(pbx_engine_t *e, uint32_t source, const pbx_recorder_params_t *p, uint32_t *id)
{
    recorder_t *r;
    if (!e || !id)
        return PBX_EINVAL;
    int rc = recorder_new(p, &r);
    if (rc != PBX_OK)
        return rc;
    int err = create_file(r, p->path);
    rc = err ? (err == ENOSPC ? PBX_ENOSPC : (err == ENOENT || err == ENOTDIR ? PBX_ENOTFOUND : PBX_EIO)) : PBX_OK;
    rec_arg_t a = {r, source, 0};
    if (rc == PBX_OK)
        rc = pbx__run_cmd(e, cmd_create, &a);
    if (rc != PBX_OK) {
        if (r->fd >= 0) {
            close(r->fd);
            unlink(p->path);
        }
        recorder_free(r);
        return rc;
    }
    *id = a.id;
    return PBX_OK;
}

int pbx_recorder_create_nowait(pbx_engine_t *e, uint32_t source, const pbx_recorder_params_t *p, uint32_t *id)
{
    recorder_t *r;
    if (!e || !id)
        return PBX_EINVAL;
    if (ID_TYPE(source) != OBJ_CHANNEL && ID_TYPE(source) != OBJ_BRIDGE)
        return PBX_ENOTFOUND;
    int rc = recorder_new(p, &r);
    if (rc != PBX_OK)
        return rc;
    r->path = strdup(p->path);
    rec_arg_t a = {r, source, pbx__table_reserve(&e->recorders, OBJ_RECORDER)};
    rc = !r->path ? PBX_ENOMEM : (!a.id ? PBX_EFULL : PBX_OK);
    if (rc == PBX_OK)
        rc = pbx__post_cmd(e, cmd_create_posted, &a, sizeof(a), a.id, PBX_OP_RECORDER_CREATE, 0);
    if (rc != PBX_OK) {
        if (a.id)
            pbx__table_unreserve(&e->recorders, a.id);
        recorder_free(r);
        return rc;
    }
    *id = a.id;
    return PBX_OK;
}

static int cmd_stop(engine_t *e, void *arg)
{
    recorder_t *r = pbx__table_get(&e->recorders, OBJ_RECORDER, *(uint32_t *)arg);
    if (!r)
        return PBX_ENOTFOUND;
    pbx__recorder_detach(e, r);
    return PBX_OK;
}

int pbx_recorder_stop(pbx_engine_t *e, uint32_t id)
{
    return pbx__run_cmd(e, cmd_stop, &id);
}

int pbx_recorder_stop_nowait(pbx_engine_t *e, uint32_t id)
{
    return pbx__post_cmd(e, cmd_stop, &id, sizeof(id), id, PBX_OP_RECORDER_STOP, PBX__CMD_QUIET_NOTFOUND);
}
