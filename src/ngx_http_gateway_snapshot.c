
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * Requests read the registry without its lock.  Writers (admin, Redis
 * sync, expiry, the state file) still serialize on the zone's mutex; they
 * change their own side of a service (its sorted instances) and, at the
 * end of every locked write, ngx_http_gateway_write_end() commits each
 * service they touched: a new immutable snapshot is built and published
 * with one pointer store.  A request finds a service through the name
 * index, takes a reference to its snapshot, and uses the snapshot alone.
 *
 * What a writer unlinks (a snapshot, an instance's data, an instance, a
 * service) is retired with the epoch of the unlinking.  A worker announces
 * the epoch it read while it looks a service up; retired memory is freed
 * once every worker that is looking something up started after it was
 * unlinked, and nothing holds it any more: snapshots by reference count,
 * the rest by the number of snapshots that point at them.
 */


ngx_http_gateway_reader_t  *ngx_http_gateway_reader;

/* this worker's free entries of its reader's "held" array */
ngx_uint_t                 *ngx_http_gateway_free_held;
ngx_uint_t                  ngx_http_gateway_nfree_held;


static ngx_int_t ngx_http_gateway_snapshot_build_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc);
static void ngx_http_gateway_snapshot_free_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_held_collect(ngx_http_gateway_sh_t *sh,
    void ***held, ngx_uint_t *n);
static int ngx_http_gateway_ptr_cmp(const void *one, const void *two);
static void ngx_http_gateway_reader_release_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_reader_t *rd);
static ngx_atomic_uint_t ngx_http_gateway_oldest_reader(
    ngx_http_gateway_sh_t *sh);
static ngx_uint_t ngx_http_gateway_retired_done(ngx_http_gateway_retired_t *rt,
    void **held, ngx_uint_t nheld);
static void ngx_http_gateway_retired_free_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_retired_t *rt);


ngx_int_t
ngx_http_gateway_index_init_locked(ngx_http_gateway_main_conf_t *gmcf,
    size_t zone_size)
{
    size_t                  n;
    ngx_http_gateway_sh_t  *sh;

    sh = gmcf->sh;

    /* about one bucket per 4 KiB of zone: chains stay short, never full */

    for (n = 64; n < zone_size / 4096; n *= 2) { /* void */ }

    sh->index = ngx_slab_calloc_locked(gmcf->shpool,
                                 n * sizeof(ngx_http_gateway_service_t *));
    if (sh->index == NULL) {
        return NGX_ERROR;
    }

    sh->nindex = n;
    sh->epoch = 1;

    return NGX_OK;
}


/* no lock: the caller is between read_begin() and read_end() */

ngx_http_gateway_service_t *
ngx_http_gateway_index_find(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name, uint32_t hash)
{
    ngx_http_gateway_sh_t       *sh;
    ngx_http_gateway_service_t  *svc;

    sh = gmcf->sh;

    for (svc = sh->index[hash & (sh->nindex - 1)]; svc; svc = svc->hnext) {
        if (svc->sn.node.key == hash
            && svc->sn.str.len == name->len
            && ngx_memcmp(svc->sn.str.data, name->data, name->len) == 0)
        {
            return svc;
        }
    }

    return NULL;
}


void
ngx_http_gateway_index_insert_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc)
{
    ngx_http_gateway_service_t *volatile  *bucket;

    bucket = &gmcf->sh->index[svc->sn.node.key & (gmcf->sh->nindex - 1)];

    svc->hnext = *bucket;
    ngx_memory_barrier();
    *bucket = svc;
}


void
ngx_http_gateway_index_delete_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc)
{
    ngx_http_gateway_service_t *volatile  *link;

    link = &gmcf->sh->index[svc->sn.node.key & (gmcf->sh->nindex - 1)];

    while (*link && *link != svc) {
        link = &(*link)->hnext;
    }

    if (*link) {

        /* svc->hnext stays valid for readers standing on svc */

        *link = svc->hnext;
        ngx_memory_barrier();

        /* before it is retired: see snapshot_get_cached() */

        gmcf->sh->deleted++;
        ngx_memory_barrier();
    }
}


/* NGX_DECLINED: this process has no entry (not a worker, or no room) */

