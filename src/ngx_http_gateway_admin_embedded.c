
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_admin.h"


/* the admin API's writes to the embedded registry: the zone itself */


static ngx_int_t ngx_http_gateway_admin_record_of(ngx_pool_t *pool,
    ngx_http_gateway_instance_t *inst, ngx_gateway_record_t *rec);


ngx_int_t
ngx_http_gateway_admin_embedded_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_uint_t                     created;
    ngx_gateway_record_t           rec;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_instance_t   *inst;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ctx->gmcf;
    created = 0;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    svc = ngx_http_gateway_service_lookup(gmcf, &ctx->service);
    inst = svc ? ngx_http_gateway_instance_find(svc, &ctx->id) : NULL;

    switch (ctx->op) {

    case ngx_http_gateway_op_register:
        rc = ngx_http_gateway_upsert_locked(gmcf, &ctx->service, &ctx->id,
                                            &ctx->rec, &created);
        rc = (rc == NGX_OK) ? NGX_OK : NGX_BUSY;
        break;

    case ngx_http_gateway_op_deregister:
        rc = svc ? ngx_http_gateway_remove_locked(gmcf, svc, &ctx->id)
                 : NGX_DECLINED;

        if (rc == NGX_OK && svc->ninstances == 0) {
            ngx_http_gateway_service_delete_locked(gmcf, svc);
        }

        break;

    default: /* patch, heartbeat */

        if (inst == NULL) {
            rc = NGX_DECLINED;
            break;
        }

        rc = ngx_http_gateway_admin_record_of(r->pool, inst, &rec);

        if (rc == NGX_OK && ctx->op == ngx_http_gateway_op_patch) {
            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_WEIGHT) {
                rec.weight = ctx->rec.weight;
            }

            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_STATE) {
                rec.state = ctx->rec.state;
            }

            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_ZONE) {
                rec.zone = ctx->rec.zone;
                rec.zone_len = ctx->rec.zone_len;
            }

            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_META) {
                rec.meta = ctx->rec.meta;
                rec.meta_len = ctx->rec.meta_len;
            }

            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_TTL) {
                rec.ttl = ctx->rec.ttl;
            }

            if (ctx->fields & NGX_HTTP_GATEWAY_FIELD_ADDR) {
                rec.addr = ctx->rec.addr;
            }
        }

        if (rc == NGX_OK) {
            rc = ngx_http_gateway_upsert_locked(gmcf, &ctx->service,
                                                &ctx->id, &rec, &created);
            rc = (rc == NGX_OK) ? NGX_OK : NGX_BUSY;
        }

        break;
    }

    if (rc == NGX_OK) {
        svc = ngx_http_gateway_service_lookup(gmcf, &ctx->service);
        if (svc) {
            svc->revision++;
        }
    }

    ngx_http_gateway_write_end(gmcf);

    return ngx_http_gateway_admin_done(r, ctx, rc, created);
}


/* copies an instance out of the zone; the caller holds the lock */

static ngx_int_t
ngx_http_gateway_admin_record_of(ngx_pool_t *pool,
    ngx_http_gateway_instance_t *inst, ngx_gateway_record_t *rec)
{
    u_char  *p;

    p = ngx_pnalloc(pool, inst->zone.len + inst->meta.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_gateway_record_init(rec);

    ngx_memcpy(&rec->addr.u, inst->sockaddr, inst->socklen);
    rec->addr.socklen = inst->socklen;
    ngx_memcpy(rec->addr.text, inst->name.data, inst->name.len);
    rec->addr.text_len = inst->name.len;
    rec->has_addr = 1;

    rec->weight = inst->weight;
    rec->state = (int) inst->state;
    rec->ttl = inst->ttl;

    rec->zone = (char *) p;
    rec->zone_len = inst->zone.len;
    p = ngx_cpymem(p, inst->zone.data, inst->zone.len);

    rec->meta = (char *) p;
    rec->meta_len = inst->meta.len;
    ngx_memcpy(p, inst->meta.data, inst->meta.len);

    return NGX_OK;
}
