
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"
#include "ngx_http_gateway_failure.h"


#define NGX_HTTP_GATEWAY_TRIED  1

/* what an attempt does besides choosing and counting: see "extras" */
#define NGX_HTTP_GATEWAY_EXTRA_FILTER   0x01    /* health check, ejection */
#define NGX_HTTP_GATEWAY_EXTRA_STICKY   0x02
#define NGX_HTTP_GATEWAY_EXTRA_BEGIN    0x04    /* microseconds, retry
                                                   budget, start hooks */
#define NGX_HTTP_GATEWAY_EXTRA_END      0x08    /* microseconds, retry
                                                   budget */
#define NGX_HTTP_GATEWAY_EXTRA_OBSERVE  0x10    /* observers: the end's
                                                   bytes for them too */


typedef struct {
    ngx_http_complex_value_t     *service;   /* NULL: a fixed name */
    ngx_str_t                     name;
    uint32_t                      hash;
    ngx_http_gateway_lookup_t    *lookup;    /* a fixed name's, this
                                                worker's */

    ngx_http_gateway_balancer_t  *balancer;
    void                         *balancer_conf;
    ngx_msec_t                    slow_start;

    ngx_http_gateway_sticky_t    *sticky;
    ngx_http_gateway_locality_t  *locality;

    ngx_uint_t                    unhealthy; /* see gateway_health_check */
    ngx_uint_t                    expiry;    /* embedded registry: TTLs */
    ngx_uint_t                    attempt_us; /* gmcf's, read per attempt */
    ngx_atomic_uint_t             health;    /* its tag, a variable name's */
    ngx_uint_t                    limit;     /* gateway_max_requests */
    ngx_uint_t                    full;      /* a variable name, a limit,
                                                a retry conf: see
                                                upstream_init_peer() */

    ngx_http_gateway_eject_conf_t *eject;    /* NULL: off */
    ngx_http_gateway_retry_conf_t *retry;

    /*
     * NGX_HTTP_GATEWAY_EXTRA_*: what an attempt does here besides
     * choosing and counting (see upstream_init_module()); each part one
     * test, and without them none runs.
     */
    ngx_uint_t                    extras;

    ngx_http_gateway_main_conf_t *gmcf;
} ngx_http_gateway_upstream_srv_conf_t;


/*
 * A request's state across its attempts, taken from this worker's free
 * list and given back by the request pool's cleanup, which it carries
 * itself: no pool memory at all (nginx's request pool grows by 4 KiB
 * blocks, and a few hundred bytes more cost a block, a malloc and a free,
 * per request).
 *
 * Each attempt holds a reference to the snapshot its instance came from.
 * The hold outlives the attempt: the attempt's $upstream_addr (pc->name,
 * which nginx reads up to the access log) points at the snapshot's text,
 * so the hold is kept until the next attempt (which first copies the text
 * into the pool) or the request's end.  After a failure on a cached
 * keepalive connection the attempt stays open until nginx says whether
 * that connection was only stale (it retries with one more try) or the
 * instance failed.
 */

typedef struct ngx_http_gateway_peer_data_s  ngx_http_gateway_peer_data_t;

struct ngx_http_gateway_peer_data_s {
    ngx_http_gateway_upstream_srv_conf_t *conf;
    ngx_str_t                     service;
    uint32_t                      hash;
    uint32_t                      slot;      /* the last attempt's hold */
    uint32_t                      limit;     /* gateway_max_requests' */

    uint32_t                      budget;
    uint32_t                      tries;
    uint32_t                      ntried;
    uint32_t                      nalloc;
    uint64_t                     *tried;
    uint64_t                      tried0[NGX_HTTP_GATEWAY_TRIED];

    ngx_http_gateway_attempt_t    attempt;   /* request, peer, ... */
    ngx_http_gateway_select_t     sel;       /* the attempt's choice */

    ngx_str_t                    *name;      /* the last attempt's
                                                $upstream_addr */
    ngx_str_t                     name0;     /* the first one's */

    ngx_pool_cleanup_t            cleanup;   /* in the request pool */
    ngx_http_gateway_peer_data_t *next;      /* free list */

    unsigned                      open:1;    /* an attempt to report */
    unsigned                      active:1;  /* counted in "active" */
    unsigned                      held:1;    /* slot, after its attempt */
    unsigned                      limited:1; /* limit is a hold */
    unsigned                      prepared:1;
};


static ngx_int_t ngx_http_gateway_upstream_postconf(ngx_conf_t *cf);
static ngx_int_t ngx_http_gateway_upstream_check(ngx_conf_t *cf);
static ngx_int_t ngx_http_gateway_observer_push(ngx_conf_t *cf,
    ngx_array_t *list, ngx_http_gateway_observer_pt handler);
static ngx_int_t ngx_http_gateway_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_gateway_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_gateway_upstream_init_full(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us) NGX_HTTP_GATEWAY_NOINLINE;
static ngx_inline void ngx_http_gateway_upstream_init_state(
    ngx_http_request_t *r, ngx_http_gateway_upstream_srv_conf_t *gscf,
    ngx_http_gateway_peer_data_t *gp);
static ngx_int_t ngx_http_gateway_upstream_limit(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_gateway_peer_data_t *gp)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_int_t ngx_http_gateway_upstream_get_peer(ngx_peer_connection_t *pc,
    void *data);
