
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_health_range.h"


/*
 * Active health checks.  The worker that holds the registry's lease
 * probes every instance of each checked service once per interval, the
 * probes of a round spread over the interval and at most
 * NGX_HTTP_GATEWAY_PROBES in flight, all on nginx's event loop.  A probe
 * holds the snapshot its instance came from, so the instance stays in the
 * zone until the probe has written its result there; a result for an
 * instance whose record changed meanwhile is dropped.
 *
 * The check of an upstream whose service name has variables covers the
 * services its requests resolved to: the first such request stores the
 * check's tag in the service (svc->health, a compare-and-set from 0), and
 * each round of the check begins with a walk of the services that lists
 * those with its tag; the round then probes their instances as one.
 */


#define NGX_HTTP_GATEWAY_PROBES       64
#define NGX_HTTP_GATEWAY_PROBE_BUF    1024
#define NGX_HTTP_GATEWAY_PROBE_TICK   10

#define NGX_HTTP_GATEWAY_PROBE_OK       0
#define NGX_HTTP_GATEWAY_PROBE_STATUS   1
#define NGX_HTTP_GATEWAY_PROBE_CONNECT  2
#define NGX_HTTP_GATEWAY_PROBE_TIMEOUT  3
#define NGX_HTTP_GATEWAY_PROBE_CLOSED   4
#define NGX_HTTP_GATEWAY_PROBE_INVALID  5


typedef struct {
    u_char                          name[NGX_GATEWAY_NAME_MAX];
    size_t                          len;
    uint32_t                        hash;
    ngx_uint_t                      first;      /* its first peer's index
                                                   in the round */
    ngx_uint_t                      npeers;
} ngx_http_gateway_health_target_t;


typedef struct {
    ngx_uint_t                      enabled;
    ngx_str_t                       service;    /* empty: a variable name */
    uint32_t                        hash;
    ngx_atomic_uint_t               tag;        /* a variable name's */

    ngx_str_t                       uri;
    ngx_str_t                       status;     /* a list of ranges */
    ngx_msec_t                      interval;
    ngx_msec_t                      timeout;
    ngx_uint_t                      fails;
    ngx_uint_t                      passes;
    ngx_uint_t                      mandatory;

    /* the lease holder's round */
    ngx_msec_t                      round;      /* when it began */
    ngx_uint_t                      next;       /* peers probed so far */
    ngx_uint_t                      total;      /* peers of the round */
    ngx_uint_t                      started;

    /* a variable name's round: the services attached when it began */
    ngx_http_gateway_health_target_t *targets;
    ngx_uint_t                      ntargets;
    ngx_uint_t                      nalloc;
} ngx_http_gateway_health_conf_t;


typedef struct {
    ngx_array_t                     checks;     /* conf pointers */
} ngx_http_gateway_health_main_conf_t;


typedef struct ngx_http_gateway_probe_s  ngx_http_gateway_probe_t;

struct ngx_http_gateway_probe_s {
    ngx_peer_connection_t           pc;
    ngx_event_t                     deadline;
    ngx_http_gateway_health_conf_t *conf;
    ngx_str_t                      *service;    /* in the held snapshot */
    ngx_http_gateway_peer_t        *peer;
    ngx_str_t                       name;       /* the peer's address */
    ngx_uint_t                      slot;
    ngx_uint_t                      sent;
    ngx_uint_t                      connected;
    ngx_http_gateway_probe_t       *next;       /* free list, or a batch */
    size_t                          status_len;
    u_char                          status[NGX_GATEWAY_HEALTH_STATUS_MAX];
    ngx_http_request_t              req;        /* the parser's state */
    ngx_http_status_t               st;
    ngx_buf_t                       buf;
    u_char                          data[NGX_HTTP_GATEWAY_PROBE_BUF];
};


