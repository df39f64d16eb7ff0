
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_OTLP_H_INCLUDED_
#define _NGX_GATEWAY_OTLP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_gateway_traceparent.h"


/*
 * OTLP trace export: the few messages of
 * opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest that the
 * gateway sends, in protobuf and in OTLP/JSON, written into a caller's
 * buffer.  Plain C, independent of nginx, so that it can be unit-tested and
 * fuzzed alone.
 *
 * A request is a head, then the spans, then (JSON only) a tail:
 *
 *   protobuf: head(spans_len) span span ...       (spans_len: their sum)
 *   JSON:     head span "," span ... NGX_GATEWAY_OTLP_JSON_TAIL
 *
 * so that spans can be encoded one by one as they end, and a batch is put
 * together without encoding them again.
 *
 * A span is written in one pass, straight where it is kept: its fixed
 * fields (ngx_gateway_otlp_span_begin()), its attributes one by one, then
 * its status (ngx_gateway_otlp_span_end()).  In protobuf the span's length
 * is a varint of a fixed two bytes, written at the end (a varint need not
 * be minimal); a span is at most NGX_GATEWAY_OTLP_SPAN_MAX bytes.
 * Attribute keys are encoded once (ngx_gateway_otlp_key()).
 */


#define NGX_GATEWAY_OTLP_KIND_SERVER   2
#define NGX_GATEWAY_OTLP_KIND_CLIENT   3

#define NGX_GATEWAY_OTLP_STATUS_UNSET  0
#define NGX_GATEWAY_OTLP_STATUS_ERROR  2

/* Span.flags: the W3C flags, and whether the parent is remote */
#define NGX_GATEWAY_OTLP_FLAGS_HAS_REMOTE  0x100
#define NGX_GATEWAY_OTLP_FLAGS_REMOTE      0x200

#define NGX_GATEWAY_OTLP_JSON_TAIL     "]}]}]}"

/* the longest attribute key, and a span's encoded size in protobuf */
#define NGX_GATEWAY_OTLP_KEY_MAX       30
#define NGX_GATEWAY_OTLP_SPAN_MAX      16383


/* an attribute key, encoded: KeyValue.key in protobuf, and in JSON */

typedef struct {
    unsigned char   pb[2 + NGX_GATEWAY_OTLP_KEY_MAX];
    unsigned char   json[sizeof("{\"key\":\"\",\"value\":{\"") - 1
                         + 6 * NGX_GATEWAY_OTLP_KEY_MAX];
    size_t          pb_len;
    size_t          json_len;
} ngx_gateway_otlp_key_t;


/* a span's fields other than its attributes and status */

typedef struct {
    const unsigned char *trace_id;      /* NGX_GATEWAY_TRACE_ID_LEN bytes */
    const unsigned char *span_id;       /* NGX_GATEWAY_SPAN_ID_LEN bytes */
    const unsigned char *parent_id;     /* or NULL */
    const char     *trace_state;
    size_t          trace_state_len;
    const char     *name;
    size_t          name_len;
    int             kind;
    uint64_t        start;      /* Unix time, ns */
    uint64_t        end;
    uint32_t        flags;
} ngx_gateway_otlp_span_t;


/* where a span or a list of attributes is being written */

typedef struct {
    unsigned char  *start;
    unsigned char  *p;
    unsigned char  *end;
    unsigned char  *lim;        /* end, or start: no inline writes (JSON) */
    unsigned char  *len;        /* protobuf: the span's length */
    uint32_t        flags;      /* protobuf: written last */
    unsigned char   tag;        /* protobuf: the attributes' field */
    unsigned        json:1;
    unsigned        full:1;
    unsigned        nattrs:1;   /* JSON: an attribute written */
} ngx_gateway_otlp_writer_t;


typedef struct {
    const unsigned char *attrs; /* the resource's, ngx_gateway_otlp_attrs() */
    size_t          attrs_len;
    const char     *scope;      /* instrumentation scope */
    size_t          scope_len;
    const char     *version;
    size_t          version_len;
} ngx_gateway_otlp_resource_t;


/*
 * Strings are written as they are in protobuf and escaped in JSON; the
 * caller gives valid UTF-8.
 */

/* 0, or -1 for an empty key or one longer than NGX_GATEWAY_OTLP_KEY_MAX */
int ngx_gateway_otlp_key(ngx_gateway_otlp_key_t *key, const char *name,
    size_t len);

