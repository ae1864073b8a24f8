/* WAV (RIFF) headers for the recorder, and the repair of interrupted recordings. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_int.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

void pbx__wav_header(uint8_t out[44], int channels, int rate, uint32_t data_bytes)
{
    int block = channels * 2;
    memcpy(out, "RIFF", 4);
    put32(out + 4, data_bytes > 0xFFFFFFFFu - 36 ? 0xFFFFFFFFu : 36 + data_bytes);
    memcpy(out + 8, "WAVEfmt ", 8);
    put32(out + 16, 16);
    put16(out + 20, 1);
    put16(out + 22, (uint16_t)channels);
    put32(out + 24, (uint32_t)rate);
    put32(out + 28, (uint32_t)(rate * block));
    put16(out + 32, (uint16_t)block);
    put16(out + 34, 16);
    memcpy(out + 36, "data", 4);
    put32(out + 40, data_bytes);
}

static int pwrite_all(int fd, const uint8_t *b, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, b, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/*
 * Walk the chunks: the data chunk of a recording is the last one, so when its declared
 * size disagrees with what the file holds, the rest of the file is the data.
 */
int pbx_wav_repair(const char *path, pbx_wav_info_t *info)
{
    if (!path || !info)
        return PBX_EINVAL;
    memset(info, 0, sizeof(*info));
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PBX_ENOTFOUND : PBX_EIO;
    int rc = PBX_EFORMAT;
    struct stat sb;
    uint8_t h[12], ch[8], fmt[16];
    if (fstat(fd, &sb) < 0) {
        rc = PBX_EIO;
        goto out;
    }
    uint64_t flen = (uint64_t)sb.st_size;
    if (flen < 12 || pread(fd, h, 12, 0) != 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4))
        goto out;
    uint64_t off = 12, data_off = 0, data_declared = 0;
    int have_fmt = 0;
    while (off + 8 <= flen) {
        if (pread(fd, ch, 8, (off_t)off) != 8)
            goto out;
        uint32_t sz = get32(ch + 4);
        if (!memcmp(ch, "fmt ", 4)) {
            if (sz < 16 || off + 8 + 16 > flen || pread(fd, fmt, 16, (off_t)(off + 8)) != 16)
                goto out;
            int tag = get16(fmt);
            info->channels = get16(fmt + 2);
            info->sample_rate = (int)get32(fmt + 4);
            info->bits_per_sample = get16(fmt + 14);
            if ((tag != 1 && tag != 0xFFFE) || info->channels < 1 || info->bits_per_sample < 8 ||
                info->bits_per_sample % 8 || info->sample_rate < 1)
                goto out;
            have_fmt = 1;
        } else if (!memcmp(ch, "data", 4)) {
            data_off = off + 8;
            data_declared = sz;
            break;
        }
        off += 8 + (uint64_t)sz + (sz & 1);
    }
    if (!have_fmt || !data_off)
        goto out;
    uint64_t block = (uint64_t)info->channels * (uint64_t)(info->bits_per_sample / 8);
    uint64_t avail = flen - data_off;
    uint64_t data = avail;
    int trailing_chunk = 0;
    if (data_declared <= avail && data_declared != avail) {
        /* Another chunk may follow a correct data chunk (LIST, ...): keep it if it parses. */
        uint64_t next = data_off + data_declared + (data_declared & 1);
        if (next + 8 <= flen && pread(fd, ch, 8, (off_t)next) == 8) {
            int printable = 1;
            for (int i = 0; i < 4; i++)
                if (ch[i] < 0x20 || ch[i] > 0x7E)
                    printable = 0;
            if (printable && next + 8 + get32(ch + 4) <= flen) {
                data = data_declared;
                trailing_chunk = 1;
            }
        }
    }
    if (!trailing_chunk) {
        uint64_t cut = data % block;
        if (cut) {
            if (ftruncate(fd, (off_t)(flen - cut)) < 0) {
                rc = PBX_EIO;
                goto out;
            }
            info->truncated_bytes = cut;
            info->changed = 1;
            data -= cut;
            flen -= cut;
        }
        if (data > 0xFFFFFFFFu - 36 - data_off)
            data = (0xFFFFFFFFu - 36 - data_off) / block * block;
    }
    info->data_bytes = data;
    uint32_t riff = (uint32_t)(flen - 8 > 0xFFFFFFFFu ? 0xFFFFFFFFu : flen - 8);
    uint8_t b[4];
    if (get32(h + 4) != riff) {
        put32(b, riff);
        if (pwrite_all(fd, b, 4, 4) < 0) {
            rc = PBX_EIO;
            goto out;
        }
        info->changed = 1;
    }
    if (data_declared != data) {
        put32(b, (uint32_t)data);
        if (pwrite_all(fd, b, 4, (off_t)(data_off - 4)) < 0) {
            rc = PBX_EIO;
            goto out;
        }
        info->changed = 1;
    }
    if (info->changed && fsync(fd) < 0) {
        rc = PBX_EIO;
        goto out;
    }
    rc = PBX_OK;
out:
    close(fd);
    return rc;
}
