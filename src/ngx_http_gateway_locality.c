
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


/*
 * gateway_locality zone=NAME [min_healthy=PERCENT]: a choice is made among
 * the instances of the tier whose registry zone is NAME while enough of
 * them are eligible for the request, else among all of the tier.  The
 * zone and the balancers only meet in the core's filter (sel->zone).
 */


#define NGX_HTTP_GATEWAY_LOCALITY_MIN_HEALTHY  70


char *
ngx_http_gateway_locality(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_int_t                     n;
    ngx_str_t                    *value, v;
    ngx_uint_t                    i;
    ngx_http_gateway_locality_t  *lc, **field;

    field = (ngx_http_gateway_locality_t **) ((u_char *) conf + cmd->offset);

    if (*field) {
        return "is duplicate";
    }

    if (!ngx_http_gateway_upstream_configured(conf)) {
        return "must follow \"gateway_service\"";
    }

    lc = ngx_pcalloc(cf->pool, sizeof(ngx_http_gateway_locality_t));
    if (lc == NULL) {
        return NGX_CONF_ERROR;
    }

    lc->min_healthy = NGX_CONF_UNSET_UINT;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0
            && lc->zone.data == NULL)
        {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;

            if (v.len == 0
                || !ngx_gateway_valid_zone((char *) v.data, v.len))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\" in "
                                   "\"gateway_locality\": must be 1..64 "
                                   "characters of [A-Za-z0-9._-]", &v);
                return NGX_CONF_ERROR;
            }

            lc->zone = v;
            continue;
        }

        if (ngx_strncmp(value[i].data, "min_healthy=", 12) == 0
            && lc->min_healthy == NGX_CONF_UNSET_UINT)
        {
            v.data = value[i].data + 12;
            v.len = value[i].len - 12;

            n = ngx_atoi(v.data, v.len);

            if (n == NGX_ERROR || n > 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid min_healthy \"%V\" in "
                                   "\"gateway_locality\": must be an "
                                   "integer 0..100", &v);
                return NGX_CONF_ERROR;
            }

            lc->min_healthy = (ngx_uint_t) n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"gateway_locality\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (lc->zone.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_locality\" needs zone=NAME");
        return NGX_CONF_ERROR;
    }

    if (lc->min_healthy == NGX_CONF_UNSET_UINT) {
        lc->min_healthy = NGX_HTTP_GATEWAY_LOCALITY_MIN_HEALTHY;
    }

    *field = lc;

    return NGX_CONF_OK;
}


/*
 * Sets sel->zone when the local instances of sel's tier are to be
 * preferred: at least one of them is eligible, and eligible ones make at
 * least min_healthy percent of them (any state counts in the whole).
 * Integers only: eligible * 100 >= min_healthy * local, no rounding.
 */

void
ngx_http_gateway_locality_prefer(ngx_http_gateway_locality_t *lc,
    ngx_http_gateway_select_t *sel)
{
    ngx_uint_t                    i, local, eligible;
    ngx_http_gateway_peer_t      *peer;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    sel->zone = NULL;

    local = 0;
    eligible = 0;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        if (peer->backup != sel->backup
            || peer->zone.len != lc->zone.len
            || ngx_memcmp(peer->zone.data, lc->zone.data, lc->zone.len) != 0)
        {
            continue;
        }

        local++;
        eligible += ngx_http_gateway_eligible(sel, peer);
    }

    if (eligible && eligible * 100 >= lc->min_healthy * local) {
        sel->zone = &lc->zone;
    }
}
