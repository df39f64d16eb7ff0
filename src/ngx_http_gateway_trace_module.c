
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_trace.h"

#include <sys/random.h>


#define NGX_HTTP_GATEWAY_TRACE_EXTRACT   0x01
#define NGX_HTTP_GATEWAY_TRACE_INJECT    0x02

/* sampling ratios in parts per million */
#define NGX_HTTP_GATEWAY_TRACE_PPM       1000000

/* text from a request in a span: longer values are cut */
#define NGX_HTTP_GATEWAY_TRACE_TEXT_MAX  256

/* the most attributes a span has */
#define NGX_HTTP_GATEWAY_TRACE_ATTRS     12

#define ngx_http_gateway_trace_str(a, key, v)                                 \
    ngx_http_gateway_trace_attr_str(a, key, sizeof(key) - 1, v)
#define ngx_http_gateway_trace_int(a, key, v)                                 \
    ngx_http_gateway_trace_attr_int(a, key, sizeof(key) - 1, v)


typedef struct {
    ngx_flag_t                   trace;
    ngx_http_complex_value_t    *trace_cv;
    ngx_uint_t                   context;
    ngx_uint_t                   sample;     /* ppm */
    uint64_t                     threshold;  /* of 53 random bits */
} ngx_http_gateway_trace_loc_conf_t;


typedef struct ngx_http_gateway_trace_ctx_s  ngx_http_gateway_trace_ctx_t;

/*
 * A request's trace, kept by the main request; a subrequest has a context
 * of its own for its attempts only (main points to the trace).
 */

struct ngx_http_gateway_trace_ctx_s {
    ngx_http_gateway_trace_ctx_t *main;

    unsigned char                trace_id[NGX_GATEWAY_TRACE_ID_LEN];
    unsigned char                span_id[NGX_GATEWAY_SPAN_ID_LEN];
    unsigned char                parent_id[NGX_GATEWAY_SPAN_ID_LEN];
    ngx_str_t                    tracestate;
    u_char                       traceparent[NGX_GATEWAY_TRACEPARENT_LEN];

    /* the open attempt's CLIENT span */
    unsigned char                attempt_id[NGX_GATEWAY_SPAN_ID_LEN];
    uint64_t                     attempt_start;
    ngx_buf_t                   *sent_buf;  /* where its traceparent is */
    u_char                      *sent;

    unsigned                     on:1;
    unsigned                     sampled:1;
    unsigned                     has_parent:1;
    unsigned                     injected:1;
};


/* what the request's headers hold of a trace context */

typedef struct {
    ngx_table_elt_t             *traceparent;
    ngx_table_elt_t             *tracestate;
    ngx_uint_t                   ntraceparent;
    ngx_uint_t                   ntracestate;
} ngx_http_gateway_trace_headers_t;


static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_get(
    ngx_http_request_t *r);
static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_attempt_ctx(
    ngx_http_request_t *r);
static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_create(
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf);
static void ngx_http_gateway_trace_cleanup(void *data);
static void ngx_http_gateway_trace_scan(ngx_http_request_t *r,
    ngx_http_gateway_trace_headers_t *th);
static ngx_int_t ngx_http_gateway_trace_inject(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *ctx, ngx_http_gateway_trace_headers_t *th);
static void ngx_http_gateway_trace_random(unsigned char *p, size_t n);
static uint64_t ngx_http_gateway_trace_now(void);
static ngx_uint_t ngx_http_gateway_trace_text(ngx_str_t *in, ngx_str_t *out);
static void ngx_http_gateway_trace_attr_str(ngx_gateway_otlp_attr_t *a,
    const char *key, size_t key_len, ngx_str_t *value);
static void ngx_http_gateway_trace_attr_int(ngx_gateway_otlp_attr_t *a,
    const char *key, size_t key_len, int64_t value);
static void ngx_http_gateway_trace_span_init(ngx_gateway_otlp_span_t *span,
    ngx_http_gateway_trace_ctx_t *t);
static void ngx_http_gateway_trace_attempt_start(
    ngx_http_gateway_attempt_t *a);
static ngx_uint_t ngx_http_gateway_trace_at(ngx_buf_t *b, u_char *p,
    ngx_http_gateway_trace_ctx_t *t);
static void ngx_http_gateway_trace_rewrite(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *actx, ngx_http_gateway_trace_ctx_t *t);
static void ngx_http_gateway_trace_attempt_end(ngx_http_gateway_attempt_t *a);
static const char *ngx_http_gateway_trace_reason(
    ngx_http_gateway_attempt_t *a, u_char *buf);
