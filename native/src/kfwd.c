/* In-kernel RTP relay: the tc program, its map and its attachment (see kfwd.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kfwd.h"

#ifndef BPF_TCX_INGRESS
#define BPF_TCX_INGRESS 46
#endif
#define TCX_NEXT (-1)
#define TCX_PASS 0
#define FN_MAP_LOOKUP 1
#define FN_KTIME_GET_NS 5
#define FN_L3_CSUM_REPLACE 10
#define FN_L4_CSUM_REPLACE 11
#define FN_CSUM_DIFF 28
#define FN_REDIRECT_NEIGH 152
#define F_PSEUDO_HDR 0x10
#define F_MARK_MANGLED_0 0x20

#define V(f) ((int16_t)offsetof(pbx_kfwd_val_t, f))
#define SKB(f) ((int16_t)offsetof(struct __sk_buff, f))

_Static_assert(offsetof(pbx_kfwd_val_t, out_dport) == offsetof(pbx_kfwd_val_t, out_sport) + 2, "ports word");
_Static_assert(sizeof(pbx_kfwd_val_t) == 88, "map value layout");

static long sys_bpf(int cmd, union bpf_attr *a)
{
    return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

/* ---- a tiny assembler with forward labels ---- */

enum { L_NEXT, L_ANYLOCAL, L_NEWWIN, L_COUNTED, L_FROM_OK, L_REDIRECT, N_LABELS };
#define MAX_INSNS 200

typedef struct {
    struct bpf_insn in[MAX_INSNS];
    int n;
    int at[N_LABELS];
    int fix[64], fix_label[64], nfix;
} bpf_asm_t;

static void op(bpf_asm_t *a, uint8_t code, int dst, int src, int16_t off, int32_t imm)
{
    if (a->n >= MAX_INSNS)
        return;
    struct bpf_insn *i = &a->in[a->n++];
    memset(i, 0, sizeof(*i));
    i->code = code;
    i->dst_reg = (uint8_t)dst;
    i->src_reg = (uint8_t)src;
    i->off = off;
    i->imm = imm;
}

static void jmp(bpf_asm_t *a, uint8_t code, int dst, int src, int32_t imm, int label)
{
    if (a->nfix < 64) {
        a->fix[a->nfix] = a->n;
        a->fix_label[a->nfix++] = label;
    }
    op(a, BPF_JMP | code, dst, src, 0, imm);
}

#define MOVR(d, s) op(&a, BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOVI(d, i) op(&a, BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADDI(d, i) op(&a, BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define ADDR(d, s) op(&a, BPF_ALU64 | BPF_ADD | BPF_X, d, s, 0, 0)
#define ADD32R(d, s) op(&a, BPF_ALU | BPF_ADD | BPF_X, d, s, 0, 0)
#define SUBR(d, s) op(&a, BPF_ALU64 | BPF_SUB | BPF_X, d, s, 0, 0)
#define ANDI(d, i) op(&a, BPF_ALU64 | BPF_AND | BPF_K, d, 0, 0, i)
#define BE(d, bits) op(&a, BPF_ALU | BPF_END | BPF_TO_BE, d, 0, 0, bits)
#define LDX(sz, d, s, o) op(&a, BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, o, s) op(&a, BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define STI(sz, d, o, i) op(&a, BPF_ST | BPF_MEM | (sz), d, 0, o, i)
#define XADD64(d, o, s) op(&a, BPF_STX | BPF_ATOMIC | BPF_DW, d, s, o, BPF_ADD)
#define CALL(fn) op(&a, BPF_JMP | BPF_CALL, 0, 0, 0, fn)
#define EXIT() op(&a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define JNEI(d, i, l) jmp(&a, BPF_JNE | BPF_K, d, 0, i, l)
#define JEQI(d, i, l) jmp(&a, BPF_JEQ | BPF_K, d, 0, i, l)
#define JGTI(d, i, l) jmp(&a, BPF_JGT | BPF_K, d, 0, i, l)
#define JLTI(d, i, l) jmp(&a, BPF_JLT | BPF_K, d, 0, i, l)
#define JNER(d, s, l) jmp(&a, BPF_JNE | BPF_X, d, s, 0, l)
#define JGTR(d, s, l) jmp(&a, BPF_JGT | BPF_X, d, s, 0, l)
#define JA(l) jmp(&a, BPF_JA, 0, 0, 0, l)
#define LABEL(l) (a.at[l] = a.n)

