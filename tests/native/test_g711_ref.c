/*
 * G.711 against an independent reference written from the Sun Microsystems g711.c
 * algorithm (segment search over segment end tables instead of a bit scan), all 65536 inputs and all 256
 * codes, u-law and A-law, per-sample and block functions; and the u-law <-> A-law tables
 * keep every code within one quantisation step (the exact tables are checked against
 * spandsp in tests/unit/test_media_g711.py).
 */
#include <stdio.h>

#include "pbxcore.h"

static const int seg_aend[8] = {0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF};

static int search(int val, const int *table)
{
    for (int i = 0; i < 8; i++)
        if (val <= table[i])
            return i;
    return 8;
}

/* u-law: the bias 0x84 added to the 16-bit magnitude, segments by table search (the
 * Sun algorithm at 16-bit precision, as ITU-T G.191 and spandsp do; the 14-bit variant
 * used by Python's audioop rounds negative inputs differently). */
static const int seg_u16end[8] = {0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF};

static uint8_t ref_ulaw(int16_t s)
{
    int mag, mask;
    if (s < 0) {
        mag = 0x84 - s;
        mask = 0x7F;
    } else {
        mag = 0x84 + s;
        mask = 0xFF;
    }
    int seg = search(mag, seg_u16end);
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((mag >> (seg + 3)) & 0xF)) ^ mask);
}

/* A-law on 13-bit magnitudes (Sun g711.c linear2alaw). */
static uint8_t ref_alaw(int16_t s)
{
    int pcm = s >> 3, mask;
    if (pcm >= 0) {
        mask = 0xD5;
    } else {
        mask = 0x55;
        pcm = -pcm - 1;
    }
    int seg = search(pcm, seg_aend);
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    int aval = seg << 4;
    aval |= seg < 2 ? (pcm >> 1) & 0xF : (pcm >> seg) & 0xF;
    return (uint8_t)(aval ^ mask);
}

static int16_t ref_ulaw_dec(uint8_t u)
{
    u = (uint8_t)~u;
    int t = ((u & 0xF) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    return (int16_t)((u & 0x80) ? (0x84 - t) : (t - 0x84));
}

static int16_t ref_alaw_dec(uint8_t a)
{
    a ^= 0x55;
    int t = (a & 0xF) << 4;
    int seg = (a & 0x70) >> 4;
    if (seg == 0)
        t += 8;
    else if (seg == 1)
        t += 0x108;
    else
        t = (t + 0x108) << (seg - 1);
    return (int16_t)((a & 0x80) ? t : -t);
}

int main(void)
{
    int bad = 0;
    static int16_t all[65536];
    static uint8_t ub[65536], ab[65536];
    for (int i = 0; i < 65536; i++)
        all[i] = (int16_t)(i - 32768);
    pbx_ulaw_encode(all, ub, 65536);
    pbx_alaw_encode(all, ab, 65536);
    for (int i = 0; i < 65536; i++) {
        uint8_t ru = ref_ulaw(all[i]), ra = ref_alaw(all[i]);
        if (pbx_linear2ulaw(all[i]) != ru || ub[i] != ru) {
            if (bad++ < 5) fprintf(stderr, "ulaw %d: %02x/%02x ref %02x\n", all[i], pbx_linear2ulaw(all[i]), ub[i], ru);
        }
        if (pbx_linear2alaw(all[i]) != ra || ab[i] != ra) {
            if (bad++ < 5) fprintf(stderr, "alaw %d: %02x/%02x ref %02x\n", all[i], pbx_linear2alaw(all[i]), ab[i], ra);
        }
    }
    uint8_t codes[256];
    int16_t ud[256], ad[256];
    for (int c = 0; c < 256; c++)
        codes[c] = (uint8_t)c;
    pbx_ulaw_decode(codes, ud, 256);
    pbx_alaw_decode(codes, ad, 256);
    for (int c = 0; c < 256; c++) {
        if (pbx_ulaw2linear((uint8_t)c) != ref_ulaw_dec((uint8_t)c) || ud[c] != ref_ulaw_dec((uint8_t)c))
            bad++;
        if (pbx_alaw2linear((uint8_t)c) != ref_alaw_dec((uint8_t)c) || ad[c] != ref_alaw_dec((uint8_t)c))
            bad++;
    }
    /* G.711 Tables 3/4: silence maps to silence, full scale to full scale, and every code
     * lands within one quantisation step of the same value in the other law */
    if (pbx_ulaw2alaw(0xFF) != 0xD5 || pbx_ulaw2alaw(0x7F) != 0x55 || pbx_ulaw2alaw(0x80) != 0xAA ||
        pbx_alaw2ulaw(0xAA) != 0x80)
        bad++;
    for (int c = 0; c < 256; c++) {
        int vu = pbx_ulaw2linear((uint8_t)c), va = pbx_alaw2linear(pbx_ulaw2alaw((uint8_t)c));
        int lim = (vu < 0 ? -vu : vu) / 16 + 16;
        if (va - vu > lim || vu - va > lim)
            bad++;
        va = pbx_alaw2linear((uint8_t)c);
        vu = pbx_ulaw2linear(pbx_alaw2ulaw((uint8_t)c));
        lim = (va < 0 ? -va : va) / 16 + 16;
        if (va - vu > lim || vu - va > lim)
            bad++;
    }
    if (bad) {
        fprintf(stderr, "test_g711_ref: %d mismatches\n", bad);
        return 1;
    }
    printf("test_g711_ref: ok (65536 inputs x 2 laws, 256 codes x 2 laws)\n");
    return 0;
}
