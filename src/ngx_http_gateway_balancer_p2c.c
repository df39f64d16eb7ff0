
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Power of two choices: two distinct eligible instances drawn at random in
 * proportion to their weights; the one with fewer outstanding requests
 * for its weight (active / weight, all workers) wins, and a tie goes to
 * the first draw, so that an idle service is spread exactly by weight.
 * No lock: the counts are read with plain loads.
 */


static ngx_int_t ngx_http_gateway_p2c_select(ngx_http_gateway_select_t *sel);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_p2c = {
    ngx_string("p2c"),
    0,
    0,
    NULL,
    NULL,
    ngx_http_gateway_p2c_select,
    NULL,
    NULL,
    0,
    0,
    0
};


static ngx_int_t
ngx_http_gateway_p2c_select(ngx_http_gateway_select_t *sel)
{
    ngx_int_t                     one, two;
    ngx_uint_t                    total, n, w1, w2;
    ngx_atomic_uint_t             a1, a2;
    ngx_http_gateway_peer_t      *p1, *p2;

    total = ngx_http_gateway_weighted_total(sel, &n);

    if (total == 0) {
        return NGX_DECLINED;
    }

    one = ngx_http_gateway_weighted_draw(sel, total, -1);

    if (n == 1 || one == NGX_DECLINED) {
        return one;
    }

    p1 = &sel->snap->peers[one];
    w1 = ngx_http_gateway_peer_weight(sel, p1);

    two = ngx_http_gateway_weighted_draw(sel, total - w1, one);

    if (two == NGX_DECLINED) {
        return one;
    }

    p2 = &sel->snap->peers[two];
    w2 = ngx_http_gateway_peer_weight(sel, p2);

    a1 = p1->inst->stats.active;
    a2 = p2->inst->stats.active;

    /* a2 / w2 < a1 / w1, without a division */

    return a2 * w1 < a1 * w2 ? two : one;
}
