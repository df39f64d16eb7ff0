
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway_trace.h"


/*
 * The OTLP/HTTP exporter of a worker.  Spans are encoded as they end into
 * one buffer (at most buffer= spans); a batch is its first spans, sent
 * from there on one keepalive connection while new spans are added after
 * them, and then moved out.  Nothing waits for the collector: a full
 * buffer, a failed or late export drop spans and count them.
 */


#define NGX_HTTP_GATEWAY_TRACE_HEADER_SIZE  512
#define NGX_HTTP_GATEWAY_TRACE_RESPONSE     4096

#define NGX_HTTP_GATEWAY_TRACE_IDLE         0
#define NGX_HTTP_GATEWAY_TRACE_SENDING      1
#define NGX_HTTP_GATEWAY_TRACE_READING      2


typedef struct {
    ngx_http_gateway_trace_main_conf_t  *conf;
    ngx_log_t                           *log;

    u_char                              *buf;       /* encoded spans */
    size_t                               size;
    size_t                               used;
    uint32_t                            *ends;      /* span i ends there */
    ngx_uint_t                           n;

    ngx_uint_t                           state;
    ngx_uint_t                           sending;   /* spans of the batch */
    ngx_uint_t                           reused;    /* a kept connection */

    ngx_gateway_otlp_resource_t          res;
    ngx_gateway_otlp_writer_t            w;         /* the span being
                                                       written */

    u_char                              *head;      /* HTTP + OTLP head */
    size_t                               head_size;
    ngx_buf_t                            bufs[3];
    ngx_chain_t                          chain[3];
    ngx_chain_t                         *out;

    u_char                               resp[NGX_HTTP_GATEWAY_TRACE_RESPONSE];
    size_t                               resp_len;
    off_t                                body;      /* left to read; -1:
                                                       until the headers */
    off_t                                length;    /* Content-Length */
    ngx_uint_t                           status;
    ngx_uint_t                           close;

    /* the answer, with nginx's parsers (their state is in a request) */
    ngx_http_request_t                   req;
    ngx_http_status_t                    st;
    ngx_buf_t                            rbuf;

    ngx_peer_connection_t                pc;
    ngx_event_t                          timer;
    ngx_connection_t                    *notice;    /* of a shutdown */
    ngx_uint_t                           down;      /* failing since */

    ngx_msec_t                           deadline;  /* shutting down */
    unsigned                             exiting:1;

    ngx_uint_t                           exported;  /* this worker's */
    ngx_uint_t                           dropped;
    ngx_uint_t                           failed;
} ngx_http_gateway_trace_exporter_t;


static ngx_int_t ngx_http_gateway_trace_stats_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_gateway_trace_resource(ngx_cycle_t *cycle,
    ngx_http_gateway_trace_exporter_t *e);
static void ngx_http_gateway_trace_drop(ngx_http_gateway_trace_exporter_t *e,
    ngx_uint_t n);
static void ngx_http_gateway_trace_send(ngx_http_gateway_trace_exporter_t *e);
static ngx_int_t ngx_http_gateway_trace_connect(
    ngx_http_gateway_trace_exporter_t *e);
static ngx_uint_t ngx_http_gateway_trace_timedout(ngx_event_t *ev,
    ngx_http_gateway_trace_exporter_t *e);
static void ngx_http_gateway_trace_write_handler(ngx_event_t *wev);
static void ngx_http_gateway_trace_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_gateway_trace_parse(
    ngx_http_gateway_trace_exporter_t *e);
static void ngx_http_gateway_trace_idle_handler(ngx_event_t *ev);
static void ngx_http_gateway_trace_notice_handler(ngx_event_t *ev);
static void ngx_http_gateway_trace_done(ngx_http_gateway_trace_exporter_t *e,
    ngx_uint_t ok);
static void ngx_http_gateway_trace_close(ngx_http_gateway_trace_exporter_t *e);
static void ngx_http_gateway_trace_timer_handler(ngx_event_t *ev);
static void ngx_http_gateway_trace_shutdown(
    ngx_http_gateway_trace_exporter_t *e);
static void ngx_http_gateway_trace_next(ngx_http_gateway_trace_exporter_t *e);
static ngx_msec_t ngx_http_gateway_trace_timeout(
    ngx_http_gateway_trace_exporter_t *e);


