/*
 * Posted (*_nowait) control calls: ordering with synchronous calls on the one queue,
 * failures reported as events, posted creations usable at once, two threads posting,
 * recorders whose file the writer thread creates, destroy with posted commands
 * still queued (nothing may leak under ASan), and the socket pairs bound ahead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static pbx_engine_t *make_engine(int base)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = base + (getpid() % 1000) * 4;
    p.rtp_port_max = p.rtp_port_min + 1200;
    p.max_channels = 1024;
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    return e;
}

/* Wait up to ms for an event of this type and id; copies it to out. */
static int wait_event(pbx_engine_t *e, int type, uint32_t id, int ms, pbx_event_t *out)
{
    pbx_event_t ev[64];
    for (int waited = 0; waited <= ms; waited += 5) {
        int n = pbx_engine_poll_events(e, ev, 64);
        for (int i = 0; i < n; i++)
            if (ev[i].type == type && ev[i].id == id) {
                if (out)
                    *out = ev[i];
                return 1;
            }
        usleep(5000);
    }
    return 0;
}

/* Every event waiting now (after a synchronous call, the posted ones before it have run). */
static int count_events(pbx_engine_t *e, int type)
{
    pbx_event_t ev[64];
    int n, c = 0;
    while ((n = pbx_engine_poll_events(e, ev, 64)) > 0)
        for (int i = 0; i < n; i++)
            c += ev[i].type == type;
    return c;
}

