
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * gateway_max_requests: at most NUMBER requests of a service in flight,
 * counted in the service (all workers).  A request takes its place at
 * peer.init, before its first attempt, and gives it back when it ends
 * (the upstream core's per-request cleanup calls limit_release(): no
 * allocation of its own).  The place is recorded in a hold of the
 * worker's entry, which also keeps the service in the zone: a worker that
 * dies gives its places back the way it gives back "active"
 * (ngx_http_gateway_snapshot.c).  The place is recorded in the hold by
 * the store right after the compare-and-swap that took it: only a worker
 * killed between the two would leave one place counted, never a
 * negative count.
 */


#define NGX_HTTP_GATEWAY_LIMIT_LOG  1000    /* ms between log lines */


typedef struct {
    ngx_uint_t                      max;    /* 0: no limit */
} ngx_http_gateway_limit_conf_t;


static void *ngx_http_gateway_limit_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_max_requests(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_gateway_limit_log(ngx_http_request_t *r,
    ngx_str_t *service, ngx_uint_t max, ngx_atomic_uint_t rejected);


static ngx_command_t  ngx_http_gateway_limit_commands[] = {

    { ngx_string("gateway_max_requests"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_max_requests,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_limit_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_limit_create_conf,    /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_limit_module_ctx,    /* module context */
    ngx_http_gateway_limit_commands,       /* module directives */
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


static ngx_msec_t        ngx_http_gateway_limit_logged;
static ngx_atomic_uint_t ngx_http_gateway_limit_unlogged;


static void *
ngx_http_gateway_limit_create_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_limit_conf_t));
}


static char *
ngx_http_gateway_max_requests(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_limit_conf_t *lc = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value, name;
    ngx_http_upstream_srv_conf_t  *uscf;

    if (lc->max) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (ngx_http_gateway_upstream_service(uscf, &name) != NGX_OK) {
        return "must follow \"gateway_service\"";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < 1 || n > NGX_MAX_INT32_VALUE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number \"%V\" in \"gateway_max_requests\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    lc->max = n;

    return NGX_CONF_OK;
}


/* whether the upstream has a limit: the core asks limit_take() only then */

ngx_uint_t
ngx_http_gateway_limit_conf(ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_limit_conf_t  *lc;

    lc = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_limit_module);

    return lc->max != 0;
}


/*
 * NGX_DONE: the request took a place, recorded in the hold *slot, which
 * the caller gives back with limit_release() when the request ends;
 * NGX_OK: no limit applies (or the service is unknown: the core answers
 * for it); NGX_DECLINED: the service is at its limit, Retry-After is set.
 */

ngx_int_t
ngx_http_gateway_limit_take(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_lookup_t *lookup, ngx_str_t *service, uint32_t hash,
    ngx_uint_t *slot)
{
    ngx_table_elt_t                *h;
    ngx_atomic_t                   *in_flight;
    ngx_atomic_uint_t               n, rejected;
    ngx_http_gateway_limit_t       *limit;
    ngx_http_gateway_snapshot_t    *snap;
    ngx_http_gateway_limit_conf_t  *lc;

    lc = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_limit_module);

    if (lc->max == 0) {
        return NGX_OK;
    }

    if (ngx_http_gateway_snapshot_get_cached(gmcf, lookup, service, hash,
                                             &snap, slot)
        != NGX_OK)
    {
        return NGX_OK;
    }

    limit = &snap->service->limit;
    in_flight = &limit->in_flight;

    if (!limit->used) {
        limit->used = 1;
    }

    for ( ;; ) {
        n = *in_flight;

        if (n >= lc->max) {
            break;
        }

        if (ngx_atomic_cmp_set(in_flight, n, n + 1)) {
            ngx_http_gateway_hold_counted(*slot, in_flight);
            return NGX_DONE;
        }
    }

    ngx_http_gateway_snapshot_put(*slot);

    rejected = ngx_atomic_fetch_add(&limit->rejected, 1) + 1;

    ngx_http_gateway_limit_log(r, service, lc->max, rejected);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "1");

    return NGX_DECLINED;
}


void
ngx_http_gateway_limit_release(ngx_uint_t slot)
{
    ngx_http_gateway_hold_uncount(slot);
    ngx_http_gateway_snapshot_put(slot);
}


/* at most one line a second per worker, with what it did not log */

static void
ngx_http_gateway_limit_log(ngx_http_request_t *r, ngx_str_t *service,
    ngx_uint_t max, ngx_atomic_uint_t rejected)
{
    u_char     text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t  name;

    if (ngx_http_gateway_limit_logged
        && ngx_current_msec - ngx_http_gateway_limit_logged
           < NGX_HTTP_GATEWAY_LIMIT_LOG)
    {
        ngx_http_gateway_limit_unlogged++;
        return;
    }

    ngx_http_gateway_limit_logged = ngx_current_msec;

    ngx_http_gateway_log_text(&name, text, service->data, service->len);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "gateway: service \"%V\" is at its limit of %ui "
                  "requests in flight: rejected with 503 (%uA in all, %uA "
                  "more by this worker not logged)",
                  &name, max, rejected, ngx_http_gateway_limit_unlogged);

    ngx_http_gateway_limit_unlogged = 0;
}


/* "limit":{...}, for the admin API, once a limit applied to the service */

size_t
ngx_http_gateway_limit_json(u_char *p, ngx_http_gateway_service_t *svc)
{
    if (p == NULL) {
        return sizeof("\"limit\":{\"in_flight\":,\"rejected\":},")
               + 2 * NGX_ATOMIC_T_LEN;
    }

    if (!svc->limit.used) {
        return 0;
    }

    return ngx_sprintf(p, "\"limit\":{\"in_flight\":%uA,\"rejected\":%uA},",
                       svc->limit.in_flight, svc->limit.rejected)
           - p;
}
