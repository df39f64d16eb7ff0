
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * Registry events in the error log, found at the commit point by comparing
 * a service's new snapshot with the one it replaces: whatever wrote the
 * change (admin, Redis, expiry, the state file), an instance that appeared,
 * went, or changed its address, weight or state is one line.  Lines are
 * limited per second across the zone, so that a resync of a large registry
 * does not flood the log; what is left out is counted in one line.
 */


#define NGX_HTTP_GATEWAY_EVENTS_PER_SEC  100


static ngx_uint_t ngx_http_gateway_event_allowed(
    ngx_http_gateway_main_conf_t *gmcf);
static void ngx_http_gateway_event(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_peer_t *was,
    ngx_http_gateway_peer_t *now);


/* snap: NULL when the service is deleted */

void
ngx_http_gateway_events_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *old,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, j, n, m;
    ngx_http_gateway_peer_t  *a, *b;

    if (gmcf->log->log_level < NGX_LOG_NOTICE) {
        return;
    }

    /* both are sorted by instance id */

    i = 0;
    j = 0;
    n = old ? old->npeers : 0;
    m = snap ? snap->npeers : 0;

    while (i < n || j < m) {
        a = (i < n) ? &old->peers[i] : NULL;
        b = (j < m) ? &snap->peers[j] : NULL;

        if (a == NULL) {
            rc = 1;

        } else if (b == NULL) {
            rc = -1;

        } else {
            rc = ngx_memn2cmp(ngx_http_gateway_peer_id(a).data,
                              ngx_http_gateway_peer_id(b).data,
                              a->data->id_len, b->data->id_len);
        }

        if (rc < 0) {
            ngx_http_gateway_event(gmcf, svc, a, NULL);
            i++;

        } else if (rc > 0) {
            ngx_http_gateway_event(gmcf, svc, NULL, b);
            j++;

        } else {
            if (a->data != b->data || a->weight != b->weight
                || a->state != b->state)
            {
                ngx_http_gateway_event(gmcf, svc, a, b);
            }

            i++;
            j++;
        }
    }
}


static void
ngx_http_gateway_event(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_peer_t *was,
    ngx_http_gateway_peer_t *now)
{
    u_char                   buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t                 addr, id, name, wname;
    ngx_http_gateway_peer_t  *p;

    if (!ngx_http_gateway_event_allowed(gmcf)) {
        return;
    }

    p = now ? now : was;

    id = ngx_http_gateway_peer_id(p);
    name = ngx_http_gateway_peer_name(p);

    ngx_http_gateway_log_text(&addr, buf, name.data, name.len);

    if (was == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, gmcf->log, 0,
                      "gateway: instance \"%V\" of service \"%V\" registered: "
                      "%V, weight %ui, %s", &id, &svc->sn.str,
                      &addr, (ngx_uint_t) p->weight,
                      ngx_gateway_state_name(p->state));
        return;
    }

    if (now == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, gmcf->log, 0,
                      "gateway: instance \"%V\" of service \"%V\" removed "
                      "(was %V)", &id, &svc->sn.str, &addr);
        return;
    }

    wname = ngx_http_gateway_peer_name(was);

    ngx_log_error(NGX_LOG_NOTICE, gmcf->log, 0,
                  "gateway: instance \"%V\" of service \"%V\" changed: "
                  "%V, weight %ui, %s (was weight %ui, %s%s)",
                  &id, &svc->sn.str, &addr, (ngx_uint_t) now->weight,
                  ngx_gateway_state_name(now->state),
                  (ngx_uint_t) was->weight,
                  ngx_gateway_state_name(was->state),
                  (wname.len != name.len
                   || ngx_strncmp(wname.data, name.data, name.len) != 0)
                  ? ", another address" : "");
}


/* zone lock held: the count is the zone's, for every worker */

static ngx_uint_t
ngx_http_gateway_event_allowed(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_http_gateway_sh_t  *sh;

    sh = gmcf->sh;

    if (sh->events_time != ngx_time()) {

        if (sh->events_dropped) {
            ngx_log_error(NGX_LOG_NOTICE, gmcf->log, 0,
                          "gateway: %ui more registry events were not "
                          "logged (more than %d a second)",
                          sh->events_dropped,
                          NGX_HTTP_GATEWAY_EVENTS_PER_SEC);
        }

        sh->events_time = ngx_time();
        sh->events_logged = 0;
        sh->events_dropped = 0;
    }

    if (sh->events_logged == NGX_HTTP_GATEWAY_EVENTS_PER_SEC) {
        sh->events_dropped++;
        return 0;
    }

    sh->events_logged++;

    return 1;
}
