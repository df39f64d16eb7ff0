
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

/* a SERVER span's name: "METHOD route", or the method alone if longer */
#define NGX_HTTP_GATEWAY_TRACE_NAME_MAX  (2 * NGX_HTTP_GATEWAY_TRACE_TEXT_MAX)


/* the attributes' keys, encoded once at configuration time */

#define NGX_HTTP_GATEWAY_TRACE_K_METHOD      0
#define NGX_HTTP_GATEWAY_TRACE_K_PATH        1
#define NGX_HTTP_GATEWAY_TRACE_K_SCHEME      2
#define NGX_HTTP_GATEWAY_TRACE_K_STATUS      3
#define NGX_HTTP_GATEWAY_TRACE_K_ADDRESS     4
#define NGX_HTTP_GATEWAY_TRACE_K_PORT        5
#define NGX_HTTP_GATEWAY_TRACE_K_PEER        6
#define NGX_HTTP_GATEWAY_TRACE_K_USER_AGENT  7
#define NGX_HTTP_GATEWAY_TRACE_K_ROUTE       8
#define NGX_HTTP_GATEWAY_TRACE_K_SERVICE     9
#define NGX_HTTP_GATEWAY_TRACE_K_INSTANCE    10
#define NGX_HTTP_GATEWAY_TRACE_K_ATTEMPT     11
#define NGX_HTTP_GATEWAY_TRACE_K_REUSED      12
#define NGX_HTTP_GATEWAY_TRACE_K_ERROR       13
#define NGX_HTTP_GATEWAY_TRACE_K_RETRY       14
#define NGX_HTTP_GATEWAY_TRACE_NKEYS         15

