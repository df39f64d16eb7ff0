
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_otlp.h"
#include "otlp_check.h"


#define S(s)  s, (sizeof(s) - 1)


static unsigned char  trace_id[16], span_id[8], parent_id[8];


static void
span_min(ngx_gateway_otlp_span_t *sp)
{
    int  i;

    memset(sp, 0, sizeof(*sp));

    for (i = 0; i < 16; i++) {
        trace_id[i] = (unsigned char) (i + 1);
    }

    for (i = 0; i < 8; i++) {
        span_id[i] = (unsigned char) (0x21 + i);
        parent_id[i] = (unsigned char) (0x31 + i);
    }

    sp->trace_id = trace_id;
    sp->span_id = span_id;
    sp->name = "GET";
    sp->name_len = 3;
    sp->kind = NGX_GATEWAY_OTLP_KIND_SERVER;
    sp->start = 1;
    sp->end = 2;
}


static void
span_full(ngx_gateway_otlp_span_t *sp)
{
    span_min(sp);

    sp->parent_id = parent_id;
    sp->trace_state = "congo=t61rcWkgMzE";
    sp->trace_state_len = strlen(sp->trace_state);
    sp->kind = NGX_GATEWAY_OTLP_KIND_CLIENT;
    sp->start = 1796124745825000000ULL;
    sp->end = 1796124745826000000ULL;
    sp->flags = 0x301;
}


static ngx_gateway_otlp_key_t  keys[5];

static int json_get(const ngx_gateway_json_tok_t *toks, int obj,
    const char *key, char *out, size_t size);


static void
keys_init(void)
{
    assert_int_equal(ngx_gateway_otlp_key(&keys[0], S("http.request.method")),
                     0);
    assert_int_equal(ngx_gateway_otlp_key(&keys[1],
                                          S("http.response.status_code")),
                     0);
    assert_int_equal(ngx_gateway_otlp_key(&keys[2],
                                          S("gateway.connection.reused")),
                     0);
    assert_int_equal(ngx_gateway_otlp_key(&keys[3], S("negative")), 0);
    assert_int_equal(ngx_gateway_otlp_key(&keys[4], S("quote")), 0);
}


/* the resource of a request: its attributes, the scope ngx_gateway 0.1.0 */

static void
res_init(ngx_gateway_otlp_resource_t *res, const unsigned char *attrs,
    size_t len)
{
    res->attrs = attrs;
    res->attrs_len = len;
    res->scope = "ngx_gateway";
    res->scope_len = sizeof("ngx_gateway") - 1;
    res->version = "0.1.0";
    res->version_len = sizeof("0.1.0") - 1;
}


/* the five attributes of a full span, in a writer that was begun */

static void
attrs_full(ngx_gateway_otlp_writer_t *w)
{
    ngx_gateway_otlp_str(w, &keys[0], S("GET"));
    ngx_gateway_otlp_int(w, &keys[1], 503);
    ngx_gateway_otlp_bool(w, &keys[2], 1);
    ngx_gateway_otlp_int(w, &keys[3], -5);
    ngx_gateway_otlp_str(w, &keys[4], S("a\"b\\c"));
}


static size_t
encode_full(unsigned char *out, size_t size, int json)
{
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    span_full(&sp);
    ngx_gateway_otlp_span_begin(&w, out, size, json, &sp);
    attrs_full(&w);

    return ngx_gateway_otlp_span_end(&w, NGX_GATEWAY_OTLP_STATUS_ERROR);
}


static void
test_key(void **state)
{
    char                    long_key[NGX_GATEWAY_OTLP_KEY_MAX + 1];
    ngx_gateway_otlp_key_t  k;

    (void) state;

    assert_int_equal(ngx_gateway_otlp_key(&k, S("code")), 0);
    assert_int_equal(k.pb_len, 6);
    assert_memory_equal(k.pb, "\x0a\x04" "code", 6);
    assert_int_equal(k.json_len, sizeof("{\"key\":\"code\",\"value\":{\"") - 1);
    assert_memory_equal(k.json, "{\"key\":\"code\",\"value\":{\"", k.json_len);

    assert_int_equal(ngx_gateway_otlp_key(&k, S("a\"b")), 0);
    assert_memory_equal(k.json, "{\"key\":\"a\\\"b\"", 13);

    memset(long_key, 'k', sizeof(long_key));
    assert_int_equal(ngx_gateway_otlp_key(&k, long_key,
                                          NGX_GATEWAY_OTLP_KEY_MAX), 0);
    assert_int_equal(ngx_gateway_otlp_key(&k, long_key, sizeof(long_key)),
                     -1);
    assert_int_equal(ngx_gateway_otlp_key(&k, long_key, 0), -1);
}


