
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * gateway_metrics: the registry and its counters in the Prometheus text
 * format.  The page is rendered from the snapshots that requests use,
 * without the zone's lock: the worker announces a read epoch for the
 * render, so nothing it reaches can be freed meanwhile, and writers go on.
 * Names and ids are registry names (A-Z a-z 0-9 . _ -): label values that
 * need no escaping.
 */


#define NGX_HTTP_GATEWAY_METRICS_LINE  512
#define NGX_HTTP_GATEWAY_METRICS_BUF   65536


typedef struct {
    ngx_flag_t                      enable;
    ngx_uint_t                      max_instances;
} ngx_http_gateway_metrics_loc_conf_t;


typedef struct {
    ngx_http_gateway_service_t     *svc;
    ngx_http_gateway_snapshot_t    *snap;
} ngx_http_gateway_metrics_svc_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_chain_t                    *out;
    ngx_chain_t                   **last;
    ngx_buf_t                      *buf;

    ngx_http_gateway_metrics_svc_t *svcs;
    ngx_uint_t                      nsvcs;
    ngx_uint_t                      max_instances;
} ngx_http_gateway_metrics_ctx_t;


typedef ngx_uint_t (*ngx_http_gateway_metrics_value_pt)(
    ngx_http_gateway_peer_t *peer, ngx_uint_t arg);


static ngx_int_t ngx_http_gateway_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_metrics_collect(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_main_conf_t *gmcf);
static int ngx_http_gateway_metrics_svc_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_gateway_metrics_render(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_main_conf_t *gmcf);
static ngx_int_t ngx_http_gateway_metrics_registry(
    ngx_http_gateway_metrics_ctx_t *ctx, ngx_http_gateway_main_conf_t *gmcf);
static ngx_int_t ngx_http_gateway_metrics_services(
    ngx_http_gateway_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_metrics_instances(
    ngx_http_gateway_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_metrics_family(
    ngx_http_gateway_metrics_ctx_t *ctx, const char *name, const char *type,
    const char *help);
static ngx_int_t ngx_http_gateway_metrics_one(
    ngx_http_gateway_metrics_ctx_t *ctx, const char *name, const char *type,
    const char *help, ngx_uint_t value);
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


static ngx_int_t
ngx_http_gateway_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                             rc;
    ngx_chain_t                          *cl;
    ngx_http_gateway_main_conf_t         *gmcf;
    ngx_http_gateway_metrics_ctx_t        ctx;
    ngx_http_gateway_metrics_loc_conf_t  *mlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_module);
    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_metrics_module);

    ngx_memzero(&ctx, sizeof(ngx_http_gateway_metrics_ctx_t));
    ctx.request = r;
    ctx.last = &ctx.out;
    ctx.max_instances = mlcf->max_instances;

    if (ngx_http_gateway_read_begin(gmcf) != NGX_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    rc = ngx_http_gateway_metrics_render(&ctx, gmcf);

    ngx_http_gateway_read_end();

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx.buf == NULL) {
        if (ngx_http_gateway_metrics_reserve(&ctx) == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx.buf->last_buf = (r == r->main) ? 1 : 0;
    ctx.buf->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;

    for (cl = ctx.out; cl; cl = cl->next) {
        r->headers_out.content_length_n += cl->buf->last - cl->buf->pos;
    }

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, ctx.out);
}