static ngx_int_t ngx_http_gateway_upstream_next(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp) NGX_HTTP_GATEWAY_NOINLINE;
static ngx_int_t ngx_http_gateway_upstream_choose(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_str_t *name);
static ngx_int_t ngx_http_gateway_upstream_none(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t first, ngx_uint_t registered)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_inline void ngx_http_gateway_upstream_filter(
    ngx_http_gateway_peer_data_t *gp, ngx_http_gateway_select_t *sel,
    ngx_http_gateway_snapshot_t *snap);
static void ngx_http_gateway_upstream_filter_extras(
    ngx_http_gateway_peer_data_t *gp, ngx_http_gateway_select_t *sel)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_inline void ngx_http_gateway_upstream_begin(
    ngx_http_gateway_peer_data_t *gp);
static ngx_inline void ngx_http_gateway_upstream_end(
    ngx_http_gateway_peer_data_t *gp, ngx_http_upstream_t *u);
static ngx_int_t ngx_http_gateway_upstream_pick(
    ngx_http_gateway_upstream_srv_conf_t *conf,
    ngx_http_gateway_select_t *sel);
static ngx_int_t ngx_http_gateway_upstream_select(
    ngx_http_gateway_upstream_srv_conf_t *conf,
    ngx_http_gateway_select_t *sel);
static void ngx_http_gateway_upstream_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_http_gateway_upstream_failed(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t state)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_uint_t ngx_http_gateway_upstream_result(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t state);
static ngx_inline ngx_uint_t ngx_http_gateway_upstream_listed(
    ngx_http_upstream_t *u);
static void ngx_http_gateway_upstream_report(ngx_http_gateway_peer_data_t *gp,
    ngx_uint_t retried) NGX_HTTP_GATEWAY_NOINLINE;
static void ngx_http_gateway_upstream_observe(
    ngx_http_gateway_peer_data_t *gp) NGX_HTTP_GATEWAY_NOINLINE;
static uint64_t ngx_http_gateway_upstream_usec(void) NGX_HTTP_GATEWAY_NOINLINE;
static ngx_int_t ngx_http_gateway_upstream_release(
    ngx_http_gateway_peer_data_t *gp);
static void ngx_http_gateway_upstream_cleanup(void *data);
static void ngx_http_gateway_upstream_report_last(
    ngx_http_gateway_peer_data_t *gp) NGX_HTTP_GATEWAY_NOINLINE;
static ngx_uint_t ngx_http_gateway_upstream_left(
    ngx_http_gateway_peer_data_t *gp) NGX_HTTP_GATEWAY_NOINLINE;
static void ngx_http_gateway_upstream_log_none(ngx_http_request_t *r,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t registered)
    NGX_HTTP_GATEWAY_NOINLINE;
static ngx_int_t ngx_http_gateway_upstream_unavailable(ngx_http_request_t *r);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_gateway_upstream_set_session(
    ngx_peer_connection_t *pc, void *data);
static void ngx_http_gateway_upstream_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif

static ngx_int_t ngx_http_gateway_upstream_init_module(ngx_cycle_t *cycle);
static void ngx_http_gateway_upstream_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_gateway_upstream_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gateway_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gateway_slow_start(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_upstream_commands[] = {

    { ngx_string("gateway_service"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_service,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_gateway_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_slow_start"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_slow_start,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_gateway_upstream_srv_conf_t, slow_start),
      NULL },

    { ngx_string("gateway_sticky"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_gateway_sticky,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_gateway_upstream_srv_conf_t, sticky),
      NULL },

    { ngx_string("gateway_locality"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_gateway_locality,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_gateway_upstream_srv_conf_t, locality),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_upstream_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_gateway_upstream_postconf,    /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_upstream_create_conf, /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


static ngx_http_gateway_peer_data_t  *ngx_http_gateway_peer_free;


ngx_module_t  ngx_http_gateway_upstream_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_upstream_module_ctx, /* module context */
    ngx_http_gateway_upstream_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_gateway_upstream_init_module, /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gateway_upstream_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * Once the configuration is complete: the observers are added by the
 * modules' postconfiguration, after the upstreams were initialized.
 */

static ngx_int_t
ngx_http_gateway_upstream_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                              i;
    ngx_http_upstream_srv_conf_t          **uscfp;
    ngx_http_gateway_main_conf_t           *gmcf;
    ngx_http_upstream_main_conf_t          *umcf;
    ngx_http_gateway_upstream_srv_conf_t   *gscf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_upstream_module);
    if (umcf == NULL) {
        return NGX_OK;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        /* keepalive wraps peer.init: gmcf is set for a gateway_service */

        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        gscf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                           ngx_http_gateway_upstream_module);
        gmcf = gscf->gmcf;

        if (gmcf == NULL) {
            continue;
        }

        gscf->extras = 0;

        if (gscf->unhealthy || gscf->eject) {
            gscf->extras |= NGX_HTTP_GATEWAY_EXTRA_FILTER;
        }

        if (gscf->sticky) {
            gscf->extras |= NGX_HTTP_GATEWAY_EXTRA_STICKY;
        }

        if (gscf->attempt_us || gscf->retry) {
            gscf->extras |= NGX_HTTP_GATEWAY_EXTRA_BEGIN
                            |NGX_HTTP_GATEWAY_EXTRA_END;
        }

        if (gmcf->starts.nelts) {
            gscf->extras |= NGX_HTTP_GATEWAY_EXTRA_BEGIN;
        }

        if (gmcf->observers.nelts) {
            gscf->extras |= NGX_HTTP_GATEWAY_EXTRA_OBSERVE;
        }
    }

    return NGX_OK;
}


/* the free list goes with the module: nginx unloads it as the process exits */

static void
ngx_http_gateway_upstream_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_peer_data_t  *gp;

    while (ngx_http_gateway_peer_free) {
        gp = ngx_http_gateway_peer_free;
        ngx_http_gateway_peer_free = gp->next;
        ngx_free(gp);
    }
}


