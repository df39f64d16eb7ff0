
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_admin.h"


/*
 * The admin API: routing, the bearer token, reading and checking the body,
 * and the answers.  A write goes to the registry's backend: the zone
 * (ngx_http_gateway_admin_embedded.c) or Redis
 * (ngx_http_gateway_admin_redis.c).
 */


#define NGX_HTTP_GATEWAY_ADMIN_BODY_MAX  65536


typedef struct {
    ngx_flag_t                      enable;
    ngx_str_t                       token;
} ngx_http_gateway_admin_loc_conf_t;


static ngx_int_t ngx_http_gateway_admin_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_admin_route(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, const char **err);
static ngx_int_t ngx_http_gateway_admin_authorized(ngx_http_request_t *r,
    ngx_http_gateway_admin_loc_conf_t *alcf);
static void ngx_http_gateway_admin_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_admin_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_gateway_admin_parse(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_str_t *body, const char **err);
static ngx_int_t ngx_http_gateway_admin_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_admin_unapplied(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_uint_t created);
static ngx_int_t ngx_http_gateway_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_buf_t *b);

static void *ngx_http_gateway_admin_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_admin_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_gateway_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_admin_commands[] = {

    { ngx_string("gateway_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gateway_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_admin_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gateway_admin_loc_conf_t, token),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_admin_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gateway_admin_create_loc_conf, /* create location configuration */
    ngx_http_gateway_admin_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_admin_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_admin_module_ctx,    /* module context */
    ngx_http_gateway_admin_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_gateway_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    const char                         *err;
    ngx_http_gateway_admin_ctx_t       *ctx;
    ngx_http_gateway_main_conf_t       *gmcf;
    ngx_http_gateway_admin_loc_conf_t  *alcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_admin_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gateway_admin_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->gmcf = gmcf;

    ngx_http_set_ctx(r, ctx, ngx_http_gateway_admin_module);

    rc = ngx_http_gateway_admin_route(r, ctx, &err);
    if (rc != NGX_OK) {
        ngx_http_discard_request_body(r);
        return ngx_http_gateway_admin_error(r, rc, err);
    }

    if (ctx->op == ngx_http_gateway_op_list
        || ctx->op == ngx_http_gateway_op_show)
    {
        ngx_buf_t  *b;

        ngx_http_discard_request_body(r);

        rc = ngx_http_gateway_dump(r->pool, gmcf,
                                   ctx->op == ngx_http_gateway_op_show
                                   ? &ctx->service : NULL,
                                   NGX_HTTP_GATEWAY_DUMP_SUMMARY, &b);

        if (rc == NGX_DECLINED) {
            return ngx_http_gateway_admin_error(r, NGX_HTTP_NOT_FOUND,
                                                "no such service");
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_gateway_admin_send(r, NGX_HTTP_OK, b);
    }

    if (!ngx_http_gateway_admin_authorized(r, alcf)) {
        ngx_http_discard_request_body(r);
        return ngx_http_gateway_admin_error(r, NGX_HTTP_UNAUTHORIZED,
                                            "a valid bearer token is "
                                            "required for writes");
    }

    if (r->headers_in.content_length_n > NGX_HTTP_GATEWAY_ADMIN_BODY_MAX) {
        ngx_http_discard_request_body(r);
        return ngx_http_gateway_admin_error(r,
                                            NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                            "the body is larger than 64k");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_gateway_admin_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The API lives under ".../services" wherever the location puts it:
 * services, services/NAME, services/NAME/instances/ID[/heartbeat].
 */

static ngx_int_t
ngx_http_gateway_admin_route(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, const char **err)
{
    u_char           *p, *last, *seg[4];
    size_t            len[4];
    ngx_uint_t        n;
    ngx_table_elt_t  *allow;

    static ngx_str_t  services = ngx_string("/services");

    p = ngx_strlcasestrn(r->uri.data, r->uri.data + r->uri.len,
                         services.data, services.len - 1);

    last = r->uri.data + r->uri.len;

    while (p) {
        if (p + services.len == last || p[services.len] == '/') {
            break;
        }

        p = ngx_strlcasestrn(p + 1, last, services.data, services.len - 1);
    }

    if (p == NULL) {
        *err = "not found; the API is under \"services\"";
        return NGX_HTTP_NOT_FOUND;
    }

    p += services.len;
    n = 0;

    while (p < last) {
        p++;

        if (p == last) {
            break;
        }

        if (n == 4) {
            *err = "not found";
            return NGX_HTTP_NOT_FOUND;
        }

        seg[n] = p;

        while (p < last && *p != '/') {
            p++;
        }

        len[n] = p - seg[n];
        n++;
    }

    if (n >= 1) {
        ctx->service.data = seg[0];
        ctx->service.len = len[0];

        if (!ngx_gateway_valid_name((char *) seg[0], len[0])) {
            *err = "invalid service name: 1-64 of A-Z a-z 0-9 . _ -, "
                   "starting with a letter or digit";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (n >= 2
        && (len[1] != 9 || ngx_strncmp(seg[1], "instances", 9) != 0 || n < 3))
    {
        *err = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    if (n >= 3) {
        ctx->id.data = seg[2];
        ctx->id.len = len[2];

        if (!ngx_gateway_valid_name((char *) seg[2], len[2])) {
            *err = "invalid instance id: 1-64 of A-Z a-z 0-9 . _ -, "
                   "starting with a letter or digit";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (n == 4 && (len[3] != 9 || ngx_strncmp(seg[3], "heartbeat", 9) != 0)) {
        *err = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    switch (n) {

    case 0:
    case 1:
        ctx->op = n ? ngx_http_gateway_op_show : ngx_http_gateway_op_list;

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            goto not_allowed;
        }

        break;

    case 3:
        if (r->method == NGX_HTTP_PUT) {
            ctx->op = ngx_http_gateway_op_register;

        } else if (r->method == NGX_HTTP_PATCH) {
            ctx->op = ngx_http_gateway_op_patch;

        } else if (r->method == NGX_HTTP_DELETE) {
            ctx->op = ngx_http_gateway_op_deregister;

        } else {
            goto not_allowed;
        }

        break;

    default: /* 4 */
        ctx->op = ngx_http_gateway_op_heartbeat;

        if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_PUT) {
            goto not_allowed;
        }

        break;
    }

    return NGX_OK;

not_allowed:

    allow = ngx_list_push(&r->headers_out.headers);
    if (allow == NULL) {
        *err = "out of memory";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow->hash = 1;
    ngx_str_set(&allow->key, "Allow");

    switch (n) {
    case 0:
    case 1:
        ngx_str_set(&allow->value, "GET, HEAD");
        break;
    case 3:
        ngx_str_set(&allow->value, "PUT, PATCH, DELETE");
        break;
    default:
        ngx_str_set(&allow->value, "POST, PUT");
    }

    *err = "method not allowed here";
    return NGX_HTTP_NOT_ALLOWED;
}


static ngx_int_t
ngx_http_gateway_admin_authorized(ngx_http_request_t *r,
    ngx_http_gateway_admin_loc_conf_t *alcf)
{
    u_char       diff;
    ngx_str_t    v;
    ngx_uint_t   i;

    if (alcf->token.len == 0) {
        return 1;
    }

    if (r->headers_in.authorization == NULL) {
        return 0;
    }

    v = r->headers_in.authorization->value;

    if (v.len != sizeof("Bearer ") - 1 + alcf->token.len
        || ngx_strncasecmp(v.data, (u_char *) "Bearer ", 7) != 0)
    {
        return 0;
    }

    diff = 0;

    for (i = 0; i < alcf->token.len; i++) {
        diff |= v.data[7 + i] ^ alcf->token.data[i];
    }

    return diff == 0;
}


static void
ngx_http_gateway_admin_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      body;
    const char                    *err;
    ngx_http_gateway_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_admin_module);

    if (ngx_http_gateway_admin_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (body.len > NGX_HTTP_GATEWAY_ADMIN_BODY_MAX) {
        ngx_http_finalize_request(r,
            ngx_http_gateway_admin_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "the body is larger than 64k"));
        return;
    }

    rc = ngx_http_gateway_admin_parse(r, ctx, &body, &err);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
                                  ngx_http_gateway_admin_error(r, rc, err));
        return;
    }

    rc = ngx_http_gateway_admin_write(r, ctx);

    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_gateway_admin_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > NGX_HTTP_GATEWAY_ADMIN_BODY_MAX) {
        body->len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_admin_parse(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_str_t *body, const char **err)
{
    int                      ntoks;
    unsigned                 flags;
    ngx_gateway_json_tok_t  *toks;

    ngx_gateway_record_init(&ctx->rec);

    if (ctx->op == ngx_http_gateway_op_heartbeat
        || ctx->op == ngx_http_gateway_op_deregister)
    {
        return NGX_OK;
    }

    if (body->len == 0) {
        *err = "a JSON object body is required";
        return NGX_HTTP_BAD_REQUEST;
    }

    ntoks = (int) (body->len / 2 + 2);

    toks = ngx_palloc(r->pool, ntoks * sizeof(ngx_gateway_json_tok_t));
    if (toks == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ntoks = ngx_gateway_json_parse((char *) body->data, body->len, toks,
                                   ntoks, 16);
    if (ntoks < 0) {
        *err = ngx_gateway_json_strerror(ntoks);
        return NGX_HTTP_BAD_REQUEST;
    }

    flags = (ctx->op == ngx_http_gateway_op_patch)
            ? NGX_GATEWAY_RECORD_PARTIAL : 0;

    if (ngx_gateway_record_from_json(toks, 0, &ctx->rec, flags, err) != 0) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ctx->op == ngx_http_gateway_op_patch && ctx->rec.given == 0) {
        *err = "nothing to change";
        return NGX_HTTP_BAD_REQUEST;
    }

    /* a register always has an address, a patch when it changes it */

    if (ctx->rec.has_addr
        && !ngx_http_gateway_addr_allowed(ctx->gmcf, &ctx->rec.addr))
    {
        *err = "the address is not allowed by gateway_registry_allow";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_admin_write(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx)
{
    if (ctx->gmcf->redis) {
        return ngx_http_gateway_admin_redis_write(r, ctx);
    }

    return ngx_http_gateway_admin_embedded_write(r, ctx);
}


ngx_int_t
ngx_http_gateway_admin_done(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_int_t rc, ngx_uint_t created)
{
    ngx_buf_t  *b, *out;

    if (rc == NGX_DECLINED) {
        return ngx_http_gateway_admin_error(r, NGX_HTTP_NOT_FOUND,
                                            "no such instance");
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gateway: zone \"%V\" is full, admin write of "
                      "instance \"%V\" of service \"%V\" %s",
                      &ctx->gmcf->shm_zone->shm.name, &ctx->id,
                      &ctx->service,
                      ctx->gmcf->redis ? "is in redis but not applied here"
                                       : "refused");

        if (ctx->gmcf->redis == NULL) {
            return ngx_http_gateway_admin_error(r,
                                                NGX_HTTP_INTERNAL_SERVER_ERROR,
                                                "the registry zone is full");
        }

        ctx->skipped = "the registry zone is full";
        rc = NGX_ABORT;
    }

    if (rc == NGX_ABORT) {
        return ngx_http_gateway_admin_unapplied(r, ctx, created);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->op == ngx_http_gateway_op_deregister) {
        out = ngx_create_temp_buf(r->pool, sizeof("{\"deleted\":true}"));
        if (out == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        out->last = ngx_cpymem(out->last, "{\"deleted\":true}",
                               sizeof("{\"deleted\":true}") - 1);

        return ngx_http_gateway_admin_send(r, NGX_HTTP_OK, out);
    }

    rc = ngx_http_gateway_dump_one(r->pool, ctx->gmcf, &ctx->service,
                                   &ctx->id, &b);
    if (rc != NGX_OK) {
        return ngx_http_gateway_admin_error(r, NGX_HTTP_NOT_FOUND,
                                            "no such instance");
    }

    out = ngx_create_temp_buf(r->pool, sizeof("{\"service\":\"\","
                                              "\"created\":false,"
                                              "\"instance\":}")
                                       + ctx->service.len
                                       + (b->last - b->pos));
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out->last = ngx_sprintf(out->last,
                            "{\"service\":\"%V\",\"created\":%s,"
                            "\"instance\":",
                            &ctx->service, created ? "true" : "false");
    out->last = ngx_cpymem(out->last, b->pos, b->last - b->pos);
    *out->last++ = '}';

    return ngx_http_gateway_admin_send(r, created ? NGX_HTTP_CREATED
                                                  : NGX_HTTP_OK, out);
}


/*
 * Redis mode: the write is committed in the registry (Redis), and the
 * other gateways apply it, but this one could not: 202, and why.
 */

static ngx_int_t
ngx_http_gateway_admin_unapplied(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_uint_t created)
{
    size_t      len;
    ngx_buf_t  *b;

    len = ngx_strlen(ctx->skipped);

    b = ngx_create_temp_buf(r->pool,
                            sizeof("{\"service\":\"\",\"id\":\"\","
                                   "\"created\":false,\"applied\":false,"
                                   "\"reason\":\"\"}\n")
                            + ctx->service.len + ctx->id.len
                            + ngx_gateway_json_escape(NULL, ctx->skipped, len));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"service\":\"%V\",\"id\":\"%V\",\"created\":%s,"
                          "\"applied\":false,\"reason\":\"",
                          &ctx->service, &ctx->id,
                          created ? "true" : "false");
    b->last += ngx_gateway_json_escape((char *) b->last, ctx->skipped, len);
    *b->last++ = '"';
    *b->last++ = '}';

    return ngx_http_gateway_admin_send(r, NGX_HTTP_ACCEPTED, b);
}


static ngx_int_t
ngx_http_gateway_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_buf_t *b)
{
    ngx_int_t         rc;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    if (b->last < b->end) {
        *b->last++ = '\n';
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer");
        r->headers_out.www_authenticate = h;
    }

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_gateway_admin_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *msg)
{
    size_t      len;
    ngx_buf_t  *b;

    len = ngx_strlen(msg);

    b = ngx_create_temp_buf(r->pool, sizeof("{\"error\":\"\"}\n")
                                     + ngx_gateway_json_escape(NULL, msg,
                                                               len));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"error\":\"", 10);
    b->last += ngx_gateway_json_escape((char *) b->last, msg, len);
    *b->last++ = '"';
    *b->last++ = '}';

    return ngx_http_gateway_admin_send(r, status, b);
}


static void *
ngx_http_gateway_admin_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_admin_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_admin_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->token = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_gateway_admin_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_gateway_admin_loc_conf_t *prev = parent;
    ngx_http_gateway_admin_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_str_value(conf->token, prev->token, "");

    return NGX_CONF_OK;
}


static char *
ngx_http_gateway_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_admin_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_gateway_main_conf_t  *gmcf;

    if (alcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

    if (gmcf->shm_zone == NULL) {
        return "requires \"gateway_registry\" before it at the http level";
    }

    alcf->enable = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_gateway_admin_handler;

    return NGX_CONF_OK;
}