/* Packet offsets on an Ethernet-framed IPv4 packet without options (lo has a zero MAC header). */
enum {
    ETH_PROTO = 12, IP_VIHL = 14, IP_TOTLEN = 16, IP_FRAG = 20, IP_PROTO = 23, IP_CSUM = 24,
    IP_SADDR = 26, IP_DADDR = 30, UDP_SPORT = 34, UDP_DPORT = 36, UDP_LEN = 38, UDP_CSUM = 40,
    RTP_B0 = 42, RTP_B1 = 43, RTP_SEQ = 44, RTP_TS = 46, RTP_SSRC = 50, HDRS_END = 54
};
/* Stack: key, now, then the words whose checksum changes, old and new. */
enum { S_KEY = -4, S_NOW = -16, S_NEW_R = -32, S_OLD_R = -48, S_NEW_A = -56, S_OLD_A = -64,
       S_DIFF_A = -72, S_DIFF_R = -80 };

static int assemble(bpf_asm_t *out, int map_fd)
{
    bpf_asm_t a;
    memset(&a, 0, sizeof(a));
    for (int i = 0; i < N_LABELS; i++)
        a.at[i] = -1;

    MOVR(6, 1);
    LDX(BPF_W, 7, 6, SKB(data));
    LDX(BPF_W, 8, 6, SKB(data_end));
    MOVR(2, 7);
    ADDI(2, HDRS_END);
    JGTR(2, 8, L_NEXT);
    LDX(BPF_H, 2, 7, ETH_PROTO);
    JNEI(2, htons(0x0800), L_NEXT);
    LDX(BPF_B, 2, 7, IP_VIHL);
    JNEI(2, 0x45, L_NEXT);
    LDX(BPF_B, 2, 7, IP_PROTO);
    JNEI(2, 17, L_NEXT);
    LDX(BPF_H, 2, 7, IP_FRAG);
    ANDI(2, htons(0x3fff));             /* MF or an offset: a fragment */
    JNEI(2, 0, L_NEXT);
    LDX(BPF_B, 2, 7, RTP_B0);
    JNEI(2, 0x80, L_NEXT);              /* V=2 without padding, extension or CSRCs */
    /* IP and UDP lengths agree with the frame; 1..480 bytes of audio */
    LDX(BPF_H, 2, 7, IP_TOTLEN);
    BE(2, 16);
    LDX(BPF_W, 3, 6, SKB(len));
    MOVR(4, 2);
    ADDI(4, 14);
    JNER(4, 3, L_NEXT);
    LDX(BPF_H, 3, 7, UDP_LEN);
    BE(3, 16);
    ADDI(3, 20);
    JNER(3, 2, L_NEXT);
    JLTI(2, 20 + 8 + 12 + 1, L_NEXT);
    JGTI(2, 20 + 8 + 12 + 480, L_NEXT);
    /* the entry of the receiving port */
    LDX(BPF_H, 2, 7, UDP_DPORT);
    STX(BPF_W, 10, S_KEY, 2);
    op(&a, BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd);
    op(&a, 0, 0, 0, 0, 0);
    MOVR(2, 10);
    ADDI(2, S_KEY);
    CALL(FN_MAP_LOOKUP);
    JEQI(0, 0, L_NEXT);
    MOVR(9, 0);
    LDX(BPF_W, 2, 7, IP_SADDR);
    LDX(BPF_W, 3, 9, V(src_ip));
    JNER(2, 3, L_NEXT);
    LDX(BPF_H, 2, 7, UDP_SPORT);
    LDX(BPF_H, 3, 9, V(src_port));
    JNER(2, 3, L_NEXT);
    LDX(BPF_W, 3, 9, V(local_ip));
    JEQI(3, 0, L_ANYLOCAL);
    LDX(BPF_W, 2, 7, IP_DADDR);
    JNER(2, 3, L_NEXT);
    LABEL(L_ANYLOCAL);
    LDX(BPF_B, 2, 7, RTP_B1);
    ANDI(2, 0x7f);
    LDX(BPF_B, 3, 9, V(pt));
    JNER(2, 3, L_NEXT);
    LDX(BPF_W, 2, 7, RTP_SSRC);
    LDX(BPF_W, 3, 9, V(in_ssrc));
    JNER(2, 3, L_NEXT);
    /* local delivery only from loopback (127.0.0.0/8 arriving elsewhere is a martian) */
    LDX(BPF_B, 2, 9, V(flags));
    ANDI(2, KFWD_LOCAL);
    JEQI(2, 0, L_FROM_OK);
    LDX(BPF_W, 2, 6, SKB(ingress_ifindex));
    JNEI(2, 1, L_NEXT);
    LABEL(L_FROM_OK);
    /* flood budget per 20 ms window: the rest goes to the engine, which pauses the socket */
    CALL(FN_KTIME_GET_NS);
    STX(BPF_DW, 10, S_NOW, 0);
    LDX(BPF_DW, 2, 9, V(win_start));
    MOVR(3, 0);
    SUBR(3, 2);
    JGTI(3, 20000000, L_NEWWIN);
    LDX(BPF_W, 2, 9, V(win_count));
    ADDI(2, 1);
    STX(BPF_W, 9, V(win_count), 2);
    LDX(BPF_W, 3, 9, V(win_limit));
    JGTR(2, 3, L_NEXT);
    JA(L_COUNTED);
    LABEL(L_NEWWIN);
    STX(BPF_DW, 9, V(win_start), 0);
    STI(BPF_W, 9, V(win_count), 1);
    LABEL(L_COUNTED);
    /* the words whose checksum changes, before ... */
    static const int16_t addr_w[2] = {IP_SADDR, IP_DADDR};
    static const int16_t rest_w[4] = {UDP_SPORT, RTP_B0, RTP_TS, RTP_SSRC};
    for (int i = 0; i < 2; i++) {
        LDX(BPF_W, 2, 7, addr_w[i]);
        STX(BPF_W, 10, (int16_t)(S_OLD_A + 4 * i), 2);
    }
    for (int i = 0; i < 4; i++) {
        LDX(BPF_W, 2, 7, rest_w[i]);
        STX(BPF_W, 10, (int16_t)(S_OLD_R + 4 * i), 2);
    }
    /* ... the rewrite: addresses, ports, our SSRC and numbering (the engine's offsets) ... */
    LDX(BPF_W, 2, 9, V(out_saddr));
    STX(BPF_W, 7, IP_SADDR, 2);
    LDX(BPF_W, 2, 9, V(out_daddr));
    STX(BPF_W, 7, IP_DADDR, 2);
    LDX(BPF_W, 2, 9, V(out_sport));
    STX(BPF_W, 7, UDP_SPORT, 2);
    LDX(BPF_H, 2, 7, RTP_SEQ);
    BE(2, 16);
    LDX(BPF_H, 3, 9, V(seq_off));
    ADDR(2, 3);
    ANDI(2, 0xffff);
    STX(BPF_H, 9, V(last_seq), 2);
    BE(2, 16);
    STX(BPF_H, 7, RTP_SEQ, 2);
    LDX(BPF_W, 2, 7, RTP_TS);
    BE(2, 32);
    LDX(BPF_W, 3, 9, V(ts_off));
    ADD32R(2, 3);
    STX(BPF_W, 9, V(last_ts), 2);
    BE(2, 32);
    STX(BPF_W, 7, RTP_TS, 2);
    LDX(BPF_W, 2, 9, V(out_ssrc));
    STX(BPF_W, 7, RTP_SSRC, 2);
    /* ... and after */
    for (int i = 0; i < 2; i++) {
        LDX(BPF_W, 2, 7, addr_w[i]);
        STX(BPF_W, 10, (int16_t)(S_NEW_A + 4 * i), 2);
    }
    for (int i = 0; i < 4; i++) {
        LDX(BPF_W, 2, 7, rest_w[i]);
        STX(BPF_W, 10, (int16_t)(S_NEW_R + 4 * i), 2);
    }
    /* counters */
    MOVI(2, 1);
    XADD64(9, V(packets), 2);
    LDX(BPF_W, 2, 6, SKB(len));
    ADDI(2, -RTP_B0);
    XADD64(9, V(bytes), 2);
    LDX(BPF_DW, 2, 10, S_NOW);
    STX(BPF_DW, 9, V(last_ns), 2);
    /* checksums: the IP header for the addresses; UDP (RFC 768 pseudo-header) for the addresses
     * as pseudo-header fields and for ports and RTP words as data. The helpers handle every
     * ip_summed state (CHECKSUM_PARTIAL on loopback only needs the pseudo-header part) and a
     * UDP checksum of 0 (none) stays 0. */
    MOVR(1, 10);
    ADDI(1, S_OLD_A);
    MOVI(2, 8);
    MOVR(3, 10);
    ADDI(3, S_NEW_A);
    MOVI(4, 8);
    MOVI(5, 0);
    CALL(FN_CSUM_DIFF);
    STX(BPF_DW, 10, S_DIFF_A, 0);
    MOVR(1, 10);
    ADDI(1, S_OLD_R);
    MOVI(2, 16);
    MOVR(3, 10);
    ADDI(3, S_NEW_R);
    MOVI(4, 16);
    MOVI(5, 0);
    CALL(FN_CSUM_DIFF);
    STX(BPF_DW, 10, S_DIFF_R, 0);
    MOVR(1, 6);
    MOVI(2, IP_CSUM);
    MOVI(3, 0);
    LDX(BPF_DW, 4, 10, S_DIFF_A);
    MOVI(5, 0);
    CALL(FN_L3_CSUM_REPLACE);
    MOVR(1, 6);
    MOVI(2, UDP_CSUM);
    MOVI(3, 0);
    LDX(BPF_DW, 4, 10, S_DIFF_A);
    MOVI(5, F_PSEUDO_HDR | F_MARK_MANGLED_0);
    CALL(FN_L4_CSUM_REPLACE);
    MOVR(1, 6);
    MOVI(2, UDP_CSUM);
    MOVI(3, 0);
    LDX(BPF_DW, 4, 10, S_DIFF_R);
    MOVI(5, F_MARK_MANGLED_0);
    CALL(FN_L4_CSUM_REPLACE);
    LDX(BPF_B, 2, 9, V(flags));
    ANDI(2, KFWD_LOCAL);
    JEQI(2, 0, L_REDIRECT);
    MOVI(0, TCX_PASS);
    EXIT();
    LABEL(L_REDIRECT);
    /* out of the interface towards the far end; the kernel resolves the next hop's MAC */
    LDX(BPF_W, 1, 9, V(out_ifindex));
    MOVI(2, 0);
    MOVI(3, 0);
    MOVI(4, 0);
    CALL(FN_REDIRECT_NEIGH);
    EXIT();
    LABEL(L_NEXT);
    MOVI(0, TCX_NEXT);
    EXIT();

    if (a.n >= MAX_INSNS || a.nfix >= 64)
        return -1;
    for (int i = 0; i < a.nfix; i++) {
        int target = a.at[a.fix_label[i]];
        if (target < 0)
            return -1;
        a.in[a.fix[i]].off = (int16_t)(target - a.fix[i] - 1);
    }
    *out = a;
    return 0;
}

