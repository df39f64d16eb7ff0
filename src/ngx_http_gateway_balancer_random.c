
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
    ngx_uint_t  total, n;

    total = ngx_http_gateway_weighted_total(sel, &n);

    return ngx_http_gateway_weighted_draw(sel, total, -1);
}