#define ngx_http_gateway_trace_key(name)                                      \
    (&ngx_http_gateway_trace_keys[NGX_HTTP_GATEWAY_TRACE_K_##name])


typedef struct {
    ngx_flag_t                   trace;
    ngx_http_complex_value_t    *trace_cv;
    ngx_uint_t                   context;
    ngx_uint_t                   sample;     /* ppm */
    uint64_t                     threshold;  /* of 53 random bits */
    ngx_str_t                    route;      /* the location, if one */
} ngx_http_gateway_trace_loc_conf_t;


typedef struct ngx_http_gateway_trace_ctx_s  ngx_http_gateway_trace_ctx_t;

/*
 * A request's trace, kept by the main request; a subrequest has a context
 * of its own for its attempts only (main points to the trace).  The main
 * request's context comes from the worker's free list, not from the
 * request pool (a few hundred bytes there cost most requests one more
 * pool block: a malloc and a free), and is its own pool cleanup, which
 * gives it back, and by which it is found again after an internal
 * redirect.
 */

struct ngx_http_gateway_trace_ctx_s {
    ngx_pool_cleanup_t           cln;
    ngx_http_gateway_trace_ctx_t *main;
    ngx_http_request_t          *request;
    ngx_http_gateway_trace_ctx_t *next;     /* free list */

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
    unsigned                     formatted:1;    /* traceparent[] */
};


/*
 * The attributes of an instance in its CLIENT spans, with the method,
 * encoded once: a per-worker cache of 2^NGX_HTTP_GATEWAY_TRACE_PEER_BITS
 * entries, by uid, each for the uid, the address text and the method.
 * After them, those of its last attempt (the status, gateway.attempt,
 * gateway.connection.reused), for the next attempt that has the same.
 */

#define NGX_HTTP_GATEWAY_TRACE_PEER_BITS  8

/* a method longer than this is written for each span, not kept */
#define NGX_HTTP_GATEWAY_TRACE_METHOD_MAX  32

typedef struct {
    uint64_t                     uid;
    uint32_t                     status;    /* of the attempt after */
    uint16_t                     number;
    uint16_t                     cached;
    uint16_t                     len;       /* of attrs; 0: unused */
    uint16_t                     attempt_len;   /* after; 0: none */
    uint16_t                     name_len;
    uint16_t                     method_len;
    u_char                       name[NGX_GATEWAY_ADDR_TEXT_MAX];
    u_char                       method[NGX_HTTP_GATEWAY_TRACE_METHOD_MAX];
    u_char                       attrs[1024 - 24
                                       - NGX_GATEWAY_ADDR_TEXT_MAX
                                       - NGX_HTTP_GATEWAY_TRACE_METHOD_MAX];
} ngx_http_gateway_trace_peer_t;


/*
 * What a SERVER span holds that its connection's requests send again and
 * again: its name and the attributes other than the path, the status and
 * the client's address (the method, url.scheme, server.port, the Host,
 * the User-Agent, http.route), encoded once.  A per-worker cache of
 * 2^NGX_HTTP_GATEWAY_TRACE_CONN_BITS entries, by descriptor, each for the
 * connection of that number, the location, and the same bytes of the
 * method, the Host and the User-Agent: text checked (UTF-8, no control
 * characters, at most NGX_HTTP_GATEWAY_TRACE_TEXT_MAX bytes) when the
 * entry was made.
 */

#define NGX_HTTP_GATEWAY_TRACE_CONN_BITS  6

typedef struct {
    ngx_atomic_uint_t            number;
    void                        *loc;       /* the route's configuration */
    uint16_t                     len;       /* of attrs; 0: unused */
    uint16_t                     method_len;
    uint16_t                     name_len;
    uint16_t                     host_len;
    uint16_t                     user_agent_len;    /* + 1; 0: none */
    u_char                       host[NGX_HTTP_GATEWAY_TRACE_TEXT_MAX];
    u_char                       user_agent[NGX_HTTP_GATEWAY_TRACE_TEXT_MAX];

    /* "METHOD route": the method is its start */
    u_char                       name[NGX_HTTP_GATEWAY_TRACE_METHOD_MAX + 1
                                      + NGX_HTTP_GATEWAY_TRACE_TEXT_MAX];
    u_char                       attrs[1024];
} ngx_http_gateway_trace_conn_t;


/* what the request's headers hold of a trace context */

typedef struct {
    ngx_table_elt_t             *traceparent;
    ngx_table_elt_t             *tracestate;
    ngx_uint_t                   ntraceparent;
    ngx_uint_t                   ntracestate;
} ngx_http_gateway_trace_headers_t;


static ngx_inline ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_get(
    ngx_http_request_t *r);
static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_find(
    ngx_http_request_t *r);
static ngx_inline ngx_http_gateway_trace_ctx_t *
    ngx_http_gateway_trace_attempt_ctx(ngx_http_request_t *r);
static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_sub_ctx(
    ngx_http_request_t *r);
static ngx_http_gateway_trace_ctx_t *ngx_http_gateway_trace_create(
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf);
static void ngx_http_gateway_trace_cleanup(void *data);
static void ngx_http_gateway_trace_scan(ngx_http_request_t *r,
    ngx_http_gateway_trace_headers_t *th);
static ngx_int_t ngx_http_gateway_trace_inject(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *ctx, ngx_http_gateway_trace_headers_t *th);
static u_char *ngx_http_gateway_trace_traceparent(
    ngx_http_gateway_trace_ctx_t *t);
static uint64_t ngx_http_gateway_trace_now(void);
static ngx_inline ngx_uint_t ngx_http_gateway_trace_text(ngx_str_t *in,
    ngx_str_t *out);
static void ngx_http_gateway_trace_attempt_start(
    ngx_http_gateway_attempt_t *a);
static ngx_uint_t ngx_http_gateway_trace_at(ngx_buf_t *b, u_char *p,
    ngx_http_gateway_trace_ctx_t *t);
static void ngx_http_gateway_trace_rewrite(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *actx, ngx_http_gateway_trace_ctx_t *t);
static void ngx_http_gateway_trace_attempt_end(ngx_http_gateway_attempt_t *a);
static void ngx_http_gateway_trace_client_span(ngx_http_gateway_attempt_t *a,
    ngx_http_gateway_trace_ctx_t *actx);
static ngx_http_gateway_trace_peer_t *ngx_http_gateway_trace_peer(
    ngx_http_gateway_attempt_t *a);
static void ngx_http_gateway_trace_peer_attrs(ngx_gateway_otlp_writer_t *w,
    ngx_http_gateway_attempt_t *a);
static void ngx_http_gateway_trace_attempt_attrs(
    ngx_gateway_otlp_writer_t *w, ngx_http_gateway_attempt_t *a);
static void ngx_http_gateway_trace_reason(ngx_http_gateway_attempt_t *a,
    u_char *buf, ngx_str_t *reason);
static ngx_http_gateway_trace_conn_t *ngx_http_gateway_trace_conn(
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf);
static ngx_http_gateway_trace_conn_t *ngx_http_gateway_trace_conn_new(
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf,
    ngx_http_gateway_trace_conn_t *ce, ngx_str_t *host, ngx_str_t *ua);
static void ngx_http_gateway_trace_name(ngx_http_request_t *r,
    ngx_http_gateway_trace_loc_conf_t *tlcf, u_char *buf, size_t size,
    ngx_str_t *name);
static void ngx_http_gateway_trace_server_attrs(ngx_gateway_otlp_writer_t *w,
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf);
static ngx_int_t ngx_http_gateway_trace_preaccess(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_trace_log(ngx_http_request_t *r);
static void ngx_http_gateway_trace_server_span(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *t);

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

static ngx_str_t  ngx_http_gateway_trace_key_names[] = {
    ngx_string("http.request.method"),
    ngx_string("url.path"),
    ngx_string("url.scheme"),
    ngx_string("http.response.status_code"),
    ngx_string("server.address"),
    ngx_string("server.port"),
    ngx_string("network.peer.address"),
    ngx_string("user_agent.original"),
    ngx_string("http.route"),
    ngx_string("gateway.service"),
    ngx_string("gateway.instance.id"),
    ngx_string("gateway.attempt"),
    ngx_string("gateway.connection.reused"),
    ngx_string("error.type"),
    ngx_string("gateway.retry_reason")
};

static ngx_gateway_otlp_key_t
    ngx_http_gateway_trace_keys[NGX_HTTP_GATEWAY_TRACE_NKEYS];

/* a request may set gateway_trace: the hooks are installed */
static ngx_uint_t  ngx_http_gateway_trace_used;

/* per worker */
static uint64_t  ngx_http_gateway_trace_rng;
static ngx_http_gateway_trace_ctx_t  *ngx_http_gateway_trace_free;
static ngx_http_gateway_trace_ctx_t   ngx_http_gateway_trace_gone;  /* off */
static ngx_http_gateway_trace_peer_t  *ngx_http_gateway_trace_peers;
static ngx_http_gateway_trace_conn_t  *ngx_http_gateway_trace_conns;
static ngx_uint_t  ngx_http_gateway_trace_json;


/* splitmix64, seeded per worker; ids are never all zero */

static ngx_inline uint64_t
ngx_http_gateway_trace_random(void)
{
    uint64_t  z;

    ngx_http_gateway_trace_rng += 0x9e3779b97f4a7c15ULL;
    z = ngx_http_gateway_trace_rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/* big-endian, as an id's bytes are read: one store */

static ngx_inline void
ngx_http_gateway_trace_put64(u_char *p, uint64_t v)
{
#if (NGX_HAVE_LITTLE_ENDIAN)
    v = __builtin_bswap64(v);
#endif

    ngx_memcpy(p, &v, 8);
}


/* the request's trace, or NULL: a context is looked up several times */

static ngx_inline ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_get(ngx_http_request_t *r)
{
    ngx_http_gateway_trace_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_gateway_trace_module);

    if (ctx) {
        return ctx->on ? ctx : NULL;
    }

    return ngx_http_gateway_trace_find(r->main);
}


/* no context yet: one from before an internal redirect, or a new one */

static ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_find(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_gateway_trace_ctx_t       *ctx;
    ngx_http_gateway_trace_loc_conf_t  *tlcf;

    if (r->internal || r->filter_finalize) {

        /* an internal redirect cleared the module contexts */

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_gateway_trace_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_gateway_trace_module);
                return ctx->on ? ctx : NULL;
            }
        }
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
    uint64_t                           hi, lo;
    ngx_str_t                          value;
    ngx_gateway_traceparent_t          tp;
    ngx_http_gateway_trace_ctx_t      *ctx;
    ngx_http_gateway_trace_headers_t   th;

    ctx = ngx_http_gateway_trace_free;

    if (ctx) {
        ngx_http_gateway_trace_free = ctx->next;

    } else {
        ctx = ngx_alloc(sizeof(ngx_http_gateway_trace_ctx_t),
                        r->connection->log);
        if (ctx == NULL) {
            return NULL;
        }
    }

    ctx->request = r;
    ctx->cln.handler = ngx_http_gateway_trace_cleanup;
    ctx->cln.data = ctx;
    ctx->cln.next = r->pool->cleanup;
    r->pool->cleanup = &ctx->cln;

    ctx->main = ctx;
    ctx->tracestate.len = 0;
    ctx->attempt_start = 0;
    ctx->sent_buf = NULL;
    ctx->sent = NULL;
    ctx->on = 0;
    ctx->sampled = 0;
    ctx->has_parent = 0;
    ctx->injected = 0;
    ctx->formatted = 0;

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
        hi = ngx_http_gateway_trace_random();
        lo = ngx_http_gateway_trace_random();

        if ((hi | lo) == 0) {
            hi = 1;
        }

        ngx_http_gateway_trace_put64(ctx->trace_id, hi);
        ngx_http_gateway_trace_put64(ctx->trace_id + 8, lo);

        /* the ratio decides on the trace id: the same one, the same way */

        ctx->sampled = ((lo >> 11) < tlcf->threshold);
    }

    lo = ngx_http_gateway_trace_random();
    ngx_http_gateway_trace_put64(ctx->span_id, lo ? lo : 1);

    /* a request refused before its headers were read has no list */

    if ((tlcf->context & NGX_HTTP_GATEWAY_TRACE_INJECT)
        && r->headers_in.headers.last != NULL
        && ngx_http_gateway_trace_inject(r, ctx, &th) == NGX_OK)
    {
        ctx->injected = 1;
    }

    return ctx;
}


