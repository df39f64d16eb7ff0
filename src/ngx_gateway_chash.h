
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_CHASH_H_INCLUDED_
#define _NGX_GATEWAY_CHASH_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <math.h>


/*
 * Consistent hashing over a service's instances: a ketama ring, a Maglev
 * lookup table and weighted rendezvous.  Plain C over caller buffers; the
 * caller hashes the bytes (an instance's id, a request's key) with CRC32
 * and gives the 32-bit values; everything here is integer mixing of them.
 */

typedef struct {
    uint32_t   id;          /* CRC32 of the instance's id */
    uint32_t   weight;      /* 1.. */
} ngx_gateway_chash_peer_t;


/* two 32-bit values to one, every input bit reaching every output bit */

static inline uint32_t
ngx_gateway_chash_mix(uint32_t a, uint32_t b)
{
    uint64_t  x;

    x = ((uint64_t) a << 32) | b;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;

    return (uint32_t) x;
}


/*
 * Ketama: every instance has NGX_GATEWAY_KETAMA_POINTS points on a 32-bit
 * ring per unit of weight (a ring of more than NGX_GATEWAY_KETAMA_MAX
 * points is scaled down, at least one point each); a key belongs to the
 * first point at or after its hash.  Point j of an instance is
 * mix(id, j): it does not depend on the other instances.  An instance has
 * ngx_gateway_ketama_count(its weight, the sum of all weights) points.
 */

#define NGX_GATEWAY_KETAMA_POINTS  2048
#define NGX_GATEWAY_KETAMA_MAX     (1 << 18)

typedef struct {
    uint32_t   hash;
    uint32_t   peer;        /* index into the caller's peers */
} ngx_gateway_ketama_point_t;

size_t ngx_gateway_ketama_count(uint32_t weight, uint64_t total);
size_t ngx_gateway_ketama_npoints(const ngx_gateway_chash_peer_t *peers,
    size_t n);
size_t ngx_gateway_ketama_build(const ngx_gateway_chash_peer_t *peers,
    size_t n, ngx_gateway_ketama_point_t *points);
size_t ngx_gateway_ketama_find(const ngx_gateway_ketama_point_t *points,
    size_t npoints, uint32_t key);


/*
 * Maglev (Eisenbud et al., NSDI 2016): a lookup table of a prime number
 * of slots, each instance filling the free slot next in its own
 * permutation (offset, skip from its id) in turns, weighted as Envoy does
 * it: an instance takes a turn in a round when round * weight has reached
 * its target, which then grows by the largest weight.
 */

#define NGX_GATEWAY_MAGLEV_SIZE    65537

typedef struct {
    uint32_t   pos;
    uint32_t   skip;
    uint64_t   target;
} ngx_gateway_maglev_fill_t;

/* table: NGX_GATEWAY_MAGLEV_SIZE entries; fill: n entries of scratch */
void ngx_gateway_maglev_build(const ngx_gateway_chash_peer_t *peers,
    size_t n, uint32_t *table, ngx_gateway_maglev_fill_t *fill);

static inline size_t
ngx_gateway_maglev_slot(uint32_t key)
{
    return ngx_gateway_chash_mix(key, 0x6d61676c) % NGX_GATEWAY_MAGLEV_SIZE;
}


/*
 * Weighted rendezvous (highest random weight): each instance scores
 * weight / -ln(u), u uniform in (0, 1) from mix(key, id); the highest
 * wins.  Removing an instance moves only its keys, adding one takes only
 * its share, and shares follow the weights exactly in expectation.
 */

static inline double
ngx_gateway_hrw_score(uint32_t h, uint32_t weight)
{
    double  u;

    u = ((double) h + 0.5) / 4294967296.0;

    return (double) weight / -log(u);
}


/*
 * Whether an instance of hash h = mix(key, id) and weight w beats the best
 * so far.  The score grows with u, so between equal weights the hashes
 * decide without a logarithm: the same order, at a fraction of the cost
 * (a service of equal weights never calls log()).
 */

static inline int
ngx_gateway_hrw_better(uint32_t h, uint32_t w, uint32_t top_h,
    uint32_t top_w)
{
    if (w == top_w && w != 0) {
        return h > top_h;
    }

    return ngx_gateway_hrw_score(h, w) > ngx_gateway_hrw_score(top_h, top_w);
}


#endif /* _NGX_GATEWAY_CHASH_H_INCLUDED_ */
