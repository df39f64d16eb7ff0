
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"
#include "ngx_http_gateway_failure.h"


/*
 * Passive outlier ejection, shared by all workers.  An attempt observer
 * counts an instance's failures in a row (atomics in the instance); the
 * worker whose failure reaches the threshold ejects it with one
 * compare-and-set of its state, within the service's cap (an atomic count
 * of its ejected instances).  The core's filter leaves ejected instances
 * out until their time is up; then the first worker that selects one
 * claims its trial with another compare-and-set, and only that attempt's
 * outcome brings it back or ejects it again, for longer.
 */


#define NGX_HTTP_GATEWAY_EJECT_FAILED   0
#define NGX_HTTP_GATEWAY_EJECT_PASSED   1
#define NGX_HTTP_GATEWAY_EJECT_NEUTRAL  2


static void ngx_http_gateway_eject_observe(ngx_http_gateway_attempt_t *a);
static ngx_uint_t ngx_http_gateway_eject_verdict(
    ngx_http_gateway_eject_conf_t *ecf, ngx_http_gateway_attempt_t *a);
static void ngx_http_gateway_eject_out(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_attempt_t *a, ngx_uint_t fails);
static void ngx_http_gateway_eject_trial_end(
    ngx_http_gateway_eject_conf_t *ecf, ngx_http_gateway_attempt_t *a,
    ngx_uint_t verdict);
static ngx_msec_t ngx_http_gateway_eject_set(
    ngx_http_gateway_eject_conf_t *ecf, ngx_http_gateway_attempt_t *a,
    ngx_uint_t count);
static void ngx_http_gateway_eject_log(ngx_http_gateway_attempt_t *a,
    const char *what, ngx_msec_t t, ngx_uint_t count);
static u_char *ngx_http_gateway_eject_reason(u_char *p, ngx_uint_t result,
    ngx_uint_t status);
static ngx_uint_t ngx_http_gateway_now_ms(void);