static ngx_http_gateway_trace_exporter_t  *ngx_http_gateway_trace_exp;


/*
 * gateway_trace_exporter endpoint=http://ADDRESS:PORT/PATH
 *     [protocol=protobuf|json] [batch=N] [interval=TIME] [buffer=N]
 *     [timeout=TIME];
 */

char *
ngx_http_gateway_trace_exporter(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gateway_trace_main_conf_t *tmcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_url_t    u;
    ngx_uint_t   i;

    if (tmcf->enabled) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tmcf->protocol = 0;
    tmcf->batch = 512;
    tmcf->buffer = 4096;
    tmcf->interval = 5000;
    tmcf->timeout = 5000;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "endpoint=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            if (s.len <= 7 || ngx_strncmp(s.data, "http://", 7) != 0) {
                goto invalid;
            }

            ngx_memzero(&u, sizeof(ngx_url_t));

            u.url.data = s.data + 7;
            u.url.len = s.len - 7;
            u.default_port = 80;
            u.uri_part = 1;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0
                || u.no_port)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid endpoint \"%V\" in "
                                   "\"gateway_trace_exporter\"%s%s: "
                                   "http://ADDRESS:PORT/PATH", &s,
                                   u.err ? ": " : "", u.err ? u.err : "");
                return NGX_CONF_ERROR;
            }

            tmcf->addr = &u.addrs[0];
            tmcf->host = u.url;
            tmcf->host.len = u.uri.len ? (size_t) (u.uri.data - u.url.data)
                                       : u.url.len;
            tmcf->uri = u.uri;

            if (tmcf->uri.len == 0) {
                ngx_str_set(&tmcf->uri, "/v1/traces");
            }

            if (!ngx_gateway_text_valid((char *) s.data, s.len)
                || ngx_strlchr(s.data, s.data + s.len, ' '))
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "protocol=protobuf") == 0) {
            tmcf->protocol = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "protocol=json") == 0) {
            tmcf->protocol = NGX_HTTP_GATEWAY_TRACE_JSON;
            continue;
        }

        if (ngx_strncmp(value[i].data, "batch=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n <= 0 || n > 65536) {
                goto invalid;
            }

            tmcf->batch = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "buffer=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n <= 0 || n > 65536) {
                goto invalid;
            }

            tmcf->buffer = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            n = ngx_parse_time(&s, 0);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            tmcf->interval = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            n = ngx_parse_time(&s, 0);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            tmcf->timeout = n;
            continue;
        }

        goto invalid;
    }

    if (tmcf->addr == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gateway_trace_exporter\" needs "
                           "endpoint=http://ADDRESS:PORT/PATH");
        return NGX_CONF_ERROR;
    }

    if (tmcf->batch > tmcf->buffer) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "batch= is larger than buffer= in "
                           "\"gateway_trace_exporter\"");
        return NGX_CONF_ERROR;
    }

    tmcf->enabled = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"gateway_trace_exporter\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/* the counters' zone, shared by the workers and kept across reloads */

ngx_int_t
ngx_http_gateway_trace_export_conf(ngx_conf_t *cf,
    ngx_http_gateway_trace_main_conf_t *tmcf)
{
    ngx_str_t  name = ngx_string("gateway_trace");

    if (!tmcf->enabled) {
        return NGX_OK;
    }

    tmcf->shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                           &ngx_http_gateway_trace_module);
    if (tmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    tmcf->shm_zone->init = ngx_http_gateway_trace_stats_init;
    tmcf->shm_zone->data = tmcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gateway_trace_stats_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_gateway_trace_main_conf_t  *tmcf, *old;
    ngx_slab_pool_t                     *shpool;

    tmcf = shm_zone->data;

    if (data) {
        old = data;
        tmcf->stats = old->stats;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        tmcf->stats = shpool->data;
        return NGX_OK;
    }

    tmcf->stats = ngx_slab_calloc(shpool,
                                  sizeof(ngx_http_gateway_trace_stats_t));
    if (tmcf->stats == NULL) {
        return NGX_ERROR;
    }

    shpool->data = tmcf->stats;

    return NGX_OK;
}


/*
 * The resource's attributes, encoded once in the exporter's protocol:
 * service.name, service.version, host.name (left out unless it is valid
 * text), telemetry.sdk.*
 */

