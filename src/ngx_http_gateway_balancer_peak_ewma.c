
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"
#include "ngx_gateway_ewma.h"


/*
 * Peak EWMA (Finagle, Linkerd): p2c on a peak-sensitive moving average of
 * each instance's response time, times its outstanding requests + 1.
 *
 * Each attempt of an upstream with this method is a sample (an observer;
 * the attempt's microsecond stamps, as ngx_current_msec is too coarse for
 * backends that answer within a millisecond): a sample above the estimate
 * replaces it; one below is blended in with weight 1 - w, where
 * w = exp(-elapsed / decay), elapsed since the last sample (on
 * ngx_current_msec).  Without samples the estimate decays towards zero at
 * the same rate, so a slow instance is tried again after a while.  A new
 * instance starts at NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT.
 *
 * The estimate of an instance is one 64-bit word in the zone (see
 * ngx_gateway_ewma.h), updated with compare-and-swap.  Selection only
 * reads it.  The race
 * accepted: a sample computed from a word that changed meanwhile is
 * retried, so none is lost; a reader sees the word before or after a
 * sample (a plain load: on a 32-bit platform it may tear, and one choice
 * then uses a wrong estimate), and outstanding counts that may be a
 * request behind.
 */


#define NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT  30000     /* us */
#define NGX_HTTP_GATEWAY_EWMA_DECAY        10000     /* ms */

typedef struct {
    ngx_msec_t                    decay;
} ngx_http_gateway_peak_ewma_conf_t;


typedef struct {
    volatile uint64_t             value;    /* 0: not initialized yet */
} ngx_http_gateway_peak_ewma_t;


static void *ngx_http_gateway_peak_ewma_create_conf(ngx_conf_t *cf,
    ngx_str_t *params, ngx_uint_t n);
static void ngx_http_gateway_peak_ewma_update(
    ngx_http_gateway_snapshot_t *snap);
static ngx_int_t ngx_http_gateway_peak_ewma_select(
    ngx_http_gateway_select_t *sel);
static double ngx_http_gateway_peak_ewma_cost(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_peak_ewma_conf_t *conf, uint64_t now);
static void ngx_http_gateway_peak_ewma_observe(ngx_http_gateway_attempt_t *a);


ngx_http_gateway_balancer_t  ngx_http_gateway_balancer_peak_ewma = {
    ngx_string("peak_ewma"),
    sizeof(ngx_http_gateway_peak_ewma_t),
    0,
    1,
    ngx_http_gateway_peak_ewma_create_conf,
    ngx_http_gateway_peak_ewma_update,
    ngx_http_gateway_peak_ewma_select,
    NULL,
    NULL,
    0,
    0,
    0
};


#define ngx_http_gateway_peak_ewma_state(inst)                                \
    ((ngx_http_gateway_peak_ewma_t *) ngx_http_gateway_balancer_instance(    \
                                 &ngx_http_gateway_balancer_peak_ewma, inst))


static void *
ngx_http_gateway_peak_ewma_create_conf(ngx_conf_t *cf, ngx_str_t *params,
    ngx_uint_t n)
{
    ngx_str_t                           s;
    ngx_uint_t                          i;
    ngx_msec_t                          t;
    ngx_http_gateway_main_conf_t       *gmcf;
    ngx_http_gateway_peak_ewma_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_peak_ewma_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /* decay 0: not given yet */

    for (i = 0; i < n; i++) {
        if (params[i].len > 6
            && ngx_strncmp(params[i].data, "decay=", 6) == 0
            && conf->decay == 0)
        {
            s.data = params[i].data + 6;
            s.len = params[i].len - 6;

            t = ngx_parse_time(&s, 0);

            if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"decay\" value \"%V\" in "
                                   "\"gateway_balance peak_ewma\": must be "
                                   "a time greater than 0", &s);
                return NULL;
            }

            conf->decay = t;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of "
                           "\"gateway_balance peak_ewma\"", &params[i]);
        return NULL;
    }

    if (conf->decay == 0) {
        conf->decay = NGX_HTTP_GATEWAY_EWMA_DECAY;
    }

    /* one observer feeds every upstream with this method */

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module);
    gmcf->attempt_us = 1;

    if (ngx_http_gateway_observer_add(cf, ngx_http_gateway_peak_ewma_observe)
        != NGX_OK)
    {
        return NULL;
    }

    return conf;
}


