
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Weighted round robin shared by all workers without a lock: a request
 * takes the service's next ticket (one atomic add) and the snapshot maps
 * it to an instance (ngx_gateway_rr_position(): every cycle of "total"
 * tickets gives each up instance exactly its weight, interleaved).  A
 * ticket that lands on an instance the request may not use is given up
 * for the next one a few times, then the peers are scanned from there.
 */


#define NGX_HTTP_GATEWAY_RR_TICKETS  4


typedef struct {
    ngx_atomic_t                  ticket;
} ngx_http_gateway_rr_service_t;


static void ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap);
static ngx_uint_t ngx_http_gateway_rr_find(ngx_http_gateway_snapshot_t *snap,
    ngx_uint_t pos);
static ngx_int_t ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel);
static ngx_int_t ngx_http_gateway_rr_tickets(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_rr_service_t *rs, uint64_t t) NGX_HTTP_GATEWAY_NOINLINE;


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_round_robin = {
    ngx_string("round_robin"),
    0,
    sizeof(ngx_http_gateway_rr_service_t),
    NULL,
    ngx_http_gateway_rr_update,
    ngx_http_gateway_rr_select,
    NULL,
    NULL,
    0,
    0,
    0
};


/*
 * A small cycle is mapped once here, so that a pick is one table read: the
 * positions go peer after peer, and position p is ticket p x inverse of
 * the stride, so one pass over them fills the table.
 */

static void
ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap)
{
    ngx_uint_t  i, k, pos, inv;

    snap->stride = ngx_gateway_rr_stride(snap->total);

    if (snap->order == NULL) {
        return;
    }

    inv = ngx_gateway_rr_inverse(snap->stride, snap->total);

    for (i = 0, pos = 0, k = 0; i < snap->npeers; i++) {
        for ( /* void */ ; pos < snap->peers[i].upto; pos++) {
            snap->order[k] = (uint16_t) i;

            k += inv;
            if (k >= snap->total) {
                k -= snap->total;
            }
        }
    }
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

static ngx_int_t
ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel)
{
    uint64_t                        t;
    ngx_uint_t                      i;
    ngx_http_gateway_snapshot_t    *snap;
    ngx_http_gateway_rr_service_t  *rs;

    snap = sel->snap;

    if (snap->total == 0) {
        return NGX_DECLINED;
    }

    rs = ngx_http_gateway_balancer_service(
                           &ngx_http_gateway_balancer_round_robin,
                           snap->service);

    t = ngx_atomic_fetch_add(&rs->ticket, 1);

    if (snap->order && sel->slow_start == 0 && !sel->narrow) {
        i = snap->order[t % snap->total];

        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            return (ngx_int_t) i;
        }
    }

    return ngx_http_gateway_rr_tickets(sel, rs, t);
}


static ngx_int_t
ngx_http_gateway_rr_tickets(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_rr_service_t *rs, uint64_t t)
{
    ngx_uint_t                    i, k, n, pos, w;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;

    i = 0;

    for (n = 0; n < NGX_HTTP_GATEWAY_RR_TICKETS; n++) {
        if (n) {
            t = ngx_atomic_fetch_add(&rs->ticket, 1);
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