static ngx_int_t ngx_http_gateway_health_postconf(ngx_conf_t *cf);
static void *ngx_http_gateway_health_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_gateway_health_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_health_check(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_gateway_health_init_process(ngx_cycle_t *cycle);
static void ngx_http_gateway_health_exit_process(ngx_cycle_t *cycle);
static void ngx_http_gateway_health_tick(ngx_event_t *ev);
static void ngx_http_gateway_health_schedule(
    ngx_http_gateway_health_conf_t *hc);
static ngx_int_t ngx_http_gateway_health_attached(
    ngx_http_gateway_health_conf_t *hc);
static ngx_int_t ngx_http_gateway_health_target(
    ngx_http_gateway_health_conf_t *hc, ngx_http_gateway_service_t *svc,
    ngx_uint_t n, ngx_uint_t total);
static ngx_uint_t ngx_http_gateway_health_known(
    ngx_http_gateway_health_main_conf_t *hmcf, ngx_atomic_uint_t tag);
static ngx_uint_t ngx_http_gateway_health_fixed(ngx_str_t *name,
    uint32_t hash);
static ngx_http_gateway_probe_t *ngx_http_gateway_probe_get(
    ngx_http_gateway_health_conf_t *hc, ngx_uint_t index);
static void ngx_http_gateway_probe_start(ngx_http_gateway_probe_t *pr);
static void ngx_http_gateway_probe_write(ngx_event_t *ev);
static void ngx_http_gateway_probe_read(ngx_event_t *ev);
static void ngx_http_gateway_probe_timeout(ngx_event_t *ev);
static void ngx_http_gateway_probe_finish(ngx_http_gateway_probe_t *pr,
    ngx_uint_t error, ngx_uint_t status);
static void ngx_http_gateway_probe_close(ngx_http_gateway_probe_t *pr);
static void ngx_http_gateway_health_record(ngx_http_gateway_probe_t *pr,
    ngx_uint_t error, ngx_uint_t status);
static void ngx_http_gateway_probe_request(ngx_http_gateway_probe_t *pr);


static ngx_command_t  ngx_http_gateway_health_commands[] = {

    { ngx_string("gateway_health_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_gateway_health_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_health_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_gateway_health_postconf,      /* postconfiguration */

    ngx_http_gateway_health_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_health_create_conf,   /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_health_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_health_module_ctx,   /* module context */
    ngx_http_gateway_health_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gateway_health_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gateway_health_exit_process,  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static const char  *ngx_http_gateway_probe_errors[] = {
    "", "status", "connect", "timeout", "closed", "invalid response"
};


static ngx_event_t                          ngx_http_gateway_health_event;
static ngx_http_gateway_main_conf_t        *ngx_http_gateway_health_gmcf;
static ngx_http_gateway_health_main_conf_t *ngx_http_gateway_health_hmcf;
static ngx_http_gateway_probe_t            *ngx_http_gateway_probes;
static ngx_http_gateway_probe_t            *ngx_http_gateway_probes_free;
static ngx_uint_t                           ngx_http_gateway_probes_busy;


static void *
ngx_http_gateway_health_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_health_main_conf_t  *hmcf;

    hmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_health_main_conf_t));
    if (hmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&hmcf->checks, cf->pool, 4,
                       sizeof(ngx_http_gateway_health_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return hmcf;
}


static void *
ngx_http_gateway_health_create_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_health_conf_t));
}


/* the health states an upstream keeps out of its requests: 1 << state */

ngx_uint_t
ngx_http_gateway_health_unhealthy(ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_health_conf_t  *hc;

    hc = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_health_module);

    if (!hc->enabled) {
        return 0;
    }

    return (1 << NGX_HTTP_GATEWAY_HEALTH_DOWN)
           | (hc->mandatory ? 1 << NGX_HTTP_GATEWAY_HEALTH_UNKNOWN : 0);
}


/* what the requests of a variable name's upstream attach, else 0 */

ngx_atomic_uint_t
ngx_http_gateway_health_tag(ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_health_conf_t  *hc;

    hc = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_health_module);

    return hc->enabled ? hc->tag : 0;
}


