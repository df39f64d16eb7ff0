
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_otlp.h"
#include "ngx_gateway_text.h"


/* protobuf wire types */
#define NGX_GATEWAY_PB_VARINT   0
#define NGX_GATEWAY_PB_FIXED64  1
#define NGX_GATEWAY_PB_LEN      2
#define NGX_GATEWAY_PB_FIXED32  5

#define ngx_gateway_pb_tag(field, type)  (((field) << 3) | (type))

/* Span.attributes = 9, Resource.attributes = 1 */
#define NGX_GATEWAY_PB_SPAN_ATTR  ngx_gateway_pb_tag(9, NGX_GATEWAY_PB_LEN)
#define NGX_GATEWAY_PB_RES_ATTR   ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN)

#define ngx_gateway_json_lit(w, s)  ngx_gateway_json_raw(w, s, sizeof(s) - 1)



static size_t ngx_gateway_pb_varint_len(uint64_t v);
static unsigned char *ngx_gateway_pb_varint(unsigned char *p, uint64_t v);
static size_t ngx_gateway_pb_field_len(uint32_t field, size_t len);
static unsigned char *ngx_gateway_pb_bytes(unsigned char *p, uint32_t field,
    const void *data, size_t len);
static unsigned char *ngx_gateway_pb_fixed(unsigned char *p, uint64_t v,
    size_t n);
static unsigned char *ngx_gateway_pb_kv(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, size_t vlen);

static void ngx_gateway_json_raw(ngx_gateway_otlp_writer_t *w,
    const char *s, size_t len);
static void ngx_gateway_json_str(ngx_gateway_otlp_writer_t *w,
    const char *s, size_t len);
static void ngx_gateway_json_hex(ngx_gateway_otlp_writer_t *w,
    const unsigned char *id, size_t n);
static void ngx_gateway_json_uint(ngx_gateway_otlp_writer_t *w, uint64_t v,
    int quoted);
static void ngx_gateway_json_key(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key);
static void ngx_gateway_otlp_json_str(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, const char *s, size_t len);
static void ngx_gateway_otlp_json_int(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int64_t v);
static void ngx_gateway_otlp_json_bool(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int v);


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


/* little-endian fixed32 / fixed64 (unrolled: one store on most machines) */

static inline unsigned char *
ngx_gateway_pb_fixed(unsigned char *p, uint64_t v, size_t n)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);

    if (n == 4) {
        return p + 4;
    }

    p[4] = (unsigned char) (v >> 32);
    p[5] = (unsigned char) (v >> 40);
    p[6] = (unsigned char) (v >> 48);
    p[7] = (unsigned char) (v >> 56);

    return p + 8;
}


int
ngx_gateway_otlp_key(ngx_gateway_otlp_key_t *key, const char *name,
    size_t len)
{
    unsigned char  *p;

    if (len == 0 || len > NGX_GATEWAY_OTLP_KEY_MAX) {
        return -1;
    }

    /* KeyValue.key = 1; the buffer is copied whole: all of it defined */

    memset(key->pb, 0, sizeof(key->pb));

    p = ngx_gateway_pb_bytes(key->pb, 1, name, len);
    key->pb_len = (size_t) (p - key->pb);

    p = key->json;
    memcpy(p, "{\"key\":\"", sizeof("{\"key\":\"") - 1);
    p += sizeof("{\"key\":\"") - 1;
    p += ngx_gateway_json_escape((char *) p, name, len);
    memcpy(p, "\",\"value\":{\"", sizeof("\",\"value\":{\"") - 1);
    p += sizeof("\",\"value\":{\"") - 1;
    key->json_len = (size_t) (p - key->json);

    return 0;
}


/*
 * KeyValue: key = 1, value = 2 (AnyValue: string_value = 1,
 * bool_value = 2, int_value = 3), behind the attributes' tag.  Writes up
 * to the value's own bytes (vlen of them), or returns NULL when full.
 */

static unsigned char *
ngx_gateway_pb_kv(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, size_t vlen)
{
    size_t          kvlen;
    unsigned char  *p;

    kvlen = key->pb_len + 1 + ngx_gateway_pb_varint_len(vlen) + vlen;
    p = w->p;

    if (w->full
        || (size_t) (w->end - p) < 1 + ngx_gateway_pb_varint_len(kvlen) + kvlen)
    {
        w->full = 1;
        w->lim = w->start;
        return NULL;
    }

    *p++ = w->tag;
    p = ngx_gateway_pb_varint(p, kvlen);
    memcpy(p, key->pb, key->pb_len);
    p += key->pb_len;
    *p++ = ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN);

    return ngx_gateway_pb_varint(p, vlen);
}


