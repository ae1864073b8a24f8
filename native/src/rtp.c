/* RTP fixed header parsing and writing (RFC 3550 section 5.1). */
#include <string.h>

#include "pbxcore.h"

int pbx_rtp_parse(const uint8_t *pkt, size_t len, pbx_rtp_header_t *h)
{
    if (!pkt || len < 12)
        return PBX_RTP_TRUNCATED;
    if ((pkt[0] >> 6) != 2)
        return PBX_RTP_BAD_VERSION;
    int pt = pkt[1] & 0x7F;
    /* RFC 5761 section 4: RTCP SR/RR/SDES/BYE/APP have PT 200..204, i.e. 72..76 with M set. */
    if (pt >= 72 && pt <= 79 && (pkt[1] & 0x80))
        return PBX_RTP_RTCP;
    size_t off = 12 + 4 * (size_t)(pkt[0] & 0x0F);
    if (off > len)
        return PBX_RTP_BAD_CSRC;
    if (pkt[0] & 0x10) {
        if (off + 4 > len)
            return PBX_RTP_BAD_EXTENSION;
        size_t words = ((size_t)pkt[off + 2] << 8) | pkt[off + 3];
        off += 4 + 4 * words;
        if (off > len)
            return PBX_RTP_BAD_EXTENSION;
    }
    size_t payload = len - off;
    if (pkt[0] & 0x20) {
        /* RFC 3550 5.1: the last octet counts the padding octets, itself included. */
        if (payload == 0)
            return PBX_RTP_BAD_PADDING;
        size_t pad = pkt[len - 1];
        if (pad == 0 || pad > payload)
            return PBX_RTP_BAD_PADDING;
        payload -= pad;
    }
    if (len > 65535)
        return PBX_RTP_TRUNCATED;
    h->marker = (uint8_t)(pkt[1] >> 7);
    h->payload_type = (uint8_t)pt;
    h->seq = (uint16_t)((pkt[2] << 8) | pkt[3]);
    h->ts = ((uint32_t)pkt[4] << 24) | ((uint32_t)pkt[5] << 16) | ((uint32_t)pkt[6] << 8) | pkt[7];
    h->ssrc = ((uint32_t)pkt[8] << 24) | ((uint32_t)pkt[9] << 16) | ((uint32_t)pkt[10] << 8) | pkt[11];
    h->payload_offset = (uint16_t)off;
    h->payload_len = (uint16_t)payload;
    return PBX_RTP_GOOD;
}

void pbx_rtp_write_header(uint8_t *out, int marker, int payload_type, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
    out[0] = 0x80;
    out[1] = (uint8_t)((marker ? 0x80 : 0) | (payload_type & 0x7F));
    out[2] = (uint8_t)(seq >> 8);
    out[3] = (uint8_t)seq;
    out[4] = (uint8_t)(ts >> 24);
    out[5] = (uint8_t)(ts >> 16);
    out[6] = (uint8_t)(ts >> 8);
    out[7] = (uint8_t)ts;
    out[8] = (uint8_t)(ssrc >> 24);
    out[9] = (uint8_t)(ssrc >> 16);
    out[10] = (uint8_t)(ssrc >> 8);
    out[11] = (uint8_t)ssrc;
}
