
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Weighted round robin shared by all workers without a lock: a request
 * takes the service's next ticket and the snapshot maps it to an instance
 * (ngx_gateway_rr_position(): every cycle of "total" tickets gives each
 * up instance exactly its weight, interleaved).  A ticket that lands on
 * an instance the request may not use is given up for the next one a few
 * times, then the peers are scanned from there.
 *
 * A ticket is one atomic add on the service's counter, unless the worker
 * selects often: it looks at its clock once every NGX_HTTP_GATEWAY_RR_LOOK
 * selections (once per selection would cost every request instructions),
 * and when they were all within one millisecond (64,000 selections a
 * second) it is busy: it looks its services up in a table of its own,
 * where a service it takes NGX_GATEWAY_RR_HOT tickets of within a
 * millisecond gets blocks of them (ngx_gateway_rr_block_size()), so that
 * its selections seldom write the counter's line, which would otherwise
 * move between the CPUs at every selection.  At every tick, a block that
 * is still the service's latest gives its unused tickets back; the others
 * are kept for the worker's next selections of the service.  The worker
 * is no longer busy after a tick with fewer than NGX_HTTP_GATEWAY_RR_BUSY
 * selections (10,000 a second) when it holds no tickets.
 */


#define NGX_HTTP_GATEWAY_RR_TICKETS  4
#define NGX_HTTP_GATEWAY_RR_LOOK     64         /* selections */

#define NGX_HTTP_GATEWAY_RR_BITS     6          /* 64 services */
#define NGX_HTTP_GATEWAY_RR_BUSY     1000       /* selections per tick */
#define NGX_HTTP_GATEWAY_RR_KEEP     1000       /* ms: an unused block's
                                                   place is not taken */


typedef struct {
    ngx_atomic_t                  ticket;
} ngx_http_gateway_rr_service_t;


/* a service's tickets in this worker, keyed by the service and its uid */

typedef struct {
    ngx_http_gateway_service_t   *svc;
    uint64_t                      uid;
    uint32_t                      key;      /* its name index chain */
    ngx_gateway_rr_block_t        block;
} ngx_http_gateway_rr_entry_t;


static void ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap);
static unsigned long ngx_http_gateway_rr_upto(void *ctx, size_t i);
static ngx_uint_t ngx_http_gateway_rr_find(ngx_http_gateway_snapshot_t *snap,
    ngx_uint_t pos);
static ngx_int_t ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel);
static ngx_int_t ngx_http_gateway_rr_select_busy(
    ngx_http_gateway_select_t *sel) NGX_HTTP_GATEWAY_NOINLINE;
static uint64_t ngx_http_gateway_rr_look(ngx_http_gateway_service_t *svc)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_inline uint64_t ngx_http_gateway_rr_take(
    ngx_http_gateway_service_t *svc, uint32_t n);
static uint64_t ngx_http_gateway_rr_block(ngx_http_gateway_service_t *svc)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_int_t ngx_http_gateway_rr_tickets(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_snapshot_t *snap, uint64_t t) NGX_HTTP_GATEWAY_NOINLINE;
static ngx_http_gateway_rr_service_t *ngx_http_gateway_rr_live_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_rr_entry_t *e);


/*
 * Selections before the next look at the clock (below 0 while the worker
 * is busy), the millisecond of that look, whether the worker is busy and
 * how many selections it made from its table since the tick
 */
static ngx_int_t   ngx_http_gateway_rr_quiet = NGX_HTTP_GATEWAY_RR_LOOK;
static ngx_msec_t  ngx_http_gateway_rr_msec;
static ngx_uint_t  ngx_http_gateway_rr_busy;
static ngx_uint_t  ngx_http_gateway_rr_selected;

static ngx_http_gateway_rr_entry_t
    ngx_http_gateway_rr_entries[1 << NGX_HTTP_GATEWAY_RR_BITS];


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_round_robin = {
    ngx_string("round_robin"),
    0,
    sizeof(ngx_http_gateway_rr_service_t),
    0,
    NULL,
    ngx_http_gateway_rr_update,
    ngx_http_gateway_rr_select,
    NULL,
    NULL,
    0,
    0,
    0
};


/* a small cycle is mapped once here, so that a pick is one table read */

static void
ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap)
{
    snap->stride = ngx_gateway_rr_stride(snap->total);

    if (snap->order) {
        ngx_gateway_rr_order(snap->order, snap->total, snap->stride,
                             snap->npeers, ngx_http_gateway_rr_upto, snap);
    }
}


