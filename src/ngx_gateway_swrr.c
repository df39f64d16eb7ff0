
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
    int                  total;
    size_t               i;
    ssize_t              best;
    ngx_gateway_swrr_t  *p, *b;

    total = 0;
    best = -1;
    b = NULL;

    for (i = 0; i < n; i++) {
        p = peer(ctx, i);

        if (p == NULL) {
            continue;
        }

        p->current_weight += p->weight;
        total += p->weight;

        if (b == NULL || p->current_weight > b->current_weight) {
            b = p;
            best = (ssize_t) i;
        }
    }

    if (b != NULL) {
        b->current_weight -= total;
    }

    return best;
}


void
ngx_gateway_swrr_reset(ngx_gateway_swrr_t *p, int weight)
{
    p->weight = weight;
    p->current_weight = 0;
}
