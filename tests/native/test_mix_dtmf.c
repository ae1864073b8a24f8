/* Mixer saturation / N-party sums, and the DTMF detector on generated digits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static uint32_t rng = 12345;
static int rnd(int lo, int hi)
{
    rng = rng * 1103515245u + 12345u;
    return lo + (int)((rng >> 8) % (uint32_t)(hi - lo + 1));
}

static void test_mix(void)
{
    enum { N = 160, K = 12 };
    static int16_t in[K][N], out[K][N], sum[N];
    const int16_t *ip[K];
    int16_t *op[K];
    for (int trial = 0; trial < 200; trial++) {
        int k = rnd(1, K);
        int amp = trial % 2 ? 32767 : 3000;
        for (int j = 0; j < k; j++) {
            for (int i = 0; i < N; i++)
                in[j][i] = (int16_t)rnd(-amp - 1, amp);
            ip[j] = in[j];
            op[j] = out[j];
        }
        pbx_mix_sum(ip, k, sum, N);
        pbx_mix_minus(ip, k, op, N);
        for (int i = 0; i < N; i++) {
            long t = 0;
            for (int j = 0; j < k; j++)
                t += in[j][i];
            long c = t > 32767 ? 32767 : (t < -32768 ? -32768 : t);
            CHECK(sum[i] == c);
            for (int j = 0; j < k; j++) {
                long o = t - in[j][i];
                o = o > 32767 ? 32767 : (o < -32768 ? -32768 : o);
                if (out[j][i] != o) {
                    fails++;
                    return;
                }
            }
        }
    }
}

static const char keys[] = "123A456B789C*0#D";
static const double rows[4] = {697, 770, 852, 941}, cols[4] = {1209, 1336, 1477, 1633};

/* Append a digit (ms long, per-tone level dBm0, relative frequency error dev) and a pause. */
static int put_digit(int16_t *x, int pos, char d, int ms, double dbm0, double dev, int pause_ms)
{
    int k = (int)(strchr(keys, d) - keys);
    double a = 22785.0 * pow(10.0, dbm0 / 20.0);
    int n = ms * 8;
    for (int i = 0; i < n; i++)
        x[pos + i] = (int16_t)lrint(a * sin(2 * M_PI * rows[k / 4] * (1 + dev) * i / 8000.0) +
                                    a * sin(2 * M_PI * cols[k % 4] * (1 + dev) * i / 8000.0 + 1.0));
    for (int i = 0; i < pause_ms * 8; i++)
        x[pos + n + i] = 0;
    return pos + n + pause_ms * 8;
}

static int detect(const int16_t *x, int n, char *digits, int *durs)
{
    pbx_dtmf_det_t *d;
    pbx_dtmf_digit_t out[64];
    if (pbx_dtmf_det_create(&d) != PBX_OK)
        return -1;
    int found = 0;
    for (int pos = 0; pos < n; pos += 160) {
        int k = pbx_dtmf_det_process(d, x + pos, n - pos < 160 ? n - pos : 160, out, 64);
        for (int i = 0; i < k; i++) {
            digits[found] = out[i].digit;
            durs[found++] = out[i].duration_ms;
        }
    }
    digits[found] = 0;
    pbx_dtmf_det_destroy(d);
    return found;
}

static void test_dtmf(void)
{
    static int16_t x[8000 * 8];
    char got[65];
    int durs[64];
    double devs[] = {-0.015, 0, 0.015};
    double levels[] = {-3, -15, -28};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int pos = put_digit(x, 0, '1', 0, 0, 0, 30);
            for (int i = 0; i < 16; i++)
                pos = put_digit(x, pos, keys[i], 40, levels[b], devs[a], 40);
            pos = put_digit(x, pos, '1', 0, 0, 0, 100);
            CHECK(detect(x, pos, got, durs) == 16 && strcmp(got, keys) == 0);
        }
    /* non-operate: 3.5 % off, 20 ms, very weak */
    int pos = 0;
    for (int i = 0; i < 16; i++)
        pos = put_digit(x, pos, keys[i], 60, -10, 0.035, 60);
    CHECK(detect(x, pos, got, durs) == 0);
    pos = 0;
    for (int i = 0; i < 16; i++)
        pos = put_digit(x, pos, keys[i], 20, -6, 0, 60);
    CHECK(detect(x, pos, got, durs) == 0);
    pos = 0;
    for (int i = 0; i < 16; i++)
        pos = put_digit(x, pos, keys[i], 60, -46, 0, 60);
    CHECK(detect(x, pos, got, durs) == 0);
    /* duration */
    pos = put_digit(x, 0, '#', 200, -10, 0, 100);
    CHECK(detect(x, pos, got, durs) == 1 && got[0] == '#' && abs(durs[0] - 200) <= 8);
}

int main(void)
{
    test_mix();
    test_dtmf();
    if (fails)
        return 1;
    printf("test_mix_dtmf: ok\n");
    return 0;
}
