
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_redis_schema.h"


#define NGX_HTTP_GATEWAY_ADMIN_BODY_MAX  65536
#define NGX_HTTP_GATEWAY_ADMIN_TIMEOUT   3000


typedef enum {
    ngx_http_gateway_op_list = 0,
    ngx_http_gateway_op_show,
    ngx_http_gateway_op_register,
    ngx_http_gateway_op_patch,
    ngx_http_gateway_op_heartbeat,
    ngx_http_gateway_op_deregister
} ngx_http_gateway_op_e;


typedef struct {
    ngx_flag_t                      enable;
    ngx_str_t                       token;
} ngx_http_gateway_admin_loc_conf_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_gateway_main_conf_t   *gmcf;
    ngx_http_gateway_op_e           op;
    ngx_str_t                       service;
    ngx_str_t                       id;

    ngx_gateway_record_t            rec;
    ngx_uint_t                      fields;   /* PATCH: which were given */

    ngx_http_gateway_redis_call_t  *call;
    ngx_event_t                     timeout;
    const char                     *skipped;  /* why Redis' record was not
                                                 applied here */
} ngx_http_gateway_admin_ctx_t;


/*
 * The fields of an instance, in the order of the register script's ARGV;
 * a PATCH names some of them: bit (1 << index) in ctx->fields.
 */

static ngx_str_t  ngx_http_gateway_admin_fields[] = {
    ngx_string("address"),
    ngx_string("weight"),
    ngx_string("zone"),
    ngx_string("state"),
    ngx_string("metadata"),
    ngx_string("ttl")
};

#define NGX_HTTP_GATEWAY_FIELD_ADDR    0x01
#define NGX_HTTP_GATEWAY_FIELD_WEIGHT  0x02
#define NGX_HTTP_GATEWAY_FIELD_ZONE    0x04
#define NGX_HTTP_GATEWAY_FIELD_STATE   0x08
#define NGX_HTTP_GATEWAY_FIELD_META    0x10
#define NGX_HTTP_GATEWAY_FIELD_TTL     0x20

#define NGX_HTTP_GATEWAY_NFIELDS                                             \
    (sizeof(ngx_http_gateway_admin_fields) / sizeof(ngx_str_t))

