/*
 * A minimal io_uring used for one thing: handing the kernel every packet the engine sends
 * in one wake-up (all channels, all sockets) in a single system call. Plain sendmsg() per
 * packet costs a system call each and, on loopback or a busy box, a preemption each time
 * the send wakes the receiving process; one io_uring_enter() per wake-up pays that once.
 *
 * Raw system calls (no liburing): the rings are mapped as io_uring_setup(2) describes.
 * Every send is submitted with MSG_DONTWAIT, so the kernel completes it inline (a full
 * socket buffer completes with -EAGAIN instead of waiting); the caller still waits for all
 * completions before reusing its buffers. Where io_uring is missing or forbidden (old
 * kernel, seccomp filter, sysctl kernel.io_uring_disabled, qemu-user), init fails and the
 * engine falls back to sendmsg/sendmmsg.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine_int.h"

#if defined(__NR_io_uring_setup) && defined(__NR_io_uring_enter)

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

int pbx__uring_init(pbx_uring_t *u, unsigned entries)
{
    struct io_uring_params p;
    memset(u, 0, sizeof(*u));
    u->fd = -1;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int fd = sys_setup(entries, &p);
    if (fd < 0 && errno == EINVAL) {
        /* kernels before 6.0 know neither flag */
        memset(&p, 0, sizeof(p));
        fd = sys_setup(entries, &p);
    }
    if (fd < 0)
        return -1;
    u->fd = fd;
    u->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single && u->cq_len > u->sq_len)
        u->sq_len = u->cq_len;
    u->sq_map = mmap(NULL, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED) {
        u->sq_map = NULL;
        goto fail;
    }
    if (single) {
        u->cq_map = u->sq_map;
    } else {
        u->cq_map = mmap(NULL, u->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (u->cq_map == MAP_FAILED) {
            u->cq_map = NULL;
            goto fail;
        }
    }
    u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED) {
        u->sqes = NULL;
        goto fail;
    }
    uint8_t *sq = u->sq_map, *cq = u->cq_map;
    u->sq_head = (unsigned *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->sq_entries = p.sq_entries;
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = cq + p.cq_off.cqes;
    /* the SQ index array never changes: slot i holds SQE i */
    for (unsigned i = 0; i < p.sq_entries; i++)
        u->sq_array[i] = i;
    return 0;
fail:
    pbx__uring_fini(u);
    return -1;
}

void pbx__uring_fini(pbx_uring_t *u)
{
    if (u->sqes)
        munmap(u->sqes, u->sqes_len);
    if (u->cq_map && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_len);
    if (u->sq_map)
        munmap(u->sq_map, u->sq_len);
    if (u->fd >= 0)
        close(u->fd);
    memset(u, 0, sizeof(*u));
    u->fd = -1;
}

int pbx__uring_sendmsgs(pbx_uring_t *u, const int *fds, struct mmsghdr *msgs, int n, int *res)
{
    if (u->fd < 0 || u->broken || n <= 0 || (unsigned)n > u->sq_entries)
        return -1;
    unsigned tail = *u->sq_tail;
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *s = (struct io_uring_sqe *)u->sqes + ((tail + (unsigned)i) & u->sq_mask);
        memset(s, 0, sizeof(*s));
        s->opcode = IORING_OP_SENDMSG;
        s->fd = fds[i];
        s->addr = (uint64_t)(uintptr_t)&msgs[i].msg_hdr;
        s->msg_flags = MSG_DONTWAIT;
        s->user_data = (uint64_t)i;
        res[i] = -ECANCELED;
    }
    __atomic_store_n(u->sq_tail, tail + (unsigned)n, __ATOMIC_RELEASE);
    unsigned submitted = 0, reaped = 0;
    int tries = 0;
    while (reaped < submitted || submitted < (unsigned)n) {
        int r = sys_enter(u->fd, (unsigned)n - submitted, (unsigned)n - reaped, IORING_ENTER_GETEVENTS);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EBUSY) && ++tries < 100)
            continue;
        if (r < 0 || (r == 0 && submitted < (unsigned)n)) {
            /* The ring cannot be trusted any more (SQEs may still sit in it): the caller
             * closes it. Nothing submitted means nothing sent: the caller may resend. */
            u->broken = 1;
            return submitted == 0 ? -1 : 0;
        }
        submitted += (unsigned)r;
        unsigned head = *u->cq_head, ctail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != ctail; head++) {
            const struct io_uring_cqe *c = (const struct io_uring_cqe *)u->cqes + (head & u->cq_mask);
            if (c->user_data < (uint64_t)n) {
                res[c->user_data] = c->res;
                reaped++;
            }
        }
        __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
    }
    u->enters++;
    return 0;
}

#else

int pbx__uring_init(pbx_uring_t *u, unsigned entries)
{
    (void)entries;
    memset(u, 0, sizeof(*u));
    u->fd = -1;
    return -1;
}

void pbx__uring_fini(pbx_uring_t *u)
{
    u->fd = -1;
}

int pbx__uring_sendmsgs(pbx_uring_t *u, const int *fds, struct mmsghdr *msgs, int n, int *res)
{
    (void)u, (void)fds, (void)msgs, (void)n, (void)res;
    return -1;
}

#endif