static void *ngx_http_gateway_eject_create_conf(ngx_conf_t *cf);
static char *ngx_http_gateway_eject(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gateway_eject_commands[] = {

    { ngx_string("gateway_eject"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_gateway_eject,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_eject_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_gateway_eject_create_conf,    /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_eject_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_eject_module_ctx,    /* module context */
    ngx_http_gateway_eject_commands,       /* module directives */
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


ngx_http_gateway_eject_conf_t *
ngx_http_gateway_eject_conf(ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_gateway_eject_conf_t  *ecf;

    ecf = ngx_http_conf_upstream_srv_conf(us, ngx_http_gateway_eject_module);

    return ecf->enabled ? ecf : NULL;
}


/*
 * Panic: when fewer than "panic" percent of the service's up instances
 * pass the filter, ejection is set aside and every up instance gets
 * traffic.  Ejecting more would turn a partial outage into a total one
 * (and concentrate all load on the few that are left).
 */

ngx_uint_t
ngx_http_gateway_eject_filter(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_snapshot_t *snap, ngx_http_request_t *r)
{
    u_char                       text[NGX_GATEWAY_LOG_TEXT_SIZE];
    time_t                       now, last;
    ngx_str_t                    name;
    ngx_uint_t                   i, up, in;
    ngx_http_gateway_peer_t     *peer;
    ngx_http_gateway_service_t  *svc;

    if (ecf == NULL) {
        return 0;
    }

    svc = snap->service;

    if (svc->failures.ejected == 0) {
        return 1;
    }

    up = 0;
    in = 0;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        if (peer->state == NGX_GATEWAY_STATE_UP) {
            up++;
            in += ngx_http_gateway_eject_passes(peer->inst);
        }
    }

    if (!ngx_gateway_eject_panic(in, up, ecf->panic)) {
        return 1;
    }

    now = ngx_time();
    last = svc->failures.panic;

    if (last != now
        && ngx_atomic_cmp_set(&svc->failures.panic, last, now))
    {
        ngx_http_gateway_log_text(&name, text, svc->sn.str.data,
                                  svc->sn.str.len);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "gateway: service \"%V\" is in panic mode: %ui of its "
                      "%ui up instances are not ejected, below panic=%ui%%; "
                      "balancing over all of them", &name, in, up,
                      ecf->panic);
    }

    return 0;
}


ngx_int_t
ngx_http_gateway_eject_claim(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_peer_t *peer)
{
    ngx_atomic_uint_t          s, state;
    ngx_http_gateway_eject_t  *ej;

    ej = &peer->inst->lines->eject;
    s = ej->state;
    state = ngx_http_gateway_eject_state(s);

    if (state == NGX_HTTP_GATEWAY_EJECT_IN
        || state == NGX_HTTP_GATEWAY_EJECT_GONE)
    {
        return NGX_OK;
    }

    if ((ngx_msec_int_t) (ej->until - ngx_current_msec) > 0) {
        return NGX_BUSY;
    }

    /*
     * the trial's deadline goes first: a worker that sees the new state
     * sees it too; should the trial never end (its worker died), another
     * may be claimed after it
     */

    ej->until = ngx_current_msec + ecf->time;
    ngx_memory_barrier();

    if (!ngx_atomic_cmp_set(&ej->state, s,
                            (((s >> 2) + 1) << 2)
                            | NGX_HTTP_GATEWAY_EJECT_TRIAL))
    {
        return NGX_BUSY;
    }

    return NGX_DONE;
}


/*
 * The one compare-and-set that takes the instance out of its ejection
 * gives its place in the service's cap back.  A removed instance is gone
 * for good: old snapshots may still use it, but it is never ejected again.
 */

void
ngx_http_gateway_eject_reset_locked(ngx_http_gateway_service_t *svc,
    ngx_http_gateway_instance_t *inst, ngx_uint_t gone)
{
    ngx_atomic_uint_t          s, state;
    ngx_http_gateway_eject_t  *ej;

    if (inst->lines == NULL) {
        return;     /* no configuration ejects */
    }

    ej = &inst->lines->eject;

    for ( ;; ) {
        s = ej->state;
        state = ngx_http_gateway_eject_state(s);

        if (state == NGX_HTTP_GATEWAY_EJECT_GONE) {
            return;
        }

        if (ngx_atomic_cmp_set(&ej->state, s,
                               (((s >> 2) + 1) << 2)
                               | (gone ? NGX_HTTP_GATEWAY_EJECT_GONE
                                       : NGX_HTTP_GATEWAY_EJECT_IN)))
        {
            break;
        }
    }

    if (state != NGX_HTTP_GATEWAY_EJECT_IN) {
        (void) ngx_atomic_fetch_add(&svc->failures.ejected, -1);
    }

    if (!gone) {
        ej->fails = 0;
        ej->count = 0;
    }
}


static void
ngx_http_gateway_eject_observe(ngx_http_gateway_attempt_t *a)
{
    ngx_uint_t                      verdict, fails;
    ngx_http_upstream_t            *u;
    ngx_http_gateway_eject_t       *ej;
    ngx_http_gateway_eject_conf_t  *ecf;

    u = a->request->upstream;

    if (u == NULL || u->upstream == NULL) {
        return;
    }

    ecf = ngx_http_conf_upstream_srv_conf(u->upstream,
                                          ngx_http_gateway_eject_module);
    if (!ecf->enabled) {
        return;
    }

    verdict = ngx_http_gateway_eject_verdict(ecf, a);

    if (a->trial) {
        ngx_http_gateway_eject_trial_end(ecf, a, verdict);
        return;
    }

    ej = &a->peer->inst->lines->eject;

    switch (verdict) {

    case NGX_HTTP_GATEWAY_EJECT_PASSED:
        if (ej->fails) {
            ej->fails = 0;
        }

        return;

    case NGX_HTTP_GATEWAY_EJECT_NEUTRAL:
        return;
    }

    fails = ngx_atomic_fetch_add(&ej->fails, 1) + 1;

    if (fails >= ecf->failures
        && ngx_http_gateway_eject_state(ej->state)
           == NGX_HTTP_GATEWAY_EJECT_IN)
    {
        ngx_http_gateway_eject_out(ecf, a, fails);
    }
}


/*
 * A connect error, a timeout or a listed status is a failure; an answer
 * with another status is a success; a stale keepalive connection, another
 * error (a reset, an invalid header) or no answer at all tells nothing.
 */

static ngx_uint_t
ngx_http_gateway_eject_verdict(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_attempt_t *a)
{
    switch (a->result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_CONNECT:
    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        return NGX_HTTP_GATEWAY_EJECT_FAILED;

    case NGX_HTTP_GATEWAY_ATTEMPT_STALE:
    case NGX_HTTP_GATEWAY_ATTEMPT_ERROR:
        return NGX_HTTP_GATEWAY_EJECT_NEUTRAL;
    }

    if (a->status == 0) {
        return NGX_HTTP_GATEWAY_EJECT_NEUTRAL;
    }

    return ngx_gateway_status_in(ecf->statuses, a->status)
           ? NGX_HTTP_GATEWAY_EJECT_FAILED : NGX_HTTP_GATEWAY_EJECT_PASSED;
}


/* the service's cap first, then the instance: one worker wins each */

static void
ngx_http_gateway_eject_out(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_attempt_t *a, ngx_uint_t fails)
{
    u_char                       text[NGX_GATEWAY_LOG_TEXT_SIZE];
    u_char                       itext[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                    name, id, pid, addr;
    ngx_msec_t                   t;
    ngx_uint_t                   cap, count;
    ngx_atomic_uint_t            s, n;
    ngx_http_gateway_eject_t    *ej;
    ngx_http_gateway_service_t  *svc;

    svc = a->snap->service;
    ej = &a->peer->inst->lines->eject;

    cap = ngx_gateway_eject_cap(a->snap->npeers, ecf->max_percent);

    for ( ;; ) {
        n = svc->failures.ejected;

        if (n >= cap) {

            /* said once, when the instance reaches the threshold */

            if (fails == ecf->failures) {
                ngx_http_gateway_log_text(&name, text, a->service->data,
                                          a->service->len);
                pid = ngx_http_gateway_peer_id(a->peer);
                addr = ngx_http_gateway_peer_name(a->peer);
                ngx_http_gateway_log_text(&id, itext, pid.data, pid.len);

                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "gateway: instance \"%V\" (%V) of service "
                              "\"%V\" is not ejected: %uA of its %ui "
                              "instances are (max_percent=%ui)",
                              &id, &addr, &name, n,
                              a->snap->npeers, ecf->max_percent);
            }

            return;
        }

        if (ngx_atomic_cmp_set(&svc->failures.ejected, n, n + 1)) {
            break;
        }
    }

    s = ej->state;
    count = ej->count + 1;

    if (ngx_http_gateway_eject_state(s) != NGX_HTTP_GATEWAY_EJECT_IN) {
        (void) ngx_atomic_fetch_add(&svc->failures.ejected, -1);
        return;
    }

    /* the time goes first: whoever sees the new state sees it too */

    t = ngx_http_gateway_eject_set(ecf, a, count);

    if (!ngx_atomic_cmp_set(&ej->state, s,
                            (((s >> 2) + 1) << 2)
                            | NGX_HTTP_GATEWAY_EJECT_OUT))
    {
        (void) ngx_atomic_fetch_add(&svc->failures.ejected, -1);
        return;
    }

    ej->count = count;
    ej->fails = 0;

    ngx_http_gateway_eject_log(a, "ejected", t, count);
}


static void
ngx_http_gateway_eject_trial_end(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_attempt_t *a, ngx_uint_t verdict)
{
    ngx_msec_t                 t;
    ngx_uint_t                 count;
    ngx_atomic_uint_t          s, seq;
    ngx_http_gateway_eject_t  *ej;

    ej = &a->peer->inst->lines->eject;
    s = ej->state;

    if (ngx_http_gateway_eject_state(s) != NGX_HTTP_GATEWAY_EJECT_TRIAL) {
        return;     /* removed meanwhile */
    }

    seq = ((s >> 2) + 1) << 2;

    switch (verdict) {

    case NGX_HTTP_GATEWAY_EJECT_PASSED:
        if (ngx_atomic_cmp_set(&ej->state, s,
                               seq | NGX_HTTP_GATEWAY_EJECT_IN))
        {
            ej->fails = 0;
            ngx_http_gateway_instance_recovered(a->peer->inst);
            (void) ngx_atomic_fetch_add(&a->snap->service->failures.ejected,
                                        -1);
            ngx_http_gateway_eject_log(a, "returns", 0, ej->count);
        }

        return;

    case NGX_HTTP_GATEWAY_EJECT_FAILED:
        count = ej->count + 1;
        t = ngx_http_gateway_eject_set(ecf, a, count);

        if (ngx_atomic_cmp_set(&ej->state, s,
                               seq | NGX_HTTP_GATEWAY_EJECT_OUT))
        {
            ej->count = count;
            ngx_http_gateway_eject_log(a, "ejected again", t, count);
        }

        return;
    }

    /* the trial told nothing: the next request may be another one */

    ej->until = ngx_current_msec;
}


static ngx_msec_t
ngx_http_gateway_eject_set(ngx_http_gateway_eject_conf_t *ecf,
    ngx_http_gateway_attempt_t *a, ngx_uint_t count)
{
    ngx_uint_t                 now;
    ngx_msec_t                 t;
    ngx_http_gateway_eject_t  *ej;

    ej = &a->peer->inst->lines->eject;

    t = ngx_gateway_eject_duration(ecf->time, ecf->max_time, count);

    now = ngx_http_gateway_now_ms();

    ej->until = ngx_current_msec + t;
    ej->since = now;
    ej->till = now + t;
    ej->reason = a->result;
    ej->status = a->status;
    ngx_memory_barrier();

    return t;
}


static void
ngx_http_gateway_eject_log(ngx_http_gateway_attempt_t *a, const char *what,
    ngx_msec_t t, ngx_uint_t count)
{
    u_char     text[NGX_GATEWAY_LOG_TEXT_SIZE];
    u_char     itext[NGX_GATEWAY_LOG_TEXT_SIZE];
    u_char     reason[sizeof("status 999")], *p;
    ngx_str_t  name, id, pid, addr;

    pid = ngx_http_gateway_peer_id(a->peer);
    addr = ngx_http_gateway_peer_name(a->peer);

    ngx_http_gateway_log_text(&name, text, a->service->data, a->service->len);
    ngx_http_gateway_log_text(&id, itext, pid.data, pid.len);

    if (t == 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "gateway: instance \"%V\" (%V) of service \"%V\" "
                      "returns: its trial request succeeded",
                      &id, &addr, &name);
        return;
    }

    p = ngx_http_gateway_eject_reason(reason, a->result, a->status);

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "gateway: instance \"%V\" (%V) of service \"%V\" %s for "
                  "%Mms (ejection %ui, last failure: %*s)",
                  &id, &addr, &name, what, t, count,
                  p - reason, reason);
}


