
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_redis_schema.h"

#include <ngx_sha1.h>


/*
 * The registry's sync.  The worker that holds the lease keeps two links:
 * one for commands and one subscribed to change notices and to expired
 * keys.  Notices are at-most-once, so every (re)connect and every resync
 * interval compares revisions of all services and fetches the services
 * that changed.  Redis lost the registry when its marker (P epoch) is
 * gone: the registry is then written back from the zone.
 */


#define NGX_HTTP_GATEWAY_BACKOFF_MIN  100
#define NGX_HTTP_GATEWAY_BACKOFF_MAX  5000
#define NGX_HTTP_GATEWAY_BATCH        256
#define NGX_HTTP_GATEWAY_APPLY_CHUNK  256
#define NGX_HTTP_GATEWAY_SWEEP_MAX    1000

/* the sweep lease outlives two missed renewals */
#define NGX_HTTP_GATEWAY_SWEEP_LEASE(gmcf)  (3 * (gmcf)->resync)


typedef struct {
    ngx_http_gateway_main_conf_t  *gmcf;
    ngx_log_t                     *log;

    redisAsyncContext             *cmd;
    redisAsyncContext             *sub;

    ngx_event_t                    reconnect;
    ngx_event_t                    resync;
    ngx_msec_t                     backoff;

    ngx_str_t                      events;
    ngx_str_t                      feed;
    ngx_str_t                      expired;

    ngx_uint_t                     epoch_gen;  /* bumped by each SET */
    ngx_uint_t                     restoring;  /* replies awaited */
    ngx_uint_t                     restored;   /* instances written back */

    ngx_str_t                      me;         /* the sweep lease's value */
    ngx_msec_t                     full_next;  /* next full comparison */

    u_char                         seen[NGX_INT64_LEN];
    size_t                         seen_len;   /* registry revision synced */
    uint64_t                       fed;        /* ... and on from there by
                                                  every notice in turn */
    u_char                         scan_rev[NGX_INT64_LEN];
    size_t                         scan_rev_len;
    ngx_uint_t                     scan_mark;
    ngx_uint_t                     fetching;   /* plain fetches in flight */
    ngx_msec_t                     fill_start;
    ngx_uint_t                     replies;    /* fetches answered */
    ngx_uint_t                     replies_tick;

    unsigned                       running:1;
    unsigned                       connected:1;
    unsigned                       ticking:1;
    unsigned                       full_pending:1;
    unsigned                       scanning:1;
    unsigned                       scan_first:1;
    unsigned                       scan_fill:1; /* began with an empty zone */
    unsigned                       filling:1;  /* its fetches not all in */
    unsigned                       sweeping:1; /* holds P sweeper */
} ngx_http_gateway_sync_t;


