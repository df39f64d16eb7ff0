
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


#define NGX_HTTP_GATEWAY_TICK   100
#define NGX_HTTP_GATEWAY_LEASE  2000


static void *ngx_http_gateway_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_gateway_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gateway_registry_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_gateway_init_process(ngx_cycle_t *cycle);
static void ngx_http_gateway_exit_process(ngx_cycle_t *cycle);
static void ngx_http_gateway_tick(ngx_event_t *ev);
static void ngx_http_gateway_release_lease(void);


static ngx_command_t  ngx_http_gateway_commands[] = {

    { ngx_string("gateway_registry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_gateway_registry,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gateway_registry_allow"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_gateway_registry_allow,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_gateway_create_main_conf,     /* create main configuration */
    ngx_http_gateway_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_module_ctx,          /* module context */
    ngx_http_gateway_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gateway_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gateway_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_event_t                    ngx_http_gateway_tick_event;
static ngx_http_gateway_main_conf_t  *ngx_http_gateway_worker_conf;
static ngx_uint_t                     ngx_http_gateway_lease_held;
static ngx_msec_t                     ngx_http_gateway_readers_checked;


static void *
ngx_http_gateway_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    ngx_http_gateway_balancers_init();

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     gmcf->shm_zone = NULL;
     *     gmcf->redis = NULL;
     *     gmcf->prefix = { 0, NULL };
     *     gmcf->state_file = { 0, NULL };
     *     gmcf->allow = NULL;
     *     gmcf->allow_all = 0;
     */

    gmcf->resync = NGX_CONF_UNSET_MSEC;
    gmcf->full_resync = NGX_CONF_UNSET_MSEC;
    gmcf->log = &cf->cycle->new_log;

    return gmcf;
}


static char *
ngx_http_gateway_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_gateway_main_conf_t *gmcf = conf;

    ngx_uint_t           i;
    ngx_gateway_cidr_t  *cidr;

    static const char  *loopback[] = { "127.0.0.0/8", "::1" };

    if (gmcf->allow == NULL) {
        gmcf->allow = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_gateway_cidr_t));
        if (gmcf->allow == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < 2; i++) {
            cidr = ngx_array_push(gmcf->allow);
            if (cidr == NULL) {
                return NGX_CONF_ERROR;
            }

            if (ngx_gateway_parse_cidr(loopback[i], ngx_strlen(loopback[i]),
                                       cidr)
                != 0)
            {
                return NGX_CONF_ERROR;
            }
        }
    }

    if (gmcf->prefix.data == NULL) {
        ngx_str_set(&gmcf->prefix, "gateway:");
    }

    ngx_conf_init_msec_value(gmcf->resync, 5000);
    ngx_conf_init_msec_value(gmcf->full_resync, 300000);

    return NGX_CONF_OK;
}


