
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


static void ngx_http_gateway_instance_drop_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_instance_t *inst);
static void ngx_http_gateway_instance_free_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_instance_t *inst);
static ngx_uint_t ngx_http_gateway_instance_same(
    ngx_http_gateway_instance_t *inst, ngx_gateway_record_t *rec);
static ngx_int_t ngx_http_gateway_instance_index(
    ngx_http_gateway_service_t *svc, ngx_str_t *id, ngx_uint_t *pos);
static ngx_http_gateway_instance_t *ngx_http_gateway_instance_update_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_instance_t *inst,
    ngx_str_t *id, ngx_gateway_record_t *rec);
static ngx_int_t ngx_http_gateway_service_reserve_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc,
    ngx_uint_t n);
static size_t ngx_http_gateway_dump_service(u_char *p,
    ngx_http_gateway_service_t *svc, ngx_uint_t full);
static size_t ngx_http_gateway_dump_instance(u_char *p,
    ngx_http_gateway_instance_t *inst);


ngx_int_t
ngx_http_gateway_registry_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_gateway_main_conf_t  *ogmcf = data;

    ngx_http_gateway_sh_t         *sh;
    ngx_slab_pool_t               *shpool;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    gmcf->shpool = shpool;

    if (ogmcf) {
        gmcf->sh = ogmcf->sh;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        gmcf->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_gateway_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->magic = NGX_HTTP_GATEWAY_SH_MAGIC;
    sh->next_uid = 1;
    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);

    shpool->data = sh;
    gmcf->sh = sh;

    shpool->log_ctx = ngx_slab_alloc(shpool,
                                     sizeof(" in gateway zone \"\"")
                                     + shm_zone->shm.name.len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in gateway zone \"%V\"%Z",
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    if (gmcf->state_file.len) {
        (void) ngx_http_gateway_state_load(gmcf, shm_zone->shm.log);
    }

    return NGX_OK;
}


ngx_http_gateway_service_t *
ngx_http_gateway_service_lookup(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name)
{
    return ngx_http_gateway_service_find(gmcf, name,
                                         ngx_crc32_short(name->data,
                                                         name->len));
}


ngx_http_gateway_service_t *
ngx_http_gateway_service_find(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name, uint32_t hash)
{
    return (ngx_http_gateway_service_t *)
               ngx_str_rbtree_lookup(&gmcf->sh->rbtree, name, hash);
}


ngx_http_gateway_service_t *
ngx_http_gateway_service_get_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name)
{
    ngx_http_gateway_service_t  *svc;

    svc = ngx_http_gateway_service_lookup(gmcf, name);
    if (svc) {
        return svc;
    }

    if (name->len > NGX_GATEWAY_NAME_MAX) {
        return NULL;
    }

    svc = ngx_slab_calloc_locked(gmcf->shpool,
                                 sizeof(ngx_http_gateway_service_t));
    if (svc == NULL) {
        return NULL;
    }

    ngx_memcpy(svc->name, name->data, name->len);
    svc->sn.str.data = svc->name;
    svc->sn.str.len = name->len;
    svc->sn.node.key = ngx_crc32_short(name->data, name->len);

    ngx_rbtree_insert(&gmcf->sh->rbtree, &svc->sn.node);
    gmcf->sh->nservices++;
    gmcf->sh->generation++;

    return svc;
}


void
ngx_http_gateway_service_delete_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc)
{
    ngx_uint_t  i;

    for (i = 0; i < svc->ninstances; i++) {
        ngx_http_gateway_instance_drop_locked(gmcf, svc->instances[i]);
    }

    if (svc->instances) {
        ngx_slab_free_locked(gmcf->shpool, svc->instances);
    }

    ngx_rbtree_delete(&gmcf->sh->rbtree, &svc->sn.node);
    ngx_slab_free_locked(gmcf->shpool, svc);

    gmcf->sh->nservices--;
    gmcf->sh->generation++;
}


/*
 * A service's instances are kept sorted by id, so that finding one costs
 * O(log n) and applying a whole snapshot is a merge.
 */

