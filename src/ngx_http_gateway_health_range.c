
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_health_range.h"


static int ngx_gateway_health_status_walk(const char *s, size_t len,
    unsigned status);


int
ngx_gateway_health_uri_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_GATEWAY_HEALTH_URI_MAX || s[0] != '/') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gateway_health_status_valid(const char *s, size_t len)
{
    if (len == 0 || len > NGX_GATEWAY_HEALTH_STATUS_MAX) {
        return 0;
    }

    return ngx_gateway_health_status_walk(s, len, 0) >= 0;
}


int
ngx_gateway_health_status_match(const char *s, size_t len, unsigned status)
{
    return ngx_gateway_health_status_walk(s, len, status) == 1;
}


/* -1: not a valid list; 1: status is in it; 0: it is not */

static int
ngx_gateway_health_status_walk(const char *s, size_t len, unsigned status)
{
    int          found;
    size_t       i, digits;
    unsigned     n, low;
    const char  *end;

    found = 0;
    end = s + len;

    for ( ;; ) {
        low = 0;

        for (i = 0; i < 2; i++) {
            n = 0;
            digits = 0;

            while (s < end && *s >= '0' && *s <= '9' && digits < 3) {
                n = n * 10 + (*s++ - '0');
                digits++;
            }

            if (digits != 3 || n < 100 || n > 599) {
                return -1;
            }

            if (i == 0) {
                low = n;

                if (s < end && *s == '-') {
                    s++;
                    continue;
                }
            }

            if (n < low) {
                return -1;
            }

            break;
        }

        if (status >= low && status <= n) {
            found = 1;
        }

        if (s == end) {
            return found;
        }

        if (*s++ != ',') {
            return -1;
        }
    }
}
