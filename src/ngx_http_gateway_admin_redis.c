
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_admin.h"
#include "ngx_http_gateway_redis_schema.h"


/*
 * The admin API's writes with a Redis registry: a script commits the write
 * in Redis, and its answer is mirrored into the zone at once.
 */


#define NGX_HTTP_GATEWAY_ADMIN_TIMEOUT   3000


static void ngx_http_gateway_admin_on_reply(
    ngx_http_gateway_redis_call_t *call, redisReply *reply);
static ngx_int_t ngx_http_gateway_admin_apply_reply(
    ngx_http_gateway_admin_ctx_t *ctx, redisReply *reply,
    ngx_uint_t *created);
static void ngx_http_gateway_admin_on_timeout(ngx_event_t *ev);
static void ngx_http_gateway_admin_cleanup(void *data);


ngx_int_t
ngx_http_gateway_admin_redis_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx)
{
    int                            argc;
    size_t                        *argvlen, size;
    u_char                        *p;
    unsigned                       mask;
    ngx_uint_t                     nargs;
    const char                   **argv;
    const ngx_str_t               *script;
    ngx_http_cleanup_t            *cln;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ctx->gmcf;
    mask = 0;

    /* register: every field, patch: those given; a name and a value each */

    switch (ctx->op) {

    case ngx_http_gateway_op_register:
        script = &ngx_http_gateway_lua_register;
        mask = NGX_GATEWAY_RECORD_ALL;
        break;

    case ngx_http_gateway_op_patch:
        script = &ngx_http_gateway_lua_patch;
        mask = ctx->rec.given;
        break;

    case ngx_http_gateway_op_heartbeat:
        script = &ngx_http_gateway_lua_heartbeat;
        break;

    default: /* deregister */
        script = &ngx_http_gateway_lua_deregister;
        break;
    }

    /* EVAL, script, numkeys, prefix, service, id; then the fields */

    size = ngx_http_gateway_record_hash_size(&ctx->rec, mask, &nargs);

    argv = ngx_palloc(r->pool, (6 + nargs) * (sizeof(char *) + sizeof(size_t))
                               + size);
    if (argv == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argvlen = (size_t *) (argv + 6 + nargs);
    p = (u_char *) (argvlen + 6 + nargs);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = (const char *) script->data;
    argvlen[1] = script->len;
    argv[2] = "0";
    argvlen[2] = 1;
    argv[3] = (char *) gmcf->prefix.data;
    argvlen[3] = gmcf->prefix.len;
    argv[4] = (char *) ctx->service.data;
    argvlen[4] = ctx->service.len;
    argv[5] = (char *) ctx->id.data;
    argvlen[5] = ctx->id.len;
    argc = 6;

    argc += ngx_http_gateway_record_to_hash(&ctx->rec, mask, argv + argc,
                                            argvlen + argc, &p);

    ctx->call = ngx_http_gateway_redis_call(gmcf, argc, argv, argvlen,
                                            r->connection->log);
    if (ctx->call == NULL) {
        return ngx_http_gateway_admin_error(r,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "redis is unreachable");
    }

    ctx->call->handler = ngx_http_gateway_admin_on_reply;
    ctx->call->data = ctx;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ctx->call->handler = NULL;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_gateway_admin_cleanup;
    cln->data = ctx;

    ctx->timeout.handler = ngx_http_gateway_admin_on_timeout;
    ctx->timeout.data = ctx;
    ctx->timeout.log = r->connection->log;

    ngx_add_timer(&ctx->timeout, NGX_HTTP_GATEWAY_ADMIN_TIMEOUT);

    /* the reference taken for reading the body keeps the request */

    return NGX_DONE;
}


static void
ngx_http_gateway_admin_on_reply(ngx_http_gateway_redis_call_t *call,
    redisReply *reply)
{
    ngx_http_gateway_admin_ctx_t *ctx = call->data;

    u_char               text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t            v;
    ngx_int_t            rc;
    ngx_uint_t           created;
    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->call = NULL;

    if (ctx->timeout.timer_set) {
        ngx_del_timer(&ctx->timeout);
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_http_gateway_log_text(&v, text, reply->str, reply->len);

        } else {
            ngx_str_set(&v, "no connection");
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gateway: admin write to redis failed: %V", &v);

        rc = ngx_http_gateway_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          reply ? "redis refused the write"
                                                : "redis is unreachable");
        ngx_http_finalize_request(r, rc);
        return;
    }

    created = 0;
    rc = ngx_http_gateway_admin_apply_reply(ctx, reply, &created);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gateway: admin write to redis failed: "
                      "unexpected answer to the script");

        rc = ngx_http_gateway_admin_error(r, NGX_HTTP_BAD_GATEWAY,
                                          "unexpected answer from redis");
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_finalize_request(r,
                              ngx_http_gateway_admin_done(r, ctx, rc, created));
}


