/*
 * The datagram sender: every datagram arrives intact and in order, close sends what is
 * still queued, IPv4 peers of a dual-stack socket are reached, and bad arguments or
 * datagrams the kernel refuses are reported without stopping the ones behind them.
 * Queued datagrams (pbx_dgram_queue) wait for pbx_dgram_wake, unless the queue fills up.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static int udp4(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    if (port)
        *port = ntohs(a.sin_port);
    return fd;
}

/* Build datagram i: "seq=<i>;" then filler up to a length that varies with i. */
static size_t make(char *buf, int i)
{
    int n = snprintf(buf, 64, "seq=%d;", i);
    size_t len = (size_t)n + (size_t)(i * 37 % 1400);
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (char)('a' + (k + (size_t)i) % 26);
    return len;
}

/* Receive until `want` datagrams came or 2 s of silence; check order and content (the
 * first one expected is number `first`). */
static int drain(int rx, int first, int want, int *bad)
{
    char buf[2048], ref[2048];
    int got = 0;
    while (got < want) {
        struct pollfd p = {.fd = rx, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0)
            break;
        ssize_t n;
        while ((n = recv(rx, buf, sizeof(buf), 0)) > 0) {
            size_t len = make(ref, first + got);
            if ((size_t)n != len || memcmp(buf, ref, len) != 0)
                (*bad)++;
            got++;
        }
    }
    return got;
}

static void test_order_and_content(void)
{
    int port, rx = udp4(&port), tx = udp4(NULL);
    pbx_dgram_sender_t *s;
    CHECK(pbx_dgram_sender_open(tx, 256, &s) == PBX_OK);
    char buf[2048];
    int bad = 0, got = 0;
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        size_t len = make(buf, i);
        CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, len, 1000) == PBX_OK);
        if (i % 1000 == 999) {  /* keep the receiver's buffer from overflowing */
            CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);
            got += drain(rx, got, i + 1 - got, &bad);
        }
    }
    CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);
    got += drain(rx, got, N - got, &bad);
    CHECK(got == N);
    CHECK(bad == 0);
    pbx_dgram_stats_t st;
    pbx_dgram_sender_get_stats(s, &st);
    CHECK(st.queued == (uint64_t)N && st.sent == (uint64_t)N);
    CHECK(st.failed == 0 && st.dropped == 0 && st.backlog == 0);
    CHECK(st.send_calls >= 1 && st.send_calls <= (uint64_t)N);
    pbx_dgram_sender_close(s);
    close(tx);
    close(rx);
}

static void test_close_sends_the_queue(void)
{
    int port, rx = udp4(&port), tx = udp4(NULL);
    pbx_dgram_sender_t *s;
    CHECK(pbx_dgram_sender_open(tx, 2048, &s) == PBX_OK);
    char buf[2048];
    for (int i = 0; i < 1000; i++) {
        size_t len = make(buf, i);
        CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, len, 1000) == PBX_OK);
    }
    pbx_dgram_sender_close(s);
    int bad = 0;
    CHECK(drain(rx, 0, 1000, &bad) == 1000);
    CHECK(bad == 0);
    close(tx);
    close(rx);
}

static void test_dual_stack(void)
{
    int port, rx = udp4(&port);
    int tx = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (tx < 0) {
        fprintf(stderr, "test_dgram: no IPv6 here, dual-stack case skipped\n");
        close(rx);
        return;
    }
    int off = 0;
    setsockopt(tx, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    if (bind(tx, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr, "test_dgram: cannot bind [::], dual-stack case skipped\n");
        close(tx);
        close(rx);
        return;
    }
    pbx_dgram_sender_t *s;
    CHECK(pbx_dgram_sender_open(tx, 16, &s) == PBX_OK);
    char buf[2048];
    size_t len = make(buf, 0);
    CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, len, 1000) == PBX_OK);
    CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);
    int bad = 0;
    CHECK(drain(rx, 0, 1, &bad) == 1 && bad == 0);
    pbx_dgram_sender_close(s);
    close(tx);
    close(rx);
}