static void ngx_http_gateway_sync_connect(ngx_event_t *ev);
static void ngx_http_gateway_sync_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_gateway_sync_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_gateway_sync_failed(const char *why);
static void ngx_http_gateway_sync_close(void);
static void ngx_http_gateway_sync_on_notify_config(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_gateway_sync_on_message(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_gateway_sync_noscript(redisReply *reply);
static void ngx_http_gateway_sync_resync(ngx_event_t *ev);
static void ngx_http_gateway_sync_all(void);
static void ngx_http_gateway_sync_tick(void);
static void ngx_http_gateway_sync_on_tick(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_gateway_sync_scan(redisReply *cursor);
static void ngx_http_gateway_sync_on_fill(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_gateway_sync_on_revisions(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_gateway_sync_services(redisReply **names,
    ngx_uint_t n, ngx_uint_t full);
static void ngx_http_gateway_sync_compare_fetch(redisReply **stale,
    ngx_uint_t n);
static void ngx_http_gateway_sync_fetch(redisReply **names, ngx_uint_t n);
static void ngx_http_gateway_sync_on_ids(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_gateway_sync_on_hashes(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_gateway_sync_filled(void);
static void ngx_http_gateway_sync_on_snapshot(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_gateway_sync_epoch(redisReply *epoch,
    void *privdata);
static void ngx_http_gateway_sync_restore(void);
static ngx_int_t ngx_http_gateway_sync_restore_service(ngx_str_t *name);
static void ngx_http_gateway_sync_on_restore(redisAsyncContext *ac,
    void *r, void *privdata);
static ngx_int_t ngx_http_gateway_sync_set_epoch(redisCallbackFn *handler,
    void *privdata);
static size_t ngx_http_gateway_sync_stale_locked(redisReply **pairs,
    size_t npairs, ngx_uint_t mark, redisReply **stale);
static void ngx_http_gateway_sync_swept(redisReply *m);
static void ngx_http_gateway_sync_on_expire(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_gateway_sync_apply(redisReply *entry,
    ngx_uint_t history);
static void ngx_http_gateway_sync_expired(redisReply *key);
static void ngx_http_gateway_sync_feed(redisReply *payload);
static void ngx_http_gateway_sync_lag(ngx_http_gateway_service_t *svc,
    uint64_t written_us);
static void ngx_http_gateway_sync_release(void);
static uint64_t ngx_http_gateway_sync_seen(void);
static void ngx_http_gateway_sync_fed(uint64_t registry);
static void ngx_http_gateway_sync_revision(void);


static ngx_http_gateway_sync_t   ngx_http_gateway_sync;


const ngx_http_gateway_lag_bucket_t
    ngx_http_gateway_lag_buckets[NGX_HTTP_GATEWAY_LAG_BUCKETS] =
{
    { 100, "0.0001" }, { 250, "0.00025" }, { 500, "0.0005" },
    { 1000, "0.001" }, { 2500, "0.0025" }, { 5000, "0.005" },
    { 10000, "0.01" }, { 25000, "0.025" }, { 50000, "0.05" },
    { 100000, "0.1" }, { 250000, "0.25" }, { 1000000, "1" },
    { 5000000, "5" }, { 10000000, "10" }
};


/*
 * The sync's scripts are loaded at each connect and called by their SHA1
 * (EVALSHA): Redis then neither reads nor hashes their text at each call,
 * which halves the cost of a fetch
 */

enum {
    NGX_HTTP_GATEWAY_LUA_TICK = 0,
    NGX_HTTP_GATEWAY_LUA_REVISIONS,
    NGX_HTTP_GATEWAY_LUA_SNAPSHOT,
    NGX_HTTP_GATEWAY_LUA_EXPIRE,
    NGX_HTTP_GATEWAY_LUA_RELEASE,
    NGX_HTTP_GATEWAY_LUA_N
};

static const ngx_str_t  *ngx_http_gateway_sync_lua[NGX_HTTP_GATEWAY_LUA_N] = {
    &ngx_http_gateway_lua_tick,
    &ngx_http_gateway_lua_revisions,
    &ngx_http_gateway_lua_snapshot,
    &ngx_http_gateway_lua_expire,
    &ngx_http_gateway_lua_release
};

static u_char  ngx_http_gateway_sync_sha[NGX_HTTP_GATEWAY_LUA_N][41];

#define ngx_http_gateway_sha(n)  ((char *) ngx_http_gateway_sync_sha[n])
#define NGX_HTTP_GATEWAY_SHA_TICK       ngx_http_gateway_sha(0)
#define NGX_HTTP_GATEWAY_SHA_REVISIONS  ngx_http_gateway_sha(1)
#define NGX_HTTP_GATEWAY_SHA_SNAPSHOT   ngx_http_gateway_sha(2)
#define NGX_HTTP_GATEWAY_SHA_EXPIRE     ngx_http_gateway_sha(3)
#define NGX_HTTP_GATEWAY_SHA_RELEASE    ngx_http_gateway_sha(4)


/*
 * The command link's replies.  A full sync parses millions of strings and
 * hiredis' own reply objects take two malloc() each (and a free() each
 * afterwards).  hiredis builds one reply at a time and frees its root
 * before it parses the next one, and only one command link is alive at a
 * time, so each reply is laid out in one arena that is rewound when its
 * root is freed: it keeps its first chunk, and grows for as long as the
 * largest reply needs it.  (An ngx_pool_t reset per reply would do it,
 * but a pool's allocation walks its blocks from the first one again after
 * every reset: a fifth of the worker's time in a full sync.)
 */

#define NGX_HTTP_GATEWAY_ARENA_CHUNK  (256 * 1024)

typedef struct ngx_http_gateway_arena_s  ngx_http_gateway_arena_t;

struct ngx_http_gateway_arena_s {
    ngx_http_gateway_arena_t      *next;
    u_char                        *last;
    u_char                        *end;
};

static ngx_http_gateway_arena_t   *ngx_http_gateway_arena;
static ngx_http_gateway_arena_t   *ngx_http_gateway_arena_cur;


static void *
ngx_http_gateway_arena_alloc(size_t size)
{
    u_char                    *p;
    size_t                     n;
    ngx_http_gateway_arena_t  *a;

    size = ngx_align(size, sizeof(void *));
    a = ngx_http_gateway_arena_cur;

    if (a == NULL || (size_t) (a->end - a->last) < size) {
        n = ngx_max(size + sizeof(ngx_http_gateway_arena_t),
                    NGX_HTTP_GATEWAY_ARENA_CHUNK);

        p = ngx_alloc(n, ngx_cycle->log);
        if (p == NULL) {
            return NULL;
        }

        a = (ngx_http_gateway_arena_t *) p;
        a->next = NULL;
        a->last = p + sizeof(ngx_http_gateway_arena_t);
        a->end = p + n;

        if (ngx_http_gateway_arena_cur) {
            ngx_http_gateway_arena_cur->next = a;

        } else {
            ngx_http_gateway_arena = a;
        }

        ngx_http_gateway_arena_cur = a;
    }

    p = a->last;
    a->last += size;

    return p;
}


static redisReply *
ngx_http_gateway_reply_create(const redisReadTask *task, int type,
    size_t size)
{
    redisReply  *r, *parent;

    r = ngx_http_gateway_arena_alloc(sizeof(redisReply) + size);
    if (r == NULL) {
        return NULL;
    }

    ngx_memzero(r, sizeof(redisReply));
    r->type = type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;
    }

    return r;
}


static void *
ngx_http_gateway_reply_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply  *r;

    r = ngx_http_gateway_reply_create(task, task->type, len + 1);
    if (r == NULL) {
        return NULL;
    }

    r->str = (char *) (r + 1);
    r->len = len;
    ngx_memcpy(r->str, str, len);
    r->str[len] = '\0';

    return r;
}


static void *
ngx_http_gateway_reply_array(const redisReadTask *task, int elements)
{
    redisReply  *r;

    r = ngx_http_gateway_reply_create(task, REDIS_REPLY_ARRAY,
                                      elements * sizeof(redisReply *));
    if (r == NULL) {
        return NULL;
    }

    r->elements = elements;

    if (elements) {
        r->element = (redisReply **) (r + 1);
        ngx_memzero(r->element, elements * sizeof(redisReply *));
    }

    return r;
}


static void *
ngx_http_gateway_reply_integer(const redisReadTask *task, long long value)
{
    redisReply  *r;

    r = ngx_http_gateway_reply_create(task, REDIS_REPLY_INTEGER, 0);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    return r;
}


static void *
ngx_http_gateway_reply_nil(const redisReadTask *task)
{
    return ngx_http_gateway_reply_create(task, REDIS_REPLY_NIL, 0);
}


/* hiredis frees roots only: the whole reply goes, the arena is rewound */

static void
ngx_http_gateway_reply_free(void *reply)
{
    ngx_http_gateway_arena_t  *a, *next;

    a = ngx_http_gateway_arena;

    if (a == NULL) {
        return;
    }

    next = a->next;

    while (next) {
        a = next->next;
        ngx_free(next);
        next = a;
    }

    a = ngx_http_gateway_arena;
    a->next = NULL;
    a->last = (u_char *) a + sizeof(ngx_http_gateway_arena_t);
    ngx_http_gateway_arena_cur = a;
}


static redisReplyObjectFunctions  ngx_http_gateway_reply_functions = {
    ngx_http_gateway_reply_string,
    ngx_http_gateway_reply_array,
    ngx_http_gateway_reply_integer,
    ngx_http_gateway_reply_nil,
    ngx_http_gateway_reply_free
};


void
ngx_http_gateway_sync_start(ngx_http_gateway_main_conf_t *gmcf,
    ngx_cycle_t *cycle)
{
    u_char                    digest[20], *p;
    ngx_uint_t                i;
    ngx_sha1_t                sha1;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (sync->running) {
        return;
    }

    sync->gmcf = gmcf;
    sync->log = cycle->log;
    sync->running = 1;
    sync->backoff = NGX_HTTP_GATEWAY_BACKOFF_MIN;

    if (sync->events.data == NULL) {
        p = ngx_pnalloc(cycle->pool, gmcf->prefix.len + sizeof("events"));
        if (p == NULL) {
            return;
        }

        sync->events.data = p;
        sync->events.len = ngx_sprintf(p, NGX_HTTP_GATEWAY_KEY_EVENTS "%Z",
                                       &gmcf->prefix)
                           - p - 1;

        p = ngx_pnalloc(cycle->pool, gmcf->prefix.len + sizeof("feed"));
        if (p == NULL) {
            return;
        }

        sync->feed.data = p;
        sync->feed.len = ngx_sprintf(p, NGX_HTTP_GATEWAY_KEY_FEED "%Z",
                                     &gmcf->prefix)
                         - p - 1;

        p = ngx_pnalloc(cycle->pool, sizeof("__keyevent@255__:expired"));
        if (p == NULL) {
            return;
        }

        sync->expired.data = p;
        sync->expired.len = ngx_sprintf(p, "__keyevent@%ui__:expired%Z",
                                        gmcf->redis->db) - p - 1;

        /* one gateway's workers share it: the lease survives a reload */

        p = ngx_pnalloc(cycle->pool, cycle->hostname.len + NGX_INT64_LEN + 1);
        if (p == NULL) {
            return;
        }

        sync->me.data = p;
        sync->me.len = ngx_sprintf(p, "%V:%P", &cycle->hostname,
                                   (ngx_pid_t) getppid())
                       - p;
    }

    if (ngx_http_gateway_sync_sha[0][0] == '\0') {
        for (i = 0; i < NGX_HTTP_GATEWAY_LUA_N; i++) {
            ngx_sha1_init(&sha1);
            ngx_sha1_update(&sha1, ngx_http_gateway_sync_lua[i]->data,
                            ngx_http_gateway_sync_lua[i]->len);
            ngx_sha1_final(digest, &sha1);

            *ngx_hex_dump(ngx_http_gateway_sync_sha[i], digest, 20) = '\0';
        }
    }

    sync->reconnect.handler = ngx_http_gateway_sync_connect;
    sync->reconnect.data = sync;
    sync->reconnect.log = cycle->log;
    sync->reconnect.cancelable = 1;

    sync->resync.handler = ngx_http_gateway_sync_resync;
    sync->resync.data = sync;
    sync->resync.log = cycle->log;
    sync->resync.cancelable = 1;

    ngx_http_gateway_sync_connect(&sync->reconnect);
}


void
ngx_http_gateway_sync_stop(void)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (sync->running) {
        sync->running = 0;

        if (sync->reconnect.timer_set) {
            ngx_del_timer(&sync->reconnect);
        }

        if (sync->resync.timer_set) {
            ngx_del_timer(&sync->resync);
        }

        ngx_http_gateway_sync_release();
        ngx_http_gateway_sync_close();
    }

    /* the links are gone with their readers: so is the arena */

    if (ngx_http_gateway_arena) {
        ngx_http_gateway_reply_free(NULL);
        ngx_free(ngx_http_gateway_arena);
        ngx_http_gateway_arena = NULL;
        ngx_http_gateway_arena_cur = NULL;
    }
}


/*
 * A gateway that stops hands the sweep lease back: the script is written
 * out at once, as the link is closed right after (Redis runs what it read
 * before the close)
 */

static void
ngx_http_gateway_sync_release(void)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (!sync->sweeping || sync->cmd == NULL || !(ngx_exiting || ngx_quit
                                                  || ngx_terminate))
    {
        return;
    }

    if (redisAsyncCommand(sync->cmd, NULL, NULL, "EVALSHA %s 0 %b %b",
                          NGX_HTTP_GATEWAY_SHA_RELEASE,
                          sync->gmcf->prefix.data, sync->gmcf->prefix.len,
                          sync->me.data, sync->me.len)
        == REDIS_OK)
    {
        redisAsyncHandleWrite(sync->cmd);

        ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                      "gateway: this gateway hands the sweep lease back "
                      "(lease \"" NGX_HTTP_GATEWAY_KEY_SWEEPER "\")",
                      &sync->gmcf->prefix);
    }

    sync->sweeping = 0;
}



static void
ngx_http_gateway_sync_connect(ngx_event_t *ev)
{
    ngx_http_gateway_sync_t *sync = ev->data;

    ngx_uint_t  i;

    if (!sync->running || ngx_exiting || ngx_quit) {
        return;
    }

    sync->cmd = ngx_http_gateway_redis_connect(sync->gmcf, sync->log,
                                       ngx_http_gateway_sync_on_connect,
                                       ngx_http_gateway_sync_on_disconnect,
                                       1);
    if (sync->cmd == NULL) {
        ngx_http_gateway_sync_failed("cannot connect");
        return;
    }

    sync->cmd->c.reader->fn = &ngx_http_gateway_reply_functions;

    sync->sub = ngx_http_gateway_redis_connect(sync->gmcf, sync->log,
                                       ngx_http_gateway_sync_on_connect,
                                       ngx_http_gateway_sync_on_disconnect,
                                       0);
    if (sync->sub == NULL) {
        ngx_http_gateway_sync_failed("cannot connect");
        return;
    }

    (void) redisAsyncCommand(sync->cmd, NULL, NULL, "PING");

    for (i = 0; i < NGX_HTTP_GATEWAY_LUA_N; i++) {
        (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_redis_on_error,
                                 "SCRIPT LOAD", "SCRIPT LOAD %b",
                                 ngx_http_gateway_sync_lua[i]->data,
                                 ngx_http_gateway_sync_lua[i]->len);
    }

    (void) redisAsyncCommand(sync->cmd,
                             ngx_http_gateway_sync_on_notify_config, NULL,
                             "CONFIG GET notify-keyspace-events");

    (void) redisAsyncCommand(sync->sub, ngx_http_gateway_sync_on_message,
                             NULL, "SUBSCRIBE %b %b %b",
                             sync->events.data, sync->events.len,
                             sync->feed.data, sync->feed.len,
                             sync->expired.data, sync->expired.len);
}


static void
ngx_http_gateway_sync_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (status == REDIS_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                  "gateway: redis connection to \"%V\" failed: %s",
                  &sync->gmcf->redis->addr, ac->errstr);

    /* hiredis frees ac after this callback */

    if (ac == sync->cmd) {
        sync->cmd = NULL;
    }

    if (ac == sync->sub) {
        sync->sub = NULL;
    }

    ngx_http_gateway_sync_failed(NULL);
}


static void
ngx_http_gateway_sync_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (ac == sync->cmd) {
        sync->cmd = NULL;

    } else if (ac == sync->sub) {
        sync->sub = NULL;

    } else {
        return;
    }

    if (sync->running) {
        ngx_http_gateway_sync_failed(status == REDIS_OK ? "closed"
                                                        : ac->errstr);
    }
}


static void
ngx_http_gateway_sync_failed(const char *why)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (why) {
        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis link lost: %s, reconnecting in %Mms",
                      why, sync->backoff);
    }

    if (sync->gmcf->sh->redis_up) {
        sync->gmcf->sh->redis_up = 0;
        sync->gmcf->sh->redis_reconnects++;
    }

    ngx_http_gateway_sync_close();

    if (!sync->running || ngx_exiting || ngx_quit) {
        return;
    }

    if (!sync->reconnect.timer_set) {
        ngx_add_timer(&sync->reconnect, sync->backoff);
    }

    sync->backoff = ngx_min(sync->backoff * 2, NGX_HTTP_GATEWAY_BACKOFF_MAX);
}


static void
ngx_http_gateway_sync_close(void)
{
    ngx_http_gateway_sync_t  *sync;
    redisAsyncContext        *ac;

    sync = &ngx_http_gateway_sync;

    sync->connected = 0;
    sync->fed = 0;
    sync->ticking = 0;
    sync->scanning = 0;
    sync->sweeping = 0;

    if (sync->resync.timer_set) {
        ngx_del_timer(&sync->resync);
    }

    ac = sync->cmd;
    if (ac) {
        sync->cmd = NULL;
        redisAsyncFree(ac);
    }

    ac = sync->sub;
    if (ac) {
        sync->sub = NULL;
        redisAsyncFree(ac);
    }
}