static ngx_int_t
ngx_http_gateway_trace_resource(ngx_cycle_t *cycle,
    ngx_http_gateway_trace_exporter_t *e)
{
    u_char                              *buf;
    size_t                               size, len;
    ngx_str_t                            host;
    ngx_uint_t                           i;
    ngx_gateway_otlp_key_t               keys[6];
    ngx_gateway_otlp_writer_t            w;
    ngx_http_gateway_trace_main_conf_t  *tmcf;

    static ngx_str_t  names[] = {
        ngx_string("service.name"),
        ngx_string("service.version"),
        ngx_string("host.name"),
        ngx_string("telemetry.sdk.name"),
        ngx_string("telemetry.sdk.language"),
        ngx_string("telemetry.sdk.version")
    };

    tmcf = e->conf;

    for (i = 0; i < 6; i++) {
        if (ngx_gateway_otlp_key(&keys[i], (char *) names[i].data,
                                 names[i].len)
            != 0)
        {
            return NGX_ERROR;
        }
    }

    host = tmcf->host_name;

    if (!ngx_gateway_text_valid((char *) host.data, host.len)) {
        host.len = 0;
    }

    /* JSON escapes a character into at most 6 */

    size = 6 * (sizeof(keys[0].json) + 64)
           + 6 * (tmcf->service_name.len + host.len);

    buf = ngx_palloc(cycle->pool, size);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_gateway_otlp_attrs_begin(&w, buf, size,
                                 tmcf->protocol == NGX_HTTP_GATEWAY_TRACE_JSON);

    ngx_gateway_otlp_str(&w, &keys[0], (char *) tmcf->service_name.data,
                         tmcf->service_name.len);
    ngx_gateway_otlp_str(&w, &keys[1], NGX_HTTP_GATEWAY_VERSION,
                         sizeof(NGX_HTTP_GATEWAY_VERSION) - 1);

    if (host.len) {
        ngx_gateway_otlp_str(&w, &keys[2], (char *) host.data, host.len);
    }

    ngx_gateway_otlp_str(&w, &keys[3], "ngx_gateway",
                         sizeof("ngx_gateway") - 1);
    ngx_gateway_otlp_str(&w, &keys[4], "c", 1);
    ngx_gateway_otlp_str(&w, &keys[5], NGX_HTTP_GATEWAY_VERSION,
                         sizeof(NGX_HTTP_GATEWAY_VERSION) - 1);

    len = ngx_gateway_otlp_attrs_end(&w);
    if (len == 0) {
        return NGX_ERROR;
    }

    e->res.attrs = buf;
    e->res.attrs_len = len;
    e->res.scope = "ngx_gateway";
    e->res.scope_len = sizeof("ngx_gateway") - 1;
    e->res.version = NGX_HTTP_GATEWAY_VERSION;
    e->res.version_len = sizeof(NGX_HTTP_GATEWAY_VERSION) - 1;

    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_trace_export_init(ngx_cycle_t *cycle,
    ngx_http_gateway_trace_main_conf_t *tmcf)
{
    ngx_fd_t                            fd;
    ngx_http_gateway_trace_exporter_t  *e;

    e = ngx_pcalloc(cycle->pool, sizeof(ngx_http_gateway_trace_exporter_t));
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->conf = tmcf;
    e->log = cycle->log;

    e->size = tmcf->buffer * NGX_HTTP_GATEWAY_TRACE_SPAN_SIZE;
    e->buf = ngx_alloc(e->size, cycle->log);
    e->ends = ngx_alloc(tmcf->buffer * sizeof(uint32_t), cycle->log);

    if (e->buf == NULL || e->ends == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_gateway_trace_resource(cycle, e) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the HTTP header, and the OTLP head around the resource */

    e->head_size = NGX_HTTP_GATEWAY_TRACE_HEADER_SIZE + tmcf->uri.len
                   + tmcf->host.len + 1024 + e->res.attrs_len;

    e->head = ngx_alloc(e->head_size, cycle->log);
    if (e->head == NULL) {
        return NGX_ERROR;
    }

    e->pc.sockaddr = tmcf->addr->sockaddr;
    e->pc.socklen = tmcf->addr->socklen;
    e->pc.name = &tmcf->addr->name;
    e->pc.get = ngx_event_get_peer;
    e->pc.log = cycle->log;
    e->pc.log_error = NGX_ERROR_INFO;

    e->timer.handler = ngx_http_gateway_trace_timer_handler;
    e->timer.data = e;
    e->timer.log = cycle->log;
    e->timer.cancelable = 1;

    ngx_add_timer(&e->timer, tmcf->interval);

    /*
     * A graceful shutdown closes the idle connections, calling their read
     * handlers: an idle connection that is never polled (on /dev/null) is
     * how the exporter learns of it at once, to send what is left.
     */

    fd = ngx_open_file("/dev/null", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        e->notice = ngx_get_connection(fd, cycle->log);

        if (e->notice == NULL) {
            (void) ngx_close_file(fd);

        } else {
            e->notice->data = e;
            e->notice->idle = 1;
            e->notice->read->handler = ngx_http_gateway_trace_notice_handler;
            e->notice->write->handler = ngx_http_gateway_trace_notice_handler;
        }
    }

    ngx_http_gateway_trace_exp = e;

    return NGX_OK;
}


void
ngx_http_gateway_trace_export_exit(ngx_cycle_t *cycle)
{
    ngx_http_gateway_trace_exporter_t  *e;

    e = ngx_http_gateway_trace_exp;

    if (e == NULL) {
        return;
    }

    if (e->n) {
        e->dropped += e->n;
        (void) ngx_atomic_fetch_add(&e->conf->stats->dropped, e->n);
        ngx_http_gateway_trace_drop(e, e->n);
    }

    if (e->notice) {
        ngx_close_connection(e->notice);
        e->notice = NULL;
    }

    ngx_http_gateway_trace_close(e);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "gateway: trace export of this worker: %ui spans "
                  "exported, %ui dropped, %ui export requests failed",
                  e->exported, e->dropped, e->failed);

    ngx_free(e->buf);
    ngx_free(e->ends);
    ngx_free(e->head);

    ngx_http_gateway_trace_exp = NULL;
}


/*
 * A span that ended: written at the end of the buffer, after the batch
 * being sent (if any), and kept, or dropped.
 */

ngx_gateway_otlp_writer_t *
ngx_http_gateway_trace_span(ngx_gateway_otlp_span_t *span)
{
    u_char                             *p;
    size_t                              room;
    ngx_http_gateway_trace_exporter_t  *e;

    e = ngx_http_gateway_trace_exp;

    if (e == NULL) {
        return NULL;
    }

    p = e->buf + e->used;
    room = e->size - e->used;

    if (e->n == e->conf->buffer || room < 2) {
        e->dropped++;
        (void) ngx_atomic_fetch_add(&e->conf->stats->dropped, 1);
        return NULL;
    }

    if (e->conf->protocol == NGX_HTTP_GATEWAY_TRACE_JSON) {

        /* each span after a comma: the batch skips the first one's */

        *p = ',';
        ngx_gateway_otlp_span_begin(&e->w, p + 1, room - 1, 1, span);

    } else {
        ngx_gateway_otlp_span_begin(&e->w, p, room, 0, span);
    }

    return &e->w;
}


void
ngx_http_gateway_trace_span_done(ngx_gateway_otlp_writer_t *w, int status)
{
    size_t                              len;
    ngx_http_gateway_trace_exporter_t  *e;

    e = ngx_http_gateway_trace_exp;

    len = ngx_gateway_otlp_span_end(w, status);

    if (len == 0) {
        e->dropped++;
        (void) ngx_atomic_fetch_add(&e->conf->stats->dropped, 1);
        return;
    }

    if (e->conf->protocol == NGX_HTTP_GATEWAY_TRACE_JSON) {
        len++;
    }

    e->used += len;
    e->ends[e->n++] = e->used;

    if (e->state == NGX_HTTP_GATEWAY_TRACE_IDLE && e->n >= e->conf->batch) {
        ngx_http_gateway_trace_send(e);
    }
}


/* the first n spans go: sent, dropped or failed */

static void
ngx_http_gateway_trace_drop(ngx_http_gateway_trace_exporter_t *e,
    ngx_uint_t n)
{
    size_t      off;
    ngx_uint_t  i;

    if (n == 0) {
        return;
    }

    off = e->ends[n - 1];

    ngx_memmove(e->buf, e->buf + off, e->used - off);
    e->used -= off;

    for (i = n; i < e->n; i++) {
        e->ends[i - n] = e->ends[i] - off;
    }

    e->n -= n;
}


static void
ngx_http_gateway_trace_send(ngx_http_gateway_trace_exporter_t *e)
{
    u_char      *p, *data, *otlp;
    u_char       hdr[NGX_HTTP_GATEWAY_TRACE_HEADER_SIZE];
    size_t       len, head, body;
    ngx_uint_t   k, json, i;

    k = ngx_min(e->n, e->conf->batch);

    if (k == 0) {
        return;
    }

    json = (e->conf->protocol == NGX_HTTP_GATEWAY_TRACE_JSON);

    len = e->ends[k - 1];
    data = e->buf;

    if (json) {
        data++;
        len--;
    }

    /* the OTLP head, and the HTTP header right before it */

    otlp = e->head + NGX_HTTP_GATEWAY_TRACE_HEADER_SIZE + e->conf->uri.len
           + e->conf->host.len;

    if (json) {
        head = ngx_gateway_otlp_json_head(otlp, e->head + e->head_size - otlp,
                                          &e->res);
        body = head + len + sizeof(NGX_GATEWAY_OTLP_JSON_TAIL) - 1;

    } else {
        head = ngx_gateway_otlp_pb_head(otlp, e->head + e->head_size - otlp,
                                        &e->res, len);
        body = head + len;
    }

    e->sending = k;

    if (head == 0) {
        ngx_log_error(NGX_LOG_ALERT, e->log, 0,
                      "gateway: trace export: no room for the OTLP head");
        ngx_http_gateway_trace_done(e, 0);
        return;
    }

    p = ngx_snprintf(hdr, sizeof(hdr),
                     "POST %V HTTP/1.1" CRLF
                     "Host: %V" CRLF
                     "User-Agent: ngx_gateway/" NGX_HTTP_GATEWAY_VERSION CRLF
                     "Content-Type: %s" CRLF
                     "Content-Length: %uz" CRLF CRLF,
                     &e->conf->uri, &e->conf->host,
                     json ? "application/json" : "application/x-protobuf",
                     body);

    if ((size_t) (otlp - e->head) < (size_t) (p - hdr)) {
        ngx_http_gateway_trace_done(e, 0);
        return;
    }

    ngx_memzero(e->bufs, sizeof(e->bufs));

    e->bufs[0].pos = otlp - (p - hdr);
    e->bufs[0].last = otlp + head;
    e->bufs[0].memory = 1;
    ngx_memcpy(e->bufs[0].pos, hdr, p - hdr);

    e->bufs[1].pos = data;
    e->bufs[1].last = data + len;
    e->bufs[1].memory = 1;

    e->bufs[2].pos = (u_char *) NGX_GATEWAY_OTLP_JSON_TAIL;
    e->bufs[2].last = e->bufs[2].pos + sizeof(NGX_GATEWAY_OTLP_JSON_TAIL) - 1;
    e->bufs[2].memory = 1;

    for (i = 0; i < 3; i++) {
        e->chain[i].buf = &e->bufs[i];
        e->chain[i].next = (i < 2) ? &e->chain[i + 1] : NULL;
    }

    if (!json) {
        e->chain[1].next = NULL;
    }

    e->out = &e->chain[0];
    e->resp_len = 0;
    e->body = -1;
    e->length = -1;
    e->status = 0;
    e->close = 0;

    ngx_memzero(&e->req, sizeof(ngx_http_request_t));
    ngx_memzero(&e->st, sizeof(ngx_http_status_t));
    e->rbuf.pos = e->resp;
    e->rbuf.last = e->resp;
    e->state = NGX_HTTP_GATEWAY_TRACE_SENDING;

    if (e->pc.connection == NULL) {
        e->reused = 0;

        if (ngx_http_gateway_trace_connect(e) != NGX_OK) {
            ngx_http_gateway_trace_done(e, 0);
        }

        return;
    }

    e->reused = 1;
    e->pc.connection->idle = 0;
    e->pc.connection->read->handler = ngx_http_gateway_trace_read_handler;
    e->pc.connection->write->handler = ngx_http_gateway_trace_write_handler;

    ngx_http_gateway_trace_write_handler(e->pc.connection->write);
}


static ngx_int_t
ngx_http_gateway_trace_connect(ngx_http_gateway_trace_exporter_t *e)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    e->pc.connection = NULL;
    e->pc.tries = 1;

    rc = ngx_event_connect_peer(&e->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (e->pc.connection) {
            ngx_close_connection(e->pc.connection);
            e->pc.connection = NULL;
        }

        return NGX_ERROR;
    }

    c = e->pc.connection;

    /* one line per failure of its own, not nginx's for every write */

    c->log_error = NGX_ERROR_IGNORE_ECONNRESET;
    c->data = e;
    c->log = e->log;
    c->read->log = e->log;
    c->write->log = e->log;
    c->read->handler = ngx_http_gateway_trace_read_handler;
    c->write->handler = ngx_http_gateway_trace_write_handler;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, ngx_http_gateway_trace_timeout(e));
        return NGX_OK;
    }

    ngx_http_gateway_trace_write_handler(c->write);

    return NGX_OK;
}


