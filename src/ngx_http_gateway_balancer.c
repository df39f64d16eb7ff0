
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


ngx_http_gateway_balancer_t  *ngx_http_gateway_balancers[] = {
    &ngx_http_gateway_balancer_round_robin,
    &ngx_http_gateway_balancer_random,
    &ngx_http_gateway_balancer_least_request,
    &ngx_http_gateway_balancer_p2c,
    &ngx_http_gateway_balancer_peak_ewma,
    &ngx_http_gateway_balancer_hash,
    NULL
};


static size_t      ngx_http_gateway_balancers_instance_size;
static size_t      ngx_http_gateway_balancers_service_size;
static ngx_uint_t  ngx_http_gateway_nbalancers;


/* every algorithm gets its place in every instance and service */

void
ngx_http_gateway_balancers_init(void)
{
    size_t                        is, ss;
    ngx_http_gateway_balancer_t  **b;

    is = 0;
    ss = 0;

    for (b = ngx_http_gateway_balancers; *b; b++) {
        (*b)->instance_offset = is;
        (*b)->service_offset = ss;
        (*b)->index = b - ngx_http_gateway_balancers;
        is += ngx_align((*b)->instance_size, sizeof(ngx_uint_t));
        ss += ngx_align((*b)->service_size, sizeof(ngx_uint_t));
    }

    ngx_http_gateway_balancers_instance_size = is;
    ngx_http_gateway_balancers_service_size = ss;
    ngx_http_gateway_nbalancers = b - ngx_http_gateway_balancers;
}


/* 0: the balancers' state does not fit its place in the instance */

size_t
ngx_http_gateway_instance_size(void)
{
    if (ngx_http_gateway_balancers_instance_size
        > NGX_HTTP_GATEWAY_INSTANCE_LB)
    {
        return 0;
    }

    return sizeof(ngx_http_gateway_instance_t);
}


size_t
ngx_http_gateway_service_size(void)
{
    return offsetof(ngx_http_gateway_service_t, lb)
           + ngx_max(ngx_http_gateway_balancers_service_size,
                     sizeof(ngx_uint_t));
}


ngx_http_gateway_balancer_t *
ngx_http_gateway_balancer_find(ngx_str_t *name)
{
    ngx_http_gateway_balancer_t  **b;

    for (b = ngx_http_gateway_balancers; *b; b++) {
        if ((*b)->name.len == name->len
            && ngx_strncmp((*b)->name.data, name->data, name->len) == 0)
        {
            return *b;
        }
    }

    return NULL;
}


void *
ngx_http_gateway_balancer_create_conf(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_str_t *params, ngx_uint_t n)
{
    if (b->create_conf) {
        return b->create_conf(cf, params, n);
    }

    if (n) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of "
                           "\"gateway_balance %V\"", &params[0], &b->name);
        return NULL;
    }

    return b;
}


/* an upstream uses the method's tables "used" (its own bits) */

void
ngx_http_gateway_balancer_use(ngx_conf_t *cf, ngx_http_gateway_balancer_t *b,
    ngx_uint_t used)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

    if (b->table_size && b->index < 64 / NGX_HTTP_GATEWAY_TABLE_BITS) {
        gmcf->tables |= (uint64_t) (used & NGX_HTTP_GATEWAY_TABLE_MASK)
                        << (b->index * NGX_HTTP_GATEWAY_TABLE_BITS);
    }
}


static ngx_uint_t
ngx_http_gateway_balancer_used(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_balancer_t *b)
{
    if (b->table_size == NULL || b->index >= 64 / NGX_HTTP_GATEWAY_TABLE_BITS)
    {
        return 0;
    }

    return (ngx_uint_t) (gmcf->sh->tables
                         >> (b->index * NGX_HTTP_GATEWAY_TABLE_BITS))
           & NGX_HTTP_GATEWAY_TABLE_MASK;
}


/* bytes a snapshot needs for its table pointers (0: no table is used) */

size_t
ngx_http_gateway_balancers_tables_size(ngx_http_gateway_main_conf_t *gmcf)
{
    return gmcf->sh->tables ? ngx_http_gateway_nbalancers * sizeof(void *)
                            : 0;
}


/*
 * A new snapshot: its tables, then every balancer's update.  NGX_AGAIN: a
 * table had no room, the snapshot goes without it.
 */

ngx_int_t
ngx_http_gateway_balancers_update_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    void                          *table;
    size_t                         size;
    ngx_int_t                      rc;
    ngx_uint_t                     used;
    ngx_http_gateway_balancer_t  **b;

    rc = NGX_OK;

    for (b = ngx_http_gateway_balancers; snap->tables && *b; b++) {
        snap->tables[(*b)->index] = NULL;

        used = ngx_http_gateway_balancer_used(gmcf, *b);
        if (used == 0) {
            continue;
        }

        size = (*b)->table_size(snap, used);
        if (size == 0) {
            continue;
        }

        table = ngx_slab_alloc_locked(gmcf->shpool, size);

        if (table == NULL) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "gateway: zone \"%V\" is full, service \"%V\" "
                          "has no \"%V\" table (%uz bytes) until a later "
                          "change finds room", &gmcf->shm_zone->shm.name,
                          &snap->service->sn.str, &(*b)->name, size);
            rc = NGX_AGAIN;
            continue;
        }

        (*b)->table_build(snap, table, used);
        snap->tables[(*b)->index] = table;
    }

    for (b = ngx_http_gateway_balancers; *b; b++) {
        if ((*b)->update) {
            (*b)->update(snap);
        }
    }

    return rc;
}


void
ngx_http_gateway_balancers_free_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_uint_t  i;

    for (i = 0; snap->tables && i < ngx_http_gateway_nbalancers; i++) {
        if (snap->tables[i]) {
            ngx_slab_free_locked(gmcf->shpool, snap->tables[i]);
        }
    }
}


/*
 * The zone learns which tables this configuration's upstreams use.  Bits
 * are only added (old workers may still use theirs); a new one rebuilds
 * every snapshot, so that every service has the table before a request
 * of the new configuration asks for it.
 */

ngx_int_t
ngx_http_gateway_balancers_init_zone(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_rbtree_node_t      *node, *root, *sentinel;
    ngx_http_gateway_sh_t  *sh;

    sh = gmcf->sh;

    /* a zone of another version: the workers refuse it (init_process) */

    if (sh->magic != NGX_HTTP_GATEWAY_SH_MAGIC
        || (gmcf->tables & ~sh->tables) == 0)
    {
        return NGX_OK;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    sh->tables |= gmcf->tables;

    root = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&sh->rbtree, node))
    {
        ngx_http_gateway_service_touch_locked(gmcf,
                                        (ngx_http_gateway_service_t *) node);
    }

    ngx_http_gateway_write_end(gmcf);

    return NGX_OK;
}
