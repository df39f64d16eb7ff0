
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * Bench-only module (bench/selection, never part of the product .so): a
 * content handler that selects and releases a peer of one service N times
 * in a loop, the way a worker does for each proxied request, on the zone of
 * ngx_http_gateway_module.so (loaded before it: nginx dlopens modules
 * RTLD_GLOBAL, so the gateway's exported functions resolve here).
 *
 *   gateway_selbench lockfree SERVICE;   today's path: the real functions
 *       (snapshot_get, the upstream's balancer select, hold, the stats
 *       observer, snapshot_put), no zone lock
 *   gateway_selbench mutex SERVICE;      the design before snapshots, on
 *       the same zone: zone mutex, rbtree lookup, SWRR over the service's
 *       instances, counters, unlock; then lock, counters, unlock
 *   gateway_selbench_balance NAME [PARAMS];  the balancer of "lockfree"
 *                                        (round_robin by default), with
 *                                        gateway_balance's parameters
 *
 * GET ...?n=N[&pass=K][&timed=1][&counters=0] answers one line of
 * "key=value" pairs: the loop's start and end (CLOCK_MONOTONIC, comparable
 * between workers), its CPU time, and how many times each peer index was
 * chosen.  With at=T&ms=D instead of n, the loop waits until T
 * (CLOCK_MONOTONIC, ns) and selects until T + D ms: workers given one T
 * select in the same window, wherever their requests arrive (late_ns: how
 * far past T the loop started).  The counters ("active" and the stats observer's) go to the
 * worker's cells and are published at the end of an event loop pass:
 * pass=K (lockfree, default 1) publishes them every K selections, as a
 * worker that handles K requests per pass would (1: one request per pass,
 * the worst case).  With timed=1 one selection in 16 also measures how
 * long the lock is held (mutex) or how long the balancer's select takes
 * (lockfree), less the clock's own cost.  counters=0 (a diagnostic,
 * lockfree only) leaves out the counters to show what they cost.  With
 * span=1 (lockfree) an attempt ends "pass" selections after it started,
 * in the next pass, as requests that wait for their upstream do: a pass
 * then starts and ends attempts of different instances, and "active"
 * changes in each pass.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_gateway.h"
#include "ngx_http_gateway_balancer.h"


#define NGX_HTTP_SELBENCH_LOCKFREE  1
#define NGX_HTTP_SELBENCH_MUTEX     2

#define NGX_HTTP_SELBENCH_COUNTS    64
#define NGX_HTTP_SELBENCH_MAX_N     1000000000
#define NGX_HTTP_SELBENCH_SAMPLE    15      /* one in 16 */
#define NGX_HTTP_SELBENCH_MAX_SPAN  64      /* pass with span=1 */
#define NGX_HTTP_SELBENCH_MAX_MS    10000   /* window of at=T&ms=D */
#define NGX_HTTP_SELBENCH_CLOCK     63      /* a look at it in 64 */


typedef struct {
    ngx_uint_t                    mode;
    ngx_str_t                     service;
    uint32_t                      hash;
    ngx_http_gateway_balancer_t  *balancer;
    void                         *balancer_conf;
} ngx_http_selbench_loc_conf_t;


/*
 * The old design's SWRR state was in the instances, under the zone mutex;
 * today's round robin has none, so the mutex mode keeps it here, per
 * process (what the mutex serializes is the same).
 */

static ngx_gateway_swrr_t  ngx_http_selbench_swrr[NGX_HTTP_SELBENCH_COUNTS];


typedef struct {
    ngx_msec_t                    now;
    ngx_http_gateway_service_t   *svc;      /* mutex mode */
} ngx_http_selbench_ctx_t;


/* an attempt that has not ended yet (span=1) */

typedef struct {
    ngx_uint_t                    slot;
    ngx_http_gateway_snapshot_t  *snap;     /* NULL: none */
    ngx_http_gateway_peer_t      *peer;
    u_char                        batched;
} ngx_http_selbench_open_t;


typedef struct {
    uint64_t                      deadline;     /* 0: n selections */
    ngx_uint_t                    n;            /* made */
    ngx_uint_t                    counts[NGX_HTTP_SELBENCH_COUNTS];
    ngx_uint_t                    failed;
    uint64_t                      timed_ns;
    ngx_uint_t                    timed;
} ngx_http_selbench_result_t;


static ngx_uint_t ngx_http_selbench_count(ngx_http_request_t *r,
    u_char *name, size_t len);
