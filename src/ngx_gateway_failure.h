
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_FAILURE_H_INCLUDED_
#define _NGX_GATEWAY_FAILURE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * The arithmetic of ejection and retry budgets, independent of nginx:
 * unit-tested alone (t/unit/test_failure.c).
 */

#define NGX_GATEWAY_STATUS_MIN    100
#define NGX_GATEWAY_STATUS_MAX    599
#define NGX_GATEWAY_STATUS_WORDS                                              \
    ((NGX_GATEWAY_STATUS_MAX - NGX_GATEWAY_STATUS_MIN) / 64 + 1)


/* how long the count-th ejection lasts: time x count, at most max_time */
uint64_t ngx_gateway_eject_duration(uint64_t time, uint64_t max_time,
    uint64_t count);

/* how many of n instances may be ejected at once: percent of n, at least 1 */
uint64_t ngx_gateway_eject_cap(uint64_t n, uint64_t percent);

/* 1 when fewer than panic percent of up instances are in rotation */
int ngx_gateway_eject_panic(uint64_t in, uint64_t up, uint64_t panic);

/* how many retries may be in flight: percent of first attempts, or min */
uint64_t ngx_gateway_retry_budget(uint64_t first, uint64_t percent,
    uint64_t min);

/*
 * "502,503,504" into a set of statuses (bits, NGX_GATEWAY_STATUS_WORDS
 * words, not cleared first): 0, or -1 with *bad and *badlen the item that
 * is not a status of three digits in 100..599
 */
int ngx_gateway_status_list(const char *s, size_t len, uint64_t *bits,
    size_t *bad, size_t *badlen);

static inline int
ngx_gateway_status_in(const uint64_t *bits, unsigned status)
{
    unsigned  n;

    if (status < NGX_GATEWAY_STATUS_MIN || status > NGX_GATEWAY_STATUS_MAX) {
        return 0;
    }

    n = status - NGX_GATEWAY_STATUS_MIN;

    return (bits[n / 64] >> (n % 64)) & 1;
}


#endif /* _NGX_GATEWAY_FAILURE_H_INCLUDED_ */
