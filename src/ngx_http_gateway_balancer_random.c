
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
    ngx_uint_t                    i, total, r;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    total = 0;

    for (i = 0; i < snap->npeers; i++) {
        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            total += snap->peers[i].weight;
        }
    }

    if (total == 0) {
        return NGX_DECLINED;
    }

    r = (ngx_uint_t) ngx_random() % total;

    for (i = 0; i < snap->npeers; i++) {
        if (!ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            continue;
        }

        if (r < snap->peers[i].weight) {
            return (ngx_int_t) i;
        }

        r -= snap->peers[i].weight;
    }

    return NGX_DECLINED;
}
