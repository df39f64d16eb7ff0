
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


#define NGX_HTTP_GATEWAY_TRIED  4


typedef struct {
    ngx_http_complex_value_t     *service;   /* NULL: a fixed name */
    ngx_str_t                     name;
    uint32_t                      hash;
} ngx_http_gateway_upstream_srv_conf_t;


/*
 * Selection is pluggable: a balancer chooses among the service's instances
 * that the request may use; the attempt bookkeeping around it is shared.
 */

typedef ngx_int_t (*ngx_http_gateway_select_pt)(
    ngx_http_gateway_service_t *svc, ngx_gateway_swrr_peer_pt eligible,
    void *ctx);


typedef struct {
    ngx_http_gateway_main_conf_t *gmcf;
    ngx_http_request_t           *request;
    ngx_str_t                     service;
    uint32_t                      hash;

    ngx_http_gateway_instance_t  *current;
    uint64_t                      uid;       /* of current, for TLS */
    ngx_uint_t                    budget;
    ngx_uint_t                    tries;
    ngx_uint_t                    prepared;

    uint64_t                     *tried;
    ngx_uint_t                    ntried;
    ngx_uint_t                    nalloc;
    uint64_t                      tried0[NGX_HTTP_GATEWAY_TRIED];

    ngx_http_gateway_service_t   *svc;       /* valid under the lock only */
    ngx_msec_t                    now;
} ngx_http_gateway_peer_data_t;


static ngx_int_t ngx_http_gateway_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_gateway_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_gateway_upstream_get_peer(ngx_peer_connection_t *pc,
    void *data);
static ngx_int_t ngx_http_gateway_upstream_choose(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp);
static void ngx_http_gateway_upstream_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_gateway_swrr_t *ngx_http_gateway_upstream_eligible(void *ctx,
    size_t i);
static ngx_int_t ngx_http_gateway_select_round_robin(
    ngx_http_gateway_service_t *svc, ngx_gateway_swrr_peer_pt eligible,
    void *ctx);
static ngx_int_t ngx_http_gateway_upstream_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_http_gateway_upstream_tried(
    ngx_http_gateway_peer_data_t *gp, uint64_t uid);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_gateway_upstream_set_session(
    ngx_peer_connection_t *pc, void *data);
static void ngx_http_gateway_upstream_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif

static void *ngx_http_gateway_upstream_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_service(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_upstream_commands[] = {

    { ngx_string("gateway_service"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_service,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_upstream_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_upstream_create_conf, /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_upstream_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_upstream_module_ctx, /* module context */
    ngx_http_gateway_upstream_commands,    /* module directives */
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


static ngx_http_gateway_select_pt  ngx_http_gateway_select =
    ngx_http_gateway_select_round_robin;


static ngx_int_t
ngx_http_gateway_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);

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

    us->peer.init = ngx_http_gateway_upstream_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t                              rc;
    ngx_peer_connection_t                 *pc;
    ngx_http_gateway_peer_data_t          *gp;
    ngx_http_gateway_upstream_srv_conf_t  *gscf;

    gscf = ngx_http_conf_upstream_srv_conf(us,
                                           ngx_http_gateway_upstream_module);

    gp = ngx_pcalloc(r->pool, sizeof(ngx_http_gateway_peer_data_t));
    if (gp == NULL) {
        return NGX_ERROR;
    }

    if (gscf->service) {
        if (ngx_http_complex_value(r, gscf->service, &gp->service) != NGX_OK) {
            return NGX_ERROR;
        }

        gp->hash = ngx_crc32_short(gp->service.data, gp->service.len);

    } else {
        gp->service = gscf->name;
        gp->hash = gscf->hash;
    }

    gp->gmcf = ngx_http_get_module_main_conf(r, ngx_http_gateway_module);
    gp->request = r;
    gp->tried = gp->tried0;
    gp->nalloc = NGX_HTTP_GATEWAY_TRIED;

    pc = &r->upstream->peer;

    /*
     * The first attempt is chosen here, so that a service without live
     * instances is known before the upstream starts; the upstream's
     * finalization frees it through pc->sockaddr even if no attempt runs.
     */

    rc = ngx_http_gateway_upstream_choose(pc, gp);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gateway: service \"%V\" has no live instance%s",
                      &gp->service,
                      gp->svc ? "" : " (it is not registered)");

        return ngx_http_gateway_upstream_unavailable(r);
    }

    gp->prepared = 1;

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

    return NGX_OK;
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

    ngx_int_t  rc;

    if (gp->prepared) {
        gp->prepared = 0;
        gp->budget = pc->tries;
        return NGX_OK;
    }

    if (pc->tries > gp->tries) {

        /*
         * the upstream gives one more try when a cached keepalive
         * connection failed: that says nothing of the instance
         */

        gp->ntried--;
        gp->budget++;
    }

    rc = ngx_http_gateway_upstream_choose(pc, gp);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "gateway: no live instance of service \"%V\" left "
                      "to try", &gp->service);

        pc->name = NULL;

        return NGX_BUSY;
    }

    return rc;
}


