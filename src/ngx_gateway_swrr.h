
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

/*
 * The cycle written out: order[k] is the peer of ticket k, for the n
 * peers whose ranges end at upto(ctx, i) (non-decreasing, the last total).
 * One pass over the positions: position p is ticket p x inverse.
 */
typedef unsigned long (*ngx_gateway_rr_upto_pt)(void *ctx, size_t i);

void ngx_gateway_rr_order(uint16_t *order, unsigned long total,
    unsigned long stride, size_t n, ngx_gateway_rr_upto_pt upto, void *ctx);


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


/*
 * A worker's block of a service's tickets, [next, end): a worker that
 * selects the service rarely takes one ticket at a time (as many workers
 * taking one ticket each give an exact split); one that takes
 * NGX_GATEWAY_RR_HOT tickets of it within one millisecond (about 16,000
 * selections a second) takes blocks instead, one shared write for many
 * selections.  A block doubles, up to NGX_GATEWAY_RR_BLOCK_MAX, while
 * blocks are used up within the millisecond the last one was taken in,
 * halves when one lasted into the next millisecond and is back to one
 * ticket after a longer pause.  A worker holds at most
 * NGX_GATEWAY_RR_BLOCK_MAX - 1 unused tickets of a service.
 */

#define NGX_GATEWAY_RR_HOT        16
#define NGX_GATEWAY_RR_BLOCK_MAX  64

typedef struct {
    uint64_t   next;
    uint64_t   end;
    uint64_t   msec;        /* when a ticket was last taken */
    uint32_t   taken;       /* tickets taken in that millisecond */
    uint32_t   size;        /* of the next block, 0: 1 */
} ngx_gateway_rr_block_t;


/* how many tickets to take now, when the block is used up */

static inline uint32_t
ngx_gateway_rr_block_size(ngx_gateway_rr_block_t *b, uint64_t now)
{
    if (now != b->msec) {
        b->size = (now - b->msec == 1) ? b->size / 2 : 1;
        b->msec = now;
        b->taken = 0;

    } else if (b->taken >= NGX_GATEWAY_RR_HOT
               && b->size < NGX_GATEWAY_RR_BLOCK_MAX)
    {
        b->size *= 2;
    }

    if (b->size == 0) {
        b->size = 1;
    }

    b->taken += b->size;

    return b->size;
}


/* a block of n tickets from t on was taken: returns its first */

static inline uint64_t
ngx_gateway_rr_block_set(ngx_gateway_rr_block_t *b, uint64_t t, uint32_t n)
{
    b->next = t + 1;
    b->end = t + n;

    return t;
}


#endif /* _NGX_GATEWAY_SWRR_H_INCLUDED_ */