static char *
ngx_http_gateway_health_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_health_conf_t *hc = conf;

    ngx_int_t                             n;
    ngx_str_t                            *value, s, name;
    ngx_uint_t                            i;
    ngx_http_upstream_srv_conf_t         *uscf;
    ngx_http_gateway_health_conf_t      **hcp;
    ngx_http_gateway_health_main_conf_t  *hmcf;

    if (hc->enabled) {
        return "is duplicate";
    }

    ngx_http_gateway_uses(cf, NGX_HTTP_GATEWAY_USES_LINES);

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (ngx_http_gateway_upstream_service(uscf, &name) != NGX_OK) {
        return "must follow \"gateway_service\"";
    }

    hc->enabled = 1;
    hc->service = name;
    hc->hash = ngx_crc32_short(name.data, name.len);

    if (name.len == 0) {

        /*
         * a tag of its own, the same for the same upstream name after a
         * reload: the services its requests attached stay attached
         */

        hmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_gateway_health_module);

        hc->tag = ngx_crc32_short(uscf->host.data, uscf->host.len);

        while (hc->tag == 0 || ngx_http_gateway_health_known(hmcf, hc->tag)) {
            hc->tag++;
        }

        hcp = ngx_array_push(&hmcf->checks);
        if (hcp == NULL) {
            return NGX_CONF_ERROR;
        }

        *hcp = hc;
    }
    ngx_str_set(&hc->uri, "/");
    ngx_str_set(&hc->status, "200-399");
    hc->interval = 5000;
    hc->timeout = NGX_CONF_UNSET_MSEC;
    hc->fails = 1;
    hc->passes = 1;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "uri=", 4) == 0) {
            hc->uri.data = value[i].data + 4;
            hc->uri.len = value[i].len - 4;

            if (!ngx_gateway_health_uri_valid((char *) hc->uri.data,
                                              hc->uri.len))
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "status=", 7) == 0) {
            hc->status.data = value[i].data + 7;
            hc->status.len = value[i].len - 7;

            if (!ngx_gateway_health_status_valid((char *) hc->status.data,
                                                 hc->status.len))
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0
            || ngx_strncmp(value[i].data, "timeout=", 8) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n < 10 || n > 3600000) {
                goto invalid;
            }

            if (value[i].data[0] == 'i') {
                hc->interval = n;

            } else {
                hc->timeout = n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "fails=", 6) == 0
            || ngx_strncmp(value[i].data, "passes=", 7) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_atoi(s.data, s.len);

            if (n == NGX_ERROR || n < 1 || n > 1000) {
                goto invalid;
            }

            if (value[i].data[0] == 'f') {
                hc->fails = n;

            } else {
                hc->passes = n;
            }

            continue;
        }

        if (value[i].len == 9
            && ngx_strncmp(value[i].data, "mandatory", 9) == 0)
        {
            hc->mandatory = 1;
            continue;
        }

        goto invalid;
    }

    /* a probe ends before the next one of its instance begins */

    if (hc->timeout == NGX_CONF_UNSET_MSEC) {
        hc->timeout = ngx_min(1000, hc->interval);
    }

    if (hc->timeout > hc->interval) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_health_check\" timeout=%M is longer "
                           "than its interval=%M", hc->timeout, hc->interval);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"gateway_health_check\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * One check per fixed service name: the state it keeps is the instance's.
 * The checks of variable names are listed already, by the directive.
 */

static ngx_int_t
ngx_http_gateway_health_postconf(ngx_conf_t *cf)
{
    ngx_uint_t                            i, j;
    ngx_http_upstream_srv_conf_t        **uscfp;
    ngx_http_gateway_health_conf_t       *hc, **hcp;
    ngx_http_upstream_main_conf_t        *umcf;
    ngx_http_gateway_health_main_conf_t  *hmcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    hmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_gateway_health_module);

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        hc = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                             ngx_http_gateway_health_module);

        if (hc == NULL || !hc->enabled || hc->tag) {
            continue;
        }

        hcp = hmcf->checks.elts;

        for (j = 0; j < hmcf->checks.nelts; j++) {
            if (hcp[j]->tag == 0
                && hcp[j]->service.len == hc->service.len
                && ngx_strncmp(hcp[j]->service.data, hc->service.data,
                               hc->service.len) == 0)
            {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "\"gateway_health_check\" for service \"%V\" "
                              "is given twice, in upstream \"%V\" in %s:%ui",
                              &hc->service, &uscfp[i]->host,
                              uscfp[i]->file_name, uscfp[i]->line);
                return NGX_ERROR;
            }
        }

        hcp = ngx_array_push(&hmcf->checks);
        if (hcp == NULL) {
            return NGX_ERROR;
        }

        *hcp = hc;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_health_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i;
    ngx_http_gateway_main_conf_t         *gmcf;
    ngx_http_gateway_health_main_conf_t  *hmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    gmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_gateway_module);
    hmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_gateway_health_module);

    if (gmcf == NULL || gmcf->shm_zone == NULL || hmcf == NULL
        || hmcf->checks.nelts == 0)
    {
        return NGX_OK;
    }

    ngx_http_gateway_probes = ngx_calloc(NGX_HTTP_GATEWAY_PROBES
                                         * sizeof(ngx_http_gateway_probe_t),
                                         cycle->log);
    if (ngx_http_gateway_probes == NULL) {
        return NGX_ERROR;
    }

    ngx_http_gateway_probes_free = NULL;

    for (i = NGX_HTTP_GATEWAY_PROBES; i > 0; i--) {
        ngx_http_gateway_probes[i - 1].next = ngx_http_gateway_probes_free;
        ngx_http_gateway_probes_free = &ngx_http_gateway_probes[i - 1];
    }

    ngx_http_gateway_probes_busy = 0;
    ngx_http_gateway_health_gmcf = gmcf;
    ngx_http_gateway_health_hmcf = hmcf;

    ngx_http_gateway_health_event.handler = ngx_http_gateway_health_tick;
    ngx_http_gateway_health_event.data = hmcf;
    ngx_http_gateway_health_event.log = cycle->log;
    ngx_http_gateway_health_event.cancelable = 1;

    ngx_add_timer(&ngx_http_gateway_health_event,
                  NGX_HTTP_GATEWAY_PROBE_TICK);

    return NGX_OK;
}


