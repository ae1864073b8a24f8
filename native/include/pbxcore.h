/*
 * pbxcore: the media engine of the office phone box.
 *
 * One public header. Everything the Python side (firmware/media/) may call is
 * declared here; the cffi build script copies the declarations between the
 * PBX_CDEF_BEGIN / PBX_CDEF_END markers into its cdef.
 */
#ifndef PBXCORE_H
#define PBXCORE_H

#include <stdint.h>
#include <stddef.h>

/* PBX_CDEF_BEGIN */
/** Version of the engine as "major.minor.patch". */
const char *pbx_version(void);

/** G.711 u-law (ITU-T G.711 / Sun reference) encode/decode of one sample. */
uint8_t pbx_linear2ulaw(int16_t pcm);
int16_t pbx_ulaw2linear(uint8_t code);
/** G.711 A-law encode/decode of one sample. */
uint8_t pbx_linear2alaw(int16_t pcm);
int16_t pbx_alaw2linear(uint8_t code);
/* PBX_CDEF_END */

#endif
