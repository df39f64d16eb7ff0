
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_record.h"
#include "ngx_gateway_swrr.h"
#include "ngx_gateway_text.h"


#define NGX_HTTP_GATEWAY_SH_MAGIC      0x67770003

#define NGX_HTTP_GATEWAY_EPOCH_LEN     32

#define NGX_HTTP_GATEWAY_JSON_PARTIAL  1
#define NGX_HTTP_GATEWAY_JSON_LENIENT  2

#define NGX_HTTP_GATEWAY_DUMP_SUMMARY  0
#define NGX_HTTP_GATEWAY_DUMP_FULL     1
#define NGX_HTTP_GATEWAY_DUMP_LINES    2


typedef struct ngx_http_gateway_redis_s  ngx_http_gateway_redis_t;


/*
 * Outside text for a log line, e.g.
 *     u_char     buf[NGX_GATEWAY_LOG_TEXT_SIZE];
 *     ngx_str_t  v;
 *     ngx_http_gateway_log_text(&v, buf, name.data, name.len);
 *     ngx_log_error(..., "\"%V\"", &v);
 */

#define ngx_http_gateway_log_text(v, buf, s, n)                              \
    (v)->data = (buf);                                                        \
    (v)->len = ngx_gateway_text_log((char *) (buf), (const char *) (s), (n))


/*
 * An instance lives in the shared zone.  The fields above "refs" describe
 * it and change only under the zone lock; a request copies what it needs
 * (sockaddr, name) while holding the lock.  A request that chose an
 * instance holds a reference, so an instance removed from its service
 * ("removed") is freed by whoever drops the last reference.
 */

typedef struct {
    ngx_gateway_swrr_t          rr;

    uint64_t                    uid;
    struct sockaddr            *sockaddr;
    socklen_t                   socklen;

    ngx_str_t                   id;
    ngx_str_t                   name;       /* the address as text */
    ngx_str_t                   zone;
    ngx_str_t                   meta;
    u_char                     *data;       /* sockaddr and the strings */

    ngx_uint_t                  weight;
    ngx_uint_t                  state;
    ngx_uint_t                  ttl;
    ngx_msec_t                  expires;    /* embedded registry only */

    ngx_uint_t                  refs;
    ngx_uint_t                  conns;
    ngx_uint_t                  requests;
    ngx_uint_t                  fails;
    ngx_uint_t                  mark;

    unsigned                    removed:1;
} ngx_http_gateway_instance_t;


typedef struct {
    ngx_str_node_t              sn;
    u_char                      name[NGX_GATEWAY_NAME_MAX];
    uint64_t                    revision;
    uint64_t                    written;    /* by this gateway's admin */
    ngx_http_gateway_instance_t **instances;
    ngx_uint_t                  ninstances;
    ngx_uint_t                  nalloc;
    ngx_uint_t                  mark;
} ngx_http_gateway_service_t;


/* a record to apply, with its instance id */

typedef struct {
    ngx_str_t                   id;
    ngx_gateway_record_t        rec;
} ngx_http_gateway_entry_t;


typedef struct {
    ngx_uint_t                  magic;
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;

    uint64_t                    next_uid;
    ngx_uint_t                  generation;  /* bumped by every change */
    ngx_uint_t                  saved;       /* generation in state file */
    ngx_uint_t                  nservices;
    ngx_uint_t                  ninstances;
    ngx_uint_t                  allocated;   /* removed ones still held too */
    ngx_uint_t                  mark;
    ngx_msec_t                  next_expire;
    time_t                      stale_since; /* Redis lost the registry */
    u_char                      epoch[NGX_HTTP_GATEWAY_EPOCH_LEN];
    size_t                      epoch_len;   /* 0: never seen one */

    ngx_pid_t                   lease_pid;
    ngx_msec_t                  lease_expires;

} ngx_http_gateway_sh_t;


typedef struct {
    ngx_str_t                   host;       /* numeric, or unix path */
    in_port_t                   port;
    ngx_uint_t                  unix_socket;
    ngx_uint_t                  db;
    ngx_str_t                   user;
    ngx_str_t                   password;
} ngx_http_gateway_redis_conf_t;


typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_http_gateway_sh_t      *sh;
    ngx_slab_pool_t            *shpool;

    ngx_http_gateway_redis_conf_t *redis;   /* NULL: embedded registry */
    ngx_str_t                   prefix;
    ngx_str_t                   state_file;
    ngx_msec_t                  resync;

    ngx_array_t                *allow;      /* ngx_gateway_cidr_t */
    ngx_uint_t                  allow_all;

    ngx_log_t                  *log;
} ngx_http_gateway_main_conf_t;


extern ngx_module_t  ngx_http_gateway_module;


/* registry: ngx_http_gateway_registry.c */

ngx_int_t ngx_http_gateway_registry_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_http_gateway_service_t *ngx_http_gateway_service_lookup(
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *name);
ngx_http_gateway_service_t *ngx_http_gateway_service_find(
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *name, uint32_t hash);
ngx_int_t ngx_http_gateway_upsert_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *service, ngx_str_t *id, ngx_gateway_record_t *rec,
    ngx_uint_t *created);
ngx_int_t ngx_http_gateway_upsert_batch_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_entry_t *entries, ngx_uint_t n,
    ngx_http_gateway_instance_t **fresh);
int ngx_http_gateway_entry_cmp(const void *one, const void *two);
ngx_int_t ngx_http_gateway_remove_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_str_t *id);
ngx_http_gateway_instance_t *ngx_http_gateway_instance_find(
    ngx_http_gateway_service_t *svc, ngx_str_t *id);
void ngx_http_gateway_service_sweep_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc,
    ngx_uint_t mark);
void ngx_http_gateway_service_delete_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc);
ngx_http_gateway_service_t *ngx_http_gateway_service_get_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *name);
void ngx_http_gateway_instance_release_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_instance_t *inst);
ngx_uint_t ngx_http_gateway_expire_locked(ngx_http_gateway_main_conf_t *gmcf);
ngx_int_t ngx_http_gateway_addr_allowed(ngx_http_gateway_main_conf_t *gmcf,
    ngx_gateway_addr_t *addr);
ngx_int_t ngx_http_gateway_record_from_json(ngx_gateway_json_tok_t *toks,
    int obj, ngx_gateway_record_t *rec, ngx_uint_t flags, const char **err);
ngx_int_t ngx_http_gateway_dump(ngx_pool_t *pool,
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *service, ngx_uint_t mode,
    ngx_buf_t **out);

ngx_int_t ngx_http_gateway_dump_one(ngx_pool_t *pool,
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *service, ngx_str_t *id,
    ngx_buf_t **out);

/* state file: ngx_http_gateway_state_file.c */

ngx_int_t ngx_http_gateway_state_load(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log);
ngx_int_t ngx_http_gateway_state_save(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log);

/* redis: ngx_http_gateway_redis.c */

ngx_int_t ngx_http_gateway_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_gateway_redis_conf_t *rc);
void ngx_http_gateway_sync_start(ngx_http_gateway_main_conf_t *gmcf,
    ngx_cycle_t *cycle);
void ngx_http_gateway_sync_stop(void);
void ngx_http_gateway_redis_admin_close(void);

/*
 * A command sent on the serving worker's own connection.  The handler gets
 * reply NULL when Redis is unreachable; a caller that goes away before the
 * reply sets call->handler to NULL.
 */

typedef struct ngx_http_gateway_redis_call_s  ngx_http_gateway_redis_call_t;

typedef void (*ngx_http_gateway_redis_handler_pt)(
    ngx_http_gateway_redis_call_t *call, redisReply *reply);

struct ngx_http_gateway_redis_call_s {
    ngx_http_gateway_redis_handler_pt  handler;
    void                              *data;
};

ngx_int_t ngx_http_gateway_record_from_hash(ngx_http_gateway_main_conf_t *gmcf,
    redisReply *fields, ngx_gateway_record_t *rec, const char **err);
ngx_http_gateway_redis_call_t *ngx_http_gateway_redis_call(
    ngx_http_gateway_main_conf_t *gmcf, int argc, const char **argv,
    const size_t *argvlen, ngx_log_t *log);

#if (NGX_HTTP_SSL)

/* TLS sessions of instances: ngx_http_gateway_ssl_session.c */

ngx_int_t ngx_http_gateway_ssl_session_set(ngx_peer_connection_t *pc,
    uint64_t uid);
void ngx_http_gateway_ssl_session_save(ngx_peer_connection_t *pc,
    uint64_t uid);

#endif


#endif /* _NGX_HTTP_GATEWAY_H_INCLUDED_ */
