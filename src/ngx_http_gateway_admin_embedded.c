
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_admin.h"


/* the admin API's writes to the embedded registry: the zone itself */


ngx_int_t
ngx_http_gateway_admin_embedded_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_uint_t                     created;
    ngx_gateway_record_t           rec, cur;
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

        /* the instance as it is, with the fields a patch gives */

        ngx_http_gateway_instance_record(inst, &cur);
        ngx_gateway_record_init(&rec);

        if (ngx_gateway_record_merge(&rec, &cur, NGX_GATEWAY_RECORD_ALL) != 0
            || ngx_gateway_record_merge(&rec, &ctx->rec, ctx->rec.given) != 0)
        {
            rc = NGX_ERROR;
            break;
        }

        rc = ngx_http_gateway_upsert_locked(gmcf, &ctx->service, &ctx->id,
                                            &rec, &created);
        rc = (rc == NGX_OK) ? NGX_OK : NGX_BUSY;

        break;
    }

    ngx_http_gateway_write_end(gmcf);

    return ngx_http_gateway_admin_done(r, ctx, rc, created);
}
