
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_otlp.h"


/* protobuf wire types */
#define NGX_GATEWAY_PB_VARINT   0
#define NGX_GATEWAY_PB_FIXED64  1
#define NGX_GATEWAY_PB_LEN      2
#define NGX_GATEWAY_PB_FIXED32  5

#define ngx_gateway_pb_tag(field, type)  (((field) << 3) | (type))

#define ngx_gateway_json_lit(o, s)  ngx_gateway_json_raw(o, s, sizeof(s) - 1)


typedef struct {
    unsigned char  *p;
    unsigned char  *end;
    int             full;
} ngx_gateway_otlp_out_t;


static size_t ngx_gateway_pb_varint_len(uint64_t v);
static unsigned char *ngx_gateway_pb_varint(unsigned char *p, uint64_t v);
static size_t ngx_gateway_pb_field_len(uint32_t field, size_t len);
static unsigned char *ngx_gateway_pb_bytes(unsigned char *p, uint32_t field,
    const void *data, size_t len);
static unsigned char *ngx_gateway_pb_fixed(unsigned char *p, uint64_t v,
    size_t n);
static size_t ngx_gateway_pb_value_len(const ngx_gateway_otlp_attr_t *a);
static size_t ngx_gateway_pb_kv_len(const ngx_gateway_otlp_attr_t *a);
static unsigned char *ngx_gateway_pb_kv(unsigned char *p, uint32_t field,
    const ngx_gateway_otlp_attr_t *a);
static size_t ngx_gateway_pb_attrs_len(uint32_t field,
    const ngx_gateway_otlp_attr_t *attrs, size_t n);
static size_t ngx_gateway_pb_span_len(const ngx_gateway_otlp_span_t *span);

static void ngx_gateway_json_raw(ngx_gateway_otlp_out_t *o, const char *s,
    size_t len);
static void ngx_gateway_json_str(ngx_gateway_otlp_out_t *o, const char *s,
    size_t len);
static void ngx_gateway_json_hex(ngx_gateway_otlp_out_t *o,
    const unsigned char *id, size_t n);
static void ngx_gateway_json_uint(ngx_gateway_otlp_out_t *o, uint64_t v,
    int quoted);
static void ngx_gateway_json_attrs(ngx_gateway_otlp_out_t *o,
    const ngx_gateway_otlp_attr_t *attrs, size_t n);


static inline size_t
ngx_gateway_pb_varint_len(uint64_t v)
{
    size_t  n;

    if (v < 0x80) {
        return 1;
    }

    for (n = 2; v >= 0x4000; n++) {
        v >>= 7;
    }

    return n;
}


static inline unsigned char *
ngx_gateway_pb_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char) (v | 0x80);
        v >>= 7;
    }

    *p++ = (unsigned char) v;

    return p;
}


/* a length-delimited field: tag, length, len bytes */

static inline size_t
ngx_gateway_pb_field_len(uint32_t field, size_t len)
{
    return ngx_gateway_pb_varint_len(ngx_gateway_pb_tag(field,
                                                       NGX_GATEWAY_PB_LEN))
           + ngx_gateway_pb_varint_len(len) + len;
}


static inline unsigned char *
ngx_gateway_pb_bytes(unsigned char *p, uint32_t field, const void *data,
    size_t len)
{
    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(field, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, len);

    if (len) {
        memcpy(p, data, len);
    }

    return p + len;
}


/* little-endian fixed32 / fixed64 */

static inline unsigned char *
ngx_gateway_pb_fixed(unsigned char *p, uint64_t v, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        *p++ = (unsigned char) (v >> (8 * i));
    }

    return p;
}


/* AnyValue: string_value = 1, bool_value = 2, int_value = 3 */

static inline size_t
ngx_gateway_pb_value_len(const ngx_gateway_otlp_attr_t *a)
{
    switch (a->type) {

    case NGX_GATEWAY_OTLP_INT:
        return 1 + ngx_gateway_pb_varint_len((uint64_t) a->num);

    case NGX_GATEWAY_OTLP_BOOL:
        return 2;

    default:
        return ngx_gateway_pb_field_len(1, a->len);
    }
}


/* KeyValue: key = 1, value = 2 */

static inline size_t
ngx_gateway_pb_kv_len(const ngx_gateway_otlp_attr_t *a)
{
    return ngx_gateway_pb_field_len(1, a->key_len)
           + ngx_gateway_pb_field_len(2, ngx_gateway_pb_value_len(a));
}


