
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_gateway_swrr.h"


/*
 * nginx's smooth weighted round robin with the weights as they are: nginx
 * also lowers a peer's effective weight on failures, the gateway does not
 * (failed attempts are retried elsewhere), so its effective weight is its
 * weight.
 */

ssize_t
ngx_gateway_swrr_select(size_t n, ngx_gateway_swrr_peer_pt peer, void *ctx)
{
    size_t                     i;
    ngx_gateway_swrr_t        *p;
    ngx_gateway_swrr_round_t   r;

    ngx_gateway_swrr_round_init(&r);

    for (i = 0; i < n; i++) {
        p = peer(ctx, i);

        if (p != NULL) {
            ngx_gateway_swrr_offer(&r, p, i);
        }
    }

    return ngx_gateway_swrr_choose(&r);
}


void
ngx_gateway_swrr_reset(ngx_gateway_swrr_t *p, int weight)
{
    p->weight = weight;
    p->current_weight = 0;
}