static void
ngx_http_gateway_sync_on_notify_config(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;

    u_char                    flags[64], *p;
    u_char                    buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                    len;
    ngx_str_t                 v;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (reply == NULL || ac != sync->cmd) {
        return;
    }

    if (privdata) {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "gateway: cannot enable redis keyspace "
                          "notifications (%V); expired heartbeats are "
                          "noticed at each resync only",
                          ngx_http_gateway_redis_errstr(reply, &v, buf));
        }

        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len > 32)
    {
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: cannot read redis \"notify-keyspace-events\"; "
                      "expired heartbeats are noticed at each resync only");
        return;
    }

    p = (u_char *) reply->element[1]->str;
    len = reply->element[1]->len;

    if (ngx_strlchr(p, p + len, 'E')
        && (ngx_strlchr(p, p + len, 'x') || ngx_strlchr(p, p + len, 'A')))
    {
        return;
    }

    ngx_memcpy(flags, p, len);
    flags[len++] = 'E';
    flags[len++] = 'x';

    (void) redisAsyncCommand(ac, ngx_http_gateway_sync_on_notify_config,
                             (void *) 1,
                             "CONFIG SET notify-keyspace-events %b",
                             flags, len);
}


static void
ngx_http_gateway_sync_on_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;

    u_char                    text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                 v;
    redisReply               *kind, *channel, *payload;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (reply == NULL || ac != sync->sub) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_http_gateway_log_text(&v, text, reply->str, reply->len);
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "gateway: redis SUBSCRIBE failed: %V", &v);
        }

        return;
    }

    kind = reply->element[0];
    channel = reply->element[1];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING
        || channel->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {

        if (channel->len == sync->events.len
            && ngx_strncmp(channel->str, sync->events.data, channel->len)
               == 0)
        {
            ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                          "gateway: redis link to \"%V\" is up, syncing",
                          &sync->gmcf->redis->addr);

            sync->connected = 1;
            sync->backoff = NGX_HTTP_GATEWAY_BACKOFF_MIN;
            sync->gmcf->sh->redis_up = 1;

            ngx_http_gateway_sync_all();
        }

        return;
    }

    if (kind->len != 7 || ngx_strncmp(kind->str, "message", 7) != 0
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (channel->len == sync->events.len
        && ngx_strncmp(channel->str, sync->events.data, channel->len) == 0)
    {
        if (!ngx_gateway_valid_name(payload->str, payload->len)) {
            ngx_http_gateway_log_text(&v, text, payload->str, payload->len);
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "gateway: redis notice on \"%V\" names no valid "
                          "service: \"%V\", ignored", &sync->events, &v);
            return;
        }

        ngx_http_gateway_sync_services(&payload, 1, 0);
        return;
    }

    if (channel->len == sync->feed.len
        && ngx_strncmp(channel->str, sync->feed.data, channel->len) == 0)
    {
        ngx_http_gateway_sync_feed(payload);
        return;
    }

    ngx_http_gateway_sync_expired(payload);
}


/*
 * Every resync interval one script ("tick"): the sweep lease and, with it,
 * the heartbeats whose deadline passed, then the registry's revision.  It
 * costs O(1) while nothing changed, and names the services changed since
 * the revision this gateway saw.  When it cannot name them (a writer that
 * bumped the revision by hand without P changes, too many changes, a
 * registry that went back), and at each full_resync= interval and link up,
 * the full comparison pages through every service's revision.
 */

/* a Redis that dropped the scripts (SCRIPT FLUSH): reconnect, reload them */

static ngx_int_t
ngx_http_gateway_sync_noscript(redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR || reply->len < 8
        || ngx_strncmp(reply->str, "NOSCRIPT", 8) != 0)
    {
        return NGX_DECLINED;
    }

    ngx_http_gateway_sync_failed("the sync's scripts are gone from redis");

    return NGX_OK;
}


static void
ngx_http_gateway_sync_resync(ngx_event_t *ev)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if ((ngx_msec_int_t) (ngx_current_msec - sync->full_next) >= 0) {
        sync->full_pending = 1;
    }

    ngx_http_gateway_sync_tick();
}


static void
ngx_http_gateway_sync_all(void)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    sync->full_pending = 1;

    ngx_http_gateway_sync_tick();
}


static uint64_t
ngx_http_gateway_sync_seen(void)
{
    uint64_t                  seen;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (ngx_gateway_parse_uint((char *) sync->seen, sync->seen_len,
                               UINT64_MAX, &seen)
        != 0)
    {
        seen = 0;
    }

    return seen;
}


static void
ngx_http_gateway_sync_tick(void)
{
    u_char                   lease[NGX_INT_T_LEN];
    size_t                   len;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (!sync->connected || sync->cmd == NULL) {
        return;
    }

    if (!sync->resync.timer_set) {
        ngx_add_timer(&sync->resync, sync->gmcf->resync);
    }

    if (sync->ticking) {

        /*
         * a link that stopped answering without closing; one that answers
         * fetches queued before the tick (many gateways syncing a large
         * registry at once) is busy, not dead
         */

        if (sync->replies == sync->replies_tick) {
            ngx_http_gateway_sync_failed("the previous resync got no answer");
            return;
        }

        sync->replies_tick = sync->replies;
        return;
    }

    sync->replies_tick = sync->replies;

    len = ngx_sprintf(lease, "%M", NGX_HTTP_GATEWAY_SWEEP_LEASE(sync->gmcf))
          - lease;

    /*
     * every registry revision since the one seen came with its notice, and
     * was applied: the tick asks for what changed after them only, O(1)
     * while the notices kept up
     */

    if (sync->fed > ngx_http_gateway_sync_seen()) {
        sync->seen_len = ngx_sprintf(sync->seen, "%uL", sync->fed)
                         - sync->seen;
    }

    sync->ticking = 1;

    (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_tick,
                             (void *) sync->epoch_gen,
                             "EVALSHA %s 0 %b %b %b %b %d",
                             NGX_HTTP_GATEWAY_SHA_TICK,
                             sync->gmcf->prefix.data, sync->gmcf->prefix.len,
                             sync->seen, sync->seen_len,
                             sync->me.data, sync->me.len,
                             lease, len, NGX_HTTP_GATEWAY_SWEEP_MAX);
}


static void
ngx_http_gateway_sync_on_tick(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;

    u_char                         buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                         i, n;
    ngx_str_t                      text;
    ngx_uint_t                     sweeping;
    redisReply                    *rev, *swept, **stale;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;

    if (reply == NULL || ac != sync->cmd) {
        return;
    }

    sync->ticking = 0;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 6
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len > NGX_INT64_LEN
        || reply->element[2]->type != REDIS_REPLY_INTEGER
        || reply->element[3]->type != REDIS_REPLY_ARRAY
        || reply->element[4]->type != REDIS_REPLY_INTEGER
        || reply->element[5]->type != REDIS_REPLY_INTEGER)
    {
        if (ngx_http_gateway_sync_noscript(reply) == NGX_OK) {
            return;
        }

        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis resync failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &text, buf));
        return;
    }

    if (ngx_http_gateway_sync_epoch(reply->element[0], privdata) != NGX_OK) {
        sync->full_pending = 1;
        return;
    }

    /* this gateway knows where Redis' registry stands: the admin API's */

    sync->gmcf->sh->synced = ngx_time();

    sweeping = (reply->element[2]->integer > 0);

    if (sweeping != sync->sweeping) {
        sync->sweeping = sweeping;

        ngx_log_error(NGX_LOG_NOTICE, sync->log, 0, sweeping
                      ? "gateway: this gateway now sweeps expired heartbeats "
                        "(lease \"" NGX_HTTP_GATEWAY_KEY_SWEEPER "\")"
                      : "gateway: another gateway sweeps expired heartbeats "
                        "(lease \"" NGX_HTTP_GATEWAY_KEY_SWEEPER "\")",
                      &sync->gmcf->prefix);
    }

    swept = reply->element[3];

    for (i = 0; i < swept->elements; i++) {
        ngx_http_gateway_sync_swept(swept->element[i]);
    }

    if (sync->scanning) {
        return;
    }

    if (sync->full_pending) {
        ngx_http_gateway_sync_scan(NULL);
        goto more;
    }

    rev = reply->element[1];

    if (rev->len == sync->seen_len
        && ngx_strncmp(rev->str, sync->seen, rev->len) == 0)
    {
        goto more;
    }

    if (reply->element[5]->integer == 0) {
        ngx_http_gateway_sync_scan(NULL);
        goto more;
    }

    stale = ngx_alloc((reply->elements / 2 + 1) * sizeof(redisReply *),
                      sync->log);
    if (stale == NULL) {
        goto more;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);
    n = ngx_http_gateway_sync_stale_locked(reply->element + 6,
                                           reply->elements - 6, 0, stale);
    ngx_http_gateway_write_end(gmcf);

    ngx_http_gateway_sync_services(stale, n, 0);

    ngx_free(stale);

    sync->seen_len = rev->len;
    ngx_memcpy(sync->seen, rev->str, rev->len);
    ngx_http_gateway_sync_revision();

more:

    /* more heartbeats were due than one script sweeps: go on at once */

    if (reply->element[4]->integer >= NGX_HTTP_GATEWAY_SWEEP_MAX) {
        ngx_http_gateway_sync_tick();
    }
}


/* a page of the full comparison: the first one when cursor is NULL */

static void
ngx_http_gateway_sync_scan(redisReply *cursor)
{
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;
    sh = gmcf->sh;

    if (cursor == NULL) {
        sync->full_pending = 0;
        sync->scanning = 1;
        sync->scan_first = 1;
        sync->full_next = ngx_current_msec + gmcf->full_resync;

        ngx_shmtx_lock(&gmcf->shpool->mutex);
        sync->scan_mark = ++sh->mark;
        sync->scan_fill = (sh->nservices == 0);
        ngx_http_gateway_write_end(gmcf);

        sync->filling = sync->scan_fill;
        sync->fill_start = ngx_current_msec;
    }

    /*
     * A comparison that fills an empty zone needs no revisions: every
     * service is fetched.  Its pages are plain commands, and the sweeper's
     * audit (a PTTL per instance) waits for the next full comparison: it
     * would double what a gateway's start costs Redis.
     */

    if (sync->scan_fill) {
        (void) redisAsyncCommand(sync->cmd, NULL, NULL, "MULTI");
        (void) redisAsyncCommand(sync->cmd, NULL, NULL, "GET %bepoch",
                                 gmcf->prefix.data, gmcf->prefix.len);
        (void) redisAsyncCommand(sync->cmd, NULL, NULL, "GET %brev",
                                 gmcf->prefix.data, gmcf->prefix.len);
        (void) redisAsyncCommand(sync->cmd, NULL, NULL,
                                 "SSCAN %bservices %b COUNT 512",
                                 gmcf->prefix.data, gmcf->prefix.len,
                                 cursor ? cursor->str : "0",
                                 (size_t) (cursor ? cursor->len : 1));
        (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_fill,
                                 (void *) sync->epoch_gen, "EXEC");
        return;
    }

    (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_revisions,
                             (void *) sync->epoch_gen,
                             "EVALSHA %s 0 %b %b %s",
                             NGX_HTTP_GATEWAY_SHA_REVISIONS,
                             gmcf->prefix.data, gmcf->prefix.len,
                             cursor ? cursor->str : "0",
                             (size_t) (cursor ? cursor->len : 1),
                             (sync->sweeping && !sync->scan_fill) ? "1" : "0");
}