ngx_int_t
ngx_http_gateway_read_begin(ngx_http_gateway_main_conf_t *gmcf)
{
    if (ngx_http_gateway_reader == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_gateway_read_begin_inline(gmcf);

    return NGX_OK;
}


void
ngx_http_gateway_read_end(void)
{
    ngx_http_gateway_read_end_inline();
}


/*
 * The snapshot of a service that a request uses, held in the worker's
 * entry (slot) until ngx_http_gateway_snapshot_put().  The hold is written
 * before the worker stops announcing its epoch, so a writer that frees a
 * snapshot sees either the epoch or the hold; no counter is shared.
 * NGX_DECLINED: the service is not registered.
 */

ngx_int_t
ngx_http_gateway_snapshot_get(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name, uint32_t hash, ngx_http_gateway_snapshot_t **snapp,
    ngx_uint_t *slot)
{
    return ngx_http_gateway_snapshot_get_cached(gmcf, NULL, name, hash,
                                                snapp, slot);
}


/*
 * With a cache (a fixed service name), the service found last time is
 * used as long as no service was unlinked since: a writer counts the
 * unlinking before it retires the service, and a reader compares the
 * count after it announced its epoch, so an equal count means the service
 * cannot be freed before the reader is done, as if the index had led to
 * it.  A new service with that name needs no check: it is not found
 * until a lookup fails, and a failed lookup is not cached.
 */

ngx_int_t
ngx_http_gateway_snapshot_get_cached(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_lookup_t *cache, ngx_str_t *name, uint32_t hash,
    ngx_http_gateway_snapshot_t **snapp, ngx_uint_t *slot)
{
    return ngx_http_gateway_snapshot_hold(gmcf, cache, name, hash, snapp,
                                          slot);
}


ngx_int_t
ngx_http_gateway_reader_init(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                   i, n;
    ngx_http_gateway_sh_t       *sh;
    ngx_http_gateway_reader_t   *rd, **readers;

    sh = gmcf->sh;

    /* grows on demand: worker_connections bounds it, a tiny zone may not */

    n = 32;

    ngx_http_gateway_free_held = ngx_alloc(n * sizeof(ngx_uint_t),
                                           ngx_cycle->log);
    if (ngx_http_gateway_free_held == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    ngx_http_gateway_readers_reclaim_locked(gmcf);

    rd = NULL;

    for (i = 0; i < sh->nreaders; i++) {
        if (sh->readers[i]->pid == 0) {
            rd = sh->readers[i];
            break;
        }
    }

    if (rd == NULL) {

        if (sh->nreaders == sh->nalloc_readers) {
            readers = ngx_slab_alloc_locked(gmcf->shpool,
                          2 * ngx_max(sh->nalloc_readers, 4)
                          * sizeof(ngx_http_gateway_reader_t *));
            if (readers == NULL) {
                goto failed;
            }

            if (sh->readers) {
                ngx_memcpy(readers, sh->readers,
                           sh->nreaders * sizeof(ngx_http_gateway_reader_t *));
                ngx_slab_free_locked(gmcf->shpool, sh->readers);
            }

            sh->nalloc_readers = 2 * ngx_max(sh->nalloc_readers, 4);
            ngx_memory_barrier();
            sh->readers = readers;
        }

        rd = ngx_slab_calloc_locked(gmcf->shpool,
                                    ngx_max(sizeof(ngx_http_gateway_reader_t),
                                            2 * NGX_HTTP_GATEWAY_LINE_SIZE));
        if (rd == NULL) {
            goto failed;
        }

        sh->readers[sh->nreaders] = rd;
        ngx_memory_barrier();
        sh->nreaders++;
    }

    rd->held = ngx_slab_calloc_locked(gmcf->shpool,
                                      n * sizeof(ngx_http_gateway_hold_t));
    if (rd->held == NULL) {
        goto failed;
    }

    /* an entry's cells are never freed: readers of counters read them */

    if (rd->cells == NULL) {
        rd->cells = ngx_slab_calloc_locked(gmcf->shpool,
                                           NGX_HTTP_GATEWAY_CELLS
                                           * sizeof(ngx_http_gateway_cell_t));
        if (rd->cells == NULL) {
            ngx_slab_free_locked(gmcf->shpool, rd->held);
            rd->held = NULL;
            goto failed;
        }
    }

    rd->epoch = 0;
    rd->nheld = n;
    rd->pid = ngx_pid;

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    for (i = 0; i < n; i++) {
        ngx_http_gateway_free_held[i] = n - 1 - i;
    }

    ngx_http_gateway_nfree_held = n;
    ngx_http_gateway_cells = rd->cells;
    ngx_http_gateway_cells_init();
    ngx_http_gateway_cells_publish =
        (sh->uses & NGX_HTTP_GATEWAY_USES_ACTIVE) ? 1 : 0;
    ngx_http_gateway_reader = rd;

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                  "gateway: zone \"%V\" has no room for this worker",
                  &gmcf->shm_zone->shm.name);

    ngx_free(ngx_http_gateway_free_held);
    ngx_http_gateway_free_held = NULL;

    return NGX_ERROR;
}


void
ngx_http_gateway_reader_exit(ngx_http_gateway_main_conf_t *gmcf)
{
    if (ngx_http_gateway_reader == NULL) {
        return;
    }

    ngx_http_gateway_cells_drain();

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    ngx_http_gateway_reader_release_locked(gmcf, ngx_http_gateway_reader);
    ngx_http_gateway_reader = NULL;
    ngx_http_gateway_cells = NULL;

    ngx_http_gateway_reclaim_locked(gmcf);

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    ngx_free(ngx_http_gateway_free_held);
    ngx_http_gateway_free_held = NULL;
}


/* a reader whose process died neither reads nor holds anything any more */

void
ngx_http_gateway_readers_reclaim_locked(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                  i;
    ngx_http_gateway_reader_t  *rd;

    for (i = 0; i < gmcf->sh->nreaders; i++) {
        rd = gmcf->sh->readers[i];

        if (rd->pid == 0 || rd->pid == ngx_pid
            || kill(rd->pid, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        ngx_http_gateway_reader_release_locked(gmcf, rd);
    }
}


static void
ngx_http_gateway_reader_release_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_reader_t *rd)
{
    ngx_uint_t                i, n;
    ngx_http_gateway_hold_t  *h;

    /* its changes not yet published, "active" +1s first */

    ngx_http_gateway_cells_apply_locked(rd);

    n = 0;

    for (i = 0; i < rd->nheld; i++) {
        h = &rd->held[i];

        if (h->snap == NULL) {
            continue;
        }

        if (h->peer) {
            (void) ngx_atomic_fetch_add(&h->peer->inst->stats.active, -1);
        }

        if (h->counted) {
            (void) ngx_atomic_fetch_add(h->counted, -1);
        }

        h->peer = NULL;
        h->counted = NULL;
        h->snap = NULL;
        n++;
    }

    if (rd->pid != ngx_pid) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gateway: reclaimed %ui instance references of dead "
                      "process %P", n, rd->pid);

    } else if (n) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gateway: released %ui instance references at exit", n);
    }

    ngx_slab_free_locked(gmcf->shpool, rd->held);

    rd->held = NULL;
    rd->nheld = 0;
    rd->epoch = 0;
    rd->pid = 0;
}


