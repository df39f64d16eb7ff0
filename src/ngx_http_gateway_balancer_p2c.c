
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
    1,
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
    ngx_int_t          one, two;
    ngx_uint_t         w1, w2;
    ngx_atomic_uint_t  a1, a2;

    one = ngx_http_gateway_weighted_pair(sel, &two, &w1, &w2);

    if (two == NGX_DECLINED) {
        return one;
    }

    a1 = ngx_http_gateway_active(sel->snap->peers[one].inst);
    a2 = ngx_http_gateway_active(sel->snap->peers[two].inst);

    /* a2 / w2 < a1 / w1, without a division */

    return a2 * w1 < a1 * w2 ? two : one;
}