static inline unsigned char *
ngx_gateway_pb_kv(unsigned char *p, uint32_t field,
    const ngx_gateway_otlp_attr_t *a)
{
    size_t  vlen;

    vlen = ngx_gateway_pb_value_len(a);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(field, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_field_len(1, a->key_len)
                                 + ngx_gateway_pb_field_len(2, vlen));
    p = ngx_gateway_pb_bytes(p, 1, a->key, a->key_len);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, vlen);

    switch (a->type) {

    case NGX_GATEWAY_OTLP_INT:
        p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(3,
                                                        NGX_GATEWAY_PB_VARINT));
        return ngx_gateway_pb_varint(p, (uint64_t) a->num);

    case NGX_GATEWAY_OTLP_BOOL:
        p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(2,
                                                        NGX_GATEWAY_PB_VARINT));
        *p++ = a->num ? 1 : 0;
        return p;

    default:
        return ngx_gateway_pb_bytes(p, 1, a->str, a->len);
    }
}


static size_t
ngx_gateway_pb_attrs_len(uint32_t field, const ngx_gateway_otlp_attr_t *attrs,
    size_t n)
{
    size_t  i, len;

    len = 0;

    for (i = 0; i < n; i++) {
        len += ngx_gateway_pb_field_len(field,
                                        ngx_gateway_pb_kv_len(&attrs[i]));
    }

    return len;
}


/*
 * Span: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4,
 * name = 5, kind = 6, start_time_unix_nano = 7, end_time_unix_nano = 8,
 * attributes = 9, status = 15 (Status: code = 3), flags = 16
 */

static size_t
ngx_gateway_pb_span_len(const ngx_gateway_otlp_span_t *span)
{
    size_t  len;

    len = ngx_gateway_pb_field_len(1, NGX_GATEWAY_TRACE_ID_LEN)
          + ngx_gateway_pb_field_len(2, NGX_GATEWAY_SPAN_ID_LEN)
          + ngx_gateway_pb_field_len(5, span->name_len)
          + 2 * (1 + 8)
          + ngx_gateway_pb_attrs_len(9, span->attrs, span->nattrs);

    if (span->trace_state_len) {
        len += ngx_gateway_pb_field_len(3, span->trace_state_len);
    }

    if (span->has_parent) {
        len += ngx_gateway_pb_field_len(4, NGX_GATEWAY_SPAN_ID_LEN);
    }

    if (span->kind) {
        len += 1 + ngx_gateway_pb_varint_len((uint64_t) span->kind);
    }

    if (span->status) {
        len += ngx_gateway_pb_field_len(15, 1
                          + ngx_gateway_pb_varint_len((uint64_t) span->status));
    }

    if (span->flags) {
        len += 2 + 4;
    }

    return len;
}


size_t
ngx_gateway_otlp_pb_span(unsigned char *out, size_t size,
    const ngx_gateway_otlp_span_t *span)
{
    size_t          i, len, total;
    unsigned char  *p;

    len = ngx_gateway_pb_span_len(span);
    total = ngx_gateway_pb_field_len(2, len);

    if (total > size) {
        return 0;
    }

    p = ngx_gateway_pb_varint(out, ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, len);

    p = ngx_gateway_pb_bytes(p, 1, span->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    p = ngx_gateway_pb_bytes(p, 2, span->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    if (span->trace_state_len) {
        p = ngx_gateway_pb_bytes(p, 3, span->trace_state,
                                 span->trace_state_len);
    }

    if (span->has_parent) {
        p = ngx_gateway_pb_bytes(p, 4, span->parent_id,
                                 NGX_GATEWAY_SPAN_ID_LEN);
    }

    p = ngx_gateway_pb_bytes(p, 5, span->name, span->name_len);

    if (span->kind) {
        *p++ = ngx_gateway_pb_tag(6, NGX_GATEWAY_PB_VARINT);
        p = ngx_gateway_pb_varint(p, (uint64_t) span->kind);
    }

    *p++ = ngx_gateway_pb_tag(7, NGX_GATEWAY_PB_FIXED64);
    p = ngx_gateway_pb_fixed(p, span->start, 8);
    *p++ = ngx_gateway_pb_tag(8, NGX_GATEWAY_PB_FIXED64);
    p = ngx_gateway_pb_fixed(p, span->end, 8);

    for (i = 0; i < span->nattrs; i++) {
        p = ngx_gateway_pb_kv(p, 9, &span->attrs[i]);
    }

    if (span->status) {
        p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(15,
                                                        NGX_GATEWAY_PB_LEN));
        p = ngx_gateway_pb_varint(p, 1 + ngx_gateway_pb_varint_len(
                                             (uint64_t) span->status));
        *p++ = ngx_gateway_pb_tag(3, NGX_GATEWAY_PB_VARINT);
        p = ngx_gateway_pb_varint(p, (uint64_t) span->status);
    }

    if (span->flags) {
        p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(16,
                                                      NGX_GATEWAY_PB_FIXED32));
        p = ngx_gateway_pb_fixed(p, span->flags, 4);
    }

    return (size_t) (p - out);
}


