
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_OTLP_H_INCLUDED_
#define _NGX_GATEWAY_OTLP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

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
 */


#define NGX_GATEWAY_OTLP_STRING        0
#define NGX_GATEWAY_OTLP_INT           1
#define NGX_GATEWAY_OTLP_BOOL          2

#define NGX_GATEWAY_OTLP_KIND_SERVER   2
#define NGX_GATEWAY_OTLP_KIND_CLIENT   3

#define NGX_GATEWAY_OTLP_STATUS_UNSET  0
#define NGX_GATEWAY_OTLP_STATUS_ERROR  2

/* Span.flags: the W3C flags, and whether the parent is remote */
#define NGX_GATEWAY_OTLP_FLAGS_HAS_REMOTE  0x100
#define NGX_GATEWAY_OTLP_FLAGS_REMOTE      0x200

#define NGX_GATEWAY_OTLP_JSON_TAIL     "]}]}]}"


typedef struct {
    const char     *key;
    size_t          key_len;
    int             type;       /* NGX_GATEWAY_OTLP_STRING, ... */
    const char     *str;
    size_t          len;
    int64_t         num;        /* INT; BOOL: 0 or 1 */
} ngx_gateway_otlp_attr_t;


typedef struct {
    unsigned char   trace_id[NGX_GATEWAY_TRACE_ID_LEN];
    unsigned char   span_id[NGX_GATEWAY_SPAN_ID_LEN];
    unsigned char   parent_id[NGX_GATEWAY_SPAN_ID_LEN];
    int             has_parent;
    const char     *trace_state;
    size_t          trace_state_len;
    const char     *name;
    size_t          name_len;
    int             kind;
    uint64_t        start;      /* Unix time, ns */
    uint64_t        end;
    const ngx_gateway_otlp_attr_t *attrs;
    size_t          nattrs;
    int             status;     /* NGX_GATEWAY_OTLP_STATUS_* */
    uint32_t        flags;
} ngx_gateway_otlp_span_t;


typedef struct {
    const ngx_gateway_otlp_attr_t *attrs;     /* the resource's */
    size_t          nattrs;
    const char     *scope;                    /* instrumentation scope */
    size_t          scope_len;
    const char     *version;
    size_t          version_len;
} ngx_gateway_otlp_resource_t;


/*
 * Each returns the length written, or 0 when it needs more than size
 * bytes (nothing useful is then in out).  Strings are written as they are
 * in protobuf and escaped in JSON; the caller gives valid UTF-8.
 */

/* one ScopeSpans.spans field: tag, length, Span */
size_t ngx_gateway_otlp_pb_span(unsigned char *out, size_t size,
    const ngx_gateway_otlp_span_t *span);

/* everything before the spans, whose encoded lengths add up to spans_len */
size_t ngx_gateway_otlp_pb_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res, size_t spans_len);

/* one span object */
size_t ngx_gateway_otlp_json_span(unsigned char *out, size_t size,
    const ngx_gateway_otlp_span_t *span);

/* everything before the first span, up to "spans":[ */
size_t ngx_gateway_otlp_json_head(unsigned char *out, size_t size,
    const ngx_gateway_otlp_resource_t *res);


#endif /* _NGX_GATEWAY_OTLP_H_INCLUDED_ */
