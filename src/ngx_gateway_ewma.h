
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_EWMA_H_INCLUDED_
#define _NGX_GATEWAY_EWMA_H_INCLUDED_


#include <math.h>
#include <stdint.h>
#include <string.h>


/*
 * A peak-sensitive EWMA of response time in one 64-bit word, for
 * peak_ewma: the time of the last sample in milliseconds (high 32 bits,
 * the low bits of ngx_current_msec) and the estimate in microseconds as
 * a float (low 32 bits: a float and not an integer, because a sample
 * moves the estimate by a part in 10,000 when samples come every
 * millisecond, which rounding to whole microseconds would stop short).
 * 0 is "no estimate yet"; a sample never gives 0.  Plain C, inline: every
 * choice reads two estimates.
 */

#define NGX_GATEWAY_EWMA_RTT_MAX    3600e6     /* us: an hour */
#define NGX_GATEWAY_EWMA_SKEW       1000       /* ms */


static inline uint64_t
ngx_gateway_ewma_pack(double rtt, uint64_t ms)
{
    float     f;
    uint32_t  bits;

    if (rtt > NGX_GATEWAY_EWMA_RTT_MAX) {
        rtt = NGX_GATEWAY_EWMA_RTT_MAX;
    }

    if (rtt < 0) {
        rtt = 0;
    }

    f = (float) rtt;
    memcpy(&bits, &f, sizeof(uint32_t));

    return ((ms & 0xffffffff) << 32) | bits;
}


static inline double
ngx_gateway_ewma_rtt(uint64_t word)
{
    float     f;
    uint32_t  bits;

    bits = (uint32_t) (word & 0xffffffff);
    memcpy(&f, &bits, sizeof(float));

    return (double) f;
}


static inline uint64_t
ngx_gateway_ewma_stamp(uint64_t word)
{
    return word >> 32;
}


/*
 * exp(-x): samples and choices come every few milliseconds against a
 * decay of seconds, where three terms are within 1e-6 and cost a tenth
 * of exp()
 */

static inline double
ngx_gateway_ewma_weight(double x)
{
    if (x < 1.0 / 64) {
        return 1 - x + x * x / 2;
    }

    return exp(-x);
}


/*
 * The weight of the past at "now" (ms): exp(-elapsed / decay).  A stamp
 * up to a second ahead of "now" (written by a worker whose clock was
 * updated a little later) counts as now.
 */

static inline double
ngx_gateway_ewma_past(uint64_t word, uint64_t now, double decay)
{
    uint32_t  elapsed;

    elapsed = (uint32_t) now - (uint32_t) ngx_gateway_ewma_stamp(word);

    if (elapsed > UINT32_MAX - NGX_GATEWAY_EWMA_SKEW) {
        elapsed = 0;
    }

    return ngx_gateway_ewma_weight((double) elapsed / decay);
}


/* the estimate at "now" without a new sample: it decays towards 0 */

static inline double
ngx_gateway_ewma_at(uint64_t word, uint64_t now, double decay)
{
    return ngx_gateway_ewma_rtt(word) * ngx_gateway_ewma_past(word, now, decay);
}


/*
 * The word after a sample "rtt" (us) at "now": a sample above the
 * estimate replaces it, one below is blended in with weight 1 - w.
 */

static inline uint64_t
ngx_gateway_ewma_sample(uint64_t word, uint64_t now, double rtt, double decay)
{
    double    v, w;
    uint64_t  next;

    if (word == 0) {
        v = rtt;

    } else {
        w = ngx_gateway_ewma_past(word, now, decay);
        v = ngx_gateway_ewma_rtt(word) * w;

        if (rtt > v) {
            v = rtt;

        } else {
            v += rtt * (1 - w);
        }
    }

    next = ngx_gateway_ewma_pack(v, now);

    return next ? next : 1;
}


#endif /* _NGX_GATEWAY_EWMA_H_INCLUDED_ */