/*
 * A page of a comparison that fills the zone: the marker, the registry's
 * revision and a page of names, given to on_revisions() in the revisions
 * script's shape, each name with revision 0
 */

static void
ngx_http_gateway_sync_on_fill(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                *reply = r;

    u_char                     buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                     i, n;
    ngx_str_t                  v;
    redisReply               **e, *page, *names, zero, page_reply;
    ngx_http_gateway_sync_t   *sync;

    sync = &ngx_http_gateway_sync;

    if (reply == NULL || ac != sync->cmd || !sync->scanning) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[2]->type != REDIS_REPLY_ARRAY
        || reply->element[2]->elements != 2
        || reply->element[2]->element[0]->type != REDIS_REPLY_STRING
        || reply->element[2]->element[1]->type != REDIS_REPLY_ARRAY)
    {
        sync->scanning = 0;
        sync->full_pending = 1;

        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis resync failed: %V",
                      ngx_http_gateway_redis_errstr(
                          reply->type == REDIS_REPLY_ARRAY
                          && reply->elements == 3
                          && reply->element[2]->type == REDIS_REPLY_ERROR
                          ? reply->element[2] : reply, &v, buf));
        return;
    }

    page = reply->element[2];
    names = page->element[1];
    n = names->elements;

    e = ngx_alloc((3 + 2 * n) * sizeof(redisReply *), sync->log);
    if (e == NULL) {
        sync->scanning = 0;
        sync->full_pending = 1;
        return;
    }

    ngx_memzero(&zero, sizeof(redisReply));
    zero.type = REDIS_REPLY_STRING;
    zero.str = "0";
    zero.len = 1;

    e[0] = reply->element[0];
    e[1] = reply->element[1];

    if (e[1]->type != REDIS_REPLY_STRING || e[1]->len > NGX_INT64_LEN) {
        e[1] = &zero;
    }

    e[2] = page->element[0];

    for (i = 0; i < n; i++) {
        e[3 + 2 * i] = names->element[i];
        e[4 + 2 * i] = &zero;
    }

    ngx_memzero(&page_reply, sizeof(redisReply));
    page_reply.type = REDIS_REPLY_ARRAY;
    page_reply.elements = 3 + 2 * n;
    page_reply.element = e;

    ngx_http_gateway_sync_on_revisions(ac, &page_reply, privdata);

    ngx_free(e);
}


static void
ngx_http_gateway_sync_on_revisions(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                    *reply = r;

    u_char                         buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                         n;
    ngx_str_t                      text;
    ngx_uint_t                     mark;
    redisReply                   **stale, *cursor;
    ngx_rbtree_node_t             *node, *next, *sentinel;
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;

    if (reply == NULL || ac != sync->cmd || !sync->scanning) {
        return;
    }

    sync->replies++;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len > NGX_INT64_LEN
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        sync->scanning = 0;
        sync->full_pending = 1;

        if (ngx_http_gateway_sync_noscript(reply) == NGX_OK) {
            return;
        }

        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis resync failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &text, buf));
        return;
    }

    if (ngx_http_gateway_sync_epoch(reply->element[0], privdata) != NGX_OK) {
        sync->scanning = 0;
        sync->full_pending = 1;
        return;
    }

    if (sync->scan_first) {

        /* what changed from here on, the ticks find */

        sync->scan_first = 0;
        sync->scan_rev_len = reply->element[1]->len;
        ngx_memcpy(sync->scan_rev, reply->element[1]->str,
                   sync->scan_rev_len);
    }

    stale = ngx_alloc((reply->elements / 2 + 1) * sizeof(redisReply *),
                      sync->log);
    if (stale == NULL) {
        sync->scanning = 0;
        sync->full_pending = 1;
        return;
    }

    gmcf = sync->gmcf;
    sh = gmcf->sh;
    mark = sync->scan_mark;
    cursor = reply->element[2];

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    n = ngx_http_gateway_sync_stale_locked(reply->element + 3,
                                           reply->elements - 3, mark, stale);

    if (cursor->len == 1 && cursor->str[0] == '0') {

        /* the last page: what was not listed is gone */

        sentinel = sh->rbtree.sentinel;
        node = (sh->rbtree.root == sentinel)
               ? NULL : ngx_rbtree_min(sh->rbtree.root, sentinel);

        while (node) {
            next = ngx_rbtree_next(&sh->rbtree, node);
            svc = (ngx_http_gateway_service_t *) node;

            if (svc->mark != mark && svc->written <= svc->revision) {
                ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                              "gateway: service \"%V\" is gone from redis",
                              &svc->sn.str);
                ngx_http_gateway_service_delete_locked(gmcf, svc);
            }

            node = next;
        }

        /*
         * what the comparison read is the registry revision now, also when
         * it went back (a Redis that came back empty) from one notices fed
         */

        sync->scanning = 0;
        sync->fed = 0;
        sync->seen_len = sync->scan_rev_len;
        ngx_memcpy(sync->seen, sync->scan_rev, sync->scan_rev_len);
        ngx_http_gateway_sync_revision();
    }

    ngx_http_gateway_write_end(gmcf);

    /*
     * A fill asks for its next page before it fetches this one: replies
     * come in order, so the next page's names, then its ids, come back
     * before this page's hashes, and Redis reads the next page's hashes
     * while this worker applies this one's, instead of each waiting for
     * the other.  One page is asked for at a time: about two pages are in
     * flight.
     */

    if (sync->scanning && sync->scan_fill) {
        ngx_http_gateway_sync_scan(cursor);
    }

    ngx_http_gateway_sync_compare_fetch(stale, n);

    ngx_free(stale);

    if (sync->scanning && !sync->scan_fill) {
        ngx_http_gateway_sync_scan(cursor);
    }
}


/*
 * Name and revision pairs from Redis: the services whose revision is not
 * the zone's (or is 0) go to stale; with a mark, the listed ones are marked
 */

static size_t
ngx_http_gateway_sync_stale_locked(redisReply **pairs, size_t npairs,
    ngx_uint_t mark, redisReply **stale)
{
    u_char                         buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                         i, n;
    uint64_t                       rev;
    ngx_str_t                      name, text;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;
    n = 0;

    for (i = 0; i + 1 < npairs; i += 2) {
        if (pairs[i]->type != REDIS_REPLY_STRING
            || pairs[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        name.data = (u_char *) pairs[i]->str;
        name.len = pairs[i]->len;

        if (!ngx_gateway_valid_name((char *) name.data, name.len)) {
            ngx_http_gateway_log_text(&text, buf, name.data, name.len);
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "gateway: redis service name \"%V\" is invalid, "
                          "skipped", &text);
            continue;
        }

        svc = ngx_http_gateway_service_lookup(gmcf, &name);

        if (ngx_gateway_parse_uint(pairs[i + 1]->str, pairs[i + 1]->len,
                                   UINT64_MAX, &rev)
            != 0)
        {
            rev = 0;
        }

        if (svc && mark) {
            svc->mark = mark;
        }

        if (svc == NULL || svc->revision != rev || rev == 0) {
            stale[n++] = pairs[i];
        }
    }

    return n;
}


/* "NAME:ID" of an instance whose heartbeat this gateway found expired */

static void
ngx_http_gateway_sync_swept(redisReply *m)
{
    u_char                   buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                text, service, id;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (m->type != REDIS_REPLY_STRING) {
        return;
    }

    service.data = (u_char *) m->str;
    id.data = ngx_strlchr(service.data, service.data + m->len, ':');

    if (id.data) {
        service.len = id.data - service.data;
        id.data++;
        id.len = service.data + m->len - id.data;
    }

    if (id.data == NULL
        || !ngx_gateway_valid_name((char *) service.data, service.len)
        || !ngx_gateway_valid_name((char *) id.data, id.len))
    {
        ngx_http_gateway_log_text(&text, buf, m->str, m->len);
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: redis \"%Vdeadlines\" member \"%V\" is "
                      "not a service name and an instance id, dropped",
                      &sync->gmcf->prefix, &text);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                  "gateway: instance \"%V\" of service \"%V\" missed its "
                  "heartbeat", &id, &service);
}


static void
ngx_http_gateway_sync_on_expire(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply  *reply = r;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        ngx_http_gateway_sync_swept(reply);
        return;
    }

    if (ac == ngx_http_gateway_sync.cmd
        && ngx_http_gateway_sync_noscript(reply) == NGX_OK)
    {
        return;
    }

    ngx_http_gateway_redis_on_error(ac, r, privdata);
}


/*
 * Redis holds a marker, "P epoch", that a gateway sets once the registry
 * is in Redis.  A registry that vanishes at once (FLUSHALL, a restart
 * without persistence) takes the marker with it; that is almost never a
 * real deregistration of everything, so the gateway keeps routing what it
 * knows, calls the registry stale, and writes it back to Redis.  NGX_OK:
 * sync as usual.
 */

static ngx_int_t
ngx_http_gateway_sync_epoch(redisReply *epoch, void *privdata)
{
    ngx_uint_t                     nservices, ninstances;
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;
    sh = gmcf->sh;

    if (epoch->type == REDIS_REPLY_STRING) {

        ngx_shmtx_lock(&gmcf->shpool->mutex);

        /* a marker set by hand still marks the registry, but is not kept */

        if (ngx_http_gateway_valid_marker(epoch->str, epoch->len)
            && (sh->marker_len != epoch->len
                || ngx_memcmp(sh->marker, epoch->str, epoch->len) != 0))
        {
            sh->marker_len = epoch->len;
            ngx_memcpy(sh->marker, epoch->str, epoch->len);
            sh->generation++;
        }

        if (sh->stale_since) {
            sh->stale_since = 0;
            sh->generation++;

            ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                          "gateway: the registry is back in redis \"%V\" "
                          "(%ui instances written back); no longer stale",
                          &gmcf->redis->addr, sync->restored);

            sync->restored = 0;
        }

        ngx_http_gateway_write_end(gmcf);

        return NGX_OK;
    }

    if ((ngx_uint_t) privdata != sync->epoch_gen) {

        /* sent before this gateway set the marker */

        return NGX_OK;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);
    nservices = sh->nservices;
    ninstances = sh->ninstances;
    ngx_http_gateway_write_end(gmcf);

    if (nservices == 0 || sh->marker_len == 0) {

        /*
         * nothing to lose, or a registry this gateway never saw marked
         * (a new Redis, or one from before the marker): follow it
         */

        (void) ngx_http_gateway_sync_set_epoch(ngx_http_gateway_redis_on_error,
                                               "SET of the registry marker");
        return NGX_OK;
    }

    if (sh->stale_since == 0) {
        ngx_shmtx_lock(&gmcf->shpool->mutex);
        sh->stale_since = ngx_time();
        sh->generation++;
        ngx_http_gateway_write_end(gmcf);

        ngx_log_error(NGX_LOG_ALERT, sync->log, 0,
                      "gateway: redis \"%V\" lost the registry (key "
                      "\"%Vepoch\" is gone: FLUSHALL, or a restart without "
                      "persistence); the registry is stale, routing goes "
                      "on with the last known %ui instances of %ui services "
                      "and writes them back to redis",
                      &gmcf->redis->addr, &gmcf->prefix, ninstances,
                      nservices);
    }

    ngx_http_gateway_sync_restore();

    return NGX_DECLINED;
}


