
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_trace.h"


/*
 * gateway_metrics: the registry and its counters in the Prometheus text
 * format.  The page is rendered from the snapshots that requests use,
 * without the zone's lock, and in steps of about 16 KiB with a trip
 * through the event loop between two steps: a registry of 10,000 services
 * is megabytes of text, and the worker's other requests must not wait for
 * it.  A step announces a read epoch and finds each service again by its
 * name, so nothing it reaches can be freed while it reads it; a service
 * removed meanwhile is left out of the families still to come.  Names and
 * ids are registry names (A-Z a-z 0-9 . _ -): label values that need no
 * escaping.
 */


#define NGX_HTTP_GATEWAY_METRICS_LINE  512
#define NGX_HTTP_GATEWAY_METRICS_BUF   8192
#define NGX_HTTP_GATEWAY_METRICS_STEP  16384
#define NGX_HTTP_GATEWAY_METRICS_VISITS 256


typedef struct {
    ngx_flag_t                      enable;
    ngx_uint_t                      max_instances;
} ngx_http_gateway_metrics_loc_conf_t;


typedef struct {
    ngx_str_t                       name;
    uint32_t                        hash;
} ngx_http_gateway_metrics_name_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_gateway_main_conf_t   *gmcf;
    ngx_event_t                     next;       /* the next step */

    ngx_chain_t                    *out;        /* this step's */
    ngx_chain_t                   **last;
    ngx_buf_t                      *buf;
    size_t                          size;
    ngx_chain_t                    *free;       /* sent, to reuse */
    ngx_chain_t                    *busy;

    ngx_http_gateway_metrics_name_t *names;     /* sorted */
    ngx_uint_t                      nnames;

    ngx_http_gateway_reader_t     **readers;    /* whose counters to add */
    ngx_uint_t                      nreaders;

    ngx_uint_t                      family;     /* where the render is */
    ngx_uint_t                      pos;
    ngx_uint_t                      ninstances;
    ngx_uint_t                      omitted;
    ngx_uint_t                      max_instances;
    ngx_uint_t                      states[3];  /* instances by state */
    ngx_uint_t                      visited;    /* services, this step */
} ngx_http_gateway_metrics_ctx_t;


/* st: the instance's counters, read for a family with "counters" */

typedef ngx_uint_t (*ngx_http_gateway_metrics_value_pt)(
    ngx_http_gateway_peer_t *peer, ngx_http_gateway_stats_t *st,
    ngx_uint_t arg);

typedef ngx_int_t (*ngx_http_gateway_metrics_service_pt)(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);


static ngx_int_t ngx_http_gateway_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_metrics_names(
    ngx_http_gateway_metrics_ctx_t *ctx);