static ngx_int_t
ngx_http_gateway_instance_index(ngx_http_gateway_service_t *svc,
    ngx_str_t *id, ngx_uint_t *pos)
{
    ngx_int_t                     rc;
    ngx_uint_t                    lo, hi, mid;
    ngx_http_gateway_instance_t  *inst;

    lo = 0;
    hi = svc->ninstances;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        inst = svc->instances[mid];

        rc = ngx_memn2cmp(inst->id.data, id->data, inst->id.len, id->len);

        if (rc == 0) {
            *pos = mid;
            return NGX_OK;
        }

        if (rc < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    *pos = lo;

    return NGX_DECLINED;
}


ngx_http_gateway_instance_t *
ngx_http_gateway_instance_find(ngx_http_gateway_service_t *svc, ngx_str_t *id)
{
    ngx_uint_t  pos;

    if (ngx_http_gateway_instance_index(svc, id, &pos) != NGX_OK) {
        return NULL;
    }

    return svc->instances[pos];
}


int
ngx_http_gateway_entry_cmp(const void *one, const void *two)
{
    const ngx_http_gateway_entry_t  *a = one;
    const ngx_http_gateway_entry_t  *b = two;

    return ngx_memn2cmp(a->id.data, b->id.data, a->id.len, b->id.len);
}


static ngx_int_t
ngx_http_gateway_service_reserve_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_uint_t n)
{
    ngx_uint_t                     size;
    ngx_http_gateway_instance_t  **instances;

    if (svc->ninstances + n <= svc->nalloc) {
        return NGX_OK;
    }

    size = svc->nalloc ? svc->nalloc * 2 : 4;

    if (size < svc->ninstances + n) {
        size = svc->ninstances + n;
    }

    instances = ngx_slab_alloc_locked(gmcf->shpool,
                                  size * sizeof(ngx_http_gateway_instance_t *));
    if (instances == NULL) {
        return NGX_ERROR;
    }

    if (svc->instances) {
        ngx_memcpy(instances, svc->instances,
                   svc->ninstances * sizeof(ngx_http_gateway_instance_t *));
        ngx_slab_free_locked(gmcf->shpool, svc->instances);
    }

    svc->instances = instances;
    svc->nalloc = size;

    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_upsert_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *service, ngx_str_t *id, ngx_gateway_record_t *rec,
    ngx_uint_t *created)
{
    ngx_uint_t                    pos;
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_instance_t  *inst;

    *created = 0;

    svc = ngx_http_gateway_service_get_locked(gmcf, service);
    if (svc == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_gateway_instance_index(svc, id, &pos) == NGX_OK) {
        inst = ngx_http_gateway_instance_update_locked(gmcf,
                                                       svc->instances[pos],
                                                       id, rec);
        return inst ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_gateway_service_reserve_locked(gmcf, svc, 1) != NGX_OK) {
        goto failed;
    }

    inst = ngx_http_gateway_instance_update_locked(gmcf, NULL, id, rec);
    if (inst == NULL) {
        goto failed;
    }

    ngx_memmove(&svc->instances[pos + 1], &svc->instances[pos],
                (svc->ninstances - pos) * sizeof(ngx_http_gateway_instance_t *));
    svc->instances[pos] = inst;
    svc->ninstances++;

    *created = 1;

    return NGX_OK;

failed:

    if (svc->ninstances == 0) {
        ngx_http_gateway_service_delete_locked(gmcf, svc);
    }

    return NGX_ERROR;
}


/*
 * Applies entries sorted by id (no id twice) to svc in one merge: O(n + k)
 * plus O(k log n) lookups.  New instances are created aside and merged in
 * at the end, so the service is consistent whatever fails.  fresh holds
 * room for n pointers.  NGX_ERROR: the zone is full, what fitted is applied.
 */