/*
 * A span into out[0..size): ScopeSpans.spans field, or a JSON object:
 * ngx_gateway_otlp_span_begin(), its attributes, then
 * ngx_gateway_otlp_span_end() (below, inline), which returns the span's
 * length, or 0 when it needed more than size bytes.
 */

/* what ngx_gateway_otlp_span_begin() does not write inline */
void ngx_gateway_otlp_span_begin_all(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t size, int json,
    const ngx_gateway_otlp_span_t *span);

/* a resource's attributes (for the head): begin, attributes, end */
void ngx_gateway_otlp_attrs_begin(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t size, int json);
size_t ngx_gateway_otlp_attrs_end(ngx_gateway_otlp_writer_t *w);

/*
 * A span's attributes encoded ahead (begin, attributes, end), to be
 * copied into spans with ngx_gateway_otlp_attrs()
 */
void ngx_gateway_otlp_span_attrs_begin(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t size, int json);
void ngx_gateway_otlp_attrs_copy(ngx_gateway_otlp_writer_t *w,
    const unsigned char *attrs, size_t len);

/*
 * More of them, after the len bytes of others in out[0..size), to be
 * copied with them: ngx_gateway_otlp_attrs_end() gives their own length
 */
void ngx_gateway_otlp_span_attrs_after(ngx_gateway_otlp_writer_t *w,
    unsigned char *out, size_t len, size_t size, int json);

/*
 * Attributes: ngx_gateway_otlp_str(), _int(), _bool() write the common
 * case inline (protobuf, lengths of one byte, room to spare: the key
 * buffer is copied whole, a copy of a fixed size) and call
 * ngx_gateway_otlp_attr_*() for the rest (JSON, long values, no room).
 */

void ngx_gateway_otlp_attr_str(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, const char *s, size_t len);
void ngx_gateway_otlp_attr_int(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int64_t v);
void ngx_gateway_otlp_attr_bool(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int v);

/* the JSON span, which ngx_gateway_otlp_span_begin() and _end() call */
void ngx_gateway_otlp_json_span_begin(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_span_t *span);
size_t ngx_gateway_otlp_json_span_end(ngx_gateway_otlp_writer_t *w,
    int status);


/* the writers below are inlined at every call: a call costs as much */

#if defined(__GNUC__)
#define ngx_gateway_otlp_inline  static inline __attribute__((always_inline))
#else
#define ngx_gateway_otlp_inline  static inline
#endif


/*
 * A short copy without a call: two overlapping moves of a fixed size,
 * which read and write only the len bytes.
 */

ngx_gateway_otlp_inline void
ngx_gateway_otlp_copy(unsigned char *p, const char *s, size_t len)
{
    if (len >= 8 && len <= 16) {
        memcpy(p, s, 8);
        memcpy(p + len - 8, s + len - 8, 8);

    } else if (len >= 4 && len < 8) {
        memcpy(p, s, 4);
        memcpy(p + len - 4, s + len - 4, 4);

    } else if (len > 16) {
        memcpy(p, s, len);

    } else if (len) {

        /* the first, middle and last bytes: all of them */

        p[0] = (unsigned char) s[0];
        p[len >> 1] = (unsigned char) s[len >> 1];
        p[len - 1] = (unsigned char) s[len - 1];
    }
}


/* the same bytes: a short comparison without a call, like the copy */

ngx_gateway_otlp_inline int
ngx_gateway_otlp_equal(const unsigned char *a, const unsigned char *b,
    size_t len)
{
    uint64_t  x, y, u, v;
    uint32_t  i, j, k, l;

    if (len >= 8 && len <= 16) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&u, a + len - 8, 8);
        memcpy(&v, b + len - 8, 8);
        return ((x ^ y) | (u ^ v)) == 0;
    }

    if (len >= 4 && len < 8) {
        memcpy(&i, a, 4);
        memcpy(&j, b, 4);
        memcpy(&k, a + len - 4, 4);
        memcpy(&l, b + len - 4, 4);
        return ((i ^ j) | (k ^ l)) == 0;
    }

    if (len < 4) {

        /* the first, middle and last bytes: all of them */

        return len == 0
               || (a[0] == b[0] && a[len >> 1] == b[len >> 1]
                   && a[len - 1] == b[len - 1]);
    }

    return memcmp(a, b, len) == 0;
}


/*
 * KeyValue(key, value = AnyValue) up to the value, vlen bytes (at most
 * NGX_GATEWAY_OTLP_SHORT + 2: the KeyValue's length is one byte), or NULL
 * when the room is short or the writer is not for inline writes.
 */

