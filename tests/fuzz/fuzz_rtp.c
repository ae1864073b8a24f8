/*
 * libFuzzer harness: the RTP parser and the DLE decoder on arbitrary bytes.
 * Build: make -C native fuzz   (clang-14, ASan + UBSan); run: native/build/fuzz_rtp CORPUS
 * The input is copied to an exact-size heap buffer so any overread is reported.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    pbx_rtp_header_t h;
    if (pbx_rtp_parse(p, size, &h) == PBX_RTP_GOOD) {
        if (h.payload_offset < 12 || (size_t)h.payload_offset + h.payload_len > size)
            abort();
        /* touch every payload byte the parser promised */
        volatile uint32_t sum = 0;
        for (size_t i = 0; i < h.payload_len; i++)
            sum += p[h.payload_offset + i];
        (void)sum;
        int16_t pcm[1600];
        size_t n = h.payload_len < 1600 ? h.payload_len : 1600;
        pbx_ulaw_decode(p + h.payload_offset, pcm, (int)n);
    }
    /* the same bytes as a voice-modem stream, split at an input-chosen point */
    pbx_dle_state_t st = {0};
    uint8_t *audio = malloc(size + 1), *codes = malloc(size / 2 + 2);
    int na, nc;
    size_t cut = size ? data[0] % (size + 1) : 0;
    if (audio && codes) {
        pbx_dle_decode(&st, p, (int)cut, audio, &na, codes, &nc);
        if (na > (int)cut || nc > (int)cut / 2 + 1)
            abort();
        pbx_dle_decode(&st, p + cut, (int)(size - cut), audio, &na, codes, &nc);
        if (na > (int)(size - cut) || nc > (int)(size - cut) / 2 + 1)
            abort();
    }
    free(audio);
    free(codes);
    free(p);
    return 0;
}