/* no answer in time is the collector's, not a closed connection */

static ngx_uint_t
ngx_http_gateway_trace_timedout(ngx_event_t *ev,
    ngx_http_gateway_trace_exporter_t *e)
{
    if (!ev->timedout) {
        return 0;
    }

    e->reused = 0;
    ngx_http_gateway_trace_done(e, 0);

    return 1;
}


static void
ngx_http_gateway_trace_write_handler(ngx_event_t *wev)
{
    ngx_chain_t                        *cl;
    ngx_connection_t                   *c;
    ngx_http_gateway_trace_exporter_t  *e;

    c = wev->data;
    e = c->data;

    if (e->state != NGX_HTTP_GATEWAY_TRACE_SENDING) {
        return;
    }

    if (ngx_http_gateway_trace_timedout(wev, e)) {
        return;
    }

    cl = c->send_chain(c, e->out, 0);

    if (cl == NGX_CHAIN_ERROR) {
        ngx_http_gateway_trace_done(e, 0);
        return;
    }

    e->out = cl;

    if (cl) {
        if (!wev->timer_set) {
            ngx_add_timer(wev, ngx_http_gateway_trace_timeout(e));
        }

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_gateway_trace_done(e, 0);
        }

        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    e->state = NGX_HTTP_GATEWAY_TRACE_READING;

    ngx_add_timer(c->read, ngx_http_gateway_trace_timeout(e));

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_gateway_trace_done(e, 0);
        return;
    }

    if (c->read->ready) {
        ngx_http_gateway_trace_read_handler(c->read);
    }
}