static void ngx_http_gateway_metrics_next(ngx_event_t *ev);
static void ngx_http_gateway_metrics_step(ngx_http_gateway_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_metrics_render(
    ngx_http_gateway_metrics_ctx_t *ctx);
static void ngx_http_gateway_metrics_write(ngx_http_request_t *r);
static void ngx_http_gateway_metrics_cleanup(void *data);
static ngx_int_t ngx_http_gateway_metrics_states(
    ngx_http_gateway_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_metrics_registry(
    ngx_http_gateway_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_metrics_requests_by_class(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_metrics_lag(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_lag_t *gl);
static ngx_int_t ngx_http_gateway_metrics_histogram(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_metrics_budget_spent(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_metrics_limit_rejected(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_metrics_service_value(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    const char *name, ngx_atomic_uint_t value);
static ngx_int_t ngx_http_gateway_metrics_instances(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_metrics_family(
    ngx_http_gateway_metrics_ctx_t *ctx, const char *name, const char *type,
    const char *help);
static ngx_int_t ngx_http_gateway_metrics_one(
    ngx_http_gateway_metrics_ctx_t *ctx, const char *name, const char *type,
    const char *help, ngx_uint_t value);
static u_char *ngx_http_gateway_metrics_sample(u_char *p, const char *name,
    ngx_str_t *service, ngx_str_t *instance, const char *label,
    const char *value, ngx_atomic_uint_t n);
static u_char *ngx_http_gateway_metrics_millis(u_char *p, ngx_atomic_uint_t ms);
static u_char *ngx_http_gateway_metrics_reserve(
    ngx_http_gateway_metrics_ctx_t *ctx);

static void *ngx_http_gateway_metrics_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_metrics_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_gateway_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_metrics_commands[] = {

    { ngx_string("gateway_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_gateway_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gateway_metrics_create_loc_conf,
                                           /* create location configuration */
    ngx_http_gateway_metrics_merge_loc_conf
                                           /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_metrics_module_ctx,  /* module context */
    ngx_http_gateway_metrics_commands,     /* module directives */
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


static const char  *ngx_http_gateway_metrics_classes[] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};


static ngx_uint_t
ngx_http_gateway_metrics_requests(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return st->requests;
}


static ngx_uint_t
ngx_http_gateway_metrics_retries(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return st->retries;
}


static ngx_uint_t
ngx_http_gateway_metrics_failures(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return st->fails[arg];
}


static ngx_uint_t
ngx_http_gateway_metrics_in_flight(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return st->active;
}


static ngx_uint_t
ngx_http_gateway_metrics_weight(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return peer->weight;
}


static ngx_uint_t
ngx_http_gateway_metrics_state(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return peer->state == arg;
}


static ngx_uint_t
ngx_http_gateway_metrics_ejected(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    ngx_uint_t  state;

    state = ngx_http_gateway_eject_state(
                ngx_http_gateway_instance_eject_state(peer->inst));

    return state == NGX_HTTP_GATEWAY_EJECT_OUT
           || state == NGX_HTTP_GATEWAY_EJECT_TRIAL;
}


static ngx_uint_t
ngx_http_gateway_metrics_ejections(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return peer->inst->lines ? peer->inst->lines->eject.count : 0;
}


static ngx_uint_t
ngx_http_gateway_metrics_health(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_stats_t *st, ngx_uint_t arg)
{
    return ngx_http_gateway_instance_health_state(peer->inst) == arg;
}


/* one line per instance and label value, for every family */

typedef struct {
    const char                         *name;
    const char                         *type;
    const char                         *help;
    const char                         *label;     /* NULL: none */
    const char                        **values;    /* NULL: the states */
    ngx_uint_t                          nvalues;
    ngx_http_gateway_metrics_value_pt   value;
    ngx_uint_t                          counters;  /* reads "st" */
} ngx_http_gateway_metrics_family_t;


/* by ngx_http_gateway_fail() */
static const char  *ngx_http_gateway_metrics_causes[] = {
    "connect", "timeout", "status", "other"
};

/* by NGX_HTTP_GATEWAY_HEALTH_* */
static const char  *ngx_http_gateway_metrics_health_states[] = {
    "unknown", "healthy", "unhealthy"
};


static ngx_http_gateway_metrics_family_t  ngx_http_gateway_metrics_inst[] = {

    { "gateway_instance_requests_total", "counter",
      "Upstream attempts to an instance.",
      NULL, NULL, 1, ngx_http_gateway_metrics_requests, 1 },

    { "gateway_instance_failures_total", "counter",
      "Failed upstream attempts to an instance, by cause.",
      "cause", ngx_http_gateway_metrics_causes, NGX_HTTP_GATEWAY_FAILS,
      ngx_http_gateway_metrics_failures, 1 },

    { "gateway_instance_retries_total", "counter",
      "Upstream attempts to an instance that retried a request.",
      NULL, NULL, 1, ngx_http_gateway_metrics_retries, 1 },

    { "gateway_instance_in_flight", "gauge",
      "Upstream attempts in flight to an instance.",
      NULL, NULL, 1, ngx_http_gateway_metrics_in_flight, 1 },

    { "gateway_instance_weight", "gauge",
      "An instance's registered weight.",
      NULL, NULL, 1, ngx_http_gateway_metrics_weight, 0 },

    { "gateway_instance_ejected", "gauge",
      "1 while gateway_eject keeps an instance out (or it is on trial).",
      NULL, NULL, 1, ngx_http_gateway_metrics_ejected, 0 },

    { "gateway_instance_ejections_total", "counter",
      "Times gateway_eject ejected an instance.",
      NULL, NULL, 1, ngx_http_gateway_metrics_ejections, 0 },

    { "gateway_instance_health", "gauge",
      "1 for an instance's active health check state (unknown: not probed "
      "yet, or no gateway_health_check).",
      "health", ngx_http_gateway_metrics_health_states, 3,
      ngx_http_gateway_metrics_health, 0 },

    { "gateway_instance_state", "gauge",
      "1 for an instance's registered state.",
      "state", NULL, 3,
      ngx_http_gateway_metrics_state, 0 },
};



/*
 * The families after the registry's, in order: the per-service ones, then
 * the per-instance ones of ngx_http_gateway_metrics_inst[] (rendered by
 * one function), then the count of instances left out.
 */

typedef struct {
    const char                          *name;
    const char                          *type;
    const char                          *help;
    ngx_http_gateway_metrics_service_pt  render;
} ngx_http_gateway_metrics_service_family_t;


static ngx_http_gateway_metrics_service_family_t
    ngx_http_gateway_metrics_svc[] = {

    { "gateway_service_requests_total", "counter",
      "Requests to a service, by the status class of their last upstream "
      "attempt (none: no response).",
      ngx_http_gateway_metrics_requests_by_class },

    { "gateway_service_upstream_response_seconds", "histogram",
      "Time from choosing an instance to the end of the attempt.",
      ngx_http_gateway_metrics_histogram },

    { "gateway_service_retry_budget_exhausted_total", "counter",
      "Retries gateway_retry_budget refused.",
      ngx_http_gateway_metrics_budget_spent },

    { "gateway_service_limit_rejections_total", "counter",
      "Requests gateway_max_requests answered 503.",
      ngx_http_gateway_metrics_limit_rejected },
};


#define NGX_HTTP_GATEWAY_METRICS_NSVC                                         \
    (sizeof(ngx_http_gateway_metrics_svc)                                     \
     / sizeof(ngx_http_gateway_metrics_service_family_t))

#define NGX_HTTP_GATEWAY_METRICS_NINST                                        \
    (sizeof(ngx_http_gateway_metrics_inst)                                    \
     / sizeof(ngx_http_gateway_metrics_family_t))

/* family: 0 the registry, then the per-service and per-instance ones */
#define NGX_HTTP_GATEWAY_METRICS_OMITTED                                      \
    (1 + NGX_HTTP_GATEWAY_METRICS_NSVC + NGX_HTTP_GATEWAY_METRICS_NINST)
#define NGX_HTTP_GATEWAY_METRICS_DONE                                         \
    (NGX_HTTP_GATEWAY_METRICS_OMITTED + 1)


static ngx_int_t
ngx_http_gateway_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                             rc;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_gateway_metrics_ctx_t       *ctx;
    ngx_http_gateway_metrics_loc_conf_t  *mlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_metrics_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gateway_metrics_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_gateway_metrics_module);

    ctx->request = r;
    ctx->gmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_module);
    ctx->max_instances = mlcf->max_instances;

    if (ngx_http_gateway_metrics_names(ctx) != NGX_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_gateway_metrics_cleanup;
    cln->data = ctx;

    ctx->next.handler = ngx_http_gateway_metrics_next;
    ctx->next.data = ctx;
    ctx->next.log = r->connection->log;

    r->main->count++;

    ngx_http_gateway_metrics_step(ctx);

    return NGX_DONE;
}


/*
 * The names of the services, in the registry's tree order (by name hash:
 * the same at every scrape; walked under the zone's lock, which requests
 * never take: writers wait for one walk of the services, not a sort, and
 * no instance is touched), what the steps go through.
 */

static ngx_int_t
ngx_http_gateway_metrics_names(ngx_http_gateway_metrics_ctx_t *ctx)
{
    u_char                           *p;
    ngx_uint_t                        n;
    ngx_slab_pool_t                  *shpool;
    ngx_rbtree_node_t                *node, *root, *sentinel;
    ngx_http_gateway_sh_t            *sh;
    ngx_http_gateway_service_t       *svc;
    ngx_http_gateway_metrics_name_t  *nm;

    sh = ctx->gmcf->sh;
    shpool = ctx->gmcf->shpool;

    /*
     * the arrays are allocated before the lock (for 10,000 services, a
     * malloc of some 900 KB), from a racy read of the count that the lock
     * then confirms
     */

    for ( ;; ) {
        n = sh->nservices;

        ctx->names = ngx_palloc(ctx->request->pool,
                                (n + 1)
                                * sizeof(ngx_http_gateway_metrics_name_t));
        p = ngx_palloc(ctx->request->pool, (n + 1) * NGX_GATEWAY_NAME_MAX);

        if (ctx->names == NULL || p == NULL) {
            return NGX_ERROR;
        }

        ngx_shmtx_lock(&shpool->mutex);

        if (sh->nservices <= n) {
            break;
        }

        ngx_shmtx_unlock(&shpool->mutex);
    }

    /* the workers' entries now: entries and their cells are never freed */

    ctx->readers = ngx_palloc(ctx->request->pool, (sh->nreaders + 1)
                                  * sizeof(ngx_http_gateway_reader_t *));
    if (ctx->readers == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->readers, sh->readers,
               sh->nreaders * sizeof(ngx_http_gateway_reader_t *));
    ctx->nreaders = sh->nreaders;

    root = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);

    for ( /* void */ ; node && ctx->nnames < n;
         node = ngx_rbtree_next(&sh->rbtree, node))
    {
        svc = (ngx_http_gateway_service_t *) node;

        nm = &ctx->names[ctx->nnames++];
        nm->name.data = p;
        nm->name.len = svc->sn.str.len;
        nm->hash = svc->sn.node.key;
        p = ngx_cpymem(p, svc->sn.str.data, svc->sn.str.len);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


static void
ngx_http_gateway_metrics_next(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_gateway_metrics_ctx_t  *ctx;

    ctx = ev->data;
    c = ctx->request->connection;

    ngx_http_gateway_metrics_step(ctx);

    ngx_http_run_posted_requests(c);
}


/*
 * One step: render about NGX_HTTP_GATEWAY_METRICS_STEP bytes and send
 * them.  The next step comes through the event loop; while the client
 * does not take what was sent, not before the socket can take more, so
 * that a slow client holds about one step's buffers, not the page.
 */

static void
ngx_http_gateway_metrics_step(ngx_http_gateway_metrics_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;
    c = r->connection;

    ctx->out = NULL;
    ctx->last = &ctx->out;
    ctx->buf = NULL;
    ctx->size = 0;

    if (c->error) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    /* what the socket did not take goes first; then the next step */

    if (!(c->buffered & NGX_HTTP_WRITE_BUFFERED)) {

        if (ngx_http_gateway_read_begin(ctx->gmcf) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        rc = ngx_http_gateway_metrics_render(ctx);

        ngx_http_gateway_read_end();

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        if (ctx->family == NGX_HTTP_GATEWAY_METRICS_DONE) {
            if (ctx->buf == NULL
                && ngx_http_gateway_metrics_reserve(ctx) == NULL)
            {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }

            ctx->buf->last_buf = (r == r->main) ? 1 : 0;
            ctx->buf->last_in_chain = 1;
        }
    }

    rc = ngx_http_output_filter(r, ctx->out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &ctx->out,
                            (ngx_buf_tag_t) &ngx_http_gateway_metrics_module);

    /* the end: nginx's writer sends what is left */

    if (rc == NGX_ERROR || ctx->family == NGX_HTTP_GATEWAY_METRICS_DONE) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (rc != NGX_AGAIN && !(c->buffered & NGX_HTTP_WRITE_BUFFERED)) {

        /* after the events the next poll finds: other requests go first */

        ngx_post_event(&ctx->next, &ngx_posted_next_events);
        return;
    }

    wev = c->write;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    r->write_event_handler = ngx_http_gateway_metrics_write;

    if (!wev->delayed) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_http_gateway_metrics_write(ngx_http_request_t *r)
{
    ngx_event_t                     *wev;
    ngx_http_gateway_metrics_ctx_t  *ctx;

    wev = r->connection->write;

    if (wev->timedout) {
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_metrics_module);

    ngx_http_gateway_metrics_step(ctx);
}


static void
ngx_http_gateway_metrics_cleanup(void *data)
{
    ngx_http_gateway_metrics_ctx_t  *ctx = data;

    if (ctx->next.posted) {
        ngx_delete_posted_event(&ctx->next);
    }
}


/* read epoch announced */

static ngx_int_t
ngx_http_gateway_metrics_render(ngx_http_gateway_metrics_ctx_t *ctx)
{
    ngx_uint_t                                  f, j;
    ngx_http_gateway_service_t                 *svc;
    ngx_http_gateway_snapshot_t                *snap;
    ngx_http_gateway_metrics_name_t            *nm;
    ngx_http_gateway_metrics_family_t          *fam;
    ngx_http_gateway_metrics_service_family_t  *sf;

    /* bytes, and services looked at: left out, they write nothing */

    ctx->visited = 0;

    while (ctx->size < NGX_HTTP_GATEWAY_METRICS_STEP
           && ctx->visited < NGX_HTTP_GATEWAY_METRICS_VISITS)
    {

        f = ctx->family;

        if (f == 0) {
            if (ngx_http_gateway_metrics_registry(ctx) != NGX_OK) {
                return NGX_ERROR;
            }

            ctx->family++;
            continue;
        }

        if (f == NGX_HTTP_GATEWAY_METRICS_OMITTED) {
            if (ngx_http_gateway_metrics_states(ctx) != NGX_OK
                || ngx_http_gateway_metrics_one(ctx,
                    "gateway_metrics_omitted_instances", "gauge",
                    "Instances left out of the per-instance series by "
                    "gateway_metrics max_instances.", ctx->omitted)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ctx->family++;
            continue;
        }

        if (f == NGX_HTTP_GATEWAY_METRICS_DONE) {
            return NGX_OK;
        }

        if (ctx->pos == 0) {

            if (f <= NGX_HTTP_GATEWAY_METRICS_NSVC) {
                sf = &ngx_http_gateway_metrics_svc[f - 1];

                if (ngx_http_gateway_metrics_family(ctx, sf->name, sf->type,
                                                    sf->help)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else {
                fam = ngx_http_gateway_metrics_inst
                      + (f - 1 - NGX_HTTP_GATEWAY_METRICS_NSVC);

                if (ngx_http_gateway_metrics_family(ctx, fam->name, fam->type,
                                                    fam->help)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ctx->ninstances = 0;
            }
        }

        if (ctx->pos == ctx->nnames) {
            ctx->family++;
            ctx->pos = 0;
            continue;
        }

        nm = &ctx->names[ctx->pos++];
        ctx->visited++;

        svc = ngx_http_gateway_index_find(ctx->gmcf, &nm->name, nm->hash);
        snap = svc ? svc->snapshot : NULL;

        if (snap == NULL) {
            continue;
        }

        /* instances by state: counted in the first pass, rendered last */

        if (f == 1) {
            for (j = 0; j < snap->npeers; j++) {
                ctx->states[snap->peers[j].state % 3]++;
            }
        }

        if (f <= NGX_HTTP_GATEWAY_METRICS_NSVC) {
            if (ngx_http_gateway_metrics_svc[f - 1].render(ctx, svc, snap)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_gateway_metrics_instances(ctx, svc, snap)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Instances by state, from the snapshots the first per-service family went
 * through (not in the walk under the zone's lock: that would touch every
 * instance of the registry while writers wait).
 */

static ngx_int_t
ngx_http_gateway_metrics_states(ngx_http_gateway_metrics_ctx_t *ctx)
{
    u_char      *p;
    ngx_uint_t   i;

    if (ngx_http_gateway_metrics_family(ctx, "gateway_registry_instances",
                                        "gauge",
                                        "Instances in the registry, by state.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < 3; i++) {
        p = ngx_http_gateway_metrics_reserve(ctx);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->buf->last = ngx_sprintf(p,
                                     "gateway_registry_instances{state=\"%s\"}"
                                     " %ui\n", ngx_gateway_state_name(i),
                                     ctx->states[i]);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_registry(ngx_http_gateway_metrics_ctx_t *ctx)
{
    ngx_http_gateway_sh_t               *sh;
    ngx_http_gateway_main_conf_t        *gmcf;
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    gmcf = ctx->gmcf;
    sh = gmcf->sh;

    if (ngx_http_gateway_metrics_one(ctx, "gateway_registry_changes_total",
            "counter", "Changes this gateway applied to its registry.",
            sh->generation)
        != NGX_OK
        || ngx_http_gateway_metrics_one(ctx, "gateway_registry_services",
               "gauge", "Services in the registry.", ctx->nnames)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_gateway_metrics_one(ctx, "gateway_registry_stale", "gauge",
            "1 while Redis has lost the registry and this gateway routes "
            "with the last one it had.", sh->stale_since != 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the sync's own fields: plain reads of what one process writes */

    if (gmcf->redis
        && (ngx_http_gateway_metrics_one(ctx, "gateway_redis_up", "gauge",
                "1 while the sync's link to Redis is up.", sh->redis_up)
            != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_registry_revision", "gauge",
                   "The registry revision (Redis' P rev) this gateway has "
                   "applied (0: not synced yet).", (ngx_uint_t) sh->revision)
               != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_redis_reconnects_total", "counter",
                   "Times the sync's link to Redis was lost.",
                   sh->redis_reconnects)
               != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_registry_last_sync_timestamp_seconds", "gauge",
                   "When this gateway last compared its registry with "
                   "Redis (0: not yet).", (ngx_uint_t) sh->synced)
               != NGX_OK
            || ngx_http_gateway_metrics_lag(ctx, &sh->lag) != NGX_OK))
    {
        return NGX_ERROR;
    }

    /* the exporter's counters, once gateway_trace_exporter is set */

    tmcf = ngx_http_get_module_main_conf(ctx->request,
                                         ngx_http_gateway_trace_module);

    if (tmcf && tmcf->stats
        && (ngx_http_gateway_metrics_one(ctx,
                "gateway_trace_spans_exported_total", "counter",
                "Spans the OTLP collector accepted.", tmcf->stats->exported)
            != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_trace_spans_dropped_total", "counter",
                   "Spans never delivered (buffer full, export failed).",
                   tmcf->stats->dropped)
               != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_trace_export_failures_total", "counter",
                   "OTLP export requests that failed.", tmcf->stats->failed)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    /* a racy read of the slab's free page count is good enough here */

    if (ngx_http_gateway_metrics_one(ctx, "gateway_zone_size_bytes", "gauge",
            "Size of the registry's shared memory zone.",
            gmcf->shm_zone->shm.size)
        != NGX_OK
        || ngx_http_gateway_metrics_one(ctx, "gateway_zone_free_bytes",
               "gauge", "Bytes of the zone in free pages.",
               gmcf->shpool->pfree << ngx_pagesize_shift)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The sync's propagation lag (written by one process, read without a
 * lock: a scrape during an update may see a count one ahead of the sum)
 */

static ngx_int_t
ngx_http_gateway_metrics_lag(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_lag_t *gl)
{
    u_char      *p;
    ngx_uint_t   k, sum, last, total;

    if (ngx_http_gateway_metrics_family(ctx,
            "gateway_registry_propagation_lag_seconds", "histogram",
            "Time from a change's write in Redis until this gateway "
            "applied it (changes carried by a notice).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sum = 0;

    for (k = 0; k <= NGX_HTTP_GATEWAY_LAG_BUCKETS; k++) {
        sum += gl->le[k];

        p = ngx_http_gateway_metrics_reserve(ctx);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->buf->last = ngx_sprintf(p,
                            "gateway_registry_propagation_lag_seconds_bucket"
                            "{le=\"%s\"} %ui\n",
                            k < NGX_HTTP_GATEWAY_LAG_BUCKETS
                            ? ngx_http_gateway_lag_buckets[k].le : "+Inf",
                            sum);
    }

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    total = gl->sum_us;

    ctx->buf->last = ngx_sprintf(p,
                          "gateway_registry_propagation_lag_seconds_sum "
                          "%ui.%06ui\n"
                          "gateway_registry_propagation_lag_seconds_count "
                          "%ui\n", total / 1000000, total % 1000000, sum);

    if (ngx_http_gateway_metrics_family(ctx,
            "gateway_registry_propagation_lag_last_seconds", "gauge",
            "Propagation lag of the last change applied from a notice.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = gl->last_us;

    ctx->buf->last = ngx_sprintf(p,
                          "gateway_registry_propagation_lag_last_seconds "
                          "%ui.%06ui\n", last / 1000000, last % 1000000);

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_requests_by_class(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *snap)
{
    u_char      *p;
    ngx_uint_t   k;

    for (k = 0; k < 6; k++) {
        p = ngx_http_gateway_metrics_reserve(ctx);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->buf->last = ngx_http_gateway_metrics_sample(p,
                             "gateway_service_requests_total", &svc->sn.str,
                             NULL, "status_class",
                             ngx_http_gateway_metrics_classes[k],
                             svc->stats.requests[k]);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_histogram(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *snap)
{
    u_char                            *p;
    ngx_str_t                         *name;
    ngx_uint_t                         k, sum;
    ngx_http_gateway_service_stats_t  *st;

    st = &svc->stats;
    name = &svc->sn.str;
    sum = 0;

    for (k = 0; k <= NGX_HTTP_GATEWAY_BUCKETS; k++) {
        sum += st->le[k];

        p = ngx_http_gateway_metrics_reserve(ctx);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "gateway_service_upstream_response_seconds_bucket"
                          "{service=\"",
                       sizeof("gateway_service_upstream_response_seconds_bucket"
                              "{service=\"") - 1);
        p = ngx_cpymem(p, name->data, name->len);
        p = ngx_cpymem(p, "\",le=\"", sizeof("\",le=\"") - 1);

        if (k < NGX_HTTP_GATEWAY_BUCKETS) {
            p = ngx_http_gateway_metrics_millis(p, ngx_http_gateway_buckets[k]);

        } else {
            p = ngx_cpymem(p, "+Inf", 4);
        }

        p = ngx_cpymem(p, "\"} ", 3);
        p = (u_char *) ngx_gateway_text_uint((char *) p, sum);
        *p++ = LF;

        ctx->buf->last = p;
    }

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* the count is the buckets' sum, so that the two always agree */

    p = ngx_cpymem(p, "gateway_service_upstream_response_seconds_sum"
                      "{service=\"",
                   sizeof("gateway_service_upstream_response_seconds_sum"
                          "{service=\"") - 1);
    p = ngx_cpymem(p, name->data, name->len);
    p = ngx_cpymem(p, "\"} ", 3);
    p = ngx_http_gateway_metrics_millis(p, st->time_sum);
    *p++ = LF;

    ctx->buf->last = ngx_http_gateway_metrics_sample(p,
                         "gateway_service_upstream_response_seconds_count",
                         name, NULL, NULL, NULL, sum);

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_budget_spent(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *snap)
{
    return ngx_http_gateway_metrics_service_value(ctx, svc,
               "gateway_service_retry_budget_exhausted_total",
               svc->failures.spent);
}


static ngx_int_t
ngx_http_gateway_metrics_limit_rejected(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *snap)
{
    return ngx_http_gateway_metrics_service_value(ctx, svc,
               "gateway_service_limit_rejections_total", svc->limit.rejected);
}


static ngx_int_t
ngx_http_gateway_metrics_service_value(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, const char *name,
    ngx_atomic_uint_t value)
{
    u_char  *p;

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->buf->last = ngx_http_gateway_metrics_sample(p, name, &svc->sn.str,
                                                     NULL, NULL, NULL, value);

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_instances(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *snap)
{
    u_char                             *p;
    ngx_str_t                           id;
    ngx_uint_t                          j, k, first;
    ngx_http_gateway_peer_t            *peer;
    ngx_http_gateway_stats_t            st;
    ngx_http_gateway_metrics_family_t  *fam;

    first = (ctx->family == 1 + NGX_HTTP_GATEWAY_METRICS_NSVC);
    fam = &ngx_http_gateway_metrics_inst[ctx->family - 1
                                         - NGX_HTTP_GATEWAY_METRICS_NSVC];

    for (j = 0; j < snap->npeers; j++) {
        peer = &snap->peers[j];

        if (ctx->ninstances++ >= ctx->max_instances) {
            ctx->omitted += first;
            continue;
        }

        id = ngx_http_gateway_peer_id(peer);

        if (fam->counters) {
            ngx_http_gateway_stats_read(ctx->gmcf->sh, ctx->readers,
                                        ctx->nreaders, peer->inst, &st);
        }

        for (k = 0; k < fam->nvalues; k++) {
            p = ngx_http_gateway_metrics_reserve(ctx);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ctx->buf->last = ngx_http_gateway_metrics_sample(p, fam->name,
                                 &svc->sn.str, &id, fam->label,
                                 fam->label == NULL ? NULL
                                 : fam->values ? fam->values[k]
                                 : ngx_gateway_state_name(k),
                                 fam->value(peer, &st, k));
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_metrics_family(ngx_http_gateway_metrics_ctx_t *ctx,
    const char *name, const char *type, const char *help)
{
    u_char  *p;

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->buf->last = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                                 name, help, name, type);

    return NGX_OK;
}


/* a family of one sample without labels */

static ngx_int_t
ngx_http_gateway_metrics_one(ngx_http_gateway_metrics_ctx_t *ctx,
    const char *name, const char *type, const char *help, ngx_uint_t value)
{
    u_char  *p;

    if (ngx_http_gateway_metrics_family(ctx, name, type, help) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_http_gateway_metrics_reserve(ctx);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->buf->last = ngx_sprintf(p, "%s %ui\n", name, value);

    return NGX_OK;
}


/*
 * One sample: NAME{service="S"[,instance="I"][,LABEL="V"]} N.  A page of
 * 10,000 services is some 400,000 of them: written with copies, not
 * through ngx_sprintf()'s format parser, which was four fifths of a
 * scrape's cost.  Names and ids are registry names (see above).
 */

static u_char *
ngx_http_gateway_metrics_sample(u_char *p, const char *name,
    ngx_str_t *service, ngx_str_t *instance, const char *label,
    const char *value, ngx_atomic_uint_t n)
{
    p = ngx_cpymem(p, name, ngx_strlen(name));
    p = ngx_cpymem(p, "{service=\"", sizeof("{service=\"") - 1);
    p = ngx_cpymem(p, service->data, service->len);

    if (instance) {
        p = ngx_cpymem(p, "\",instance=\"", sizeof("\",instance=\"") - 1);
        p = ngx_cpymem(p, instance->data, instance->len);
    }

    if (label) {
        *p++ = '"';
        *p++ = ',';
        p = ngx_cpymem(p, label, ngx_strlen(label));
        *p++ = '=';
        *p++ = '"';
        p = ngx_cpymem(p, value, ngx_strlen(value));
    }

    p = ngx_cpymem(p, "\"} ", 3);
    p = (u_char *) ngx_gateway_text_uint((char *) p, n);
    *p++ = LF;

    return p;
}


/* milliseconds as seconds: S.mmm */

static u_char *
ngx_http_gateway_metrics_millis(u_char *p, ngx_atomic_uint_t ms)
{
    ngx_uint_t  frac;

    p = (u_char *) ngx_gateway_text_uint((char *) p, ms / 1000);

    frac = ms % 1000;

    *p++ = '.';
    *p++ = (u_char) ('0' + frac / 100);
    *p++ = (u_char) ('0' + frac / 10 % 10);
    *p++ = (u_char) ('0' + frac % 10);

    return p;
}


/* room for one more line, whatever its names: they are bounded */

static u_char *
ngx_http_gateway_metrics_reserve(ngx_http_gateway_metrics_ctx_t *ctx)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ctx->buf;

    if (b && (size_t) (b->end - b->last) >= NGX_HTTP_GATEWAY_METRICS_LINE) {
        return b->last;
    }

    if (ctx->free) {

        /* sent: ngx_chain_update_chains() rewound it */

        cl = ctx->free;
        ctx->free = cl->next;
        b = cl->buf;

    } else {
        cl = ngx_alloc_chain_link(ctx->request->pool);
        if (cl == NULL) {
            return NULL;
        }

        b = ngx_create_temp_buf(ctx->request->pool,
                                NGX_HTTP_GATEWAY_METRICS_BUF);
        if (b == NULL) {
            return NULL;
        }

        cl->buf = b;
    }

    cl->next = NULL;
    b->tag = (ngx_buf_tag_t) &ngx_http_gateway_metrics_module;

    *ctx->last = cl;
    ctx->last = &cl->next;
    ctx->buf = b;
    ctx->size += NGX_HTTP_GATEWAY_METRICS_BUF;

    return b->last;
}


static void *
ngx_http_gateway_metrics_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_metrics_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_metrics_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->max_instances = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_gateway_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_gateway_metrics_loc_conf_t *prev = parent;
    ngx_http_gateway_metrics_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->max_instances, prev->max_instances,
                              10000);

    return NGX_CONF_OK;
}


/* gateway_metrics [max_instances=NUMBER]; */

static char *
ngx_http_gateway_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_metrics_loc_conf_t *mlcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_gateway_main_conf_t  *gmcf;

    if (mlcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

    if (gmcf->shm_zone == NULL) {
        return "requires \"gateway_registry\" before it at the http level";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {

        if (ngx_strncmp(value[1].data, "max_instances=", 14) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"gateway_metrics\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[1].data + 14, value[1].len - 14);
        if (n == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"gateway_metrics\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        mlcf->max_instances = n;
    }

    mlcf->enable = 1;

    /* counting starts with the first gateway_metrics; one observer */

    if (gmcf->metrics == 0) {
        if (ngx_http_gateway_observer_add(cf, ngx_http_gateway_metrics_observe)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        gmcf->metrics = 1;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_gateway_metrics_handler;

    return NGX_CONF_OK;
}
