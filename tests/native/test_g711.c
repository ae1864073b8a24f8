/* G.711 round trip: every code decodes and re-encodes to itself (both laws). */
#include <stdio.h>
#include "pbxcore.h"

int main(void)
{
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        if (pbx_linear2alaw(pbx_alaw2linear((uint8_t)c)) != c) bad++;
        uint8_t u = pbx_linear2ulaw(pbx_ulaw2linear((uint8_t)c));
        if (u != c && !(c == 0x7F && u == 0xFF)) bad++;   /* u-law has two zeros */
    }
    if (bad) { fprintf(stderr, "g711 round trip: %d bad codes\n", bad); return 1; }
    return 0;
}
