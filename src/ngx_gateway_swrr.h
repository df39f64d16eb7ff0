
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_SWRR_H_INCLUDED_
#define _NGX_GATEWAY_SWRR_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>


/* smooth weighted round robin, as nginx's round robin balancer does it */

typedef struct {
    int   weight;
    int   current_weight;
} ngx_gateway_swrr_t;


/* returns the i-th candidate, or NULL when it must not be chosen */
typedef ngx_gateway_swrr_t *(*ngx_gateway_swrr_peer_pt)(void *ctx, size_t i);


/* index of the chosen candidate among n, or -1 when none is eligible */
ssize_t ngx_gateway_swrr_select(size_t n, ngx_gateway_swrr_peer_pt peer,
    void *ctx);
void ngx_gateway_swrr_reset(ngx_gateway_swrr_t *p, int weight);


#endif /* _NGX_GATEWAY_SWRR_H_INCLUDED_ */
