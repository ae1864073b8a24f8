/*
 * Jitter buffer scenarios: replays every .dat file in tests/data/jbuf (the same files the pytest
 * suite replays through cffi), plus a long steady stream across sequence/timestamp wrap.
 *
 * Scenario language (one file = one session, in the spirit of pjmedia's Jbtest.dat):
 *   # comment            = title
 *   %param min=20 max=500 init=60 plc=1    jitter buffer parameters (before the first event)
 *   %frame N   samples per packet from now on        %get N     samples per get
 *   %period MS clock step per G/W (default 20)      %seq N %ts N   next sequence / timestamp
 *   %jump N    timestamp step of J (default 8000000)
 *   events (a letter, "(...)" group, "*N" repeats the previous letter or group):
 *   P put the next packet now     L lose it (never sent)     D put the last packet again
 *   H hold the next packet back   U put the oldest held one now (reordered or late)
 *   Z silence suppression: the timestamp moves one frame, nothing is sent
 *   J timestamp jump before the next packet    X new stream (sequence and timestamp jump)
 *   R new source signalled (pbx_jb_resync), then a new stream as X
 *   G get (clock + period)   O/C/S get expecting OK/CONCEALED/SILENCE
 *   W the reader stalls one period (clock + period, no get)
 *   !name op value   a bound on a statistic at that point (op: == != < <= > >=)
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbxcore.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef struct { uint16_t seq; uint32_t ts; int len; int64_t sidx; } pkt_t;

typedef struct {
    const char *file;
    int line;
    int failures;
    pbx_jb_params_t params;
    pbx_jb_t *jb;
    uint16_t seq;
    uint32_t ts;
    int frame, getn;
    int64_t period_us, t, sidx, jump;
    pkt_t held[512];
    int nheld;
    pkt_t last;
    int have_last;
    long gets[3], puts[4], total;
} sc_t;

static int16_t sig(int64_t i)
{
    return (int16_t)lrint(6000.0 * sin(2 * M_PI * 300.0 * (double)i / 8000.0) +
                          2000.0 * sin(2 * M_PI * 710.0 * (double)i / 8000.0));
}

static void fail(sc_t *s, const char *what)
{
    fprintf(stderr, "%s:%d: %s\n", s->file, s->line, what);
    s->failures++;
}

static int ensure_jb(sc_t *s)
{
    if (s->jb)
        return 1;
    if (pbx_jb_create(&s->params, &s->jb) != PBX_OK) {
        fail(s, "pbx_jb_create failed");
        return 0;
    }
    return 1;
}

static void put_pkt(sc_t *s, const pkt_t *p)
{
    int16_t pcm[480];
    for (int i = 0; i < p->len; i++)
        pcm[i] = sig(p->sidx + i);
    int r = pbx_jb_put(s->jb, p->seq, p->ts, pcm, p->len, s->t);
    if (r < 0 || r > 3) {
        fail(s, "pbx_jb_put returned an error");
        return;
    }
    s->puts[r]++;
    s->last = *p;
    s->have_last = 1;
}

static pkt_t next_pkt(sc_t *s)
{
    pkt_t p = {s->seq, s->ts, s->frame, s->sidx};
    s->seq++;
    s->ts += (uint32_t)s->frame;
    s->sidx += s->frame;
    return p;
}

static void do_get(sc_t *s, int expect)
{
    int16_t out[960];
    int r = pbx_jb_get(s->jb, out, s->getn, s->t);
    s->t += s->period_us;
    if (r < 0 || r > 2) {
        fail(s, "pbx_jb_get returned an error");
        return;
    }
    s->gets[r]++;
    s->total += s->getn;
    if (expect >= 0 && r != expect) {
        char m[80];
        snprintf(m, sizeof m, "get returned %d, expected %d", r, expect);
        fail(s, m);
    }
    pbx_jb_stats_t st;
    pbx_jb_get_stats(s->jb, &st);
    if ((long)(st.played_samples + st.concealed_samples + st.silence_samples) != s->total)
        fail(s, "played + concealed + silence != samples pulled");
}

static void new_stream(sc_t *s)
{
    s->seq = (uint16_t)(s->seq + 20000);
    s->ts += 123456789u;
}

static void event(sc_t *s, char c)
{
    if (!ensure_jb(s))
        return;
    switch (c) {
    case 'P': { pkt_t p = next_pkt(s); put_pkt(s, &p); break; }
    case 'L': next_pkt(s); break;
    case 'D':
        if (s->have_last) { pkt_t p = s->last; put_pkt(s, &p); }
        break;
    case 'H':
        if (s->nheld < 512)
            s->held[s->nheld++] = next_pkt(s);
        break;
    case 'U':
        if (s->nheld > 0) {
            pkt_t p = s->held[0];
            memmove(s->held, s->held + 1, (size_t)(s->nheld - 1) * sizeof p);
            s->nheld--;
            put_pkt(s, &p);
        }
        break;
    case 'Z': s->ts += (uint32_t)s->frame; s->sidx += s->frame; break;
    case 'J': s->ts += (uint32_t)s->jump; break;
    case 'X': new_stream(s); break;
    case 'R': pbx_jb_resync(s->jb); new_stream(s); break;
    case 'G': do_get(s, -1); break;
    case 'O': do_get(s, PBX_JB_OK); break;
    case 'C': do_get(s, PBX_JB_CONCEALED); break;
    case 'S': do_get(s, PBX_JB_SILENCE); break;
    case 'W': s->t += s->period_us; break;
    default: {
        char m[40];
        snprintf(m, sizeof m, "unknown event '%c'", c);
        fail(s, m);
    }
    }
}

/* Run a sequence (with groups and repeats); returns the position after it. */
static const char *run_seq(sc_t *s, const char *p, int depth)
{
    while (*p && *p != ')') {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') { p++; continue; }
        const char *start = p, *end;
        if (*p == '(') {
            end = run_seq(s, p + 1, depth + 1);
            if (*end != ')') { fail(s, "unbalanced parenthesis"); return end; }
            end++;
        } else {
            event(s, *p);
            end = p + 1;
        }
        if (*end == '*') {
            char *after;
            long n = strtol(end + 1, &after, 10);
            for (long k = 1; k < n; k++) {
                if (*start == '(')
                    run_seq(s, start + 1, depth + 1);
                else
                    event(s, *start);
            }
            end = after;
        }
        p = end;
    }
    if (depth == 0 && *p == ')')
        fail(s, "unbalanced parenthesis");
    return p;
}

