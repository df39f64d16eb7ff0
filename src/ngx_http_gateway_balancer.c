
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


/*
 * A snapshot whose tables are built after the commit point, without the
 * zone lock (worker memory): one job per method with a table.
 */

typedef struct {
    void                         *input;    /* from table_input() */
    void                         *table;
    size_t                        size;
    ngx_uint_t                    used;
} ngx_http_gateway_table_job_t;

typedef struct ngx_http_gateway_pending_s  ngx_http_gateway_pending_t;

struct ngx_http_gateway_pending_s {
    ngx_http_gateway_pending_t   *next;
    ngx_http_gateway_snapshot_t  *snap;
    ngx_http_gateway_table_job_t  jobs[1];  /* per method */
};


static ngx_http_gateway_pending_t  *ngx_http_gateway_pending;

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
    if (b->instance_size) {
        ngx_http_gateway_uses(cf, NGX_HTTP_GATEWAY_USES_LINES);
    }

    if (b->active) {
        ngx_http_gateway_uses(cf, NGX_HTTP_GATEWAY_USES_ACTIVE);
    }

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

    if (b->table_input && b->index < 64 / NGX_HTTP_GATEWAY_TABLE_BITS) {
        gmcf->tables |= (uint64_t) (used & NGX_HTTP_GATEWAY_TABLE_MASK)
                        << (b->index * NGX_HTTP_GATEWAY_TABLE_BITS);
    }
}


static ngx_uint_t
ngx_http_gateway_balancer_used(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_balancer_t *b)
{
    if (b->table_input == NULL
        || b->index >= 64 / NGX_HTTP_GATEWAY_TABLE_BITS)
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
 * A new snapshot: what its tables are made of, then every balancer's
 * update.  NGX_DONE: the snapshot waits for its tables, built by
 * ngx_http_gateway_balancers_tables_build() once the lock is released;
 * NGX_AGAIN: a table could not be had, the snapshot goes without it.
 */

ngx_int_t
ngx_http_gateway_balancers_update_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    void                          *input;
    size_t                         size;
    ngx_int_t                      rc;
    ngx_uint_t                     used, i;
    ngx_http_gateway_pending_t    *p;
    ngx_http_gateway_balancer_t  **b;

    rc = NGX_OK;
    p = NULL;

    for (b = ngx_http_gateway_balancers; snap->tables && *b; b++) {
        snap->tables[(*b)->index] = NULL;

        used = ngx_http_gateway_balancer_used(gmcf, *b);
        if (used == 0) {
            continue;
        }

        input = (*b)->table_input(snap, used, &size);

        if (size == 0) {
            continue;
        }

        if (input && p == NULL) {
            p = ngx_alloc(offsetof(ngx_http_gateway_pending_t, jobs)
                          + ngx_http_gateway_nbalancers
                            * sizeof(ngx_http_gateway_table_job_t),
                          ngx_cycle->log);

            if (p) {
                p->snap = snap;

                for (i = 0; i < ngx_http_gateway_nbalancers; i++) {
                    p->jobs[i].input = NULL;
                }
            }
        }

        if (input == NULL || p == NULL) {
            ngx_free(input);
            rc = NGX_AGAIN;
            continue;
        }

        p->jobs[(*b)->index].input = input;
        p->jobs[(*b)->index].size = size;
        p->jobs[(*b)->index].used = used;
    }

    for (b = ngx_http_gateway_balancers; *b; b++) {
        if ((*b)->update) {
            (*b)->update(snap);
        }
    }

    if (p == NULL) {
        return rc;
    }

    p->next = ngx_http_gateway_pending;
    ngx_http_gateway_pending = p;

    return NGX_DONE;
}


/*
 * After the commit point, lock released: each waiting snapshot's tables
 * are built in worker memory, then, under the lock, copied into the zone
 * and the snapshot published, unless a later commit of its service came
 * first (then it is dropped).  One snapshot at a time, so that the worker
 * memory is one snapshot's tables.
 */

void
ngx_http_gateway_balancers_tables_build(ngx_http_gateway_main_conf_t *gmcf)
{
    void                           *table;
    uint64_t                        start, built;
    ngx_uint_t                      i;
    ngx_http_gateway_pending_t     *p;
    ngx_http_gateway_snapshot_t    *snap;
    ngx_http_gateway_table_job_t   *job;

    while (ngx_http_gateway_pending) {
        p = ngx_http_gateway_pending;
        ngx_http_gateway_pending = p->next;
        snap = p->snap;

        start = ngx_http_gateway_usec();

        for (i = 0; i < ngx_http_gateway_nbalancers; i++) {
            job = &p->jobs[i];

            if (job->input == NULL) {
                continue;
            }

            job->table = ngx_alloc(job->size, ngx_cycle->log);

            if (job->table) {
                ngx_http_gateway_balancers[i]->table_build(job->input,
                                                           job->table,
                                                           job->used);
            }

            ngx_free(job->input);
        }

        built = ngx_http_gateway_usec();

        ngx_shmtx_lock(&gmcf->shpool->mutex);

        if (ngx_http_gateway_snapshot_wanted_locked(gmcf, snap)) {

            for (i = 0; i < ngx_http_gateway_nbalancers; i++) {
                job = &p->jobs[i];

                if (job->input == NULL) {
                    continue;
                }

                table = job->table
                        ? ngx_slab_alloc_locked(gmcf->shpool, job->size)
                        : NULL;

                if (table == NULL) {
                    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                                  "gateway: zone \"%V\" is full, service "
                                  "\"%V\" has no \"%V\" table (%uz bytes) "
                                  "until a later change finds room",
                                  &gmcf->shm_zone->shm.name,
                                  &snap->service->sn.str,
                                  &ngx_http_gateway_balancers[i]->name,
                                  job->size);
                    continue;
                }

                ngx_memcpy(table, job->table, job->size);
                snap->tables[i] = table;
            }

            /*
             * a missing table waits for the service's next change: every
             * tick commits, and a retry there would rebuild it 10 times a
             * second in every worker
             */

            ngx_http_gateway_snapshot_publish_locked(gmcf, snap);
        }

        ngx_shmtx_unlock(&gmcf->shpool->mutex);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "gateway: tables built in %uLus without the zone "
                       "lock, copied and published in %uLus with it",
                       built - start, ngx_http_gateway_usec() - built);

        for (i = 0; i < ngx_http_gateway_nbalancers; i++) {
            if (p->jobs[i].input) {
                ngx_free(p->jobs[i].table);
            }
        }

        ngx_free(p);
    }
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
