/* RTP parser: every layout and malformation, never a read outside the packet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

/* Parse from an exact-size heap copy so ASan sees any overread. */
static int parse(const uint8_t *p, size_t n, pbx_rtp_header_t *h)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    int v = pbx_rtp_parse(c, n, h);
    free(c);
    return v;
}

int main(void)
{
    uint8_t p[400];
    pbx_rtp_header_t h;
    memset(p, 0xAB, sizeof(p));
    pbx_rtp_write_header(p, 1, 8, 0xFFFF, 0xFFFFFFFFu, 0x12345678);
    CHECK(parse(p, 172, &h) == PBX_RTP_GOOD);
    CHECK(h.marker == 1 && h.payload_type == 8 && h.seq == 0xFFFF && h.ts == 0xFFFFFFFFu && h.ssrc == 0x12345678);
    CHECK(h.payload_offset == 12 && h.payload_len == 160);
    for (size_t n = 0; n < 12; n++)
        CHECK(parse(p, n, &h) == PBX_RTP_TRUNCATED);
    CHECK(pbx_rtp_parse(NULL, 20, &h) == PBX_RTP_TRUNCATED);
    for (int v = 0; v < 4; v++) {
        p[0] = (uint8_t)(v << 6);
        CHECK(parse(p, 172, &h) == (v == 2 ? PBX_RTP_GOOD : PBX_RTP_BAD_VERSION));
    }
    /* CSRC count: 15 CSRCs need 72 bytes */
    p[0] = 0x8F;
    CHECK(parse(p, 71, &h) == PBX_RTP_BAD_CSRC);
    CHECK(parse(p, 72, &h) == PBX_RTP_GOOD && h.payload_len == 0 && h.payload_offset == 72);
    /* extension: header at 12, length in 32-bit words */
    p[0] = 0x90;
    p[14] = 0;
    p[15] = 2;
    CHECK(parse(p, 15, &h) == PBX_RTP_BAD_EXTENSION);
    CHECK(parse(p, 23, &h) == PBX_RTP_BAD_EXTENSION);
    CHECK(parse(p, 24, &h) == PBX_RTP_GOOD && h.payload_offset == 24);
    p[14] = 0xFF;
    p[15] = 0xFF;
    CHECK(parse(p, 400, &h) == PBX_RTP_BAD_EXTENSION);
    /* CSRC + extension together */
    p[0] = 0x92;
    p[20] = 0;
    p[21] = 0;
    p[22] = 0;
    p[23] = 1;
    CHECK(parse(p, 28, &h) == PBX_RTP_GOOD && h.payload_offset == 28);
    CHECK(parse(p, 27, &h) == PBX_RTP_BAD_EXTENSION);
    /* padding */
    p[0] = 0xA0;
    p[171] = 10;
    CHECK(parse(p, 172, &h) == PBX_RTP_GOOD && h.payload_len == 150);
    p[171] = 160;
    CHECK(parse(p, 172, &h) == PBX_RTP_GOOD && h.payload_len == 0);
    p[171] = 161;
    CHECK(parse(p, 172, &h) == PBX_RTP_BAD_PADDING);
    p[171] = 0;
    CHECK(parse(p, 172, &h) == PBX_RTP_BAD_PADDING);
    CHECK(parse(p, 12, &h) == PBX_RTP_BAD_PADDING);
    /* RTCP multiplexed on the RTP port (RFC 5761): PT 200 = 72 with the marker bit */
    p[0] = 0x80;
    p[1] = 200;
    CHECK(parse(p, 28, &h) == PBX_RTP_RTCP);
    p[1] = 72;
    CHECK(parse(p, 28, &h) == PBX_RTP_GOOD);
    /* every prefix of every first-byte variant stays in bounds (ASan checks the reads) */
    for (int b0 = 0; b0 < 256; b0++)
        for (size_t n = 0; n <= 80; n++) {
            p[0] = (uint8_t)b0;
            p[1] = 0;
            p[14] = 0;
            p[15] = (uint8_t)(n % 7);
            p[n ? n - 1 : 0] = (uint8_t)(n * 3);
            if (parse(p, n, &h) == PBX_RTP_GOOD)
                CHECK(h.payload_offset + (size_t)h.payload_len <= n);
        }
    if (fails)
        return 1;
    printf("test_rtp: ok\n");
    return 0;
}