static ngx_int_t ngx_http_gateway_trace_preaccess(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_trace_log(ngx_http_request_t *r);

static ngx_int_t ngx_http_gateway_trace_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_gateway_trace_stat_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_gateway_trace_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_gateway_trace_postconf(ngx_conf_t *cf);
static void *ngx_http_gateway_trace_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_trace_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_gateway_trace_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_trace_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_gateway_trace(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gateway_trace_context(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_gateway_trace_sample(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_gateway_trace_init_process(ngx_cycle_t *cycle);
static void ngx_http_gateway_trace_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_gateway_trace_contexts[] = {
    { ngx_string("ignore"), 0 },
    { ngx_string("extract"), NGX_HTTP_GATEWAY_TRACE_EXTRACT },
    { ngx_string("inject"), NGX_HTTP_GATEWAY_TRACE_INJECT },
    { ngx_string("propagate"),
      NGX_HTTP_GATEWAY_TRACE_EXTRACT|NGX_HTTP_GATEWAY_TRACE_INJECT },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_gateway_trace_commands[] = {

    { ngx_string("gateway_trace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_trace,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_trace_context"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_trace_context,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_trace_sample"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_trace_sample,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_trace_exporter"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_gateway_trace_exporter,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_trace_service_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_gateway_trace_main_conf_t, service_name),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_trace_module_ctx = {
    ngx_http_gateway_trace_add_variables,  /* preconfiguration */
    ngx_http_gateway_trace_postconf,       /* postconfiguration */

    ngx_http_gateway_trace_create_main_conf, /* create main configuration */
    ngx_http_gateway_trace_init_main_conf, /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gateway_trace_create_loc_conf, /* create location configuration */
    ngx_http_gateway_trace_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_trace_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_trace_module_ctx,    /* module context */
    ngx_http_gateway_trace_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gateway_trace_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gateway_trace_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_GATEWAY_TRACE_VAR_TRACE_ID     0
#define NGX_HTTP_GATEWAY_TRACE_VAR_SPAN_ID      1
#define NGX_HTTP_GATEWAY_TRACE_VAR_TRACEPARENT  2

static ngx_http_variable_t  ngx_http_gateway_trace_vars[] = {

    { ngx_string("gateway_trace_id"), NULL,
      ngx_http_gateway_trace_variable,
      NGX_HTTP_GATEWAY_TRACE_VAR_TRACE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_span_id"), NULL,
      ngx_http_gateway_trace_variable,
      NGX_HTTP_GATEWAY_TRACE_VAR_SPAN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_traceparent"), NULL,
      ngx_http_gateway_trace_variable,
      NGX_HTTP_GATEWAY_TRACE_VAR_TRACEPARENT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_trace_exported"), NULL,
      ngx_http_gateway_trace_stat_variable,
      offsetof(ngx_http_gateway_trace_stats_t, exported),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_trace_dropped"), NULL,
      ngx_http_gateway_trace_stat_variable,
      offsetof(ngx_http_gateway_trace_stats_t, dropped),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gateway_trace_failed"), NULL,
      ngx_http_gateway_trace_stat_variable,
      offsetof(ngx_http_gateway_trace_stats_t, failed),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_gateway_trace_header = ngx_string("traceparent");

/* request headers come with their lowercase name and its hash */
static ngx_uint_t  ngx_http_gateway_trace_traceparent_hash;
static ngx_uint_t  ngx_http_gateway_trace_tracestate_hash;

#define ngx_http_gateway_trace_is(h, name)                                    \
    ((h)->hash == ngx_http_gateway_trace_##name##_hash                        \
     && (h)->key.len == sizeof(#name) - 1                                     \
     && ngx_memcmp((h)->lowcase_key, #name, sizeof(#name) - 1) == 0)

/* a request may set gateway_trace: the hooks are installed */
static ngx_uint_t  ngx_http_gateway_trace_used;

/* per worker */
static uint64_t  ngx_http_gateway_trace_rng;


static ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_get(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_gateway_trace_ctx_t       *ctx;
    ngx_http_gateway_trace_loc_conf_t  *tlcf;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_trace_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        /* an internal redirect cleared the module contexts */

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_gateway_trace_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_gateway_trace_module);
                break;
            }
        }
    }

    if (ctx) {
        return ctx->on ? ctx : NULL;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_trace_module);

    if (!tlcf->trace && tlcf->trace_cv == NULL) {
        return NULL;
    }

    return ngx_http_gateway_trace_create(r, tlcf);
}


static ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_create(ngx_http_request_t *r,
    ngx_http_gateway_trace_loc_conf_t *tlcf)
{
    uint64_t                           lo;
    ngx_str_t                          value;
    ngx_uint_t                         i, flags;
    ngx_pool_cleanup_t                *cln;
    ngx_gateway_traceparent_t          tp;
    ngx_http_gateway_trace_ctx_t      *ctx;
    ngx_http_gateway_trace_headers_t   th;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_gateway_trace_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_gateway_trace_ctx_t));
    ctx->main = ctx;

    cln->handler = ngx_http_gateway_trace_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_gateway_trace_module);

    if (tlcf->trace_cv) {
        if (ngx_http_complex_value(r, tlcf->trace_cv, &value) != NGX_OK) {
            return NULL;
        }

        if (value.len == 0 || (value.len == 1 && value.data[0] == '0')) {
            return NULL;
        }
    }

    ctx->on = 1;

    ngx_http_gateway_trace_scan(r, &th);

    if ((tlcf->context & NGX_HTTP_GATEWAY_TRACE_EXTRACT)
        && th.ntraceparent == 1
        && ngx_gateway_traceparent_parse(&tp,
                                         (char *) th.traceparent->value.data,
                                         th.traceparent->value.len)
           == 0)
    {
        ngx_memcpy(ctx->trace_id, tp.trace_id, NGX_GATEWAY_TRACE_ID_LEN);
        ngx_memcpy(ctx->parent_id, tp.span_id, NGX_GATEWAY_SPAN_ID_LEN);
        ctx->has_parent = 1;
        ctx->sampled = (tp.flags & NGX_GATEWAY_TRACE_SAMPLED) ? 1 : 0;

        if (th.ntracestate == 1
            && ngx_gateway_tracestate_valid((char *) th.tracestate->value.data,
                                            th.tracestate->value.len))
        {
            ctx->tracestate = th.tracestate->value;
        }

    } else {
        ngx_http_gateway_trace_random(ctx->trace_id, NGX_GATEWAY_TRACE_ID_LEN);

        /* the ratio decides on the trace id: the same one, the same way */

        lo = 0;

        for (i = 8; i < NGX_GATEWAY_TRACE_ID_LEN; i++) {
            lo = (lo << 8) | ctx->trace_id[i];
        }

        ctx->sampled = ((lo >> 11) < tlcf->threshold);
    }

    ngx_http_gateway_trace_random(ctx->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    flags = ctx->sampled ? NGX_GATEWAY_TRACE_SAMPLED : 0;

    ngx_gateway_traceparent_format((char *) ctx->traceparent, ctx->trace_id,
                                   ctx->span_id, flags);

    /* a request refused before its headers were read has no list */

    if ((tlcf->context & NGX_HTTP_GATEWAY_TRACE_INJECT)
        && r->headers_in.headers.last != NULL
        && ngx_http_gateway_trace_inject(r, ctx, &th) == NGX_OK)
    {
        ctx->injected = 1;
    }

    return ctx;
}


/* only marks the context, so that it is found after an internal redirect */

static void
ngx_http_gateway_trace_cleanup(void *data)
{
}


static ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_attempt_ctx(ngx_http_request_t *r)
{
    ngx_http_gateway_trace_ctx_t  *t, *ctx;

    t = ngx_http_gateway_trace_get(r);

    if (t == NULL || r == r->main) {
        return t;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_trace_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gateway_trace_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ctx->main = t;
        ngx_http_set_ctx(r, ctx, ngx_http_gateway_trace_module);
    }

    return ctx;
}


static void
ngx_http_gateway_trace_scan(ngx_http_request_t *r,
    ngx_http_gateway_trace_headers_t *th)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_memzero(th, sizeof(ngx_http_gateway_trace_headers_t));

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_gateway_trace_is(&h[i], traceparent)) {
            if (th->ntraceparent++ == 0) {
                th->traceparent = &h[i];
            }

        } else if (ngx_http_gateway_trace_is(&h[i], tracestate)) {
            if (th->ntracestate++ == 0) {
                th->tracestate = &h[i];
            }
        }
    }
}


/*
 * The request's own traceparent header becomes the gateway's, so that the
 * upstream request carries exactly one; a tracestate not carried on goes.
 * Only when something must go is the header list copied without it: the
 * elements themselves stay where they are, for headers_in's pointers.
 */

static ngx_int_t
ngx_http_gateway_trace_inject(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *ctx, ngx_http_gateway_trace_headers_t *th)
{
    ngx_uint_t        i, keep_state;
    ngx_list_t        old;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    keep_state = (ctx->tracestate.len != 0);

    if (th->ntraceparent > 1 || (th->ntracestate && !keep_state)) {

        old = r->headers_in.headers;

        if (ngx_list_init(&r->headers_in.headers, r->pool, 20,
                          sizeof(ngx_table_elt_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        part = &old.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (ngx_http_gateway_trace_is(&h[i], traceparent)
                || (!keep_state
                    && ngx_http_gateway_trace_is(&h[i], tracestate)))
            {
                continue;
            }

            nh = ngx_list_push(&r->headers_in.headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }

        th->traceparent = NULL;
    }

    h = th->traceparent;

    if (h == NULL) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = ngx_http_gateway_trace_traceparent_hash;
        h->key = ngx_http_gateway_trace_header;
        h->lowcase_key = ngx_http_gateway_trace_header.data;
    }

    h->value.data = ctx->traceparent;
    h->value.len = NGX_GATEWAY_TRACEPARENT_LEN;

    return NGX_OK;
}


/* splitmix64, seeded per worker */

static void
ngx_http_gateway_trace_random(unsigned char *p, size_t n)
{
    size_t    i;
    uint64_t  z;

    do {
        for (i = 0; i < n; i += 8) {
            ngx_http_gateway_trace_rng += 0x9e3779b97f4a7c15ULL;
            z = ngx_http_gateway_trace_rng;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            z ^= z >> 31;

            ngx_memcpy(p + i, &z, ngx_min(8, n - i));
        }

        for (i = 0; i < n && p[i] == 0; i++) { /* void */ }

    } while (i == n);
}


static uint64_t
ngx_http_gateway_trace_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000000000 + (uint64_t) tp->msec * 1000000;
}


/*
 * Text from outside in a span: cut to NGX_HTTP_GATEWAY_TRACE_TEXT_MAX bytes
 * (not inside a character) and valid UTF-8 without control characters, or
 * left out (0).
 */

static ngx_uint_t
ngx_http_gateway_trace_text(ngx_str_t *in, ngx_str_t *out)
{
    size_t      len;
    ngx_uint_t  i;

    len = ngx_min(in->len, NGX_HTTP_GATEWAY_TRACE_TEXT_MAX);

    for (i = 0; i < 4 && len > 0; i++, len--) {
        if (ngx_gateway_text_valid((char *) in->data, len)) {
            out->data = in->data;
            out->len = len;
            return 1;
        }

        if (len == in->len) {
            return 0;
        }
    }

    return 0;
}


static void
ngx_http_gateway_trace_attr_str(ngx_gateway_otlp_attr_t *a, const char *key,
    size_t key_len, ngx_str_t *value)
{
    a->key = key;
    a->key_len = key_len;
    a->type = NGX_GATEWAY_OTLP_STRING;
    a->str = (const char *) value->data;
    a->len = value->len;
}


static void
ngx_http_gateway_trace_attr_int(ngx_gateway_otlp_attr_t *a, const char *key,
    size_t key_len, int64_t value)
{
    a->key = key;
    a->key_len = key_len;
    a->type = NGX_GATEWAY_OTLP_INT;
    a->num = value;
}


static void
ngx_http_gateway_trace_span_init(ngx_gateway_otlp_span_t *span,
    ngx_http_gateway_trace_ctx_t *t)
{
    ngx_memzero(span, sizeof(ngx_gateway_otlp_span_t));

    ngx_memcpy(span->trace_id, t->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    span->trace_state = (const char *) t->tracestate.data;
    span->trace_state_len = t->tracestate.len;
    span->flags = NGX_GATEWAY_TRACE_SAMPLED;
}


static void
ngx_http_gateway_trace_attempt_start(ngx_http_gateway_attempt_t *a)
{
    ngx_http_gateway_trace_ctx_t  *t, *actx;

    actx = ngx_http_gateway_trace_attempt_ctx(a->request);
    if (actx == NULL) {
        return;
    }

    t = actx->main;

    ngx_http_gateway_trace_random(actx->attempt_id, NGX_GATEWAY_SPAN_ID_LEN);
    actx->attempt_start = ngx_http_gateway_trace_now();

    if (t->injected) {
        ngx_http_gateway_trace_rewrite(a->request, actx, t);
    }
}


/* p is the value of a traceparent header line of this request's trace */

static ngx_uint_t
ngx_http_gateway_trace_at(ngx_buf_t *b, u_char *p,
    ngx_http_gateway_trace_ctx_t *t)
{
    size_t  n;

    n = sizeof("\ntraceparent: ") - 1;

    return p - b->start >= (ssize_t) n
           && ngx_strncasecmp(p - n, (u_char *) "\ntraceparent: ", n) == 0
           && ngx_memcmp(p, t->traceparent, NGX_GATEWAY_TRACEPARENT_SPAN)
              == 0;
}


/*
 * nginx builds the upstream request once and sends the same bytes on every
 * attempt: the parent id of the traceparent header is rewritten in place.
 * The header is looked for once, then checked where it was found.
 */

static void
ngx_http_gateway_trace_rewrite(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *actx, ngx_http_gateway_trace_ctx_t *t)
{
    u_char               *p, *last;
    ngx_buf_t            *b;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL || u->request_bufs == NULL) {
        return;
    }

    b = u->request_bufs->buf;

    if (!ngx_buf_in_memory(b) || b->start == NULL) {
        return;
    }

    p = actx->sent;

    if (p == NULL || actx->sent_buf != b) {

        /*
         * The value begins with "00-TRACE-", unique to the request.  A
         * header the gateway added is the last one: looked for there first.
         */

        last = b->last;
        p = last - (NGX_GATEWAY_TRACEPARENT_LEN + sizeof(CRLF CRLF) - 1);

        if (p < b->start
            || ngx_memcmp(p + NGX_GATEWAY_TRACEPARENT_LEN, CRLF CRLF, 4) != 0
            || !ngx_http_gateway_trace_at(b, p, t))
        {
            /* the same bytes in the request line are not the header */

            for (p = b->start; /* void */; p++) {
                p = memmem(p, last - p, t->traceparent,
                           NGX_GATEWAY_TRACEPARENT_SPAN);

                if (p == NULL || last - p < NGX_GATEWAY_TRACEPARENT_LEN) {
                    return;
                }

                if (ngx_http_gateway_trace_at(b, p, t)) {
                    break;
                }
            }
        }

        actx->sent = p;
        actx->sent_buf = b;
    }

    ngx_gateway_hex((char *) p + NGX_GATEWAY_TRACEPARENT_SPAN,
                    actx->attempt_id, NGX_GATEWAY_SPAN_ID_LEN);
}


static void
ngx_http_gateway_trace_attempt_end(ngx_http_gateway_attempt_t *a)
{
    u_char                         buf[NGX_INT_T_LEN + 8];
    u_char                        *p, *colon;
    ngx_str_t                      host, port, v;
    ngx_uint_t                     n, failed;
    const char                    *reason;
    ngx_http_request_t            *r;
    ngx_gateway_otlp_attr_t        attrs[NGX_HTTP_GATEWAY_TRACE_ATTRS];
    ngx_gateway_otlp_span_t        span;
    ngx_http_gateway_trace_ctx_t  *t, *actx;

    r = a->request;

    actx = ngx_http_gateway_trace_attempt_ctx(r);
    if (actx == NULL || !actx->main->sampled || actx->attempt_start == 0) {
        return;
    }

    t = actx->main;

    ngx_http_gateway_trace_span_init(&span, t);

    ngx_memcpy(span.span_id, actx->attempt_id, NGX_GATEWAY_SPAN_ID_LEN);
    ngx_memcpy(span.parent_id, t->span_id, NGX_GATEWAY_SPAN_ID_LEN);
    span.has_parent = 1;
    span.kind = NGX_GATEWAY_OTLP_KIND_CLIENT;
    span.name = (const char *) r->method_name.data;
    span.name_len = r->method_name.len;
    span.start = actx->attempt_start;
    span.end = ngx_http_gateway_trace_now();

    n = 0;

    ngx_http_gateway_trace_str(&attrs[n++], "http.request.method",
                               &r->method_name);

    /* the instance's address: host:port, [v6]:port or unix:path */

    host = a->peer->name;
    port.len = 0;

    if (host.len > 5 && ngx_strncmp(host.data, "unix:", 5) != 0) {
        colon = ngx_strlchr(host.data, host.data + host.len, ']');
        colon = colon ? colon + 1 : host.data;

        for (p = host.data + host.len; p > colon && p[-1] != ':'; p--) {
            /* void */
        }

        if (p > colon) {
            port.data = p;
            port.len = host.data + host.len - p;
            host.len = p - 1 - host.data;
        }

        if (host.len > 2 && host.data[0] == '[') {
            host.data++;
            host.len -= 2;
        }
    }

    ngx_http_gateway_trace_str(&attrs[n++], "server.address", &host);
    ngx_http_gateway_trace_str(&attrs[n++], "network.peer.address", &host);

    if (port.len) {
        ngx_http_gateway_trace_int(&attrs[n++], "server.port",
                                   ngx_inet_get_port(a->peer->sockaddr));
    }

    if (a->status) {
        ngx_http_gateway_trace_int(&attrs[n++], "http.response.status_code",
                                   a->status);
    }

    ngx_http_gateway_trace_str(&attrs[n++], "gateway.service", a->service);
    ngx_http_gateway_trace_str(&attrs[n++], "gateway.instance.id",
                               &a->peer->id);
    ngx_http_gateway_trace_int(&attrs[n++], "gateway.attempt", a->number);

    attrs[n].key = "gateway.connection.reused";
    attrs[n].key_len = sizeof("gateway.connection.reused") - 1;
    attrs[n].type = NGX_GATEWAY_OTLP_BOOL;
    attrs[n++].num = a->cached;

    failed = (a->result != NGX_HTTP_GATEWAY_ATTEMPT_OK);

    if (failed) {
        reason = ngx_http_gateway_trace_reason(a, buf);
        v.data = (u_char *) reason;
        v.len = ngx_strlen(reason);

        ngx_http_gateway_trace_str(&attrs[n++], "error.type", &v);

        if (a->retried) {
            ngx_http_gateway_trace_str(&attrs[n++], "gateway.retry_reason",
                                       &v);
        }
    }

    span.attrs = attrs;
    span.nattrs = n;

    if (failed || a->status >= 500) {
        span.status = NGX_GATEWAY_OTLP_STATUS_ERROR;
    }

    ngx_http_gateway_trace_export(&span);
}


/* proxy_next_upstream's words for why an attempt failed */

static const char *
ngx_http_gateway_trace_reason(ngx_http_gateway_attempt_t *a, u_char *buf)
{
    switch (a->result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        return "timeout";

    case NGX_HTTP_GATEWAY_ATTEMPT_STALE:
        return "stale_connection";

    case NGX_HTTP_GATEWAY_ATTEMPT_STATUS:
    case NGX_HTTP_GATEWAY_ATTEMPT_NEXT:
        if (a->status) {
            *ngx_sprintf(buf, "http_%uD", a->status) = '\0';
            return (const char *) buf;
        }

        return "error";

    default:
        return "error";
    }
}


static ngx_int_t
ngx_http_gateway_trace_preaccess(ngx_http_request_t *r)
{
    if (r == r->main) {
        (void) ngx_http_gateway_trace_get(r);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_gateway_trace_log(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_str_t                       v, name;
    ngx_uint_t                      n, status;
    ngx_connection_t               *c;
    ngx_gateway_otlp_attr_t         attrs[NGX_HTTP_GATEWAY_TRACE_ATTRS];
    ngx_gateway_otlp_span_t         span;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_gateway_trace_ctx_t   *t;

    t = ngx_http_gateway_trace_get(r);
    if (t == NULL || !t->sampled) {
        return NGX_OK;
    }

    c = r->connection;

    ngx_http_gateway_trace_span_init(&span, t);

    ngx_memcpy(span.span_id, t->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    if (t->has_parent) {
        ngx_memcpy(span.parent_id, t->parent_id, NGX_GATEWAY_SPAN_ID_LEN);
        span.has_parent = 1;
        span.flags |= NGX_GATEWAY_OTLP_FLAGS_HAS_REMOTE
                      | NGX_GATEWAY_OTLP_FLAGS_REMOTE;

    } else {
        span.flags |= NGX_GATEWAY_OTLP_FLAGS_HAS_REMOTE;
    }

    span.kind = NGX_GATEWAY_OTLP_KIND_SERVER;
    span.start = (uint64_t) r->start_sec * 1000000000
                 + (uint64_t) r->start_msec * 1000000;
    span.end = ngx_http_gateway_trace_now();

    n = 0;

    ngx_http_gateway_trace_str(&attrs[n++], "http.request.method",
                               &r->method_name);

    v = r->unparsed_uri;

    if (r->args_start && r->args_start > v.data) {
        v.len = r->args_start - 1 - v.data;
    }

    if (ngx_http_gateway_trace_text(&v, &v)) {
        ngx_http_gateway_trace_str(&attrs[n++], "url.path", &v);
    }

    ngx_str_set(&v, "http");

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_str_set(&v, "https");
    }
#endif

    ngx_http_gateway_trace_str(&attrs[n++], "url.scheme", &v);

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status) {
        ngx_http_gateway_trace_int(&attrs[n++], "http.response.status_code",
                                   status);
    }

    if (ngx_http_gateway_trace_text(&r->headers_in.server, &v)) {
        ngx_http_gateway_trace_str(&attrs[n++], "server.address", &v);
    }

    if (c->local_sockaddr) {
        ngx_http_gateway_trace_int(&attrs[n++], "server.port",
                                   ngx_inet_get_port(c->local_sockaddr));
    }

    ngx_http_gateway_trace_str(&attrs[n++], "network.peer.address",
                               &c->addr_text);

    if (r->headers_in.user_agent
        && ngx_http_gateway_trace_text(&r->headers_in.user_agent->value, &v))
    {
        ngx_http_gateway_trace_str(&attrs[n++], "user_agent.original", &v);
    }

    /* a prefix or exact location is the route; a regular expression not */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    name = r->method_name;

    if (clcf->name.len && clcf->name.len <= NGX_HTTP_GATEWAY_TRACE_TEXT_MAX
        && !clcf->named && !clcf->noname
#if (NGX_PCRE)
        && clcf->regex == NULL
#endif
       )
    {
        v = clcf->name;
        ngx_http_gateway_trace_str(&attrs[n++], "http.route", &v);

        p = ngx_pnalloc(r->pool, r->method_name.len + 1 + v.len);

        if (p) {
            name.data = p;
            p = ngx_cpymem(p, r->method_name.data, r->method_name.len);
            *p++ = ' ';
            p = ngx_cpymem(p, v.data, v.len);
            name.len = p - name.data;
        }
    }

    span.name = (const char *) name.data;
    span.name_len = name.len;
    span.attrs = attrs;
    span.nattrs = n;

    if (status >= 500) {
        span.status = NGX_GATEWAY_OTLP_STATUS_ERROR;
    }

    ngx_http_gateway_trace_export(&span);

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_trace_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                        *p;
    ngx_http_gateway_trace_ctx_t  *t;

    t = ngx_http_gateway_trace_get(r);

    if (t == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_GATEWAY_TRACE_VAR_TRACE_ID:
        p = ngx_pnalloc(r->pool, 2 * NGX_GATEWAY_TRACE_ID_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_gateway_hex((char *) p, t->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
        v->len = 2 * NGX_GATEWAY_TRACE_ID_LEN;
        break;

    case NGX_HTTP_GATEWAY_TRACE_VAR_SPAN_ID:
        p = ngx_pnalloc(r->pool, 2 * NGX_GATEWAY_SPAN_ID_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_gateway_hex((char *) p, t->span_id, NGX_GATEWAY_SPAN_ID_LEN);
        v->len = 2 * NGX_GATEWAY_SPAN_ID_LEN;
        break;

    default:
        p = t->traceparent;
        v->len = NGX_GATEWAY_TRACEPARENT_LEN;
    }

    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_trace_stat_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                              *p;
    ngx_atomic_uint_t                    n;
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_trace_module);

    n = 0;

    if (tmcf->stats) {
        n = *(ngx_atomic_t *) ((u_char *) tmcf->stats + data);
    }

    p = ngx_pnalloc(r->pool, NGX_ATOMIC_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uA", n) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_trace_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_gateway_trace_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    ngx_http_gateway_trace_used = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_trace_postconf(ngx_conf_t *cf)
{
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_gateway_trace_module);

    if (ngx_http_gateway_trace_export_conf(cf, tmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_http_gateway_trace_used) {
        return NGX_OK;
    }

    ngx_http_gateway_trace_traceparent_hash =
        ngx_hash_key((u_char *) "traceparent", sizeof("traceparent") - 1);
    ngx_http_gateway_trace_tracestate_hash =
        ngx_hash_key((u_char *) "tracestate", sizeof("tracestate") - 1);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_gateway_trace_preaccess;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_gateway_trace_log;

    if (ngx_http_gateway_attempt_start_add(cf,
                                       ngx_http_gateway_trace_attempt_start)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_gateway_observer_add(cf,
                                         ngx_http_gateway_trace_attempt_end);
}


static void *
ngx_http_gateway_trace_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_trace_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->enabled = 0;
     *     tmcf->service_name = { 0, NULL };
     *     tmcf->stats = NULL;
     */

    return tmcf;
}


static char *
ngx_http_gateway_trace_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_gateway_trace_main_conf_t *tmcf = conf;

    if (tmcf->service_name.data == NULL) {
        ngx_str_set(&tmcf->service_name, "ngx_gateway");
    }

    if (tmcf->service_name.len == 0
        || tmcf->service_name.len > NGX_HTTP_GATEWAY_TRACE_TEXT_MAX
        || !ngx_gateway_text_valid((char *) tmcf->service_name.data,
                                   tmcf->service_name.len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid name in \"gateway_trace_service_name\": "
                           "1 to %d characters of UTF-8 text",
                           NGX_HTTP_GATEWAY_TRACE_TEXT_MAX);
        return NGX_CONF_ERROR;
    }

    tmcf->host_name = cf->cycle->hostname;

    return NGX_CONF_OK;
}


static void *
ngx_http_gateway_trace_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_trace_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_trace_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->trace_cv = NULL;
     *     conf->threshold = 0;
     */

    conf->trace = NGX_CONF_UNSET;
    conf->context = NGX_CONF_UNSET_UINT;
    conf->sample = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_gateway_trace_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_gateway_trace_loc_conf_t *prev = parent;
    ngx_http_gateway_trace_loc_conf_t *conf = child;

    if (conf->trace == NGX_CONF_UNSET) {
        conf->trace = prev->trace;
        conf->trace_cv = prev->trace_cv;
    }

    ngx_conf_merge_value(conf->trace, prev->trace, 0);
    ngx_conf_merge_uint_value(conf->context, prev->context,
                              NGX_HTTP_GATEWAY_TRACE_EXTRACT
                              |NGX_HTTP_GATEWAY_TRACE_INJECT);
    ngx_conf_merge_uint_value(conf->sample, prev->sample,
                              NGX_HTTP_GATEWAY_TRACE_PPM);

    /* sampled: the trace id's last 53 bits below sample / 1e6 of 2^53 */

    conf->threshold = ((uint64_t) 1 << 53) / NGX_HTTP_GATEWAY_TRACE_PPM
                      * conf->sample
                      + ((uint64_t) 1 << 53) % NGX_HTTP_GATEWAY_TRACE_PPM
                        * conf->sample / NGX_HTTP_GATEWAY_TRACE_PPM;

    return NGX_CONF_OK;
}


static char *
ngx_http_gateway_trace(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_trace_loc_conf_t *tlcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (tlcf->trace != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tlcf->trace = 0;
        return NGX_CONF_OK;
    }

    ngx_http_gateway_trace_used = 1;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        tlcf->trace = 1;
        return NGX_CONF_OK;
    }

    if (!ngx_http_script_variables_count(&value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"gateway_trace\": "
                           "on, off or a value with variables", &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->trace_cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (tlcf->trace_cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = tlcf->trace_cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tlcf->trace = 0;

    return NGX_CONF_OK;
}


static char *
ngx_http_gateway_trace_context(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gateway_trace_loc_conf_t *tlcf = conf;

    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    if (tlcf->context != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = ngx_http_gateway_trace_contexts; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcmp(e->name.data, value[1].data) == 0)
        {
            tlcf->context = e->value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"gateway_trace_context\": "
                       "extract, inject, propagate or ignore", &value[1]);

    return NGX_CONF_ERROR;
}


/* "10%", "0.5%", "100%": up to four decimals; or a fraction, "0.25" */

static char *
ngx_http_gateway_trace_sample(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_trace_loc_conf_t *tlcf = conf;

    u_char      *p, *last;
    ngx_str_t   *value;
    ngx_uint_t   n, frac, scale, percent, digits;

    if (tlcf->sample != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = value[1].data;
    last = p + value[1].len;

    percent = (last > p && last[-1] == '%');

    if (percent) {
        last--;
    }

    n = 0;
    frac = 0;
    digits = 0;
    scale = percent ? 4 : 6;

    for ( /* void */ ; p < last && *p >= '0' && *p <= '9' && n <= 100; p++) {
        n = n * 10 + (*p - '0');
        digits++;
    }

    if (p < last && *p == '.') {
        for (p++; p < last && *p >= '0' && *p <= '9' && scale; p++) {
            frac = frac * 10 + (*p - '0');
            scale--;
            digits++;
        }
    }

    while (scale--) {
        frac *= 10;
    }

    n = percent ? n * 10000 + frac : n * NGX_HTTP_GATEWAY_TRACE_PPM + frac;

    if (p != last || digits == 0 || n > NGX_HTTP_GATEWAY_TRACE_PPM) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ratio \"%V\" in \"gateway_trace_sample\": "
                           "0%% to 100%% (up to four decimals), or 0 to 1",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->sample = n;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_gateway_trace_init_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    if (getrandom(&ngx_http_gateway_trace_rng,
                  sizeof(ngx_http_gateway_trace_rng), 0)
        != sizeof(ngx_http_gateway_trace_rng))
    {
        ngx_http_gateway_trace_rng = (uint64_t) ngx_pid << 32
                                     ^ (uint64_t) ngx_time()
                                     ^ (uintptr_t) cycle;
    }

    tmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_gateway_trace_module);

    if (tmcf == NULL || !tmcf->enabled) {
        return NGX_OK;
    }

    return ngx_http_gateway_trace_export_init(cycle, tmcf);
}


static void
ngx_http_gateway_trace_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_trace_export_exit(cycle);
}
