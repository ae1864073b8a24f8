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
/* ---- errors ---- */
/** Return codes shared by every pbx_* function: 0 on success, a negative code on failure. */
enum pbx_status {
    PBX_OK = 0,
    PBX_EINVAL = -1,        /**< an argument is out of range or malformed */
    PBX_ENOMEM = -2,        /**< allocation failed (only at create time) */
    PBX_ESTATE = -3,        /**< not allowed in the object's current state (e.g. engine stopped) */
    PBX_EIO = -4,           /**< a system call failed (errno kept where the API says so) */
    PBX_ENOPORT = -5,       /**< no free port in the configured RTP range */
    PBX_EADDRINUSE = -6,    /**< the requested address/port is taken */
    PBX_ENOTFOUND = -7,     /**< no object with that id */
    PBX_EFULL = -8,         /**< a fixed-size table or queue is full */
    PBX_EFORMAT = -9,       /**< a file or buffer is not in the expected format */
    PBX_EBUSY = -10,        /**< the object is in use by another (e.g. a channel already bridged) */
    PBX_ENOSPC = -11        /**< no space left on the device */
};
/** Short English text for a status code (never NULL). */
const char *pbx_strerror(int code);

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