static ngx_int_t
ngx_http_gateway_upstream_postconf(ngx_conf_t *cf)
{
    return ngx_http_gateway_upstream_check(cf);
}


/*
 * The directives that do not check for "gateway_service" as they are
 * parsed (their modules' confs only record them) would be ignored in an
 * upstream without it; the others refuse to come before it.
 */

static ngx_int_t
ngx_http_gateway_upstream_check(ngx_conf_t *cf)
{
    char                            *name;
    ngx_uint_t                       i;
    ngx_http_gateway_eject_conf_t   *ecf;
    ngx_http_gateway_retry_conf_t   *rcf;
    ngx_http_upstream_srv_conf_t   **uscfp, *us;
    ngx_http_upstream_main_conf_t   *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        us = uscfp[i];

        /* an implicit upstream of proxy_pass has no block */

        if (us->srv_conf == NULL
            || ngx_http_gateway_upstream_configured(
                   ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module)))
        {
            continue;
        }

        ecf = ngx_http_conf_upstream_srv_conf(us,
                                              ngx_http_gateway_eject_module);
        rcf = ngx_http_conf_upstream_srv_conf(us,
                                              ngx_http_gateway_retry_module);

        if (ecf->enabled) {
            name = "gateway_eject";

        } else if (rcf->percent != NGX_CONF_UNSET_UINT) {
            name = "gateway_retry_budget";

        } else if (rcf->idempotency_key != NGX_CONF_UNSET) {
            name = "gateway_retry_idempotency_key";

        } else {
            continue;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s\" requires \"gateway_service\" in upstream "
                      "\"%V\" in %s:%ui",
                      name, &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_observer_add(ngx_conf_t *cf,
    ngx_http_gateway_observer_pt handler)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

    return ngx_http_gateway_observer_push(cf, &gmcf->observers, handler);
}


ngx_int_t
ngx_http_gateway_attempt_start_add(ngx_conf_t *cf,
    ngx_http_gateway_observer_pt handler)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

    return ngx_http_gateway_observer_push(cf, &gmcf->starts, handler);
}


/* a handler added again (every upstream of a method adds it) is kept once */

static ngx_int_t
ngx_http_gateway_observer_push(ngx_conf_t *cf, ngx_array_t *list,
    ngx_http_gateway_observer_pt handler)
{
    ngx_uint_t                     i;
    ngx_http_gateway_observer_pt  *h;

    h = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (h[i] == handler) {
            return NGX_OK;
        }
    }

    if (list->elts == NULL
        && ngx_array_init(list, cf->pool, 4,
                          sizeof(ngx_http_gateway_observer_pt))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = ngx_array_push(list);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = handler;

    return NGX_OK;
}


/* for an observer: the balancer's conf if the request's upstream uses it */

void *
ngx_http_gateway_upstream_balancer_conf(ngx_http_request_t *r,
    void *balancer)
{
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    if (r->upstream == NULL || r->upstream->upstream == NULL) {
        return NULL;
    }

    gscf = ngx_http_conf_upstream_srv_conf(r->upstream->upstream,
                                           ngx_http_gateway_upstream_module);

    return gscf->balancer == balancer ? gscf->balancer_conf : NULL;
}


static ngx_int_t
ngx_http_gateway_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_main_conf_t          *gmcf;
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);
    gscf = ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module);

    if (gmcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gateway_service\" in upstream \"%V\" in %s:%ui "
                      "requires \"gateway_registry\" at the http level",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    if (us->servers->nelts > 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"server\" cannot be used together with "
                      "\"gateway_service\" in upstream \"%V\" in %s:%ui",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    if (gscf->balancer == NULL) {
        gscf->balancer = &ngx_http_gateway_balancer_round_robin;
        gscf->balancer_conf = ngx_http_gateway_balancer_create_conf(cf,
                                                      gscf->balancer, NULL, 0);

        if (gscf->balancer_conf == NULL) {
            return NGX_ERROR;
        }
    }

    if (gscf->slow_start == NGX_CONF_UNSET_MSEC) {
        gscf->slow_start = 0;
    }

    gscf->gmcf = gmcf;
    gscf->expiry = (gmcf->redis == NULL);
    gscf->attempt_us = gmcf->attempt_us;     /* set by directives, all read */
    gscf->unhealthy = ngx_http_gateway_health_unhealthy(us);
    gscf->health = ngx_http_gateway_health_tag(us);
    gscf->eject = ngx_http_gateway_eject_conf(us);
    gscf->retry = ngx_http_gateway_retry_conf(us);
    gscf->limit = ngx_http_gateway_limit_conf(us);
    gscf->full = gscf->service || gscf->limit || gscf->retry;

    us->peer.init = ngx_http_gateway_upstream_init_peer;

    return NGX_OK;
}


/*
 * The common case (a free state, a fixed service name, no limit, no retry
 * budget) without a frame of its own; the others take init_full().
 */

static ngx_int_t
ngx_http_gateway_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_peer_data_t          *gp;
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    gscf = ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module);

    gp = ngx_http_gateway_peer_free;

    if (gp == NULL || gscf->full) {
        return ngx_http_gateway_upstream_init_full(r, us);
    }

    ngx_http_gateway_peer_free = gp->next;

    gp->service = gscf->name;
    gp->hash = gscf->hash;

    ngx_http_gateway_upstream_init_state(r, gscf, gp);

    return ngx_http_gateway_upstream_choose(&r->upstream->peer, gp,
                                            &gp->name0);
}


