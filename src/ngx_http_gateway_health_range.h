
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_HEALTH_RANGE_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_HEALTH_RANGE_H_INCLUDED_


#include <stddef.h>


/*
 * What a health probe asks and accepts: its URI and the statuses that
 * pass.  Plain C, independent of nginx, shared by the directive and the
 * registry's record fields.
 */

#define NGX_GATEWAY_HEALTH_URI_MAX     256
#define NGX_GATEWAY_HEALTH_STATUS_MAX  64


/* "/" then printable ASCII without spaces, at most 256 bytes */
int ngx_gateway_health_uri_valid(const char *s, size_t len);

/*
 * A list of statuses and ranges, "200-399" or "200,204,300-302": each of
 * 100..599, a range's low end not above its high end, at most 64 bytes
 */
int ngx_gateway_health_status_valid(const char *s, size_t len);

/* 1 when status is in the list s (which must be valid), else 0 */
int ngx_gateway_health_status_match(const char *s, size_t len,
    unsigned status);


#endif /* _NGX_HTTP_GATEWAY_HEALTH_RANGE_H_INCLUDED_ */