ngx_int_t
ngx_http_gateway_upsert_batch_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_entry_t *entries,
    ngx_uint_t n, ngx_http_gateway_instance_t **fresh)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i, k, pos, a, b, d;
    ngx_http_gateway_instance_t  *inst, **dst;

    rc = NGX_OK;
    k = 0;

    for (i = 0; i < n; i++) {

        if (ngx_http_gateway_instance_index(svc, &entries[i].id, &pos)
            == NGX_OK)
        {
            if (ngx_http_gateway_instance_update_locked(gmcf,
                                                        svc->instances[pos],
                                                        &entries[i].id,
                                                        &entries[i].rec)
                == NULL)
            {
                rc = NGX_ERROR;
                break;
            }

            continue;
        }

        inst = ngx_http_gateway_instance_update_locked(gmcf, NULL,
                                                       &entries[i].id,
                                                       &entries[i].rec);
        if (inst == NULL) {
            rc = NGX_ERROR;
            break;
        }

        fresh[k++] = inst;
    }

    if (k == 0) {
        return rc;
    }

    if (ngx_http_gateway_service_reserve_locked(gmcf, svc, k) != NGX_OK) {

        for (i = 0; i < k; i++) {
            ngx_http_gateway_instance_drop_locked(gmcf, fresh[i]);
        }

        return NGX_ERROR;
    }

    /* merge from the end: both runs are sorted by id */

    a = svc->ninstances;
    b = k;
    d = a + b;
    dst = svc->instances;

    while (b) {
        if (a
            && ngx_memn2cmp(dst[a - 1]->id.data, fresh[b - 1]->id.data,
                            dst[a - 1]->id.len, fresh[b - 1]->id.len)
               > 0)
        {
            dst[--d] = dst[--a];

        } else {
            dst[--d] = fresh[--b];
        }
    }

    svc->ninstances += k;

    return rc;
}


/*
 * Writes rec into inst, or into a new instance when inst is NULL; returns
 * the instance, or NULL when the zone is full (inst is then unchanged).
 */

static ngx_http_gateway_instance_t *
ngx_http_gateway_instance_update_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_instance_t *inst, ngx_str_t *id,
    ngx_gateway_record_t *rec)
{
    u_char      *data, *p;
    size_t       len;
    ngx_uint_t   created;

    if (inst && ngx_http_gateway_instance_same(inst, rec)) {
        inst->mark = gmcf->sh->mark;

        if (gmcf->redis == NULL) {
            inst->expires = rec->ttl ? ngx_current_msec + rec->ttl * 1000 : 0;
        }

        return inst;
    }

    len = ngx_align(rec->addr.socklen, sizeof(void *)) + id->len
          + rec->addr.text_len + rec->zone_len + rec->meta_len;

    data = ngx_slab_alloc_locked(gmcf->shpool, len);
    if (data == NULL) {
        return NULL;
    }

    created = (inst == NULL);

    if (created) {
        inst = ngx_slab_calloc_locked(gmcf->shpool,
                                      sizeof(ngx_http_gateway_instance_t));
        if (inst == NULL) {
            ngx_slab_free_locked(gmcf->shpool, data);
            return NULL;
        }

        inst->uid = gmcf->sh->next_uid++;
        gmcf->sh->ninstances++;
        gmcf->sh->allocated++;

    } else {
        ngx_slab_free_locked(gmcf->shpool, inst->data);
    }

    p = data;

    inst->sockaddr = (struct sockaddr *) p;
    inst->socklen = rec->addr.socklen;
    ngx_memcpy(p, &rec->addr.u, rec->addr.socklen);
    p += ngx_align(rec->addr.socklen, sizeof(void *));

    inst->id.data = p;
    inst->id.len = id->len;
    p = ngx_cpymem(p, id->data, id->len);

    inst->name.data = p;
    inst->name.len = rec->addr.text_len;
    p = ngx_cpymem(p, rec->addr.text, rec->addr.text_len);

    inst->zone.data = p;
    inst->zone.len = rec->zone_len;
    p = ngx_cpymem(p, rec->zone, rec->zone_len);

    inst->meta.data = p;
    inst->meta.len = rec->meta_len;
    ngx_memcpy(p, rec->meta, rec->meta_len);

    inst->data = data;

    if (created || inst->weight != rec->weight) {
        ngx_gateway_swrr_reset(&inst->rr, (int) rec->weight);
    }

    inst->weight = rec->weight;
    inst->state = rec->state;
    inst->ttl = rec->ttl;
    inst->mark = gmcf->sh->mark;

    if (gmcf->redis == NULL) {
        inst->expires = rec->ttl ? ngx_current_msec + rec->ttl * 1000 : 0;

        if (inst->expires
            && (gmcf->sh->next_expire == 0
                || inst->expires < gmcf->sh->next_expire))
        {
            gmcf->sh->next_expire = inst->expires;
        }
    }

    gmcf->sh->generation++;

    return inst;
}