#define NGX_GATEWAY_OTLP_SHORT  (0x7f - 2 - (2 + NGX_GATEWAY_OTLP_KEY_MAX) - 2)

ngx_gateway_otlp_inline unsigned char *
ngx_gateway_otlp_kv_short(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, size_t vlen)
{
    unsigned char  *p;

    p = w->p;

    if (w->lim - p < (ptrdiff_t) (2 + sizeof(key->pb) + 2 + vlen)) {
        return NULL;
    }

    p[0] = w->tag;
    p[1] = (unsigned char) (key->pb_len + 2 + vlen);
    memcpy(p + 2, key->pb, sizeof(key->pb));
    p += 2 + key->pb_len;
    p[0] = 0x12;                        /* KeyValue.value */
    p[1] = (unsigned char) vlen;

    return p + 2;
}


ngx_gateway_otlp_inline void
ngx_gateway_otlp_str(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, const char *s, size_t len)
{
    unsigned char  *p;

    p = (len <= NGX_GATEWAY_OTLP_SHORT)
        ? ngx_gateway_otlp_kv_short(w, key, 2 + len) : NULL;

    if (p == NULL) {
        ngx_gateway_otlp_attr_str(w, key, s, len);
        return;
    }

    p[0] = 0x0a;                        /* AnyValue.string_value */
    p[1] = (unsigned char) len;
    ngx_gateway_otlp_copy(p + 2, s, len);
    w->p = p + 2 + len;
}


ngx_gateway_otlp_inline void
ngx_gateway_otlp_int(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int64_t v)
{
    size_t          n;
    uint64_t        u;
    unsigned char  *p;

    u = (uint64_t) v;
    n = (u < 0x80) ? 1 : (u < 0x4000) ? 2 : (u < 0x200000) ? 3 : 0;
    p = n ? ngx_gateway_otlp_kv_short(w, key, 1 + n) : NULL;

    if (p == NULL) {
        ngx_gateway_otlp_attr_int(w, key, v);
        return;
    }

    *p++ = 0x18;                        /* AnyValue.int_value */

    while (u >= 0x80) {
        *p++ = (unsigned char) (u | 0x80);
        u >>= 7;
    }

    *p++ = (unsigned char) u;
    w->p = p;
}


ngx_gateway_otlp_inline void
ngx_gateway_otlp_bool(ngx_gateway_otlp_writer_t *w,
    const ngx_gateway_otlp_key_t *key, int v)
{
    unsigned char  *p;

    p = ngx_gateway_otlp_kv_short(w, key, 2);

    if (p == NULL) {
        ngx_gateway_otlp_attr_bool(w, key, v);
        return;
    }

    p[0] = 0x10;                        /* AnyValue.bool_value */
    p[1] = v ? 1 : 0;
    w->p = p + 2;
}


/* attributes from ngx_gateway_otlp_span_attrs_begin(), of the same kind */

ngx_gateway_otlp_inline void
ngx_gateway_otlp_attrs(ngx_gateway_otlp_writer_t *w,
    const unsigned char *attrs, size_t len)
{
    if (w->lim - w->p >= (ptrdiff_t) len) {
        memcpy(w->p, attrs, len);
        w->p += len;
        return;
    }

    ngx_gateway_otlp_attrs_copy(w, attrs, len);
}


/*
 * A span's fixed fields in protobuf with lengths of one byte, but for the
 * tracestate's and the name's bytes: tag and length (3), the ids (18, 10,
 * 10), tracestate and name (2 each), kind (2), times (9 each)
 */
#define NGX_GATEWAY_OTLP_BEGIN_MAX  (3 + 18 + 10 + 10 + 2 + 2 + 2 + 18)


/* little-endian fixed32 and fixed64: stores that the compiler merges */

ngx_gateway_otlp_inline void
ngx_gateway_otlp_fixed32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}


ngx_gateway_otlp_inline void
ngx_gateway_otlp_fixed64(unsigned char *p, uint64_t v)
{
    ngx_gateway_otlp_fixed32(p, (uint32_t) v);
    ngx_gateway_otlp_fixed32(p + 4, (uint32_t) (v >> 32));
}