/*
 * The request pool goes: the context back to the free list.  What reads
 * the request's trace after this (a pool cleanup that ends an attempt)
 * finds it off, and does not make a new one.
 */

static void
ngx_http_gateway_trace_cleanup(void *data)
{
    ngx_http_gateway_trace_ctx_t  *ctx = data;

    ngx_http_set_ctx(ctx->request, &ngx_http_gateway_trace_gone,
                     ngx_http_gateway_trace_module);

    ctx->on = 0;
    ctx->sampled = 0;
    ctx->next = ngx_http_gateway_trace_free;
    ngx_http_gateway_trace_free = ctx;
}


static ngx_inline ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_attempt_ctx(ngx_http_request_t *r)
{
    ngx_http_gateway_trace_ctx_t  *ctx;

    if (r == r->main) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_gateway_trace_module);

        if (ctx) {
            return ctx->on ? ctx : NULL;
        }
    }

    return ngx_http_gateway_trace_sub_ctx(r);
}


/* a subrequest's attempts: a context of its own, for the trace of main */

static ngx_http_gateway_trace_ctx_t *
ngx_http_gateway_trace_sub_ctx(ngx_http_request_t *r)
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

    th->traceparent = NULL;
    th->tracestate = NULL;
    th->ntraceparent = 0;
    th->ntracestate = 0;

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
 * Only when something must go (headers that were invalid) is the header
 * list copied without it: the elements themselves stay where they are,
 * for headers_in's pointers.
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
    }

    /* the gateway's spelling: the rewrite finds the line by its bytes */

    /*
     * The parent is the SERVER span: what an upstream that is not the
     * gateway's sees; each attempt of a gateway upstream rewrites it
     */

    h->key = ngx_http_gateway_trace_header;
    h->lowcase_key = ngx_http_gateway_trace_header.data;
    h->value.data = ngx_http_gateway_trace_traceparent(ctx);
    h->value.len = NGX_GATEWAY_TRACEPARENT_LEN;

    return NGX_OK;
}


