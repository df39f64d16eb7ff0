
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"
#include "ngx_gateway_chash.h"


/*
 * gateway_balance hash KEY [consistent=ketama|maglev]: a request goes to
 * the instance its key maps to, the same in every worker and gateway.
 * Plain "hash" is weighted rendezvous over the snapshot's peers, with no
 * table; ketama and maglev look the key up in a table built with each
 * snapshot at the commit point (ngx_gateway_chash.c).  Instances are
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


/* a snapshot's table, followed by peers[], fill[], points[], maglev[] */

typedef struct {
    ngx_gateway_ketama_point_t  *points;    /* NULL: no ring */
    size_t                       npoints;
    uint32_t                    *maglev;    /* NULL: no Maglev table */
} ngx_http_gateway_hash_table_t;


static void *ngx_http_gateway_hash_create_conf(ngx_conf_t *cf,
    ngx_str_t *params, ngx_uint_t n);
static size_t ngx_http_gateway_hash_table_size(
    ngx_http_gateway_snapshot_t *snap, ngx_uint_t used);
static void ngx_http_gateway_hash_table_build(
    ngx_http_gateway_snapshot_t *snap, void *table, ngx_uint_t used);
static ngx_int_t ngx_http_gateway_hash_select(ngx_http_gateway_select_t *sel);
static ngx_int_t ngx_http_gateway_hash_rendezvous(
    ngx_http_gateway_select_t *sel, uint32_t key);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_hash = {
    ngx_string("hash"),
    0,
    0,
    ngx_http_gateway_hash_create_conf,
    NULL,
    ngx_http_gateway_hash_select,
    ngx_http_gateway_hash_table_size,
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

    if (n == 0) {
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


static size_t
ngx_http_gateway_hash_table_size(ngx_http_gateway_snapshot_t *snap,
    ngx_uint_t used)
{
    size_t      size, npoints;
    uint64_t    total;
    ngx_uint_t  i, n;

    n = snap->npeers;

    /* one instance takes every key: rendezvous finds it at no cost */

    if (n <= 1) {
        return 0;
    }

    size = sizeof(ngx_http_gateway_hash_table_t)
           + n * sizeof(ngx_gateway_chash_peer_t);

    if (used & NGX_HTTP_GATEWAY_HASH_MAGLEV) {
        size += n * sizeof(ngx_gateway_maglev_fill_t)
                + NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t);
    }

    if (used & NGX_HTTP_GATEWAY_HASH_KETAMA) {
        total = 0;

        for (i = 0; i < n; i++) {
            total += snap->peers[i].weight;
        }

        npoints = 0;

        for (i = 0; i < n; i++) {
            npoints += ngx_gateway_ketama_count(snap->peers[i].weight, total);
        }

        size += npoints * sizeof(ngx_gateway_ketama_point_t);
    }

    return size;
}


/*
 * Every peer of the snapshot is in the table, whatever its state: a peer
 * that goes down or drains is skipped at lookup, so its keys come back to
 * it, and nobody else's move.
 */

static void
ngx_http_gateway_hash_table_build(ngx_http_gateway_snapshot_t *snap,
    void *data, ngx_uint_t used)
{
    u_char                         *p;
    ngx_uint_t                      i, n;
    ngx_gateway_chash_peer_t       *peers;
    ngx_gateway_maglev_fill_t      *fill;
    ngx_http_gateway_hash_table_t  *t;

    n = snap->npeers;
    t = data;

    p = (u_char *) (t + 1);
    peers = (ngx_gateway_chash_peer_t *) p;
    p += n * sizeof(ngx_gateway_chash_peer_t);

    for (i = 0; i < n; i++) {
        peers[i].id = ngx_crc32_long(snap->peers[i].id.data,
                                     snap->peers[i].id.len);
        peers[i].weight = (uint32_t) snap->peers[i].weight;
    }

    t->points = NULL;
    t->npoints = 0;
    t->maglev = NULL;

    if (used & NGX_HTTP_GATEWAY_HASH_MAGLEV) {
        fill = (ngx_gateway_maglev_fill_t *) p;
        p += n * sizeof(ngx_gateway_maglev_fill_t);

        t->maglev = (uint32_t *) p;
        p += NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t);

        ngx_gateway_maglev_build(peers, n, t->maglev, fill);
    }

    if (used & NGX_HTTP_GATEWAY_HASH_KETAMA) {
        t->points = (ngx_gateway_ketama_point_t *) p;
        t->npoints = ngx_gateway_ketama_build(peers, n, t->points);
    }
}


static ngx_int_t
ngx_http_gateway_hash_select(ngx_http_gateway_select_t *sel)
{
    size_t                          i, k;
    uint32_t                        key;
    ngx_str_t                       value;
    ngx_http_gateway_peer_t        *peer;
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
        i = ngx_gateway_ketama_find(t->points, t->npoints, key);

        for (k = 0; k < t->npoints; k++) {
            peer = &snap->peers[t->points[i].peer];

            if (ngx_http_gateway_eligible(sel, peer)) {
                return t->points[i].peer;
            }

            if (++i == t->npoints) {
                i = 0;
            }
        }

        return NGX_DECLINED;
    }

    if (conf->method == NGX_HTTP_GATEWAY_HASH_MAGLEV && t->maglev) {
        i = ngx_gateway_maglev_slot(key);

        for (k = 0; k < NGX_GATEWAY_MAGLEV_SIZE; k++) {
            peer = &snap->peers[t->maglev[i]];

            if (ngx_http_gateway_eligible(sel, peer)) {
                return t->maglev[i];
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
    double                        score, top;
    ngx_int_t                     best;
    ngx_uint_t                    i;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    best = NGX_DECLINED;
    top = -1;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        if (!ngx_http_gateway_eligible(sel, peer)) {
            continue;
        }

        score = ngx_gateway_hrw_score(key,
                                      ngx_crc32_long(peer->id.data,
                                                     peer->id.len),
                                      ngx_http_gateway_peer_weight(sel, peer));
        if (score > top) {
            top = score;
            best = (ngx_int_t) i;
        }
    }

    return best;
}
