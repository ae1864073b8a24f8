/*
 * Bridges: 2..N channels.
 *
 * Relay mode: exactly two full RTP members and nothing else feeding them (no players, no
 * in-band DTMF being sent, no listen/whisper members). Packets are forwarded on receive
 * with the header rewritten (G.711 u-law <-> A-law is a byte table on the payload).
 * Recorders may tap a relaying bridge: its members then also decode into their jitter
 * buffers, but forwarding stays immediate.
 *
 * Mix mode: every member's audio comes out of its jitter buffer once per tick; each
 * member hears the saturated sum of the others (exact in 32 bits before clamping),
 * listen members are heard by nobody, a whisper member only by its target.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

void pbx__bridge_update(engine_t *e, bridge_t *br)
{
    int relay = 0;
    if (br->n == 2 && !br->players) {
        chan_t *a = br->m[0], *b = br->m[1];
        relay = a->kind == CH_RTP && b->kind == CH_RTP && a->mode == PBX_MEMBER_FULL &&
                b->mode == PBX_MEMBER_FULL && !a->players && !b->players && a->dtx.active != 2 &&
                b->dtx.active != 2;
    }
    if (relay != br->relay) {
        br->relay = relay;
        for (int i = 0; i < br->n; i++)
            br->m[i]->os.src = NULL;
    }
    for (int i = 0; i < br->n; i++)
        pbx__chan_update_decoding(e, br->m[i]);
}

static int find_member(const bridge_t *br, const chan_t *ch)
{
    for (int i = 0; i < br->n; i++)
        if (br->m[i] == ch)
            return i;
    return -1;
}

/* Take ch out of its bridge (engine thread). */
void pbx__bridge_detach(engine_t *e, chan_t *ch)
{
    bridge_t *br = ch->br;
    if (!br)
        return;
    int i = find_member(br, ch);
    if (i >= 0) {
        br->m[i] = br->m[br->n - 1];
        br->n--;
    }
    for (int k = 0; k < br->n; k++)
        if (br->m[k]->mode == PBX_MEMBER_WHISPER && br->m[k]->whisper_to == ch->id)
            br->m[k]->mode = PBX_MEMBER_LISTEN;
    ch->br = NULL;
    ch->mode = PBX_MEMBER_FULL;
    ch->whisper_to = 0;
    ch->os.src = NULL;
    pbx__bridge_update(e, br);
    pbx__chan_update_decoding(e, ch);
}

static void bridge_free(engine_t *e, bridge_t *br)
{
    while (br->n > 0)
        pbx__bridge_detach(e, br->m[br->n - 1]);
    while (br->players)
        pbx__player_end(e, br->players, PBX_PLAYER_TARGET_GONE);
    for (int i = e->n_arec - 1; i >= 0; i--)
        if (e->arec[i]->sbr == br)
            pbx__recorder_detach(e, e->arec[i]);
    pbx__table_del(&e->bridges, br->id);
    pbx__active_del((void **)e->abr, &e->n_abr, br->active_idx, offsetof(bridge_t, active_idx));
    free(br);
}

void pbx__bridge_free_all(engine_t *e)
{
    while (e->n_abr > 0)
        bridge_free(e, e->abr[e->n_abr - 1]);
}

/* ---- the tick ---- */

void pbx__bridge_tick(engine_t *e, bridge_t *br)
{
    int n = e->tick_samples;
    if (br->relay) {
        /* Only a recorder of one member looks at what it was sent: what the other said. */
        if (br->m[0]->n_taps > 0 || br->m[1]->n_taps > 0) {
            memcpy(br->m[0]->out, br->m[1]->in, (size_t)n * sizeof(int16_t));
            memcpy(br->m[1]->out, br->m[0]->in, (size_t)n * sizeof(int16_t));
            br->m[0]->out_valid = br->m[1]->out_valid = 1;
        }
        return;
    }
    int32_t *full = e->acc;
    memset(full, 0, (size_t)n * sizeof(int32_t));
    for (int k = 0; k < br->n; k++) {
        chan_t *m = br->m[k];
        if (m->mode != PBX_MEMBER_FULL)
            continue;
        for (int i = 0; i < n; i++)
            full[i] += m->in[i];
    }
    if (br->has_play)
        for (int i = 0; i < n; i++)
            full[i] += br->play[i];
    for (int k = 0; k < br->n; k++) {
        chan_t *m = br->m[k];
        int32_t acc[MAX_TICK];
        if (m->mode == PBX_MEMBER_FULL)
            for (int i = 0; i < n; i++)
                acc[i] = full[i] - m->in[i];
        else
            memcpy(acc, full, (size_t)n * sizeof(int32_t));
        for (int j = 0; j < br->n; j++) {
            chan_t *w = br->m[j];
            if (w != m && w->mode == PBX_MEMBER_WHISPER && w->whisper_to == m->id)
                for (int i = 0; i < n; i++)
                    acc[i] += w->in[i];
        }
        if (m->has_play)
            for (int i = 0; i < n; i++)
                acc[i] += m->play[i];
        for (int i = 0; i < n; i++)
            m->out[i] = sat16(acc[i]);
        pbx__chan_output(e, m, m->out);
    }
}

/* ---- commands ---- */

typedef struct {
    uint32_t bridge, channel, whisper_to;
    int mode;
} member_arg_t;