static ngx_uint_t
ngx_http_gateway_instance_same(ngx_http_gateway_instance_t *inst,
    ngx_gateway_record_t *rec)
{
    return inst->socklen == rec->addr.socklen
           && ngx_memcmp(inst->sockaddr, &rec->addr.u, inst->socklen) == 0
           && inst->weight == rec->weight
           && inst->state == (ngx_uint_t) rec->state
           && inst->ttl == rec->ttl
           && inst->zone.len == rec->zone_len
           && ngx_memcmp(inst->zone.data, rec->zone, rec->zone_len) == 0
           && inst->meta.len == rec->meta_len
           && ngx_memcmp(inst->meta.data, rec->meta, rec->meta_len) == 0;
}


ngx_int_t
ngx_http_gateway_remove_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_str_t *id)
{
    ngx_uint_t                    pos;
    ngx_http_gateway_instance_t  *inst;

    if (ngx_http_gateway_instance_index(svc, id, &pos) != NGX_OK) {
        return NGX_DECLINED;
    }

    inst = svc->instances[pos];

    ngx_memmove(&svc->instances[pos], &svc->instances[pos + 1],
                (svc->ninstances - pos - 1)
                * sizeof(ngx_http_gateway_instance_t *));
    svc->ninstances--;

    ngx_http_gateway_instance_drop_locked(gmcf, inst);

    return NGX_OK;
}


void
ngx_http_gateway_service_sweep_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_uint_t mark)
{
    ngx_uint_t                    i, n;
    ngx_http_gateway_instance_t  *inst;

    n = 0;

    for (i = 0; i < svc->ninstances; i++) {
        inst = svc->instances[i];

        if (inst->mark == mark) {
            svc->instances[n++] = inst;
            continue;
        }

        ngx_http_gateway_instance_drop_locked(gmcf, inst);
    }

    svc->ninstances = n;
}


/* takes an instance out of the registry; requests may still hold it */

static void
ngx_http_gateway_instance_drop_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_instance_t *inst)
{
    inst->removed = 1;
    gmcf->sh->ninstances--;
    gmcf->sh->generation++;

    ngx_http_gateway_instance_release_locked(gmcf, inst);
}


void
ngx_http_gateway_instance_release_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_instance_t *inst)
{
    if (inst->removed && inst->refs == 0) {
        ngx_http_gateway_instance_free_locked(gmcf, inst);
    }
}


static void
ngx_http_gateway_instance_free_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_instance_t *inst)
{
    ngx_slab_free_locked(gmcf->shpool, inst->data);
    ngx_slab_free_locked(gmcf->shpool, inst);

    gmcf->sh->allocated--;
}