static void test_order(void)
{
    pbx_engine_t *e = make_engine(30000);
    uint32_t ca, cb, br;
    int pa, pb;
    /* posted creations: the ids are usable at once, by posted and synchronous calls */
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ca, &pa) == PBX_OK && pa % 2 == 0);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &cb, &pb) == PBX_OK && pb != pa);
    pbx_rtp_config_t c;
    pbx_rtp_config_default(&c);
    c.remote_ip = "127.0.0.1";
    c.remote_port = 4000;
    c.payload_type = 8;
    char ip[16];
    snprintf(ip, sizeof(ip), "%s", "127.0.0.1");
    c.remote_ip = ip;
    CHECK(pbx_rtp_channel_configure_nowait(e, ca, &c) == PBX_OK);
    memset(ip, 'x', sizeof(ip) - 1);   /* the posted copy must not point into the caller's memory */
    /* arguments are still checked in the caller's thread */
    pbx_rtp_config_t bad = c;
    bad.remote_ip = "not an address";
    CHECK(pbx_rtp_channel_configure_nowait(e, ca, &bad) == PBX_EINVAL);
    bad = c;
    bad.payload_type = 3;
    CHECK(pbx_rtp_channel_configure_nowait(e, ca, &bad) == PBX_EINVAL);
    CHECK(pbx_bridge_add_nowait(e, 0, ca, PBX_MEMBER_FULL, 0) == PBX_ENOTFOUND);
    CHECK(pbx_bridge_add_nowait(e, ca, ca, 9, 0) == PBX_EINVAL);
    pbx_channel_stats_t st;
    CHECK(pbx_channel_get_stats(e, ca, &st) == PBX_OK && st.local_port == pa);
    CHECK(strcmp(st.remote_addr, "127.0.0.1") == 0 && st.remote_port == 4000);
    c.remote_ip = "127.0.0.1";
    c.remote_port = 4002;
    CHECK(pbx_rtp_channel_configure(e, cb, &c) == PBX_OK);

    /* a posted add, then a synchronous query: the query sees the bridge as the adds left it */
    CHECK(pbx_bridge_create_nowait(e, &br) == PBX_OK);
    CHECK(pbx_bridge_add_nowait(e, br, ca, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(pbx_bridge_add_nowait(e, br, cb, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(pbx_bridge_is_relaying(e, br) == 1);
    CHECK(pbx_bridge_remove_nowait(e, br, cb) == PBX_OK);
    CHECK(pbx_bridge_is_relaying(e, br) == 0);
    CHECK(pbx_bridge_add(e, br, cb, PBX_MEMBER_FULL, 0) == PBX_OK);
    /* a posted configure is in effect for the next synchronous call */
    c.remote_port = 4010;
    CHECK(pbx_rtp_channel_configure_nowait(e, cb, &c) == PBX_OK);
    CHECK(pbx_channel_get_stats(e, cb, &st) == PBX_OK && st.remote_port == 4010 && st.bridged);
    CHECK(count_events(e, PBX_EV_COMMAND_FAILED) == 0);

    /* a failure in the engine thread comes back as an event naming the call */
    CHECK(pbx_bridge_add_nowait(e, br, cb, PBX_MEMBER_FULL, 0) == PBX_OK);
    pbx_event_t ev;
    CHECK(wait_event(e, PBX_EV_COMMAND_FAILED, cb, 1000, &ev) && ev.code == PBX_EBUSY && ev.value == PBX_OP_BRIDGE_ADD);

    /* posted destroys, then synchronous calls on what they destroyed */
    CHECK(pbx_channel_destroy_nowait(e, ca) == PBX_OK);
    CHECK(pbx_channel_get_stats(e, ca, &st) == PBX_ENOTFOUND);
    CHECK(pbx_bridge_destroy_nowait(e, br) == PBX_OK);
    CHECK(pbx_bridge_is_relaying(e, br) == PBX_ENOTFOUND);
    pbx_engine_stats_t es;
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK && es.channels == 1 && es.bridges == 0);
    pbx_engine_destroy(e);
}

static void test_gone(void)
{
    pbx_engine_t *e = make_engine(32000);
    uint32_t ch, br, dead;
    int port;
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &dead, &port) == PBX_OK);
    CHECK(pbx_channel_destroy_nowait(e, dead) == PBX_OK);
    /* releases of something already gone are quiet */
    CHECK(pbx_channel_destroy_nowait(e, dead) == PBX_OK);
    CHECK(pbx_bridge_destroy_nowait(e, 0x20000123) == PBX_OK);
    CHECK(pbx_player_stop_nowait(e, 0x30000123) == PBX_OK);
    CHECK(pbx_sound_release_nowait(e, 0x50000123) == PBX_OK);
    CHECK(pbx_recorder_stop_nowait(e, 0x40000123) == PBX_OK);
    CHECK(pbx_bridge_remove_nowait(e, 0x20000123, dead) == PBX_OK);
    pbx_engine_stats_t es;
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK);
    CHECK(count_events(e, PBX_EV_COMMAND_FAILED) == 0);

    /* the slot is used again with a new generation: the old id stays dead */
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ch, &port) == PBX_OK);
    CHECK(ch != dead && (ch & 0xFFFF) == (dead & 0xFFFF));
    pbx_rtp_config_t c;
    pbx_rtp_config_default(&c);
    CHECK(pbx_rtp_channel_configure_nowait(e, dead, &c) == PBX_OK);
    pbx_event_t ev;
    CHECK(wait_event(e, PBX_EV_COMMAND_FAILED, dead, 1000, &ev) && ev.code == PBX_ENOTFOUND &&
          ev.value == PBX_OP_CHANNEL_CONFIGURE);
    CHECK(pbx_rtp_channel_configure_nowait(e, ch, &c) == PBX_OK);
    CHECK(pbx_bridge_create_nowait(e, &br) == PBX_OK);
    CHECK(pbx_bridge_add_nowait(e, br, dead, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(wait_event(e, PBX_EV_COMMAND_FAILED, dead, 1000, &ev) && ev.code == PBX_ENOTFOUND &&
          ev.value == PBX_OP_BRIDGE_ADD);

    /* a recorder of a source gone by the time it starts */
    pbx_recorder_params_t rp;
    pbx_recorder_params_default(&rp);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/pbx_posted_%d.wav", (int)getpid());
    rp.path = path;
    uint32_t rec;
    CHECK(pbx_recorder_create_nowait(e, dead, &rp, &rec) == PBX_OK);
    CHECK(wait_event(e, PBX_EV_COMMAND_FAILED, rec, 1000, &ev) && ev.code == PBX_ENOTFOUND &&
          ev.value == PBX_OP_RECORDER_CREATE);
    CHECK(access(path, F_OK) != 0);
    /* a file that cannot be created: the recording ends with RECORDER_ERROR (errno) */
    rp.path = "/nonexistent-dir/x.wav";
    CHECK(pbx_recorder_create_nowait(e, br, &rp, &rec) == PBX_OK);
    CHECK(wait_event(e, PBX_EV_RECORDER_ERROR, rec, 2000, &ev) && ev.code == ENOENT);
    CHECK(pbx_recorder_stop_nowait(e, rec) == PBX_OK);
    /* and one that works: stopped by a posted stop, the writer finishes the file */
    rp.path = path;
    CHECK(pbx_bridge_add_nowait(e, br, ch, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(pbx_recorder_create_nowait(e, br, &rp, &rec) == PBX_OK);
    usleep(200000);
    CHECK(pbx_recorder_stop_nowait(e, rec) == PBX_OK);
    CHECK(wait_event(e, PBX_EV_RECORDER_STOPPED, rec, 3000, &ev) && ev.samples > 800);
    pbx_wav_info_t wi;
    CHECK(pbx_wav_repair(path, &wi) == PBX_OK && !wi.changed && wi.channels == 2);
    unlink(path);
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK && es.recorders == 0);
    pbx_engine_destroy(e);
}

static void *poster(void *arg)
{
    pbx_engine_t *e = arg;
    for (int i = 0; i < 300; i++) {
        uint32_t ch, br;
        int port;
        if (pbx_rtp_channel_create_nowait(e, NULL, &ch, &port) != PBX_OK ||
            pbx_bridge_create_nowait(e, &br) != PBX_OK) {
            __atomic_add_fetch(&fails, 1, __ATOMIC_RELAXED);
            break;
        }
        pbx_bridge_add_nowait(e, br, ch, PBX_MEMBER_FULL, 0);
        pbx_bridge_destroy_nowait(e, br);
        pbx_channel_destroy_nowait(e, ch);
    }
    return NULL;
}

static void test_threads(void)
{
    pbx_engine_t *e = make_engine(34000);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, poster, e);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pbx_engine_stats_t es;
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK && es.channels == 0 && es.bridges == 0);
    CHECK(count_events(e, PBX_EV_COMMAND_FAILED) == 0);
    pbx_engine_destroy(e);
}

