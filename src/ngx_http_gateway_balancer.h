
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_


#include "ngx_http_gateway.h"

/* the module's own: see ngx_http_gateway.h */

#if !(NGX_HTTP_GATEWAY_EXPORTED)
#pragma GCC visibility push(hidden)
#endif


extern ngx_module_t  ngx_http_gateway_upstream_module;


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
    ngx_uint_t                      narrow;     /* 0: no backups, no zone */
    ngx_uint_t                      backup;     /* the tier: 1, backups */
    ngx_str_t                      *zone;       /* locality: only this
                                                   zone; NULL: any */

    ngx_msec_t                      slow_start; /* 0: off */
    ngx_uint_t                      unhealthy;  /* health states kept out,
                                                   1 << state */
    ngx_uint_t                      eject;      /* ejected ones are out */
} ngx_http_gateway_select_t;


/*
 * Not ejected, or its time is up and it may get a trial request (which
 * the core claims for the peer the algorithm chose).
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_eject_passes(ngx_http_gateway_instance_t *inst)
{
    ngx_atomic_uint_t  s;

    s = ngx_http_gateway_eject_state(inst->lines->eject.state);

    return s == NGX_HTTP_GATEWAY_EJECT_IN || s == NGX_HTTP_GATEWAY_EJECT_GONE
           || (ngx_msec_int_t) (inst->lines->eject.until - ngx_current_msec)
              <= 0;
}


/*
 * Whether a request may use a peer: it is up, its heartbeat has not
 * expired (embedded registry), its health check (if any) lets it through,
 * it is not ejected (unless the service is in panic), the request has not
 * tried it yet, it is of the tier being chosen from (primaries, or backups
 * when no primary is eligible) and, while locality prefers a zone, in that
 * zone.  The core's filter, inline because every algorithm asks it for
 * every peer.
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

    /* most services have neither: one test per peer then */

    if (sel->narrow) {
        if (peer->backup != sel->backup) {
            return 0;
        }

        if (sel->zone && !ngx_http_gateway_peer_in_zone(peer, sel->zone)) {
            return 0;
        }
    }

    if (sel->expiry) {
        expires = peer->inst->expires;

        if (expires && (ngx_msec_int_t) (expires - ngx_current_msec) <= 0) {
            return 0;
        }
    }

    if (sel->unhealthy
        && ((1 << peer->inst->lines->health.state) & sel->unhealthy))
    {
        return 0;
    }

    if (sel->eject && !ngx_http_gateway_eject_passes(peer->inst)) {
        return 0;
    }

    for (i = 0; i < sel->ntried; i++) {
        if (sel->tried[i] == peer->uid) {
            return 0;
        }
    }

    return 1;
}


/*
 * The weight an algorithm gives a peer now, in 1/64ths of its weight (so
 * that a weight of 1 can ramp too): compare these values with each other,
 * never with peer->weight.  The one place that scales a weight: slow start
 * ramps it linearly from 1 to all of it over gateway_slow_start since the
 * instance became eligible (ngx_http_gateway_instance_recovered()).
 * Every algorithm that uses weights asks it.
 */

#define NGX_HTTP_GATEWAY_WEIGHT_SCALE  64

static ngx_inline ngx_uint_t
ngx_http_gateway_peer_weight(ngx_http_gateway_select_t *sel,
    ngx_http_gateway_peer_t *peer)
{
    ngx_uint_t  w;
    ngx_msec_t  elapsed;

    w = peer->weight * NGX_HTTP_GATEWAY_WEIGHT_SCALE;

    if (sel->slow_start) {
        elapsed = ngx_current_msec - (ngx_msec_t) peer->inst->since;

        /* another worker's clock may be a little ahead */

        if ((ngx_msec_int_t) elapsed < 0) {
            elapsed = 0;
        }

        if (elapsed < sel->slow_start) {
            w = (ngx_uint_t) ((uint64_t) w * elapsed / sel->slow_start);
            return w ? w : 1;
        }
    }

    return w;
}


/*
 * Weighted draws over the eligible peers, for the methods that pick at
 * random (random, p2c, peak_ewma): the total weight of the eligible peers
 * (and how many there are), then an index drawn in proportion to the
 * weights from the eligible peers but "skip" (-1: none), whose weights
 * sum to "total".
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_weighted_total(ngx_http_gateway_select_t *sel,
    ngx_uint_t *n)
{
    ngx_uint_t                    i, total;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    total = 0;
    *n = 0;

    for (i = 0; i < snap->npeers; i++) {
        if (ngx_http_gateway_eligible(sel, &snap->peers[i])) {
            total += ngx_http_gateway_peer_weight(sel, &snap->peers[i]);
            (*n)++;
        }
    }

    return total;
}


static ngx_inline ngx_int_t
ngx_http_gateway_weighted_draw(ngx_http_gateway_select_t *sel,
    ngx_uint_t total, ngx_int_t skip)
{
    ngx_uint_t                    i, r, w;
    ngx_http_gateway_snapshot_t  *snap;

    if (total == 0) {
        return NGX_DECLINED;
    }

    snap = sel->snap;

    /* large services' totals pass the 31 bits of one ngx_random() */

    if (total <= 0x7fffffff) {
        r = (ngx_uint_t) ngx_random() % total;

    } else {
        r = (((uint64_t) ngx_random() << 31) | (uint64_t) ngx_random())
            % total;
    }

    for (i = 0; i < snap->npeers; i++) {
        if ((ngx_int_t) i == skip
            || !ngx_http_gateway_eligible(sel, &snap->peers[i]))
        {
            continue;
        }

        w = ngx_http_gateway_peer_weight(sel, &snap->peers[i]);

        if (r < w) {
            return (ngx_int_t) i;
        }

        r -= w;
    }

    return NGX_DECLINED;
}