/* the request's traceparent text, written when something first needs it */

static u_char *
ngx_http_gateway_trace_traceparent(ngx_http_gateway_trace_ctx_t *t)
{
    if (!t->formatted) {
        ngx_gateway_traceparent_format((char *) t->traceparent, t->trace_id,
                                       t->span_id,
                                       t->sampled ? NGX_GATEWAY_TRACE_SAMPLED
                                                  : 0);
        t->formatted = 1;
    }

    return t->traceparent;
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
 * left out (0).  One pass over it.
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_trace_text(ngx_str_t *in, ngx_str_t *out)
{
    size_t  len;

    len = in->len;

    if (len > NGX_HTTP_GATEWAY_TRACE_TEXT_MAX) {
        len = NGX_HTTP_GATEWAY_TRACE_TEXT_MAX;

        while (len > NGX_HTTP_GATEWAY_TRACE_TEXT_MAX - 3
               && (in->data[len] & 0xc0) == 0x80)
        {
            len--;
        }
    }

    if (!ngx_gateway_text_valid((char *) in->data, len)) {
        return 0;
    }

    out->data = in->data;
    out->len = len;

    return 1;
}


static void
ngx_http_gateway_trace_attempt_start(ngx_http_gateway_attempt_t *a)
{
    uint64_t                       id;
    ngx_http_gateway_trace_ctx_t  *t, *actx;

    actx = ngx_http_gateway_trace_attempt_ctx(a->request);
    if (actx == NULL) {
        return;
    }

    t = actx->main;

    /* unsampled, the attempt's id is only its upstream request's parent */

    if (!t->sampled && !t->injected) {
        return;
    }

    id = ngx_http_gateway_trace_random();
    ngx_http_gateway_trace_put64(actx->attempt_id, id ? id : 1);

    if (t->sampled) {
        actx->attempt_start = ngx_http_gateway_trace_now();
    }

    if (t->injected) {
        ngx_http_gateway_trace_rewrite(a->request, actx, t);
    }
}


/*
 * p is the value of a traceparent header line of this request's trace:
 * the gateway's own line (its spelling), or one set with proxy_set_header.
 */

static ngx_uint_t
ngx_http_gateway_trace_at(ngx_buf_t *b, u_char *p,
    ngx_http_gateway_trace_ctx_t *t)
{
    size_t  n;

    n = sizeof("\ntraceparent: ") - 1;

    return p - b->start >= (ssize_t) n
           && ngx_memcmp(p, t->traceparent, NGX_GATEWAY_TRACEPARENT_SPAN) == 0
           && (ngx_memcmp(p - n, "\ntraceparent: ", n) == 0
               || ngx_strncasecmp(p - n, (u_char *) "\ntraceparent: ", n)
                  == 0);
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
    ngx_http_gateway_trace_ctx_t  *actx;

    actx = ngx_http_gateway_trace_attempt_ctx(a->request);

    if (actx && actx->main->sampled && actx->attempt_start) {
        ngx_http_gateway_trace_client_span(a, actx);
    }
}


/* a sampled attempt's CLIENT span */

static NGX_HTTP_GATEWAY_NOINLINE void
ngx_http_gateway_trace_client_span(ngx_http_gateway_attempt_t *a,
    ngx_http_gateway_trace_ctx_t *actx)
{
    u_char                          buf[NGX_INT_T_LEN + 8];
    ngx_str_t                       reason;
    ngx_uint_t                      failed;
    ngx_http_request_t             *r;
    ngx_gateway_otlp_span_t         span;
    ngx_gateway_otlp_writer_t      *w;
    ngx_http_gateway_trace_ctx_t   *t;
    ngx_http_gateway_trace_peer_t  *pe;

    r = a->request;
    t = actx->main;

    span.trace_id = t->trace_id;
    span.span_id = actx->attempt_id;
    span.parent_id = t->span_id;
    span.trace_state = (const char *) t->tracestate.data;
    span.trace_state_len = t->tracestate.len;
    span.name = (const char *) r->method_name.data;
    span.name_len = r->method_name.len;
    span.kind = NGX_GATEWAY_OTLP_KIND_CLIENT;
    span.start = actx->attempt_start;
    span.end = ngx_http_gateway_trace_now();
    span.flags = NGX_GATEWAY_TRACE_SAMPLED;

    w = ngx_http_gateway_trace_span(&span);
    if (w == NULL) {
        return;
    }

    pe = ngx_http_gateway_trace_peer(a);

    if (pe) {
        ngx_gateway_otlp_attrs(w, pe->attrs, pe->len + pe->attempt_len);

    } else {
        ngx_http_gateway_trace_peer_attrs(w, a);
        ngx_http_gateway_trace_attempt_attrs(w, a);
    }

    failed = (a->result != NGX_HTTP_GATEWAY_ATTEMPT_OK);

    if (failed) {
        ngx_http_gateway_trace_reason(a, buf, &reason);

        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(ERROR),
                             (char *) reason.data, reason.len);

        if (a->retried) {
            ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(RETRY),
                                 (char *) reason.data, reason.len);
        }
    }

    ngx_http_gateway_trace_span_done(w, (failed || a->status >= 500)
                                        ? NGX_GATEWAY_OTLP_STATUS_ERROR
                                        : NGX_GATEWAY_OTLP_STATUS_UNSET);
}


