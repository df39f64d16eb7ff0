
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"
#include "ngx_gateway_chash.h"


/*
 * gateway_balance hash KEY [consistent=ketama|maglev]: a request goes to
 * the instance its key maps to, the same in every worker and gateway.
 * Plain "hash" is weighted rendezvous over the snapshot's peers, with no
 * table; ketama and maglev look the key up in a table built for each
 * snapshot after the commit point, without the zone lock
 * (ngx_gateway_chash.c).  Instances are
 * hashed by id, so a mapping survives restarts and address changes.  A
 * key whose instance is not eligible (down, draining, expired, already
 * tried) goes to the next distinct one: the next point of the ring, the
 * next slot of the table, the next highest score.
 */


#define NGX_HTTP_GATEWAY_HASH_RENDEZVOUS  0
#define NGX_HTTP_GATEWAY_HASH_KETAMA      1     /* also the table bits */
#define NGX_HTTP_GATEWAY_HASH_MAGLEV      2


typedef struct {
    ngx_http_complex_value_t     key;
    ngx_uint_t                   method;
} ngx_http_gateway_hash_conf_t;


/*
 * A snapshot's table: a header, then the Maglev table and the ring, found
 * by offsets (the table is built in worker memory and copied to the zone).
 */

typedef struct {
    size_t                       maglev;    /* offset, 0: no Maglev table */
    size_t                       points;    /* offset, 0: no ring */
    size_t                       npoints;
} ngx_http_gateway_hash_table_t;


/* what a table is built from, copied from the snapshot: peers[], fill[] */

typedef struct {
    size_t                       n;
    size_t                       npoints;
    ngx_gateway_chash_peer_t    *peers;
    ngx_gateway_maglev_fill_t   *fill;      /* Maglev's scratch */
} ngx_http_gateway_hash_input_t;


static void *ngx_http_gateway_hash_create_conf(ngx_conf_t *cf,
    ngx_str_t *params, ngx_uint_t n);
static void *ngx_http_gateway_hash_table_input(
    ngx_http_gateway_snapshot_t *snap, ngx_uint_t used, size_t *size);
static void ngx_http_gateway_hash_table_build(void *input, void *table,
    ngx_uint_t used);
static ngx_int_t ngx_http_gateway_hash_select(ngx_http_gateway_select_t *sel);
static ngx_int_t ngx_http_gateway_hash_rendezvous(
    ngx_http_gateway_select_t *sel, uint32_t key);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_hash = {
    ngx_string("hash"),
    0,
    0,
    0,
    ngx_http_gateway_hash_create_conf,
    NULL,
    ngx_http_gateway_hash_select,
    ngx_http_gateway_hash_table_input,
    ngx_http_gateway_hash_table_build,
    0,
    0,
    0
};


static void *
ngx_http_gateway_hash_create_conf(ngx_conf_t *cf, ngx_str_t *params,
    ngx_uint_t n)
{
    ngx_uint_t                         i;
    ngx_http_gateway_hash_conf_t      *conf;
    ngx_http_compile_complex_value_t   ccv;

    /* "hash consistent=maglev": the key forgotten, not a key */

    if (n == 0
        || (params[0].len >= sizeof("consistent=") - 1
            && ngx_strncmp(params[0].data, "consistent=",
                           sizeof("consistent=") - 1)
               == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_balance hash\" needs a key, "
                           "e.g. \"gateway_balance hash $request_uri\"");
        return NULL;
    }

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_hash_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &params[0];
    ccv.complex_value = &conf->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NULL;
    }

    conf->method = NGX_HTTP_GATEWAY_HASH_RENDEZVOUS;

    for (i = 1; i < n; i++) {

        if (conf->method == NGX_HTTP_GATEWAY_HASH_RENDEZVOUS) {

            if (params[i].len == sizeof("consistent=ketama") - 1
                && ngx_strncmp(params[i].data, "consistent=ketama",
                               params[i].len)
                   == 0)
            {
                conf->method = NGX_HTTP_GATEWAY_HASH_KETAMA;
                continue;
            }

            if (params[i].len == sizeof("consistent=maglev") - 1
                && ngx_strncmp(params[i].data, "consistent=maglev",
                               params[i].len)
                   == 0)
            {
                conf->method = NGX_HTTP_GATEWAY_HASH_MAGLEV;
                continue;
            }
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of "
                           "\"gateway_balance hash\", expected "
                           "\"consistent=ketama\" or \"consistent=maglev\"",
                           &params[i]);
        return NULL;
    }

    if (conf->method != NGX_HTTP_GATEWAY_HASH_RENDEZVOUS) {
        ngx_http_gateway_balancer_use(cf, &ngx_http_gateway_balancer_hash,
                                      conf->method);
    }

    return conf;
}


/*
 * Every peer of the snapshot is in the table, whatever its state: a peer
 * that goes down or drains is skipped at lookup, so its keys come back to
 * it, and nobody else's move.  Here, with the zone lock held, only the
 * peers' hashed ids and weights are copied out.
 */