/*
 * The two random choices of p2c and peak_ewma: the first draw, returned
 * (NGX_DECLINED: no eligible peer), and a second distinct one in *two
 * (NGX_DECLINED: none), each drawn in proportion to its weight; *w1 and
 * *w2 are their weights when both are drawn.
 */

static ngx_inline ngx_int_t
ngx_http_gateway_weighted_pair(ngx_http_gateway_select_t *sel,
    ngx_int_t *two, ngx_uint_t *w1, ngx_uint_t *w2)
{
    ngx_int_t   one;
    ngx_uint_t  total, n;

    *two = NGX_DECLINED;

    total = ngx_http_gateway_weighted_total(sel, &n);

    one = ngx_http_gateway_weighted_draw(sel, total, -1);

    if (n < 2 || one == NGX_DECLINED) {
        return one;
    }

    *w1 = ngx_http_gateway_peer_weight(sel, &sel->snap->peers[one]);

    *two = ngx_http_gateway_weighted_draw(sel, total - *w1, one);

    if (*two != NGX_DECLINED) {
        *w2 = ngx_http_gateway_peer_weight(sel, &sel->snap->peers[*two]);
    }

    return one;
}


typedef struct {
    ngx_str_t                       name;

    /* bytes of the algorithm's state in every instance and service */
    size_t                          instance_size;
    size_t                          service_size;

    /* select() reads ngx_http_gateway_active() */
    ngx_uint_t                      active;

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
     * it and freed with it.  "used" is what upstreams asked for with
     * ngx_http_gateway_balancer_use() (the method's own bits): no
     * upstream, no table.  It is built without the zone lock: at the
     * commit point (lock held) table_input() copies what the table is
     * made of out of the snapshot into worker memory that it allocates
     * with ngx_alloc() (the core frees it), and sets *size to the table's
     * bytes (0: no table, NULL with a size: no memory); table_build()
     * then fills a worker buffer of that size from it, lock released; the
     * core copies the table into the zone and publishes the snapshot with
     * it, so a table must not point into itself (offsets only).  A full
     * zone leaves the snapshot without it: select() must then do without
     * (ngx_http_gateway_balancer_table() is NULL).
     */
    void                         *(*table_input)(
                                        ngx_http_gateway_snapshot_t *snap,
                                        ngx_uint_t used, size_t *size);
    void                          (*table_build)(void *input, void *table,
                                        ngx_uint_t used);

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
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_least_request;
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_p2c;
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_peak_ewma;
extern ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_hash;

extern ngx_http_gateway_balancer_t *ngx_http_gateway_balancers[];


#define ngx_http_gateway_balancer_instance(b, inst)                           \
    ((void *) ((u_char *) (inst)->lines->lb + (b)->instance_offset))

#define ngx_http_gateway_balancer_service(b, svc)                             \
    ((void *) ((u_char *) (svc)->lb + (b)->service_offset))

/* the method's table of a snapshot, NULL: none (not used, zone full) */
#define ngx_http_gateway_balancer_table(b, snap)                              \
    ((snap)->tables ? (snap)->tables[(b)->index] : NULL)


/*
 * What the core applies around every algorithm: gateway_sticky
 * (ngx_http_gateway_sticky.c) and gateway_locality
 * (ngx_http_gateway_locality.c).  Their directives store these into the
 * upstream's configuration at cmd->offset.
 */

typedef struct {
    ngx_str_t                       cookie;     /* the cookie's name */
    ngx_str_t                       attrs;      /* "; Path=/; Max-Age=..." */
} ngx_http_gateway_sticky_t;

typedef struct {
    ngx_str_t                       zone;
    ngx_uint_t                      min_healthy;    /* percent */
} ngx_http_gateway_locality_t;

char *ngx_http_gateway_sticky(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_gateway_sticky_find(ngx_http_gateway_sticky_t *sc,
    ngx_http_gateway_select_t *sel);
ngx_int_t ngx_http_gateway_sticky_chosen(ngx_http_gateway_sticky_t *sc,
    ngx_http_request_t *r, ngx_http_gateway_peer_t *peer);

char *ngx_http_gateway_locality(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_gateway_locality_prefer(ngx_http_gateway_locality_t *lc,
    ngx_http_gateway_select_t *sel);

/* gateway_service came first in the upstream{} whose conf this is */
ngx_uint_t ngx_http_gateway_upstream_configured(void *conf);

ngx_http_gateway_balancer_t *ngx_http_gateway_balancer_find(ngx_str_t *name);
void *ngx_http_gateway_balancer_create_conf(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_str_t *params, ngx_uint_t n);
void ngx_http_gateway_balancer_use(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_uint_t used);


#if !(NGX_HTTP_GATEWAY_EXPORTED)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_GATEWAY_BALANCER_H_INCLUDED_ */