/* more entries for holds: worker_connections bounds them, a small zone not */

ngx_int_t
ngx_http_gateway_hold_grow(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                 *list, i, n;
    ngx_http_gateway_hold_t    *held;
    ngx_http_gateway_reader_t  *rd;

    rd = ngx_http_gateway_reader;
    n = rd->nheld;

    list = ngx_alloc(2 * n * sizeof(ngx_uint_t), ngx_cycle->log);
    if (list == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    held = ngx_slab_calloc_locked(gmcf->shpool,
                                  2 * n * sizeof(ngx_http_gateway_hold_t));
    if (held) {
        ngx_memcpy(held, rd->held, n * sizeof(ngx_http_gateway_hold_t));
        ngx_slab_free_locked(gmcf->shpool, rd->held);
        rd->held = held;
        rd->nheld = 2 * n;
    }

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    if (held == NULL) {
        ngx_free(list);
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        list[i] = 2 * n - 1 - i;
    }

    ngx_free(ngx_http_gateway_free_held);
    ngx_http_gateway_free_held = list;
    ngx_http_gateway_nfree_held = n;

    return NGX_OK;
}


void
ngx_http_gateway_retire_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_retired_t *rt, ngx_uint_t type)
{
    ngx_http_gateway_sh_t  *sh;

    sh = gmcf->sh;

    rt->type = (uint32_t) type;
    rt->epoch = ngx_atomic_fetch_add(&sh->epoch, 1);
    rt->next = sh->retired;
    sh->retired = rt;
}


/* marks svc for the commit at the end of this write */

