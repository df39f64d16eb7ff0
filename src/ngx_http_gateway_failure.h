
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_FAILURE_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_FAILURE_H_INCLUDED_


#include "ngx_http_gateway.h"
#include "ngx_gateway_failure.h"


/*
 * What an upstream does with failures: passive ejection of instances
 * (gateway_eject, ngx_http_gateway_eject.c) and retry budgets and
 * idempotent retries (gateway_retry_*, ngx_http_gateway_retry.c).  The
 * core asks these at the points named below; the counting itself is an
 * attempt observer.
 */

typedef struct {
    ngx_flag_t                  enabled;
    ngx_uint_t                  failures;
    ngx_msec_t                  time;
    ngx_msec_t                  max_time;
    ngx_uint_t                  max_percent;
    ngx_uint_t                  panic;
    uint64_t                    statuses[NGX_GATEWAY_STATUS_WORDS];
} ngx_http_gateway_eject_conf_t;


typedef struct {
    ngx_uint_t                  percent;    /* NGX_CONF_UNSET_UINT: none */
    ngx_uint_t                  min;
    ngx_flag_t                  idempotency_key;
} ngx_http_gateway_retry_conf_t;


extern ngx_module_t  ngx_http_gateway_eject_module;
extern ngx_module_t  ngx_http_gateway_retry_module;


/* the upstream's configuration, NULL when the feature is off */
ngx_http_gateway_eject_conf_t *ngx_http_gateway_eject_conf(
    ngx_http_upstream_srv_conf_t *us);
ngx_http_gateway_retry_conf_t *ngx_http_gateway_retry_conf(
    ngx_http_upstream_srv_conf_t *us);

/* before a selection: whether ejected instances are left out (no panic) */
ngx_uint_t ngx_http_gateway_eject_filter(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_snapshot_t *snap, ngx_http_request_t *r);

/*
 * after a selection: NGX_OK, NGX_DONE (this attempt is the instance's
 * trial), NGX_BUSY (another worker took its trial: select again)
 */
ngx_int_t ngx_http_gateway_eject_claim(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_peer_t *peer);

/*
 * an instance leaves the registry (gone), or gets another address (its
 * ejection is forgotten); zone lock held
 */
void ngx_http_gateway_eject_reset_locked(ngx_http_gateway_service_t *svc,
    ngx_http_gateway_instance_t *inst, ngx_uint_t gone);

/* the admin API's "ejection" of an instance; p == NULL: its length */
size_t ngx_http_gateway_eject_json(u_char *p,
    ngx_http_gateway_instance_t *inst);

/*
 * a status's proxy_next_upstream flag (ngx_http_upstream_test_next()'s
 * list), 0 for a status nginx never retries
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_status_ft(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return NGX_HTTP_UPSTREAM_FT_HTTP_500;
    case NGX_HTTP_BAD_GATEWAY:
        return NGX_HTTP_UPSTREAM_FT_HTTP_502;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return NGX_HTTP_UPSTREAM_FT_HTTP_503;
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return NGX_HTTP_UPSTREAM_FT_HTTP_504;
    case NGX_HTTP_FORBIDDEN:
        return NGX_HTTP_UPSTREAM_FT_HTTP_403;
    case NGX_HTTP_NOT_FOUND:
        return NGX_HTTP_UPSTREAM_FT_HTTP_404;
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return NGX_HTTP_UPSTREAM_FT_HTTP_429;
    default:
        return 0;
    }
}

/* peer.init: an Idempotency-Key makes the request idempotent */
ngx_int_t ngx_http_gateway_retry_init_peer(ngx_http_request_t *r,
    ngx_http_gateway_retry_conf_t *rcf);

/* an attempt starts: counted as a first attempt or a retry in flight */
void ngx_http_gateway_retry_begin(ngx_http_gateway_attempt_t *a,
    ngx_uint_t slot);

/* a failed attempt with tries left: whether nginx retries it */
ngx_uint_t ngx_http_gateway_retry_wanted(ngx_http_gateway_attempt_t *a);

/* a failed attempt nginx retries: 0 when the budget refuses the retry */
ngx_uint_t ngx_http_gateway_retry_allowed(ngx_http_gateway_retry_conf_t *rcf,
    ngx_http_gateway_attempt_t *a);


#endif /* _NGX_HTTP_GATEWAY_FAILURE_H_INCLUDED_ */
