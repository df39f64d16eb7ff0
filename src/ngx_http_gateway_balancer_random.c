
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Weighted random: each eligible instance is chosen with a probability
 * proportional to its weight.  No shared state, no lock.
 */


static ngx_int_t ngx_http_gateway_random_select(
    ngx_http_gateway_select_t *sel);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_random = {
    ngx_string("random"),
    0,
    0,
    NULL,
    NULL,
    ngx_http_gateway_random_select,
    NULL,
    NULL,
    0,
    0,
    0
};


static ngx_int_t
ngx_http_gateway_random_select(ngx_http_gateway_select_t *sel)
{
    ngx_uint_t                    i, total, r, w;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    total = 0;

    for (i = 0; i < snap->npeers; i++) {
        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            total += ngx_http_gateway_peer_weight(sel, &snap->peers[i]);
        }
    }

    if (total == 0) {
        return NGX_DECLINED;
    }

    /* large services' totals pass the 31 bits of one ngx_random() */

    if (total <= 0x7fffffff) {
        r = (ngx_uint_t) ngx_random() % total;

    } else {
        r = (((uint64_t) ngx_random() << 31) | (uint64_t) ngx_random())
            % total;
    }

    for (i = 0; i < snap->npeers; i++) {
        if (!ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            continue;
        }

        w = ngx_http_gateway_peer_weight(sel, &snap->peers[i]);

        if (r < w) {
            return (ngx_int_t) i;
        }

        r -= w;
    }

    return NGX_DECLINED;
}