/*
 * The attributes of the attempt's instance and the method: a function of
 * the instance (the uid: its service and id), its address text and the
 * method, encoded once per worker into a cache entry (all three checked
 * on every use); then the attempt's own, those of the instance's last
 * attempt or encoded after the instance's.
 */

static ngx_http_gateway_trace_peer_t *
ngx_http_gateway_trace_peer(ngx_http_gateway_attempt_t *a)
{
    size_t                          len;
    uint64_t                        uid;
    ngx_str_t                       name, *method;
    ngx_gateway_otlp_writer_t       w;
    ngx_http_gateway_trace_peer_t  *pe;

    uid = a->peer->uid;
    name = ngx_http_gateway_peer_name(a->peer);
    method = &a->request->method_name;

    if (ngx_http_gateway_trace_peers == NULL
        || name.len > NGX_GATEWAY_ADDR_TEXT_MAX
        || method->len > NGX_HTTP_GATEWAY_TRACE_METHOD_MAX)
    {
        return NULL;
    }

    pe = &ngx_http_gateway_trace_peers[(uid * 0x9e3779b97f4a7c15ULL)
                                  >> (64 - NGX_HTTP_GATEWAY_TRACE_PEER_BITS)];

    if (pe->uid != uid || pe->len == 0 || pe->name_len != name.len
        || pe->method_len != method->len
        || !ngx_gateway_otlp_equal(pe->name, name.data, name.len)
        || !ngx_gateway_otlp_equal(pe->method, method->data, method->len))
    {
        ngx_gateway_otlp_span_attrs_begin(&w, pe->attrs, sizeof(pe->attrs),
                                          ngx_http_gateway_trace_json);

        ngx_http_gateway_trace_peer_attrs(&w, a);

        len = ngx_gateway_otlp_attrs_end(&w);

        pe->len = 0;

        if (len == 0) {
            return NULL;
        }

        pe->uid = uid;
        pe->len = (uint16_t) len;
        pe->attempt_len = 0;
        pe->name_len = (uint16_t) name.len;
        pe->method_len = (uint16_t) method->len;
        ngx_memcpy(pe->name, name.data, name.len);
        ngx_memcpy(pe->method, method->data, method->len);
    }

    if (pe->attempt_len && pe->status == a->status
        && pe->number == a->number && pe->cached == a->cached)
    {
        return pe;
    }

    ngx_gateway_otlp_span_attrs_after(&w, pe->attrs, pe->len,
                                      sizeof(pe->attrs),
                                      ngx_http_gateway_trace_json);

    ngx_http_gateway_trace_attempt_attrs(&w, a);

    len = ngx_gateway_otlp_attrs_end(&w);

    pe->attempt_len = (uint16_t) len;
    pe->status = a->status;
    pe->number = a->number;
    pe->cached = a->cached;

    return len ? pe : NULL;
}


/*
 * The method was checked by nginx; the service, the instance's id and
 * address by the registry: none needs checking again.
 */