static int attach(pbx_kfwd_t *k, unsigned ifindex)
{
    if (k->n_links >= (int)(sizeof(k->links) / sizeof(k->links[0])))
        return 0;
    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    at.link_create.prog_fd = (uint32_t)k->prog_fd;
    at.link_create.target_ifindex = ifindex;
    at.link_create.attach_type = BPF_TCX_INGRESS;
    int fd = (int)sys_bpf(BPF_LINK_CREATE, &at);
    if (fd < 0)
        return -1;
    k->links[k->n_links++] = fd;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void pbx__kfwd_close(pbx_kfwd_t *k)
{
    for (int i = 0; i < k->n_links; i++)
        close(k->links[i]);
    k->n_links = 0;
    close_fd(&k->prog_fd);
    close_fd(&k->map_fd);
}

int pbx__kfwd_prog_stats(pbx_kfwd_t *k, uint64_t *run_ns, uint64_t *runs)
{
    *run_ns = *runs = 0;
    if (k->prog_fd < 0)
        return -1;
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.info.bpf_fd = (uint32_t)k->prog_fd;
    a.info.info_len = sizeof(info);
    a.info.info = (uint64_t)(uintptr_t)&info;
    if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0)
        return -1;
    *run_ns = info.run_time_ns;
    *runs = info.run_cnt;
    return 0;
}

