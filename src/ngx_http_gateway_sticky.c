
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * gateway_sticky cookie=NAME [max_age=TIME] [path=P] [secure] [httponly]:
 * a request whose cookie names an eligible instance goes to it; otherwise
 * the algorithm chooses and the response sets the cookie to the chosen
 * instance.  The cookie's value is the instance id as the registry holds
 * it: ids are 1..64 of [A-Za-z0-9._-], all of them cookie-octets of
 * RFC 6265, so the id needs no encoding, and a value that is not a valid
 * id cannot name an instance and is ignored.
 */


typedef struct {
    ngx_http_gateway_sticky_t  *conf;
    ngx_str_t                   want;       /* the request's cookie */
    ngx_str_t                   chosen;     /* the last attempt's id */
} ngx_http_gateway_sticky_ctx_t;


static ngx_http_gateway_sticky_ctx_t *ngx_http_gateway_sticky_ctx(
    ngx_http_gateway_sticky_t *sc, ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_sticky_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_sticky_preconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_gateway_sticky_filter_init(ngx_conf_t *cf);


static ngx_http_module_t  ngx_http_gateway_sticky_module_ctx = {
    ngx_http_gateway_sticky_preconf,       /* preconfiguration */
    ngx_http_gateway_sticky_filter_init,   /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


/* the directive is the upstream module's; this module holds requests' ctx */

ngx_module_t  ngx_http_gateway_sticky_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_sticky_module_ctx,   /* module context */
    NULL,                                  /* module directives */
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


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/* the filter costs every response something: only when it is used */
static ngx_uint_t  ngx_http_gateway_sticky_used;


char *
ngx_http_gateway_sticky(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                     *p;
    time_t                      max_age;
    ngx_str_t                  *value, v, path;
    ngx_uint_t                  i, j, secure, httponly;
    ngx_http_gateway_sticky_t  *sc, **field;

    field = (ngx_http_gateway_sticky_t **) ((u_char *) conf + cmd->offset);

    if (*field) {
        return "is duplicate";
    }

    if (!ngx_http_gateway_upstream_configured(conf)) {
        return "must follow \"gateway_service\"";
    }

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_sticky_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    max_age = 0;
    ngx_str_null(&path);
    secure = 0;
    httponly = 0;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "cookie=", 7) == 0
            && sc->cookie.data == NULL)
        {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

            if (!ngx_gateway_valid_name((char *) v.data, v.len)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid cookie name \"%V\" in "
                                   "\"gateway_sticky\": must be 1..64 "
                                   "characters of [A-Za-z0-9._-], starting "
                                   "with a letter or digit", &v);
                return NGX_CONF_ERROR;
            }

            sc->cookie = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_age=", 8) == 0 && max_age == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            max_age = ngx_parse_time(&v, 1);

            if (max_age == (time_t) NGX_ERROR || max_age == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_age \"%V\" in "
                                   "\"gateway_sticky\": must be a time "
                                   "of at least 1s, in whole seconds", &v);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "path=", 5) == 0 && path.len == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;

            /* RFC 6265 path-value, and no space: printable ASCII, no ';' */

            for (j = 0; j < v.len; j++) {
                if (v.data[j] <= ' ' || v.data[j] >= 0x7f
                    || v.data[j] == ';')
                {
                    break;
                }
            }

            if (v.len == 0 || v.len > 256 || v.data[0] != '/' || j < v.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid path \"%V\" in "
                                   "\"gateway_sticky\": must start with "
                                   "\"/\", at most 256 printable ASCII "
                                   "characters without spaces or \";\"",
                                   &v);
                return NGX_CONF_ERROR;
            }

            path = v;
            continue;
        }

        if (ngx_strcmp(value[i].data, "secure") == 0 && !secure) {
            secure = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "httponly") == 0 && !httponly) {
            httponly = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"gateway_sticky\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (sc->cookie.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_sticky\" needs cookie=NAME");
        return NGX_CONF_ERROR;
    }

    if (path.len == 0) {
        ngx_str_set(&path, "/");
    }

    /* what follows the value in every Set-Cookie, built once */

    sc->attrs.len = sizeof("; Path=") - 1 + path.len
                    + (max_age ? sizeof("; Max-Age=") - 1 + NGX_TIME_T_LEN
                               : 0)
                    + (secure ? sizeof("; Secure") - 1 : 0)
                    + (httponly ? sizeof("; HttpOnly") - 1 : 0);

    p = ngx_pnalloc(cf->pool, sc->attrs.len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    sc->attrs.data = p;

    p = ngx_sprintf(p, "; Path=%V", &path);

    if (max_age) {
        p = ngx_sprintf(p, "; Max-Age=%T", max_age);
    }

    if (secure) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    if (httponly) {
        p = ngx_cpymem(p, "; HttpOnly", sizeof("; HttpOnly") - 1);
    }

    sc->attrs.len = p - sc->attrs.data;

    *field = sc;
    ngx_http_gateway_sticky_used = 1;

    return NGX_CONF_OK;
}