static ngx_int_t ngx_http_selbench_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_selbench_lockfree(ngx_http_request_t *r,
    ngx_http_selbench_loc_conf_t *conf, ngx_http_gateway_main_conf_t *gmcf,
    ngx_uint_t n, ngx_uint_t pass, ngx_uint_t timed, ngx_uint_t counters,
    ngx_uint_t span, ngx_http_selbench_result_t *res);
static void ngx_http_selbench_end(ngx_http_gateway_attempt_t *a,
    ngx_http_selbench_open_t *o, ngx_uint_t counters);
static ngx_int_t ngx_http_selbench_mutex(ngx_http_selbench_loc_conf_t *conf,
    ngx_http_gateway_main_conf_t *gmcf, ngx_uint_t n, ngx_uint_t timed,
    ngx_http_selbench_result_t *res);
static ngx_gateway_swrr_t *ngx_http_selbench_old_peer(void *ctx, size_t i);
static ngx_uint_t ngx_http_selbench_over(ngx_http_selbench_result_t *res,
    ngx_uint_t k);
static uint64_t ngx_http_selbench_wait(uint64_t at);
static uint64_t ngx_http_selbench_ns(clockid_t clock);
static uint64_t ngx_http_selbench_clock_cost(void);
static void *ngx_http_selbench_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_selbench(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_selbench_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_selbench_commands[] = {

    { ngx_string("gateway_selbench"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_selbench,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_selbench_balance"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_selbench_balance,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_selbench_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_selbench_create_loc_conf,     /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_selbench_module = {
    NGX_MODULE_V1,
    &ngx_http_selbench_module_ctx,         /* module context */
    ngx_http_selbench_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* a count argument: 1 when absent, 0 when not 1..MAX_N */

static ngx_uint_t
ngx_http_selbench_count(ngx_http_request_t *r, u_char *name, size_t len)
{
    ngx_int_t  v;
    ngx_str_t  arg;

    if (ngx_http_arg(r, name, len, &arg) != NGX_OK) {
        return 1;
    }

    v = ngx_atoi(arg.data, arg.len);

    return (v <= 0 || v > NGX_HTTP_SELBENCH_MAX_N) ? 0 : (ngx_uint_t) v;
}


static ngx_int_t
ngx_http_selbench_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_str_t                      arg;
    ngx_buf_t                     *b;
    ngx_int_t                      at;
    ngx_uint_t                     i, n, ms, pass, timed, counters, span;
    ngx_uint_t                     last;
    ngx_chain_t                    out;
    uint64_t                       start, end, cpu0, cpu1, clock_cost, late;
    ngx_http_selbench_result_t     res;
    ngx_http_gateway_main_conf_t  *gmcf;
    ngx_http_selbench_loc_conf_t  *conf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_selbench_module);
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_module);

    if (gmcf == NULL || gmcf->sh == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_selbench_count(r, (u_char *) "n", 1);
    pass = ngx_http_selbench_count(r, (u_char *) "pass", 4);

    if (n == 0 || pass == 0) {
        return NGX_HTTP_BAD_REQUEST;
    }

    timed = (ngx_http_arg(r, (u_char *) "timed", 5, &arg) == NGX_OK
             && arg.len == 1 && arg.data[0] == '1');

    counters = !(ngx_http_arg(r, (u_char *) "counters", 8, &arg) == NGX_OK
                 && arg.len == 1 && arg.data[0] == '0');

    span = (ngx_http_arg(r, (u_char *) "span", 4, &arg) == NGX_OK
            && arg.len == 1 && arg.data[0] == '1');

    if (span && pass > NGX_HTTP_SELBENCH_MAX_SPAN) {
        return NGX_HTTP_BAD_REQUEST;
    }

    at = 0;
    ms = 0;

    if (ngx_http_arg(r, (u_char *) "at", 2, &arg) == NGX_OK) {
        at = ngx_atoi(arg.data, arg.len);
        ms = (ngx_http_arg(r, (u_char *) "ms", 2, &arg) == NGX_OK)
             ? (ngx_uint_t) ngx_atoi(arg.data, arg.len) : 0;

        if (at <= 0 || ms == 0 || ms > NGX_HTTP_SELBENCH_MAX_MS) {
            return NGX_HTTP_BAD_REQUEST;
        }

        n = NGX_HTTP_SELBENCH_MAX_N;
    }

    ngx_memzero(&res, sizeof(ngx_http_selbench_result_t));

    clock_cost = timed ? ngx_http_selbench_clock_cost() : 0;
    late = 0;

    if (at) {
        late = ngx_http_selbench_wait((uint64_t) at);
        res.deadline = (uint64_t) at + (uint64_t) ms * 1000000;
    }

    cpu0 = ngx_http_selbench_ns(CLOCK_PROCESS_CPUTIME_ID);
    start = ngx_http_selbench_ns(CLOCK_MONOTONIC);

    if (conf->mode == NGX_HTTP_SELBENCH_LOCKFREE) {
        rc = ngx_http_selbench_lockfree(r, conf, gmcf, n, pass, timed,
                                        counters, span, &res);

    } else {
        rc = ngx_http_selbench_mutex(conf, gmcf, n, timed, &res);
    }

    end = ngx_http_selbench_ns(CLOCK_MONOTONIC);
    cpu1 = ngx_http_selbench_ns(CLOCK_PROCESS_CPUTIME_ID);

    if (rc != NGX_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    b = ngx_create_temp_buf(r->pool, 544 + NGX_HTTP_SELBENCH_COUNTS * 24);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last,
                    "mode=%s pid=%P n=%ui pass=%ui start_ns=%uL "
                    "end_ns=%uL cpu_ns=%uL failed=%ui timed=%ui "
                    "timed_ns=%uL clock_ns=%uL counters=%ui span=%ui "
                    "late_ns=%uL counts=",
                    conf->mode == NGX_HTTP_SELBENCH_LOCKFREE
                    ? "lockfree" : "mutex",
                    ngx_pid, res.n, pass, start, end, cpu1 - cpu0,
                    res.failed, res.timed, res.timed_ns, clock_cost, counters,
                    span, late);

    last = 0;

    for (i = 0; i < NGX_HTTP_SELBENCH_COUNTS; i++) {
        if (res.counts[i]) {
            last = i + 1;
        }
    }

    for (i = 0; i < last; i++) {
        p = ngx_sprintf(p, "%s%ui", i ? ":" : "", res.counts[i]);
    }

    *p++ = LF;
    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/plain");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * What ngx_http_gateway_upstream_choose(), _free_peer() and _report() do
 * for a request that succeeds at its first attempt, through the same
 * exported functions; the address is copied as the core copies it into
 * the request (here onto the stack: the pool would grow with n).  Every
 * "pass" selections the cells are published, as the end of an event loop
 * pass does.
 */

static ngx_int_t
ngx_http_selbench_lockfree(ngx_http_request_t *r,
    ngx_http_selbench_loc_conf_t *conf, ngx_http_gateway_main_conf_t *gmcf,
    ngx_uint_t n, ngx_uint_t pass, ngx_uint_t timed, ngx_uint_t counters,
    ngx_uint_t span, ngx_http_selbench_result_t *res)
{
    u_char                        buf[256];
    uint64_t                      t0, t1;
    ngx_int_t                     i;
    ngx_str_t                     name;
    ngx_int_t                     rc;
    ngx_uint_t                    k, slot, left, publish;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_select_t     sel;
    ngx_http_gateway_attempt_t    a;
    ngx_http_gateway_snapshot_t  *snap;
    ngx_http_selbench_open_t     *o, open[NGX_HTTP_SELBENCH_MAX_SPAN];

    ngx_memzero(open, sizeof(open));

    /*
     * as a worker of a configuration with this method alone: "active"
     * published at every pass only for a method that reads it
     */

    publish = ngx_http_gateway_cells_publish;
    ngx_http_gateway_cells_publish = conf->balancer->active;

    ngx_memzero(&a, sizeof(ngx_http_gateway_attempt_t));
    a.request = r;
    a.service = &conf->service;
    a.number = 1;
    a.result = NGX_HTTP_GATEWAY_ATTEMPT_OK;

    left = pass;
    rc = NGX_OK;

    for (k = 0; k < n; k++) {

        if (ngx_http_selbench_over(res, k)) {
            break;
        }

        if (--left == 0) {
            if (ngx_http_gateway_cells_publish) {
                ngx_http_gateway_cells_flush();
            }

            left = pass;
        }

        if (ngx_http_gateway_snapshot_get(gmcf, &conf->service, conf->hash,
                                          &snap, &slot)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }

        sel.snap = snap;
        sel.conf = conf->balancer_conf;
        sel.request = r;
        sel.tried = NULL;
        sel.ntried = 0;
        sel.expiry = (gmcf->redis == NULL);
        sel.slow_start = 0;
        sel.narrow = (snap->nbackup != 0);
        sel.backup = 0;
        sel.zone = NULL;
        sel.eject = 0;

        if (timed && (k & NGX_HTTP_SELBENCH_SAMPLE) == 0) {
            t0 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
            i = conf->balancer->select(&sel);
            t1 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
            res->timed_ns += t1 - t0;
            res->timed++;

        } else {
            i = conf->balancer->select(&sel);
        }

        if (i == NGX_DECLINED) {
            ngx_http_gateway_snapshot_put(slot);
            res->failed++;
            continue;
        }

        peer = &snap->peers[i];

        name = ngx_http_gateway_peer_name(peer);

        if (name.len <= sizeof(buf)) {
            ngx_memcpy(buf, name.data, name.len);
        }

        o = &open[span ? k % pass : 0];

        if (o->snap) {
            ngx_http_selbench_end(&a, o, counters);
        }

        o->slot = slot;
        o->snap = snap;
        o->peer = peer;
        o->batched = counters
                     ? (u_char) ngx_http_gateway_active_up(snap, peer->inst)
                     : 0;

        ngx_http_gateway_hold_peer(slot, peer);

        if (!span) {
            ngx_http_selbench_end(&a, o, counters);
        }

        res->counts[i < NGX_HTTP_SELBENCH_COUNTS
                    ? i : NGX_HTTP_SELBENCH_COUNTS - 1]++;
    }

    res->n = k;

    for (k = 0; k < NGX_HTTP_SELBENCH_MAX_SPAN; k++) {
        if (open[k].snap) {
            ngx_http_selbench_end(&a, &open[k], counters);
        }
    }

    if (ngx_http_gateway_cells_publish) {
        ngx_http_gateway_cells_flush();
    }

    ngx_http_gateway_cells_publish = publish;

    return rc;
}


/* the attempt ends: peer.free, then the observers */

static void
ngx_http_selbench_end(ngx_http_gateway_attempt_t *a,
    ngx_http_selbench_open_t *o, ngx_uint_t counters)
{
    ngx_http_gateway_hold_peer(o->slot, NULL);

    if (counters) {
        a->snap = o->snap;
        a->peer = o->peer;
        a->batched = o->batched;

        ngx_http_gateway_active_down(a);
        ngx_http_gateway_stats_observe(a);
    }

    ngx_http_gateway_snapshot_put(o->slot);

    o->snap = NULL;
}


/*
 * The per-request work of the design before snapshots (commit 5df22fa,
 * ngx_http_gateway_upstream_choose() and _free_peer()): everything under
 * the zone's slab mutex, taken twice.  The instances' own SWRR state (the
 * round robin balancer's) stands for the old one; "active" and "requests"
 * stand for the old plain refs/conns/requests counters.
 */

static ngx_int_t
ngx_http_selbench_mutex(ngx_http_selbench_loc_conf_t *conf,
    ngx_http_gateway_main_conf_t *gmcf, ngx_uint_t n, ngx_uint_t timed,
    ngx_http_selbench_result_t *res)
{
    u_char                        buf[NGX_SOCKADDRLEN + 256];
    ssize_t                       i;
    uint64_t                      t0, t1;
    ngx_uint_t                    k, sample;
    ngx_slab_pool_t              *shpool;
    ngx_http_selbench_ctx_t       ctx;
    ngx_str_t                     name;
    ngx_http_gateway_data_t      *d;
    ngx_http_gateway_instance_t  *inst;

    shpool = gmcf->shpool;

    for (k = 0; k < n; k++) {

        if (ngx_http_selbench_over(res, k)) {
            break;
        }

        sample = timed && (k & NGX_HTTP_SELBENCH_SAMPLE) == 0;
        t0 = 0;

        ngx_shmtx_lock(&shpool->mutex);

        if (sample) {
            t0 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
        }

        ctx.svc = ngx_http_gateway_index_find(gmcf, &conf->service,
                                              conf->hash);
        if (ctx.svc == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            return NGX_ERROR;
        }

        ctx.now = ngx_current_msec;

        i = ngx_gateway_swrr_select(ngx_min(ctx.svc->ninstances,
                                            NGX_HTTP_SELBENCH_COUNTS),
                                    ngx_http_selbench_old_peer, &ctx);
        if (i < 0) {
            ngx_shmtx_unlock(&shpool->mutex);
            res->failed++;
            continue;
        }

        inst = ctx.svc->instances[i];
        d = inst->data;
        name = ngx_http_gateway_data_name(d);

        if (d->socklen + name.len <= sizeof(buf)) {
            ngx_memcpy(buf, ngx_http_gateway_data_sockaddr(d), d->socklen);
            ngx_memcpy(buf + d->socklen, name.data, name.len);
        }

        inst->stats.active++;
        inst->stats.requests++;

        if (sample) {
            t1 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
            res->timed_ns += t1 - t0;
            res->timed++;
        }

        ngx_shmtx_unlock(&shpool->mutex);

        /* the attempt ends: the second lock */

        ngx_shmtx_lock(&shpool->mutex);

        if (sample) {
            t0 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
        }

        inst->stats.active--;

        if (ngx_http_gateway_instance_removed(inst)
            && inst->rt.nsnaps == 0)
        {
            res->failed++;      /* the old code freed it here */
        }

        if (sample) {
            t1 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
            res->timed_ns += t1 - t0;
            res->timed++;
        }

        ngx_shmtx_unlock(&shpool->mutex);

        res->counts[i < NGX_HTTP_SELBENCH_COUNTS
                    ? i : NGX_HTTP_SELBENCH_COUNTS - 1]++;
    }

    res->n = k;

    return NGX_OK;
}


static ngx_gateway_swrr_t *
ngx_http_selbench_old_peer(void *data, size_t i)
{
    ngx_http_selbench_ctx_t *ctx = data;

    ngx_msec_t                    expires;
    ngx_http_gateway_instance_t  *inst;

    inst = ctx->svc->instances[i];

    if (inst->data->state != NGX_GATEWAY_STATE_UP) {
        return NULL;
    }

    expires = inst->expires;

    if (expires && (ngx_msec_int_t) (expires - ctx->now) <= 0) {
        return NULL;
    }

    if (ngx_http_selbench_swrr[i].weight != (int) inst->data->weight) {
        ngx_gateway_swrr_reset(&ngx_http_selbench_swrr[i],
                               (int) inst->data->weight);
    }

    return &ngx_http_selbench_swrr[i];
}


/* the window is over: one look at the clock every 64 selections */

static ngx_uint_t
ngx_http_selbench_over(ngx_http_selbench_result_t *res, ngx_uint_t k)
{
    return res->deadline
           && (k & NGX_HTTP_SELBENCH_CLOCK) == 0
           && ngx_http_selbench_ns(CLOCK_MONOTONIC) >= res->deadline;
}


/* sleeps, then spins, until "at"; how late it is then */

static uint64_t
ngx_http_selbench_wait(uint64_t at)
{
    uint64_t    now;
    ngx_msec_t  ms;

    for ( ;; ) {
        now = ngx_http_selbench_ns(CLOCK_MONOTONIC);

        if (now >= at) {
            return now - at;
        }

        if (at - now > 2000000) {
            ms = (at - now) / 1000000 - 1;
            ngx_msleep(ms);
        }
    }
}


static uint64_t
ngx_http_selbench_ns(clockid_t clock)
{
    struct timespec  ts;

    (void) clock_gettime(clock, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* what two back-to-back clock reads add to a timed interval */

static uint64_t
ngx_http_selbench_clock_cost(void)
{
    uint64_t    t0, t1, sum;
    ngx_uint_t  k;

    sum = 0;

    for (k = 0; k < 100000; k++) {
        t0 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
        t1 = ngx_http_selbench_ns(CLOCK_MONOTONIC);
        sum += t1 - t0;
    }

    return sum / 100000;
}


static void *
ngx_http_selbench_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_selbench_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_selbench_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    return conf;
}


static char *
ngx_http_selbench(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_selbench_loc_conf_t *slcf = conf;

    ngx_str_t                 *value, name;
    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->mode) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "lockfree") == 0) {
        slcf->mode = NGX_HTTP_SELBENCH_LOCKFREE;

    } else if (ngx_strcmp(value[1].data, "mutex") == 0) {
        slcf->mode = NGX_HTTP_SELBENCH_MUTEX;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid mode \"%V\" of \"gateway_selbench\", "
                           "it must be \"lockfree\" or \"mutex\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (!ngx_gateway_valid_name((const char *) value[2].data, value[2].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid service name in \"gateway_selbench\"");
        return NGX_CONF_ERROR;
    }

    slcf->service = value[2];
    slcf->hash = ngx_crc32_short(value[2].data, value[2].len);

    if (slcf->balancer == NULL) {
        ngx_str_set(&name, "round_robin");
        slcf->balancer = ngx_http_gateway_balancer_find(&name);
        if (slcf->balancer == NULL) {
            return "has no round_robin balancer to use";
        }

        slcf->balancer_conf = ngx_http_gateway_balancer_create_conf(cf,
                                                      slcf->balancer, NULL, 0);
        if (slcf->balancer_conf == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_selbench_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_selbench_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_selbench_loc_conf_t *slcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    slcf->balancer = ngx_http_gateway_balancer_find(&value[1]);
    if (slcf->balancer == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown balancer \"%V\" in "
                           "\"gateway_selbench_balance\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    slcf->balancer_conf = ngx_http_gateway_balancer_create_conf(cf,
                                                      slcf->balancer,
                                                      &value[2],
                                                      cf->args->nelts - 2);
    if (slcf->balancer_conf == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