static void
ngx_http_gateway_trace_peer_attrs(ngx_gateway_otlp_writer_t *w,
    ngx_http_gateway_attempt_t *a)
{
    u_char              *p;
    ngx_str_t            host;
    ngx_uint_t           port;
    ngx_http_request_t  *r;

    r = a->request;

    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(METHOD),
                         (char *) r->method_name.data, r->method_name.len);

    /* the instance's address: host:port, [v6]:port or unix:path */

    host = ngx_http_gateway_peer_name(a->peer);
    port = 0;

    if (host.len > 5 && ngx_strncmp(host.data, "unix:", 5) != 0) {

        /* the port is after the last ':' that is not inside [v6] */

        for (p = host.data + host.len;
             p > host.data && p[-1] != ':' && p[-1] != ']';
             p--)
        {
            /* void */
        }

        if (p > host.data && p[-1] == ':') {
            port = 1;
            host.len = p - 1 - host.data;
        }

        if (host.len > 2 && host.data[0] == '['
            && host.data[host.len - 1] == ']')
        {
            host.data++;
            host.len -= 2;
        }
    }

    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(ADDRESS),
                         (char *) host.data, host.len);
    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(PEER),
                         (char *) host.data, host.len);

    if (port) {
        ngx_gateway_otlp_int(w, ngx_http_gateway_trace_key(PORT),
                    ngx_inet_get_port(ngx_http_gateway_peer_sockaddr(a->peer)));
    }

    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(SERVICE),
                         (char *) a->service->data, a->service->len);
    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(INSTANCE),
                         (char *) ngx_http_gateway_peer_id(a->peer).data,
                         a->peer->data->id_len);
}


static void
ngx_http_gateway_trace_attempt_attrs(ngx_gateway_otlp_writer_t *w,
    ngx_http_gateway_attempt_t *a)
{
    if (a->status) {
        ngx_gateway_otlp_int(w, ngx_http_gateway_trace_key(STATUS),
                             a->status);
    }

    ngx_gateway_otlp_int(w, ngx_http_gateway_trace_key(ATTEMPT), a->number);
    ngx_gateway_otlp_bool(w, ngx_http_gateway_trace_key(REUSED), a->cached);
}


/* proxy_next_upstream's words for why an attempt failed */

static void
ngx_http_gateway_trace_reason(ngx_http_gateway_attempt_t *a, u_char *buf,
    ngx_str_t *reason)
{
    switch (a->result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        ngx_str_set(reason, "timeout");
        return;

    case NGX_HTTP_GATEWAY_ATTEMPT_STALE:
        ngx_str_set(reason, "stale_connection");
        return;

    case NGX_HTTP_GATEWAY_ATTEMPT_STATUS:
    case NGX_HTTP_GATEWAY_ATTEMPT_NEXT:
        if (a->status) {
            reason->data = buf;
            reason->len = ngx_sprintf(buf, "http_%uD", a->status) - buf;
            return;
        }

        /* fall through */

    default:
        ngx_str_set(reason, "error");
    }
}


/*
 * The SERVER span's cache entry for the request (NULL: none, the span is
 * written without it): found, or made anew
 */

static ngx_http_gateway_trace_conn_t *
ngx_http_gateway_trace_conn(ngx_http_request_t *r,
    ngx_http_gateway_trace_loc_conf_t *tlcf)
{
    size_t                          ua_len;
    ngx_str_t                      *ua, *host, *method;
    ngx_connection_t               *c;
    ngx_http_gateway_trace_conn_t  *ce;

    if (ngx_http_gateway_trace_conns == NULL) {
        return NULL;
    }

    c = r->connection;
    method = &r->method_name;
    host = &r->headers_in.server;
    ua = r->headers_in.user_agent ? &r->headers_in.user_agent->value : NULL;
    ua_len = ua ? ua->len + 1 : 0;

    ce = &ngx_http_gateway_trace_conns[(ngx_uint_t) c->fd
                                  & ((1 << NGX_HTTP_GATEWAY_TRACE_CONN_BITS)
                                     - 1)];

    if (ce->number == c->number && ce->loc == tlcf && ce->len
        && ce->method_len == method->len && ce->host_len == host->len
        && ce->user_agent_len == ua_len
        && ngx_gateway_otlp_equal(ce->name, method->data, method->len)
        && ngx_gateway_otlp_equal(ce->host, host->data, host->len)
        && (ua == NULL
            || ngx_gateway_otlp_equal(ce->user_agent, ua->data, ua->len)))
    {
        return ce;
    }

    return ngx_http_gateway_trace_conn_new(r, tlcf, ce, host, ua);
}


/* host and ua (NULL: none) as conn() found them */