static char *
ngx_http_gateway_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_main_conf_t *gmcf = conf;

    u_char      *p;
    ssize_t      size;
    ngx_str_t   *value, name, s;
    ngx_uint_t   i;

    if (gmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name.len = 0;
    size = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            if (name.len) {
                goto duplicate;
            }

            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\" in "
                                   "\"gateway_registry\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (name.len == 0 || size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\" in "
                                   "\"gateway_registry\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small in "
                                   "\"gateway_registry\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis=", 6) == 0) {

            if (gmcf->redis) {
                goto duplicate;
            }

            gmcf->redis = ngx_pcalloc(cf->pool,
                                      sizeof(ngx_http_gateway_redis_conf_t));
            if (gmcf->redis == NULL) {
                return NGX_CONF_ERROR;
            }

            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            if (ngx_http_gateway_redis_parse_url(cf, &s, gmcf->redis)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis URL \"%V\" in "
                                   "\"gateway_registry\", expected "
                                   "redis://[[user]:password@]ip:port[/db] "
                                   "or unix:/path[?db=N]", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {

            if (gmcf->prefix.data) {
                goto duplicate;
            }

            gmcf->prefix.data = value[i].data + 7;
            gmcf->prefix.len = value[i].len - 7;

            /* it is in every key, and in log lines as it is */

            for (p = gmcf->prefix.data;
                 p < gmcf->prefix.data + gmcf->prefix.len;
                 p++)
            {
                if (*p <= ' ' || *p >= 0x7f) {
                    break;
                }
            }

            if (gmcf->prefix.len > 64
                || p < gmcf->prefix.data + gmcf->prefix.len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid prefix \"%V\" in "
                                   "\"gateway_registry\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "state_file=", 11) == 0) {

            if (gmcf->state_file.data) {
                goto duplicate;
            }

            gmcf->state_file.data = value[i].data + 11;
            gmcf->state_file.len = value[i].len - 11;

            if (gmcf->state_file.len == 0
                || ngx_conf_full_name(cf->cycle, &gmcf->state_file, 0)
                   != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid state file \"%V\" in "
                                   "\"gateway_registry\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "resync=", 7) == 0) {

            if (gmcf->resync != NGX_CONF_UNSET_MSEC) {
                goto duplicate;
            }

            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            gmcf->resync = ngx_parse_time(&s, 0);

            if (gmcf->resync == (ngx_msec_t) NGX_ERROR || gmcf->resync < 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid resync interval \"%V\" in "
                                   "\"gateway_registry\", at least 100ms",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "full_resync=", 12) == 0) {

            if (gmcf->full_resync != NGX_CONF_UNSET_MSEC) {
                goto duplicate;
            }

            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            gmcf->full_resync = ngx_parse_time(&s, 0);

            if (gmcf->full_resync == (ngx_msec_t) NGX_ERROR
                || gmcf->full_resync < 100)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid full_resync interval \"%V\" in "
                                   "\"gateway_registry\", at least 100ms",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"gateway_registry\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_registry\" must have the "
                           "\"zone=name:size\" parameter");
        return NGX_CONF_ERROR;
    }

    gmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_gateway_module);
    if (gmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (gmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" in \"gateway_registry\" is already "
                           "used", &name);
        return NGX_CONF_ERROR;
    }

    gmcf->shm_zone->init = ngx_http_gateway_registry_init_zone;
    gmcf->shm_zone->data = gmcf;

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"gateway_registry\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_gateway_registry_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gateway_main_conf_t *gmcf = conf;

    ngx_str_t           *value;
    ngx_gateway_cidr_t  *cidr;

    value = cf->args->elts;

    if (gmcf->allow == NULL) {
        gmcf->allow = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_gateway_cidr_t));
        if (gmcf->allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "all", 3) == 0) {
        gmcf->allow_all = 1;
        return NGX_CONF_OK;
    }

    cidr = ngx_array_push(gmcf->allow);
    if (cidr == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_gateway_parse_cidr((char *) value[1].data, value[1].len, cidr)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid network \"%V\" in "
                           "\"gateway_registry_allow\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_gateway_init_process(ngx_cycle_t *cycle)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    gmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_gateway_module);
    if (gmcf == NULL || gmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    if (gmcf->sh->magic != NGX_HTTP_GATEWAY_SH_MAGIC) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "gateway: zone \"%V\" was made by an incompatible "
                      "version, restart nginx", &gmcf->shm_zone->shm.name);
        return NGX_ERROR;
    }

    gmcf->log = cycle->log;

    if (ngx_http_gateway_reader_init(gmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_gateway_worker_conf = gmcf;

    ngx_http_gateway_tick_event.handler = ngx_http_gateway_tick;
    ngx_http_gateway_tick_event.data = gmcf;
    ngx_http_gateway_tick_event.log = cycle->log;
    ngx_http_gateway_tick_event.cancelable = 1;

    ngx_add_timer(&ngx_http_gateway_tick_event, 1);

    return NGX_OK;
}


static void
ngx_http_gateway_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_gateway_worker_conf == NULL) {
        return;
    }

    ngx_http_gateway_sync_stop();
    ngx_http_gateway_redis_admin_close();
    ngx_http_gateway_release_lease();
    ngx_http_gateway_reader_exit(ngx_http_gateway_worker_conf);
}


