
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_


#include "ngx_http_gateway.h"


/*
 * A balancing algorithm, one file each, behind one table of callbacks.
 * The core (ngx_http_gateway_upstream_module.c) owns what every algorithm
 * shares: the service's snapshot, the eligibility filters (state, already
 * tried, expired) and the attempt lifecycle.  An algorithm only chooses.
 */

typedef struct {
    ngx_http_gateway_snapshot_t    *snap;
    void                           *conf;       /* the algorithm's */
    ngx_http_request_t             *request;

    /* the core's filter: see ngx_http_gateway_eligible() */
    uint64_t                       *tried;      /* uids */
    ngx_uint_t                      ntried;
    ngx_uint_t                      expiry;     /* heartbeats expire here */
} ngx_http_gateway_select_t;


/*
 * Whether a request may use a peer: it is up, its heartbeat has not
 * expired (embedded registry), and the request has not tried it yet.  The
 * core's filter, inline because every algorithm asks it for every peer.
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_eligible(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_peer_t *peer)
{
    ngx_uint_t  i;
    ngx_msec_t  expires;

    if (peer->state != NGX_GATEWAY_STATE_UP) {
        return 0;
    }

    if (sel->expiry) {
        expires = peer->inst->expires;

        if (expires && (ngx_msec_int_t) (expires - ngx_current_msec) <= 0) {
            return 0;
        }
    }

    for (i = 0; i < sel->ntried; i++) {
        if (sel->tried[i] == peer->uid) {
            return 0;
        }
    }

    return 1;
}


/*
 * The weight an algorithm gives a peer now.  The one place that scales a
 * weight (slow start); every algorithm that uses weights asks it.
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_peer_weight(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_peer_t *peer)
{
    return peer->weight;
}


typedef struct {
    ngx_str_t                       name;

    /* bytes of the algorithm's state in every instance and service */
    size_t                          instance_size;
    size_t                          service_size;

    /*
     * gateway_balance NAME [PARAMS]: the upstream's conf, or NULL after
     * logging the error; NULL here: the method takes no parameters
     */
    void                         *(*create_conf)(ngx_conf_t *cf,
                                        ngx_str_t *params, ngx_uint_t n);

    /* a new snapshot is about to be published (zone lock held) */
    void                          (*update)(ngx_http_gateway_snapshot_t *snap);

    /* an index into sel->snap->peers of an eligible peer, or NGX_DECLINED */
    ngx_int_t                     (*select)(ngx_http_gateway_select_t *sel);

    /*
     * A table derived from every snapshot (a hash ring), in the zone with
     * it, built at the commit point (zone lock held) and freed with it.
     * "used" is what upstreams asked for with ngx_http_gateway_balancer_use()
     * (the method's own bits): no upstream, no table.  table_size() gives
     * the bytes for the snapshot (0: none); table_build() fills them.  A
     * full zone leaves the snapshot without it: select() must then do
     * without (ngx_http_gateway_balancer_table() is NULL).
     */
    size_t                        (*table_size)(
                                        ngx_http_gateway_snapshot_t *snap,
                                        ngx_uint_t used);
    void                          (*table_build)(
                                        ngx_http_gateway_snapshot_t *snap,
                                        void *table, ngx_uint_t used);

    /* set by the core */
    size_t                          instance_offset;
    size_t                          service_offset;
    ngx_uint_t                      index;
} ngx_http_gateway_balancer_t;


/* bits of ngx_http_gateway_balancer_use() per method, in a uint64_t */
#define NGX_HTTP_GATEWAY_TABLE_BITS  4
#define NGX_HTTP_GATEWAY_TABLE_MASK  ((1 << NGX_HTTP_GATEWAY_TABLE_BITS) - 1)


extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_round_robin;
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_random;
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_hash;

extern ngx_http_gateway_balancer_t *ngx_http_gateway_balancers[];


#define ngx_http_gateway_balancer_instance(b, inst)                           \
    ((void *) ((u_char *) (inst)->lb + (b)->instance_offset))

#define ngx_http_gateway_balancer_service(b, svc)                             \
    ((void *) ((u_char *) (svc)->lb + (b)->service_offset))

/* the method's table of a snapshot, NULL: none (not used, zone full) */
#define ngx_http_gateway_balancer_table(b, snap)                              \
    ((snap)->tables ? (snap)->tables[(b)->index] : NULL)


ngx_http_gateway_balancer_t *ngx_http_gateway_balancer_find(ngx_str_t *name);
void *ngx_http_gateway_balancer_create_conf(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_str_t *params, ngx_uint_t n);
void ngx_http_gateway_balancer_use(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_uint_t used);


#endif /* _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_ */