void
ngx_http_gateway_service_touch_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc)
{
    if (svc->dirty || svc->removed) {
        return;
    }

    svc->dirty = 1;
    svc->dirty_next = gmcf->sh->dirty;
    gmcf->sh->dirty = svc;
}


/*
 * The one commit point: every service changed in this write gets a new
 * snapshot, and what became unreachable is freed.  Then the lock goes.
 */

void
ngx_http_gateway_write_end(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_int_t                    rc;
    ngx_http_gateway_sh_t       *sh;
    u_char                       fname[NGX_GATEWAY_NAME_MAX];
    u_char                       rname[NGX_GATEWAY_NAME_MAX];
    ngx_str_t                    failed, recovered;
    ngx_http_gateway_service_t  *svc, *next, *retry;

    sh = gmcf->sh;
    failed.len = 0;
    recovered.len = 0;
    retry = NULL;

    for (svc = sh->dirty; svc; svc = next) {
        next = svc->dirty_next;
        svc->dirty = 0;

        if (svc->removed) {
            continue;
        }

        /*
         * NGX_AGAIN: the new snapshot lacks a balancer's table (worker
         * memory), built at the service's next change; NGX_ERROR:
         * requests keep the previous snapshot, tried again at the next
         * commit (every tick), logged once
         */

        rc = ngx_http_gateway_snapshot_build_locked(gmcf, svc);

        if (rc != NGX_ERROR) {
            if (svc->unrouted) {
                svc->unrouted = 0;
                recovered = svc->sn.str;
            }

            continue;
        }

        svc->dirty = 1;
        svc->dirty_next = retry;
        retry = svc;

        if (!svc->unrouted) {
            svc->unrouted = 1;
            failed = svc->sn.str;
        }
    }

    sh->dirty = retry;

    /* the names outlive the lock: a service may be freed after it */

    if (failed.len) {
        ngx_memcpy(fname, failed.data, failed.len);
        failed.data = fname;
    }

    if (recovered.len) {
        ngx_memcpy(rname, recovered.data, recovered.len);
        recovered.data = rname;
    }

    ngx_http_gateway_reclaim_locked(gmcf);

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    ngx_http_gateway_balancers_tables_build(gmcf);

    if (failed.len) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "gateway: zone \"%V\" is full, service \"%V\" is "
                      "routed as it was before the last change until "
                      "there is room",
                      &gmcf->shm_zone->shm.name, &failed);
    }

    if (recovered.len) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gateway: zone \"%V\" had room again for service "
                      "\"%V\"", &gmcf->shm_zone->shm.name, &recovered);
    }
}


