/* G.711 u-law and A-law, bit-exact with the ITU-T/Sun reference (and spandsp). */
#include "pbxcore.h"

#define ULAW_BIAS 0x84
#define ULAW_CLIP 32635

static int top_bit(unsigned int v)
{
    int i = -1;
    while (v) { v >>= 1; i++; }
    return i;
}

uint8_t pbx_linear2ulaw(int16_t pcm)
{
    int linear = pcm;
    uint8_t mask;
    if (linear < 0) {
        linear = ULAW_BIAS - linear - 1;   /* (-x - 1) avoids overflow at -32768 */
        mask = 0x7F;
    } else {
        linear = ULAW_BIAS + linear;
        mask = 0xFF;
    }
    int seg = top_bit((unsigned int)(linear | 0xFF)) - 7;
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((linear >> (seg + 3)) & 0x0F)) ^ mask);
}

int16_t pbx_ulaw2linear(uint8_t code)
{
    code = (uint8_t)~code;
    int t = (((code & 0x0F) << 3) + ULAW_BIAS) << (((int)code & 0x70) >> 4);
    return (int16_t)((code & 0x80) ? (ULAW_BIAS - t) : (t - ULAW_BIAS));
}

uint8_t pbx_linear2alaw(int16_t pcm)
{
    int linear = pcm;
    uint8_t mask;
    if (linear >= 0) {
        mask = 0x55 | 0x80;
    } else {
        mask = 0x55;
        linear = -linear - 1;
    }
    int seg = top_bit((unsigned int)(linear | 0xFF)) - 7;
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((linear >> ((seg) ? (seg + 3) : 4)) & 0x0F)) ^ mask);
}

int16_t pbx_alaw2linear(uint8_t code)
{
    code ^= 0x55;
    int i = ((code & 0x0F) << 4);
    int seg = (((int)code & 0x70) >> 4);
    if (seg)
        i = (i + 0x108) << (seg - 1);
    else
        i += 8;
    return (int16_t)((code & 0x80) ? i : -i);
}

const char *pbx_version(void)
{
    return "0.1.0";
}