/*
 * The worker's holds are released by the core at its exit: the probes
 * only close their connections.
 */

static void
ngx_http_gateway_health_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_gateway_health_conf_t  **hcp;

    if (ngx_http_gateway_probes == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_GATEWAY_PROBES; i++) {
        if (ngx_http_gateway_probes[i].conf) {
            ngx_http_gateway_probe_close(&ngx_http_gateway_probes[i]);
        }
    }

    ngx_free(ngx_http_gateway_probes);
    ngx_http_gateway_probes = NULL;

    hcp = ngx_http_gateway_health_hmcf->checks.elts;

    for (i = 0; i < ngx_http_gateway_health_hmcf->checks.nelts; i++) {
        if (hcp[i]->targets) {
            ngx_free(hcp[i]->targets);
            hcp[i]->targets = NULL;
            hcp[i]->nalloc = 0;
        }
    }
}


static void
ngx_http_gateway_health_tick(ngx_event_t *ev)
{
    ngx_uint_t                        i;
    ngx_http_gateway_health_conf_t  **hcp;

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        for (i = 0; i < NGX_HTTP_GATEWAY_PROBES; i++) {
            if (ngx_http_gateway_probes[i].conf) {
                ngx_http_gateway_probe_finish(&ngx_http_gateway_probes[i],
                                              NGX_HTTP_GATEWAY_PROBE_CLOSED,
                                              0);
            }
        }

        return;
    }

    hcp = ngx_http_gateway_health_hmcf->checks.elts;

    if (ngx_http_gateway_health_gmcf->sh->lease_pid == ngx_pid) {
        for (i = 0; i < ngx_http_gateway_health_hmcf->checks.nelts; i++) {
            ngx_http_gateway_health_schedule(hcp[i]);
        }

    } else {

        /* the next holder begins its own rounds */

        for (i = 0; i < ngx_http_gateway_health_hmcf->checks.nelts; i++) {
            hcp[i]->started = 0;
        }
    }

    ngx_add_timer(ev, NGX_HTTP_GATEWAY_PROBE_TICK);
}


/*
 * A round probes the service's peers in their order, peer k of n once
 * k / n of the interval has passed; with too many probes in flight it
 * falls behind, and the next round begins when this one is done.  The
 * round of a variable name's check takes the peers of the services
 * attached when it began, one service after the other.
 */

static void
ngx_http_gateway_health_schedule(ngx_http_gateway_health_conf_t *hc)
{
    ngx_uint_t                    slot, due, next;
    ngx_msec_t                    elapsed;
    ngx_http_gateway_probe_t     *pr, *batch, **last;
    ngx_http_gateway_snapshot_t  *snap;

    if (ngx_http_gateway_probes_free == NULL) {
        return;
    }

    if (hc->tag == 0) {
        if (ngx_http_gateway_snapshot_get(ngx_http_gateway_health_gmcf,
                                          &hc->service, hc->hash, &snap,
                                          &slot)
            != NGX_OK)
        {
            return;
        }

        hc->total = snap->npeers;

        ngx_http_gateway_snapshot_put(slot);
    }

    elapsed = ngx_current_msec - hc->round;

    if (!hc->started || (hc->next >= hc->total && elapsed >= hc->interval)) {

        if (hc->tag && ngx_http_gateway_health_attached(hc) != NGX_OK) {
            return;
        }

        hc->started = 1;
        hc->round = ngx_current_msec;
        hc->next = 0;
        elapsed = 0;
    }

    if (hc->next >= hc->total) {
        return;
    }

    if (elapsed >= hc->interval) {
        due = hc->total;

    } else {
        due = (uint64_t) hc->total * (elapsed + 1) / hc->interval + 1;
        due = ngx_min(due, hc->total);
    }

    if (hc->next >= due) {
        return;
    }

    /*
     * What a probe asks comes from its instance's record, which writers
     * change under the zone's mutex: it is read in one short hold of the
     * mutex for the whole batch (never waited for, like the tick's).
     */

    batch = NULL;
    last = &batch;
    next = hc->next;

    while (next < due && ngx_http_gateway_probes_free) {
        pr = ngx_http_gateway_probe_get(hc, next++);

        if (pr) {
            *last = pr;
            last = &pr->next;
        }
    }

    *last = NULL;

    if (!ngx_shmtx_trylock(&ngx_http_gateway_health_gmcf->shpool->mutex)) {
        for (pr = batch; pr; pr = batch) {
            batch = pr->next;
            ngx_http_gateway_snapshot_put(pr->slot);
            ngx_http_gateway_probe_close(pr);
        }

        return;
    }

    for (pr = batch; pr; pr = pr->next) {
        ngx_http_gateway_probe_request(pr);
    }

    ngx_shmtx_unlock(&ngx_http_gateway_health_gmcf->shpool->mutex);

    hc->next = next;

    for (pr = batch; pr; pr = batch) {
        batch = pr->next;
        ngx_http_gateway_probe_start(pr);
    }
}