static ngx_int_t
ngx_http_gateway_upstream_init_full(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_peer_data_t          *gp;
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    gscf = ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module);

    gp = ngx_http_gateway_peer_free;

    if (gp) {
        ngx_http_gateway_peer_free = gp->next;

    } else {
        gp = ngx_alloc(sizeof(ngx_http_gateway_peer_data_t),
                       r->connection->log);
        if (gp == NULL) {
            return NGX_ERROR;
        }

        /* what never changes in a state, whichever request it serves */

        gp->cleanup.handler = ngx_http_gateway_upstream_cleanup;
        gp->cleanup.data = gp;
        gp->attempt.service = &gp->service;
    }

    /* before the name: its cleanup gives the state back */

    ngx_http_gateway_upstream_init_state(r, gscf, gp);

    if (gscf->service) {
        if (ngx_http_complex_value(r, gscf->service, &gp->service) != NGX_OK) {
            return NGX_ERROR;
        }

        gp->hash = ngx_crc32_short(gp->service.data, gp->service.len);

    } else {
        gp->service = gscf->name;
        gp->hash = gscf->hash;
    }

    if (gscf->limit
        && ngx_http_gateway_upstream_limit(r, us, gp) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (gscf->retry
        && ngx_http_gateway_retry_init_peer(r, gscf->retry) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_gateway_upstream_choose(&r->upstream->peer, gp,
                                            &gp->name0);
}


/*
 * A request's state, with the cleanup that gives it back in the request
 * pool; its peer connection is ours from now on.  The first attempt is
 * chosen right after, so that a service without live instances is known
 * before the upstream starts (choose() answers 503 then); the upstream's
 * finalization frees it through pc->sockaddr, set only by a choice, even
 * if no attempt runs.
 */

static ngx_inline void
ngx_http_gateway_upstream_init_state(ngx_http_request_t *r,
    ngx_http_gateway_upstream_srv_conf_t *gscf,
    ngx_http_gateway_peer_data_t *gp)
{
    ngx_pool_t             *pool;
    ngx_peer_connection_t  *pc;

    gp->open = 0;
    gp->active = 0;
    gp->held = 0;
    gp->limited = 0;

    /* get_peer() finds the first attempt chosen */

    gp->prepared = 1;

    /* what ngx_pool_cleanup_add() does, without allocating the cleanup */

    pool = r->pool;

    gp->cleanup.next = pool->cleanup;
    pool->cleanup = &gp->cleanup;

    gp->conf = gscf;
    gp->attempt.request = r;
    gp->tries = 0;
    gp->ntried = 0;
    gp->nalloc = NGX_HTTP_GATEWAY_TRIED;
    gp->tried = gp->tried0;
    gp->name = NULL;

    pc = &r->upstream->peer;

    pc->data = gp;
    pc->get = ngx_http_gateway_upstream_get_peer;
    pc->free = ngx_http_gateway_upstream_free_peer;

#if (NGX_HTTP_SSL)
    pc->set_session = ngx_http_gateway_upstream_set_session;
    pc->save_session = ngx_http_gateway_upstream_save_session;
#endif

    /*
     * Instances may come while the request runs, so tries are counted at
     * each attempt; proxy_next_upstream_tries caps this value right after.
     */

    pc->tries = NGX_MAX_INT32_VALUE;
}


/* gateway_max_requests: the request's place, or 503 at once */

static ngx_int_t
ngx_http_gateway_upstream_limit(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_gateway_peer_data_t *gp)
{
    ngx_int_t   rc;
    ngx_uint_t  slot;

    rc = ngx_http_gateway_limit_take(r, us, gp->conf->gmcf, gp->conf->lookup,
                                     &gp->service, gp->hash, &slot);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_gateway_upstream_unavailable(r);
    }

    if (rc == NGX_DONE) {
        gp->limit = slot;
        gp->limited = 1;
    }

    return NGX_OK;
}


static void
ngx_http_gateway_upstream_log_none(ngx_http_request_t *r,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t registered)
{
    u_char     text[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t  name;

    ngx_http_gateway_log_text(&name, text, gp->service.data, gp->service.len);

    if (gp->ntried) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gateway: no live instance of service \"%V\" left "
                      "to try", &name);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "gateway: service \"%V\" has no live instance%s",
                  &name, registered ? "" : " (it is not registered)");
}


/*
 * The upstream module answers 502 when a balancer finds no peer.  A service
 * without live instances is unavailable, so the request is finalized here
 * with 503, the way ngx_http_upstream_finalize_request() expects a request
 * it no longer owns: without its cleanup and with a reference of its own.
 */

static ngx_int_t
ngx_http_gateway_upstream_unavailable(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u->cleanup == NULL) {
        return NGX_ERROR;
    }

    *u->cleanup = NULL;
    u->cleanup = NULL;

    r->main->count++;

    ngx_http_finalize_request(r, NGX_HTTP_SERVICE_UNAVAILABLE);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_gateway_upstream_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    /*
     * The first attempt, chosen by init_peer() in this same event; its
     * budget is nginx's tries once proxy_next_upstream_tries capped them
     */

    if (gp->prepared) {
        gp->prepared = 0;
        gp->budget = pc->tries;
        return NGX_OK;
    }

    return ngx_http_gateway_upstream_next(pc, gp);
}