static ngx_int_t
ngx_http_gateway_metrics_render(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_main_conf_t *gmcf)
{
    if (ngx_http_gateway_metrics_collect(ctx, gmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_gateway_metrics_registry(ctx, gmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_gateway_metrics_services(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_gateway_metrics_instances(ctx);
}


/* the published services, by name; read epoch announced */

static ngx_int_t
ngx_http_gateway_metrics_collect(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                       b, n;
    ngx_http_gateway_sh_t           *sh;
    ngx_http_gateway_service_t      *svc;
    ngx_http_gateway_snapshot_t     *snap;
    ngx_http_gateway_metrics_svc_t  *ms;

    sh = gmcf->sh;

    /* services may come meanwhile: what does not fit waits for a scrape */

    n = sh->nservices + 16;

    ctx->svcs = ngx_palloc(ctx->request->pool,
                           n * sizeof(ngx_http_gateway_metrics_svc_t));
    if (ctx->svcs == NULL) {
        return NGX_ERROR;
    }

    for (b = 0; b < sh->nindex && ctx->nsvcs < n; b++) {
        for (svc = sh->index[b]; svc && ctx->nsvcs < n; svc = svc->hnext) {
            snap = svc->snapshot;

            if (snap == NULL) {
                continue;
            }

            ms = &ctx->svcs[ctx->nsvcs++];
            ms->svc = svc;
            ms->snap = snap;
        }
    }

    ngx_qsort(ctx->svcs, ctx->nsvcs, sizeof(ngx_http_gateway_metrics_svc_t),
              ngx_http_gateway_metrics_svc_cmp);

    return NGX_OK;
}


static int
ngx_http_gateway_metrics_svc_cmp(const void *one, const void *two)
{
    ngx_http_gateway_metrics_svc_t  *a, *b;

    a = (ngx_http_gateway_metrics_svc_t *) one;
    b = (ngx_http_gateway_metrics_svc_t *) two;

    return ngx_memn2cmp(a->svc->sn.str.data, b->svc->sn.str.data,
                        a->svc->sn.str.len, b->svc->sn.str.len);
}


static ngx_int_t
ngx_http_gateway_metrics_registry(ngx_http_gateway_metrics_ctx_t *ctx,
    ngx_http_gateway_main_conf_t *gmcf)
{
    u_char                 *p;
    ngx_uint_t              i, j, states[3];
    ngx_http_gateway_sh_t  *sh;

    sh = gmcf->sh;

    ngx_memzero(states, sizeof(states));

    for (i = 0; i < ctx->nsvcs; i++) {
        for (j = 0; j < ctx->svcs[i].snap->npeers; j++) {
            states[ctx->svcs[i].snap->peers[j].state % 3]++;
        }
    }

    if (ngx_http_gateway_metrics_one(ctx, "gateway_registry_changes_total",
            "counter", "Changes this gateway applied to its registry.",
            sh->generation)
        != NGX_OK
        || ngx_http_gateway_metrics_one(ctx, "gateway_registry_services",
               "gauge", "Services in the registry.", ctx->nsvcs)
           != NGX_OK
        || ngx_http_gateway_metrics_family(ctx, "gateway_registry_instances",
               "gauge", "Instances in the registry, by state.")
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
                                     states[i]);
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
                   "gateway_redis_reconnects_total", "counter",
                   "Times the sync's link to Redis was lost.",
                   sh->redis_reconnects)
               != NGX_OK
            || ngx_http_gateway_metrics_one(ctx,
                   "gateway_registry_last_sync_timestamp_seconds", "gauge",
                   "When this gateway last compared its registry with "
                   "Redis (0: not yet).", (ngx_uint_t) sh->synced)
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


static ngx_int_t
ngx_http_gateway_metrics_services(ngx_http_gateway_metrics_ctx_t *ctx)
{
    u_char                            *p;
    ngx_str_t                         *name;
    ngx_uint_t                         i, k, sum;
    ngx_http_gateway_service_stats_t  *st;

    if (ngx_http_gateway_metrics_family(ctx, "gateway_service_requests_total",
            "counter", "Requests to a service, by the status class of their "
            "last upstream attempt (none: no response).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nsvcs; i++) {
        st = &ctx->svcs[i].svc->stats;
        name = &ctx->svcs[i].svc->sn.str;

        for (k = 0; k < 6; k++) {
            p = ngx_http_gateway_metrics_reserve(ctx);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ctx->buf->last = ngx_sprintf(p,
                                "gateway_service_requests_total{service=\"%V\","
                                "status_class=\"%s\"} %uA\n",
                                name, ngx_http_gateway_metrics_classes[k],
                                st->requests[k]);
        }
    }

    if (ngx_http_gateway_metrics_family(ctx,
            "gateway_service_upstream_response_seconds", "histogram",
            "Time from choosing an instance to the end of the attempt.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nsvcs; i++) {
        st = &ctx->svcs[i].svc->stats;
        name = &ctx->svcs[i].svc->sn.str;
        sum = 0;

        for (k = 0; k <= NGX_HTTP_GATEWAY_BUCKETS; k++) {
            sum += st->le[k];

            p = ngx_http_gateway_metrics_reserve(ctx);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (k < NGX_HTTP_GATEWAY_BUCKETS) {
                ctx->buf->last = ngx_sprintf(p,
                            "gateway_service_upstream_response_seconds_bucket"
                            "{service=\"%V\",le=\"%M.%03M\"} %ui\n", name,
                            ngx_http_gateway_buckets[k] / 1000,
                            ngx_http_gateway_buckets[k] % 1000, sum);

            } else {
                ctx->buf->last = ngx_sprintf(p,
                            "gateway_service_upstream_response_seconds_bucket"
                            "{service=\"%V\",le=\"+Inf\"} %ui\n", name, sum);
            }
        }

        p = ngx_http_gateway_metrics_reserve(ctx);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* the count is the buckets' sum, so that the two always agree */

        ctx->buf->last = ngx_sprintf(p,
                          "gateway_service_upstream_response_seconds_sum"
                          "{service=\"%V\"} %uA.%03uA\n"
                          "gateway_service_upstream_response_seconds_count"
                          "{service=\"%V\"} %ui\n",
                          name, st->time_sum / 1000, st->time_sum % 1000,
                          name, sum);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_gateway_metrics_requests(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    return peer->inst->stats.requests;
}


static ngx_uint_t
ngx_http_gateway_metrics_retries(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    return peer->inst->stats.retries;
}


static ngx_uint_t
ngx_http_gateway_metrics_failures(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    ngx_http_gateway_stats_t  *st;

    st = &peer->inst->stats;

    switch (arg) {
    case 0:
        return st->fails_connect;
    case 1:
        return st->fails_timeout;
    case 2:
        return st->fails_status;
    default:
        return st->fails_error;
    }
}


static ngx_uint_t
ngx_http_gateway_metrics_in_flight(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    return peer->inst->stats.active;
}


static ngx_uint_t
ngx_http_gateway_metrics_weight(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    return peer->weight;
}


static ngx_uint_t
ngx_http_gateway_metrics_state(ngx_http_gateway_peer_t *peer,
    ngx_uint_t arg)
{
    return peer->state == arg;
}


/* one line per instance and label value, for every family */

typedef struct {
    const char                         *name;
    const char                         *type;
    const char                         *help;
    const char                         *label;     /* NULL: none */
    const char                        **values;
    ngx_uint_t                          nvalues;
    ngx_http_gateway_metrics_value_pt   value;
} ngx_http_gateway_metrics_family_t;


static const char  *ngx_http_gateway_metrics_causes[] = {
    "connect", "timeout", "status", "other"
};


static ngx_http_gateway_metrics_family_t  ngx_http_gateway_metrics_inst[] = {

    { "gateway_instance_requests_total", "counter",
      "Upstream attempts to an instance.",
      NULL, NULL, 1, ngx_http_gateway_metrics_requests },

    { "gateway_instance_failures_total", "counter",
      "Failed upstream attempts to an instance, by cause.",
      "cause", ngx_http_gateway_metrics_causes, 4,
      ngx_http_gateway_metrics_failures },

    { "gateway_instance_retries_total", "counter",
      "Upstream attempts to an instance that retried a request.",
      NULL, NULL, 1, ngx_http_gateway_metrics_retries },

    { "gateway_instance_in_flight", "gauge",
      "Upstream attempts in flight to an instance.",
      NULL, NULL, 1, ngx_http_gateway_metrics_in_flight },

    { "gateway_instance_weight", "gauge",
      "An instance's registered weight.",
      NULL, NULL, 1, ngx_http_gateway_metrics_weight },

    { "gateway_instance_state", "gauge",
      "1 for an instance's registered state.",
      "state", NULL, 3,
      ngx_http_gateway_metrics_state },
};


static ngx_int_t
ngx_http_gateway_metrics_instances(ngx_http_gateway_metrics_ctx_t *ctx)
{
    u_char                             *p;
    ngx_uint_t                          f, i, j, k, n, omitted;
    ngx_http_gateway_peer_t            *peer;
    ngx_http_gateway_snapshot_t        *snap;
    ngx_http_gateway_metrics_family_t  *fam;

    omitted = 0;

    for (f = 0; f < sizeof(ngx_http_gateway_metrics_inst)
                    / sizeof(ngx_http_gateway_metrics_family_t); f++)
    {
        fam = &ngx_http_gateway_metrics_inst[f];

        if (ngx_http_gateway_metrics_family(ctx, fam->name, fam->type,
                                            fam->help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        n = 0;
        omitted = 0;

        for (i = 0; i < ctx->nsvcs; i++) {
            snap = ctx->svcs[i].snap;

            for (j = 0; j < snap->npeers; j++) {
                peer = &snap->peers[j];

                if (n++ >= ctx->max_instances) {
                    omitted++;
                    continue;
                }

                for (k = 0; k < fam->nvalues; k++) {
                    p = ngx_http_gateway_metrics_reserve(ctx);
                    if (p == NULL) {
                        return NGX_ERROR;
                    }

                    p = ngx_sprintf(p, "%s{service=\"%V\",instance=\"%V\"",
                                    fam->name, &snap->service->sn.str,
                                    &peer->inst->id);

                    if (fam->label) {
                        p = ngx_sprintf(p, ",%s=\"%s\"", fam->label,
                                        fam->values
                                        ? fam->values[k]
                                        : ngx_gateway_state_name(k));
                    }

                    ctx->buf->last = ngx_sprintf(p, "} %ui\n",
                                                 fam->value(peer, k));
                }
            }
        }
    }

    return ngx_http_gateway_metrics_one(ctx,
               "gateway_metrics_omitted_instances", "gauge",
               "Instances left out of the per-instance series by "
               "gateway_metrics max_instances.", omitted);
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

    b = ngx_create_temp_buf(ctx->request->pool, NGX_HTTP_GATEWAY_METRICS_BUF);
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(ctx->request->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *ctx->last = cl;
    ctx->last = &cl->next;
    ctx->buf = b;

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
                               "invalid parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[1].data + 14, value[1].len - 14);
        if (n == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid max_instances \"%V\"", &value[1]);
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