void
ngx_gateway_otlp_attr_str(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, const char *s, size_t len)
{
    unsigned char  *p;

    if (w->json) {
        ngx_gateway_otlp_json_str(w, key, s, len);
        return;
    }

    p = ngx_gateway_pb_kv(w, key, 1 + ngx_gateway_pb_varint_len(len) + len);

    if (p) {
        w->p = ngx_gateway_pb_bytes(p, 1, s, len);
    }
}


void
ngx_gateway_otlp_attr_int(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int64_t v)
{
    unsigned char  *p;

    if (w->json) {
        ngx_gateway_otlp_json_int(w, key, v);
        return;
    }

    p = ngx_gateway_pb_kv(w, key, 1 + ngx_gateway_pb_varint_len((uint64_t) v));

    if (p) {
        *p++ = ngx_gateway_pb_tag(3, NGX_GATEWAY_PB_VARINT);
        w->p = ngx_gateway_pb_varint(p, (uint64_t) v);
    }
}


void
ngx_gateway_otlp_attr_bool(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int v)
{
    unsigned char  *p;

    if (w->json) {
        ngx_gateway_otlp_json_bool(w, key, v);
        return;
    }

    p = ngx_gateway_pb_kv(w, key, 2);

    if (p) {
        *p++ = ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_VARINT);
        *p++ = v ? 1 : 0;
        w->p = p;
    }
}


/* JSON attributes: the writers' slow path too */

static void
ngx_gateway_otlp_json_str(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, const char *s, size_t len)
{
    ngx_gateway_json_key(w, key);
    ngx_gateway_json_lit(w, "stringValue\":");
    ngx_gateway_json_str(w, s, len);
    ngx_gateway_json_lit(w, "}}");
}


static void
ngx_gateway_otlp_json_int(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int64_t v)
{
    ngx_gateway_json_key(w, key);

    /* OTLP/JSON writes 64-bit integers as decimal strings */

    if (v < 0) {
        ngx_gateway_json_lit(w, "intValue\":\"-");
        ngx_gateway_json_uint(w, 0 - (uint64_t) v, 0);
        ngx_gateway_json_lit(w, "\"}}");

    } else {
        ngx_gateway_json_lit(w, "intValue\":");
        ngx_gateway_json_uint(w, (uint64_t) v, 1);
        ngx_gateway_json_lit(w, "}}");
    }
}


static void
ngx_gateway_otlp_json_bool(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int v)
{
    ngx_gateway_json_key(w, key);

    if (v) {
        ngx_gateway_json_lit(w, "boolValue\":true}}");

    } else {
        ngx_gateway_json_lit(w, "boolValue\":false}}");
    }
}


/*
 * Span: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4,
 * name = 5, kind = 6, start_time_unix_nano = 7, end_time_unix_nano = 8,
 * attributes = 9, status = 15 (Status: code = 3), flags = 16
 */