static int stat_value(sc_t *s, const char *name, double *v)
{
    pbx_jb_stats_t st;
    pbx_jb_get_stats(s->jb, &st);
    struct { const char *n; double v; } t[] = {
        {"received", (double)st.received}, {"lost", (double)st.lost},
        {"late_discarded", (double)st.late_discarded}, {"duplicated", (double)st.duplicated},
        {"reordered", (double)st.reordered}, {"concealed_samples", (double)st.concealed_samples},
        {"played_samples", (double)st.played_samples}, {"silence_samples", (double)st.silence_samples},
        {"dropped_samples_drift", (double)st.dropped_samples_drift},
        {"inserted_samples_drift", (double)st.inserted_samples_drift},
        {"overflow_dropped_samples", (double)st.overflow_dropped_samples},
        {"resyncs", (double)st.resyncs}, {"current_delay_ms", st.current_delay_ms},
        {"target_delay_ms", st.target_delay_ms}, {"buffered_ms", st.buffered_ms},
        {"jitter_ms", st.jitter_ms}, {"gets_ok", (double)s->gets[0]},
        {"gets_concealed", (double)s->gets[1]}, {"gets_silence", (double)s->gets[2]},
        {"puts_stored", (double)s->puts[0]}, {"puts_late", (double)s->puts[1]},
        {"puts_duplicate", (double)s->puts[2]}, {"puts_resync", (double)s->puts[3]},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].n, name) == 0) { *v = t[i].v; return 1; }
    return 0;
}

static void check(sc_t *s, const char *line)
{
    char name[64], op[4];
    double want, have;
    if (sscanf(line, "%63s %3s %lf", name, op, &want) != 3) { fail(s, "bad check line"); return; }
    if (!ensure_jb(s))
        return;
    if (!stat_value(s, name, &have)) { fail(s, "unknown statistic"); return; }
    int ok = !strcmp(op, "==") ? have == want : !strcmp(op, "!=") ? have != want :
             !strcmp(op, "<=") ? have <= want : !strcmp(op, ">=") ? have >= want :
             !strcmp(op, "<") ? have < want : !strcmp(op, ">") ? have > want : -1;
    char m[200];
    if (ok < 0) { fail(s, "bad operator"); return; }
    if (!ok) {
        snprintf(m, sizeof m, "check failed: %s %s %g (is %g)", name, op, want, have);
        fail(s, m);
    }
}

