/* Text for the pbx_status codes. */
#include "pbxcore.h"

const char *pbx_strerror(int code)
{
    switch (code) {
    case PBX_OK: return "success";
    case PBX_EINVAL: return "invalid argument";
    case PBX_ENOMEM: return "out of memory";
    case PBX_ESTATE: return "not allowed in the current state";
    case PBX_EIO: return "input/output error";
    case PBX_ENOPORT: return "no free port in the RTP range";
    case PBX_EADDRINUSE: return "address already in use";
    case PBX_ENOTFOUND: return "no such object";
    case PBX_EFULL: return "table or queue full";
    case PBX_EFORMAT: return "bad format";
    case PBX_EBUSY: return "object busy";
    case PBX_ENOSPC: return "no space left on device";
    default: return "unknown error";
    }
}
