
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_gateway_failure.h"


uint64_t
ngx_gateway_eject_duration(uint64_t time, uint64_t max_time, uint64_t count)
{
    if (time == 0 || count > max_time / time) {
        return max_time;
    }

    return time * count;
}


/* percent of n, rounded down, without n * percent overflowing */

static uint64_t
ngx_gateway_percent_of(uint64_t n, uint64_t percent)
{
    return n / 100 * percent + n % 100 * percent / 100;
}


uint64_t
ngx_gateway_eject_cap(uint64_t n, uint64_t percent)
{
    uint64_t  cap;

    cap = ngx_gateway_percent_of(n, percent);

    return cap ? cap : 1;
}


int
ngx_gateway_eject_panic(uint64_t in, uint64_t up, uint64_t panic)
{
    return in * 100 < panic * up;
}


uint64_t
ngx_gateway_retry_budget(uint64_t first, uint64_t percent, uint64_t min)
{
    uint64_t  budget;

    budget = ngx_gateway_percent_of(first, percent);

    return budget > min ? budget : min;
}


int
ngx_gateway_status_list(const char *s, size_t len, uint64_t *bits,
    size_t *bad, size_t *badlen)
{
    size_t    i, start;
    unsigned  n;

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != ',') {
            continue;
        }

        if (i - start != 3
            || s[start] < '0' || s[start] > '9'
            || s[start + 1] < '0' || s[start + 1] > '9'
            || s[start + 2] < '0' || s[start + 2] > '9')
        {
            goto invalid;
        }

        n = (s[start] - '0') * 100 + (s[start + 1] - '0') * 10
            + (s[start + 2] - '0');

        if (n < NGX_GATEWAY_STATUS_MIN || n > NGX_GATEWAY_STATUS_MAX) {
            goto invalid;
        }

        n -= NGX_GATEWAY_STATUS_MIN;
        bits[n / 64] |= (uint64_t) 1 << (n % 64);

        start = i + 1;
    }

    return 0;

invalid:

    *bad = start;
    *badlen = i - start;

    return -1;
}
