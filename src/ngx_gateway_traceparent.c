
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>

#include "ngx_gateway_traceparent.h"


static int ngx_gateway_trace_hex(unsigned char *out, const char *s,
    size_t n);
static int ngx_gateway_trace_zero(const unsigned char *p, size_t n);
static int ngx_gateway_tracestate_key(const char *s, size_t len);
static int ngx_gateway_tracestate_value(const char *s, size_t len);


/* lowercase hex digits only: n bytes out of 2 * n digits; -1 otherwise */

static int
ngx_gateway_trace_hex(unsigned char *out, const char *s, size_t n)
{
    size_t         i;
    unsigned int   hi, lo;
    unsigned char  c;

    hi = 0;

    for (i = 0; i < 2 * n; i++) {
        c = (unsigned char) s[i];

        if (c >= '0' && c <= '9') {
            lo = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            lo = c - 'a' + 10;

        } else {
            return -1;
        }

        if (i & 1) {
            out[i / 2] = (unsigned char) ((hi << 4) | lo);

        } else {
            hi = lo;
        }
    }

    return 0;
}


static int
ngx_gateway_trace_zero(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gateway_traceparent_parse(ngx_gateway_traceparent_t *tp, const char *s,
    size_t len)
{
    unsigned char  version;

    if (len < NGX_GATEWAY_TRACEPARENT_LEN) {
        return -1;
    }

    if (ngx_gateway_trace_hex(&version, s, 1) != 0 || version == 0xff) {
        return -1;
    }

    if (version == 0) {
        if (len != NGX_GATEWAY_TRACEPARENT_LEN) {
            return -1;
        }

    } else if (len > NGX_GATEWAY_TRACEPARENT_LEN
               && s[NGX_GATEWAY_TRACEPARENT_LEN] != '-')
    {
        return -1;
    }

    if (s[2] != '-' || s[35] != '-' || s[52] != '-') {
        return -1;
    }

    if (ngx_gateway_trace_hex(tp->trace_id, s + 3, NGX_GATEWAY_TRACE_ID_LEN)
        != 0
        || ngx_gateway_trace_hex(tp->span_id, s + NGX_GATEWAY_TRACEPARENT_SPAN,
                                 NGX_GATEWAY_SPAN_ID_LEN)
           != 0
        || ngx_gateway_trace_hex(&tp->flags, s + 53, 1) != 0)
    {
        return -1;
    }

    if (ngx_gateway_trace_zero(tp->trace_id, NGX_GATEWAY_TRACE_ID_LEN)
        || ngx_gateway_trace_zero(tp->span_id, NGX_GATEWAY_SPAN_ID_LEN))
    {
        return -1;
    }

    return 0;
}


/* two digits a byte, from one table: ids are formatted on every request */

#define ngx_gateway_hex_row(h)                                                \
    h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7"                           \
    h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"

const char  ngx_gateway_hex_pairs[] =
    ngx_gateway_hex_row("0") ngx_gateway_hex_row("1")
    ngx_gateway_hex_row("2") ngx_gateway_hex_row("3")
    ngx_gateway_hex_row("4") ngx_gateway_hex_row("5")
    ngx_gateway_hex_row("6") ngx_gateway_hex_row("7")
    ngx_gateway_hex_row("8") ngx_gateway_hex_row("9")
    ngx_gateway_hex_row("a") ngx_gateway_hex_row("b")
    ngx_gateway_hex_row("c") ngx_gateway_hex_row("d")
    ngx_gateway_hex_row("e") ngx_gateway_hex_row("f");


void
ngx_gateway_traceparent_format(char *out, const unsigned char *trace_id,
    const unsigned char *span_id, unsigned flags)
{
    unsigned char  f;

    f = (unsigned char) flags;

    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    ngx_gateway_hex8(out + 3, trace_id);
    ngx_gateway_hex8(out + 19, trace_id + 8);
    out[35] = '-';
    ngx_gateway_hex8(out + NGX_GATEWAY_TRACEPARENT_SPAN, span_id);
    out[52] = '-';
    ngx_gateway_hex_byte(out + 53, &f, 0);
}


#define ngx_gateway_ts_lcalpha(c)  ((c) >= 'a' && (c) <= 'z')
#define ngx_gateway_ts_digit(c)    ((c) >= '0' && (c) <= '9')
#define ngx_gateway_ts_keychar(c)                                             \
    (ngx_gateway_ts_lcalpha(c) || ngx_gateway_ts_digit(c) || (c) == '_'       \
     || (c) == '-' || (c) == '*' || (c) == '/')


/*
 * simple-key = lcalpha 0*255(keychar)
 * multi-tenant-key = (lcalpha / DIGIT) 0*240(keychar) "@" lcalpha 0*13(keychar)
 */

static int
ngx_gateway_tracestate_key(const char *s, size_t len)
{
    size_t         i, at;
    unsigned char  c;

    if (len == 0 || len > 256) {
        return 0;
    }

    at = len;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c == '@') {
            if (at != len) {
                return 0;
            }

            at = i;
            continue;
        }

        if (!ngx_gateway_ts_keychar(c)) {
            return 0;
        }
    }

    c = (unsigned char) s[0];

    if (at == len) {
        return ngx_gateway_ts_lcalpha(c);
    }

    if (at == 0 || at > 241 || len - at - 1 == 0 || len - at - 1 > 14) {
        return 0;
    }

    return (ngx_gateway_ts_lcalpha(c) || ngx_gateway_ts_digit(c))
           && ngx_gateway_ts_lcalpha((unsigned char) s[at + 1]);
}


/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; not ',' nor '=' */

static int
ngx_gateway_tracestate_value(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > 256) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c < 0x20 || c > 0x7e || c == ',' || c == '=') {
            return 0;
        }
    }

    return s[len - 1] != ' ';
}


int
ngx_gateway_tracestate_valid(const char *s, size_t len)
{
    size_t       i, start, end, eq, n, k;
    const char  *keys[NGX_GATEWAY_TRACESTATE_MEMBERS];
    size_t       klen[NGX_GATEWAY_TRACESTATE_MEMBERS];

    if (len > NGX_GATEWAY_TRACESTATE_MAX) {
        return 0;
    }

    n = 0;
    start = 0;

    while (start <= len) {
        end = start;

        while (end < len && s[end] != ',') {
            end++;
        }

        /* optional whitespace (space, tab) around the member */

        i = start;

        while (i < end && (s[i] == ' ' || s[i] == '\t')) {
            i++;
        }

        k = end;

        while (k > i && (s[k - 1] == ' ' || s[k - 1] == '\t')) {
            k--;
        }

        if (k > i) {
            eq = i;

            while (eq < k && s[eq] != '=') {
                eq++;
            }

            if (eq == k
                || !ngx_gateway_tracestate_key(s + i, eq - i)
                || !ngx_gateway_tracestate_value(s + eq + 1, k - eq - 1))
            {
                return 0;
            }

            if (n == NGX_GATEWAY_TRACESTATE_MEMBERS) {
                return 0;
            }

            for (k = 0; k < n; k++) {
                if (klen[k] == eq - i && memcmp(keys[k], s + i, eq - i) == 0) {
                    return 0;
                }
            }

            keys[n] = s + i;
            klen[n] = eq - i;
            n++;
        }

        start = end + 1;
    }

    return 1;
}
