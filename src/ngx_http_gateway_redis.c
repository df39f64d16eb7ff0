
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_redis_schema.h"


/*
 * Redis on nginx's event loop: the URL, connections driven by nginx's
 * events, their setup (AUTH, SELECT), and the worker's own lazily made
 * link for admin writes.  The sync is in ngx_http_gateway_sync.c.
 */


static void ngx_http_gateway_redis_read(ngx_event_t *ev);
static void ngx_http_gateway_redis_write(ngx_event_t *ev);
static void ngx_http_gateway_redis_add_read(void *data);
static void ngx_http_gateway_redis_del_read(void *data);
static void ngx_http_gateway_redis_add_write(void *data);
static void ngx_http_gateway_redis_del_write(void *data);
static void ngx_http_gateway_redis_cleanup(void *data);

static void ngx_http_gateway_admin_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_gateway_admin_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_gateway_admin_on_reply(redisAsyncContext *ac, void *r,
    void *privdata);


static redisAsyncContext        *ngx_http_gateway_admin_link;


/* what Redis said, escaped for a log line */

ngx_str_t *
ngx_http_gateway_redis_errstr(redisReply *reply, ngx_str_t *v, u_char *buf)
{
    if (reply->type != REDIS_REPLY_ERROR && reply->type != REDIS_REPLY_STATUS) {
        ngx_str_set(v, "unexpected reply");
        return v;
    }

    ngx_http_gateway_log_text(v, buf, reply->str, reply->len);

    return v;
}


ngx_int_t
ngx_http_gateway_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_gateway_redis_conf_t *rc)
{
    u_char     *p, *last, *at, *colon, *slash;
    ngx_int_t   n;
    ngx_str_t   host;
    in_addr_t   a;
#if (NGX_HAVE_INET6)
    u_char      a6[16];
#endif

    p = url->data;
    last = url->data + url->len;

    if (url->len > 5 && ngx_strncmp(p, "unix:", 5) == 0) {
        p += 5;

        colon = ngx_strlchr(p, last, '?');

        if (colon) {
            if (last - colon < 5 || ngx_strncmp(colon, "?db=", 4) != 0) {
                return NGX_ERROR;
            }

            n = ngx_atoi(colon + 4, last - colon - 4);
            if (n == NGX_ERROR || n > 255) {
                return NGX_ERROR;
            }

            rc->db = n;
            last = colon;
        }

        if (p == last || *p != '/') {
            return NGX_ERROR;
        }

        rc->unix_socket = 1;
        rc->host.len = last - p;
        rc->host.data = ngx_pnalloc(cf->pool, rc->host.len + 1);
        if (rc->host.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(rc->host.data, p, rc->host.len);
        rc->host.data[rc->host.len] = '\0';
        rc->addr = rc->host;

        return NGX_OK;
    }

    if (url->len <= 8 || ngx_strncmp(p, "redis://", 8) != 0) {
        return NGX_ERROR;
    }

    p += 8;

    at = NULL;
    for (slash = p; slash < last; slash++) {
        if (*slash == '@') {
            at = slash;
        }
    }

    if (at) {
        colon = ngx_strlchr(p, at, ':');

        if (colon) {
            rc->user.data = p;
            rc->user.len = colon - p;
            rc->password.data = colon + 1;
            rc->password.len = at - colon - 1;

        } else {
            rc->password.data = p;
            rc->password.len = at - p;
        }

        p = at + 1;
    }

    slash = ngx_strlchr(p, last, '/');

    if (slash) {
        if (slash + 1 < last) {
            n = ngx_atoi(slash + 1, last - slash - 1);
            if (n == NGX_ERROR || n > 255) {
                return NGX_ERROR;
            }

            rc->db = n;
        }

        last = slash;
    }

    rc->port = 6379;

    if (p < last && *p == '[') {
        colon = ngx_strlchr(p, last, ']');
        if (colon == NULL) {
            return NGX_ERROR;
        }

        host.data = p + 1;
        host.len = colon - p - 1;
        p = colon + 1;

        if (p < last && *p != ':') {
            return NGX_ERROR;
        }

    } else {
        colon = ngx_strlchr(p, last, ':');

        host.data = p;
        host.len = (colon ? colon : last) - p;
        p = colon ? colon : last;
    }

    if (p < last) {
        n = ngx_atoi(p + 1, last - p - 1);
        if (n < 1 || n > 65535) {
            return NGX_ERROR;
        }

        rc->port = (in_port_t) n;
    }

    if (host.len == 0) {
        return NGX_ERROR;
    }

    a = ngx_inet_addr(host.data, host.len);

    if (a == INADDR_NONE) {
#if (NGX_HAVE_INET6)
        if (host.len > NGX_INET6_ADDRSTRLEN
            || ngx_inet6_addr(host.data, host.len, a6) != NGX_OK)
        {
            return NGX_ERROR;
        }

#else
        return NGX_ERROR;
#endif
    }

    rc->host.len = host.len;
    rc->host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (rc->host.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rc->host.data, host.data, host.len);
    rc->host.data[host.len] = '\0';

    rc->addr.data = ngx_pnalloc(cf->pool, host.len + sizeof("[]:65535") - 1);
    if (rc->addr.data == NULL) {
        return NGX_ERROR;
    }

    rc->addr.len = ngx_sprintf(rc->addr.data,
                               (a == INADDR_NONE) ? "[%V]:%d" : "%V:%d",
                               &rc->host, (int) rc->port)
                   - rc->addr.data;

    return NGX_OK;
}


redisAsyncContext *
ngx_http_gateway_redis_connect(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log, redisConnectCallback *on_connect,
    redisDisconnectCallback *on_disconnect, ngx_uint_t select)
{
    char                           db[NGX_INT_T_LEN + 1];
    ngx_connection_t              *c;
    redisAsyncContext             *ac;
    ngx_http_gateway_redis_conf_t *rc;

    rc = gmcf->redis;

    if (rc->unix_socket) {
        ac = redisAsyncConnectUnix((char *) rc->host.data);

    } else {
        ac = redisAsyncConnect((char *) rc->host.data, rc->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "gateway: redis connection to \"%V\" failed: "
                      "out of memory", &rc->addr);
        return NULL;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "gateway: redis connection to \"%V\" failed: %s",
                      &rc->addr, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        redisAsyncFree(ac);
        return NULL;
    }

    c->data = ac;
    c->read->handler = ngx_http_gateway_redis_read;
    c->write->handler = ngx_http_gateway_redis_write;
    c->read->log = log;
    c->write->log = log;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_gateway_redis_add_read;
    ac->ev.delRead = ngx_http_gateway_redis_del_read;
    ac->ev.addWrite = ngx_http_gateway_redis_add_write;
    ac->ev.delWrite = ngx_http_gateway_redis_del_write;
    ac->ev.cleanup = ngx_http_gateway_redis_cleanup;

    ac->data = gmcf;

    (void) redisAsyncSetConnectCallback(ac, on_connect);
    (void) redisAsyncSetDisconnectCallback(ac, on_disconnect);

    if (rc->password.len) {
        if (rc->user.len) {
            (void) redisAsyncCommand(ac, ngx_http_gateway_redis_on_error,
                                     "AUTH", "AUTH %b %b",
                                     rc->user.data, rc->user.len,
                                     rc->password.data, rc->password.len);

        } else {
            (void) redisAsyncCommand(ac, ngx_http_gateway_redis_on_error,
                                     "AUTH", "AUTH %b",
                                     rc->password.data, rc->password.len);
        }
    }

    if (select && rc->db) {
        *ngx_sprintf((u_char *) db, "%ui", rc->db) = '\0';
        (void) redisAsyncCommand(ac, ngx_http_gateway_redis_on_error,
                                 "SELECT", "SELECT %s", db);
    }

    return ac;
}


/* a command whose answer matters only if it is an error: privdata names it */

void
ngx_http_gateway_redis_on_error(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply  *reply = r;

    u_char     buf[NGX_GATEWAY_LOG_TEXT_SIZE];
    ngx_str_t  v;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "gateway: redis %s failed: %V",
                      (char *) privdata,
                      ngx_http_gateway_redis_errstr(reply, &v, buf));
    }
}