/* a retry */

static ngx_int_t
ngx_http_gateway_upstream_next(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp)
{
    u_char     *p;
    ngx_str_t  *name;

    if (gp->open) {

        /*
         * the upstream gives one more try when a cached keepalive
         * connection failed: that says nothing of the instance
         */

        if (pc->tries > gp->tries) {
            gp->attempt.result = NGX_HTTP_GATEWAY_ATTEMPT_STALE;
            gp->ntried--;
            gp->budget++;
        }

        ngx_http_gateway_upstream_report(gp, 1);
    }

    if (gp->ntried == gp->nalloc) {
        p = ngx_palloc(gp->attempt.request->pool,
                       2 * gp->nalloc * sizeof(uint64_t));
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, gp->tried, gp->ntried * sizeof(uint64_t));
        gp->tried = (uint64_t *) p;
        gp->nalloc *= 2;
    }

    if (gp->held && ngx_http_gateway_upstream_release(gp) != NGX_OK) {
        return NGX_ERROR;
    }

    name = ngx_palloc(gp->attempt.request->pool, sizeof(ngx_str_t));
    if (name == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_gateway_upstream_choose(pc, gp, name);
}


/*
 * An attempt's instance, its name in "name" (the first attempt's is in the
 * state, a retry's allocated); without one the request may use, the first
 * attempt is answered 503, a retry NGX_BUSY (nginx's own answer then)
 */

