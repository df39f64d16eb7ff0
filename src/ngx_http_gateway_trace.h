
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_TRACE_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_TRACE_H_INCLUDED_


#include "ngx_http_gateway.h"
#include "ngx_gateway_otlp.h"
#include "ngx_gateway_traceparent.h"


/* the module's version, as in debian/changelog: service.version */
#define NGX_HTTP_GATEWAY_VERSION         "0.1.0"

#define NGX_HTTP_GATEWAY_TRACE_JSON      1

/* a span's share of the per-worker buffer: buffer= spans of this size */
#define NGX_HTTP_GATEWAY_TRACE_SPAN_SIZE 1024


/* export counters, all workers (a shared zone) */

typedef struct {
    ngx_atomic_t                exported;   /* spans the collector took */
    ngx_atomic_t                dropped;    /* spans never delivered */
    ngx_atomic_t                failed;     /* export requests that failed */
} ngx_http_gateway_trace_stats_t;


typedef struct {
    ngx_flag_t                  enabled;    /* gateway_trace_exporter set */
    ngx_addr_t                 *addr;
    ngx_str_t                   host;       /* the Host header */
    ngx_str_t                   uri;
    ngx_uint_t                  protocol;   /* 0: protobuf */
    ngx_uint_t                  batch;
    ngx_uint_t                  buffer;
    ngx_msec_t                  interval;
    ngx_msec_t                  timeout;

    ngx_str_t                   service_name;
    ngx_str_t                   host_name;

    ngx_shm_zone_t             *shm_zone;
    ngx_http_gateway_trace_stats_t *stats;
} ngx_http_gateway_trace_main_conf_t;


extern ngx_module_t  ngx_http_gateway_trace_module;


/* ngx_http_gateway_trace_export.c */

char *ngx_http_gateway_trace_exporter(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_gateway_trace_export_conf(ngx_conf_t *cf,
    ngx_http_gateway_trace_main_conf_t *tmcf);
ngx_int_t ngx_http_gateway_trace_export_init(ngx_cycle_t *cycle,
    ngx_http_gateway_trace_main_conf_t *tmcf);
void ngx_http_gateway_trace_export_exit(ngx_cycle_t *cycle);
/*
 * A span that ended is written straight into the worker's export buffer:
 * ngx_http_gateway_trace_span() begins it (NULL: no exporter, or it is
 * dropped), its attributes follow, ngx_http_gateway_trace_span_done()
 * ends it with its status and keeps it (or drops it: no room).
 */
ngx_gateway_otlp_writer_t *ngx_http_gateway_trace_span(
    ngx_gateway_otlp_span_t *span);
void ngx_http_gateway_trace_span_done(ngx_gateway_otlp_writer_t *w,
    int status);


#endif /* _NGX_HTTP_GATEWAY_TRACE_H_INCLUDED_ */
