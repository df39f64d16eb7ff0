
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * TLS sessions to the instances of gateway upstreams, for resumption.
 *
 * Each worker keeps its own cache: no shared memory and no lock on the
 * request path.  An entry belongs to one instance (its uid, never reused for
 * the life of the zone) and one TLS client context (one per location that
 * proxies with TLS: a session made under other TLS settings, say another
 * client certificate, is never offered).  An instance that is deregistered
 * and registered again gets a new uid, so no session of the old one is
 * offered to it; one whose address changed has its entry dropped at the next
 * connection.  Entries of instances that are gone are never looked up again
 * and age out: the cache holds at most "gateway_ssl_sessions" entries and
 * drops the least recently used.
 */


#define NGX_HTTP_GATEWAY_SSL_SESSIONS  1024


typedef struct {
    ngx_rbtree_node_t            node;      /* ordered by uid, ctx */
    ngx_queue_t                  queue;     /* most recently used first */
    uint64_t                     uid;
    SSL_CTX                     *ctx;
    ngx_ssl_session_t           *session;
    socklen_t                    socklen;
    ngx_sockaddr_t               sockaddr;
} ngx_http_gateway_ssl_session_t;


typedef struct {
    ngx_uint_t                   max;
} ngx_http_gateway_ssl_session_conf_t;


static ngx_http_gateway_ssl_session_t *ngx_http_gateway_ssl_session_find(
    uint64_t uid, SSL_CTX *ctx);
static void ngx_http_gateway_ssl_session_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_gateway_ssl_session_cmp(
    ngx_http_gateway_ssl_session_t *one, uint64_t uid, SSL_CTX *ctx);
static void ngx_http_gateway_ssl_session_drop(
    ngx_http_gateway_ssl_session_t *s);

static void *ngx_http_gateway_ssl_session_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_ssl_session_init_conf(ngx_conf_t *cf,
    void *conf);
static ngx_int_t ngx_http_gateway_ssl_session_init_process(
    ngx_cycle_t *cycle);
static void ngx_http_gateway_ssl_session_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_gateway_ssl_session_commands[] = {

    { ngx_string("gateway_ssl_sessions"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_gateway_ssl_session_conf_t, max),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_ssl_session_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_gateway_ssl_session_create_conf, /* create main configuration */
    ngx_http_gateway_ssl_session_init_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_ssl_session_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_ssl_session_module_ctx, /* module context */
    ngx_http_gateway_ssl_session_commands, /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gateway_ssl_session_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gateway_ssl_session_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_rbtree_t       ngx_http_gateway_ssl_sessions;
static ngx_rbtree_node_t  ngx_http_gateway_ssl_sentinel;
static ngx_queue_t        ngx_http_gateway_ssl_lru;
static ngx_uint_t         ngx_http_gateway_ssl_count;
static ngx_uint_t         ngx_http_gateway_ssl_max;


ngx_int_t
ngx_http_gateway_ssl_session_set(ngx_peer_connection_t *pc, uint64_t uid)
{
    ngx_connection_t                *c;
    ngx_http_gateway_ssl_session_t  *s;

    c = pc->connection;

    s = ngx_http_gateway_ssl_session_find(uid, c->ssl->session_ctx);

    if (s == NULL) {
        return NGX_OK;
    }

    if (s->socklen != pc->socklen
        || ngx_memcmp(&s->sockaddr, pc->sockaddr, pc->socklen) != 0)
    {
        /* the instance moved to another address */
        ngx_http_gateway_ssl_session_drop(s);
        return NGX_OK;
    }

    ngx_queue_remove(&s->queue);
    ngx_queue_insert_head(&ngx_http_gateway_ssl_lru, &s->queue);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "gateway set ssl session: %p, instance %uL",
                   s->session, uid);

    if (ngx_ssl_set_session(c, s->session) != NGX_OK) {
        /* logged; the connection goes on with a full handshake */
        ngx_http_gateway_ssl_session_drop(s);
    }

    return NGX_OK;
}


void
ngx_http_gateway_ssl_session_save(ngx_peer_connection_t *pc, uint64_t uid)
{
    SSL_CTX                         *ctx;
    ngx_ssl_session_t               *session;
    ngx_http_gateway_ssl_session_t  *s;

    if (ngx_http_gateway_ssl_max == 0
        || pc->socklen > (socklen_t) sizeof(ngx_sockaddr_t))
    {
        return;
    }

    session = ngx_ssl_get_session(pc->connection);
    if (session == NULL) {
        return;
    }

    ctx = pc->connection->ssl->session_ctx;

    s = ngx_http_gateway_ssl_session_find(uid, ctx);

    if (s) {
        ngx_ssl_free_session(s->session);
        ngx_queue_remove(&s->queue);

    } else {
        if (ngx_http_gateway_ssl_count == ngx_http_gateway_ssl_max) {
            ngx_http_gateway_ssl_session_drop(
                ngx_queue_data(ngx_queue_last(&ngx_http_gateway_ssl_lru),
                               ngx_http_gateway_ssl_session_t, queue));
        }

        s = ngx_alloc(sizeof(ngx_http_gateway_ssl_session_t), pc->log);
        if (s == NULL) {
            ngx_ssl_free_session(session);
            return;
        }

        s->uid = uid;
        s->ctx = ctx;

        ngx_rbtree_insert(&ngx_http_gateway_ssl_sessions, &s->node);
        ngx_http_gateway_ssl_count++;
    }

    s->session = session;
    s->socklen = pc->socklen;
    ngx_memcpy(&s->sockaddr, pc->sockaddr, pc->socklen);

    ngx_queue_insert_head(&ngx_http_gateway_ssl_lru, &s->queue);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "gateway save ssl session: %p, instance %uL, %ui cached",
                   session, uid, ngx_http_gateway_ssl_count);
}