/* arg: the id, 0 = allocate one here (synchronous) or reserved by a posted create */
static int cmd_create(engine_t *e, void *arg)
{
    uint32_t *idp = arg;
    bridge_t *br = calloc(1, sizeof(*br));
    if (!br) {
        if (*idp)
            pbx__table_unreserve(&e->bridges, *idp);
        return PBX_ENOMEM;
    }
    uint32_t id = *idp;
    if (id)
        pbx__table_set(&e->bridges, id, br);
    else if (!(id = pbx__table_add(&e->bridges, OBJ_BRIDGE, br))) {
        free(br);
        return PBX_EFULL;
    }
    br->id = id;
    pbx__active_add((void ***)&e->abr, &e->n_abr, br, &br->active_idx);
    *idp = id;
    return PBX_OK;
}

int pbx_bridge_create(pbx_engine_t *e, uint32_t *id)
{
    if (!id)
        return PBX_EINVAL;
    *id = 0;
    return pbx__run_cmd(e, cmd_create, id);
}

int pbx_bridge_create_nowait(pbx_engine_t *e, uint32_t *id)
{
    if (!e || !id)
        return PBX_EINVAL;
    uint32_t r = pbx__table_reserve(&e->bridges, OBJ_BRIDGE);
    if (!r)
        return PBX_EFULL;
    int rc = pbx__post_cmd(e, cmd_create, &r, sizeof(r), r, PBX_OP_BRIDGE_CREATE, 0);
    if (rc != PBX_OK) {
        pbx__table_unreserve(&e->bridges, r);
        return rc;
    }
    *id = r;
    return PBX_OK;
}

static int cmd_add(engine_t *e, void *arg)
{
    member_arg_t *a = arg;
    bridge_t *br = pbx__table_get(&e->bridges, OBJ_BRIDGE, a->bridge);
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->channel);
    if (!br || !ch)
        return PBX_ENOTFOUND;
    if (ch->br)
        return ch->br == br ? PBX_EBUSY : PBX_EBUSY;
    if (br->n >= MAX_MEMBERS)
        return PBX_EFULL;
    if (a->mode == PBX_MEMBER_WHISPER) {
        chan_t *t = pbx__table_get(&e->channels, OBJ_CHANNEL, a->whisper_to);
        if (!t || t->br != br)
            return PBX_EINVAL;
    }
    br->m[br->n++] = ch;
    ch->br = br;
    ch->mode = a->mode;
    ch->whisper_to = a->mode == PBX_MEMBER_WHISPER ? a->whisper_to : 0;
    ch->os.src = NULL;
    pbx__bridge_update(e, br);
    return PBX_OK;
}

int pbx_bridge_add(pbx_engine_t *e, uint32_t bridge, uint32_t channel, int mode, uint32_t whisper_to)
{
    if (mode < PBX_MEMBER_FULL || mode > PBX_MEMBER_WHISPER)
        return PBX_EINVAL;
    member_arg_t a = {bridge, channel, whisper_to, mode};
    return pbx__run_cmd(e, cmd_add, &a);
}

int pbx_bridge_add_nowait(pbx_engine_t *e, uint32_t bridge, uint32_t channel, int mode, uint32_t whisper_to)
{
    if (mode < PBX_MEMBER_FULL || mode > PBX_MEMBER_WHISPER)
        return PBX_EINVAL;
    if (ID_TYPE(bridge) != OBJ_BRIDGE || ID_TYPE(channel) != OBJ_CHANNEL)
        return PBX_ENOTFOUND;
    member_arg_t a = {bridge, channel, whisper_to, mode};
    return pbx__post_cmd(e, cmd_add, &a, sizeof(a), channel, PBX_OP_BRIDGE_ADD, 0);
}

static int cmd_remove(engine_t *e, void *arg)
{
    member_arg_t *a = arg;
    bridge_t *br = pbx__table_get(&e->bridges, OBJ_BRIDGE, a->bridge);
    chan_t *ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->channel);
    if (!br || !ch)
        return PBX_ENOTFOUND;
    if (ch->br != br)
        return PBX_EINVAL;
    pbx__bridge_detach(e, ch);
    return PBX_OK;
}

int pbx_bridge_remove(pbx_engine_t *e, uint32_t bridge, uint32_t channel)
{
    member_arg_t a = {bridge, channel, 0, 0};
    return pbx__run_cmd(e, cmd_remove, &a);
}

/* Removing a member from a bridge or of a channel that is gone is no failure. */
int pbx_bridge_remove_nowait(pbx_engine_t *e, uint32_t bridge, uint32_t channel)
{
    member_arg_t a = {bridge, channel, 0, 0};
    return pbx__post_cmd(e, cmd_remove, &a, sizeof(a), channel, PBX_OP_BRIDGE_REMOVE, PBX__CMD_QUIET_NOTFOUND);
}

static int cmd_destroy(engine_t *e, void *arg)
{
    bridge_t *br = pbx__table_get(&e->bridges, OBJ_BRIDGE, *(uint32_t *)arg);
    if (!br)
        return PBX_ENOTFOUND;
    bridge_free(e, br);
    return PBX_OK;
}

int pbx_bridge_destroy(pbx_engine_t *e, uint32_t bridge)
{
    return pbx__run_cmd(e, cmd_destroy, &bridge);
}

int pbx_bridge_destroy_nowait(pbx_engine_t *e, uint32_t bridge)
{
    return pbx__post_cmd(e, cmd_destroy, &bridge, sizeof(bridge), bridge, PBX_OP_BRIDGE_DESTROY,
                         PBX__CMD_QUIET_NOTFOUND);
}

static int cmd_is_relaying(engine_t *e, void *arg)
{
    bridge_t *br = pbx__table_get(&e->bridges, OBJ_BRIDGE, *(uint32_t *)arg);
    if (!br)
        return PBX_ENOTFOUND;
    return br->relay;
}

int pbx_bridge_is_relaying(pbx_engine_t *e, uint32_t bridge)
{
    return pbx__run_cmd(e, cmd_is_relaying, &bridge);
}
