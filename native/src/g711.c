/* G.711 u-law and A-law, bit-exact with the ITU-T/Sun reference (and spandsp). */
#include <pthread.h>

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

/* ---- block coding ---- */
static int16_t ulaw_dec[256], alaw_dec[256];
static uint8_t u2a[256], a2u[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (int c = 0; c < 256; c++) {
        ulaw_dec[c] = pbx_ulaw2linear((uint8_t)c);
        alaw_dec[c] = pbx_alaw2linear((uint8_t)c);
    }
    for (int c = 0; c < 256; c++) {
        u2a[c] = pbx_linear2alaw(ulaw_dec[c]);
        a2u[c] = pbx_linear2ulaw(alaw_dec[c]);
    }
}

static inline void ensure_tables(void)
{
    pthread_once(&tables_once, build_tables);
}

/* Same arithmetic as pbx_linear2ulaw with the segment found by clz. */
static inline uint8_t enc_ulaw(int linear)
{
    uint8_t mask;
    if (linear < 0) {
        linear = ULAW_BIAS - linear - 1;
        mask = 0x7F;
    } else {
        linear = ULAW_BIAS + linear;
        mask = 0xFF;
    }
    int seg = (31 - __builtin_clz((unsigned int)(linear | 0xFF))) - 7;
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((linear >> (seg + 3)) & 0x0F)) ^ mask);
}

static inline uint8_t enc_alaw(int linear)
{
    uint8_t mask;
    if (linear >= 0) {
        mask = 0x55 | 0x80;
    } else {
        mask = 0x55;
        linear = -linear - 1;
    }
    int seg = (31 - __builtin_clz((unsigned int)(linear | 0xFF))) - 7;
    if (seg >= 8)
        return (uint8_t)(0x7F ^ mask);
    return (uint8_t)(((seg << 4) | ((linear >> ((seg) ? (seg + 3) : 4)) & 0x0F)) ^ mask);
}

void pbx_ulaw_encode(const int16_t *pcm, uint8_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = enc_ulaw(pcm[i]);
}

void pbx_alaw_encode(const int16_t *pcm, uint8_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = enc_alaw(pcm[i]);
}

void pbx_ulaw_decode(const uint8_t *in, int16_t *pcm, int n)
{
    ensure_tables();
    for (int i = 0; i < n; i++)
        pcm[i] = ulaw_dec[in[i]];
}

void pbx_alaw_decode(const uint8_t *in, int16_t *pcm, int n)
{
    ensure_tables();
    for (int i = 0; i < n; i++)
        pcm[i] = alaw_dec[in[i]];
}

uint8_t pbx_ulaw2alaw(uint8_t code)
{
    ensure_tables();
    return u2a[code];
}

uint8_t pbx_alaw2ulaw(uint8_t code)
{
    ensure_tables();
    return a2u[code];
}

void pbx__g711_transcode(uint8_t *p, int n, int to_alaw);
void pbx__g711_transcode(uint8_t *p, int n, int to_alaw)
{
    ensure_tables();
    const uint8_t *t = to_alaw ? u2a : a2u;
    for (int i = 0; i < n; i++)
        p[i] = t[p[i]];
}