static u_char *
ngx_http_gateway_eject_reason(u_char *p, ngx_uint_t result, ngx_uint_t status)
{
    switch (result) {

    case NGX_HTTP_GATEWAY_ATTEMPT_CONNECT:
        return ngx_cpymem(p, "connect", 7);

    case NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT:
        return ngx_cpymem(p, "timeout", 7);

    default:
        return ngx_sprintf(p, "status %03ui", status % 1000);
    }
}


static ngx_uint_t
ngx_http_gateway_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_uint_t) tp->sec * 1000 + tp->msec;
}


size_t
ngx_http_gateway_eject_json(u_char *p, ngx_http_gateway_instance_t *inst)
{
    u_char                    *start;
    ngx_uint_t                 count;
    ngx_http_gateway_eject_t  *ej;
    static const char         *states[] = { "in", "out", "trial", "in" };

    if (p == NULL) {
        return sizeof(",\"ejection\":{\"state\":\"trial\",\"since\":,"
                      "\"until\":,\"count\":,\"reason\":\"status 999\"}")
               + 3 * NGX_ATOMIC_T_LEN;
    }

    if (inst->lines == NULL) {
        return 0;
    }

    ej = &inst->lines->eject;
    count = ej->count;

    if (count == 0) {
        return 0;
    }

    start = p;

    p = ngx_sprintf(p, ",\"ejection\":{\"state\":\"%s\",\"since\":%uA,"
                    "\"until\":%uA,\"count\":%ui,\"reason\":\"",
                    states[ngx_http_gateway_eject_state(ej->state)],
                    ej->since, ej->till, count);
    p = ngx_http_gateway_eject_reason(p, ej->reason, ej->status);
    *p++ = '"';
    *p++ = '}';

    return p - start;
}


