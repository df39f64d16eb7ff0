
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_failure.h"


/*
 * Retries are nginx's own (proxy_next_upstream: its conditions, tries,
 * timeout and the non-idempotent rule); the core sends each try to another
 * instance.  Two things are added here:
 *
 *   a retry budget: every attempt of an upstream with one is counted in
 *   its service, as a first attempt or a retry in flight, across all
 *   workers, by a hold (so the count of a worker that dies is given back
 *   with its holds); a failed attempt may be retried while the retries in
 *   flight are fewer than "percent" of the first attempts in flight, or
 *   than "min";
 *
 *   an Idempotency-Key header that makes a POST, PATCH or LOCK idempotent
 *   for nginx's rule: the request gets its own copy of the upstream's
 *   configuration with "non_idempotent" added to proxy_next_upstream.
 */


#define NGX_HTTP_GATEWAY_IDEMPOTENCY_KEY_MAX  255


static void *ngx_http_gateway_retry_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_retry_budget(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_retry_commands[] = {

    { ngx_string("gateway_retry_budget"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_gateway_retry_budget,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_retry_idempotency_key"),
      NGX_HTTP_UPS_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_gateway_retry_conf_t, idempotency_key),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_retry_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_retry_create_conf,    /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_retry_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_retry_module_ctx,    /* module context */
    ngx_http_gateway_retry_commands,       /* module directives */
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


ngx_http_gateway_retry_conf_t *
ngx_http_gateway_retry_conf(ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_retry_conf_t  *rcf;

    rcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_retry_module);

    if (rcf->idempotency_key == NGX_CONF_UNSET) {
        rcf->idempotency_key = 0;
    }

    if (rcf->percent == NGX_CONF_UNSET_UINT && !rcf->idempotency_key) {
        return NULL;
    }

    return rcf;
}


ngx_int_t
ngx_http_gateway_retry_init_peer(ngx_http_request_t *r,
    ngx_http_gateway_retry_conf_t *rcf)
{
    ngx_uint_t                 i;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_http_upstream_t       *u;
    ngx_http_upstream_conf_t  *ucf;

    u = r->upstream;

    if (!rcf->idempotency_key
        || !(r->method & (NGX_HTTP_POST|NGX_HTTP_LOCK|NGX_HTTP_PATCH))
        || (u->conf->next_upstream & NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT))
    {
        return NGX_OK;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Idempotency-Key") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               sizeof("Idempotency-Key") - 1)
               != 0)
        {
            continue;
        }

        if (h[i].value.len == 0
            || h[i].value.len > NGX_HTTP_GATEWAY_IDEMPOTENCY_KEY_MAX
            || !ngx_gateway_text_valid((char *) h[i].value.data,
                                       h[i].value.len))
        {
            return NGX_OK;
        }

        break;
    }

    ucf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (ucf == NULL) {
        return NGX_ERROR;
    }

    *ucf = *u->conf;
    ucf->next_upstream |= NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;
    u->conf = ucf;

    return NGX_OK;
}


void
ngx_http_gateway_retry_begin(ngx_http_gateway_attempt_t *a, ngx_uint_t slot)
{
    ngx_http_gateway_service_t  *svc;

    svc = a->snap->service;

    ngx_http_gateway_hold_count(slot, a->number > 1 ? &svc->failures.retries
                                                    : &svc->failures.first);
}


ngx_uint_t
ngx_http_gateway_retry_allowed(ngx_http_gateway_retry_conf_t *rcf,
    ngx_http_gateway_attempt_t *a)
{
    u_char                       text[NGX_GATEWAY_LOG_TEXT_SIZE];
    time_t                       now, last;
    ngx_str_t                    name;
    ngx_uint_t                   budget;
    ngx_atomic_uint_t            n;
    ngx_http_gateway_service_t  *svc;

    if (rcf->percent == NGX_CONF_UNSET_UINT) {
        return 1;
    }

    svc = a->snap->service;

    budget = ngx_gateway_retry_budget(svc->failures.first, rcf->percent,
                                      rcf->min);

    if (svc->failures.retries < budget) {
        return 1;
    }

    n = ngx_atomic_fetch_add(&svc->failures.spent, 1) + 1;

    now = ngx_time();
    last = svc->failures.logged;

    if (last != now
        && ngx_atomic_cmp_set(&svc->failures.logged, last, now))
    {
        ngx_http_gateway_log_text(&name, text, a->service->data,
                                  a->service->len);

        ngx_log_error(NGX_LOG_WARN, a->request->connection->log, 0,
                      "gateway: retry budget of service \"%V\" is spent "
                      "(%uA retries in flight, %uA first attempts, "
                      "percent=%ui min=%ui): no retry, %uA refused so far",
                      &name, svc->failures.retries, svc->failures.first,
                      rcf->percent, rcf->min, n);
    }

    return 0;
}


/*
 * Whether nginx itself retries after a failed attempt, if it has tries
 * left (ngx_http_upstream_next()'s rule: proxy_next_upstream and its
 * timeout, a non-idempotent request already sent)
 */

ngx_uint_t
ngx_http_gateway_retry_wanted(ngx_http_gateway_attempt_t *a)
{
    ngx_uint_t            ft;
    ngx_msec_t            timeout;
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    r = a->request;
    u = r->upstream;

    switch (a->result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_CONNECT:
        ft = NGX_HTTP_UPSTREAM_FT_ERROR;
        break;

    case NGX_HTTP_GATEWAY_ATTEMPT_ERROR:

        /* nginx's own try again on a fresh connection is no retry */

        if (a->cached) {
            return 0;
        }

        ft = NGX_HTTP_UPSTREAM_FT_ERROR;
        break;

    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        ft = NGX_HTTP_UPSTREAM_FT_TIMEOUT;
        break;

    case NGX_HTTP_GATEWAY_ATTEMPT_STATUS:
    case NGX_HTTP_GATEWAY_ATTEMPT_NEXT:

        ft = ngx_http_gateway_status_ft(a->status);

        if (ft == 0) {
            return 0;
        }

        break;

    default:
        return 0;
    }

    if (u->request_sent
        && (r->method & (NGX_HTTP_POST|NGX_HTTP_LOCK|NGX_HTTP_PATCH)))
    {
        ft |= NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;
    }

    timeout = u->conf->next_upstream_timeout;

    return (u->conf->next_upstream & ft) == ft
           && !(u->request_sent && r->request_body_no_buffering)
           && !(timeout && ngx_current_msec - u->peer.start_time >= timeout);
}


static void *
ngx_http_gateway_retry_create_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_retry_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_http_gateway_retry_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->percent = NGX_CONF_UNSET_UINT;
    conf->min = NGX_CONF_UNSET_UINT;
    conf->idempotency_key = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_gateway_retry_budget(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_retry_conf_t *rcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, v;
    ngx_uint_t   i;

    if (rcf->percent != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    rcf->percent = 20;
    rcf->min = 3;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "percent=", 8) == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            if (v.len && v.data[v.len - 1] == '%') {
                v.len--;
            }

            n = ngx_atoi(v.data, v.len);
            if (n < 0 || n > 1000) {
                goto invalid;
            }

            rcf->percent = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "min=", 4) == 0) {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);
            if (n < 0 || n > 1000000) {
                goto invalid;
            }

            rcf->min = n;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"gateway_retry_budget\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}
