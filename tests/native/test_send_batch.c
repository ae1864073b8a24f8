/*
 * Batched sending: the packets of one engine wake-up leave in one system call when the
 * kernel offers io_uring, and one call per socket otherwise (io_uring = 0, or a kernel or
 * qemu-user without it). Either way every packet arrives, in order, with the channel's
 * own SSRC and a contiguous sequence; the counters say what happened.
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

#define NCH 8

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static int udp(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

typedef struct {
    int n, bad_order, ssrc_changes;
    int have;
    uint16_t last_seq;
    uint32_t ssrc;
} rx_t;

static void drain(int fd, rx_t *r)
{
    uint8_t b[1500];
    for (;;) {
        ssize_t len = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (len < 0)
            return;
        pbx_rtp_header_t h;
        if (pbx_rtp_parse(b, (size_t)len, &h) != PBX_RTP_GOOD || h.payload_len != 160)
            continue;
        if (r->have && h.ssrc != r->ssrc)
            r->ssrc_changes++;
        if (r->have && h.seq != (uint16_t)(r->last_seq + 1))
            r->bad_order++;
        r->have = 1;
        r->ssrc = h.ssrc;
        r->last_seq = h.seq;
        r->n++;
    }
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* NCH channels each playing a tone: every tick sends NCH packets from NCH sockets. */
static void run(int use_uring, int base_port)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = base_port;
    p.rtp_port_max = base_port + 190;
    p.io_uring = use_uring;
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    if (!e)
        return;
    int fds[NCH];
    uint32_t ch[NCH], pl[NCH];
    rx_t rx[NCH];
    memset(rx, 0, sizeof(rx));
    pbx_tone_t tone = {1000, 0, -10, {0}, 0, 0};
    for (int i = 0; i < NCH; i++) {
        int port, lport;
        fds[i] = udp(&port);
        CHECK(pbx_rtp_channel_create(e, NULL, &ch[i], &lport) == PBX_OK);
        pbx_rtp_config_t c;
        pbx_rtp_config_default(&c);
        c.remote_ip = "127.0.0.1";
        c.remote_port = port;
        c.telephone_event_pt = 101;
        CHECK(pbx_rtp_channel_configure(e, ch[i], &c) == PBX_OK);
    }
    for (int i = 0; i < NCH; i++)
        CHECK(pbx_tone_player_create(e, ch[i], &tone, &pl[i]) == PBX_OK);
    sleep_ms(60);
    pbx_engine_stats_t s0, s1;
    CHECK(pbx_engine_get_stats(e, &s0) == PBX_OK);
    for (int k = 0; k < 20; k++) {
        sleep_ms(20);
        for (int i = 0; i < NCH; i++)
            drain(fds[i], &rx[i]);
    }
    CHECK(pbx_engine_get_stats(e, &s1) == PBX_OK);
    sleep_ms(30);
    for (int i = 0; i < NCH; i++)
        drain(fds[i], &rx[i]);

    uint64_t sent = s1.packets_sent - s0.packets_sent, calls = s1.send_calls - s0.send_calls;
    uint64_t ticks = s1.ticks - s0.ticks;
    CHECK(ticks >= 10);
    /* every tick sent one packet per channel (the window may cut a tick in two) */
    CHECK(sent + NCH >= ticks * NCH && sent <= (ticks + 1) * NCH);
    if (s1.io_uring) {
        CHECK(use_uring);
        /* one io_uring_enter per tick for all NCH sockets */
        CHECK(calls <= ticks + 2);
    } else {
        /* one sendmsg per socket and tick */
        CHECK(calls == sent);
    }
    int total = 0;
    for (int i = 0; i < NCH; i++) {
        CHECK(rx[i].n >= 15 && rx[i].bad_order == 0 && rx[i].ssrc_changes == 0);
        total += rx[i].n;
        pbx_channel_stats_t cs;
        CHECK(pbx_channel_get_stats(e, ch[i], &cs) == PBX_OK && cs.send_errors == 0 && cs.packets_out >= (uint64_t)rx[i].n);
        CHECK(cs.bytes_out == cs.packets_out * 172);
    }
    printf("test_send_batch: io_uring %s: %d packets received, %llu sent in %llu calls over %llu ticks\n",
           s1.io_uring ? "on" : (use_uring ? "unavailable" : "off"), total, (unsigned long long)sent,
           (unsigned long long)calls, (unsigned long long)ticks);
    pbx_engine_destroy(e);
    for (int i = 0; i < NCH; i++)
        close(fds[i]);
}

