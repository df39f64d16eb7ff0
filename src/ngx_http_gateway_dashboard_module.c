
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * gateway_dashboard: one self-contained page, compiled in from
 * src/ngx_http_gateway_dashboard.html, that reads the admin API from the
 * browser.  The only thing
 * the module puts into it is where the admin API is, checked at
 * configuration time to be a plain path, so it needs no escaping.
 */


#define NGX_HTTP_GATEWAY_DASHBOARD_MARK  "@GATEWAY_ADMIN@"


typedef struct {
    ngx_str_t                       admin;  /* empty: not a dashboard */
} ngx_http_gateway_dashboard_loc_conf_t;


static ngx_int_t ngx_http_gateway_dashboard_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_dashboard_init(ngx_conf_t *cf);
static void *ngx_http_gateway_dashboard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_dashboard(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static u_char  ngx_http_gateway_dashboard_page[] =
#include "ngx_http_gateway_dashboard_page.h"
;

/* the page around the mark */
static ngx_str_t  ngx_http_gateway_dashboard_head;
static ngx_str_t  ngx_http_gateway_dashboard_tail;


static ngx_command_t  ngx_http_gateway_dashboard_commands[] = {

    { ngx_string("gateway_dashboard"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_gateway_dashboard,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_dashboard_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_gateway_dashboard_init,       /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gateway_dashboard_create_loc_conf,
                                           /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_dashboard_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_dashboard_module_ctx, /* module context */
    ngx_http_gateway_dashboard_commands,   /* module directives */
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
ngx_http_gateway_dashboard_handler(ngx_http_request_t *r)
{
    ngx_int_t                               rc;
    ngx_uint_t                              i;
    ngx_buf_t                              *b;
    ngx_str_t                              *part[3];
    ngx_chain_t                            *cl, **last, *out;
    ngx_table_elt_t                        *h;
    ngx_http_gateway_dashboard_loc_conf_t  *dlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_dashboard_module);

    part[0] = &ngx_http_gateway_dashboard_head;
    part[1] = &dlcf->admin;
    part[2] = &ngx_http_gateway_dashboard_tail;

    out = NULL;
    last = &out;
    b = NULL;

    for (i = 0; i < 3; i++) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->pos = part[i]->data;
        b->last = part[i]->data + part[i]->len;
        b->memory = 1;

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;
        *last = cl;
        last = &cl->next;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    /* the page talks to its own origin only, and runs its own script */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Security-Policy");
    ngx_str_set(&h->value, "default-src 'none'; script-src 'unsafe-inline'; "
                           "style-src 'unsafe-inline'; connect-src 'self'; "
                           "img-src 'self' data:; frame-ancestors 'none'");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-cache");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ngx_http_gateway_dashboard_head.len
                                      + dlcf->admin.len
                                      + ngx_http_gateway_dashboard_tail.len;

    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


static ngx_int_t
ngx_http_gateway_dashboard_init(ngx_conf_t *cf)
{
    u_char  *mark;
    size_t   len;

    len = sizeof(ngx_http_gateway_dashboard_page) - 1;

    mark = (u_char *) ngx_strstr(ngx_http_gateway_dashboard_page,
                                 NGX_HTTP_GATEWAY_DASHBOARD_MARK);
    if (mark == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gateway_dashboard: the page has no \""
                           NGX_HTTP_GATEWAY_DASHBOARD_MARK "\"");
        return NGX_ERROR;
    }

    ngx_http_gateway_dashboard_head.data = ngx_http_gateway_dashboard_page;
    ngx_http_gateway_dashboard_head.len = mark
                                          - ngx_http_gateway_dashboard_page;

    mark += sizeof(NGX_HTTP_GATEWAY_DASHBOARD_MARK) - 1;

    ngx_http_gateway_dashboard_tail.data = mark;
    ngx_http_gateway_dashboard_tail.len = ngx_http_gateway_dashboard_page
                                          + len - mark;

    return NGX_OK;
}


static void *
ngx_http_gateway_dashboard_create_loc_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_gateway_dashboard_loc_conf_t));
}


/* gateway_dashboard [admin=URI]; */

static char *
ngx_http_gateway_dashboard(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_dashboard_loc_conf_t *dlcf = conf;

    u_char                    *p;
    ngx_str_t                 *value, admin;
    ngx_http_core_loc_conf_t  *clcf;

    if (dlcf->admin.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_str_set(&admin, "/gateway/");

    if (cf->args->nelts == 2) {

        if (ngx_strncmp(value[1].data, "admin=", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"gateway_dashboard\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        admin.data = value[1].data + 6;
        admin.len = value[1].len - 6;

        /* a plain absolute path: it goes into the page as it is */

        if (admin.len == 0 || admin.len > 256 || admin.data[0] != '/') {
            goto invalid;
        }

        for (p = admin.data; p < admin.data + admin.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || ngx_strchr("/._~-", *p)))
            {
                goto invalid;
            }
        }
    }

    dlcf->admin = admin;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_gateway_dashboard_handler;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid admin \"%V\" in \"gateway_dashboard\": an "
                       "absolute path of letters, digits and \"/._~-\" is "
                       "expected", &admin);
    return NGX_CONF_ERROR;
}