/*
 * Exactly one worker holds the lease and does the registry's background
 * work: syncing with Redis, expiring heartbeats of the embedded registry
 * and saving the state file.  The lease moves when its holder exits or dies.
 */

static void
ngx_http_gateway_tick(ngx_event_t *ev)
{
    ngx_http_gateway_main_conf_t *gmcf = ev->data;

    ngx_uint_t              held, save;
    ngx_http_gateway_sh_t  *sh;

    /*
     * counts kept in this worker's cells go to their instances; a new
     * configuration's balancer that reads "active" has it published at
     * every pass from now on
     */

    ngx_http_gateway_cells_drain();
    ngx_http_gateway_cells_publish =
        (gmcf->sh->uses & NGX_HTTP_GATEWAY_USES_ACTIVE) ? 1 : 0;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_gateway_sync_stop();
        ngx_http_gateway_release_lease();

        /* its requests may run on: their cells are still let go of */

        ngx_add_timer(ev, NGX_HTTP_GATEWAY_TICK);
        return;
    }

    sh = gmcf->sh;

    /*
     * Requests never wait for the zone's mutex; neither does the tick: a
     * worker busy waiting for it would hold up its requests meanwhile.
     */

    if (!ngx_shmtx_trylock(&gmcf->shpool->mutex)) {
        ngx_add_timer(ev, NGX_HTTP_GATEWAY_TICK / 10);
        return;
    }

    held = (sh->lease_pid == ngx_pid);

    if (!held
        && (sh->lease_pid == 0
            || (ngx_msec_int_t) (sh->lease_expires - ngx_current_msec) < 0
            || (kill(sh->lease_pid, 0) == -1 && ngx_errno == NGX_ESRCH)))
    {
        sh->lease_pid = ngx_pid;
        held = 1;
    }

    save = 0;

    if (held) {
        sh->lease_expires = ngx_current_msec + NGX_HTTP_GATEWAY_LEASE;

        if (gmcf->redis == NULL) {
            (void) ngx_http_gateway_expire_locked(gmcf);
        }

        if ((ngx_msec_int_t)
                (ngx_current_msec - ngx_http_gateway_readers_checked) >= 1000)
        {
            ngx_http_gateway_readers_checked = ngx_current_msec;
            ngx_http_gateway_readers_reclaim_locked(gmcf);
        }

        save = gmcf->state_file.len && sh->saved != sh->generation;
    }

    ngx_http_gateway_rr_tick_locked(gmcf);

    /* commits what expired, frees what requests let go of meanwhile */

    ngx_http_gateway_write_end(gmcf);

    if (held && !ngx_http_gateway_lease_held) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "gateway: this worker now keeps the registry");

        if (gmcf->redis) {
            ngx_http_gateway_sync_start(gmcf, (ngx_cycle_t *) ngx_cycle);
        }
    }

    if (!held && ngx_http_gateway_lease_held) {
        ngx_http_gateway_sync_stop();
    }

    ngx_http_gateway_lease_held = held;

    if (save) {
        (void) ngx_http_gateway_state_save(gmcf, ev->log);
    }

    ngx_add_timer(ev, NGX_HTTP_GATEWAY_TICK);
}


static void
ngx_http_gateway_release_lease(void)
{
    ngx_http_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_gateway_worker_conf;

    if (gmcf == NULL || !ngx_http_gateway_lease_held) {
        return;
    }

    ngx_http_gateway_lease_held = 0;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    if (gmcf->sh->lease_pid == ngx_pid) {
        gmcf->sh->lease_pid = 0;
    }

    ngx_http_gateway_write_end(gmcf);

    if (gmcf->state_file.len && gmcf->sh->saved != gmcf->sh->generation) {
        (void) ngx_http_gateway_state_save(gmcf, gmcf->log);
    }
}