/*
 * The services attached to a variable name's check, from one walk of the
 * name index without the zone's mutex, under the worker's read epoch as a
 * request's lookup (a service and its snapshot stay while it is
 * announced; an unlinked service keeps its chain): those with the check's
 * tag and instances, but not those a check of a fixed name covers.  A tag
 * that no check of this configuration has is an older configuration's:
 * it is cleared, so that the next request attaches the service again.
 */

static ngx_int_t
ngx_http_gateway_health_attached(ngx_http_gateway_health_conf_t *hc)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i, n, total;
    ngx_http_gateway_sh_t        *sh;
    ngx_http_gateway_service_t   *svc;

    sh = ngx_http_gateway_health_gmcf->sh;

    if (ngx_http_gateway_read_begin(ngx_http_gateway_health_gmcf) != NGX_OK) {
        return NGX_AGAIN;
    }

    n = 0;
    total = 0;
    rc = NGX_OK;

    for (i = 0; i < sh->nindex && rc != NGX_ERROR; i++) {
        for (svc = sh->index[i]; svc; svc = svc->hnext) {
            rc = ngx_http_gateway_health_target(hc, svc, n, total);

            if (rc == NGX_ERROR) {
                break;
            }

            if (rc == NGX_OK) {
                total += hc->targets[n++].npeers;
            }
        }
    }

    ngx_http_gateway_read_end();

    hc->ntargets = n;
    hc->total = total;

    return NGX_OK;
}


/* NGX_OK: the service is the round's target n; NGX_DECLINED: it is not */

static ngx_int_t
ngx_http_gateway_health_target(ngx_http_gateway_health_conf_t *hc,
    ngx_http_gateway_service_t *svc, ngx_uint_t n, ngx_uint_t total)
{
    ngx_uint_t                         nalloc;
    ngx_atomic_uint_t                  tag;
    ngx_http_gateway_snapshot_t       *snap;
    ngx_http_gateway_health_target_t  *t;

    tag = svc->health;

    if (tag == 0) {
        return NGX_DECLINED;
    }

    if (tag != hc->tag) {
        if (!ngx_http_gateway_health_known(ngx_http_gateway_health_hmcf,
                                           tag))
        {
            (void) ngx_atomic_cmp_set(&svc->health, tag, 0);
        }

        return NGX_DECLINED;
    }

    snap = svc->snapshot;

    if (svc->removed || snap == NULL || snap->npeers == 0
        || ngx_http_gateway_health_fixed(&svc->sn.str, svc->sn.node.key))
    {
        return NGX_DECLINED;
    }

    if (n == hc->nalloc) {
        nalloc = ngx_max(2 * n, 16);

        t = ngx_alloc(nalloc * sizeof(ngx_http_gateway_health_target_t),
                      ngx_cycle->log);
        if (t == NULL) {
            return NGX_ERROR;
        }

        if (hc->targets) {
            ngx_memcpy(t, hc->targets,
                       n * sizeof(ngx_http_gateway_health_target_t));
            ngx_free(hc->targets);
        }

        hc->targets = t;
        hc->nalloc = nalloc;
    }

    t = &hc->targets[n];

    t->len = svc->sn.str.len;
    ngx_memcpy(t->name, svc->sn.str.data, t->len);
    t->hash = svc->sn.node.key;
    t->first = total;
    t->npeers = snap->npeers;

    return NGX_OK;
}


/* the checks of variable names are in the list from their directive on */

static ngx_uint_t
ngx_http_gateway_health_known(ngx_http_gateway_health_main_conf_t *hmcf,
    ngx_atomic_uint_t tag)
{
    ngx_uint_t                        i;
    ngx_http_gateway_health_conf_t  **hcp;

    hcp = hmcf->checks.elts;

    for (i = 0; i < hmcf->checks.nelts; i++) {
        if (hcp[i]->tag == tag) {
            return 1;
        }
    }

    return 0;
}


/* the check of a fixed name wins: it is the one its upstream asked for */

