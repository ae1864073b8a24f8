/*
 * In-kernel relay of RTP (kfwd.c): a tc program (eBPF, attached with tcx at ingress) that
 * forwards the audio packets of a relaying bridge inside the kernel, the way rtpengine's kernel
 * module does, so a relayed packet costs no system call and no wake-up of the engine.
 *
 * The engine keeps the decisions: it relays the first packets of each direction itself, and only
 * then installs an entry keyed by the receiving channel's local port, holding the latched source
 * to accept, the offsets of its own SSRC/sequence/timestamp rewrite and where to send. Anything
 * the entry does not match exactly (another source, SSRC or payload type, RFC 4733 events,
 * CSRC/extension/padding, IPv6, fragments, more than a tick's flood budget) goes up to the
 * channel's socket as before. Counters and the last rewritten sequence/timestamp come back
 * through the map, so the engine's statistics, inactivity timer and output numbering continue
 * when it takes the stream back.
 */
#ifndef PBX_KFWD_H
#define PBX_KFWD_H

#include <stdint.h>

/* Map value; offsets are used by the hand-assembled program (kfwd.c), keep them in step. */
typedef struct {
    uint32_t src_ip;        /*  0 accepted source, network order */
    uint32_t local_ip;      /*  4 the channel's address, 0 = any */
    uint32_t in_ssrc;       /*  8 network order */
    uint16_t src_port;      /* 12 network order */
    uint8_t pt;             /* 14 payload type accepted (and sent: no transcoding here) */
    uint8_t flags;          /* 15 KFWD_LOCAL: deliver locally, from loopback only */
    uint32_t out_saddr;     /* 16 network order */
    uint32_t out_daddr;     /* 20 */
    uint16_t out_sport;     /* 24 network order; with out_dport the UDP ports word */
    uint16_t out_dport;     /* 26 */
    uint32_t out_ssrc;      /* 28 network order */
    uint32_t ts_off;        /* 32 host order: out = in + off */
    uint16_t seq_off;       /* 36 */
    uint16_t last_seq;      /* 38 written by the program: last sequence number sent */
    uint32_t last_ts;       /* 40 written by the program */
    uint32_t out_ifindex;   /* 44 where to send (not KFWD_LOCAL) */
    uint32_t win_limit;     /* 48 packets per 20 ms window before the rest go to the engine */
    uint32_t win_count;     /* 52 */
    uint64_t win_start;     /* 56 ns */
    uint64_t packets;       /* 64 forwarded */
    uint64_t bytes;         /* 72 RTP bytes forwarded */
    uint64_t last_ns;       /* 80 CLOCK_MONOTONIC of the last forwarded packet */
} pbx_kfwd_val_t;

#define KFWD_LOCAL 1

typedef struct {
    int map_fd, prog_fd;
    int links[16];
    int n_links;
    int err;                /* errno of the failed set-up, 0 when on */
} pbx_kfwd_t;

/* Load the program and attach it to the interfaces that can carry RTP for bind_ip ("0.0.0.0":
 * every interface that is up). Returns 0, or -1 with k->err set; the engine then relays in
 * user space as before. */
int pbx__kfwd_open(pbx_kfwd_t *k, const char *bind_ip, int max_entries);
void pbx__kfwd_close(pbx_kfwd_t *k);
int pbx__kfwd_put(pbx_kfwd_t *k, uint16_t port, const pbx_kfwd_val_t *v);
int pbx__kfwd_get(pbx_kfwd_t *k, uint16_t port, pbx_kfwd_val_t *v);
int pbx__kfwd_del(pbx_kfwd_t *k, uint16_t port);
/* Read the entry's last counters and delete it. */
int pbx__kfwd_take(pbx_kfwd_t *k, uint16_t port, pbx_kfwd_val_t *v);
/* Where a packet from the box to dst (network order) leaves: its source address and interface,
 * and whether dst is the box itself on loopback. */
int pbx__kfwd_route(uint32_t dst, uint16_t dport, uint32_t *src, uint32_t *ifindex, int *local);
/* Time the kernel has spent in the program and how often it ran (every packet on the attached
 * interfaces), counted only while the sysctl kernel.bpf_stats_enabled is 1; 0 otherwise. */
int pbx__kfwd_prog_stats(pbx_kfwd_t *k, uint64_t *run_ns, uint64_t *runs);

#endif