static void *
ngx_http_gateway_eject_create_conf(ngx_conf_t *cf)
{
    ngx_http_gateway_eject_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_eject_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->enabled = 0;
     *     conf->statuses = { 0 };
     */

    return conf;
}


static char *
ngx_http_gateway_eject(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gateway_eject_conf_t *ecf = conf;

    u_char                        *eq;
    size_t                         off, len;
    ngx_int_t                      n;
    ngx_str_t                     *value, name, v, list;
    ngx_uint_t                     i;

    if (ecf->enabled) {
        return "is duplicate";
    }

    ecf->enabled = 1;

    ngx_http_gateway_uses(cf, NGX_HTTP_GATEWAY_USES_LINES);
    ecf->failures = 5;
    ecf->time = NGX_CONF_UNSET_MSEC;
    ecf->max_time = NGX_CONF_UNSET_MSEC;
    ecf->max_percent = 10;
    ecf->panic = 50;
    ngx_str_set(&list, "502,503,504");

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL || eq == value[i].data
            || eq == value[i].data + value[i].len - 1)
        {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;
        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (name.len == 8 && ngx_strncmp(name.data, "failures", 8) == 0) {
            n = ngx_atoi(v.data, v.len);
            if (n < 1 || n > 1000000) {
                goto invalid;
            }

            ecf->failures = n;
            continue;
        }

        if ((name.len == 4 && ngx_strncmp(name.data, "time", 4) == 0)
            || (name.len == 8 && ngx_strncmp(name.data, "max_time", 8) == 0))
        {
            n = ngx_parse_time(&v, 0);
            if (n == NGX_ERROR || n < 1) {
                goto invalid;
            }

            if (name.len == 4) {
                ecf->time = n;

            } else {
                ecf->max_time = n;
            }

            continue;
        }

        if ((name.len == 11 && ngx_strncmp(name.data, "max_percent", 11) == 0)
            || (name.len == 5 && ngx_strncmp(name.data, "panic", 5) == 0))
        {
            if (v.data[v.len - 1] == '%') {
                v.len--;
            }

            n = ngx_atoi(v.data, v.len);
            if (n < 0 || n > 100) {
                goto invalid;
            }

            if (name.len == 5) {
                ecf->panic = n;

            } else {
                ecf->max_percent = n;
            }

            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "statuses", 8) == 0) {
            list = v;
            continue;
        }

        goto invalid;
    }

    /* a default gives way to the other one given: time=400s alone works */

    if (ecf->time == NGX_CONF_UNSET_MSEC) {
        ecf->time = (ecf->max_time == NGX_CONF_UNSET_MSEC)
                    ? 30000 : ngx_min(30000, ecf->max_time);
    }

    if (ecf->max_time == NGX_CONF_UNSET_MSEC) {
        ecf->max_time = ngx_max(300000, ecf->time);
    }

    if (ecf->max_time < ecf->time) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"max_time\" is less than \"time\" in "
                           "\"gateway_eject\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_gateway_status_list((char *) list.data, list.len, ecf->statuses,
                                &off, &len)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid status \"%*s\" in \"statuses\" of "
                           "\"gateway_eject\"", len, list.data + off);
        return NGX_CONF_ERROR;
    }

    /* one observer for every upstream that ejects */

    if (ngx_http_gateway_observer_add(cf, ngx_http_gateway_eject_observe)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"gateway_eject\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}