static ngx_int_t
ngx_http_gateway_snapshot_build_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc)
{
    u_char                       *after;
    size_t                        size, tsize, zsize;
    ngx_int_t                     rc;
    ngx_uint_t                    i, total, backups, tier;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_data_t      *data;
    ngx_http_gateway_instance_t  *inst;
    ngx_http_gateway_snapshot_t  *snap;

    /*
     * Round robin's cycle (total, each peer's upto) lays out one tier's up
     * weights: the primaries', or without an up primary the backups'.  The
     * other tier takes no tickets: backups serving while the primaries are
     * up but none may be used (ejected, unhealthy, tried) are taken in
     * turn from a ticket's place (see rr_tickets()).
     */

    total = 0;
    backups = 0;

    for (i = 0; i < svc->ninstances; i++) {
        data = svc->instances[i]->data;

        if (data->state == NGX_GATEWAY_STATE_UP) {
            if (data->backup) {
                backups += data->weight;

            } else {
                total += data->weight;
            }
        }
    }

    /* a weight is at least 1: no primary's weight, no primary up */

    tier = (total == 0);

    if (tier) {
        total = backups;
    }

    /* after the peers: the tables, the zones, round robin's order */

    tsize = ngx_http_gateway_balancers_tables_size(gmcf);
    zsize = (gmcf->sh->uses & NGX_HTTP_GATEWAY_USES_ZONES)
            ? ngx_http_gateway_zones_size(svc->ninstances) : 0;

    size = offsetof(ngx_http_gateway_snapshot_t, peers)
           + ngx_max(svc->ninstances, 1) * sizeof(ngx_http_gateway_peer_t)
           + tsize + zsize;

    if (total <= NGX_HTTP_GATEWAY_ORDER_MAX) {
        size += total * sizeof(uint16_t);
    }

    snap = ngx_slab_alloc_locked(gmcf->shpool, size);
    if (snap == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(snap, offsetof(ngx_http_gateway_snapshot_t, peers));

    after = (u_char *) &snap->peers[ngx_max(svc->ninstances, 1)];

    if (tsize) {
        snap->tables = (void **) after;
    }

    if (total && total <= NGX_HTTP_GATEWAY_ORDER_MAX) {
        snap->order = (uint16_t *) (after + tsize + zsize);
    }

    snap->service = svc;
    snap->npeers = svc->ninstances;

    for (i = 0; i < svc->ninstances; i++) {
        inst = svc->instances[i];
        data = inst->data;
        peer = &snap->peers[i];

        peer->inst = inst;
        peer->data = data;
        peer->uid = inst->uid;
        peer->weight = (uint16_t) data->weight;
        peer->state = data->state;
        peer->backup = data->backup;

        snap->nbackup += data->backup;

        if (data->state == NGX_GATEWAY_STATE_UP && data->backup == tier) {
            snap->total += data->weight;
        }

        peer->upto = (uint32_t) snap->total;

        inst->rt.nsnaps++;
        data->rt.nsnaps++;
    }

    if (zsize) {
        ngx_http_gateway_zones_build(snap, after + tsize);
    }

    svc->rt.nsnaps++;

    /* embedded, the zone is the registry: its revisions count commits */

    if (gmcf->redis == NULL) {
        svc->revision++;
    }

    rc = ngx_http_gateway_balancers_update_locked(gmcf, snap);

    if (rc == NGX_DONE) {
        /* published when its tables are built, if no later commit was */
        svc->pending = snap;
        return NGX_OK;
    }

    ngx_http_gateway_snapshot_publish_locked(gmcf, snap);

    return rc;
}


void
ngx_http_gateway_snapshot_publish_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_snapshot_t  *old;

    svc = snap->service;
    svc->pending = NULL;

    old = svc->snapshot;

    ngx_http_gateway_events_locked(gmcf, svc, old, snap);

    ngx_memory_barrier();
    svc->snapshot = snap;

    if (old) {
        ngx_http_gateway_retire_locked(gmcf, &old->rt,
                                       NGX_HTTP_GATEWAY_RETIRED_SNAPSHOT);
    }

    gmcf->sh->generation++;
}


/*
 * A snapshot that waited for its tables without the lock: still its
 * service's last commit, or freed (nobody else frees it, nobody saw it).
 */

ngx_uint_t
ngx_http_gateway_snapshot_wanted_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_http_gateway_service_t  *svc;

    svc = snap->service;

    if (svc->pending == snap && !svc->removed) {
        return 1;
    }

    if (svc->pending == snap) {
        svc->pending = NULL;
    }

    ngx_http_gateway_snapshot_free_locked(gmcf, snap);

    return 0;
}


static void
ngx_http_gateway_snapshot_free_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_uint_t                i;
    ngx_http_gateway_peer_t  *peer;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];
        peer->inst->rt.nsnaps--;
        peer->data->rt.nsnaps--;
    }

    snap->service->rt.nsnaps--;

    ngx_http_gateway_balancers_free_locked(gmcf, snap);
    ngx_slab_free_locked(gmcf->shpool, snap);
}


static ngx_atomic_uint_t
ngx_http_gateway_oldest_reader(ngx_http_gateway_sh_t *sh)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  e, oldest;

    oldest = sh->epoch;

    for (i = 0; i < sh->nreaders; i++) {
        e = sh->readers[i]->epoch;

        if (e && e < oldest) {
            oldest = e;
        }
    }

    return oldest;
}


/* frees what no worker can reach any more */

void
ngx_http_gateway_reclaim_locked(ngx_http_gateway_main_conf_t *gmcf)
{
    void                        **held;
    ngx_uint_t                    pass, nheld;
    ngx_atomic_uint_t             oldest;
    ngx_http_gateway_sh_t        *sh;
    ngx_http_gateway_retired_t   *rt, **link;

    sh = gmcf->sh;

    if (sh->retired == NULL) {
        return;
    }

    /* the epochs first, then the holds: see snapshot_get() */

    ngx_memory_barrier();

    oldest = ngx_http_gateway_oldest_reader(sh);

    ngx_memory_barrier();

    if (ngx_http_gateway_held_collect(sh, &held, &nheld) != NGX_OK) {
        return;
    }

    /* snapshots first: freeing them lets go of what they point at */

    for (pass = 0; pass < 2; pass++) {
        link = &sh->retired;

        while (*link) {
            rt = *link;

            if (rt->epoch >= oldest
                || (pass == 0) != (rt->type
                                   == NGX_HTTP_GATEWAY_RETIRED_SNAPSHOT)
                || !ngx_http_gateway_retired_done(rt, held, nheld))
            {
                link = &rt->next;
                continue;
            }

            *link = rt->next;
            ngx_http_gateway_retired_free_locked(gmcf, rt);
        }
    }

    if (held) {
        ngx_free(held);
    }
}