static ngx_http_gateway_ssl_session_t *
ngx_http_gateway_ssl_session_find(uint64_t uid, SSL_CTX *ctx)
{
    ngx_int_t                        rc;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_gateway_ssl_session_t  *s;

    node = ngx_http_gateway_ssl_sessions.root;
    sentinel = ngx_http_gateway_ssl_sessions.sentinel;

    if (node == NULL) {
        return NULL;
    }

    while (node != sentinel) {
        s = (ngx_http_gateway_ssl_session_t *) node;

        rc = ngx_http_gateway_ssl_session_cmp(s, uid, ctx);

        if (rc == 0) {
            return s;
        }

        node = (rc > 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_gateway_ssl_session_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_gateway_ssl_session_t   *s;

    s = (ngx_http_gateway_ssl_session_t *) node;

    for ( ;; ) {
        p = ngx_http_gateway_ssl_session_cmp(
                (ngx_http_gateway_ssl_session_t *) temp, s->uid, s->ctx) > 0
            ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* the order of entries: by uid, then by context */

static ngx_int_t
ngx_http_gateway_ssl_session_cmp(ngx_http_gateway_ssl_session_t *one,
    uint64_t uid, SSL_CTX *ctx)
{
    if (one->uid != uid) {
        return one->uid > uid ? 1 : -1;
    }

    if (one->ctx != ctx) {
        return (uintptr_t) one->ctx > (uintptr_t) ctx ? 1 : -1;
    }

    return 0;
}


static void
ngx_http_gateway_ssl_session_drop(ngx_http_gateway_ssl_session_t *s)
{
    ngx_rbtree_delete(&ngx_http_gateway_ssl_sessions, &s->node);
    ngx_queue_remove(&s->queue);
    ngx_ssl_free_session(s->session);
    ngx_free(s);

    ngx_http_gateway_ssl_count--;
}


static void *
ngx_http_gateway_ssl_session_create_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_ssl_session_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_http_gateway_ssl_session_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->max = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_gateway_ssl_session_init_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_gateway_ssl_session_conf_t *sscf = conf;

    ngx_conf_init_uint_value(sscf->max, NGX_HTTP_GATEWAY_SSL_SESSIONS);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_gateway_ssl_session_init_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_ssl_session_conf_t  *sscf;

    sscf = ngx_http_cycle_get_module_main_conf(cycle,
                                         ngx_http_gateway_ssl_session_module);
    if (sscf == NULL) {
        return NGX_OK;
    }

    ngx_http_gateway_ssl_max = sscf->max;

    ngx_rbtree_init(&ngx_http_gateway_ssl_sessions,
                    &ngx_http_gateway_ssl_sentinel,
                    ngx_http_gateway_ssl_session_insert_value);
    ngx_queue_init(&ngx_http_gateway_ssl_lru);

    return NGX_OK;
}


static void
ngx_http_gateway_ssl_session_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t  *q;

    if (ngx_http_gateway_ssl_sessions.root == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_gateway_ssl_lru)) {
        q = ngx_queue_head(&ngx_http_gateway_ssl_lru);
        ngx_http_gateway_ssl_session_drop(
            ngx_queue_data(q, ngx_http_gateway_ssl_session_t, queue));
    }
}
