
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * The per-service counters of the metrics page, kept by an attempt
 * observer that only a configured gateway_metrics adds: atomics in the
 * service, so all workers add to one value and a reload keeps them.
 */


/* upper bounds of the response time histogram, ms; the last is +Inf */

ngx_msec_t  ngx_http_gateway_buckets[NGX_HTTP_GATEWAY_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


void
ngx_http_gateway_metrics_observe(ngx_http_gateway_attempt_t *a)
{
    ngx_uint_t                         i, class;
    ngx_msec_t                         t;
    ngx_http_gateway_service_stats_t  *st;

    st = &a->snap->service->stats;

    t = a->end - a->start;

    for (i = 0; i < NGX_HTTP_GATEWAY_BUCKETS; i++) {
        if (t <= ngx_http_gateway_buckets[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&st->le[i], 1);
    (void) ngx_atomic_fetch_add(&st->time_sum, t);
    (void) ngx_atomic_fetch_add(&st->attempts, 1);

    if (a->retried) {
        return;
    }

    /* the request's last attempt: its status class, 0 for no response */

    class = (a->status >= 100 && a->status < 600) ? a->status / 100 : 0;

    (void) ngx_atomic_fetch_add(&st->requests[class], 1);
}
