
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_TRACEPARENT_H_INCLUDED_
#define _NGX_GATEWAY_TRACEPARENT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <string.h>


/*
 * W3C Trace Context: the traceparent and tracestate headers.  Plain C,
 * independent of nginx, so that it can be unit-tested and fuzzed alone.
 */


/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define NGX_GATEWAY_TRACEPARENT_LEN     55

#define NGX_GATEWAY_TRACE_ID_LEN        16
#define NGX_GATEWAY_SPAN_ID_LEN         8

/* where the parent id starts in a traceparent value */
#define NGX_GATEWAY_TRACEPARENT_SPAN    36

#define NGX_GATEWAY_TRACE_SAMPLED       0x01

/* the longest tracestate carried on, and its members */
#define NGX_GATEWAY_TRACESTATE_MAX      512
#define NGX_GATEWAY_TRACESTATE_MEMBERS  32


typedef struct {
    unsigned char   trace_id[NGX_GATEWAY_TRACE_ID_LEN];
    unsigned char   span_id[NGX_GATEWAY_SPAN_ID_LEN];   /* the parent */
    unsigned char   flags;
} ngx_gateway_traceparent_t;


/*
 * Parses a traceparent value strictly: version two lowercase hex digits,
 * not "ff"; version 00 is exactly 55 characters, a later version at least
 * that, and then '-' after them; both ids lowercase hex and not all zero;
 * flags two lowercase hex digits.  Returns 0, or -1 for an invalid value
 * (tp is then undefined).
 */
int ngx_gateway_traceparent_parse(ngx_gateway_traceparent_t *tp,
    const char *s, size_t len);

/* writes the version 00 value, NGX_GATEWAY_TRACEPARENT_LEN bytes, no NUL */
void ngx_gateway_traceparent_format(char *out, const unsigned char *trace_id,
    const unsigned char *span_id, unsigned flags);

/* lowercase hex of in[0..n), 2 * n bytes, no NUL: two digits a byte */

extern const char  ngx_gateway_hex_pairs[];

#define ngx_gateway_hex_byte(out, in, i)                                      \
    memcpy((out) + 2 * (i), ngx_gateway_hex_pairs + 2 * (size_t) (in)[i], 2)

/*
 * An id's eight bytes: ids are formatted on every request.  With SSE2 (all
 * of x86-64) the sixteen digits at once: each byte's two halves side by
 * side, '0' added, and 'a' - '0' - 10 more to those above 9.
 */

#if defined(__SSE2__)

#include <emmintrin.h>

static inline void
ngx_gateway_hex8(char *out, const unsigned char *in)
{
    __m128i  x, low, n;

    low = _mm_set1_epi8(0x0f);
    x = _mm_loadl_epi64((const __m128i *) (const void *) in);
    n = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), low),
                          _mm_and_si128(x, low));
    n = _mm_add_epi8(n, _mm_add_epi8(_mm_set1_epi8('0'),
                          _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)),
                                        _mm_set1_epi8('a' - '0' - 10))));
    _mm_storeu_si128((__m128i *) (void *) out, n);
}

#else

static inline void
ngx_gateway_hex8(char *out, const unsigned char *in)
{
    ngx_gateway_hex_byte(out, in, 0);
    ngx_gateway_hex_byte(out, in, 1);
    ngx_gateway_hex_byte(out, in, 2);
    ngx_gateway_hex_byte(out, in, 3);
    ngx_gateway_hex_byte(out, in, 4);
    ngx_gateway_hex_byte(out, in, 5);
    ngx_gateway_hex_byte(out, in, 6);
    ngx_gateway_hex_byte(out, in, 7);
}

#endif


static inline void
ngx_gateway_hex(char *out, const unsigned char *in, size_t n)
{
    size_t  i;

    for ( /* void */ ; n >= 8; n -= 8, in += 8, out += 16) {
        ngx_gateway_hex8(out, in);
    }

    for (i = 0; i < n; i++) {
        ngx_gateway_hex_byte(out, in, i);
    }
}


/*
 * 1 when s is a tracestate value that may be carried on: at most
 * NGX_GATEWAY_TRACESTATE_MAX bytes and NGX_GATEWAY_TRACESTATE_MEMBERS
 * members, each key=value with the key and value grammar of the W3C
 * recommendation, no key twice; empty members and optional whitespace
 * around commas are allowed.
 */
int ngx_gateway_tracestate_valid(const char *s, size_t len);


#endif /* _NGX_GATEWAY_TRACEPARENT_H_INCLUDED_ */
