/* Sounds (shared immutable PCM), sound players and tone players. */
#define _GNU_SOURCE
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

/* ---- sounds ---- */

typedef struct {
    sound_t *s;
    uint32_t id;
} sound_arg_t;

static int cmd_sound_add(engine_t *e, void *arg)
{
    sound_arg_t *a = arg;
    uint32_t id = pbx__table_add(&e->sounds, OBJ_SOUND, a->s);
    if (!id)
        return PBX_EFULL;
    a->s->id = id;
    a->id = id;
    return PBX_OK;
}

int pbx_sound_create(pbx_engine_t *e, const int16_t *pcm, size_t nsamples, uint32_t *id)
{
    if (!e || !id || (!pcm && nsamples) || nsamples > (size_t)8000 * 3600 * 4)
        return PBX_EINVAL;
    sound_t *s = calloc(1, sizeof(*s));
    if (!s)
        return PBX_ENOMEM;
    s->pcm = malloc(nsamples ? nsamples * sizeof(int16_t) : 1);
    if (!s->pcm) {
        free(s);
        return PBX_ENOMEM;
    }
    if (nsamples)
        memcpy(s->pcm, pcm, nsamples * sizeof(int16_t));
    s->n = nsamples;
    s->refs = 1;
    sound_arg_t a = {s, 0};
    int rc = pbx__run_cmd(e, cmd_sound_add, &a);
    if (rc != PBX_OK) {
        free(s->pcm);
        free(s);
        return rc;
    }
    *id = a.id;
    return PBX_OK;
}

static void sound_unref(engine_t *e, sound_t *s)
{
    if (--s->refs > 0)
        return;
    pbx__table_del(&e->sounds, s->id);
    free(s->pcm);
    free(s);
}

static int cmd_sound_release(engine_t *e, void *arg)
{
    sound_t *s = pbx__table_get(&e->sounds, OBJ_SOUND, *(uint32_t *)arg);
    if (!s)
        return PBX_ENOTFOUND;
    /* The table entry goes with the caller's reference; players keep the buffer alive. */
    pbx__table_del(&e->sounds, s->id);
    s->id = 0;
    if (--s->refs == 0) {
        free(s->pcm);
        free(s);
    }
    return PBX_OK;
}

int pbx_sound_release(pbx_engine_t *e, uint32_t id)
{
    return pbx__run_cmd(e, cmd_sound_release, &id);
}

int pbx_sound_release_nowait(pbx_engine_t *e, uint32_t id)
{
    return pbx__post_cmd(e, cmd_sound_release, &id, sizeof(id), id, PBX_OP_SOUND_RELEASE, PBX__CMD_QUIET_NOTFOUND);
}

void pbx__sounds_free_all(engine_t *e)
{
    for (int s = 0; s < e->sounds.cap; s++) {
        sound_t *snd = e->sounds.slot[s];
        if (snd) {
            free(snd->pcm);
            free(snd);
            e->sounds.slot[s] = NULL;
        }
    }
}

/* ---- players ---- */