ngx_uint_t
ngx_http_gateway_expire_locked(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_uint_t                    i, n, removed;
    ngx_msec_t                    next;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_instance_t  *inst;

    if (gmcf->sh->next_expire == 0
        || (ngx_msec_int_t) (gmcf->sh->next_expire - ngx_current_msec) > 0)
    {
        return 0;
    }

    removed = 0;
    next = 0;

    root = gmcf->sh->rbtree.root;
    sentinel = gmcf->sh->rbtree.sentinel;

    if (root == sentinel) {
        gmcf->sh->next_expire = 0;
        return 0;
    }

    node = ngx_rbtree_min(root, sentinel);

    while (node) {
        svc = (ngx_http_gateway_service_t *) node;
        node = ngx_rbtree_next(&gmcf->sh->rbtree, node);

        n = 0;

        for (i = 0; i < svc->ninstances; i++) {
            inst = svc->instances[i];

            if (inst->expires
                && (ngx_msec_int_t) (inst->expires - ngx_current_msec) <= 0)
            {
                ngx_log_error(NGX_LOG_NOTICE, gmcf->log, 0,
                              "gateway: instance \"%V\" of service \"%V\" "
                              "missed its heartbeat, removed",
                              &inst->id, &svc->sn.str);

                ngx_http_gateway_instance_drop_locked(gmcf, inst);
                removed++;
                continue;
            }

            if (inst->expires
                && (next == 0
                    || (ngx_msec_int_t) (inst->expires - next) < 0))
            {
                next = inst->expires;
            }

            svc->instances[n++] = inst;
        }

        svc->ninstances = n;

        if (n == 0) {
            ngx_http_gateway_service_delete_locked(gmcf, svc);
        }
    }

    gmcf->sh->next_expire = next;

    return removed;
}


ngx_int_t
ngx_http_gateway_addr_allowed(ngx_http_gateway_main_conf_t *gmcf,
    ngx_gateway_addr_t *addr)
{
    if (gmcf->allow_all) {
        return 1;
    }

    return ngx_gateway_addr_allowed(addr, gmcf->allow->elts,
                                    gmcf->allow->nelts);
}


