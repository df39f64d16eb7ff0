
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_balancer.h"


ngx_http_gateway_balancer_t  *ngx_http_gateway_balancers[] = {
    &ngx_http_gateway_balancer_round_robin,
    &ngx_http_gateway_balancer_random,
    &ngx_http_gateway_balancer_least_request,
    &ngx_http_gateway_balancer_p2c,
    &ngx_http_gateway_balancer_peak_ewma,
    NULL
};


static size_t  ngx_http_gateway_balancers_instance_size;
static size_t  ngx_http_gateway_balancers_service_size;


/* every algorithm gets its place in every instance and service */

void
ngx_http_gateway_balancers_init(void)
{
    size_t                        is, ss;
    ngx_http_gateway_balancer_t  **b;

    is = 0;
    ss = 0;

    for (b = ngx_http_gateway_balancers; *b; b++) {
        (*b)->instance_offset = is;
        (*b)->service_offset = ss;
        is += ngx_align((*b)->instance_size, sizeof(ngx_uint_t));
        ss += ngx_align((*b)->service_size, sizeof(ngx_uint_t));
    }

    ngx_http_gateway_balancers_instance_size = is;
    ngx_http_gateway_balancers_service_size = ss;
}


size_t
ngx_http_gateway_instance_size(void)
{
    return offsetof(ngx_http_gateway_instance_t, lb)
           + ngx_max(ngx_http_gateway_balancers_instance_size,
                     sizeof(ngx_uint_t));
}


size_t
ngx_http_gateway_service_size(void)
{
    return offsetof(ngx_http_gateway_service_t, lb)
           + ngx_max(ngx_http_gateway_balancers_service_size,
                     sizeof(ngx_uint_t));
}


ngx_http_gateway_balancer_t *
ngx_http_gateway_balancer_find(ngx_str_t *name)
{
    ngx_http_gateway_balancer_t  **b;

    for (b = ngx_http_gateway_balancers; *b; b++) {
        if ((*b)->name.len == name->len
            && ngx_strncmp((*b)->name.data, name->data, name->len) == 0)
        {
            return *b;
        }
    }

    return NULL;
}


void *
ngx_http_gateway_balancer_create_conf(ngx_conf_t *cf,
    ngx_http_gateway_balancer_t *b, ngx_str_t *params, ngx_uint_t n)
{
    if (b->create_conf) {
        return b->create_conf(cf, params, n);
    }

    if (n) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of "
                           "\"gateway_balance %V\"", &params[0], &b->name);
        return NULL;
    }

    return b;
}


void
ngx_http_gateway_balancers_update_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap)
{
    ngx_http_gateway_balancer_t  **b;

    for (b = ngx_http_gateway_balancers; *b; b++) {
        if ((*b)->update) {
            (*b)->update(snap);
        }
    }
}