static NGX_HTTP_GATEWAY_NOINLINE ngx_http_gateway_trace_conn_t *
ngx_http_gateway_trace_conn_new(ngx_http_request_t *r,
    ngx_http_gateway_trace_loc_conf_t *tlcf, ngx_http_gateway_trace_conn_t *ce,
    ngx_str_t *host, ngx_str_t *ua)
{
    size_t                      len;
    ngx_str_t                  *method, name;
    ngx_gateway_otlp_writer_t   w;

    method = &r->method_name;

    ce->len = 0;

    if (method->len > NGX_HTTP_GATEWAY_TRACE_METHOD_MAX
        || host->len > NGX_HTTP_GATEWAY_TRACE_TEXT_MAX
        || (ua && ua->len > NGX_HTTP_GATEWAY_TRACE_TEXT_MAX))
    {
        return NULL;
    }

    ngx_gateway_otlp_span_attrs_begin(&w, ce->attrs, sizeof(ce->attrs),
                                      ngx_http_gateway_trace_json);

    ngx_http_gateway_trace_server_attrs(&w, r, tlcf);

    len = ngx_gateway_otlp_attrs_end(&w);

    if (len == 0) {
        return NULL;
    }

    ce->number = r->connection->number;
    ce->loc = tlcf;
    ce->len = (uint16_t) len;
    ce->method_len = (uint16_t) method->len;
    ngx_http_gateway_trace_name(r, tlcf, ce->name, sizeof(ce->name), &name);
    ce->name_len = (uint16_t) name.len;
    ce->host_len = (uint16_t) host->len;
    ngx_memcpy(ce->host, host->data, host->len);
    ce->user_agent_len = 0;

    if (ua) {
        ce->user_agent_len = (uint16_t) (ua->len + 1);
        ngx_memcpy(ce->user_agent, ua->data, ua->len);
    }

    return ce;
}


/*
 * The SERVER span's name: "METHOD route" (e.g. "GET /svc/") in buf, or
 * the method alone, without a route or when that is longer than size
 */

static void
ngx_http_gateway_trace_name(ngx_http_request_t *r,
    ngx_http_gateway_trace_loc_conf_t *tlcf, u_char *buf, size_t size,
    ngx_str_t *name)
{
    u_char     *p;
    ngx_str_t  *method;

    method = &r->method_name;

    if (method->len > size) {
        *name = *method;
        return;
    }

    p = ngx_cpymem(buf, method->data, method->len);

    if (tlcf->route.len && method->len + 1 + tlcf->route.len <= size) {
        *p++ = ' ';
        p = ngx_cpymem(p, tlcf->route.data, tlcf->route.len);
    }

    name->data = buf;
    name->len = p - buf;
}


/*
 * A SERVER span's attributes that its connection's requests most often
 * repeat.  nginx checked the method; the text from the request (Host,
 * User-Agent) is checked here, http.route at configuration time.
 */

static void
ngx_http_gateway_trace_server_attrs(ngx_gateway_otlp_writer_t *w,
    ngx_http_request_t *r, ngx_http_gateway_trace_loc_conf_t *tlcf)
{
    ngx_str_t          v;
    ngx_connection_t  *c;

    c = r->connection;

    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(METHOD),
                         (char *) r->method_name.data, r->method_name.len);

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(SCHEME),
                             "https", 5);

    } else
#endif
    {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(SCHEME),
                             "http", 4);
    }

    if (c->local_sockaddr) {
        ngx_gateway_otlp_int(w, ngx_http_gateway_trace_key(PORT),
                             ngx_inet_get_port(c->local_sockaddr));
    }

    if (ngx_http_gateway_trace_text(&r->headers_in.server, &v)) {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(ADDRESS),
                             (char *) v.data, v.len);
    }

    if (r->headers_in.user_agent
        && ngx_http_gateway_trace_text(&r->headers_in.user_agent->value, &v))
    {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(USER_AGENT),
                             (char *) v.data, v.len);
    }

    if (tlcf->route.len) {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(ROUTE),
                             (char *) tlcf->route.data, tlcf->route.len);
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
    ngx_http_gateway_trace_ctx_t  *t;

    t = ngx_http_gateway_trace_get(r);

    if (t && t->sampled) {
        ngx_http_gateway_trace_server_span(r, t);
    }

    return NGX_OK;
}


/* a sampled request's SERVER span */