static ngx_uint_t
ngx_http_gateway_health_fixed(ngx_str_t *name, uint32_t hash)
{
    ngx_uint_t                        i;
    ngx_http_gateway_health_conf_t  **hcp;

    hcp = ngx_http_gateway_health_hmcf->checks.elts;

    for (i = 0; i < ngx_http_gateway_health_hmcf->checks.nelts; i++) {
        if (hcp[i]->tag == 0
            && hcp[i]->hash == hash
            && hcp[i]->service.len == name->len
            && ngx_strncmp(hcp[i]->service.data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* a probe of peer index of the round, from its service's current snapshot */

static ngx_http_gateway_probe_t *
ngx_http_gateway_probe_get(ngx_http_gateway_health_conf_t *hc,
    ngx_uint_t index)
{
    ngx_str_t                          name;
    uint32_t                           hash;
    ngx_uint_t                         slot, lo, hi, mid;
    ngx_http_gateway_probe_t          *pr;
    ngx_http_gateway_snapshot_t       *snap;
    ngx_http_gateway_health_target_t  *t;

    if (hc->tag == 0) {
        name = hc->service;
        hash = hc->hash;

    } else {

        /* the last service whose peers begin at index or before */

        lo = 0;
        hi = hc->ntargets;

        while (hi - lo > 1) {
            mid = lo + (hi - lo) / 2;

            if (hc->targets[mid].first <= index) {
                lo = mid;

            } else {
                hi = mid;
            }
        }

        if (lo >= hc->ntargets) {
            return NULL;
        }

        t = &hc->targets[lo];
        name.data = t->name;
        name.len = t->len;
        hash = t->hash;
        index -= t->first;

        if (index >= t->npeers) {
            return NULL;
        }
    }

    if (ngx_http_gateway_snapshot_get(ngx_http_gateway_health_gmcf,
                                      &name, hash, &snap, &slot)
        != NGX_OK)
    {
        return NULL;
    }

    /* a service deleted and created again since the walk is not attached */

    if (index >= snap->npeers
        || (hc->tag && snap->service->health != hc->tag))
    {
        ngx_http_gateway_snapshot_put(slot);
        return NULL;
    }

    pr = ngx_http_gateway_probes_free;
    ngx_http_gateway_probes_free = pr->next;
    ngx_http_gateway_probes_busy++;

    ngx_memzero(&pr->pc, sizeof(ngx_peer_connection_t));
    ngx_memzero(&pr->req, sizeof(ngx_http_request_t));
    ngx_memzero(&pr->st, sizeof(ngx_http_status_t));
    ngx_memzero(&pr->deadline, sizeof(ngx_event_t));

    pr->conf = hc;
    pr->service = &snap->service->sn.str;
    pr->peer = &snap->peers[index];
    pr->slot = slot;
    pr->sent = 0;
    pr->connected = 0;

    return pr;
}


static void
ngx_http_gateway_probe_start(ngx_http_gateway_probe_t *pr)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    pr->name = ngx_http_gateway_peer_name(pr->peer);
    pr->pc.sockaddr = ngx_http_gateway_peer_sockaddr(pr->peer);
    pr->pc.socklen = ngx_http_gateway_peer_socklen(pr->peer);
    pr->pc.name = &pr->name;
    pr->pc.get = ngx_event_get_peer;
    pr->pc.log = ngx_cycle->log;
    pr->pc.log_error = NGX_ERROR_INFO;

    pr->deadline.handler = ngx_http_gateway_probe_timeout;
    pr->deadline.data = pr;
    pr->deadline.log = ngx_cycle->log;
    pr->deadline.cancelable = 1;

    rc = ngx_event_connect_peer(&pr->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_CONNECT, 0);
        return;
    }

    c = pr->pc.connection;
    c->data = pr;
    c->read->handler = ngx_http_gateway_probe_read;
    c->write->handler = ngx_http_gateway_probe_write;

    ngx_add_timer(&pr->deadline, pr->conf->timeout);

    if (rc == NGX_OK) {
        ngx_http_gateway_probe_write(c->write);
    }
}


/*
 * The probe's request, in its buffer; an instance's record may name its
 * own URI and statuses (health_uri, health_status).  The zone's mutex is
 * held.
 */

static void
ngx_http_gateway_probe_request(ngx_http_gateway_probe_t *pr)
{
    u_char                   *p;
    ngx_str_t                *uri, *status, host, own_uri, own_status;
    ngx_http_gateway_data_t  *data;

    data = pr->peer->data;
    own_uri = ngx_http_gateway_data_health_uri(data);
    own_status = ngx_http_gateway_data_health_status(data);

    uri = own_uri.len ? &own_uri : &pr->conf->uri;
    status = own_status.len ? &own_status : &pr->conf->status;

    pr->status_len = ngx_min(status->len, NGX_GATEWAY_HEALTH_STATUS_MAX);
    ngx_memcpy(pr->status, status->data, pr->status_len);

    if (ngx_http_gateway_peer_sockaddr(pr->peer)->sa_family == AF_UNIX) {
        ngx_str_set(&host, "localhost");

    } else {
        host = ngx_http_gateway_peer_name(pr->peer);
    }

    p = ngx_snprintf(pr->data, NGX_HTTP_GATEWAY_PROBE_BUF,
                     "GET %V HTTP/1.0" CRLF
                     "Host: %V" CRLF
                     "User-Agent: nginx-gateway-health" CRLF
                     "Connection: close" CRLF CRLF,
                     uri, &host);

    pr->buf.start = pr->data;
    pr->buf.pos = pr->data;
    pr->buf.last = p;
    pr->buf.end = pr->data + NGX_HTTP_GATEWAY_PROBE_BUF;
}


static void
ngx_http_gateway_probe_write(ngx_event_t *ev)
{
    int                        err;
    ssize_t                    n;
    socklen_t                  len;
    ngx_connection_t          *c;
    ngx_http_gateway_probe_t  *pr;

    c = ev->data;
    pr = c->data;

    if (!pr->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_CONNECT,
                                          0);
            return;
        }

        pr->connected = 1;
    }

    if (pr->sent) {
        return;
    }

    while (pr->buf.pos < pr->buf.last) {
        n = c->send(c, pr->buf.pos, pr->buf.last - pr->buf.pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_gateway_probe_finish(pr,
                                              NGX_HTTP_GATEWAY_PROBE_CLOSED,
                                              0);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_CLOSED,
                                          0);
            return;
        }

        pr->buf.pos += n;
    }

    pr->sent = 1;
    pr->buf.pos = pr->data;
    pr->buf.last = pr->data;

    if (c->read->ready) {
        ngx_http_gateway_probe_read(c->read);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_CLOSED, 0);
    }
}