static ngx_int_t
ngx_http_gateway_upstream_choose(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_str_t *name)
{
    ngx_int_t                     i, rc;
    ngx_uint_t                    slot, n, trial;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_attempt_t   *a;
    ngx_http_gateway_select_t    *sel;
    ngx_http_gateway_snapshot_t  *snap;

    rc = ngx_http_gateway_snapshot_hold(gp->conf->gmcf, gp->conf->lookup,
                                        &gp->service, gp->hash, &snap, &slot);
    if (rc == NGX_DECLINED) {
        return ngx_http_gateway_upstream_none(pc, gp, name == &gp->name0, 0);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    /* in the request's state, not on the stack: no stack canary */

    sel = &gp->sel;

    ngx_http_gateway_upstream_filter(gp, sel, snap);

    sel->conf = gp->conf->balancer_conf;
    sel->request = gp->attempt.request;
    sel->slow_start = gp->conf->slow_start;

    /* an ejected instance whose time is up: one worker claims its trial */

    for (n = 0; /* void */; n++) {
        i = ngx_http_gateway_upstream_pick(gp->conf, sel);

        if (i == NGX_DECLINED || n == snap->npeers) {
            ngx_http_gateway_snapshot_put(slot);
            return ngx_http_gateway_upstream_none(pc, gp, name == &gp->name0,
                                                  1);
        }

        peer = &snap->peers[i];

        if (!sel->eject) {
            trial = 0;
            break;
        }

        rc = ngx_http_gateway_eject_claim(gp->conf->eject, peer);

        if (rc != NGX_BUSY) {
            trial = (rc == NGX_DONE);
            break;
        }
    }

    if ((gp->conf->extras & NGX_HTTP_GATEWAY_EXTRA_STICKY)
        && ngx_http_gateway_sticky_chosen(gp->conf->sticky,
                                          gp->attempt.request, peer)
           != NGX_OK)
    {
        ngx_http_gateway_snapshot_put(slot);
        return NGX_ERROR;
    }

    /* the name is the held snapshot's text: see upstream_release() */

    pc->sockaddr = ngx_http_gateway_peer_sockaddr(peer);
    pc->socklen = ngx_http_gateway_peer_socklen(peer);

    *name = ngx_http_gateway_peer_name(peer);
    pc->name = name;
    gp->name = name;

    pc->cached = 0;
    pc->connection = NULL;

    /* the +1 before the hold's peer: see ngx_http_gateway_cell_t */

    a = &gp->attempt;

    a->batched = (u_char) ngx_http_gateway_active_up(snap, peer->inst);
    ngx_http_gateway_hold_peer(slot, peer);

    gp->slot = slot;
    gp->active = 1;
    gp->open = 1;
    gp->tried[gp->ntried++] = peer->uid;

    a->snap = snap;
    a->peer = peer;
    a->number = gp->ntried;
    a->start = ngx_current_msec;
    a->start_us = 0;
    a->cached = 0;
    a->retried = 0;
    a->trial = trial;

    /* end, status, result and bytes: set when it ends (free_peer()) */

    if (gp->conf->extras & NGX_HTTP_GATEWAY_EXTRA_BEGIN) {
        ngx_http_gateway_upstream_begin(gp);
    }

    return NGX_OK;
}


/* the core's filter of a snapshot's peers for a request, see eligible() */

static ngx_inline void
ngx_http_gateway_upstream_filter(ngx_http_gateway_peer_data_t *gp,
    ngx_http_gateway_select_t *sel, ngx_http_gateway_snapshot_t *snap)
{
    sel->snap = snap;
    sel->tried = gp->tried;
    sel->ntried = gp->ntried;
    sel->expiry = gp->conf->expiry;
    sel->narrow = (snap->nbackup != 0);
    sel->zone = NULL;
    sel->unhealthy = gp->conf->unhealthy;
    sel->eject = 0;

    if (gp->conf->extras & NGX_HTTP_GATEWAY_EXTRA_FILTER) {
        ngx_http_gateway_upstream_filter_extras(gp, sel);
    }
}


/* the health check's and ejection's part in it */

static void
ngx_http_gateway_upstream_filter_extras(ngx_http_gateway_peer_data_t *gp,
    ngx_http_gateway_select_t *sel)
{
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;

    /* a variable name's health check covers the services it resolves to */

    if (sel->unhealthy && gp->conf->health && snap->service->health == 0) {
        (void) ngx_atomic_cmp_set(&snap->service->health, 0,
                                  gp->conf->health);
    }

    if (gp->conf->eject) {
        sel->eject = ngx_http_gateway_eject_filter(gp->conf->eject, snap,
                                                   gp->attempt.request);
    }
}


/* an attempt ends: its microseconds, its retry budget, its bytes */

static ngx_inline void
ngx_http_gateway_upstream_end(ngx_http_gateway_peer_data_t *gp,
    ngx_http_upstream_t *u)
{
    ngx_http_gateway_attempt_t  *a;

    a = &gp->attempt;

    if (gp->conf->attempt_us) {
        a->end_us = ngx_http_gateway_upstream_usec();
    }

    if (gp->conf->retry) {
        ngx_http_gateway_hold_uncount(gp->slot);
    }

    if (u->state) {
        a->bytes_sent = u->state->bytes_sent;
        a->bytes_received = u->state->bytes_received;

    } else {
        a->bytes_sent = 0;
        a->bytes_received = 0;
    }
}


/* an attempt begins: its microseconds, its retry budget, its observers */

static ngx_inline void
ngx_http_gateway_upstream_begin(ngx_http_gateway_peer_data_t *gp)
{
    ngx_uint_t                     k;
    ngx_http_gateway_attempt_t    *a;
    ngx_http_gateway_observer_pt  *h;

    a = &gp->attempt;

    if (gp->conf->attempt_us) {
        a->start_us = ngx_http_gateway_upstream_usec();
    }

    if (gp->conf->retry && gp->conf->retry->percent != NGX_CONF_UNSET_UINT) {
        ngx_http_gateway_retry_begin(a, gp->slot);
    }

    h = gp->conf->gmcf->starts.elts;

    for (k = 0; k < gp->conf->gmcf->starts.nelts; k++) {
        h[k](a);
    }
}


static ngx_int_t
ngx_http_gateway_upstream_none(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t first, ngx_uint_t registered)
{
    ngx_http_gateway_upstream_log_none(gp->attempt.request, gp, registered);

    if (first) {
        return ngx_http_gateway_upstream_unavailable(gp->attempt.request);
    }

    pc->name = NULL;

    return NGX_BUSY;
}


/* the primaries' choice, else, if there are backups, the backups' */

static ngx_int_t
ngx_http_gateway_upstream_pick(ngx_http_gateway_upstream_srv_conf_t *conf,
    ngx_http_gateway_select_t *sel)
{
    ngx_int_t  i;

    sel->backup = 0;

    if (conf->sticky == NULL && conf->locality == NULL) {
        i = conf->balancer->select(sel);

    } else {
        i = ngx_http_gateway_upstream_select(conf, sel);
    }

    if (i == NGX_DECLINED && sel->snap->nbackup) {
        sel->backup = 1;
        i = ngx_http_gateway_upstream_select(conf, sel);
    }

    return i;
}


/*
 * One tier's choice: the instance the sticky cookie names, else the
 * algorithm's among the preferred zone's instances, else among all.
 */

static ngx_int_t
ngx_http_gateway_upstream_select(ngx_http_gateway_upstream_srv_conf_t *conf,
    ngx_http_gateway_select_t *sel)
{
    ngx_int_t  i;

    if (conf->sticky) {
        i = ngx_http_gateway_sticky_find(conf->sticky, sel);

        if (i != NGX_DECLINED) {
            return i;
        }
    }

    if (conf->locality) {
        ngx_http_gateway_locality_prefer(conf->locality, sel);

        if (sel->zone) {
            i = conf->balancer->select(sel);
            sel->zone = NULL;

            if (i != NGX_DECLINED) {
                return i;
            }
        }
    }

    return conf->balancer->select(sel);
}


static void
ngx_http_gateway_upstream_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_gateway_peer_data_t *gp = data;

    ngx_http_upstream_t         *u;
    ngx_http_gateway_attempt_t  *a;

    if (!gp->open || !gp->active) {
        pc->tries = 0;
        return;
    }

    a = &gp->attempt;
    u = gp->attempt.request->upstream;

    a->end = ngx_current_msec;
    a->end_us = 0;
    a->cached = pc->cached;
    a->status = u->headers_in.status_n;
    a->result = ngx_http_gateway_upstream_result(pc, gp, state);

    if (gp->conf->extras
        & (NGX_HTTP_GATEWAY_EXTRA_END|NGX_HTTP_GATEWAY_EXTRA_OBSERVE))
    {
        ngx_http_gateway_upstream_end(gp, u);
    }

    /* the hold's peer before the -1: see ngx_http_gateway_cell_t */

    ngx_http_gateway_hold_peer(gp->slot, NULL);
    ngx_http_gateway_active_down(a);
    gp->active = 0;

    /* the request's end (the upstream's finalization): no retry follows */

    if (state == 0) {
        pc->tries = 0;
        gp->tries = 0;
        ngx_http_gateway_upstream_report(gp, 0);
        return;
    }

    ngx_http_gateway_upstream_failed(pc, gp, state);
}


/* an attempt that failed or passed on: whether nginx may try again */

