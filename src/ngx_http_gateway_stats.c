
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * The per-instance counters the admin API shows, kept by an attempt
 * observer; atomics in the zone, so all workers add to one value.
 * "active" is the core's: it counts attempts in flight.
 */

void
ngx_http_gateway_stats_observe(ngx_http_gateway_attempt_t *a)
{
    ngx_atomic_t              *counter;
    ngx_http_gateway_stats_t  *st;

    st = &a->peer->inst->stats;

    (void) ngx_atomic_fetch_add(&st->requests, 1);
    (void) ngx_atomic_fetch_add(&st->time, a->end - a->start);

    if (a->number > 1) {
        (void) ngx_atomic_fetch_add(&st->retries, 1);
    }

    /* most attempts are no failure (CONNECT to ERROR): one test for them */

    if (a->result < NGX_HTTP_GATEWAY_ATTEMPT_CONNECT
        || a->result > NGX_HTTP_GATEWAY_ATTEMPT_ERROR)
    {
        return;
    }

    switch (a->result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_CONNECT:
        counter = &st->fails_connect;
        break;

    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        counter = &st->fails_timeout;
        break;

    case NGX_HTTP_GATEWAY_ATTEMPT_STATUS:
        counter = &st->fails_status;
        break;

    default: /* NGX_HTTP_GATEWAY_ATTEMPT_ERROR */
        counter = &st->fails_error;
        break;
    }

    (void) ngx_atomic_fetch_add(counter, 1);
}