/* the status line is all a probe reads */

static void
ngx_http_gateway_probe_read(ngx_event_t *ev)
{
    ssize_t                    n;
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_gateway_probe_t  *pr;

    c = ev->data;
    pr = c->data;

    if (!pr->sent) {
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_CLOSED,
                                          0);
        }

        return;
    }

    for ( ;; ) {
        if (pr->buf.last == pr->buf.end) {
            ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_INVALID,
                                          0);
            return;
        }

        n = c->recv(c, pr->buf.last, pr->buf.end - pr->buf.last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_gateway_probe_finish(pr,
                                              NGX_HTTP_GATEWAY_PROBE_CLOSED,
                                              0);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_gateway_probe_finish(pr, pr->connected
                                              ? NGX_HTTP_GATEWAY_PROBE_CLOSED
                                              : NGX_HTTP_GATEWAY_PROBE_CONNECT,
                                          0);
            return;
        }

        pr->buf.last += n;

        rc = ngx_http_parse_status_line(&pr->req, &pr->buf, &pr->st);

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK) {
            ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_INVALID,
                                          0);
            return;
        }

        ngx_http_gateway_probe_finish(pr, NGX_HTTP_GATEWAY_PROBE_OK,
                                      pr->st.code);
        return;
    }
}


static void
ngx_http_gateway_probe_timeout(ngx_event_t *ev)
{
    ngx_http_gateway_probe_finish(ev->data, NGX_HTTP_GATEWAY_PROBE_TIMEOUT, 0);
}


static void
ngx_http_gateway_probe_finish(ngx_http_gateway_probe_t *pr, ngx_uint_t error,
    ngx_uint_t status)
{
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_http_gateway_health_record(pr, error, status);
    }

    ngx_http_gateway_snapshot_put(pr->slot);
    ngx_http_gateway_probe_close(pr);
}


static void
ngx_http_gateway_probe_close(ngx_http_gateway_probe_t *pr)
{
    if (pr->deadline.timer_set) {
        ngx_del_timer(&pr->deadline);
    }

    if (pr->pc.connection) {
        ngx_close_connection(pr->pc.connection);
        pr->pc.connection = NULL;
    }

    pr->conf = NULL;
    pr->service = NULL;
    pr->peer = NULL;
    pr->next = ngx_http_gateway_probes_free;
    ngx_http_gateway_probes_free = pr;
    ngx_http_gateway_probes_busy--;
}


/*
 * Only the prober writes an instance's health; requests read its state.
 * A result for an instance that was removed or changed meanwhile is not
 * its own any more.
 */