static void
ngx_http_gateway_sync_restore(void)
{
    size_t                         len;
    u_char                        *names, *p;
    ngx_str_t                      name;
    ngx_rbtree_node_t             *node, *root, *sentinel;
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;

    if (sync->restoring) {
        return;
    }

    gmcf = sync->gmcf;
    sh = gmcf->sh;

    /* the names first: each service is then copied under a lock of its own */

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    root = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;
    len = 0;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&sh->rbtree, node))
    {
        len += ((ngx_http_gateway_service_t *) node)->sn.str.len + 1;
    }

    names = ngx_alloc(len + 1, sync->log);
    if (names == NULL) {
        ngx_http_gateway_write_end(gmcf);
        return;
    }

    p = names;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&sh->rbtree, node))
    {
        svc = (ngx_http_gateway_service_t *) node;
        *p++ = (u_char) svc->sn.str.len;
        p = ngx_cpymem(p, svc->sn.str.data, svc->sn.str.len);
    }

    ngx_http_gateway_write_end(gmcf);

    for (len = p - names, p = names; p < names + len; p += name.len) {
        name.len = *p++;
        name.data = p;

        if (ngx_http_gateway_sync_restore_service(&name) == NGX_OK) {
            sync->restoring++;
        }
    }

    ngx_free(names);

    if (sync->restoring == 0) {
        return;
    }

    /* the marker last: a gateway that sees it sees the whole registry */

    if (ngx_http_gateway_sync_set_epoch(ngx_http_gateway_sync_on_restore,
                                        (void *) 1)
        == NGX_OK)
    {
        sync->restoring++;
    }
}


static ngx_int_t
ngx_http_gateway_sync_set_epoch(redisCallbackFn *handler, void *privdata)
{
    u_char                   value[2 * NGX_INT32_LEN];
    size_t                   len;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    len = ngx_sprintf(value, "%08xD%08xD", (uint32_t) ngx_random(),
                      (uint32_t) ngx_time())
          - value;

    if (redisAsyncCommand(sync->cmd, handler, privdata, "SET %bepoch %b NX",
                          sync->gmcf->prefix.data, sync->gmcf->prefix.len,
                          value, len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    sync->epoch_gen++;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_sync_restore_service(ngx_str_t *name)
{
    size_t                         len, *argvlen;
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_uint_t                     i, argc, nargs;
    const char                   **argv;
    ngx_gateway_record_t           rec;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_instance_t   *inst;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    svc = ngx_http_gateway_service_lookup(gmcf, name);
    if (svc == NULL) {
        ngx_http_gateway_write_end(gmcf);
        return NGX_DECLINED;
    }

    /* per instance: id, the number of fields, then their names and values */

    argc = 5;
    len = 0;

    for (i = 0; i < svc->ninstances; i++) {
        inst = svc->instances[i];
        ngx_http_gateway_instance_record(inst, &rec);

        len += inst->data->id_len + NGX_INT_T_LEN
               + ngx_http_gateway_record_hash_size(&rec,
                                                   NGX_GATEWAY_RECORD_ALL,
                                                   &nargs);
        argc += 2 + nargs;
    }

    len += argc * (sizeof(char *) + sizeof(size_t));

    argv = ngx_alloc(len, sync->log);
    if (argv == NULL) {
        ngx_http_gateway_write_end(gmcf);
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);
    p = (u_char *) (argvlen + argc);

#define ngx_http_gateway_arg(n, s, l)                                         \
    argv[n] = (const char *) (s); argvlen[n] = (l)

    ngx_http_gateway_arg(0, "EVAL", 4);
    ngx_http_gateway_arg(1, ngx_http_gateway_lua_restore.data,
                         ngx_http_gateway_lua_restore.len);
    ngx_http_gateway_arg(2, "0", 1);
    ngx_http_gateway_arg(3, gmcf->prefix.data, gmcf->prefix.len);
    ngx_http_gateway_arg(4, name->data, name->len);

    argc = 5;

    for (i = 0; i < svc->ninstances; i++) {
        inst = svc->instances[i];
        ngx_http_gateway_instance_record(inst, &rec);

        ngx_http_gateway_arg(argc, p, inst->data->id_len);
        p = ngx_cpymem(p, ngx_http_gateway_data_strings(inst->data),
                       inst->data->id_len);

        nargs = ngx_http_gateway_record_to_hash(&rec, NGX_GATEWAY_RECORD_ALL,
                                                argv + argc + 2,
                                                argvlen + argc + 2, &p);

        ngx_http_gateway_arg(argc + 1, p,
                             (size_t) (ngx_sprintf(p, "%ui", nargs / 2)
                                       - p));
        p += argvlen[argc + 1];

        argc += 2 + nargs;
    }

#undef ngx_http_gateway_arg

    ngx_http_gateway_write_end(gmcf);

    /* hiredis formats the command here: argv may go right after */

    rc = redisAsyncCommandArgv(sync->cmd, ngx_http_gateway_sync_on_restore,
                               NULL, (int) argc, argv, argvlen);

    ngx_free(argv);

    return rc == REDIS_OK ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_gateway_sync_on_restore(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;

    u_char                    buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                 v;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (ac != sync->cmd) {
        return;
    }

    if (sync->restoring) {
        sync->restoring--;
    }

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: writing the registry back to redis "
                      "failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &v, buf));
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        sync->restored += (ngx_uint_t) reply->integer;
    }

    if (privdata) {

        /* the marker is set: read the registry back as usual */

        ngx_http_gateway_sync_all();
    }
}


/*
 * Fetches services, 256 per script; with each name goes the revision the
 * zone has (0 with full set), so that Redis returns only the instances
 * changed since, when the service's log covers them
 */

static void
ngx_http_gateway_sync_services(redisReply **names, ngx_uint_t n,
    ngx_uint_t full)
{
    u_char                        *revs, *p;
    size_t                        *argvlen;
    ngx_str_t                      name;
    ngx_uint_t                     i, k, batch;
    const char                   **argv;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;

    if (n == 0 || sync->cmd == NULL) {
        return;
    }

    batch = ngx_min(n, NGX_HTTP_GATEWAY_BATCH);

    argv = ngx_alloc((2 * batch + 4) * (sizeof(char *) + sizeof(size_t))
                     + batch * NGX_INT64_LEN, sync->log);
    if (argv == NULL) {
        return;
    }

    argvlen = (size_t *) (argv + 2 * batch + 4);
    revs = (u_char *) (argvlen + 2 * batch + 4);

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = NGX_HTTP_GATEWAY_SHA_SNAPSHOT;
    argvlen[1] = 40;
    argv[2] = "0";
    argvlen[2] = 1;
    argv[3] = (char *) gmcf->prefix.data;
    argvlen[3] = gmcf->prefix.len;

    for (i = 0; i < n; i += batch) {

        p = revs;

        ngx_shmtx_lock(&gmcf->shpool->mutex);

        for (k = 0; k < batch && i + k < n; k++) {
            name.data = (u_char *) names[i + k]->str;
            name.len = names[i + k]->len;

            svc = full ? NULL : ngx_http_gateway_service_lookup(gmcf, &name);

            argv[4 + 2 * k] = names[i + k]->str;
            argvlen[4 + 2 * k] = names[i + k]->len;
            argv[5 + 2 * k] = (char *) p;
            p = ngx_sprintf(p, "%uL", svc ? svc->revision : 0);
            argvlen[5 + 2 * k] = p - (u_char *) argv[5 + 2 * k];
        }

        ngx_http_gateway_write_end(gmcf);

        (void) redisAsyncCommandArgv(sync->cmd,
                                     ngx_http_gateway_sync_on_snapshot,
                                     (void *) sync->epoch_gen,
                                     (int) (4 + 2 * k), argv, argvlen);
    }

    ngx_free(argv);
}


static void
ngx_http_gateway_sync_on_snapshot(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;

    u_char                    buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                    i;
    ngx_str_t                 v;
    ngx_uint_t                history;
    redisReply               *epoch;
    ngx_http_gateway_sh_t    *sh;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;
    sh = sync->gmcf->sh;

    if (reply == NULL || ac != sync->cmd) {
        return;
    }

    sync->replies++;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        if (ngx_http_gateway_sync_noscript(reply) == NGX_OK) {
            return;
        }

        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis sync failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &v, buf));
        return;
    }

    /*
     * revisions go on from the zone's only in the registry the zone saw:
     * after a wipe they start again, and a delta is not to be trusted
     */

    epoch = reply->element[0];

    ngx_shmtx_lock(&sync->gmcf->shpool->mutex);
    history = (epoch->type == REDIS_REPLY_STRING
               && sh->marker_len == epoch->len
               && ngx_memcmp(sh->marker, epoch->str, epoch->len) == 0);
    ngx_http_gateway_write_end(sync->gmcf);

    if (ngx_http_gateway_sync_epoch(epoch, privdata) != NGX_OK) {
        return;
    }

    for (i = 1; i < reply->elements; i++) {
        ngx_http_gateway_sync_apply(reply->element[i], history);
    }
}


/*
 * The services a page of the full comparison found changed: those the
 * zone does not have are fetched without a script, the others by the
 * snapshot script (which sends only what changed since the zone's
 * revision)
 */

static void
ngx_http_gateway_sync_compare_fetch(redisReply **stale, ngx_uint_t n)
{
    ngx_str_t                      name;
    ngx_uint_t                     i, k;
    redisReply                    *t;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_gateway_sync.gmcf;
    k = 0;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    for (i = 0; i < n; i++) {
        name.data = (u_char *) stale[i]->str;
        name.len = stale[i]->len;

        if (ngx_http_gateway_service_lookup(gmcf, &name) == NULL) {
            t = stale[k];
            stale[k++] = stale[i];
            stale[i] = t;
        }
    }

    ngx_http_gateway_write_end(gmcf);

    ngx_http_gateway_sync_fetch(stale, k);
    ngx_http_gateway_sync_services(stale + k, n - k, 0);
}