/* EVAL, script, numkeys, prefix, service, id; then a name and a value each */
#define NGX_HTTP_GATEWAY_ADMIN_ARGS  (6 + 2 * NGX_HTTP_GATEWAY_NFIELDS)


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
static ngx_int_t ngx_http_gateway_admin_write_local(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_admin_write_redis(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx);
static ngx_int_t ngx_http_gateway_admin_value(ngx_pool_t *pool,
    ngx_gateway_record_t *rec, ngx_uint_t i, ngx_str_t *v);
static void ngx_http_gateway_admin_on_reply(
    ngx_http_gateway_redis_call_t *call, redisReply *reply);
static ngx_int_t ngx_http_gateway_admin_apply_reply(
    ngx_http_gateway_admin_ctx_t *ctx, redisReply *reply,
    ngx_uint_t *created);
static void ngx_http_gateway_admin_on_timeout(ngx_event_t *ev);
static void ngx_http_gateway_admin_cleanup(void *data);
static ngx_int_t ngx_http_gateway_admin_done(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_int_t rc, ngx_uint_t created);
static ngx_int_t ngx_http_gateway_admin_unapplied(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx, ngx_uint_t created);
static ngx_int_t ngx_http_gateway_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_buf_t *b);
static ngx_int_t ngx_http_gateway_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *msg);
static ngx_int_t ngx_http_gateway_admin_record_of(ngx_pool_t *pool,
    ngx_http_gateway_instance_t *inst, ngx_gateway_record_t *rec);

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
    int                      ntoks, k, i;
    ngx_str_t               *f;
    ngx_uint_t               flags, j;
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
            ? NGX_HTTP_GATEWAY_JSON_PARTIAL : 0;

    if (ngx_http_gateway_record_from_json(toks, 0, &ctx->rec, flags, err)
        != NGX_OK)
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ctx->op == ngx_http_gateway_op_patch) {
        k = 1;

        for (i = 0; i < toks[0].size; i++) {
            for (j = 0; j < NGX_HTTP_GATEWAY_NFIELDS; j++) {
                f = &ngx_http_gateway_admin_fields[j];

                if ((size_t) toks[k].len == f->len
                    && ngx_strncmp(toks[k].start, f->data, f->len) == 0)
                {
                    ctx->fields |= 1 << j;
                }
            }

            k = toks[k + 1].next;
        }

        if (ctx->fields == 0) {
            *err = "nothing to change";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if ((ctx->op == ngx_http_gateway_op_register
         || (ctx->fields & NGX_HTTP_GATEWAY_FIELD_ADDR))
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
        return ngx_http_gateway_admin_write_redis(r, ctx);
    }

    return ngx_http_gateway_admin_write_local(r, ctx);
}


static ngx_int_t
ngx_http_gateway_admin_write_local(ngx_http_request_t *r,
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


/* the i-th field of ngx_http_gateway_admin_fields as Redis stores it */

static ngx_int_t
ngx_http_gateway_admin_value(ngx_pool_t *pool, ngx_gateway_record_t *rec,
    ngx_uint_t i, ngx_str_t *v)
{
    u_char      *p;
    ngx_uint_t   n;

    switch (i) {

    case 0: /* address */
        v->data = (u_char *) rec->addr.text;
        v->len = rec->addr.text_len;
        return NGX_OK;

    case 2: /* zone */
        v->data = (u_char *) rec->zone;
        v->len = rec->zone_len;
        return NGX_OK;

    case 3: /* state */
        v->data = (u_char *) ngx_gateway_state_name(rec->state);
        v->len = ngx_strlen(v->data);
        return NGX_OK;

    case 4: /* metadata */
        v->data = (u_char *) rec->meta;
        v->len = rec->meta_len;
        return NGX_OK;

    default: /* weight, ttl */
        n = (i == 1) ? rec->weight : rec->ttl;

        p = ngx_pnalloc(pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%ui", n) - p;
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_gateway_admin_write_redis(ngx_http_request_t *r,
    ngx_http_gateway_admin_ctx_t *ctx)
{
    int                            argc;
    size_t                         argvlen[NGX_HTTP_GATEWAY_ADMIN_ARGS];
    ngx_str_t                      v;
    ngx_uint_t                     i;
    const char                    *argv[NGX_HTTP_GATEWAY_ADMIN_ARGS];
    const ngx_str_t               *script;
    ngx_http_cleanup_t            *cln;
    ngx_gateway_record_t          *rec;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ctx->gmcf;
    rec = &ctx->rec;

    switch (ctx->op) {

    case ngx_http_gateway_op_register:
        script = &ngx_http_gateway_lua_register;
        break;

    case ngx_http_gateway_op_patch:
        script = &ngx_http_gateway_lua_patch;
        break;

    case ngx_http_gateway_op_heartbeat:
        script = &ngx_http_gateway_lua_heartbeat;
        break;

    default: /* deregister */
        script = &ngx_http_gateway_lua_deregister;
        break;
    }

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

    /* register: every field, patch: those given; a name and a value each */

    for (i = 0; i < NGX_HTTP_GATEWAY_NFIELDS; i++) {

        if (ctx->op == ngx_http_gateway_op_patch) {
            if (!(ctx->fields & (1 << i))) {
                continue;
            }

        } else if (ctx->op != ngx_http_gateway_op_register) {
            break;
        }

        argv[argc] = (char *) ngx_http_gateway_admin_fields[i].data;
        argvlen[argc++] = ngx_http_gateway_admin_fields[i].len;

        if (ngx_http_gateway_admin_value(r->pool, rec, i, &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[argc] = (char *) v.data;
        argvlen[argc++] = v.len;
    }

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


static ngx_int_t
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


static ngx_int_t
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