/* A full port range whose ports wait only for posted destroys: creation drains the queue. */
static void test_ports(void)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = 38000 + (getpid() % 500) * 8;
    p.rtp_port_max = p.rtp_port_min + 5;
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    uint32_t a, b, c;
    int pa, pb, pc;
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &a, &pa) == PBX_OK);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &b, &pb) == PBX_OK);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &c, &pc) == PBX_ENOPORT);
    CHECK(pbx_channel_destroy_nowait(e, a) == PBX_OK);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &c, &pc) == PBX_OK && pc == pa);
    pbx_engine_destroy(e);
}

/* Destroy right after many posted commands: they all run or are freed. */
static void test_destroy_with_queue(void)
{
    pbx_engine_t *e = make_engine(36000);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/pbx_posted_q_%d.wav", (int)getpid());
    pbx_recorder_params_t rp;
    pbx_recorder_params_default(&rp);
    rp.path = path;
    pbx_rtp_config_t c;
    pbx_rtp_config_default(&c);
    c.remote_ip = "127.0.0.1";
    c.remote_port = 5000;
    uint32_t br = 0;
    CHECK(pbx_bridge_create_nowait(e, &br) == PBX_OK);
    for (int i = 0; i < 200; i++) {
        uint32_t ch;
        int port;
        CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ch, &port) == PBX_OK);
        CHECK(pbx_rtp_channel_configure_nowait(e, ch, &c) == PBX_OK);
        if (i < 2)
            CHECK(pbx_bridge_add_nowait(e, br, ch, PBX_MEMBER_FULL, 0) == PBX_OK);
        if (i % 3 == 0)
            CHECK(pbx_channel_destroy_nowait(e, ch) == PBX_OK);
    }
    uint32_t rec;
    CHECK(pbx_recorder_create_nowait(e, br, &rp, &rec) == PBX_OK);
    pbx_engine_destroy(e);
    unlink(path);
}