static int fail(pbx_kfwd_t *k, int err)
{
    pbx__kfwd_close(k);
    k->err = err ? err : EINVAL;
    return -1;
}

int pbx__kfwd_open(pbx_kfwd_t *k, const char *bind_ip, int max_entries)
{
    memset(k, 0, sizeof(*k));
    k->map_fd = k->prog_fd = -1;
    struct in_addr bind4;
    if (!bind_ip || inet_pton(AF_INET, bind_ip, &bind4) != 1)
        return fail(k, EAFNOSUPPORT);

    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    at.map_type = BPF_MAP_TYPE_HASH;
    at.key_size = sizeof(uint32_t);
    at.value_size = sizeof(pbx_kfwd_val_t);
    at.max_entries = (uint32_t)(max_entries > 0 ? max_entries : 1);
    snprintf(at.map_name, sizeof(at.map_name), "pbx_rtp_fwd");
    k->map_fd = (int)sys_bpf(BPF_MAP_CREATE, &at);
    if (k->map_fd < 0)
        return fail(k, errno);

    bpf_asm_t prog;
    if (assemble(&prog, k->map_fd) < 0)
        return fail(k, EINVAL);
    memset(&at, 0, sizeof(at));
    at.prog_type = BPF_PROG_TYPE_SCHED_CLS;
    at.insns = (uint64_t)(uintptr_t)prog.in;
    at.insn_cnt = (uint32_t)prog.n;
    at.license = (uint64_t)(uintptr_t)"Dual BSD/GPL";
    snprintf(at.prog_name, sizeof(at.prog_name), "pbx_rtp_fwd");
    k->prog_fd = (int)sys_bpf(BPF_PROG_LOAD, &at);
    if (k->prog_fd < 0) {
        int err = errno;
        if (getenv("PBX_KFWD_DEBUG")) {
            static char log[65536];
            memset(&at, 0, sizeof(at));
            at.prog_type = BPF_PROG_TYPE_SCHED_CLS;
            at.insns = (uint64_t)(uintptr_t)prog.in;
            at.insn_cnt = (uint32_t)prog.n;
            at.license = (uint64_t)(uintptr_t)"Dual BSD/GPL";
            at.log_buf = (uint64_t)(uintptr_t)log;
            at.log_size = sizeof(log);
            at.log_level = 1;
            sys_bpf(BPF_PROG_LOAD, &at);
            fprintf(stderr, "kfwd: program refused (%s):\n%s\n", strerror(err), log);
        }
        return fail(k, err);
    }

    if (bind4.s_addr == htonl(INADDR_LOOPBACK) || (ntohl(bind4.s_addr) >> 24) == 127) {
        if (attach(k, if_nametoindex("lo")) < 0)
            return fail(k, errno);
        return 0;
    }
    struct if_nameindex *ifs = if_nameindex();
    if (!ifs)
        return fail(k, errno);
    int err = 0;
    for (struct if_nameindex *i = ifs; i->if_index != 0; i++)
        if (attach(k, i->if_index) < 0 && i->if_index == if_nametoindex("lo"))
            err = errno;
    if_freenameindex(ifs);
    if (err || k->n_links == 0)
        return fail(k, err ? err : ENODEV);
    return 0;
}

