
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * Smooth weighted round robin over the service's instances, shared by all
 * workers: its state is in the instances, under the service's own lock,
 * held for one pass over the instances.
 */


static void ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_round_robin = {
    ngx_string("round_robin"),
    sizeof(ngx_gateway_swrr_t),
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


/* a new instance or a new weight starts afresh, as in nginx */

static void
ngx_http_gateway_rr_update(ngx_http_gateway_snapshot_t *snap)
{
    ngx_uint_t                i;
    ngx_gateway_swrr_t       *rr;
    ngx_http_gateway_peer_t  *peer;

    ngx_spinlock(&snap->service->lock, ngx_pid, 1024);

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];
        rr = ngx_http_gateway_balancer_instance(
                            &ngx_http_gateway_balancer_round_robin, peer->inst);

        if (rr->weight != (int) peer->weight) {
            ngx_gateway_swrr_reset(rr, (int) peer->weight);
        }
    }

    ngx_memory_barrier();
    ngx_unlock(&snap->service->lock);
}


static ngx_int_t
ngx_http_gateway_rr_select(ngx_http_gateway_select_t *sel)
{
    ssize_t                       i;
    ngx_uint_t                    k;
    ngx_http_gateway_peer_t      *peer;
    ngx_gateway_swrr_round_t      r;
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    svc = snap->service;

    ngx_gateway_swrr_round_init(&r);

    ngx_spinlock(&svc->lock, ngx_pid, 1024);

    for (k = 0; k < snap->npeers; k++) {
        peer = &snap->peers[k];

        if (ngx_http_gateway_eligible(sel, peer)) {
            ngx_gateway_swrr_offer(&r, ngx_http_gateway_balancer_instance(
                                       &ngx_http_gateway_balancer_round_robin,
                                       peer->inst),
                                   k);
        }
    }

    i = ngx_gateway_swrr_choose(&r);

    ngx_memory_barrier();
    ngx_unlock(&svc->lock);

    return i < 0 ? NGX_DECLINED : (ngx_int_t) i;
}
