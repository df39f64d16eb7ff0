
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_ADMIN_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_ADMIN_H_INCLUDED_


#include "ngx_http_gateway.h"


/*
 * The admin API's request, shared by its routing and auth
 * (ngx_http_gateway_admin_module.c) and its two backends: the embedded
 * registry (ngx_http_gateway_admin_embedded.c) and Redis
 * (ngx_http_gateway_admin_redis.c).
 */


typedef enum {
    ngx_http_gateway_op_list = 0,
    ngx_http_gateway_op_show,
    ngx_http_gateway_op_register,
    ngx_http_gateway_op_patch,
    ngx_http_gateway_op_heartbeat,
    ngx_http_gateway_op_deregister
} ngx_http_gateway_op_e;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_gateway_main_conf_t   *gmcf;
    ngx_http_gateway_op_e           op;
    ngx_str_t                       service;
    ngx_str_t                       id;

    ngx_gateway_record_t            rec;      /* PATCH: the fields given
                                                 are in rec.given */

    ngx_http_gateway_redis_call_t  *call;
    ngx_event_t                     timeout;
    const char                     *skipped;  /* why Redis' record was not
                                                 applied here */
} ngx_http_gateway_admin_ctx_t;


/* what a backend answers with: ngx_http_gateway_admin_module.c */

ngx_int_t ngx_http_gateway_admin_done(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_int_t rc, ngx_uint_t created);
ngx_int_t ngx_http_gateway_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *msg);

/* the backends */

ngx_int_t ngx_http_gateway_admin_embedded_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx);
ngx_int_t ngx_http_gateway_admin_redis_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx);


#endif /* _NGX_HTTP_GATEWAY_ADMIN_H_INCLUDED_ */