/*
 * The full comparison fetches the services the zone does not have yet (all
 * of them when a gateway starts) without a script: Redis spends most of a
 * script's time turning its Lua tables into a reply, about three times
 * what the same commands cost it natively.  A batch is two transactions:
 * each service's revision, whether it is listed, and its ids; then the
 * marker and every instance's hash.  The revision is the one read first,
 * so a change in between leaves the zone's revision older than Redis', and
 * the next comparison or notice fetches the service again.  The replies
 * go to ngx_http_gateway_sync_apply() in the shape of the snapshot
 * script's.  A batch keeps its services' names and ids, nothing larger.
 */

typedef struct {
    ngx_str_t                      name;
    ngx_str_t                      rev;
    long long                      listed;
    ngx_str_t                     *ids;       /* NULL: not a set */
    ngx_uint_t                     nids;
} ngx_http_gateway_fetch_svc_t;


typedef struct {
    ngx_uint_t                     epoch_gen;
    ngx_uint_t                     n;
    ngx_http_gateway_fetch_svc_t   svcs[1];
} ngx_http_gateway_fetch_t;


/*
 * The plain fetch's commands are formatted here, one per service and per
 * instance: hiredis' own formatting (an sds per argument, then the
 * protocol's text) costs several times more.  A key is the prefix, "svc:",
 * the service's name, a suffix and, for an instance, its id.
 */

#define NGX_HTTP_GATEWAY_RESP_KEY_MAX(prefix)                                \
    (sizeof("$\r\n\r\n") + NGX_SIZE_T_LEN + (prefix)->len                    \
     + sizeof(NGX_HTTP_GATEWAY_KEY_SVC NGX_HTTP_GATEWAY_KEY_INST_TAIL)        \
     + 2 * NGX_GATEWAY_NAME_MAX)


static u_char *
ngx_http_gateway_resp_key(u_char *p, ngx_str_t *prefix, ngx_str_t *name,
    const char *suffix, size_t suffix_len, ngx_str_t *id)
{
    size_t  len;

    len = prefix->len + sizeof(NGX_HTTP_GATEWAY_KEY_SVC) - 1 + name->len
          + suffix_len
          + (id ? id->len : 0);

    *p++ = '$';
    p = (u_char *) ngx_gateway_text_uint((char *) p, len);
    *p++ = CR; *p++ = LF;
    p = ngx_cpymem(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, NGX_HTTP_GATEWAY_KEY_SVC,
                   sizeof(NGX_HTTP_GATEWAY_KEY_SVC) - 1);
    p = ngx_cpymem(p, name->data, name->len);
    p = ngx_cpymem(p, suffix, suffix_len);

    if (id) {
        p = ngx_cpymem(p, id->data, id->len);
    }

    *p++ = CR; *p++ = LF;

    return p;
}


/* one command on a service's key, queued without a callback */

static void
ngx_http_gateway_sync_key_cmd(u_char *buf, char *head, ngx_str_t *name,
    char *tail, ngx_str_t *id)
{
    u_char  *p;

    p = ngx_cpymem(buf, head, ngx_strlen(head));
    p = ngx_http_gateway_resp_key(p, &ngx_http_gateway_sync.gmcf->prefix,
                                  name, tail, ngx_strlen(tail), id);

    (void) redisAsyncFormattedCommand(ngx_http_gateway_sync.cmd, NULL, NULL,
                                      (char *) buf, p - buf);
}


static void
ngx_http_gateway_sync_fetch(redisReply **names, ngx_uint_t n)
{
    u_char                    *p, *q, *key, *services;
    size_t                     size, slen;
    ngx_str_t                 *prefix, *name;
    ngx_uint_t                 i, k, batch;
    ngx_http_gateway_fetch_t  *f;
    ngx_http_gateway_sync_t   *sync;

    sync = &ngx_http_gateway_sync;
    prefix = &sync->gmcf->prefix;

    /* a command and, after it, SISMEMBER's head: its key is always one */

    size = sizeof("*3\r\n$9\r\nSISMEMBER\r\n")
           + NGX_HTTP_GATEWAY_RESP_KEY_MAX(prefix);

    key = ngx_alloc(2 * size, sync->log);
    if (key == NULL) {
        return;
    }

    services = key + size;
    slen = ngx_sprintf(services, "*3\r\n$9\r\nSISMEMBER\r\n$%uz\r\n"
                       "%Vservices\r\n",
                       prefix->len + sizeof("services") - 1, prefix)
           - services;

    for (i = 0; i < n && sync->cmd; i += batch) {
        batch = ngx_min(n - i, NGX_HTTP_GATEWAY_BATCH);

        size = offsetof(ngx_http_gateway_fetch_t, svcs)
               + batch * (sizeof(ngx_http_gateway_fetch_svc_t)
                          + NGX_GATEWAY_NAME_MAX);

        f = ngx_alloc(size, sync->log);
        if (f == NULL) {
            break;
        }

        f->epoch_gen = sync->epoch_gen;
        f->n = batch;
        p = (u_char *) &f->svcs[batch];

        (void) redisAsyncCommand(sync->cmd, NULL, NULL, "MULTI");

        for (k = 0; k < batch; k++) {

            /* stale_locked() let valid names through only */

            f->svcs[k].name.data = p;
            f->svcs[k].name.len = names[i + k]->len;
            p = ngx_cpymem(p, names[i + k]->str, names[i + k]->len);

            name = &f->svcs[k].name;

            ngx_http_gateway_sync_key_cmd(key, "*2\r\n$3\r\nGET\r\n", name,
                                          NGX_HTTP_GATEWAY_KEY_REV_TAIL, NULL);

            q = ngx_cpymem(key, services, slen);
            q = ngx_sprintf(q, "$%uz\r\n%V\r\n", name->len, name);
            (void) redisAsyncFormattedCommand(sync->cmd, NULL, NULL,
                                              (char *) key, q - key);

            ngx_http_gateway_sync_key_cmd(key, "*2\r\n$8\r\nSMEMBERS\r\n",
                                          name, NGX_HTTP_GATEWAY_KEY_IDS_TAIL,
                                          NULL);
        }

        if (redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_ids, f,
                              "EXEC")
            != REDIS_OK)
        {
            ngx_free(f);
            break;
        }

        sync->fetching++;
    }

    ngx_free(key);
}


/* the services' revisions and ids: their hashes are asked for next */

static void
ngx_http_gateway_sync_on_ids(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                     *reply = r;
    ngx_http_gateway_fetch_t       *names = privdata;

    u_char                         *p, *key;
    u_char                          buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                          size, klen;
    ngx_str_t                       v, *id;
    ngx_uint_t                      i, k, n, nids, sent;
    redisReply                     *rev, *listed, *ids;
    ngx_http_gateway_fetch_t       *f;
    ngx_http_gateway_sync_t        *sync;
    ngx_http_gateway_fetch_svc_t   *fs;

    sync = &ngx_http_gateway_sync;
    f = NULL;
    key = NULL;
    sent = 0;

    if (reply == NULL || ac != sync->cmd) {
        goto done;
    }

    /* a link busy with a fill answers: the tick must not take it for dead */

    sync->replies++;

    n = names->n;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 * n) {
        if (ngx_http_gateway_sync_noscript(reply) == NGX_OK) {
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis sync failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &v, buf));
        goto done;
    }

    size = offsetof(ngx_http_gateway_fetch_t, svcs)
           + n * (sizeof(ngx_http_gateway_fetch_svc_t) + NGX_GATEWAY_NAME_MAX
                  + NGX_INT64_LEN + sizeof("WRONGTYPE"));
    nids = 0;
    klen = 0;

    for (i = 0; i < n; i++) {
        ids = reply->element[3 * i + 2];

        if (ids->type != REDIS_REPLY_ARRAY) {
            continue;
        }

        for (k = 0; k < ids->elements; k++) {
            if (ids->element[k]->type == REDIS_REPLY_STRING) {
                size += sizeof(ngx_str_t) + ids->element[k]->len;
                klen = ngx_max(klen, ids->element[k]->len);
                nids++;
            }
        }
    }

    f = ngx_alloc(size, sync->log);
    if (f == NULL) {
        goto done;
    }

    klen += sync->gmcf->prefix.len + NGX_GATEWAY_NAME_MAX
            + sizeof("*2\r\n$7\r\nHGETALL\r\n$\r\nsvc::inst:\r\n")
            + NGX_SIZE_T_LEN;

    key = ngx_alloc(klen, sync->log);
    if (key == NULL) {
        goto done;
    }

    f->epoch_gen = names->epoch_gen;
    f->n = n;

    id = (ngx_str_t *) &f->svcs[n];
    p = (u_char *) (id + nids);

    (void) redisAsyncCommand(sync->cmd, NULL, NULL, "MULTI");
    (void) redisAsyncCommand(sync->cmd, NULL, NULL, "GET %bepoch",
                             sync->gmcf->prefix.data, sync->gmcf->prefix.len);

    for (i = 0; i < n; i++) {
        rev = reply->element[3 * i];
        listed = reply->element[3 * i + 1];
        ids = reply->element[3 * i + 2];
        fs = &f->svcs[i];

        fs->name.data = p;
        fs->name.len = names->svcs[i].name.len;
        p = ngx_cpymem(p, names->svcs[i].name.data, fs->name.len);

        fs->listed = (listed->type == REDIS_REPLY_INTEGER)
                     ? listed->integer : 0;

        /* as the snapshot script gives them */

        fs->rev.data = p;

        if (rev->type == REDIS_REPLY_STRING && rev->len <= NGX_INT64_LEN) {
            p = ngx_cpymem(p, rev->str, rev->len);

        } else if (rev->type == REDIS_REPLY_STRING
                   || rev->type == REDIS_REPLY_ERROR)
        {
            p = ngx_cpymem(p, "WRONGTYPE", sizeof("WRONGTYPE") - 1);

        } else {
            *p++ = '0';
        }

        fs->rev.len = p - fs->rev.data;

        fs->ids = NULL;
        fs->nids = 0;

        if (ids->type != REDIS_REPLY_ARRAY) {
            continue;
        }

        fs->ids = id;

        for (k = 0; k < ids->elements; k++) {
            if (ids->element[k]->type != REDIS_REPLY_STRING) {
                continue;
            }

            id->data = p;
            id->len = ids->element[k]->len;
            p = ngx_cpymem(p, ids->element[k]->str, id->len);

            ngx_http_gateway_sync_key_cmd(key, "*2\r\n$7\r\nHGETALL\r\n",
                                          &fs->name,
                                          NGX_HTTP_GATEWAY_KEY_INST_TAIL, id);
            id++;
            fs->nids++;
        }
    }

    if (redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_hashes, f,
                          "EXEC")
        == REDIS_OK)
    {
        f = NULL;
        sent = 1;
    }