static void
ngx_http_gateway_trace_read_handler(ngx_event_t *rev)
{
    u_char                              buf[NGX_HTTP_GATEWAY_TRACE_RESPONSE];
    ssize_t                             n;
    ngx_int_t                           rc;
    ngx_connection_t                   *c;
    ngx_http_gateway_trace_exporter_t  *e;

    c = rev->data;
    e = c->data;

    if (c->close) {
        c->close = 0;
    }

    if (e->state != NGX_HTTP_GATEWAY_TRACE_READING) {
        if (e->state == NGX_HTTP_GATEWAY_TRACE_SENDING && rev->ready) {
            /* an answer before the request was sent: nothing to keep */
            e->close = 1;
        }

        return;
    }

    if (ngx_http_gateway_trace_timedout(rev, e)) {
        return;
    }

    for ( ;; ) {
        if (e->body < 0) {
            n = c->recv(c, e->resp + e->resp_len,
                        NGX_HTTP_GATEWAY_TRACE_RESPONSE - e->resp_len);

        } else {
            n = c->recv(c, buf, (size_t) ngx_min(e->body, (off_t) sizeof(buf)));
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_gateway_trace_done(e, 0);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {

            /* a connection closed after a body read to its end is fine */

            ngx_http_gateway_trace_done(e, n == 0 && e->body >= 0
                                           && e->close && e->status);
            return;
        }

        if (e->body >= 0) {
            e->body -= n;

        } else {
            e->resp_len += n;
            e->rbuf.last += n;

            rc = ngx_http_gateway_trace_parse(e);

            if (rc == NGX_ERROR) {
                ngx_log_error(NGX_LOG_WARN, e->log, 0,
                              "gateway: trace export to %V: invalid answer",
                              e->pc.name);
                ngx_http_gateway_trace_done(e, 0);
                return;
            }

            if (rc == NGX_AGAIN) {
                continue;
            }
        }

        if (e->body == 0) {
            ngx_http_gateway_trace_done(e, 1);
            return;
        }
    }
}


/*
 * The answer's status line and headers, with nginx's parsers, as they
 * come: Content-Length, or else the body runs to the end of the
 * connection (and so does a chunked one: it is not read, the connection
 * is closed after its headers).
 */

static ngx_int_t
ngx_http_gateway_trace_parse(ngx_http_gateway_trace_exporter_t *e)
{
    size_t               n;
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = &e->req;

    if (e->status == 0) {
        rc = ngx_http_parse_status_line(r, &e->rbuf, &e->st);

        if (rc == NGX_AGAIN) {
            goto again;
        }

        if (rc != NGX_OK || e->st.http_version < NGX_HTTP_VERSION_10
            || e->st.code < 100)
        {
            return NGX_ERROR;
        }

        e->status = e->st.code;

        if (e->st.http_version < NGX_HTTP_VERSION_11) {
            e->close = 1;
        }

        r->state = 0;
    }

    for ( ;; ) {
        rc = ngx_http_parse_header_line(r, &e->rbuf, 1);

        if (rc == NGX_AGAIN) {
            goto again;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        n = r->header_name_end - r->header_name_start;

        if (n == sizeof("Content-Length") - 1
            && ngx_strncasecmp(r->header_name_start,
                               (u_char *) "Content-Length", n) == 0)
        {
            if (e->length != -1) {
                return NGX_ERROR;
            }

            e->length = ngx_atoof(r->header_start,
                                  r->header_end - r->header_start);

            if (e->length < 0) {
                return NGX_ERROR;
            }

        } else if (n == sizeof("Connection") - 1
                   && ngx_strncasecmp(r->header_name_start,
                                      (u_char *) "Connection", n) == 0)
        {
            if (ngx_strlcasestrn(r->header_start, r->header_end,
                                 (u_char *) "close", 5 - 1))
            {
                e->close = 1;
            }

        } else if (n == sizeof("Transfer-Encoding") - 1
                   && ngx_strncasecmp(r->header_name_start,
                                      (u_char *) "Transfer-Encoding", n)
                      == 0)
        {
            e->close = 1;
            e->length = 0;
        }
    }

    if (e->length < 0) {
        e->close = 1;
        e->body = 0;
        return NGX_OK;
    }

    e->body = e->length - (e->rbuf.last - e->rbuf.pos);

    if (e->body < 0) {
        e->close = 1;
        e->body = 0;
    }

    return NGX_OK;

again:

    return (e->resp_len == NGX_HTTP_GATEWAY_TRACE_RESPONSE)
           ? NGX_ERROR : NGX_AGAIN;
}


/* a kept connection: anything on it now is its end */

static void
ngx_http_gateway_trace_idle_handler(ngx_event_t *ev)
{
    u_char                              buf[1];
    ngx_connection_t                   *c;
    ngx_http_gateway_trace_exporter_t  *e;

    c = ev->data;
    e = c->data;

    if (c->close) {

        /* a graceful shutdown closes idle connections: flush first */

        c->close = 0;
        ngx_http_gateway_trace_shutdown(e);
        return;
    }

    if (!ev->write && c->recv(c, buf, 1) == NGX_AGAIN) {
        (void) ngx_handle_read_event(ev, 0);
        return;
    }

    if (ev->write) {
        return;
    }

    ngx_http_gateway_trace_close(e);
}


static void
ngx_http_gateway_trace_notice_handler(ngx_event_t *ev)
{
    ngx_connection_t                   *c;
    ngx_http_gateway_trace_exporter_t  *e;

    c = ev->data;
    e = c->data;

    if (!c->close) {
        return;
    }

    ngx_close_connection(c);
    e->notice = NULL;

    ngx_http_gateway_trace_shutdown(e);
}


static void
ngx_http_gateway_trace_done(ngx_http_gateway_trace_exporter_t *e,
    ngx_uint_t ok)
{
    ngx_uint_t         k;
    ngx_connection_t  *c;

    k = e->sending;
    c = e->pc.connection;

    if (c) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }
    }

    /* a kept connection the collector had closed: once more, anew */

    if (!ok && e->reused && e->resp_len == 0 && !e->exiting && k) {
        ngx_http_gateway_trace_close(e);
        e->state = NGX_HTTP_GATEWAY_TRACE_IDLE;
        ngx_http_gateway_trace_send(e);
        return;
    }

    e->state = NGX_HTTP_GATEWAY_TRACE_IDLE;
    e->sending = 0;

    if (ok && e->status >= 200 && e->status < 300) {
        e->exported += k;
        (void) ngx_atomic_fetch_add(&e->conf->stats->exported, k);

        if (e->down) {
            ngx_log_error(NGX_LOG_NOTICE, e->log, 0,
                          "gateway: trace export to %V works again, "
                          "%ui export requests failed before",
                          e->pc.name, e->down);
            e->down = 0;
        }

    } else if (k) {
        if (e->down++ == 0) {
            ngx_log_error(NGX_LOG_WARN, e->log, 0,
                          "gateway: trace export to %V failed (%s), "
                          "%ui spans dropped; dropping until it works",
                          e->pc.name,
                          ok ? "status not 2xx" : "no answer", k);
        }

        e->dropped += k;
        e->failed++;
        (void) ngx_atomic_fetch_add(&e->conf->stats->dropped, k);
        (void) ngx_atomic_fetch_add(&e->conf->stats->failed, 1);
        ok = 0;
    }

    ngx_http_gateway_trace_drop(e, k);

    if (!ok || e->close || c == NULL) {
        ngx_http_gateway_trace_close(e);

    } else {
        c->idle = 1;
        c->read->handler = ngx_http_gateway_trace_idle_handler;
        c->write->handler = ngx_http_gateway_trace_idle_handler;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_gateway_trace_close(e);
        }
    }

    if (ok) {
        ngx_http_gateway_trace_next(e);
    }
}