/*
 * ExportTraceServiceRequest: resource_spans = 1
 * ResourceSpans: resource = 1, scope_spans = 2
 * Resource: attributes = 1
 * ScopeSpans: scope = 1, spans = 2
 * InstrumentationScope: name = 1, version = 2
 */

size_t
ngx_gateway_otlp_pb_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res, size_t spans_len)
{
    size_t          i, res_len, scope_len, ss_len, rs_len, total;
    unsigned char  *p;

    res_len = ngx_gateway_pb_attrs_len(1, res->attrs, res->nattrs);
    scope_len = ngx_gateway_pb_field_len(1, res->scope_len)
                + ngx_gateway_pb_field_len(2, res->version_len);
    ss_len = ngx_gateway_pb_field_len(1, scope_len) + spans_len;
    rs_len = ngx_gateway_pb_field_len(1, res_len)
             + ngx_gateway_pb_field_len(2, ss_len);

    total = ngx_gateway_pb_field_len(1, rs_len) - spans_len;

    if (total > size) {
        return 0;
    }

    p = ngx_gateway_pb_varint(out, ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, rs_len);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, res_len);

    for (i = 0; i < res->nattrs; i++) {
        p = ngx_gateway_pb_kv(p, 1, &res->attrs[i]);
    }

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, ss_len);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, scope_len);
    p = ngx_gateway_pb_bytes(p, 1, res->scope, res->scope_len);
    p = ngx_gateway_pb_bytes(p, 2, res->version, res->version_len);

    return (size_t) (p - out);
}


static void
ngx_gateway_json_raw(ngx_gateway_otlp_out_t *o, const char *s, size_t len)
{
    if (o->full || (size_t) (o->end - o->p) < len) {
        o->full = 1;
        return;
    }

    memcpy(o->p, s, len);
    o->p += len;
}


static void
ngx_gateway_json_str(ngx_gateway_otlp_out_t *o, const char *s, size_t len)
{
    size_t         n, i;
    unsigned char  c;

    /* most text needs no escaping: then it is copied as it is */

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c < 0x20 || c == '"' || c == '\\') {
            break;
        }
    }

    n = (i == len) ? len : ngx_gateway_json_escape(NULL, s, len);

    if (o->full || (size_t) (o->end - o->p) < n + 2) {
        o->full = 1;
        return;
    }

    *o->p++ = '"';

    if (n == len) {
        if (len) {
            memcpy(o->p, s, len);
            o->p += len;
        }

    } else {
        o->p += ngx_gateway_json_escape((char *) o->p, s, len);
    }

    *o->p++ = '"';
}


static void
ngx_gateway_json_hex(ngx_gateway_otlp_out_t *o, const unsigned char *id,
    size_t n)
{
    if (o->full || (size_t) (o->end - o->p) < 2 * n + 2) {
        o->full = 1;
        return;
    }

    *o->p++ = '"';
    ngx_gateway_hex((char *) o->p, id, n);
    o->p += 2 * n;
    *o->p++ = '"';
}


/* OTLP/JSON writes 64-bit integers as decimal strings */

static void
ngx_gateway_json_uint(ngx_gateway_otlp_out_t *o, uint64_t v, int quoted)
{
    char   buf[24], *p;

    p = buf + sizeof(buf);

    if (quoted) {
        *--p = '"';
    }

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    if (quoted) {
        *--p = '"';
    }

    ngx_gateway_json_raw(o, p, (size_t) (buf + sizeof(buf) - p));
}