/* Relay: NCH/2 bridged pairs; bursts of packets (several per socket, so the engine often
 * reads them with recvmmsg and, without io_uring, sends them with one sendmmsg per socket)
 * all arrive at the partner, in order, renumbered without gaps. */
static void relay(int use_uring, int base_port)
{
    pbx_engine_params_t p;
    pbx_engine_params_default(&p);
    p.bind_ip = "127.0.0.1";
    p.rtp_port_min = base_port;
    p.rtp_port_max = base_port + 190;
    p.io_uring = use_uring;
    p.kernel_relay = 0;     /* the engine's own sends are counted here, not the kernel's relay */
    p.flood_packets_per_tick = 100;
    pbx_engine_t *e = NULL;
    CHECK(pbx_engine_create(&p, &e) == PBX_OK);
    if (!e)
        return;
    int fds[NCH], ports[NCH];
    uint32_t ch[NCH], br[NCH / 2];
    rx_t rx[NCH];
    memset(rx, 0, sizeof(rx));
    int rports[NCH];
    for (int i = 0; i < NCH; i++) {
        fds[i] = udp(&rports[i]);
        CHECK(pbx_rtp_channel_create(e, NULL, &ch[i], &ports[i]) == PBX_OK);
    }
    /* bridged before they know where to send: a bridge with one member mixes, and would send
     * a tick of silence if a tick fell between the two adds */
    for (int k = 0; k < NCH / 2; k++) {
        CHECK(pbx_bridge_create(e, &br[k]) == PBX_OK);
        CHECK(pbx_bridge_add(e, br[k], ch[2 * k], PBX_MEMBER_FULL, 0) == PBX_OK);
        CHECK(pbx_bridge_add(e, br[k], ch[2 * k + 1], PBX_MEMBER_FULL, 0) == PBX_OK);
        CHECK(pbx_bridge_is_relaying(e, br[k]) == 1);
    }
    for (int i = 0; i < NCH; i++) {
        pbx_rtp_config_t c;
        pbx_rtp_config_default(&c);
        c.remote_ip = "127.0.0.1";
        c.remote_port = rports[i];
        c.telephone_event_pt = 101;
        CHECK(pbx_rtp_channel_configure(e, ch[i], &c) == PBX_OK);
    }
    const int bursts = 10, per = 6;
    uint8_t pkt[172];
    for (int b = 0; b < bursts; b++) {
        for (int i = 0; i < NCH; i++) {
            struct sockaddr_in a = {0};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons((uint16_t)ports[i]);
            for (int k = 0; k < per; k++) {
                int n = b * per + k;
                pbx_rtp_write_header(pkt, 0, 0, (uint16_t)(1000 + n), 160u * (uint32_t)n, 0x5000u + (uint32_t)i);
                memset(pkt + 12, 0xFF, 160);
                sendto(fds[i], pkt, sizeof(pkt), 0, (struct sockaddr *)&a, sizeof(a));
            }
        }
        sleep_ms(20);
        for (int i = 0; i < NCH; i++)
            drain(fds[i], &rx[i]);
    }
    sleep_ms(50);
    for (int i = 0; i < NCH; i++)
        drain(fds[i], &rx[i]);
    for (int i = 0; i < NCH; i++)
        CHECK(rx[i].n == bursts * per && rx[i].bad_order == 0 && rx[i].ssrc_changes == 0);
    pbx_engine_stats_t st;
    CHECK(pbx_engine_get_stats(e, &st) == PBX_OK);
    CHECK(st.packets_sent == (uint64_t)(NCH * bursts * per) && st.send_calls <= st.packets_sent);
    printf("test_send_batch: relay, io_uring %s: %llu packets in %llu send calls\n",
           st.io_uring ? "on" : (use_uring ? "unavailable" : "off"), (unsigned long long)st.packets_sent,
           (unsigned long long)st.send_calls);
    pbx_engine_destroy(e);
    for (int i = 0; i < NCH; i++)
        close(fds[i]);
}

int main(void)
{
    int base = 20000 + (getpid() % 100) * 400;
    run(1, base);
    run(0, base + 200);
    relay(1, base);
    relay(0, base + 200);
    if (fails)
        return 1;
    printf("test_send_batch: ok\n");
    return 0;
}
