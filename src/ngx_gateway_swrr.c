
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


static unsigned long
ngx_gateway_rr_gcd(unsigned long a, unsigned long b)
{
    unsigned long  t;

    while (b) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}


/* the integer nearest total / phi that is coprime to total (1 for 1 or 2) */

unsigned long
ngx_gateway_rr_stride(unsigned long total)
{
    unsigned long  s, d;

    if (total <= 2) {
        return 1;
    }

    s = (unsigned long) (((uint64_t) total * 2654435769u) >> 32);

    for (d = 0; d < total; d++) {
        if (s + d < total && ngx_gateway_rr_gcd(s + d, total) == 1) {
            return s + d;
        }

        if (s > d && ngx_gateway_rr_gcd(s - d, total) == 1) {
            return s - d;
        }
    }

    return 1;
}


/* stride x inverse = 1 mod total (extended Euclid; stride coprime) */

unsigned long
ngx_gateway_rr_inverse(unsigned long stride, unsigned long total)
{
    long           t, nt, q, x;
    unsigned long  r, nr, y;

    if (total <= 1) {
        return 0;
    }

    t = 0;
    nt = 1;
    r = total;
    nr = stride % total;

    while (nr) {
        q = (long) (r / nr);

        x = t - q * nt;
        t = nt;
        nt = x;

        y = r - (unsigned long) q * nr;
        r = nr;
        nr = y;
    }

    return (unsigned long) (t < 0 ? t + (long) total : t);
}


void
ngx_gateway_rr_order(uint16_t *order, unsigned long total,
    unsigned long stride, size_t n, ngx_gateway_rr_upto_pt upto, void *ctx)
{
    size_t         i;
    unsigned long  k, pos, end, inv;

    inv = ngx_gateway_rr_inverse(stride, total);

    for (i = 0, pos = 0, k = 0; i < n; i++) {
        for (end = upto(ctx, i); pos < end; pos++) {
            order[k] = (uint16_t) i;

            k += inv;
            if (k >= total) {
                k -= total;
            }
        }
    }
}