void
ngx_gateway_otlp_span_begin_all(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t size, int json,
    const ngx_gateway_otlp_span_t *span)
{
    size_t          len;
    unsigned char  *p;

    w->start = out;
    w->p = out;
    w->end = out + size;
    w->lim = json ? out : w->end;
    w->len = NULL;
    w->flags = span->flags;
    w->tag = NGX_GATEWAY_PB_SPAN_ATTR;
    w->json = json ? 1 : 0;
    w->full = 0;
    w->nattrs = 0;

    if (json) {
        ngx_gateway_otlp_json_span_begin(w, span);
        return;
    }

    /* tag, the fixed two bytes of the length, then what is always there */

    len = 3 + 2 + NGX_GATEWAY_TRACE_ID_LEN + 2 + NGX_GATEWAY_SPAN_ID_LEN
          + ngx_gateway_pb_field_len(5, span->name_len) + 2 * (1 + 8);

    if (span->trace_state_len) {
        len += ngx_gateway_pb_field_len(3, span->trace_state_len);
    }

    if (span->parent_id) {
        len += 2 + NGX_GATEWAY_SPAN_ID_LEN;
    }

    if (span->kind) {
        len += 1 + ngx_gateway_pb_varint_len((uint64_t) span->kind);
    }

    if (size < len) {
        w->full = 1;
        w->lim = out;
        return;
    }

    p = out;
    *p++ = ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN);
    w->len = p;
    p += 2;

    p = ngx_gateway_pb_bytes(p, 1, span->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    p = ngx_gateway_pb_bytes(p, 2, span->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    if (span->trace_state_len) {
        p = ngx_gateway_pb_bytes(p, 3, span->trace_state,
                                 span->trace_state_len);
    }

    if (span->parent_id) {
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

    w->p = p;
}


void
ngx_gateway_otlp_json_span_begin(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_span_t *span)
{
    ngx_gateway_json_lit(w, "{\"traceId\":");
    ngx_gateway_json_hex(w, span->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    ngx_gateway_json_lit(w, ",\"spanId\":");
    ngx_gateway_json_hex(w, span->span_id, NGX_GATEWAY_SPAN_ID_LEN);

    if (span->trace_state_len) {
        ngx_gateway_json_lit(w, ",\"traceState\":");
        ngx_gateway_json_str(w, span->trace_state, span->trace_state_len);
    }

    if (span->parent_id) {
        ngx_gateway_json_lit(w, ",\"parentSpanId\":");
        ngx_gateway_json_hex(w, span->parent_id, NGX_GATEWAY_SPAN_ID_LEN);
    }

    if (span->flags) {
        ngx_gateway_json_lit(w, ",\"flags\":");
        ngx_gateway_json_uint(w, span->flags, 0);
    }

    ngx_gateway_json_lit(w, ",\"name\":");
    ngx_gateway_json_str(w, span->name, span->name_len);
    ngx_gateway_json_lit(w, ",\"kind\":");
    ngx_gateway_json_uint(w, (uint64_t) span->kind, 0);
    ngx_gateway_json_lit(w, ",\"startTimeUnixNano\":");
    ngx_gateway_json_uint(w, span->start, 1);
    ngx_gateway_json_lit(w, ",\"endTimeUnixNano\":");
    ngx_gateway_json_uint(w, span->end, 1);
    ngx_gateway_json_lit(w, ",\"attributes\":[");
}


size_t
ngx_gateway_otlp_json_span_end(ngx_gateway_otlp_writer_t *w, int status)
{
    ngx_gateway_json_lit(w, "]");

    if (status) {
        ngx_gateway_json_lit(w, ",\"status\":{\"code\":");
        ngx_gateway_json_uint(w, (uint64_t) status, 0);
        ngx_gateway_json_lit(w, "}");
    }

    ngx_gateway_json_lit(w, "}");

    return w->full ? 0 : (size_t) (w->p - w->start);
}


void
ngx_gateway_otlp_attrs_begin(ngx_gateway_otlp_writer_t *w, unsigned char *out,
    size_t size, int json)
{
    w->start = out;
    w->p = out;
    w->end = out + size;
    w->lim = json ? out : w->end;
    w->len = NULL;
    w->flags = 0;
    w->tag = NGX_GATEWAY_PB_RES_ATTR;
    w->json = json ? 1 : 0;
    w->full = 0;
    w->nattrs = 0;
}


void
ngx_gateway_otlp_span_attrs_begin(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t size, int json)
{
    ngx_gateway_otlp_attrs_begin(w, out, size, json);

    w->tag = NGX_GATEWAY_PB_SPAN_ATTR;
}


void
ngx_gateway_otlp_span_attrs_after(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t len, size_t size, int json)
{
    ngx_gateway_otlp_span_attrs_begin(w, out + len, size - len, json);

    /* JSON: a comma before the first */

    w->nattrs = (len != 0);
}


/* ngx_gateway_otlp_attrs() but inline: JSON, or no room */

void
ngx_gateway_otlp_attrs_copy(ngx_gateway_otlp_writer_t *w,
    const unsigned char *attrs, size_t len)
{
    if (len == 0) {
        return;
    }

    if (w->json && w->nattrs) {
        ngx_gateway_json_lit(w, ",");
    }

    ngx_gateway_json_raw(w, (const char *) attrs, len);

    w->nattrs = 1;
}


size_t
ngx_gateway_otlp_attrs_end(ngx_gateway_otlp_writer_t *w)
{
    return w->full ? 0 : (size_t) (w->p - w->start);
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
    size_t          scope_len, ss_len, rs_len, total;
    unsigned char  *p;

    scope_len = ngx_gateway_pb_field_len(1, res->scope_len)
                + ngx_gateway_pb_field_len(2, res->version_len);
    ss_len = ngx_gateway_pb_field_len(1, scope_len) + spans_len;
    rs_len = ngx_gateway_pb_field_len(1, res->attrs_len)
             + ngx_gateway_pb_field_len(2, ss_len);

    total = ngx_gateway_pb_field_len(1, rs_len) - spans_len;

    if (total > size) {
        return 0;
    }

    p = ngx_gateway_pb_varint(out, ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, rs_len);

    p = ngx_gateway_pb_bytes(p, 1, res->attrs, res->attrs_len);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(2, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, ss_len);

    p = ngx_gateway_pb_varint(p, ngx_gateway_pb_tag(1, NGX_GATEWAY_PB_LEN));
    p = ngx_gateway_pb_varint(p, scope_len);
    p = ngx_gateway_pb_bytes(p, 1, res->scope, res->scope_len);
    p = ngx_gateway_pb_bytes(p, 2, res->version, res->version_len);

    return (size_t) (p - out);
}


static void
ngx_gateway_json_raw(ngx_gateway_otlp_writer_t *w, const char *s, size_t len)
{
    if (w->full || (size_t) (w->end - w->p) < len) {
        w->full = 1;
        return;
    }

    memcpy(w->p, s, len);
    w->p += len;
}


static void
ngx_gateway_json_str(ngx_gateway_otlp_writer_t *w, const char *s, size_t len)
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

    if (w->full || (size_t) (w->end - w->p) < n + 2) {
        w->full = 1;
        return;
    }

    *w->p++ = '"';

    if (n == len) {
        if (len) {
            memcpy(w->p, s, len);
            w->p += len;
        }

    } else {
        w->p += ngx_gateway_json_escape((char *) w->p, s, len);
    }

    *w->p++ = '"';
}


static void
ngx_gateway_json_hex(ngx_gateway_otlp_writer_t *w, const unsigned char *id,
    size_t n)
{
    if (w->full || (size_t) (w->end - w->p) < 2 * n + 2) {
        w->full = 1;
        return;
    }

    *w->p++ = '"';
    ngx_gateway_hex((char *) w->p, id, n);
    w->p += 2 * n;
    *w->p++ = '"';
}


static void
ngx_gateway_json_uint(ngx_gateway_otlp_writer_t *w, uint64_t v, int quoted)
{
    char   buf[NGX_GATEWAY_UINT_LEN + 2], *p;

    p = buf;

    if (quoted) {
        *p++ = '"';
    }

    p = ngx_gateway_text_uint(p, v);

    if (quoted) {
        *p++ = '"';
    }

    ngx_gateway_json_raw(w, buf, (size_t) (p - buf));
}


/* a comma unless it is the first attribute, then {"key":"...","value":{" */

static void
ngx_gateway_json_key(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key)
{
    if (w->nattrs) {
        ngx_gateway_json_lit(w, ",");
    }

    w->nattrs = 1;

    ngx_gateway_json_raw(w, (const char *) key->json, key->json_len);
}


size_t
ngx_gateway_otlp_json_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res)
{
    ngx_gateway_otlp_writer_t  w;

    ngx_gateway_otlp_attrs_begin(&w, out, size, 1);

    ngx_gateway_json_lit(&w, "{\"resourceSpans\":[{\"resource\":"
                             "{\"attributes\":[");
    ngx_gateway_json_raw(&w, (const char *) res->attrs, res->attrs_len);
    ngx_gateway_json_lit(&w, "]},\"scopeSpans\":[{\"scope\":{\"name\":");
    ngx_gateway_json_str(&w, res->scope, res->scope_len);
    ngx_gateway_json_lit(&w, ",\"version\":");
    ngx_gateway_json_str(&w, res->version, res->version_len);
    ngx_gateway_json_lit(&w, "},\"spans\":[");

    return ngx_gateway_otlp_attrs_end(&w);
}