done:

    if (key) {
        ngx_free(key);
    }

    if (f) {
        ngx_free(f);
    }

    /* the batch goes on in on_hashes(), or ends here: the fill failed */

    if (!sent) {
        sync->filling = 0;

        if (sync->fetching) {
            sync->fetching--;
        }
    }

    ngx_free(names);
}


/* the marker and the hashes: each service applied as a snapshot */

static void
ngx_http_gateway_sync_on_hashes(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *reply = r;
    ngx_http_gateway_fetch_t       *f = privdata;

    u_char                          buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                       v;
    ngx_uint_t                      i, k, h, m, max, history, applied;
    redisReply                     *epoch, *hash, **insts, *strs, *fields;
    redisReply                      entry, *e[5], e_name, e_listed, e_rev,
                                    e_insts, e_known, wrongtype;
    ngx_http_gateway_sh_t          *sh;
    ngx_http_gateway_sync_t        *sync;
    ngx_http_gateway_fetch_svc_t   *fs;

    sync = &ngx_http_gateway_sync;
    sh = sync->gmcf->sh;
    insts = NULL;
    applied = 0;

    if (reply == NULL || ac != sync->cmd) {
        goto done;
    }

    sync->replies++;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis sync failed: %V",
                      ngx_http_gateway_redis_errstr(reply, &v, buf));
        goto done;
    }

    epoch = reply->element[0];

    ngx_shmtx_lock(&sync->gmcf->shpool->mutex);
    history = (epoch->type == REDIS_REPLY_STRING
               && sh->marker_len == epoch->len
               && ngx_memcmp(sh->marker, epoch->str, epoch->len) == 0);
    ngx_http_gateway_write_end(sync->gmcf);

    if (ngx_http_gateway_sync_epoch(epoch, (void *) f->epoch_gen) != NGX_OK) {
        goto done;
    }

    max = 0;
    m = 0;

    for (i = 0; i < f->n; i++) {
        max = ngx_max(max, f->svcs[i].nids);
        m += f->svcs[i].nids;
    }

    if (reply->elements != m + 1) {
        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: redis sync failed: %ui replies for %ui "
                      "instances", (ngx_uint_t) reply->elements - 1, m);
        goto done;
    }

    /* per instance: its id and its hash, as replies */

    insts = ngx_alloc(max * (2 * sizeof(redisReply *) + sizeof(redisReply))
                      + sizeof(redisReply *), sync->log);
    if (insts == NULL) {
        goto done;
    }

    strs = (redisReply *) (insts + 2 * max + 1);

    ngx_memzero(&entry, sizeof(redisReply));
    ngx_memzero(&e_name, sizeof(redisReply));
    ngx_memzero(&e_listed, sizeof(redisReply));
    ngx_memzero(&e_rev, sizeof(redisReply));
    ngx_memzero(&e_insts, sizeof(redisReply));
    ngx_memzero(&e_known, sizeof(redisReply));
    ngx_memzero(&wrongtype, sizeof(redisReply));

    entry.type = REDIS_REPLY_ARRAY;
    entry.elements = 5;
    entry.element = e;
    e[0] = &e_name;
    e[1] = &e_listed;
    e[2] = &e_rev;
    e[3] = &e_insts;
    e[4] = &e_known;

    e_name.type = REDIS_REPLY_STRING;
    e_listed.type = REDIS_REPLY_INTEGER;
    e_rev.type = REDIS_REPLY_STRING;
    e_known.type = REDIS_REPLY_INTEGER;

    wrongtype.type = REDIS_REPLY_STRING;
    wrongtype.str = "WRONGTYPE";
    wrongtype.len = sizeof("WRONGTYPE") - 1;

    h = 1;

    for (i = 0; i < f->n; i++) {
        fs = &f->svcs[i];

        e_name.str = (char *) fs->name.data;
        e_name.len = fs->name.len;
        e_listed.integer = fs->listed;
        e_rev.str = (char *) fs->rev.data;
        e_rev.len = fs->rev.len;

        if (fs->ids == NULL) {
            e[3] = &wrongtype;
            ngx_http_gateway_sync_apply(&entry, history);
            e[3] = &e_insts;
            continue;
        }

        e_insts.type = REDIS_REPLY_ARRAY;
        e_insts.element = insts;
        e_insts.elements = 0;

        for (k = 0; k < fs->nids; k++) {
            hash = reply->element[h++];

            if (hash->type == REDIS_REPLY_ARRAY) {
                if (hash->elements == 0) {
                    continue;       /* gone since its id was read */
                }

                fields = hash;

            } else {
                fields = &wrongtype;
            }

            strs[k].type = REDIS_REPLY_STRING;
            strs[k].str = (char *) fs->ids[k].data;
            strs[k].len = fs->ids[k].len;

            insts[e_insts.elements++] = &strs[k];
            insts[e_insts.elements++] = fields;
        }

        ngx_http_gateway_sync_apply(&entry, history);
    }

    applied = 1;

done:

    if (insts) {
        ngx_free(insts);
    }

    if (!applied) {
        sync->filling = 0;
    }

    if (sync->fetching) {
        sync->fetching--;
    }

    if (sync->filling && sync->fetching == 0 && !sync->scanning) {
        ngx_http_gateway_sync_filled();
    }

    ngx_free(f);
}


/* the full sync of an empty zone is in: how long it took */

static void
ngx_http_gateway_sync_filled(void)
{
    ngx_uint_t                     nservices, ninstances;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;

    sync->filling = 0;

    ngx_shmtx_lock(&gmcf->shpool->mutex);
    nservices = gmcf->sh->nservices;
    ninstances = gmcf->sh->ninstances;
    ngx_http_gateway_write_end(gmcf);

    ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                  "gateway: synced %ui services with %ui instances from "
                  "redis in %M ms", nservices, ninstances,
                  ngx_current_msec - sync->fill_start);
}


/*
 * Replaces a service's instances with a snapshot, or, for a delta (known >
 * 0), updates the instances it names and removes those it gives empty.
 * The records are read, checked and sorted without the zone lock; they are
 * then merged into the service a chunk at a time, so that requests, which
 * take the same lock, never wait for more than one chunk.
 */

static void
ngx_http_gateway_sync_apply(redisReply *entry, ngx_uint_t history)
{
    u_char                         buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t                         i;
    uint64_t                       rev;
    ngx_int_t                      rc;
    ngx_str_t                      name, text;
    uint64_t                       known;
    ngx_str_t                     *gone;
    ngx_uint_t                     mark, n, k, chunk, ngone;
    redisReply                    *insts, *fields, *rid;
    const char                    *err;
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_entry_t      *entries, *e, **sorted;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_instance_t  **fresh;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;
    sh = gmcf->sh;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 5
        || entry->element[0]->type != REDIS_REPLY_STRING
        || entry->element[1]->type != REDIS_REPLY_INTEGER
        || entry->element[2]->type != REDIS_REPLY_STRING
        || entry->element[4]->type != REDIS_REPLY_INTEGER
        || entry->element[4]->integer < 0)
    {
        return;
    }

    known = (uint64_t) entry->element[4]->integer;

    name.data = (u_char *) entry->element[0]->str;
    name.len = entry->element[0]->len;

    if (!ngx_gateway_valid_name((char *) name.data, name.len)) {
        ngx_http_gateway_log_text(&text, buf, name.data, name.len);
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: redis service name \"%V\" is invalid, "
                      "skipped", &text);
        return;
    }

    if (ngx_gateway_parse_uint(entry->element[2]->str, entry->element[2]->len,
                               UINT64_MAX, &rev)
        != 0)
    {
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: redis key \"" NGX_HTTP_GATEWAY_KEY_REV "\" is "
                      "not an integer", &gmcf->prefix, &name);
        rev = 0;
    }

    insts = entry->element[3];

    if (insts->type != REDIS_REPLY_ARRAY) {
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: redis key \"" NGX_HTTP_GATEWAY_KEY_IDS "\" "
                      "has the wrong type, service left as it was",
                      &gmcf->prefix, &name);
        return;
    }

    n = insts->elements / 2;

    entries = ngx_alloc((n + 1) * (sizeof(ngx_http_gateway_entry_t)
                                   + sizeof(ngx_http_gateway_entry_t *)
                                   + sizeof(ngx_str_t))
                        + ngx_min(n, NGX_HTTP_GATEWAY_APPLY_CHUNK)
                          * sizeof(ngx_http_gateway_instance_t *),
                        sync->log);
    if (entries == NULL) {
        return;
    }

    sorted = (ngx_http_gateway_entry_t **) (entries + n + 1);
    gone = (ngx_str_t *) (sorted + n + 1);
    fresh = (ngx_http_gateway_instance_t **) (gone + n + 1);
    ngone = 0;

    for (i = 0, k = 0; i < n; i++) {
        rid = insts->element[2 * i];
        fields = insts->element[2 * i + 1];
        e = &entries[k];

        err = NULL;

        if (rid->type != REDIS_REPLY_STRING) {
            continue;
        }

        e->id.data = (u_char *) rid->str;
        e->id.len = rid->len;

        if (!ngx_gateway_valid_name(rid->str, rid->len)) {
            err = "invalid instance id";

        } else if (known && fields->type == REDIS_REPLY_ARRAY
                   && fields->elements == 0)
        {
            gone[ngone++] = e->id;
            continue;

        } else if (fields->type != REDIS_REPLY_ARRAY) {
            err = "not a hash";

        } else {
            (void) ngx_http_gateway_record_from_hash(gmcf, fields, &e->rec,
                                                     &err);
        }

        if (err) {
            ngx_http_gateway_log_text(&text, buf, e->id.data, e->id.len);
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "gateway: redis key \"" NGX_HTTP_GATEWAY_KEY_INST
                          "\" skipped: %s", &gmcf->prefix, &name, &text, err);

            /* as a whole snapshot would: a skipped record is not routed */

            if (known && ngx_gateway_valid_name(rid->str, rid->len)) {
                gone[ngone++] = e->id;
            }

            continue;
        }

        sorted[k] = e;
        k++;
    }

    n = k;

    ngx_qsort(sorted, n, sizeof(ngx_http_gateway_entry_t *),
              ngx_http_gateway_entry_cmp);

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    svc = ngx_http_gateway_service_lookup(gmcf, &name);

    if (entry->element[1]->integer == 0) {
        if (svc) {
            ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                          "gateway: service \"%V\" is gone from redis",
                          &svc->sn.str);
            ngx_http_gateway_service_delete_locked(gmcf, svc);
        }

        goto done;
    }

    /*
     * A snapshot taken before an admin write that is already mirrored here
     * would undo it; the write's own notice brings a newer one.  Skipped
     * once only, so that a Redis that lost its data is still followed.
     */

    if (svc && rev < svc->written) {
        svc->written = 0;
        goto done;
    }

    /* a delta from a revision the zone does not have: fetch it all */

    if (known && (!history || svc == NULL || svc->revision != known)) {
        ngx_http_gateway_write_end(gmcf);
        ngx_free(entries);
        ngx_http_gateway_sync_services(entry->element, 1, 1);
        return;
    }

    svc = ngx_http_gateway_service_get_locked(gmcf, &name);
    if (svc == NULL) {
        ngx_http_gateway_write_end(gmcf);
        ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                      "gateway: zone \"%V\" is full, service \"%V\" not "
                      "synced", &gmcf->shm_zone->shm.name, &name);
        ngx_free(entries);
        return;
    }

    /* listed: a full comparison under way must not take it for gone */

    svc->mark = sync->scan_mark;

    mark = ++sh->mark;

    for (i = 0; /* void */; i += chunk) {
        chunk = ngx_min(n - i, NGX_HTTP_GATEWAY_APPLY_CHUNK);

        rc = ngx_http_gateway_upsert_batch_locked(gmcf, svc, sorted + i,
                                                  chunk, fresh);

        if (rc != NGX_OK) {
            ngx_http_gateway_write_end(gmcf);
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "gateway: zone \"%V\" is full, service \"%V\" "
                          "synced in part, its other instances kept",
                          &gmcf->shm_zone->shm.name, &name);
            ngx_free(entries);
            return;
        }

        if (i + chunk >= n) {
            break;
        }

        ngx_http_gateway_write_end(gmcf);

        /* nothing else here writes the zone meanwhile but admin writes */

        ngx_shmtx_lock(&gmcf->shpool->mutex);

        svc = ngx_http_gateway_service_lookup(gmcf, &name);
        if (svc == NULL || sh->mark != mark) {
            goto done;
        }
    }

    if (known) {
        for (i = 0; i < ngone; i++) {
            (void) ngx_http_gateway_remove_locked(gmcf, svc, &gone[i]);
        }

    } else {
        ngx_http_gateway_service_sweep_locked(gmcf, svc, mark);
    }

    /* an unchanged snapshot changes nothing: no state file to write */

    if (svc->revision != rev) {
        svc->revision = rev;
        sh->generation++;
    }