/* the snapshots workers hold, sorted; NULL when none */

static ngx_int_t
ngx_http_gateway_held_collect(ngx_http_gateway_sh_t *sh, void ***held,
    ngx_uint_t *n)
{
    void                       **list, *snap;
    ngx_uint_t                   i, k, total;
    ngx_http_gateway_reader_t   *rd;

    *held = NULL;
    *n = 0;

    total = 0;

    for (i = 0; i < sh->nreaders; i++) {
        total += sh->readers[i]->nheld + NGX_HTTP_GATEWAY_CELLS;
    }

    if (total == 0) {
        return NGX_OK;
    }

    list = ngx_alloc(total * sizeof(void *), ngx_cycle->log);
    if (list == NULL) {
        return NGX_ERROR;
    }

    total = 0;

    for (i = 0; i < sh->nreaders; i++) {
        rd = sh->readers[i];

        for (k = 0; k < rd->nheld; k++) {
            snap = rd->held[k].snap;

            if (snap) {
                list[total++] = snap;
            }
        }

        /*
         * after the holds: a cell takes its snapshot from a hold that is
         * dropped after, so one of the two is seen
         */

        ngx_memory_barrier();

        if (rd->cells == NULL) {
            continue;
        }

        for (k = 0; k < NGX_HTTP_GATEWAY_CELLS; k++) {
            snap = rd->cells[k].snap;

            if (snap) {
                list[total++] = snap;
            }
        }
    }

    ngx_qsort(list, total, sizeof(void *), ngx_http_gateway_ptr_cmp);

    *held = list;
    *n = total;

    return NGX_OK;
}


static int
ngx_http_gateway_ptr_cmp(const void *one, const void *two)
{
    uintptr_t  a, b;

    a = (uintptr_t) *(void **) one;
    b = (uintptr_t) *(void **) two;

    return (a > b) - (a < b);
}


static ngx_uint_t
ngx_http_gateway_retired_done(ngx_http_gateway_retired_t *rt, void **held,
    ngx_uint_t nheld)
{
    ngx_uint_t  lo, hi, mid;

    switch (rt->type) {

    case NGX_HTTP_GATEWAY_RETIRED_SNAPSHOT:

        lo = 0;
        hi = nheld;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (held[mid] == (void *) rt) {
                return 0;
            }

            if ((uintptr_t) held[mid] < (uintptr_t) rt) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        return 1;

    default: /* data, instance, service */
        return rt->nsnaps == 0;
    }
}


static void
ngx_http_gateway_retired_free_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_retired_t *rt)
{
    ngx_http_gateway_instance_t  *inst;
    ngx_http_gateway_service_t   *svc;

    switch (rt->type) {

    case NGX_HTTP_GATEWAY_RETIRED_SNAPSHOT:
        ngx_http_gateway_snapshot_free_locked(gmcf,
                                        (ngx_http_gateway_snapshot_t *) rt);
        break;

    case NGX_HTTP_GATEWAY_RETIRED_DATA:
        ngx_slab_free_locked(gmcf->shpool, rt);
        break;

    case NGX_HTTP_GATEWAY_RETIRED_INSTANCE:
        inst = ngx_http_gateway_rt_instance(rt);
        ngx_slab_free_locked(gmcf->shpool, inst->data);

        if (inst->lines) {
            ngx_slab_free_locked(gmcf->shpool, inst->lines);
        }

        ngx_slab_free_locked(gmcf->shpool, inst);
        gmcf->sh->allocated--;
        break;

    default: /* NGX_HTTP_GATEWAY_RETIRED_SERVICE */
        svc = ngx_http_gateway_rt_service(rt);

        if (svc->instances) {
            ngx_slab_free_locked(gmcf->shpool, svc->instances);
        }

        ngx_slab_free_locked(gmcf->shpool, svc);
        break;
    }
}