static void
ngx_http_gateway_upstream_failed(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t state)
{
    ngx_uint_t                   left, wanted;
    ngx_http_gateway_attempt_t  *a;

    a = &gp->attempt;
    left = 0;

    if (gp->budget > 1 && (state & (NGX_PEER_FAILED|NGX_PEER_NEXT))) {
        left = ngx_http_gateway_upstream_left(gp);

        if (left == 0) {
            ngx_http_gateway_upstream_log_none(gp->attempt.request, gp, 1);
        }
    }

    if (gp->budget) {
        gp->budget--;
    }

    pc->tries = ngx_min(left, gp->budget);

    /* whether nginx retries (its proxy_next_upstream rule), then the budget */

    wanted = (pc->tries > 0 && ngx_http_gateway_retry_wanted(a));

    if (wanted && gp->conf->retry
        && !ngx_http_gateway_retry_allowed(gp->conf->retry, a))
    {
        pc->tries = 0;
        wanted = 0;
    }

    gp->tries = pc->tries;

    /*
     * Only an error on a cached keepalive connection is in doubt: nginx
     * gives one more try when the connection was merely stale.  The next
     * get() tells, or else the request's end (upstream_cleanup()).
     * Anything else is reported now, retried if nginx retries it.
     */

    if (!a->cached || a->result != NGX_HTTP_GATEWAY_ATTEMPT_ERROR) {
        ngx_http_gateway_upstream_report(gp, wanted);
    }
}


static ngx_uint_t
ngx_http_gateway_upstream_result(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp, ngx_uint_t state)
{
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    if (state & NGX_PEER_NEXT) {
        return NGX_HTTP_GATEWAY_ATTEMPT_NEXT;
    }

    c = pc->connection;
    u = gp->attempt.request->upstream;

    if (!(state & NGX_PEER_FAILED)) {

        /* the last try's listed status is passed on, yet it failed */

        return ngx_http_gateway_upstream_listed(u)
               ? NGX_HTTP_GATEWAY_ATTEMPT_STATUS : NGX_HTTP_GATEWAY_ATTEMPT_OK;
    }

    if (c && (c->read->timedout || c->write->timedout)) {
        return NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT;
    }

    if (u->state == NULL || u->state->connect_time == (ngx_msec_t) -1) {
        return NGX_HTTP_GATEWAY_ATTEMPT_CONNECT;
    }

    if (ngx_http_gateway_upstream_listed(u)) {
        return NGX_HTTP_GATEWAY_ATTEMPT_STATUS;
    }

    return NGX_HTTP_GATEWAY_ATTEMPT_ERROR;
}


/* a status that proxy_next_upstream (or its kin) names as a failure */

static ngx_inline ngx_uint_t
ngx_http_gateway_upstream_listed(ngx_http_upstream_t *u)
{
    ngx_uint_t  ft;

    /* the common case, a success, at one comparison */

    if (u->headers_in.status_n < NGX_HTTP_TOO_MANY_REQUESTS) {
        return 0;
    }

    ft = ngx_http_gateway_status_ft(u->headers_in.status_n);

    return (u->conf->next_upstream & ft) != 0;
}


/*
 * The attempt's record goes to every observer, then to the counters (a
 * direct call: every upstream has them); its snapshot stays held for its
 * name, until the next attempt or the request's end.
 */

static void
ngx_http_gateway_upstream_report(ngx_http_gateway_peer_data_t *gp,
    ngx_uint_t retried)
{
    gp->open = 0;
    gp->held = 1;
    gp->attempt.retried = retried;

    if (gp->conf->extras & NGX_HTTP_GATEWAY_EXTRA_OBSERVE) {
        ngx_http_gateway_upstream_observe(gp);
    }

    ngx_http_gateway_stats_observe(&gp->attempt);
}


static void
ngx_http_gateway_upstream_observe(ngx_http_gateway_peer_data_t *gp)
{
    ngx_uint_t                     i, n;
    ngx_http_gateway_observer_pt  *h;

    h = gp->conf->gmcf->observers.elts;
    n = gp->conf->gmcf->observers.nelts;

    for (i = 0; i < n; i++) {
        h[i](&gp->attempt);
    }
}


/* out of line: its timespec would cost its callers a stack canary */

static uint64_t
ngx_http_gateway_upstream_usec(void)
{
    return ngx_http_gateway_usec();
}


/*
 * Before the last attempt's snapshot may go, its name ($upstream_addr of
 * that attempt, read when the request is logged) gets a copy of its own.
 */

static ngx_int_t
ngx_http_gateway_upstream_release(ngx_http_gateway_peer_data_t *gp)
{
    u_char  *p;

    p = ngx_pnalloc(gp->attempt.request->pool, gp->name->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, gp->name->data, gp->name->len);
    gp->name->data = p;

    gp->held = 0;
    ngx_http_gateway_snapshot_put(gp->slot);

    return NGX_OK;
}


/* the request's end: its pool goes, with everything that read the name */

static void
ngx_http_gateway_upstream_cleanup(void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    if (gp->open) {
        ngx_http_gateway_upstream_report_last(gp);
    }

    if (gp->held) {
        ngx_http_gateway_snapshot_put(gp->slot);
    }

    if (gp->limited) {
        ngx_http_gateway_limit_release(gp->limit);
    }

    gp->next = ngx_http_gateway_peer_free;
    ngx_http_gateway_peer_free = gp;
}


/* the attempt on a cached connection that failed, still open at the end */