static void
ngx_http_gateway_redis_read(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_http_gateway_redis_write(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    redisAsyncHandleWrite(c->data);
}


/* level-triggered: hiredis 0.14 reads at most 16k per call */

static void
ngx_http_gateway_redis_add_read(void *data)
{
    ngx_connection_t *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_gateway_redis_del_read(void *data)
{
    ngx_connection_t *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_gateway_redis_add_write(void *data)
{
    ngx_connection_t *c = data;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_gateway_redis_del_write(void *data)
{
    ngx_connection_t *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis closes the socket itself, right after this */

static void
ngx_http_gateway_redis_cleanup(void *data)
{
    ngx_connection_t *c = data;

    ngx_http_gateway_redis_del_read(c);
    ngx_http_gateway_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/* the admin link is the worker's own, whoever holds the lease */

void
ngx_http_gateway_redis_admin_close(void)
{
    redisAsyncContext  *ac;

    ac = ngx_http_gateway_admin_link;

    if (ac) {
        ngx_http_gateway_admin_link = NULL;
        redisAsyncFree(ac);
    }
}


ngx_http_gateway_redis_call_t *
ngx_http_gateway_redis_call(ngx_http_gateway_main_conf_t *gmcf, int argc,
    const char **argv, const size_t *argvlen, ngx_log_t *log)
{
    ngx_http_gateway_redis_call_t  *call;

    if (ngx_http_gateway_admin_link == NULL) {
        ngx_http_gateway_admin_link = ngx_http_gateway_redis_connect(gmcf,
                                        ngx_cycle->log,
                                        ngx_http_gateway_admin_on_connect,
                                        ngx_http_gateway_admin_on_disconnect,
                                        1);
        if (ngx_http_gateway_admin_link == NULL) {
            return NULL;
        }
    }

    call = ngx_calloc(sizeof(ngx_http_gateway_redis_call_t), log);
    if (call == NULL) {
        return NULL;
    }

    if (redisAsyncCommandArgv(ngx_http_gateway_admin_link,
                              ngx_http_gateway_admin_on_reply, call,
                              argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(call);
        return NULL;
    }

    return call;
}


static void
ngx_http_gateway_admin_on_connect(const redisAsyncContext *ac, int status)
{
    if (status == REDIS_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "gateway: redis connection for admin writes failed: %s",
                  ac->errstr);

    if (ac == ngx_http_gateway_admin_link) {
        ngx_http_gateway_admin_link = NULL;
    }
}


static void
ngx_http_gateway_admin_on_disconnect(const redisAsyncContext *ac, int status)
{
    if (ac == ngx_http_gateway_admin_link) {
        ngx_http_gateway_admin_link = NULL;
    }
}


static void
ngx_http_gateway_admin_on_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_gateway_redis_call_t *call = privdata;

    if (call->handler) {
        call->handler(call, r);
    }

    ngx_free(call);
}