static void send_rtp(int fd, int port, uint16_t seq)
{
    uint8_t pkt[12 + 160] = {0x80, 8, (uint8_t)(seq >> 8), (uint8_t)seq, 0, 0, 0, 160, 1, 2, 3, 4};
    memset(pkt + 12, 0xd5, 160);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to));
}

/* A large range keeps a few pairs bound ahead: a channel takes one without binding, packets
 * that reached it before are dropped unseen, and the whole range is still usable. */
static void test_spares(void)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = 44000 + (getpid() % 200) * 66;
    p.rtp_port_max = p.rtp_port_min + 64;  /* 32 pairs: 2 bound ahead */
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    uint32_t ch[33];
    int port[33];
    pbx_engine_stats_t es;
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ch[0], &port[0]) == PBX_OK);
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK);  /* adopted; the spares are bound */
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &me.sin_addr);
    socklen_t mlen = sizeof(me);
    CHECK(bind(tx, (struct sockaddr *)&me, sizeof(me)) == 0 && getsockname(tx, (struct sockaddr *)&me, &mlen) == 0);
    int stray = socket(AF_INET, SOCK_DGRAM, 0);  /* not the channel's remote: dropped_source if seen */
    for (int q = p.rtp_port_min; q < p.rtp_port_max; q += 2)
        if (q != port[0])
            send_rtp(stray, q, 1);
    usleep(20000);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ch[1], &port[1]) == PBX_OK && port[1] != port[0]);
    pbx_rtp_config_t c;
    pbx_rtp_config_default(&c);
    c.remote_ip = "127.0.0.1";
    c.remote_port = ntohs(me.sin_port);
    c.payload_type = 8;
    CHECK(pbx_rtp_channel_configure(e, ch[1], &c) == PBX_OK);
    pbx_channel_stats_t cs;
    send_rtp(tx, port[1], 2);
    int got = 0;
    for (int i = 0; i < 100 && !got; i++) {
        usleep(5000);
        got = pbx_channel_get_stats(e, ch[1], &cs) == PBX_OK && cs.packets_in > 0;
    }
    usleep(30000);
    CHECK(got && pbx_channel_get_stats(e, ch[1], &cs) == PBX_OK);
    CHECK(cs.packets_in == 1 && cs.dropped_source == 0 && cs.dropped_malformed == 0);
    close(tx);
    close(stray);
    int n = 2;
    while (n < 33 && pbx_rtp_channel_create_nowait(e, NULL, &ch[n], &port[n]) == PBX_OK)
        n++;
    CHECK(n == 32);  /* every pair of the range, spares included */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            CHECK(port[i] != port[j]);
    CHECK(pbx_channel_destroy_nowait(e, ch[5]) == PBX_OK);
    CHECK(pbx_rtp_channel_create_nowait(e, NULL, &ch[5], &port[5]) == PBX_OK);
    CHECK(pbx_channel_destroy(e, ch[7]) == PBX_OK);
    pbx_engine_destroy(e);  /* with spares bound again: closed, nothing leaks */
}

int main(void)
{
    test_order();
    test_gone();
    test_threads();
    test_ports();
    test_destroy_with_queue();
    test_spares();
    if (fails)
        return 1;
    printf("test_posted: ok\n");
    return 0;
}