done:

    ngx_http_gateway_write_end(gmcf);

    ngx_free(entries);
}


static void
ngx_http_gateway_sync_expired(redisReply *key)
{
    u_char                    text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                 service, id, v;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    if (ngx_http_gateway_key_parse_inst(&sync->gmcf->prefix,
                                        (u_char *) key->str, key->len,
                                        &service, &id)
        != NGX_OK)
    {
        return;
    }

    if (!ngx_gateway_valid_name((char *) service.data, service.len)
        || !ngx_gateway_valid_name((char *) id.data, id.len))
    {
        ngx_http_gateway_log_text(&v, text, key->str, key->len);
        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: expired redis key \"%V\" has an invalid "
                      "service name or instance id, ignored", &v);
        return;
    }

    if (sync->cmd == NULL) {
        return;
    }

    /* the sweeper updates Redis; every gateway drops the instance now */

    if (sync->sweeping) {
        (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_expire,
                                 "expiry script", "EVALSHA %s 0 %b %b %b",
                                 NGX_HTTP_GATEWAY_SHA_EXPIRE,
                                 sync->gmcf->prefix.data,
                                 sync->gmcf->prefix.len,
                                 service.data, service.len, id.data, id.len);
    }

    (void) redisAsyncCommand(sync->cmd, ngx_http_gateway_sync_on_snapshot,
                             (void *) sync->epoch_gen, "EVALSHA %s 0 %b %b 0",
                             NGX_HTTP_GATEWAY_SHA_SNAPSHOT,
                             sync->gmcf->prefix.data, sync->gmcf->prefix.len,
                             service.data, service.len);
}


/*
 * A change notice of a script on P feed carries the change: a gateway that
 * has the revision before applies it as a delta, without a fetch.  Any
 * other gateway (a gap: it missed a notice, or has not got the service;
 * another registry's epoch; the instances not carried) fetches the
 * service, as for a notice by hand.  The tick still finds what a lost
 * notice leaves behind.
 */

static void
ngx_http_gateway_sync_feed(redisReply *payload)
{
    u_char                         text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                      v;
    ngx_uint_t                     history, have, next;
    redisReply                     name, *names;
    const char                    *err;
    ngx_http_gateway_sh_t         *sh;
    ngx_http_gateway_feed_t        feed;
    ngx_http_gateway_sync_t       *sync;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    sync = &ngx_http_gateway_sync;
    gmcf = sync->gmcf;
    sh = gmcf->sh;

    ngx_memzero(&name, sizeof(redisReply));
    names = &name;

    if (ngx_http_gateway_feed_parse((u_char *) payload->str, payload->len,
                                    &feed, sync->log, &err)
        != NGX_OK)
    {
        if (feed.name.data == NULL) {
            ngx_http_gateway_log_text(&v, text, payload->str,
                                      ngx_min(payload->len, 256));
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "gateway: redis notice on \"%V\" is %s, ignored: "
                          "\"%V\"", &sync->feed, err, &v);
            return;
        }

        /* the change is not known: the service is */

        ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                      "gateway: redis notice on \"%V\" for service \"%V\" "
                      "is %s, fetching the service",
                      &sync->feed, &feed.name, err);

        name.type = REDIS_REPLY_STRING;
        name.str = (char *) feed.name.data;
        name.len = feed.name.len;
        ngx_http_gateway_sync_services(&names, 1, 0);
        return;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    history = (sh->marker_len == feed.epoch.len && sh->marker_len
               && ngx_memcmp(sh->marker, feed.epoch.data, feed.epoch.len)
                  == 0);

    svc = ngx_http_gateway_service_lookup(gmcf, &feed.name);

    have = (history && svc && svc->revision >= feed.revision);
    next = (history && svc && feed.entry
            && svc->revision + 1 == feed.revision);

    ngx_http_gateway_write_end(gmcf);

    if (have) {

        /* fetched already (the tick, an expiry) */

        ngx_http_gateway_sync_fed(feed.registry);
        ngx_free(feed.mem);
        return;
    }

    if (!next) {
        name.type = REDIS_REPLY_STRING;
        name.str = (char *) feed.name.data;
        name.len = feed.name.len;
        ngx_http_gateway_sync_services(&names, 1, 0);

        ngx_free(feed.mem);
        return;
    }

    ngx_http_gateway_sync_apply(feed.entry, 1);

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    svc = ngx_http_gateway_service_lookup(gmcf, &feed.name);

    if (svc && svc->revision == feed.revision) {
        ngx_http_gateway_sync_lag(svc, feed.time_us);
        ngx_http_gateway_sync_fed(feed.registry);

        /* a fetch answered after this must not take the zone back */

        if (svc->written < feed.revision) {
            svc->written = feed.revision;
        }
    }

    ngx_http_gateway_write_end(gmcf);

    ngx_free(feed.mem);
}


/*
 * A notice's change is in the zone: the registry revisions applied in turn
 * from the one the tick saw go on (a change without a notice, by hand,
 * leaves a gap that the tick closes)
 */

static void
ngx_http_gateway_sync_fed(uint64_t registry)
{
    uint64_t                  base;
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    base = ngx_max(sync->fed, ngx_http_gateway_sync_seen());

    if (base && registry == base + 1) {
        sync->fed = registry;
        ngx_http_gateway_sync_revision();
    }
}


/* the registry revision applied, for gateway_metrics */

static void
ngx_http_gateway_sync_revision(void)
{
    ngx_http_gateway_sync_t  *sync;

    sync = &ngx_http_gateway_sync;

    sync->gmcf->sh->revision = ngx_max(sync->fed,
                                       ngx_http_gateway_sync_seen());
}


/* under the zone lock: the lag of the change svc now has */

static void
ngx_http_gateway_sync_lag(ngx_http_gateway_service_t *svc,
    uint64_t written_us)
{
    uint64_t                 now, lag;
    ngx_uint_t               k;
    struct timeval           tv;
    ngx_http_gateway_lag_t  *gl;

    ngx_gettimeofday(&tv);

    now = (uint64_t) tv.tv_sec * 1000000 + tv.tv_usec;

    /* clocks of two hosts may disagree: a change is never applied early */

    lag = (now > written_us) ? now - written_us : 0;

    svc->lag_rev = svc->revision;
    svc->lag_us = lag;

    gl = &ngx_http_gateway_sync.gmcf->sh->lag;

    for (k = 0; k < NGX_HTTP_GATEWAY_LAG_BUCKETS; k++) {
        if (lag <= ngx_http_gateway_lag_buckets[k].us) {
            break;
        }
    }

    gl->last_us = (ngx_atomic_uint_t) lag;
    gl->sum_us += (ngx_atomic_uint_t) lag;
    gl->le[k]++;
    gl->count++;
}


/*
 * The status JSON's figures: the last lag, the bound of the bucket that
 * holds the 99th percentile of every lag so far (the last bound when it is
 * above), and how many there were; ends the "redis" object
 */

u_char *
ngx_http_gateway_lag_json(u_char *p, ngx_http_gateway_lag_t *gl)
{
    ngx_uint_t  k, n, sum, rank, last;

    n = 0;

    for (k = 0; k <= NGX_HTTP_GATEWAY_LAG_BUCKETS; k++) {
        n += gl->le[k];
    }

    if (n == 0) {
        return ngx_cpymem(p, "\"lag_ms\":null,\"lag_p99_ms\":null,"
                             "\"lag_changes\":0},",
                          sizeof("\"lag_ms\":null,\"lag_p99_ms\":null,"
                                 "\"lag_changes\":0},") - 1);
    }

    rank = n - n / 100;
    sum = 0;

    for (k = 0; k < NGX_HTTP_GATEWAY_LAG_BUCKETS - 1; k++) {
        sum += gl->le[k];

        if (sum >= rank) {
            break;
        }
    }

    last = gl->last_us;

    return ngx_sprintf(p, "\"lag_ms\":%ui.%03ui,\"lag_p99_ms\":%ui.%03ui,"
                       "\"lag_changes\":%ui},", last / 1000, last % 1000,
                       ngx_http_gateway_lag_buckets[k].us / 1000,
                       ngx_http_gateway_lag_buckets[k].us % 1000, n);
}
