
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


static int ngx_libc_cdecl ngx_http_gateway_zone_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_gateway_zone_order(ngx_uint_t backup,
    ngx_str_t *name, ngx_http_gateway_zone_t *z);


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

    ngx_http_gateway_uses(cf, NGX_HTTP_GATEWAY_USES_ZONES);

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
 * Each snapshot groups its peers by tier and zone when it is built (zone
 * lock held), so that a choice counts only the local instances: zones[]
 * by (backup, name), each naming a run of by_zone[], peer indices.  The
 * memory follows the peers, in the snapshot's own chunk.
 */

size_t
ngx_http_gateway_zones_size(ngx_uint_t npeers)
{
    return npeers * (sizeof(ngx_http_gateway_zone_t) + sizeof(uint32_t));
}


void
ngx_http_gateway_zones_build(ngx_http_gateway_snapshot_t *snap, u_char *p)
{
    uint32_t                  *order;
    ngx_uint_t                 i, k, same;
    ngx_http_gateway_peer_t   *peer;
    ngx_http_gateway_zone_t   *zones;

    zones = (ngx_http_gateway_zone_t *) p;
    order = (uint32_t *) (zones + snap->npeers);

    snap->zones = zones;
    snap->by_zone = order;
    snap->nzones = 0;

    if (snap->npeers == 0) {
        return;
    }

    same = 1;

    for (i = 0; i < snap->npeers; i++) {
        peer = &snap->peers[i];

        zones[i].name = ngx_http_gateway_peer_zone(peer);
        zones[i].backup = peer->backup;
        zones[i].first = (uint32_t) i;
        zones[i].n = 1;

        if (same && i && ngx_http_gateway_zone_cmp(&zones[0], &zones[i])) {
            same = 0;
        }
    }

    /* without zones or backups, as mostly, there is nothing to sort */

    if (!same) {
        ngx_qsort(zones, snap->npeers, sizeof(ngx_http_gateway_zone_t),
                  ngx_http_gateway_zone_cmp);
    }

    /* runs of one tier and zone become one entry, in place */

    k = 0;

    for (i = 0; i < snap->npeers; i++) {
        order[i] = zones[i].first;

        if (k && ngx_http_gateway_zone_cmp(&zones[k - 1], &zones[i]) == 0) {
            zones[k - 1].n++;
            continue;
        }

        zones[k].name = zones[i].name;
        zones[k].backup = zones[i].backup;
        zones[k].first = (uint32_t) i;
        zones[k].n = 1;
        k++;
    }

    snap->nzones = k;
}


/* out of line: the core's inline filter stays small without locality */

ngx_uint_t
ngx_http_gateway_peer_in_zone(ngx_http_gateway_peer_t *peer, ngx_str_t *zone)
{
    ngx_str_t  z;

    z = ngx_http_gateway_peer_zone(peer);

    return z.len == zone->len && ngx_memcmp(z.data, zone->data, z.len) == 0;
}


static int ngx_libc_cdecl
ngx_http_gateway_zone_cmp(const void *one, const void *two)
{
    const ngx_http_gateway_zone_t  *a = one;
    const ngx_http_gateway_zone_t  *b = two;

    if (a->backup != b->backup) {
        return a->backup < b->backup ? -1 : 1;
    }

    return ngx_memn2cmp(a->name.data, b->name.data, a->name.len,
                        b->name.len);
}


static ngx_int_t
ngx_http_gateway_zone_order(ngx_uint_t backup, ngx_str_t *name,
    ngx_http_gateway_zone_t *z)
{
    if (backup != z->backup) {
        return backup < z->backup ? -1 : 1;
    }

    return ngx_memn2cmp(name->data, z->name.data, name->len, z->name.len);
}


/*
 * Sets sel->zone when the local instances of sel's tier are to be
 * preferred: at least one of them is eligible, and eligible ones make at
 * least min_healthy percent of them (any state counts in the whole).
 * Integers only: eligible * 100 >= min_healthy * local, no rounding.
 * Only the local instances are looked at.
 */

void
ngx_http_gateway_locality_prefer(ngx_http_gateway_locality_t *lc,
    ngx_http_gateway_select_t *sel)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i, lo, hi, mid, eligible;
    ngx_http_gateway_zone_t      *z;
    ngx_http_gateway_snapshot_t  *snap;

    snap = sel->snap;
    sel->zone = NULL;

    lo = 0;
    hi = snap->nzones;
    z = NULL;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        rc = ngx_http_gateway_zone_order(sel->backup, &lc->zone,
                                         &snap->zones[mid]);
        if (rc == 0) {
            z = &snap->zones[mid];
            break;
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    if (z == NULL) {
        return;
    }

    eligible = 0;

    for (i = z->first; i < z->first + z->n; i++) {
        eligible += ngx_http_gateway_eligible(sel,
                                              &snap->peers[snap->by_zone[i]]);
    }

    if (eligible && eligible * 100 >= lc->min_healthy * z->n) {
        sel->zone = &lc->zone;
        sel->narrow = 1;
    }
}