static void directive(sc_t *s, const char *line)
{
    char key[32];
    long v;
    if (sscanf(line, "%31s", key) != 1) { fail(s, "bad directive"); return; }
    const char *rest = line + strlen(key);
    if (!strcmp(key, "param")) {
        if (s->jb) { fail(s, "%param after the first event"); return; }
        char buf[256];
        snprintf(buf, sizeof buf, "%s", rest);
        for (char *tok = strtok(buf, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
            char k[16];
            long x;
            if (sscanf(tok, "%15[^=]=%ld", k, &x) != 2) { fail(s, "bad %param"); continue; }
            if (!strcmp(k, "min")) s->params.min_delay_ms = (int)x;
            else if (!strcmp(k, "max")) s->params.max_delay_ms = (int)x;
            else if (!strcmp(k, "init")) s->params.initial_delay_ms = (int)x;
            else if (!strcmp(k, "plc")) s->params.plc = (int)x;
            else fail(s, "unknown %param key");
        }
        return;
    }
    if (sscanf(rest, "%ld", &v) != 1) { fail(s, "directive needs a number"); return; }
    if (!strcmp(key, "frame")) s->frame = (int)v;
    else if (!strcmp(key, "get")) s->getn = (int)v;
    else if (!strcmp(key, "period")) s->period_us = v * 1000;
    else if (!strcmp(key, "seq")) s->seq = (uint16_t)v;
    else if (!strcmp(key, "ts")) s->ts = (uint32_t)v;
    else if (!strcmp(key, "jump")) s->jump = v;
    else fail(s, "unknown directive");
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); return 1; }
    sc_t *s = calloc(1, sizeof *s);
    if (!s) { fclose(f); return 1; }
    s->file = path;
    pbx_jb_params_default(&s->params);
    s->frame = s->getn = 160;
    s->period_us = 20000;
    s->t = 1000000;
    s->seq = 1000;
    s->ts = 160000;
    s->jump = 8000000;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        s->line++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '=' || *p == '\n' || *p == '\r' || !*p) continue;
        if (*p == '%') directive(s, p + 1);
        else if (*p == '!') check(s, p + 1);
        else run_seq(s, p, 0);
    }
    fclose(f);
    int failures = s->failures;
    pbx_jb_destroy(s->jb);
    free(s);
    return failures;
}

/* A long stream with jitter across both wraps; every get must be full and consistent. */
static int steady_wrap(void)
{
    pbx_jb_params_t p;
    pbx_jb_t *jb;
    pbx_jb_params_default(&p);
    if (pbx_jb_create(&p, &jb) != PBX_OK)
        return 1;
    int16_t pcm[160], out[160];
    uint16_t seq = 65000;
    uint32_t ts = 4294967295u - 80000;
    int64_t t = 1000000;
    int bad = 0;
    for (int k = 0; k < 3000; k++) {
        for (int i = 0; i < 160; i++)
            pcm[i] = sig((int64_t)k * 160 + i);
        if (k != 1500 && pbx_jb_put(jb, seq, ts, pcm, 160, t + (k % 7) * 1000) != PBX_JB_PUT_STORED)
            bad++;
        if (k == 200 && pbx_jb_put(jb, seq, ts, pcm, 160, t) != PBX_JB_PUT_DUPLICATE)
            bad++;
        seq++;
        ts += 160;
        if (pbx_jb_get(jb, out, 160, t + 5000) < 0)
            bad++;
        t += 20000;
    }
    pbx_jb_stats_t s;
    pbx_jb_get_stats(jb, &s);
    if (s.received != 2999 || s.lost != 1 || s.duplicated != 1 || s.late_discarded != 0 ||
        s.resyncs != 0 || s.concealed_samples == 0 || s.concealed_samples > 320 ||
        s.played_samples + s.concealed_samples + s.silence_samples != 3000 * 160) {
        fprintf(stderr, "steady_wrap: unexpected statistics\n");
        bad++;
    }
    pbx_jb_destroy(jb);
    return bad;
}