ngx_int_t
ngx_http_gateway_record_from_json(ngx_gateway_json_tok_t *toks, int obj,
    ngx_gateway_record_t *rec,
    ngx_uint_t flags, const char **err)
{
    int                      i, k, v, n;
    char                     num[32];
    int64_t                  iv;
    ngx_uint_t               j;
    ngx_gateway_json_tok_t  *key, *val;

    static const char  *strings[] = { "address", "zone", "state", NULL };
    static const char  *numbers[] = { "weight", "ttl", NULL };

    if (toks[obj].type != NGX_GATEWAY_JSON_OBJECT) {
        *err = "the body must be a JSON object";
        return NGX_ERROR;
    }

    k = obj + 1;

    for (i = 0; i < toks[obj].size; i++) {
        key = &toks[k];
        v = k + 1;
        val = &toks[v];
        k = val->next;

        for (j = 0; strings[j]; j++) {
            if (key->len == ngx_strlen(strings[j])
                && ngx_memcmp(key->start, strings[j], key->len) == 0)
            {
                break;
            }
        }

        if (strings[j]) {
            if (val->type != NGX_GATEWAY_JSON_STRING
                || ngx_strlchr((u_char *) val->start,
                               (u_char *) val->start + val->len, '\\'))
            {
                *err = "\"address\", \"zone\" and \"state\" must be plain "
                       "strings";
                return NGX_ERROR;
            }

            if (ngx_gateway_record_set(rec, strings[j], ngx_strlen(strings[j]),
                                       val->start, val->len, err)
                != 0)
            {
                return NGX_ERROR;
            }

            continue;
        }

        for (j = 0; numbers[j]; j++) {
            if (key->len == ngx_strlen(numbers[j])
                && ngx_memcmp(key->start, numbers[j], key->len) == 0)
            {
                break;
            }
        }

        if (numbers[j]) {
            if (val->type != NGX_GATEWAY_JSON_NUMBER
                || ngx_gateway_json_int(val, &iv) != 0
                || iv < 0)
            {
                *err = j == 0 ? "\"weight\" must be an integer 1..1000"
                              : "\"ttl\" must be an integer 0..86400";
                return NGX_ERROR;
            }

            n = ngx_sprintf((u_char *) num, "%L", iv) - (u_char *) num;

            if (ngx_gateway_record_set(rec, numbers[j], ngx_strlen(numbers[j]),
                                       num, n, err)
                != 0)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (key->len == sizeof("metadata") - 1
            && ngx_memcmp(key->start, "metadata", key->len) == 0)
        {
            if (val->type != NGX_GATEWAY_JSON_OBJECT) {
                *err = "\"metadata\" must be a JSON object";
                return NGX_ERROR;
            }

            if (ngx_gateway_record_set(rec, "metadata", sizeof("metadata") - 1,
                                       val->start, val->len, err)
                != 0)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (key->len == sizeof("id") - 1
            && ngx_memcmp(key->start, "id", key->len) == 0
            && val->type == NGX_GATEWAY_JSON_STRING)
        {
            continue;
        }

        if (flags & NGX_HTTP_GATEWAY_JSON_LENIENT) {
            continue;
        }

        *err = "unknown field; known fields are \"address\", \"weight\", "
               "\"zone\", \"state\", \"ttl\" and \"metadata\"";
        return NGX_ERROR;
    }

    if (!(flags & NGX_HTTP_GATEWAY_JSON_PARTIAL)
        && ngx_gateway_record_check(rec, err) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_dump(ngx_pool_t *pool, ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *service, ngx_uint_t mode, ngx_buf_t **out)
{
    size_t                       len;
    u_char                      *p;
    ngx_uint_t                   full;
    ngx_buf_t                   *b;
    ngx_rbtree_node_t           *node, *root, *sentinel;
    ngx_http_gateway_service_t  *svc;

    full = (mode != NGX_HTTP_GATEWAY_DUMP_SUMMARY);

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    if (service) {
        svc = ngx_http_gateway_service_lookup(gmcf, service);
        if (svc == NULL) {
            ngx_shmtx_unlock(&gmcf->shpool->mutex);
            return NGX_DECLINED;
        }

        len = ngx_http_gateway_dump_service(NULL, svc, 1);

        b = ngx_create_temp_buf(pool, len);
        if (b == NULL) {
            ngx_shmtx_unlock(&gmcf->shpool->mutex);
            return NGX_ERROR;
        }

        b->last += ngx_http_gateway_dump_service(b->last, svc, 1);

        ngx_shmtx_unlock(&gmcf->shpool->mutex);

        *out = b;
        return NGX_OK;
    }

    root = gmcf->sh->rbtree.root;
    sentinel = gmcf->sh->rbtree.sentinel;

    len = sizeof("{\"version\":1,\"generation\":,\"allocated\":,"
                 "\"stale\":false,\"stale_since\":null,"
                 "\"services\":[]}\n")
          + 2 * NGX_INT_T_LEN + NGX_TIME_T_LEN;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&gmcf->sh->rbtree, node))
        {
            svc = (ngx_http_gateway_service_t *) node;
            len += ngx_http_gateway_dump_service(NULL, svc, full) + 2;
        }
    }

    b = ngx_create_temp_buf(pool, len);
    if (b == NULL) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_ERROR;
    }

    if (mode == NGX_HTTP_GATEWAY_DUMP_LINES) {
        p = ngx_sprintf(b->last, "{\"version\":1,\"generation\":%ui}\n",
                        gmcf->sh->generation);

    } else {
        p = ngx_sprintf(b->last, "{\"generation\":%ui,\"allocated\":%ui,",
                        gmcf->sh->generation, gmcf->sh->allocated);

        if (gmcf->sh->stale_since) {
            p = ngx_sprintf(p, "\"stale\":true,\"stale_since\":%T,",
                            gmcf->sh->stale_since);

        } else {
            p = ngx_cpymem(p, "\"stale\":false,\"stale_since\":null,",
                           sizeof("\"stale\":false,\"stale_since\":null,")
                           - 1);
        }

        p = ngx_cpymem(p, "\"services\":[", sizeof("\"services\":[") - 1);
    }

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&gmcf->sh->rbtree, node))
        {
            svc = (ngx_http_gateway_service_t *) node;

            if (mode != NGX_HTTP_GATEWAY_DUMP_LINES && p[-1] != '[') {
                *p++ = ',';
            }

            p += ngx_http_gateway_dump_service(p, svc, full);

            if (mode == NGX_HTTP_GATEWAY_DUMP_LINES) {
                *p++ = '\n';
            }
        }
    }

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    if (mode != NGX_HTTP_GATEWAY_DUMP_LINES) {
        *p++ = ']';
        *p++ = '}';
    }

    b->last = p;

    *out = b;
    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_dump_one(ngx_pool_t *pool,
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *service, ngx_str_t *id,
    ngx_buf_t **out)
{
    ngx_buf_t                    *b;
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_instance_t  *inst;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    svc = ngx_http_gateway_service_lookup(gmcf, service);
    inst = svc ? ngx_http_gateway_instance_find(svc, id) : NULL;

    if (inst == NULL) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    b = ngx_create_temp_buf(pool, ngx_http_gateway_dump_instance(NULL, inst));
    if (b == NULL) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_ERROR;
    }

    b->last += ngx_http_gateway_dump_instance(b->last, inst);

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    *out = b;
    return NGX_OK;
}