static void
ngx_http_gateway_upstream_report_last(ngx_http_gateway_peer_data_t *gp)
{
    /* nginx gave a try back: the cached connection was only stale */

    if (gp->attempt.cached
        && gp->attempt.request->upstream->peer.tries > gp->tries)
    {
        gp->attempt.result = NGX_HTTP_GATEWAY_ATTEMPT_STALE;
    }

    ngx_http_gateway_upstream_report(gp, 0);
}


/* how many instances a retry could still go to */

static ngx_uint_t
ngx_http_gateway_upstream_left(ngx_http_gateway_peer_data_t *gp)
{
    ngx_uint_t                    i, left, slot;
    ngx_http_gateway_select_t     sel;
    ngx_http_gateway_snapshot_t  *snap;

    if (ngx_http_gateway_snapshot_get_cached(gp->conf->gmcf, gp->conf->lookup,
                                             &gp->service, gp->hash, &snap,
                                             &slot)
        != NGX_OK)
    {
        return 0;
    }

    ngx_http_gateway_upstream_filter(gp, &sel, snap);

    left = 0;

    /* primaries, then backups: a retry may go to either */

    for (sel.backup = 0; sel.backup <= (snap->nbackup != 0); sel.backup++) {
        for (i = 0; i < snap->npeers; i++) {
            left += ngx_http_gateway_eligible(&sel, &snap->peers[i]);
        }
    }

    ngx_http_gateway_snapshot_put(slot);

    return left;
}


#if (NGX_HTTP_SSL)

/* the session cache is keyed by uid: the instance itself may be gone */

static ngx_int_t
ngx_http_gateway_upstream_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    return ngx_http_gateway_ssl_session_set(pc, gp->attempt.peer->uid);
}


static void
ngx_http_gateway_upstream_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    ngx_http_gateway_ssl_session_save(pc, gp->attempt.peer->uid);
}

#endif


/* the fixed service name of an upstream; "" when it has variables */

ngx_int_t
ngx_http_gateway_upstream_service(ngx_http_upstream_srv_conf_t *us,
    ngx_str_t *name)
{
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    gscf = ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module);

    if (gscf->service == NULL && gscf->name.len == 0) {
        return NGX_DECLINED;
    }

    *name = gscf->name;

    return NGX_OK;
}


static void *
ngx_http_gateway_upstream_create_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_upstream_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_gateway_upstream_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->service = NULL;
     *     conf->name = { 0, NULL };
     *     conf->hash = 0;
     *     conf->lookup = NULL;
     *     conf->balancer = NULL;
     *     conf->balancer_conf = NULL;
     *     conf->sticky = NULL;
     *     conf->locality = NULL;
     */

    conf->slow_start = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_gateway_service(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_upstream_srv_conf_t *gscf = conf;

    ngx_str_t                         *value;
    ngx_http_upstream_server_t        *us;
    ngx_http_upstream_srv_conf_t      *uscf;
    ngx_http_compile_complex_value_t   ccv;

    if (gscf->service || gscf->name.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_script_variables_count(&value[1])) {
        gscf->service = ngx_palloc(cf->pool,
                                   sizeof(ngx_http_complex_value_t));
        if (gscf->service == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = gscf->service;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

    } else {
        if (!ngx_gateway_valid_name((char *) value[1].data, value[1].len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid service name \"%V\" in "
                               "\"gateway_service\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        gscf->name = value[1];
        gscf->hash = ngx_crc32_short(value[1].data, value[1].len);

        gscf->lookup = ngx_pcalloc(cf->pool,
                                   sizeof(ngx_http_gateway_lookup_t));
        if (gscf->lookup == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_gateway_upstream_init;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE;

    /*
     * The upstream block refuses to be empty; its servers come from the
     * registry, so it gets one placeholder that is never used.
     */

    if (uscf->servers == NULL) {
        uscf->servers = ngx_array_create(cf->pool, 1,
                                         sizeof(ngx_http_upstream_server_t));
        if (uscf->servers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (uscf->servers->nelts) {
        return "cannot be used together with \"server\"";
    }

    us = ngx_array_push(uscf->servers);
    if (us == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
    ngx_str_set(&us->name, "gateway");

    return NGX_CONF_OK;
}


ngx_uint_t
ngx_http_gateway_upstream_configured(void *conf)
{
    ngx_http_gateway_upstream_srv_conf_t *gscf = conf;

    return gscf->service != NULL || gscf->name.len != 0;
}


static char *
ngx_http_gateway_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_upstream_srv_conf_t *gscf = conf;

    ngx_str_t                    *value;
    ngx_http_gateway_balancer_t  *b;

    if (gscf->balancer) {
        return "is duplicate";
    }

    if (gscf->service == NULL && gscf->name.len == 0) {
        return "must follow \"gateway_service\"";
    }

    value = cf->args->elts;

    b = ngx_http_gateway_balancer_find(&value[1]);

    if (b == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown balancing method \"%V\" in "
                           "\"gateway_balance\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    gscf->balancer_conf = ngx_http_gateway_balancer_create_conf(cf, b,
                                              &value[2], cf->args->nelts - 2);

    if (gscf->balancer_conf == NULL) {
        return NGX_CONF_ERROR;
    }

    gscf->balancer = b;

    return NGX_CONF_OK;
}


static char *
ngx_http_gateway_slow_start(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_upstream_srv_conf_t *gscf = conf;

    if (gscf->service == NULL && gscf->name.len == 0) {
        return "must follow \"gateway_service\"";
    }

    return ngx_conf_set_msec_slot(cf, cmd, conf);
}