/*
 * Span: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4,
 * name = 5, kind = 6, start_time_unix_nano = 7, end_time_unix_nano = 8,
 * attributes = 9, status = 15 (Status: code = 3), flags = 16.  The common
 * case is written here in one pass at fixed places: protobuf, a
 * tracestate and a name shorter than 128 bytes, a kind of one byte, and
 * room for them; the rest in ngx_gateway_otlp_span_begin_all(), the same
 * bytes.  The span's length is a varint of a fixed two bytes, written by
 * ngx_gateway_otlp_span_end().
 */

ngx_gateway_otlp_inline void
ngx_gateway_otlp_span_begin(ngx_gateway_otlp_writer_t *w, unsigned char *out,
    size_t size, int json, const ngx_gateway_otlp_span_t *span)
{
    unsigned char  *p;

    if (json || span->trace_state_len >= 0x80 || span->name_len >= 0x80
        || span->kind <= 0 || span->kind >= 0x80
        || size < NGX_GATEWAY_OTLP_BEGIN_MAX + span->trace_state_len
                  + span->name_len)
    {
        ngx_gateway_otlp_span_begin_all(w, out, size, json, span);
        return;
    }

    w->start = out;
    w->end = out + size;
    w->lim = w->end;
    w->len = out + 1;
    w->flags = span->flags;
    w->tag = 0x4a;                      /* Span.attributes */
    w->json = 0;
    w->full = 0;
    w->nattrs = 0;

    p = out;
    p[0] = 0x12;                        /* ScopeSpans.spans */
    p[3] = 0x0a;
    p[4] = NGX_GATEWAY_TRACE_ID_LEN;
    memcpy(p + 5, span->trace_id, NGX_GATEWAY_TRACE_ID_LEN);
    p[21] = 0x12;
    p[22] = NGX_GATEWAY_SPAN_ID_LEN;
    memcpy(p + 23, span->span_id, NGX_GATEWAY_SPAN_ID_LEN);
    p += 31;

    if (span->trace_state_len) {
        p[0] = 0x1a;
        p[1] = (unsigned char) span->trace_state_len;
        memcpy(p + 2, span->trace_state, span->trace_state_len);
        p += 2 + span->trace_state_len;
    }

    if (span->parent_id) {
        p[0] = 0x22;
        p[1] = NGX_GATEWAY_SPAN_ID_LEN;
        memcpy(p + 2, span->parent_id, NGX_GATEWAY_SPAN_ID_LEN);
        p += 2 + NGX_GATEWAY_SPAN_ID_LEN;
    }

    p[0] = 0x2a;
    p[1] = (unsigned char) span->name_len;
    ngx_gateway_otlp_copy(p + 2, span->name, span->name_len);
    p += 2 + span->name_len;

    p[0] = 0x30;
    p[1] = (unsigned char) span->kind;
    p[2] = 0x39;
    ngx_gateway_otlp_fixed64(p + 3, span->start);
    p[11] = 0x41;
    ngx_gateway_otlp_fixed64(p + 12, span->end);

    w->p = p + 20;
}


ngx_gateway_otlp_inline size_t
ngx_gateway_otlp_span_end(ngx_gateway_otlp_writer_t *w, int status)
{
    size_t          len;
    unsigned char  *p;

    if (w->json) {
        return ngx_gateway_otlp_json_span_end(w, status);
    }

    if (w->full || w->end - w->p < 4 + 6) {
        return 0;
    }

    p = w->p;

    /* status (a code below 128) and flags: tags of one and two bytes */

    if (status) {
        p[0] = 0x7a;
        p[1] = 2;
        p[2] = 0x18;
        p[3] = (unsigned char) status;
        p += 4;
    }

    if (w->flags) {
        p[0] = 0x85;
        p[1] = 0x01;
        ngx_gateway_otlp_fixed32(p + 2, w->flags);
        p += 6;
    }

    len = (size_t) (p - w->len) - 2;

    if (len > NGX_GATEWAY_OTLP_SPAN_MAX) {
        return 0;
    }

    w->len[0] = (unsigned char) (len | 0x80);
    w->len[1] = (unsigned char) (len >> 7);

    return (size_t) (p - w->start);
}


/*
 * Each returns the length written, or 0 when it needs more than size
 * bytes (nothing useful is then in out).
 */

/* everything before the spans, whose encoded lengths add up to spans_len */
size_t ngx_gateway_otlp_pb_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res, size_t spans_len);

/* everything before the first span, up to "spans":[ */
size_t ngx_gateway_otlp_json_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res);


#endif /* _NGX_GATEWAY_OTLP_H_INCLUDED_ */