/*
 * {found, revision[, fields]}: the write is mirrored into the zone at once.
 * NGX_BUSY: it is committed in Redis, but this gateway could not hold it.
 */

static ngx_int_t
ngx_http_gateway_admin_apply_reply(ngx_http_gateway_admin_ctx_t *ctx,
    redisReply *reply, ngx_uint_t *created)
{
    ngx_int_t                      rc;
    ngx_uint_t                     n;
    ngx_gateway_record_t           rec;
    ngx_http_gateway_service_t    *svc;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ctx->gmcf;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    if (ctx->op != ngx_http_gateway_op_register
        && reply->element[0]->integer == 0)
    {
        return NGX_DECLINED;
    }

    if (ctx->op != ngx_http_gateway_op_register
        && ctx->op != ngx_http_gateway_op_deregister
        && (reply->elements != 3
            || reply->element[2]->type != REDIS_REPLY_ARRAY))
    {
        return NGX_ERROR;
    }

    *created = (ctx->op == ngx_http_gateway_op_register
                && reply->element[0]->integer == 0);

    rc = NGX_OK;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    switch (ctx->op) {

    case ngx_http_gateway_op_register:
        rc = ngx_http_gateway_upsert_locked(gmcf, &ctx->service, &ctx->id,
                                            &ctx->rec, &n);
        rc = (rc == NGX_OK) ? NGX_OK : NGX_BUSY;
        break;

    case ngx_http_gateway_op_deregister:
        svc = ngx_http_gateway_service_lookup(gmcf, &ctx->service);
        if (svc) {
            (void) ngx_http_gateway_remove_locked(gmcf, svc, &ctx->id);
        }

        break;

    default: /* patch, heartbeat */

        if (ngx_http_gateway_record_from_hash(gmcf, reply->element[2], &rec,
                                              &ctx->skipped)
            != NGX_OK)
        {
            rc = NGX_ABORT;
            break;
        }

        rc = ngx_http_gateway_upsert_locked(gmcf, &ctx->service, &ctx->id,
                                            &rec, &n);
        rc = (rc == NGX_OK) ? NGX_OK : NGX_BUSY;
        break;
    }

    if (rc == NGX_OK && reply->elements > 1
        && reply->element[1]->type == REDIS_REPLY_INTEGER)
    {
        svc = ngx_http_gateway_service_lookup(gmcf, &ctx->service);
        if (svc) {
            svc->written = (uint64_t) reply->element[1]->integer;
        }
    }

    ngx_http_gateway_write_end(gmcf);

    if (rc == NGX_ABORT) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "gateway: redis key \"" NGX_HTTP_GATEWAY_KEY_INST "\" "
                      "skipped: %s",
                      &gmcf->prefix, &ctx->service, &ctx->id, ctx->skipped);
    }

    return rc;
}


static void
ngx_http_gateway_admin_on_timeout(ngx_event_t *ev)
{
    ngx_http_gateway_admin_ctx_t *ctx = ev->data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->call) {
        ctx->call->handler = NULL;
        ctx->call = NULL;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "gateway: redis did not answer an admin write in time");

    /* the next write gets a new link rather than queueing behind this */

    ngx_http_gateway_redis_admin_close();

    rc = ngx_http_gateway_admin_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "redis did not answer in time");
    ngx_http_finalize_request(r, rc);
}


static void
ngx_http_gateway_admin_cleanup(void *data)
{
    ngx_http_gateway_admin_ctx_t *ctx = data;

    if (ctx->call) {
        ctx->call->handler = NULL;
        ctx->call = NULL;
    }

    if (ctx->timeout.timer_set) {
        ngx_del_timer(&ctx->timeout);
    }
}