static void
ngx_gateway_json_attrs(ngx_gateway_otlp_out_t *o,
    const ngx_gateway_otlp_attr_t *attrs, size_t n)
{
    size_t                          i;
    const ngx_gateway_otlp_attr_t  *a;

    ngx_gateway_json_lit(o, "[");

    for (i = 0; i < n; i++) {
        a = &attrs[i];

        if (i) {
            ngx_gateway_json_lit(o, ",");
        }

        ngx_gateway_json_lit(o, "{\"key\":");
        ngx_gateway_json_str(o, a->key, a->key_len);

        switch (a->type) {

        case NGX_GATEWAY_OTLP_INT:
            ngx_gateway_json_lit(o, ",\"value\":{\"intValue\":");

            if (a->num < 0) {
                ngx_gateway_json_lit(o, "\"-");
                ngx_gateway_json_uint(o, 0 - (uint64_t) a->num, 0);
                ngx_gateway_json_lit(o, "\"");

            } else {
                ngx_gateway_json_uint(o, (uint64_t) a->num, 1);
            }

            break;

        case NGX_GATEWAY_OTLP_BOOL:
            ngx_gateway_json_lit(o, ",\"value\":{\"boolValue\":");

            if (a->num) {
                ngx_gateway_json_lit(o, "true");

            } else {
                ngx_gateway_json_lit(o, "false");
            }

            break;

        default:
            ngx_gateway_json_lit(o, ",\"value\":{\"stringValue\":");
            ngx_gateway_json_str(o, a->str, a->len);
        }

        ngx_gateway_json_lit(o, "}}");
    }

    ngx_gateway_json_lit(o, "]");
}


size_t
ngx_gateway_otlp_json_span(unsigned char *out, size_t size,
    const ngx_gateway_otlp_span_t *span)
{
    ngx_gateway_otlp_out_t  o;

    o.p = out;
    o.end = out + size;
    o.full = 0;

    ngx_gateway_json_lit(&o, "{\"traceId\":");
    ngx_gateway_json_hex(&o, span->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    ngx_gateway_json_lit(&o, ",\"spanId\":");
    ngx_gateway_json_hex(&o, span->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    if (span->trace_state_len) {
        ngx_gateway_json_lit(&o, ",\"traceState\":");
        ngx_gateway_json_str(&o, span->trace_state, span->trace_state_len);
    }

    if (span->has_parent) {
        ngx_gateway_json_lit(&o, ",\"parentSpanId\":");
        ngx_gateway_json_hex(&o, span->parent_id, NGX_GATEWAY_SPAN_ID_LEN);
    }

    if (span->flags) {
        ngx_gateway_json_lit(&o, ",\"flags\":");
        ngx_gateway_json_uint(&o, span->flags, 0);
    }

    ngx_gateway_json_lit(&o, ",\"name\":");
    ngx_gateway_json_str(&o, span->name, span->name_len);
    ngx_gateway_json_lit(&o, ",\"kind\":");
    ngx_gateway_json_uint(&o, (uint64_t) span->kind, 0);
    ngx_gateway_json_lit(&o, ",\"startTimeUnixNano\":");
    ngx_gateway_json_uint(&o, span->start, 1);
    ngx_gateway_json_lit(&o, ",\"endTimeUnixNano\":");
    ngx_gateway_json_uint(&o, span->end, 1);
    ngx_gateway_json_lit(&o, ",\"attributes\":");
    ngx_gateway_json_attrs(&o, span->attrs, span->nattrs);

    if (span->status) {
        ngx_gateway_json_lit(&o, ",\"status\":{\"code\":");
        ngx_gateway_json_uint(&o, (uint64_t) span->status, 0);
        ngx_gateway_json_lit(&o, "}");
    }

    ngx_gateway_json_lit(&o, "}");

    return o.full ? 0 : (size_t) (o.p - out);
}


size_t
ngx_gateway_otlp_json_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res)
{
    ngx_gateway_otlp_out_t  o;

    o.p = out;
    o.end = out + size;
    o.full = 0;

    ngx_gateway_json_lit(&o, "{\"resourceSpans\":[{\"resource\":"
                             "{\"attributes\":");
    ngx_gateway_json_attrs(&o, res->attrs, res->nattrs);
    ngx_gateway_json_lit(&o, "},\"scopeSpans\":[{\"scope\":{\"name\":");
    ngx_gateway_json_str(&o, res->scope, res->scope_len);
    ngx_gateway_json_lit(&o, ",\"version\":");
    ngx_gateway_json_str(&o, res->version, res->version_len);
    ngx_gateway_json_lit(&o, "},\"spans\":[");

    return o.full ? 0 : (size_t) (o.p - out);
}
