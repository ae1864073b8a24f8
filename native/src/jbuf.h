/*
 * Jitter buffer: private constants and wrap-around helpers. The API (pbx_jb_*) is public
 * and declared in pbxcore.h; callers inside the engine include this header or pbxcore.h.
 */
#ifndef PBX_JBUF_H
#define PBX_JBUF_H

#include <stdint.h>

#include "pbxcore.h"

#define PBX_JB_RATE 8000            /* samples per second */
#define PBX_JB_US_PER_SAMPLE 125    /* microseconds per sample at 8 kHz */
#define PBX_JB_MAX_PUT 480          /* samples in one put (60 ms) */
#define PBX_JB_MAX_GET 960          /* samples in one get (120 ms) */
#define PBX_JB_MAX_DELAY_MS 2000    /* largest max_delay_ms accepted */

/* Wrap-around safe comparisons: 16-bit RTP sequence numbers, 32-bit RTP timestamps. */
#define PBX_SEQ_DIFF(a, b) ((int16_t)(uint16_t)((uint16_t)(a) - (uint16_t)(b)))
#define PBX_SEQ_LT(a, b) (PBX_SEQ_DIFF(a, b) < 0)
#define PBX_SEQ_GT(a, b) (PBX_SEQ_DIFF(a, b) > 0)
#define PBX_TS_DIFF(a, b) ((int32_t)(uint32_t)((uint32_t)(a) - (uint32_t)(b)))
#define PBX_TS_LT(a, b) (PBX_TS_DIFF(a, b) < 0)
#define PBX_TS_LE(a, b) (PBX_TS_DIFF(a, b) <= 0)
#define PBX_TS_GT(a, b) (PBX_TS_DIFF(a, b) > 0)
#define PBX_TS_GE(a, b) (PBX_TS_DIFF(a, b) >= 0)

#endif
