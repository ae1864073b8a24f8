/* WAV repair on files an interrupted recorder leaves behind. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void header(uint8_t h[44], int ch, uint32_t data)
{
    memcpy(h, "RIFF", 4);
    put32(h + 4, 36 + data);
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    h[20] = 1; h[21] = 0; h[22] = (uint8_t)ch; h[23] = 0;
    put32(h + 24, 8000);
    put32(h + 28, 8000 * 2 * (uint32_t)ch);
    h[32] = (uint8_t)(2 * ch); h[33] = 0; h[34] = 16; h[35] = 0;
    memcpy(h + 36, "data", 4);
    put32(h + 40, data);
}

static char path[64];

static void write_file(const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static size_t read_file(uint8_t *b, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    return n;
}

int main(void)
{
    static uint8_t buf[44 + 32003], back[sizeof(buf)];
    pbx_wav_info_t info;
    snprintf(path, sizeof(path), "/tmp/pbx_test_wav_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    for (size_t i = 44; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7);
    /* header never updated (sizes 0), 8000 stereo frames + 3 bytes of a torn frame */
    header(buf, 2, 0);
    write_file(buf, sizeof(buf));
    CHECK(pbx_wav_repair(path, &info) == PBX_OK);
    CHECK(info.changed && info.truncated_bytes == 3 && info.data_bytes == 32000 && info.channels == 2);
    size_t n = read_file(back, sizeof(back));
    CHECK(n == 44 + 32000 && get32(back + 40) == 32000 && get32(back + 4) == 36 + 32000);
    CHECK(memcmp(back + 44, buf + 44, 32000) == 0);
    CHECK(pbx_wav_repair(path, &info) == PBX_OK && !info.changed);
    /* header claims more than the file holds */
    header(buf, 1, 1000000);
    write_file(buf, 44 + 1000);
    CHECK(pbx_wav_repair(path, &info) == PBX_OK && info.changed && info.data_bytes == 1000);
    /* garbage and short files are refused untouched */
    write_file((const uint8_t *)"RIFF\0\0\0\0WAVE", 12);
    CHECK(pbx_wav_repair(path, &info) == PBX_EFORMAT);
    CHECK(read_file(back, sizeof(back)) == 12);
    write_file((const uint8_t *)"hello", 5);
    CHECK(pbx_wav_repair(path, &info) == PBX_EFORMAT);
    header(buf, 2, 0);
    put32(buf + 16, 0x7FFFFFF0);  /* fmt chunk size past the end */
    write_file(buf, 100);
    CHECK(pbx_wav_repair(path, &info) == PBX_EFORMAT);
    unlink(path);
    CHECK(pbx_wav_repair(path, &info) == PBX_ENOTFOUND);
    CHECK(pbx_wav_repair(NULL, &info) == PBX_EINVAL);
    if (fails)
        return 1;
    printf("test_wav: ok\n");
    return 0;
}