/* the request's state, with the cookie read once */

static ngx_http_gateway_sticky_ctx_t *
ngx_http_gateway_sticky_ctx(ngx_http_gateway_sticky_t *sc,
    ngx_http_request_t *r)
{
    u_char                          text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                       value, v;
    ngx_http_gateway_sticky_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_sticky_module);

    if (ctx && ctx->conf == sc) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gateway_sticky_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->conf = sc;

    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &sc->cookie,
                                          &value)
        != NGX_DECLINED)
    {
        if (ngx_gateway_valid_name((char *) value.data, value.len)) {
            ctx->want = value;

        } else {
            ngx_http_gateway_log_text(&v, text, value.data, value.len);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "gateway: sticky cookie \"%V\" ignored: \"%V\" is "
                          "not an instance id", &sc->cookie, &v);
        }
    }

    ngx_http_set_ctx(r, ctx, ngx_http_gateway_sticky_module);

    return ctx;
}


/*
 * The index of the instance the request's cookie names, if it is eligible
 * for sel; NGX_DECLINED otherwise.  A snapshot's peers are sorted by id,
 * as the registry keeps a service's instances.
 */

ngx_int_t
ngx_http_gateway_sticky_find(ngx_http_gateway_sticky_t *sc,
    ngx_http_gateway_select_t *sel)
{
    ngx_int_t                       rc;
    ngx_uint_t                      lo, hi, mid;
    ngx_http_gateway_peer_t        *peer;
    ngx_http_gateway_sticky_ctx_t  *ctx;

    ctx = ngx_http_gateway_sticky_ctx(sc, sel->request);

    if (ctx == NULL || ctx->want.len == 0) {
        return NGX_DECLINED;
    }

    lo = 0;
    hi = sel->snap->npeers;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        peer = &sel->snap->peers[mid];

        rc = ngx_memn2cmp(ngx_http_gateway_peer_id(peer).data, ctx->want.data,
                          peer->data->id_len, ctx->want.len);

        if (rc == 0) {
            return ngx_http_gateway_eligible(sel, peer) ? (ngx_int_t) mid
                                                        : NGX_DECLINED;
        }

        if (rc < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return NGX_DECLINED;
}


/* the attempt's instance: the response names it, unless the cookie did */

ngx_int_t
ngx_http_gateway_sticky_chosen(ngx_http_gateway_sticky_t *sc,
    ngx_http_request_t *r, ngx_http_gateway_peer_t *peer)
{
    ngx_http_gateway_sticky_ctx_t  *ctx;

    ctx = ngx_http_gateway_sticky_ctx(sc, r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    /* the snapshot may be gone when the response starts: a copy */

    if (ctx->chosen.data == NULL) {
        ctx->chosen.data = ngx_pnalloc(r->pool, NGX_GATEWAY_NAME_MAX);
        if (ctx->chosen.data == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->chosen.len = ngx_min(peer->data->id_len, NGX_GATEWAY_NAME_MAX);
    ngx_memcpy(ctx->chosen.data, ngx_http_gateway_peer_id(peer).data,
               ctx->chosen.len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_sticky_header_filter(ngx_http_request_t *r)
{
    u_char                         *p;
    size_t                          len;
    ngx_table_elt_t                *h;
    ngx_http_gateway_sticky_t      *sc;
    ngx_http_gateway_sticky_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_sticky_module);

    /* only a response that an instance gave names it */

    if (ctx == NULL
        || ctx->chosen.len == 0
        || r != r->main
        || r->upstream == NULL
        || r->upstream->headers_in.status_n == 0
        || (ctx->want.len == ctx->chosen.len
            && ngx_memcmp(ctx->want.data, ctx->chosen.data, ctx->want.len)
               == 0))
    {
        return ngx_http_next_header_filter(r);
    }

    sc = ctx->conf;

    len = sc->cookie.len + 1 + ctx->chosen.len + sc->attrs.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
    h->value.data = p;

    p = ngx_cpymem(p, sc->cookie.data, sc->cookie.len);
    *p++ = '=';
    p = ngx_cpymem(p, ctx->chosen.data, ctx->chosen.len);
    p = ngx_cpymem(p, sc->attrs.data, sc->attrs.len);

    h->value.len = p - h->value.data;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_gateway_sticky_preconf(ngx_conf_t *cf)
{
    ngx_http_gateway_sticky_used = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_sticky_filter_init(ngx_conf_t *cf)
{
    if (!ngx_http_gateway_sticky_used) {
        return NGX_OK;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_gateway_sticky_header_filter;

    return NGX_OK;
}