static void test_bad_input_and_refusals(void)
{
    int port, rx = udp4(&port), tx = udp4(NULL);
    pbx_dgram_sender_t *s;
    CHECK(pbx_dgram_sender_open(-1, 16, &s) == PBX_EINVAL);
    CHECK(pbx_dgram_sender_open(tx, 0, &s) == PBX_EINVAL);
    int stream = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(pbx_dgram_sender_open(stream, 16, &s) == PBX_EINVAL);
    close(stream);
    CHECK(pbx_dgram_sender_open(tx, 16, &s) == PBX_OK);
    char buf[65600];
    memset(buf, 'x', sizeof(buf));
    CHECK(pbx_dgram_send(s, "not an address", port, buf, 10, 0) == PBX_EINVAL);
    CHECK(pbx_dgram_send(s, "::1", port, buf, 10, 0) == PBX_EINVAL);  /* IPv6 peer, IPv4 socket */
    CHECK(pbx_dgram_send(s, "127.0.0.1", 0, buf, 10, 0) == PBX_EINVAL);
    CHECK(pbx_dgram_send(s, "127.0.0.1", 70000, buf, 10, 0) == PBX_EINVAL);
    CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, 0, 0) == PBX_EINVAL);
    CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, 65508, 0) == PBX_EINVAL);
    /* broadcast without SO_BROADCAST: the kernel refuses (EACCES); the next one still goes */
    CHECK(pbx_dgram_send(s, "255.255.255.255", port, buf, 10, 0) == PBX_OK);
    size_t len = make(buf, 0);
    CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, len, 0) == PBX_OK);
    CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);
    pbx_dgram_stats_t st;
    pbx_dgram_sender_get_stats(s, &st);
    CHECK(st.queued == 2 && st.sent == 1 && st.failed == 1 && st.last_errno == EACCES);
    int bad = 0;
    CHECK(drain(rx, 0, 1, &bad) == 1 && bad == 0);
    pbx_dgram_sender_close(s);
    pbx_dgram_sender_close(NULL);
    close(tx);
    close(rx);
}

static void test_queue_waits_for_wake(void)
{
    int port, rx = udp4(&port), tx = udp4(NULL);
    pbx_dgram_sender_t *s;
    CHECK(pbx_dgram_sender_open(tx, 4, &s) == PBX_OK);
    char buf[2048];
    int bad = 0;
    /* After a flush the sender thread is asleep (it sleeps before it releases the lock). */
    size_t len = make(buf, 0);
    CHECK(pbx_dgram_send(s, "127.0.0.1", port, buf, len, 1000) == PBX_OK);
    CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);
    CHECK(drain(rx, 0, 1, &bad) == 1);
    for (int i = 1; i <= 3; i++) {
        len = make(buf, i);
        CHECK(pbx_dgram_queue(s, "127.0.0.1", port, buf, len, 1000) == PBX_OK);
    }
    struct pollfd p = {.fd = rx, .events = POLLIN};
    CHECK(poll(&p, 1, 100) == 0);  /* nothing left before the wake */
    pbx_dgram_stats_t st;
    pbx_dgram_sender_get_stats(s, &st);
    CHECK(st.backlog == 3);
    pbx_dgram_wake(s);
    CHECK(drain(rx, 1, 3, &bad) == 3);
    /* More than the queue holds, without a wake: a full queue wakes the sender itself. */
    for (int i = 4; i < 104; i++) {
        len = make(buf, i);
        CHECK(pbx_dgram_queue(s, "127.0.0.1", port, buf, len, 2000) == PBX_OK);
    }
    CHECK(pbx_dgram_sender_flush(s, 2000) == PBX_OK);  /* flush wakes it for the rest */
    CHECK(drain(rx, 4, 100, &bad) == 100);
    CHECK(bad == 0);
    pbx_dgram_sender_get_stats(s, &st);
    CHECK(st.dropped == 0 && st.sent == 104);
    pbx_dgram_wake(NULL);
    pbx_dgram_sender_close(s);
    close(tx);
    close(rx);
}

int main(void)
{
    test_order_and_content();
    test_close_sends_the_queue();
    test_queue_waits_for_wake();
    test_dual_stack();
    test_bad_input_and_refusals();
    if (fails) {
        fprintf(stderr, "test_dgram: %d check(s) failed\n", fails);
        return 1;
    }
    printf("test_dgram: ok\n");
    return 0;
}