static unsigned long
ngx_http_gateway_rr_upto(void *ctx, size_t i)
{
    ngx_http_gateway_snapshot_t *snap = ctx;

    return snap->peers[i].upto;
}


/* the peer whose range of up weights holds pos: the first with upto > pos */

static ngx_uint_t
ngx_http_gateway_rr_find(ngx_http_gateway_snapshot_t *snap, ngx_uint_t pos)
{
    ngx_uint_t  lo, hi, mid;

    lo = 0;
    hi = snap->npeers - 1;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (snap->peers[mid].upto > pos) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return lo;
}


/*
 * The common case, a small cycle without slow start, backups or a zone
 * (the filter's zone test calls memcmp()), whose ticket's peer the
 * request may use, in a function without a frame; the rest is
 * rr_tickets(), from the same ticket.
 */

static ngx_inline ngx_int_t
ngx_http_gateway_rr_pick(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_snapshot_t *snap, uint64_t t)
{
    ngx_uint_t  i;

    /* an order: the total is not 0 */

    if (snap->order && sel->slow_start == 0 && !sel->narrow) {
        i = snap->order[t % snap->total];

        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            return (ngx_int_t) i;
        }
    }

    return ngx_http_gateway_rr_tickets(sel, snap, t);
}


/* what rr_next() does, with the rest out of line */

static ngx_int_t
ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel)
{
    ngx_http_gateway_snapshot_t  *snap;

    if (--ngx_http_gateway_rr_quiet < 0) {
        return ngx_http_gateway_rr_select_busy(sel);
    }

    snap = sel->snap;

    return ngx_http_gateway_rr_pick(sel, snap,
                                    ngx_http_gateway_rr_take(snap->service,
                                                             1));
}


/* n tickets from the service's counter: the first of them */

static ngx_inline uint64_t
ngx_http_gateway_rr_take(ngx_http_gateway_service_t *svc, uint32_t n)
{
    ngx_http_gateway_rr_service_t  *rs;

    rs = ngx_http_gateway_balancer_service(
                           &ngx_http_gateway_balancer_round_robin, svc);

    return ngx_atomic_fetch_add(&rs->ticket, n);
}


/*
 * NGX_HTTP_GATEWAY_RR_LOOK selections since the last look at the clock:
 * the worker is busy if they were all within this millisecond
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_rr_now_busy(void)
{
    ngx_msec_t  now;

    if (ngx_http_gateway_rr_busy) {
        return 1;
    }

    now = ngx_current_msec;

    if (ngx_http_gateway_rr_msec != now) {
        ngx_http_gateway_rr_msec = now;
        ngx_http_gateway_rr_quiet = NGX_HTTP_GATEWAY_RR_LOOK;
        return 0;
    }

    ngx_http_gateway_rr_busy = 1;

    return 1;
}


static ngx_int_t
ngx_http_gateway_rr_select_busy(ngx_http_gateway_select_t *sel)
{
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;

    return ngx_http_gateway_rr_pick(sel, snap,
                                    ngx_http_gateway_rr_look(snap->service));
}


/* the worker's next ticket of a service: the one way to take one */

static ngx_inline uint64_t
ngx_http_gateway_rr_next(ngx_http_gateway_service_t *svc)
{
    if (--ngx_http_gateway_rr_quiet < 0) {
        return ngx_http_gateway_rr_look(svc);
    }

    return ngx_http_gateway_rr_take(svc, 1);
}


/* a ticket after a look at the clock: from a block if the worker is busy */

static uint64_t
ngx_http_gateway_rr_look(ngx_http_gateway_service_t *svc)
{
    if (ngx_http_gateway_rr_now_busy()) {
        return ngx_http_gateway_rr_block(svc);
    }

    return ngx_http_gateway_rr_take(svc, 1);
}


/* a busy worker's next ticket of a service, from its block if it has one */

static uint64_t
ngx_http_gateway_rr_block(ngx_http_gateway_service_t *svc)
{
    uint32_t                      n;
    ngx_http_gateway_rr_entry_t  *e;

    ngx_http_gateway_rr_selected++;

    /* a golden ratio hash: services are aligned slab chunks */

    e = &ngx_http_gateway_rr_entries[((uint64_t) (uintptr_t) svc
                                      * 0x9e3779b97f4a7c15)
                                     >> (64 - NGX_HTTP_GATEWAY_RR_BITS)];

    if (e->svc != svc || e->uid != svc->uid) {

        if (e->block.next != e->block.end
            && ngx_current_msec - e->block.msec < NGX_HTTP_GATEWAY_RR_KEEP)
        {
            /* the place is another service's, still in use */
            return ngx_http_gateway_rr_take(svc, 1);
        }

        /* an old block of a service the worker no longer selects is lost */

        e->svc = svc;
        e->uid = svc->uid;
        e->key = (uint32_t) svc->sn.node.key;
        ngx_memzero(&e->block, sizeof(ngx_gateway_rr_block_t));
    }

    if (e->block.next != e->block.end) {
        return e->block.next++;
    }

    n = ngx_gateway_rr_block_size(&e->block, ngx_current_msec);

    return ngx_gateway_rr_block_set(&e->block,
                                    ngx_http_gateway_rr_take(svc, n), n);
}


