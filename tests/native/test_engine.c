/*
 * The engine thread end to end on loopback (run plain, under ASan/UBSan and on aarch64
 * under qemu-user): relay with header rewriting, mixing, players and tones, RFC 4733
 * out, a recorder, events, error codes, and destroy with everything still alive.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static int udp(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static void send_rtp(int fd, int port, int pt, uint16_t seq, uint32_t ts, uint8_t fill)
{
    uint8_t p[172];
    pbx_rtp_write_header(p, 0, pt, seq, ts, 0xAAAA);
    memset(p + 12, fill, 160);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    sendto(fd, p, sizeof(p), 0, (struct sockaddr *)&a, sizeof(a));
}

/* Receive for ms milliseconds; count packets, keep the last header. */
static int recv_for(int fd, int ms, pbx_rtp_header_t *last, int *events)
{
    int n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return n;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        uint8_t b[1500];
        ssize_t r = recv(fd, b, sizeof(b), 0);
        pbx_rtp_header_t h;
        if (r > 0 && pbx_rtp_parse(b, (size_t)r, &h) == PBX_RTP_GOOD) {
            if (h.payload_type == 101 && events)
                (*events)++;
            *last = h;
            n++;
        }
    }
}

int main(void)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = 42000 + (getpid() % 2000) * 2;
    p.rtp_port_max = p.rtp_port_min + 400;  /* room when other engines hold ports nearby */
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    pbx_engine_params_t bad = p;
    bad.ptime_ms = 25;
    pbx_engine_t *e2 = NULL;
    CHECK(pbx_engine_create(&bad, &e2) == PBX_EINVAL && e2 == NULL);

    /* an engine with nothing to do sleeps: no clock ticks */
    usleep(100000);
    pbx_engine_stats_t idle;
    CHECK(pbx_engine_get_stats(e, &idle) == PBX_OK && idle.ticks == 0 && idle.channels == 0);

    int pa, pb;
    int fa = udp(&pa), fb = udp(&pb);
    uint32_t ca, cb, br;
    int porta, portb;
    CHECK(pbx_rtp_channel_create(e, NULL, &ca, &porta) == PBX_OK && porta % 2 == 0);
    CHECK(pbx_rtp_channel_create(e, NULL, &cb, &portb) == PBX_OK && portb != porta);
    pbx_rtp_config_t c;
    pbx_rtp_config_default(&c);
    c.remote_ip = "127.0.0.1";
    c.remote_port = pa;
    c.payload_type = 0;
    c.telephone_event_pt = 101;
    CHECK(pbx_rtp_channel_configure(e, ca, &c) == PBX_OK);
    c.remote_port = pb;
    c.payload_type = 8;
    CHECK(pbx_rtp_channel_configure(e, cb, &c) == PBX_OK);
    c.payload_type = 3;
    CHECK(pbx_rtp_channel_configure(e, cb, &c) == PBX_EINVAL);
    CHECK(pbx_rtp_channel_configure(e, 0x10000FFF, &c) == PBX_EINVAL);
    c.payload_type = 0;
    CHECK(pbx_rtp_channel_configure(e, 0x10000FFF, &c) == PBX_ENOTFOUND);

    CHECK(pbx_bridge_create(e, &br) == PBX_OK);
    CHECK(pbx_bridge_add(e, br, ca, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(pbx_bridge_add(e, br, cb, PBX_MEMBER_FULL, 0) == PBX_OK);
    CHECK(pbx_bridge_add(e, br, cb, PBX_MEMBER_FULL, 0) == PBX_EBUSY);
    CHECK(pbx_bridge_is_relaying(e, br) == 1);

    /* relay A -> B: u-law silence 0xFF becomes A-law 0xD5, our SSRC, contiguous seq */
    for (int i = 0; i < 20; i++) {
        send_rtp(fa, porta, 0, (uint16_t)(65530 + i), 1000u + 160u * (unsigned)i, 0xFF);
        usleep(2000);
    }
    pbx_rtp_header_t h;
    memset(&h, 0, sizeof(h));
    int got = recv_for(fb, 200, &h, NULL);
    CHECK(got == 20 && h.payload_type == 8 && h.ssrc != 0xAAAA);

    /* a tone on the bridge forces mixing: both phones hear it */
    pbx_tone_t t = {425, 0, -13, {1000, 4000}, 2, 300};
    uint32_t tone;
    CHECK(pbx_tone_player_create(e, br, &t, &tone) == PBX_OK);
    CHECK(pbx_bridge_is_relaying(e, br) == 0);
    int n1 = recv_for(fa, 250, &h, NULL);
    CHECK(n1 >= 8 && h.payload_type == 0);

    /* a recorder on the bridge, then RFC 4733 out on A */
    pbx_recorder_params_t rp;
    pbx_recorder_params_default(&rp);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/pbx_test_engine_%d.wav", (int)getpid());
    rp.path = path;
    rp.left[0] = ca;
    rp.n_left = 1;
    uint32_t rec;
    CHECK(pbx_recorder_create(e, br, &rp, &rec) == PBX_OK);
    CHECK(pbx_channel_send_dtmf(e, ca, '5', 100) == PBX_OK);
    CHECK(pbx_channel_send_dtmf(e, ca, 'x', 100) == PBX_EINVAL);
    int evs = 0;
    recv_for(fa, 400, &h, &evs);
    CHECK(evs >= 5);
    CHECK(pbx_recorder_stop(e, rec) == PBX_OK);
    CHECK(pbx_recorder_stop(e, rec) == PBX_ENOTFOUND);

    /* events: the tone ended (300 ms), the recorder stopped */
    pbx_event_t ev[16];
    int done = 0, stopped = 0;
    for (int tries = 0; tries < 100 && !(done && stopped); tries++) {
        int k = pbx_engine_poll_events(e, ev, 16);
        for (int i = 0; i < k; i++) {
            if (ev[i].type == PBX_EV_PLAYER_DONE && ev[i].id == tone && ev[i].code == PBX_PLAYER_FINISHED)
                done = 1;
            if (ev[i].type == PBX_EV_RECORDER_STOPPED && ev[i].id == rec && ev[i].samples > 1000)
                stopped = 1;
        }
        usleep(10000);
    }
    CHECK(done && stopped);
    pbx_wav_info_t wi;
    CHECK(pbx_wav_repair(path, &wi) == PBX_OK && !wi.changed && wi.channels == 2);
    unlink(path);

    pbx_channel_stats_t st;
    CHECK(pbx_channel_get_stats(e, ca, &st) == PBX_OK && st.packets_in == 20 && st.dtmf_out == 1);
    pbx_engine_stats_t es;
    CHECK(pbx_engine_get_stats(e, &es) == PBX_OK && es.channels == 2 && es.bridges == 1 && es.ticks > 10);

    /* sounds shared by players, left playing at destroy: everything must be freed */
    int16_t pcm[8000];
    for (int i = 0; i < 8000; i++)
        pcm[i] = (int16_t)(i * 13);
    uint32_t snd, pl1, pl2;
    CHECK(pbx_sound_create(e, pcm, 8000, &snd) == PBX_OK);
    CHECK(pbx_player_create(e, ca, snd, 1, 0, &pl1) == PBX_OK);
    CHECK(pbx_player_create(e, br, snd, 0, -6, &pl2) == PBX_OK);
    CHECK(pbx_sound_release(e, snd) == PBX_OK);
    CHECK(pbx_player_create(e, ca, snd, 0, 0, &pl2) == PBX_ENOTFOUND);
    CHECK(pbx_recorder_create(e, br, &rp, &rec) == PBX_OK);
    CHECK(pbx_channel_destroy(e, cb) == PBX_OK);
    CHECK(pbx_channel_destroy(e, cb) == PBX_ENOTFOUND);
    usleep(60000);
    pbx_engine_destroy(e);
    CHECK(pbx_wav_repair(path, &wi) == PBX_OK && !wi.changed);
    unlink(path);
    close(fa);
    close(fb);
    if (fails)
        return 1;
    printf("test_engine: ok\n");
    return 0;
}