/* NGX_DECLINED: no instance the request may use */

static ngx_int_t
ngx_http_gateway_upstream_choose(ngx_peer_connection_t *pc,
    ngx_http_gateway_peer_data_t *gp)
{
    u_char                        *p;
    ngx_int_t                      i;
    ngx_str_t                     *name;
    ngx_http_gateway_instance_t   *inst;
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = gp->gmcf;

    if (gp->ntried == gp->nalloc) {
        p = ngx_palloc(gp->request->pool, 2 * gp->nalloc * sizeof(uint64_t));
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, gp->tried, gp->ntried * sizeof(uint64_t));
        gp->tried = (uint64_t *) p;
        gp->nalloc *= 2;
    }

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    gp->svc = ngx_http_gateway_service_find(gmcf, &gp->service, gp->hash);

    if (gp->svc == NULL) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    gp->now = ngx_current_msec;

    i = ngx_http_gateway_select(gp->svc, ngx_http_gateway_upstream_eligible,
                                gp);

    if (i == NGX_ERROR) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    inst = gp->svc->instances[i];

    /* a pool allocation is local to this process: cheap under the lock */

    p = ngx_palloc(gp->request->pool,
                   sizeof(ngx_str_t) + inst->socklen + inst->name.len);
    if (p == NULL) {
        ngx_shmtx_unlock(&gmcf->shpool->mutex);
        return NGX_ERROR;
    }

    inst->refs++;
    inst->conns++;
    inst->requests++;

    name = (ngx_str_t *) p;
    p += sizeof(ngx_str_t);

    pc->sockaddr = (struct sockaddr *) p;
    pc->socklen = inst->socklen;
    p = ngx_cpymem(p, inst->sockaddr, inst->socklen);

    name->data = p;
    name->len = inst->name.len;
    ngx_memcpy(p, inst->name.data, inst->name.len);
    pc->name = name;

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    pc->cached = 0;
    pc->connection = NULL;

    gp->current = inst;
    gp->uid = inst->uid;
    gp->tried[gp->ntried++] = inst->uid;

    return NGX_OK;
}


static void
ngx_http_gateway_upstream_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_gateway_peer_data_t *gp = data;

    ngx_uint_t                     i, left;
    ngx_http_gateway_instance_t   *inst;
    ngx_http_gateway_main_conf_t  *gmcf;

    inst = gp->current;

    if (inst == NULL) {
        pc->tries = 0;
        return;
    }

    gp->current = NULL;
    gmcf = gp->gmcf;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    inst->conns--;
    inst->refs--;

    if (state & NGX_PEER_FAILED) {
        inst->fails++;
    }

    ngx_http_gateway_instance_release_locked(gmcf, inst);

    left = 0;

    if (gp->budget > 1 && (state & (NGX_PEER_FAILED|NGX_PEER_NEXT))) {
        gp->svc = ngx_http_gateway_service_find(gmcf, &gp->service, gp->hash);
        gp->now = ngx_current_msec;

        for (i = 0; gp->svc && i < gp->svc->ninstances; i++) {
            left += (ngx_http_gateway_upstream_eligible(gp, i) != NULL);
        }
    }

    ngx_shmtx_unlock(&gmcf->shpool->mutex);

    if (gp->budget) {
        gp->budget--;
    }

    pc->tries = ngx_min(left, gp->budget);
    gp->tries = pc->tries;
}


static ngx_gateway_swrr_t *
ngx_http_gateway_upstream_eligible(void *ctx, size_t i)
{
    ngx_http_gateway_peer_data_t *gp = ctx;

    ngx_http_gateway_instance_t  *inst;

    inst = gp->svc->instances[i];

    if (inst->state != NGX_GATEWAY_STATE_UP) {
        return NULL;
    }

    if (inst->expires
        && (ngx_msec_int_t) (inst->expires - gp->now) <= 0)
    {
        return NULL;
    }

    if (ngx_http_gateway_upstream_tried(gp, inst->uid)) {
        return NULL;
    }

    return &inst->rr;
}


static ngx_int_t
ngx_http_gateway_upstream_tried(ngx_http_gateway_peer_data_t *gp,
    uint64_t uid)
{
    ngx_uint_t  i;

    for (i = 0; i < gp->ntried; i++) {
        if (gp->tried[i] == uid) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_gateway_select_round_robin(ngx_http_gateway_service_t *svc,
    ngx_gateway_swrr_peer_pt eligible, void *ctx)
{
    ssize_t  i;

    i = ngx_gateway_swrr_select(svc->ninstances, eligible, ctx);

    return i < 0 ? NGX_ERROR : (ngx_int_t) i;
}


#if (NGX_HTTP_SSL)

/* the session cache is keyed by uid: the instance itself may be gone */

static ngx_int_t
ngx_http_gateway_upstream_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    return ngx_http_gateway_ssl_session_set(pc, gp->uid);
}


static void
ngx_http_gateway_upstream_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_gateway_peer_data_t *gp = data;

    ngx_http_gateway_ssl_session_save(pc, gp->uid);
}

#endif


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
     */

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