static NGX_HTTP_GATEWAY_NOINLINE void
ngx_http_gateway_trace_server_span(ngx_http_request_t *r,
    ngx_http_gateway_trace_ctx_t *t)
{
    u_char                              name[NGX_HTTP_GATEWAY_TRACE_NAME_MAX];
    ngx_str_t                           v;
    ngx_uint_t                          status;
    ngx_connection_t                   *c;
    ngx_gateway_otlp_span_t             span;
    ngx_gateway_otlp_writer_t          *w;
    ngx_http_gateway_trace_conn_t      *ce;
    ngx_http_gateway_trace_loc_conf_t  *tlcf;

    c = r->connection;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_gateway_trace_module);

    ce = ngx_http_gateway_trace_conn(r, tlcf);

    if (ce) {
        span.name = (const char *) ce->name;
        span.name_len = ce->name_len;

    } else {
        ngx_http_gateway_trace_name(r, tlcf, name, sizeof(name), &v);
        span.name = (const char *) v.data;
        span.name_len = v.len;
    }

    span.trace_id = t->trace_id;
    span.span_id = t->span_id;
    span.parent_id = t->has_parent ? t->parent_id : NULL;
    span.trace_state = (const char *) t->tracestate.data;
    span.trace_state_len = t->tracestate.len;
    span.kind = NGX_GATEWAY_OTLP_KIND_SERVER;
    span.start = (uint64_t) r->start_sec * 1000000000
                 + (uint64_t) r->start_msec * 1000000;
    span.end = ngx_http_gateway_trace_now();
    span.flags = NGX_GATEWAY_TRACE_SAMPLED | NGX_GATEWAY_OTLP_FLAGS_HAS_REMOTE;

    if (t->has_parent) {
        span.flags |= NGX_GATEWAY_OTLP_FLAGS_REMOTE;
    }

    w = ngx_http_gateway_trace_span(&span);
    if (w == NULL) {
        return;
    }

    v = r->unparsed_uri;

    if (r->args_start && r->args_start > v.data) {
        v.len = r->args_start - 1 - v.data;
    }

    if (ngx_http_gateway_trace_text(&v, &v)) {
        ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(PATH),
                             (char *) v.data, v.len);
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status) {
        ngx_gateway_otlp_int(w, ngx_http_gateway_trace_key(STATUS), status);
    }

    /*
     * nginx's own text of the client's address: not kept with the
     * connection, the realip module changes it for each request
     */

    ngx_gateway_otlp_str(w, ngx_http_gateway_trace_key(PEER),
                         (char *) c->addr_text.data, c->addr_text.len);

    if (ce) {
        ngx_gateway_otlp_attrs(w, ce->attrs, ce->len);

    } else {
        ngx_http_gateway_trace_server_attrs(w, r, tlcf);
    }

    ngx_http_gateway_trace_span_done(w, (status >= 500)
                                        ? NGX_GATEWAY_OTLP_STATUS_ERROR
                                        : NGX_GATEWAY_OTLP_STATUS_UNSET);
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
        p = ngx_http_gateway_trace_traceparent(t);
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
    ngx_str_t                           *name;
    ngx_uint_t                           i;
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

    /* the attributes' keys are constants: encoded once, here */

    for (i = 0; i < NGX_HTTP_GATEWAY_TRACE_NKEYS; i++) {
        name = &ngx_http_gateway_trace_key_names[i];

        if (ngx_gateway_otlp_key(&ngx_http_gateway_trace_keys[i],
                                 (char *) name->data, name->len)
            != 0)
        {
            return NGX_ERROR;
        }
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
                           "1 to %d bytes of UTF-8 text without control "
                           "characters",
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

    ngx_http_core_loc_conf_t  *clcf;

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

    /*
     * http.route: a prefix or exact location (not a regular expression,
     * a named one or an "if"), checked once here
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    ngx_str_null(&conf->route);

    if (clcf->name.len && clcf->name.len <= NGX_HTTP_GATEWAY_TRACE_TEXT_MAX
        && !clcf->named && !clcf->noname
#if (NGX_PCRE)
        && clcf->regex == NULL
#endif
        && ngx_gateway_text_valid((char *) clcf->name.data, clcf->name.len))
    {
        conf->route = clcf->name;
    }

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

    if (ngx_http_gateway_trace_used) {
        ngx_http_gateway_trace_json =
                           (tmcf->protocol == NGX_HTTP_GATEWAY_TRACE_JSON);

        ngx_http_gateway_trace_peers = ngx_calloc(
                           sizeof(ngx_http_gateway_trace_peer_t)
                           << NGX_HTTP_GATEWAY_TRACE_PEER_BITS, cycle->log);
        ngx_http_gateway_trace_conns = ngx_calloc(
                           sizeof(ngx_http_gateway_trace_conn_t)
                           << NGX_HTTP_GATEWAY_TRACE_CONN_BITS, cycle->log);

        if (ngx_http_gateway_trace_peers == NULL
            || ngx_http_gateway_trace_conns == NULL)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_gateway_trace_export_init(cycle, tmcf);
}


static void
ngx_http_gateway_trace_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_trace_ctx_t  *ctx;

    ngx_http_gateway_trace_export_exit(cycle);

    if (ngx_http_gateway_trace_peers) {
        ngx_free(ngx_http_gateway_trace_peers);
        ngx_http_gateway_trace_peers = NULL;
    }

    if (ngx_http_gateway_trace_conns) {
        ngx_free(ngx_http_gateway_trace_conns);
        ngx_http_gateway_trace_conns = NULL;
    }

    while (ngx_http_gateway_trace_free) {
        ctx = ngx_http_gateway_trace_free;
        ngx_http_gateway_trace_free = ctx->next;
        ngx_free(ctx);
    }
}