static void *
ngx_http_gateway_hash_table_input(ngx_http_gateway_snapshot_t *snap,
    ngx_uint_t used, size_t *size)
{
    size_t                          len;
    ngx_uint_t                      i, n;
    ngx_http_gateway_hash_input_t  *in;

    n = snap->npeers;

    /* one instance takes every key: rendezvous finds it at no cost */

    if (n <= 1) {
        *size = 0;
        return NULL;
    }

    len = sizeof(ngx_http_gateway_hash_input_t)
          + n * sizeof(ngx_gateway_chash_peer_t);

    if (used & NGX_HTTP_GATEWAY_HASH_MAGLEV) {
        len += n * sizeof(ngx_gateway_maglev_fill_t);
    }

    *size = sizeof(ngx_http_gateway_hash_table_t);

    in = ngx_alloc(len, ngx_cycle->log);
    if (in == NULL) {
        return NULL;
    }

    in->n = n;
    in->peers = (ngx_gateway_chash_peer_t *) (in + 1);
    in->fill = (ngx_gateway_maglev_fill_t *) (in->peers + n);
    in->npoints = 0;

    for (i = 0; i < n; i++) {
        in->peers[i].id = ngx_crc32_long(
                               ngx_http_gateway_peer_id(&snap->peers[i]).data,
                               snap->peers[i].data->id_len);
        in->peers[i].weight = (uint32_t) snap->peers[i].weight;
    }

    if (used & NGX_HTTP_GATEWAY_HASH_MAGLEV) {
        *size += NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t);
    }

    if (used & NGX_HTTP_GATEWAY_HASH_KETAMA) {
        in->npoints = ngx_gateway_ketama_npoints(in->peers, n);
        *size += in->npoints * sizeof(ngx_gateway_ketama_point_t);
    }

    return in;
}


/* without the lock: the ring's sort is what takes long (262,144 points) */

static void
ngx_http_gateway_hash_table_build(void *input, void *table, ngx_uint_t used)
{
    size_t                          off;
    ngx_http_gateway_hash_input_t  *in;
    ngx_http_gateway_hash_table_t  *t;

    in = input;
    t = table;

    off = sizeof(ngx_http_gateway_hash_table_t);

    t->maglev = 0;
    t->points = 0;
    t->npoints = 0;

    if (used & NGX_HTTP_GATEWAY_HASH_MAGLEV) {
        t->maglev = off;
        off += NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t);

        ngx_gateway_maglev_build(in->peers, in->n,
                                 (uint32_t *) ((u_char *) t + t->maglev),
                                 in->fill);
    }

    if (used & NGX_HTTP_GATEWAY_HASH_KETAMA) {
        t->points = off;
        t->npoints = ngx_gateway_ketama_build(in->peers, in->n,
                                              (ngx_gateway_ketama_point_t *)
                                              ((u_char *) t + t->points));
    }
}


static ngx_int_t
ngx_http_gateway_hash_select(ngx_http_gateway_select_t *sel)
{
    size_t                          i, k;
    uint32_t                        key, *maglev;
    ngx_str_t                       value;
    ngx_http_gateway_peer_t        *peer;
    ngx_gateway_ketama_point_t     *points;
    ngx_http_gateway_snapshot_t    *snap;
    ngx_http_gateway_hash_conf_t   *conf;
    ngx_http_gateway_hash_table_t  *t;

    conf = sel->conf;
    snap = sel->snap;

    if (snap->total == 0) {
        return NGX_DECLINED;
    }

    /* a key that cannot be evaluated (no memory) is the empty one */

    if (ngx_http_complex_value(sel->request, &conf->key, &value) != NGX_OK) {
        ngx_str_null(&value);
    }

    key = ngx_crc32_long(value.data, value.len);

    t = ngx_http_gateway_balancer_table(&ngx_http_gateway_balancer_hash, snap);

    if (t == NULL) {
        /* a full zone left the snapshot without a table */
        return ngx_http_gateway_hash_rendezvous(sel, key);
    }

    if (conf->method == NGX_HTTP_GATEWAY_HASH_KETAMA && t->points) {
        points = (ngx_gateway_ketama_point_t *) ((u_char *) t + t->points);
        i = ngx_gateway_ketama_find(points, t->npoints, key);

        for (k = 0; k < t->npoints; k++) {
            peer = &snap->peers[points[i].peer];

            if (ngx_http_gateway_eligible(sel, peer)) {
                return points[i].peer;
            }

            if (++i == t->npoints) {
                i = 0;
            }
        }

        return NGX_DECLINED;
    }

    if (conf->method == NGX_HTTP_GATEWAY_HASH_MAGLEV && t->maglev) {
        maglev = (uint32_t *) ((u_char *) t + t->maglev);
        i = ngx_gateway_maglev_slot(key);

        for (k = 0; k < NGX_GATEWAY_MAGLEV_SIZE; k++) {
            peer = &snap->peers[maglev[i]];

            if (ngx_http_gateway_eligible(sel, peer)) {
                return maglev[i];
            }

            if (++i == NGX_GATEWAY_MAGLEV_SIZE) {
                i = 0;
            }
        }

        return NGX_DECLINED;
    }

    return ngx_http_gateway_hash_rendezvous(sel, key);
}


static ngx_int_t
ngx_http_gateway_hash_rendezvous(ngx_http_gateway_select_t *sel,
    uint32_t key)
{
    uint32_t                      h, w, top_h, top_w;
    ngx_int_t                     best;
    ngx_uint_t                    i;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    best = NGX_DECLINED;
    top_h = 0;
    top_w = 0;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        if (!ngx_http_gateway_eligible(sel, peer)) {
            continue;
        }

        h = ngx_gateway_chash_mix(key,
                         ngx_crc32_long(ngx_http_gateway_peer_id(peer).data,
                                        peer->data->id_len));
        w = (uint32_t) ngx_http_gateway_peer_weight(sel, peer);

        if (best == NGX_DECLINED
            || ngx_gateway_hrw_better(h, w, top_h, top_w))
        {
            top_h = h;
            top_w = w;
            best = (ngx_int_t) i;
        }
    }

    return best;
}