/* with p == NULL returns the length that would be written */

static size_t
ngx_http_gateway_dump_service(u_char *p, ngx_http_gateway_service_t *svc,
    ngx_uint_t full)
{
    u_char      *start;
    size_t       len;
    ngx_uint_t   i, up;

    if (p == NULL) {
        len = sizeof("{\"name\":\"\",\"revision\":,\"instances\":[],\"up\":}")
              + svc->sn.str.len + 2 * NGX_INT64_LEN;

        for (i = 0; i < svc->ninstances; i++) {
            len += full ? ngx_http_gateway_dump_instance(NULL,
                                                         svc->instances[i]) + 1
                        : 0;
        }

        return len;
    }

    start = p;
    up = 0;

    for (i = 0; i < svc->ninstances; i++) {
        up += (svc->instances[i]->state == NGX_GATEWAY_STATE_UP);
    }

    p = ngx_sprintf(p, "{\"name\":\"%V\",\"revision\":%uL,\"up\":%ui,"
                    "\"instances\":", &svc->sn.str, svc->revision, up);

    if (!full) {
        p = ngx_sprintf(p, "%ui}", svc->ninstances);
        return p - start;
    }

    *p++ = '[';

    for (i = 0; i < svc->ninstances; i++) {
        if (i) {
            *p++ = ',';
        }

        p += ngx_http_gateway_dump_instance(p, svc->instances[i]);
    }

    *p++ = ']';
    *p++ = '}';

    return p - start;
}


static size_t
ngx_http_gateway_dump_instance(u_char *p, ngx_http_gateway_instance_t *inst)
{
    u_char      *start;
    ngx_msec_t   left;

    if (p == NULL) {
        return sizeof("{\"id\":\"\",\"address\":\"\",\"weight\":,\"zone\":\"\","
                      "\"state\":\"drain\",\"ttl\":,\"expires_in_ms\":,"
                      "\"metadata\":,\"active\":,\"requests\":,"
                      "\"fails\":}")
               + inst->id.len + 6 * inst->name.len + inst->zone.len
               + inst->meta.len + 7 * NGX_INT_T_LEN;
    }

    start = p;

    p = ngx_sprintf(p, "{\"id\":\"%V\",\"address\":\"", &inst->id);
    p += ngx_gateway_json_escape((char *) p, (char *) inst->name.data,
                                 inst->name.len);

    p = ngx_sprintf(p, "\",\"weight\":%ui,\"zone\":\"%V\",\"state\":\"%s\","
                    "\"ttl\":%ui,",
                    inst->weight, &inst->zone,
                    ngx_gateway_state_name((int) inst->state), inst->ttl);

    if (inst->expires) {
        left = (ngx_msec_int_t) (inst->expires - ngx_current_msec) > 0
               ? inst->expires - ngx_current_msec : 0;
        p = ngx_sprintf(p, "\"expires_in_ms\":%M,", left);
    }

    p = ngx_sprintf(p, "\"metadata\":%V,\"active\":%ui,\"requests\":%ui,"
                    "\"fails\":%ui}",
                    &inst->meta, inst->conns, inst->requests, inst->fails);

    return p - start;
}