static int bad_args(void)
{
    pbx_jb_params_t p;
    pbx_jb_t *jb = NULL;
    int16_t buf[961] = {0};
    int bad = 0;
    pbx_jb_params_default(&p);
    p.min_delay_ms = 600;
    if (pbx_jb_create(&p, &jb) != PBX_EINVAL || jb)
        bad++;
    pbx_jb_params_default(&p);
    if (pbx_jb_create(&p, &jb) != PBX_OK)
        return bad + 1;
    if (pbx_jb_put(jb, 1, 0, buf, 0, 0) != PBX_EINVAL || pbx_jb_put(jb, 1, 0, buf, 481, 0) != PBX_EINVAL ||
        pbx_jb_put(jb, 1, 0, NULL, 160, 0) != PBX_EINVAL || pbx_jb_get(jb, buf, 961, 0) != PBX_EINVAL ||
        pbx_jb_get(jb, buf, 0, 0) != PBX_EINVAL || pbx_jb_get(NULL, buf, 160, 0) != PBX_EINVAL)
        bad++;
    buf[0] = 7;
    if (pbx_jb_get(jb, buf, 160, 0) != PBX_JB_SILENCE || buf[0] != 0)
        bad++;
    pbx_jb_destroy(jb);
    pbx_jb_destroy(NULL);
    if (bad)
        fprintf(stderr, "bad_args: %d failures\n", bad);
    return bad;
}


/* Random operations, including nonsense: never a crash (ASan/UBSan build), always full frames. */
static int random_ops(void)
{
    uint64_t r = 88172645463325252ull;
#define RND() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    pbx_jb_params_t p;
    pbx_jb_t *jb;
    int16_t pcm[480], out[960];
    int bad = 0;
    for (int round = 0; round < 20; round++) {
        pbx_jb_params_default(&p);
        p.max_delay_ms = 20 + (int)(RND() % 1000);
        p.min_delay_ms = (int)(RND() % (uint64_t)(p.max_delay_ms + 1));
        p.initial_delay_ms = (int)(RND() % 2001);
        p.plc = (int)(RND() & 1);
        if (pbx_jb_create(&p, &jb) != PBX_OK)
            return 1;
        uint16_t seq = (uint16_t)RND();
        uint32_t ts = (uint32_t)RND();
        int64_t t = (int64_t)(RND() % 1000000000);
        uint64_t total = 0;
        for (int k = 0; k < 5000; k++) {
            uint64_t x = RND();
            int n = 1 + (int)(x % 480);
            for (int i = 0; i < n; i++)
                pcm[i] = (int16_t)RND();
            switch ((x >> 12) % 16) {
            case 0: seq = (uint16_t)RND(); break;                 /* new numbering */
            case 1: ts = (uint32_t)RND(); break;                  /* timestamp jump */
            case 2: t += (int64_t)(RND() % 5000000); break;       /* stall */
            case 3: t = (int64_t)(RND() >> 2) - ((int64_t)1 << 61); break;   /* clock nonsense */
            case 4: pbx_jb_resync(jb); break;
            case 5: if ((x >> 20) % 50 == 0) pbx_jb_reset(jb), total = 0; break;
            default: break;
            }
            if (pbx_jb_put(jb, (uint16_t)(seq - (x >> 30) % 3), ts - (uint32_t)((x >> 33) % 3) * 160, pcm, n,
                           t + (int64_t)((x >> 40) % 60000)) < 0)
                bad++;
            seq++;
            ts += (uint32_t)n;
            int g = 1 + (int)((x >> 48) % 960);
            if (pbx_jb_get(jb, out, g, t) < 0)
                bad++;
            total += (uint64_t)g;
            t += 20000;
            pbx_jb_stats_t st;
            pbx_jb_get_stats(jb, &st);
            if (st.played_samples + st.concealed_samples + st.silence_samples != total)
                bad++;
        }
        pbx_jb_destroy(jb);
    }
#undef RND
    if (bad)
        fprintf(stderr, "random_ops: %d failures\n", bad);
    return bad;
}

int main(void)
{
    char dir[1024];
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    snprintf(dir, sizeof dir, "%.*s/../data/jbuf", slash ? (int)(slash - here) : 1, slash ? here : ".");
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "test_jbuf: no scenario directory %s\n", dir); return 1; }
    int failures = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".dat"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        failures += run_file(path);
        files++;
    }
    closedir(d);
    failures += steady_wrap();
    failures += bad_args();
    failures += random_ops();
    if (files < 12) {
        fprintf(stderr, "test_jbuf: only %d scenario files\n", files);
        failures++;
    }
    if (failures)
        fprintf(stderr, "test_jbuf: %d failures\n", failures);
    return failures ? 1 : 0;
}