/* t: the first ticket (a service without up instances may take one) */

static ngx_int_t
ngx_http_gateway_rr_tickets(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_snapshot_t *snap, uint64_t t)
{
    ngx_uint_t                i, k, n, pos, w;
    ngx_http_gateway_peer_t  *peer;

    if (snap->total == 0) {
        return NGX_DECLINED;
    }

    i = 0;

    for (n = 0; n < NGX_HTTP_GATEWAY_RR_TICKETS; n++) {
        if (n) {
            t = ngx_http_gateway_rr_next(snap->service);
        }

        if (snap->order) {
            i = snap->order[t % snap->total];

        } else {
            i = ngx_http_gateway_rr_find(snap,
                    ngx_gateway_rr_position(t, snap->total, snap->stride));
        }

        peer = &snap->peers[i];

        if (!ngx_http_gateway_eligible(sel, peer)) {
            continue;
        }

        if (sel->slow_start == 0) {
            return (ngx_int_t) i;
        }

        /* slow start: the part of its picks that its ramp allows */

        w = ngx_http_gateway_peer_weight(sel, peer);
        pos = ngx_gateway_rr_position(t, snap->total, snap->stride);
        k = pos - (peer->upto - peer->weight);

        if (w == peer->weight * NGX_HTTP_GATEWAY_WEIGHT_SCALE
            || ngx_gateway_rr_accept(t / snap->total, k, w,
                                     NGX_HTTP_GATEWAY_WEIGHT_SCALE))
        {
            return (ngx_int_t) i;
        }
    }

    /* the last ticket's instance or the next one the request may use */

    for (k = 0; k < snap->npeers; k++) {
        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            return (ngx_int_t) i;
        }

        i = (i + 1 == snap->npeers) ? 0 : i + 1;
    }

    return NGX_DECLINED;
}


/*
 * Every tick: a block that is still its service's latest (nobody took a
 * ticket since) gives its unused tickets back with one compare-and-set;
 * the worker stays busy while it selects often or holds tickets.  The
 * zone mutex is held: a service found in the name index is not freed
 * meanwhile.
 */

void
ngx_http_gateway_rr_tick_locked(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                      i, held;
    ngx_http_gateway_rr_entry_t    *e;
    ngx_http_gateway_rr_service_t  *rs;

    /* only a busy worker has blocks */

    if (!ngx_http_gateway_rr_busy) {
        return;
    }

    held = 0;

    for (i = 0; i < (1 << NGX_HTTP_GATEWAY_RR_BITS); i++) {
        e = &ngx_http_gateway_rr_entries[i];

        if (e->block.next == e->block.end) {
            continue;
        }

        rs = ngx_http_gateway_rr_live_locked(gmcf, e);

        if (rs == NULL) {
            ngx_memzero(e, sizeof(ngx_http_gateway_rr_entry_t));
            continue;
        }

        if (ngx_atomic_cmp_set(&rs->ticket, e->block.end, e->block.next)) {
            e->block.end = e->block.next;
            e->block.size = 1;
            continue;
        }

        held = 1;
    }

    if (!held && ngx_http_gateway_rr_selected < NGX_HTTP_GATEWAY_RR_BUSY)
    {
        ngx_http_gateway_rr_busy = 0;
        ngx_http_gateway_rr_quiet = NGX_HTTP_GATEWAY_RR_LOOK;
    }

    ngx_http_gateway_rr_selected = 0;
}


/* the entry's service, if it still exists: it is in the name index */

static ngx_http_gateway_rr_service_t *
ngx_http_gateway_rr_live_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_rr_entry_t *e)
{
    ngx_http_gateway_service_t  *svc;

    for (svc = gmcf->sh->index[e->key & (gmcf->sh->nindex - 1)];
         svc;
         svc = svc->hnext)
    {
        if (svc == e->svc) {
            return (svc->uid == e->uid)
                   ? ngx_http_gateway_balancer_service(
                         &ngx_http_gateway_balancer_round_robin, svc)
                   : NULL;
        }
    }

    return NULL;
}