static void
test_pb_span_bytes(void **state)
{
    /* the span's length: a varint of two bytes, 0xb5 0x00 = 53 */

    static const unsigned char  want[] = {
        0x12, 0xb5, 0x00,                       /* ScopeSpans.spans, 53 */
        0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8,     /* trace_id */
              9, 10, 11, 12, 13, 14, 15, 16,
        0x12, 0x08, 0x21, 0x22, 0x23, 0x24,     /* span_id */
              0x25, 0x26, 0x27, 0x28,
        0x2a, 0x03, 'G', 'E', 'T',              /* name */
        0x30, 0x02,                             /* kind SERVER */
        0x39, 1, 0, 0, 0, 0, 0, 0, 0,           /* start, fixed64 */
        0x41, 2, 0, 0, 0, 0, 0, 0, 0,           /* end */
    };

    unsigned char              out[256];
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    span_min(&sp);

    ngx_gateway_otlp_span_begin(&w, out, sizeof(out), 0, &sp);
    assert_int_equal(ngx_gateway_otlp_span_end(&w, 0), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
}


/* with a tracestate and a parent: every fixed field */

static void
test_pb_span_full_bytes(void **state)
{
    static const unsigned char  want[] = {
        0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8,     /* trace_id */
              9, 10, 11, 12, 13, 14, 15, 16,
        0x12, 0x08, 0x21, 0x22, 0x23, 0x24,     /* span_id */
              0x25, 0x26, 0x27, 0x28,
        0x1a, 0x11, 'c', 'o', 'n', 'g', 'o',    /* trace_state */
              '=', 't', '6', '1', 'r', 'c', 'W', 'k', 'g', 'M', 'z', 'E',
        0x22, 0x08, 0x31, 0x32, 0x33, 0x34,     /* parent_span_id */
              0x35, 0x36, 0x37, 0x38,
        0x2a, 0x03, 'G', 'E', 'T',              /* name */
        0x30, 0x03,                             /* kind CLIENT */
        0x39, 0x40, 0x1a, 0x30, 0xa7,           /* start, fixed64 */
              0xf0, 0x1d, 0xed, 0x18,
        0x41, 0x80, 0x5c, 0x3f, 0xa7,           /* end */
              0xf0, 0x1d, 0xed, 0x18,
        0x85, 0x01, 0x01, 0x03, 0, 0,           /* flags, fixed32 */
    };

    size_t                     n, i;
    unsigned char              out[256];
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    span_full(&sp);

    /* the room it needs exactly (and a status's), and more */

    for (i = 0; i < 2; i++) {
        n = i ? sizeof(out) : 3 + sizeof(want) + 4;
        memset(out, 0, sizeof(out));
        ngx_gateway_otlp_span_begin(&w, out, n, 0, &sp);
        assert_int_equal(ngx_gateway_otlp_span_end(&w, 0), 3 + sizeof(want));
        assert_int_equal(out[0], 0x12);
        assert_int_equal(out[1], (sizeof(want) & 0x7f) | 0x80);
        assert_int_equal(out[2], sizeof(want) >> 7);
        assert_memory_equal(out + 3, want, sizeof(want));
    }
}


/* attributes encoded after others, copied with them as one list */

static void
test_attrs_after(void **state)
{
    int                        n, a;
    char                       val[64];
    size_t                     len, more, k;
    unsigned char              attrs[256], out[1024];
    ngx_gateway_json_tok_t     toks[128];
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    keys_init();

    for (k = 0; k < 2; k++) {
        ngx_gateway_otlp_span_attrs_begin(&w, attrs, sizeof(attrs), (int) k);
        ngx_gateway_otlp_str(&w, &keys[0], S("GET"));
        len = ngx_gateway_otlp_attrs_end(&w);
        assert_true(len > 0);

        ngx_gateway_otlp_span_attrs_after(&w, attrs, len, sizeof(attrs),
                                          (int) k);
        ngx_gateway_otlp_int(&w, &keys[1], 503);
        ngx_gateway_otlp_bool(&w, &keys[2], 1);
        more = ngx_gateway_otlp_attrs_end(&w);
        assert_true(more > 0);

        /* no room: nothing */
        ngx_gateway_otlp_span_attrs_after(&w, attrs, len, len + 4, (int) k);
        ngx_gateway_otlp_int(&w, &keys[1], 503);
        assert_int_equal(ngx_gateway_otlp_attrs_end(&w), 0);

        span_min(&sp);
        ngx_gateway_otlp_span_begin(&w, out, sizeof(out), (int) k, &sp);
        ngx_gateway_otlp_attrs(&w, attrs, len + more);
        n = (int) ngx_gateway_otlp_span_end(&w, 0);
        assert_true(n > 0);

        if (k == 0) {
            uint32_t  path[8];

            /* the span's 6 fields and 3 attributes */
            assert_int_equal(otlp_check_message(out + 3, out + n, 1, path,
                                                otlp_check_span_nested),
                             6 + 3);
            continue;
        }

        n = ngx_gateway_json_parse((char *) out, n, toks, 128, 8);
        assert_true(n > 0);
        a = ngx_gateway_json_object_get(toks, 0, S("attributes"));
        assert_int_equal(toks[a].size, 3);
        json_get(toks, toks[toks[a + 1].next].next, "key", val, sizeof(val));
        assert_string_equal(val, "gateway.connection.reused");
    }
}


static void
test_pb_attr_bytes(void **state)
{
    static const unsigned char  tail[] = {
        0x4a, 0x0b,                             /* attributes, 11 */
        0x0a, 0x04, 'c', 'o', 'd', 'e',         /* key */
        0x12, 0x03, 0x18, 0xf7, 0x03,           /* int_value 503 */
        0x4a, 0x0b,                             /* attributes, 11 */
        0x0a, 0x04, 'c', 'o', 'd', 'e',         /* key */
        0x12, 0x03, 0x0a, 0x01, 'x',            /* string_value "x" */
        0x4a, 0x0a,                             /* attributes, 10 */
        0x0a, 0x04, 'c', 'o', 'd', 'e',         /* key */
        0x12, 0x02, 0x10, 0x01,                 /* bool_value true */
        0x7a, 0x02, 0x18, 0x02,                 /* status: code ERROR */
        0x85, 0x01, 0x01, 0x03, 0, 0,           /* flags, fixed32 */
    };

    size_t                     n;
    unsigned char              out[256];
    ngx_gateway_otlp_key_t     k;
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    assert_int_equal(ngx_gateway_otlp_key(&k, S("code")), 0);

    span_min(&sp);
    sp.flags = 0x301;

    ngx_gateway_otlp_span_begin(&w, out, sizeof(out), 0, &sp);
    ngx_gateway_otlp_int(&w, &k, 503);
    ngx_gateway_otlp_str(&w, &k, S("x"));
    ngx_gateway_otlp_bool(&w, &k, 1);
    n = ngx_gateway_otlp_span_end(&w, NGX_GATEWAY_OTLP_STATUS_ERROR);

    assert_int_equal(n, 3 + 53 + sizeof(tail));
    assert_memory_equal(out + n - sizeof(tail), tail, sizeof(tail));

    /* the length was patched: 53 + the tail */
    assert_int_equal(out[1], ((53 + sizeof(tail)) & 0x7f) | 0x80);
    assert_int_equal(out[2], (53 + sizeof(tail)) >> 7);
}


/* string values of every short length: the inline copy's cases */

static void
test_pb_str_lengths(void **state)
{
    char                       v[40];
    size_t                     i, len, n;
    uint32_t                   path[8];
    unsigned char              out[256];
    ngx_gateway_otlp_key_t     k;
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    assert_int_equal(ngx_gateway_otlp_key(&k, S("code")), 0);

    for (i = 0; i < sizeof(v); i++) {
        v[i] = (char) ('A' + i);
    }

    for (len = 0; len <= sizeof(v); len++) {
        span_min(&sp);

        ngx_gateway_otlp_span_begin(&w, out, sizeof(out), 0, &sp);
        ngx_gateway_otlp_str(&w, &k, v, len);
        n = ngx_gateway_otlp_span_end(&w, 0);

        /* tag, kvlen, key (6), 0x12, vlen, 0x0a, len, value */

        assert_int_equal(n, 3 + 53 + 12 + len);
        assert_int_equal(out[3 + 53 + 1], 10 + len);
        assert_int_equal(out[3 + 53 + 11], len);
        assert_memory_equal(out + 3 + 53 + 12, v, len);
        assert_int_equal(otlp_check_message(out, out + n, 0, path,
                                            otlp_check_span_nested), 1);
    }
}


static void
test_pb_attr_long(void **state)
{
    static const unsigned char  head[] = {
        0x4a, 0xd4, 0x01,                       /* attributes, 212 */
        0x0a, 0x04, 'c', 'o', 'd', 'e',         /* key */
        0x12, 0xcb, 0x01,                       /* value, 203 */
        0x0a, 0xc8, 0x01,                       /* string_value, 200 */
    };

    char                       v[200];
    size_t                     n;
    uint32_t                   path[8];
    unsigned char              out[512];
    ngx_gateway_otlp_key_t     k;
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;

    (void) state;

    assert_int_equal(ngx_gateway_otlp_key(&k, S("code")), 0);
    memset(v, 'v', sizeof(v));

    span_min(&sp);

    ngx_gateway_otlp_span_begin(&w, out, sizeof(out), 0, &sp);
    ngx_gateway_otlp_str(&w, &k, v, sizeof(v));
    n = ngx_gateway_otlp_span_end(&w, 0);

    assert_int_equal(n, 3 + 53 + sizeof(head) + sizeof(v));
    assert_memory_equal(out + 3 + 53, head, sizeof(head));
    assert_memory_equal(out + 3 + 53 + sizeof(head), v, sizeof(v));
    assert_int_equal(otlp_check_message(out, out + n, 0, path,
                                        otlp_check_span_nested), 1);
}


static void
test_pb_walk(void **state)
{
    int                          fields;
    size_t                       n, head, k, rlen;
    uint64_t                     len;
    uint32_t                     path[8];
    unsigned char                out[4096], rattrs[512], *p;
    ngx_gateway_otlp_writer_t    w;
    ngx_gateway_otlp_resource_t  res;

    (void) state;

    keys_init();

    n = encode_full(out, sizeof(out), 0);
    assert_true(n > 0);

    /* one field (the span); in it 10 fields and the 5 attributes */

    assert_int_equal(otlp_check_message(out, out + n, 0, path,
                                        otlp_check_span_nested), 1);
    p = out + 1;
    assert_int_equal(otlp_check_varint((const unsigned char **) &p, out + n,
                                       &len), 0);
    assert_int_equal(p, out + 3);
    assert_int_equal(len, out + n - p);
    fields = otlp_check_message(p, out + n, 1, path, otlp_check_span_nested);
    assert_int_equal(fields, 11 + 5 - 1);

    /* every size short of it is refused, and nothing is written past it */

    for (k = 0; k < n; k++) {
        p = malloc(k ? k : 1);
        assert_non_null(p);
        assert_int_equal(encode_full(p, k, 0), 0);
        free(p);
    }

    /* a whole request: head, then two spans */

    ngx_gateway_otlp_attrs_begin(&w, rattrs, sizeof(rattrs), 0);
    ngx_gateway_otlp_str(&w, &keys[0], S("GET"));
    ngx_gateway_otlp_int(&w, &keys[1], 503);
    rlen = ngx_gateway_otlp_attrs_end(&w);
    assert_true(rlen > 0);

    res_init(&res, rattrs, rlen);

    head = ngx_gateway_otlp_pb_head(out, sizeof(out), &res, 2 * n);
    assert_true(head > 0);

    assert_int_equal(encode_full(out + head, sizeof(out) - head, 0), n);
    assert_int_equal(encode_full(out + head + n, sizeof(out) - head - n, 0),
                     n);

    assert_int_equal(otlp_check_message(out, out + head + 2 * n, 0, path,
                                        otlp_check_nested), 1);

    /* a request one byte short does not parse */

    assert_int_equal(otlp_check_message(out, out + head + 2 * n - 1, 0, path,
                                        otlp_check_nested), -1);

    for (k = 0; k < head; k++) {
        assert_int_equal(ngx_gateway_otlp_pb_head(out, k, &res, 2 * n), 0);
    }

    /* a resource's attributes that do not fit */

    for (k = 0; k < rlen; k++) {
        ngx_gateway_otlp_attrs_begin(&w, rattrs, k, 0);
        ngx_gateway_otlp_str(&w, &keys[0], S("GET"));
        ngx_gateway_otlp_int(&w, &keys[1], 503);
        assert_int_equal(ngx_gateway_otlp_attrs_end(&w), 0);
    }
}


static void
test_pb_span_max(void **state)
{
    size_t                     n;
    unsigned char             *out;
    ngx_gateway_otlp_span_t    sp;
    ngx_gateway_otlp_writer_t  w;
    static char                name[NGX_GATEWAY_OTLP_SPAN_MAX];

    (void) state;

    out = malloc(2 * NGX_GATEWAY_OTLP_SPAN_MAX);
    assert_non_null(out);
    memset(name, 'n', sizeof(name));

    /* a span of exactly the most the two bytes of length hold */

    span_min(&sp);
    sp.name = name;
    sp.name_len = NGX_GATEWAY_OTLP_SPAN_MAX - (53 - 3) - 1;

    ngx_gateway_otlp_span_begin(&w, out, 2 * NGX_GATEWAY_OTLP_SPAN_MAX, 0,
                                &sp);
    n = ngx_gateway_otlp_span_end(&w, 0);
    assert_int_equal(n, 3 + NGX_GATEWAY_OTLP_SPAN_MAX);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(out[2], 0x7f);

    /* one byte more is refused */

    sp.name_len++;
    ngx_gateway_otlp_span_begin(&w, out, 2 * NGX_GATEWAY_OTLP_SPAN_MAX, 0,
                                &sp);
    assert_int_equal(ngx_gateway_otlp_span_end(&w, 0), 0);

    free(out);
}


static int
json_get(const ngx_gateway_json_tok_t *toks, int obj, const char *key,
    char *out, size_t size)
{
    int  i, n;

    i = ngx_gateway_json_object_get(toks, obj, key, strlen(key));
    if (i < 0) {
        return -1;
    }

    if (toks[i].type == NGX_GATEWAY_JSON_STRING) {
        n = ngx_gateway_json_string(&toks[i], out, size - 1);

    } else {
        n = (int) toks[i].len;
        memcpy(out, toks[i].start, n);
    }

    out[n] = '\0';

    return i;
}


static void
test_json_span(void **state)
{
    int                      n, a, v;
    char                     val[128];
    size_t                   len, k;
    unsigned char            out[4096], *p;
    ngx_gateway_json_tok_t   toks[256];

    (void) state;

    keys_init();

    len = encode_full(out, sizeof(out), 1);
    assert_true(len > 0);

    n = ngx_gateway_json_parse((char *) out, len, toks, 256, 8);
    assert_true(n > 0);
    assert_int_equal(toks[0].type, NGX_GATEWAY_JSON_OBJECT);

    json_get(toks, 0, "traceId", val, sizeof(val));
    assert_string_equal(val, "0102030405060708090a0b0c0d0e0f10");
    json_get(toks, 0, "spanId", val, sizeof(val));
    assert_string_equal(val, "2122232425262728");
    json_get(toks, 0, "parentSpanId", val, sizeof(val));
    assert_string_equal(val, "3132333435363738");
    json_get(toks, 0, "traceState", val, sizeof(val));
    assert_string_equal(val, "congo=t61rcWkgMzE");
    json_get(toks, 0, "kind", val, sizeof(val));
    assert_string_equal(val, "3");
    json_get(toks, 0, "flags", val, sizeof(val));
    assert_string_equal(val, "769");

    /* 64-bit integers are strings */
    v = json_get(toks, 0, "startTimeUnixNano", val, sizeof(val));
    assert_int_equal(toks[v].type, NGX_GATEWAY_JSON_STRING);
    assert_string_equal(val, "1796124745825000000");

    a = ngx_gateway_json_object_get(toks, 0, S("attributes"));
    assert_true(a > 0);
    assert_int_equal(toks[a].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(toks[a].size, 5);

    /* the second: {"key":..., "value":{"intValue":"503"}} */
    v = toks[a + 1].next;
    json_get(toks, v, "key", val, sizeof(val));
    assert_string_equal(val, "http.response.status_code");
    v = ngx_gateway_json_object_get(toks, v, S("value"));
    json_get(toks, v, "intValue", val, sizeof(val));
    assert_string_equal(val, "503");

    v = toks[toks[a + 1].next].next;
    v = ngx_gateway_json_object_get(toks, v, S("value"));
    json_get(toks, v, "boolValue", val, sizeof(val));
    assert_string_equal(val, "true");

    v = toks[toks[toks[a + 1].next].next].next;
    v = ngx_gateway_json_object_get(toks, v, S("value"));
    json_get(toks, v, "intValue", val, sizeof(val));
    assert_string_equal(val, "-5");

    /* escaped, and back */
    v = toks[toks[toks[toks[a + 1].next].next].next].next;
    v = ngx_gateway_json_object_get(toks, v, S("value"));
    json_get(toks, v, "stringValue", val, sizeof(val));
    assert_string_equal(val, "a\"b\\c");

    v = ngx_gateway_json_object_get(toks, 0, S("status"));
    json_get(toks, v, "code", val, sizeof(val));
    assert_string_equal(val, "2");

    for (k = 0; k < len; k++) {
        p = malloc(k ? k : 1);
        assert_non_null(p);
        assert_int_equal(encode_full(p, k, 1), 0);
        free(p);
    }
}


static void
test_json_request(void **state)
{
    int                          n, i;
    char                         val[64];
    size_t                       len, rlen;
    unsigned char                out[8192], rattrs[512], *p;
    ngx_gateway_json_tok_t       toks[512];
    ngx_gateway_otlp_span_t      sp;
    ngx_gateway_otlp_writer_t    w;
    ngx_gateway_otlp_resource_t  res;

    (void) state;

    keys_init();

    ngx_gateway_otlp_attrs_begin(&w, rattrs, sizeof(rattrs), 1);
    ngx_gateway_otlp_str(&w, &keys[0], S("GET"));
    ngx_gateway_otlp_str(&w, &keys[4], S("a\"b"));
    rlen = ngx_gateway_otlp_attrs_end(&w);
    assert_true(rlen > 0);

    res_init(&res, rattrs, rlen);

    p = out;
    p += ngx_gateway_otlp_json_head(p, sizeof(out), &res);
    p += encode_full(p, out + sizeof(out) - p, 1);
    *p++ = ',';
    span_min(&sp);
    ngx_gateway_otlp_span_begin(&w, p, out + sizeof(out) - p, 1, &sp);
    p += ngx_gateway_otlp_span_end(&w, 0);
    memcpy(p, S(NGX_GATEWAY_OTLP_JSON_TAIL));
    p += sizeof(NGX_GATEWAY_OTLP_JSON_TAIL) - 1;
    len = p - out;

    n = ngx_gateway_json_parse((char *) out, len, toks, 512, 10);
    assert_true(n > 0);

    i = ngx_gateway_json_object_get(toks, 0, S("resourceSpans"));
    assert_int_equal(toks[i].size, 1);
    n = ngx_gateway_json_object_get(toks, i + 1, S("resource"));
    n = ngx_gateway_json_object_get(toks, n, S("attributes"));
    assert_int_equal(toks[n].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(toks[n].size, 2);
    json_get(toks, toks[n + 1].next, "key", val, sizeof(val));
    assert_string_equal(val, "quote");
    i = ngx_gateway_json_object_get(toks, i + 1, S("scopeSpans"));
    assert_int_equal(toks[i].size, 1);
    i = i + 1;
    n = ngx_gateway_json_object_get(toks, i, S("scope"));
    json_get(toks, n, "name", val, sizeof(val));
    assert_string_equal(val, "ngx_gateway");
    i = ngx_gateway_json_object_get(toks, i, S("spans"));
    assert_int_equal(toks[i].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(toks[i].size, 2);

    /* the second span has no attributes, and no status */
    n = ngx_gateway_json_object_get(toks, toks[i + 1].next, S("attributes"));
    assert_int_equal(toks[n].size, 0);
    assert_true(ngx_gateway_json_object_get(toks, toks[i + 1].next,
                                            S("status")) < 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_pb_span_bytes),
        cmocka_unit_test(test_pb_span_full_bytes),
        cmocka_unit_test(test_attrs_after),
        cmocka_unit_test(test_pb_attr_bytes),
        cmocka_unit_test(test_pb_str_lengths),
        cmocka_unit_test(test_pb_attr_long),
        cmocka_unit_test(test_pb_walk),
        cmocka_unit_test(test_pb_span_max),
        cmocka_unit_test(test_json_span),
        cmocka_unit_test(test_json_request),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("otlp", tests, NULL, NULL);
}