/* a new instance starts at the default RTT, decaying from now */

static void
ngx_http_gateway_peak_ewma_update(ngx_http_gateway_snapshot_t *snap)
{
    uint64_t                       now;
    ngx_uint_t                     i;
    ngx_http_gateway_peak_ewma_t  *st;

    now = ngx_current_msec;

    for (i = 0; i < snap->npeers; i++) {
        if (snap->peers[i].inst->lines == NULL) {
            continue;       /* no upstream uses peak_ewma */
        }

        st = ngx_http_gateway_peak_ewma_state(snap->peers[i].inst);

        if (st->value == 0) {
            (void) __sync_bool_compare_and_swap(&st->value, 0,
                    ngx_gateway_ewma_pack(NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT,
                                          now));
        }
    }
}


static ngx_int_t
ngx_http_gateway_peak_ewma_select(ngx_http_gateway_select_t *sel)
{
    double                              c1, c2;
    uint64_t                            now;
    ngx_int_t                           one, two;
    ngx_uint_t                          w1, w2;
    ngx_http_gateway_peak_ewma_conf_t  *conf;

    one = ngx_http_gateway_weighted_pair(sel, &two, &w1, &w2);

    if (two == NGX_DECLINED) {
        return one;
    }

    conf = sel->conf;
    now = ngx_current_msec;

    c1 = ngx_http_gateway_peak_ewma_cost(&sel->snap->peers[one], conf, now);
    c2 = ngx_http_gateway_peak_ewma_cost(&sel->snap->peers[two], conf, now);

    /* c2 / w2 < c1 / w1; a tie goes to the first draw */

    return c2 * w1 < c1 * w2 ? two : one;
}


static double
ngx_http_gateway_peak_ewma_cost(ngx_http_gateway_peer_t *peer,
    ngx_http_gateway_peak_ewma_conf_t *conf, uint64_t now)
{
    double                         v;
    uint64_t                       value;
    ngx_atomic_uint_t              active;
    ngx_http_gateway_peak_ewma_t  *st;

    st = ngx_http_gateway_peak_ewma_state(peer->inst);
    value = st->value;
    active = ngx_http_gateway_active(peer->inst);

    if (value == 0) {
        v = NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT;

    } else {
        v = ngx_gateway_ewma_at(value, now, (double) conf->decay);
    }

    /*
     * Under a microsecond the history says nothing: an instance whose
     * estimate has decayed away (or was never measured) and has requests
     * in flight costs the default, so that it does not take every request
     * until the first answer comes back.
     */

    if (v < 1 && active) {
        v = NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT;
    }

    return v * (double) (active + 1);
}


static void
ngx_http_gateway_peak_ewma_observe(ngx_http_gateway_attempt_t *a)
{
    double                              rtt;
    uint64_t                            old, now, next;
    ngx_http_gateway_peak_ewma_t       *st;
    ngx_http_gateway_peak_ewma_conf_t  *conf;

    conf = ngx_http_gateway_upstream_balancer_conf(a->request,
                                          &ngx_http_gateway_balancer_peak_ewma);
    if (conf == NULL) {
        return;
    }

    if (a->result == NGX_HTTP_GATEWAY_ATTEMPT_STALE) {
        return;     /* a closed keepalive connection, not the instance */
    }

    rtt = (double) (a->end_us - a->start_us);

    /* an instance that fails fast must not look fast */

    if (a->result == NGX_HTTP_GATEWAY_ATTEMPT_CONNECT
        || a->result == NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT
        || a->result == NGX_HTTP_GATEWAY_ATTEMPT_ERROR)
    {
        rtt = ngx_max(rtt, NGX_HTTP_GATEWAY_EWMA_DEFAULT_RTT);
    }

    st = ngx_http_gateway_peak_ewma_state(a->peer->inst);
    now = ngx_current_msec;

    do {
        old = st->value;
        next = ngx_gateway_ewma_sample(old, now, rtt, (double) conf->decay);
    } while (!__sync_bool_compare_and_swap(&st->value, old, next));
}