static void unlink_player(player_t *p)
{
    player_t **head = p->tch ? &p->tch->players : &p->tbr->players;
    for (player_t **pp = head; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->next = NULL;
}

void pbx__player_end(engine_t *e, player_t *p, int reason)
{
    chan_t *ch = p->tch;
    bridge_t *br = p->tbr ? p->tbr : (ch ? ch->br : NULL);
    unlink_player(p);
    if (p->tch && !p->tch->players)
        p->tch->has_play = 0;
    if (p->tbr && !p->tbr->players)
        p->tbr->has_play = 0;
    pbx__post_simple(e, PBX_EV_PLAYER_DONE, p->id, reason, 0);
    pbx__table_del(&e->players, p->id);
    pbx__active_del((void **)e->apl, &e->n_apl, p->active_idx, offsetof(player_t, active_idx));
    if (p->snd) {
        if (p->snd->id == 0) {
            if (--p->snd->refs == 0) {
                free(p->snd->pcm);
                free(p->snd);
            }
        } else {
            sound_unref(e, p->snd);
        }
    }
    free(p);
    if (br && reason != PBX_PLAYER_TARGET_GONE)
        pbx__bridge_update(e, br);
}

void pbx__players_free_all(engine_t *e)
{
    while (e->n_apl > 0)
        pbx__player_end(e, e->apl[e->n_apl - 1], PBX_PLAYER_STOPPED);
}

static void render_sound(engine_t *e, player_t *p)
{
    int n = e->tick_samples;
    const sound_t *s = p->snd;
    int i = 0;
    while (i < n) {
        if (p->pos >= s->n) {
            if (!p->loop || s->n == 0) {
                memset(p->frame + i, 0, (size_t)(n - i) * sizeof(int16_t));
                p->finished = 1;
                break;
            }
            p->pos = 0;
        }
        size_t take = s->n - p->pos;
        if (take > (size_t)(n - i))
            take = (size_t)(n - i);
        if (p->gain == 1.0f) {
            memcpy(p->frame + i, s->pcm + p->pos, take * sizeof(int16_t));
        } else {
            for (size_t k = 0; k < take; k++)
                p->frame[i + (int)k] = sat16((int32_t)lrintf(s->pcm[p->pos + k] * p->gain));
        }
        p->pos += take;
        i += (int)take;
    }
    if (!p->loop && p->pos >= s->n)
        p->finished = 1;
}

static void render_tone(engine_t *e, player_t *p)
{
    int n = e->tick_samples;
    for (int i = 0; i < n; i++) {
        int on = 1;
        if (p->tone.n_cadence > 0) {
            int seg_len = p->tone.cadence_ms[p->seg] * 8;
            while (p->seg_pos >= seg_len) {
                p->seg = (p->seg + 1) % p->tone.n_cadence;
                p->seg_pos = 0;
                seg_len = p->tone.cadence_ms[p->seg] * 8;
            }
            on = (p->seg % 2) == 0;
            p->seg_pos++;
        }
        if (p->tone.duration_ms > 0 && p->total_pos >= p->tone.duration_ms * 8) {
            on = 0;
            p->finished = 1;
        }
        double v = 0;
        if (on) {
            v = sin(p->ph1);
            if (p->tone.f2_hz > 0)
                v += sin(p->ph2);
        }
        p->frame[i] = (int16_t)lrint(v * p->amp);
        p->ph1 += p->w1;
        p->ph2 += p->w2;
        p->total_pos++;
    }
    p->ph1 = fmod(p->ph1, 2 * M_PI);
    p->ph2 = fmod(p->ph2, 2 * M_PI);
}

static void add_to(int16_t *dst, int *has, const int16_t *src, int n)
{
    if (!*has) {
        memcpy(dst, src, (size_t)n * sizeof(int16_t));
        *has = 1;
        return;
    }
    for (int i = 0; i < n; i++)
        dst[i] = sat16((int32_t)dst[i] + src[i]);
}

void pbx__players_tick(engine_t *e)
{
    int n = e->tick_samples;
    for (int i = 0; i < e->n_apl; i++) {
        player_t *p = e->apl[i];
        if (p->tch)
            p->tch->has_play = 0;
        else
            p->tbr->has_play = 0;
    }
    for (int i = 0; i < e->n_apl; i++) {
        player_t *p = e->apl[i];
        if (p->finished)
            continue;
        if (p->is_tone)
            render_tone(e, p);
        else
            render_sound(e, p);
        if (p->tch)
            add_to(p->tch->play, &p->tch->has_play, p->frame, n);
        else
            add_to(p->tbr->play, &p->tbr->has_play, p->frame, n);
    }
}

void pbx__players_reap(engine_t *e)
{
    for (int i = e->n_apl - 1; i >= 0; i--) {
        if (i >= e->n_apl)
            continue;
        player_t *p = e->apl[i];
        if (p->finished)
            pbx__player_end(e, p, PBX_PLAYER_FINISHED);
    }
}

typedef struct {
    uint32_t target, sound;
    int loop, gain_db, is_tone;
    pbx_tone_t tone;
    uint32_t id;
} player_arg_t;

static int cmd_player(engine_t *e, void *arg)
{
    player_arg_t *a = arg;
    chan_t *ch = NULL;
    bridge_t *br = NULL;
    sound_t *s = NULL;
    if (ID_TYPE(a->target) == OBJ_CHANNEL)
        ch = pbx__table_get(&e->channels, OBJ_CHANNEL, a->target);
    else if (ID_TYPE(a->target) == OBJ_BRIDGE)
        br = pbx__table_get(&e->bridges, OBJ_BRIDGE, a->target);
    if (!ch && !br)
        return PBX_ENOTFOUND;
    if (!a->is_tone) {
        s = pbx__table_get(&e->sounds, OBJ_SOUND, a->sound);
        if (!s)
            return PBX_ENOTFOUND;
    }
    player_t *p = calloc(1, sizeof(*p));
    if (!p)
        return PBX_ENOMEM;
    uint32_t id = pbx__table_add(&e->players, OBJ_PLAYER, p);
    if (!id) {
        free(p);
        return PBX_EFULL;
    }
    p->id = id;
    p->is_tone = a->is_tone;
    p->loop = a->loop;
    p->gain = (float)pow(10.0, a->gain_db / 20.0);
    if (a->gain_db == 0)
        p->gain = 1.0f;
    if (s) {
        p->snd = s;
        s->refs++;
    } else {
        p->tone = a->tone;
        p->w1 = 2 * M_PI * a->tone.f1_hz / 8000.0;
        p->w2 = 2 * M_PI * a->tone.f2_hz / 8000.0;
        p->amp = DBM0_AMPLITUDE * pow(10.0, a->tone.level_dbm0 / 20.0);
    }
    p->tch = ch;
    p->tbr = br;
    if (ch) {
        p->next = ch->players;
        ch->players = p;
    } else {
        p->next = br->players;
        br->players = p;
    }
    pbx__active_add((void ***)&e->apl, &e->n_apl, p, &p->active_idx);
    bridge_t *ub = br ? br : ch->br;
    if (ub)
        pbx__bridge_update(e, ub);
    a->id = id;
    return PBX_OK;
}

int pbx_player_create(pbx_engine_t *e, uint32_t target, uint32_t sound, int loop, int gain_db, uint32_t *id)
{
    if (!id || gain_db < -60 || gain_db > 20)
        return PBX_EINVAL;
    player_arg_t a;
    memset(&a, 0, sizeof(a));
    a.target = target;
    a.sound = sound;
    a.loop = loop ? 1 : 0;
    a.gain_db = gain_db;
    int rc = pbx__run_cmd(e, cmd_player, &a);
    if (rc == PBX_OK)
        *id = a.id;
    return rc;
}

int pbx_tone_player_create(pbx_engine_t *e, uint32_t target, const pbx_tone_t *tone, uint32_t *id)
{
    if (!id || !tone || tone->f1_hz < 1 || tone->f1_hz > 3900 || tone->f2_hz < 0 || tone->f2_hz > 3900 ||
        tone->level_dbm0 > 0 || tone->level_dbm0 < -60 || tone->n_cadence < 0 || tone->n_cadence > 8 ||
        tone->duration_ms < 0)
        return PBX_EINVAL;
    int sum = 0;
    for (int i = 0; i < tone->n_cadence; i++) {
        if (tone->cadence_ms[i] < 0 || tone->cadence_ms[i] > 60000)
            return PBX_EINVAL;
        sum += tone->cadence_ms[i];
    }
    if (tone->n_cadence > 0 && (sum == 0 || tone->n_cadence % 2))
        return PBX_EINVAL;
    player_arg_t a;
    memset(&a, 0, sizeof(a));
    a.target = target;
    a.is_tone = 1;
    a.tone = *tone;
    int rc = pbx__run_cmd(e, cmd_player, &a);
    if (rc == PBX_OK)
        *id = a.id;
    return rc;
}

static int cmd_stop(engine_t *e, void *arg)
{
    player_t *p = pbx__table_get(&e->players, OBJ_PLAYER, *(uint32_t *)arg);
    if (!p)
        return PBX_ENOTFOUND;
    pbx__player_end(e, p, PBX_PLAYER_STOPPED);
    return PBX_OK;
}

int pbx_player_stop(pbx_engine_t *e, uint32_t id)
{
    return pbx__run_cmd(e, cmd_stop, &id);
}

int pbx_player_stop_nowait(pbx_engine_t *e, uint32_t id)
{
    return pbx__post_cmd(e, cmd_stop, &id, sizeof(id), id, PBX_OP_PLAYER_STOP, PBX__CMD_QUIET_NOTFOUND);
}