static int map_op(pbx_kfwd_t *k, int cmd, uint16_t port, const pbx_kfwd_val_t *v)
{
    uint32_t key = htons(port);
    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    at.map_fd = (uint32_t)k->map_fd;
    at.key = (uint64_t)(uintptr_t)&key;
    at.value = (uint64_t)(uintptr_t)v;
    at.flags = cmd == BPF_MAP_UPDATE_ELEM ? BPF_ANY : 0;
    return sys_bpf(cmd, &at) < 0 ? -1 : 0;
}

int pbx__kfwd_put(pbx_kfwd_t *k, uint16_t port, const pbx_kfwd_val_t *v)
{
    return map_op(k, BPF_MAP_UPDATE_ELEM, port, v);
}

int pbx__kfwd_get(pbx_kfwd_t *k, uint16_t port, pbx_kfwd_val_t *v)
{
    return map_op(k, BPF_MAP_LOOKUP_ELEM, port, v);
}

int pbx__kfwd_del(pbx_kfwd_t *k, uint16_t port)
{
    return map_op(k, BPF_MAP_DELETE_ELEM, port, NULL);
}

int pbx__kfwd_take(pbx_kfwd_t *k, uint16_t port, pbx_kfwd_val_t *v)
{
    if (map_op(k, BPF_MAP_LOOKUP_AND_DELETE_ELEM, port, v) == 0)
        return 0;
    /* before Linux 5.14 hash maps cannot do both at once: a packet may slip in between */
    int rc = pbx__kfwd_get(k, port, v);
    pbx__kfwd_del(k, port);
    return rc;
}

int pbx__kfwd_route(uint32_t dst, uint16_t dport, uint32_t *src, uint32_t *ifindex, int *local)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = dport, .sin_addr.s_addr = dst};
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    int rc = connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 &&
             getsockname(fd, (struct sockaddr *)&me, &len) == 0 ? 0 : -1;
    close(fd);
    if (rc < 0)
        return -1;
    *src = me.sin_addr.s_addr;
    *ifindex = 0;
    *local = (ntohl(dst) >> 24) == 127;
    if (*local)
        return (ntohl(me.sin_addr.s_addr) >> 24) == 127 ? 0 : -1;
    struct ifaddrs *ifa;
    if (getifaddrs(&ifa) < 0)
        return -1;
    rc = -1;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
        if (a == dst) {         /* the box's own address: not through an interface's egress */
            rc = -1;
            break;
        }
        if (a == me.sin_addr.s_addr && !(i->ifa_flags & IFF_LOOPBACK) && *ifindex == 0) {
            *ifindex = if_nametoindex(i->ifa_name);
            rc = *ifindex ? 0 : -1;
        }
    }
    freeifaddrs(ifa);
    return rc;
}
