
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Least outstanding requests, weighted: the eligible instance with the
 * smallest active / weight, where "active" is the instance's count of
 * attempts in flight in every worker (kept by the core, given back when a
 * worker dies).  Instances that tie are chosen among at random, in
 * proportion to their weights, so that workers do not all start on the
 * first one and an idle service is spread by weight.  No lock: the counts
 * are read with plain loads and may be a request or two behind.
 */


static ngx_int_t ngx_http_gateway_least_request_select(
    ngx_http_gateway_select_t *sel);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_least_request = {
    ngx_string("least_request"),
    0,
    0,
    1,
    NULL,
    NULL,
    ngx_http_gateway_least_request_select,
    NULL,
    NULL,
    0,
    0,
    0
};


static ngx_int_t
ngx_http_gateway_least_request_select(ngx_http_gateway_select_t *sel)
{
    ngx_int_t                     best;
    ngx_uint_t                    i, w, bw, total;
    ngx_atomic_uint_t             a, ba;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    best = NGX_DECLINED;
    ba = 0;
    bw = 1;
    total = 0;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        if (!ngx_http_gateway_eligible(sel, peer)) {
            continue;
        }

        w = ngx_http_gateway_peer_weight(sel, peer);
        if (w == 0) {
            continue;
        }

        a = ngx_http_gateway_active(peer->inst);

        /* a / w < ba / bw, without a division */

        if (best == NGX_DECLINED || a * bw < ba * w) {
            best = (ngx_int_t) i;
            ba = a;
            bw = w;
            total = w;
            continue;
        }

        if (a * bw == ba * w) {

            /* a weighted reservoir of one over the tied instances */

            total += w;

            if ((ngx_uint_t) ngx_random() % total < w) {
                best = (ngx_int_t) i;
                ba = a;
                bw = w;
            }
        }
    }

    return best;
}
