
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdlib.h>

#include "ngx_gateway_chash.h"


static uint64_t ngx_gateway_ketama_total(const ngx_gateway_chash_peer_t *peers,
    size_t n);
static int ngx_gateway_ketama_cmp(const void *one, const void *two);


size_t
ngx_gateway_ketama_count(uint32_t weight, uint64_t total)
{
    uint64_t  k;

    k = (uint64_t) NGX_GATEWAY_KETAMA_POINTS * weight;
    total *= NGX_GATEWAY_KETAMA_POINTS;

    if (total > NGX_GATEWAY_KETAMA_MAX) {
        k = k * NGX_GATEWAY_KETAMA_MAX / total;

        if (k == 0) {
            k = 1;
        }
    }

    return (size_t) k;
}


static uint64_t
ngx_gateway_ketama_total(const ngx_gateway_chash_peer_t *peers, size_t n)
{
    size_t    i;
    uint64_t  total;

    total = 0;

    for (i = 0; i < n; i++) {
        total += peers[i].weight;
    }

    return total;
}


/* the ring's size: at most NGX_GATEWAY_KETAMA_MAX + n points */

size_t
ngx_gateway_ketama_npoints(const ngx_gateway_chash_peer_t *peers, size_t n)
{
    size_t    i, npoints;
    uint64_t  total;

    total = ngx_gateway_ketama_total(peers, n);
    npoints = 0;

    for (i = 0; i < n; i++) {
        npoints += ngx_gateway_ketama_count(peers[i].weight, total);
    }

    return npoints;
}


/* points: ngx_gateway_ketama_npoints() entries; returns their number */

size_t
ngx_gateway_ketama_build(const ngx_gateway_chash_peer_t *peers, size_t n,
    ngx_gateway_ketama_point_t *points)
{
    size_t    i, j, k, npoints;
    uint64_t  total;

    total = ngx_gateway_ketama_total(peers, n);
    npoints = 0;

    for (i = 0; i < n; i++) {
        k = ngx_gateway_ketama_count(peers[i].weight, total);

        for (j = 0; j < k; j++) {
            points[npoints].hash = ngx_gateway_chash_mix(peers[i].id,
                                                         (uint32_t) j);
            points[npoints].peer = (uint32_t) i;
            npoints++;
        }
    }

    qsort(points, npoints, sizeof(ngx_gateway_ketama_point_t),
          ngx_gateway_ketama_cmp);

    return npoints;
}


/* equal hashes are ordered by the instances' ids: the same in any ring */

static int
ngx_gateway_ketama_cmp(const void *one, const void *two)
{
    const ngx_gateway_ketama_point_t  *a = one, *b = two;

    if (a->hash != b->hash) {
        return a->hash < b->hash ? -1 : 1;
    }

    return (a->peer > b->peer) - (a->peer < b->peer);
}


/* the index of the key's point: the first at or after its hash */

size_t
ngx_gateway_ketama_find(const ngx_gateway_ketama_point_t *points,
    size_t npoints, uint32_t key)
{
    size_t    lo, hi, mid;
    uint32_t  h;

    h = ngx_gateway_chash_mix(key, 0x6b65746d);

    lo = 0;
    hi = npoints;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (points[mid].hash < h) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return lo == npoints ? 0 : lo;
}


void
ngx_gateway_maglev_build(const ngx_gateway_chash_peer_t *peers, size_t n,
    uint32_t *table, ngx_gateway_maglev_fill_t *fill)
{
    size_t     i, filled;
    uint32_t   c;
    uint64_t   round, wmax;

    if (n == 0) {
        return;
    }

    wmax = 0;

    for (i = 0; i < n; i++) {
        fill[i].pos = ngx_gateway_chash_mix(peers[i].id, 1)
                      % NGX_GATEWAY_MAGLEV_SIZE;
        fill[i].skip = ngx_gateway_chash_mix(peers[i].id, 2)
                       % (NGX_GATEWAY_MAGLEV_SIZE - 1) + 1;
        fill[i].target = 0;

        if (peers[i].weight > wmax) {
            wmax = peers[i].weight;
        }
    }

    for (c = 0; c < NGX_GATEWAY_MAGLEV_SIZE; c++) {
        table[c] = UINT32_MAX;
    }

    filled = 0;

    for (round = 1; filled < NGX_GATEWAY_MAGLEV_SIZE; round++) {

        for (i = 0; i < n && filled < NGX_GATEWAY_MAGLEV_SIZE; i++) {

            if (round * peers[i].weight < fill[i].target) {
                continue;
            }

            fill[i].target += wmax;

            /* the next free slot in this instance's permutation */

            c = fill[i].pos;

            while (table[c] != UINT32_MAX) {
                c += fill[i].skip;

                if (c >= NGX_GATEWAY_MAGLEV_SIZE) {
                    c -= NGX_GATEWAY_MAGLEV_SIZE;
                }
            }

            table[c] = (uint32_t) i;
            filled++;

            c += fill[i].skip;
            fill[i].pos = (c >= NGX_GATEWAY_MAGLEV_SIZE)
                          ? c - NGX_GATEWAY_MAGLEV_SIZE : c;
        }
    }
}