/* after a batch: the next one when it is full, or when shutting down */

static void
ngx_http_gateway_trace_next(ngx_http_gateway_trace_exporter_t *e)
{
    if (e->exiting) {
        if (e->n && ngx_current_msec < e->deadline) {
            ngx_http_gateway_trace_send(e);
            return;
        }

        ngx_http_gateway_trace_drop(e, e->n);
        ngx_http_gateway_trace_close(e);
        return;
    }

    if (e->n >= e->conf->batch) {
        ngx_http_gateway_trace_send(e);
    }
}


static void
ngx_http_gateway_trace_close(ngx_http_gateway_trace_exporter_t *e)
{
    if (e->pc.connection) {
        ngx_close_connection(e->pc.connection);
        e->pc.connection = NULL;
    }
}


static void
ngx_http_gateway_trace_timer_handler(ngx_event_t *ev)
{
    ngx_http_gateway_trace_exporter_t  *e;

    e = ev->data;

    if (ngx_exiting) {
        ngx_http_gateway_trace_shutdown(e);
        return;
    }

    if (e->state == NGX_HTTP_GATEWAY_TRACE_IDLE && e->n) {
        ngx_http_gateway_trace_send(e);
    }

    ngx_add_timer(ev, e->conf->interval);
}


/*
 * A graceful shutdown: what is left is sent within timeout, then the worker
 * may go (no timer of the exporter is left).
 */

static void
ngx_http_gateway_trace_shutdown(ngx_http_gateway_trace_exporter_t *e)
{
    if (e->exiting) {
        return;
    }

    e->exiting = 1;
    e->deadline = ngx_current_msec + e->conf->timeout;

    if (e->timer.timer_set) {
        ngx_del_timer(&e->timer);
    }

    if (e->state != NGX_HTTP_GATEWAY_TRACE_IDLE) {
        return;
    }

    if (e->n == 0) {
        ngx_http_gateway_trace_close(e);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, e->log, 0,
                  "gateway: trace export: sending the last %ui spans", e->n);

    ngx_http_gateway_trace_send(e);
}


/* while shutting down, what is left of timeout */

static ngx_msec_t
ngx_http_gateway_trace_timeout(ngx_http_gateway_trace_exporter_t *e)
{
    ngx_msec_int_t  left;

    if (!e->exiting) {
        return e->conf->timeout;
    }

    left = (ngx_msec_int_t) (e->deadline - ngx_current_msec);

    return left > 1 ? (ngx_msec_t) left : 1;
}