static void
ngx_http_gateway_health_record(ngx_http_gateway_probe_t *pr, ngx_uint_t error,
    ngx_uint_t status)
{
    u_char                           sbuf[NGX_GATEWAY_LOG_TEXT_SIZE];
    u_char                           ibuf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                        svc, id, pid;
    ngx_uint_t                       old, state, fails, passes;
    ngx_time_t                      *tp;
    ngx_http_gateway_health_t       *h;
    ngx_http_gateway_instance_t     *inst;
    ngx_http_gateway_health_conf_t  *hc;

    hc = pr->conf;
    inst = pr->peer->inst;

    if (ngx_http_gateway_instance_removed(inst)
        || inst->data != pr->peer->data)
    {
        return;
    }

    if (error == NGX_HTTP_GATEWAY_PROBE_OK
        && !ngx_gateway_health_status_match((char *) pr->status,
                                            pr->status_len, status))
    {
        error = NGX_HTTP_GATEWAY_PROBE_STATUS;
    }

    h = &inst->lines->health;
    tp = ngx_timeofday();

    h->last = (ngx_atomic_uint_t) tp->sec * 1000 + tp->msec;
    h->status = status;
    h->error = error;
    (void) ngx_atomic_fetch_add(&h->probes, 1);

    old = h->state;
    state = old;

    if (error == NGX_HTTP_GATEWAY_PROBE_OK) {
        passes = h->passes + 1;
        h->passes = passes;
        h->fails = 0;

        if (old == NGX_HTTP_GATEWAY_HEALTH_UNKNOWN || passes >= hc->passes) {
            state = NGX_HTTP_GATEWAY_HEALTH_UP;
        }

    } else {
        fails = h->fails + 1;
        h->fails = fails;
        h->passes = 0;

        if (fails >= hc->fails) {
            state = NGX_HTTP_GATEWAY_HEALTH_DOWN;
        }
    }

    if (state == old) {
        return;
    }

    /* it becomes eligible (an unknown state was, unless mandatory) */

    if (state == NGX_HTTP_GATEWAY_HEALTH_UP
        && (old == NGX_HTTP_GATEWAY_HEALTH_DOWN || hc->mandatory))
    {
        ngx_http_gateway_instance_recovered(inst);
    }

    h->state = state;

    if (old == NGX_HTTP_GATEWAY_HEALTH_UNKNOWN
        && state == NGX_HTTP_GATEWAY_HEALTH_UP && !hc->mandatory)
    {
        return;
    }

    ngx_http_gateway_log_text(&svc, sbuf, pr->service->data,
                              pr->service->len);
    pid = ngx_http_gateway_peer_id(pr->peer);
    ngx_http_gateway_log_text(&id, ibuf, pid.data, pid.len);

    if (state == NGX_HTTP_GATEWAY_HEALTH_UP) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gateway: instance \"%V\" (%V) of service \"%V\" is "
                      "healthy: %ui probes passed", &id, &pr->name,
                      &svc, h->passes);
        return;
    }

    if (error == NGX_HTTP_GATEWAY_PROBE_STATUS) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "gateway: instance \"%V\" (%V) of service \"%V\" is "
                      "unhealthy: %ui probes failed, the last with "
                      "status %ui", &id, &pr->name, &svc, h->fails,
                      status);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "gateway: instance \"%V\" (%V) of service \"%V\" is "
                  "unhealthy: %ui probes failed, the last by %s",
                  &id, &pr->name, &svc, h->fails,
                  ngx_http_gateway_probe_errors[error]);
}


/* "health":{...}, for the admin API; nothing before the first probe */

size_t
ngx_http_gateway_health_json(u_char *p, ngx_http_gateway_instance_t *inst)
{
    u_char                     *start;
    ngx_uint_t                  state, error;
    ngx_http_gateway_health_t  *h;

    static const char  *states[] = { "unknown", "healthy", "unhealthy" };

    if (p == NULL) {
        return sizeof("\"health\":{\"status\":\"unhealthy\",\"fails\":,"
                      "\"passes\":,\"probes\":,\"last_probe_ms\":,"
                      "\"last_status\":,\"last_error\":\"invalid response\"},")
               + 5 * NGX_ATOMIC_T_LEN;
    }

    if (inst->lines == NULL) {
        return 0;
    }

    h = &inst->lines->health;

    if (h->probes == 0) {
        return 0;
    }

    start = p;
    state = ngx_min(h->state, NGX_HTTP_GATEWAY_HEALTH_DOWN);
    error = ngx_min(h->error, NGX_HTTP_GATEWAY_PROBE_INVALID);

    p = ngx_sprintf(p, "\"health\":{\"status\":\"%s\",\"fails\":%uA,"
                    "\"passes\":%uA,\"probes\":%uA,\"last_probe_ms\":%uA,",
                    states[state], h->fails, h->passes, h->probes, h->last);

    if (h->status) {
        p = ngx_sprintf(p, "\"last_status\":%uA,", h->status);

    } else {
        p = ngx_cpymem(p, "\"last_status\":null,",
                       sizeof("\"last_status\":null,") - 1);
    }

    if (error == NGX_HTTP_GATEWAY_PROBE_OK) {
        p = ngx_cpymem(p, "\"last_error\":null},",
                       sizeof("\"last_error\":null},") - 1);

    } else {
        p = ngx_sprintf(p, "\"last_error\":\"%s\"},",
                        ngx_http_gateway_probe_errors[error]);
    }

    return p - start;
}
