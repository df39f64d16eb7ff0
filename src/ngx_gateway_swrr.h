
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_SWRR_H_INCLUDED_
#define _NGX_GATEWAY_SWRR_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/* smooth weighted round robin, as nginx's round robin balancer does it */

typedef struct {
    int   weight;
    int   current_weight;
} ngx_gateway_swrr_t;


/*
 * One round over the candidates: offer each eligible one, then choose.
 * Inline: a balancer's loop runs it for every candidate of every request.
 */

typedef struct {
    ngx_gateway_swrr_t  *best;
    ssize_t              index;
    int                  total;
} ngx_gateway_swrr_round_t;


static inline void
ngx_gateway_swrr_round_init(ngx_gateway_swrr_round_t *r)
{
    r->best = NULL;
    r->index = -1;
    r->total = 0;
}


static inline void
ngx_gateway_swrr_offer(ngx_gateway_swrr_round_t *r, ngx_gateway_swrr_t *p,
    size_t i)
{
    p->current_weight += p->weight;
    r->total += p->weight;

    if (r->best == NULL || p->current_weight > r->best->current_weight) {
        r->best = p;
        r->index = (ssize_t) i;
    }
}


/* the index of the chosen candidate, or -1 when none was offered */

static inline ssize_t
ngx_gateway_swrr_choose(ngx_gateway_swrr_round_t *r)
{
    if (r->best != NULL) {
        r->best->current_weight -= r->total;
    }

    return r->index;
}


/* returns the i-th candidate, or NULL when it must not be chosen */
typedef ngx_gateway_swrr_t *(*ngx_gateway_swrr_peer_pt)(void *ctx, size_t i);


/* index of the chosen candidate among n, or -1 when none is eligible */
ssize_t ngx_gateway_swrr_select(size_t n, ngx_gateway_swrr_peer_pt peer,
    void *ctx);
void ngx_gateway_swrr_reset(ngx_gateway_swrr_t *p, int weight);


/*
 * Round robin by tickets, shared by all workers without a lock: the k-th
 * ticket of a service lands on position (k * stride) mod total of its up
 * weights laid end to end, and the instance whose range holds the position
 * is the pick.  The stride is coprime to the total, so every cycle of
 * total tickets visits each position once: each instance gets exactly its
 * weight per cycle.  A stride near total / phi (a golden ratio, Weyl
 * sequence) spreads an instance's positions, so its picks are interleaved
 * with the others'.
 */

unsigned long ngx_gateway_rr_stride(unsigned long total);

/* the ticket of position 1 in a cycle: position p is ticket p x it */
unsigned long ngx_gateway_rr_inverse(unsigned long stride,
    unsigned long total);


static inline unsigned long
ngx_gateway_rr_position(uint64_t ticket, unsigned long total,
    unsigned long stride)
{
    return (unsigned long) ((ticket % total) * stride % total);
}


/*
 * Whether pick number k (0 <= k < weight) of an instance in ticket cycle c
 * is taken when the instance is to get "part" of its weight x "scale"
 * picks: exactly that share of its picks over the cycles, spread by a
 * golden ratio dither rather than a random number.
 */

static inline int
ngx_gateway_rr_accept(uint64_t cycle, unsigned long k, unsigned long part,
    unsigned long scale)
{
    uint64_t  dither;

    /* in [0, scale), evenly spread over consecutive cycles */

    dither = ((uint64_t) (uint32_t) (cycle * 2654435769u) * scale) >> 32;

    return (uint64_t) k * scale + dither < part;
}


#endif /* _NGX_GATEWAY_SWRR_H_INCLUDED_ */
