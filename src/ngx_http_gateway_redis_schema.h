
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_HTTP_GATEWAY_REDIS_SCHEMA_H_INCLUDED_
#define _NGX_HTTP_GATEWAY_REDIS_SCHEMA_H_INCLUDED_


#include "ngx_http_gateway.h"
#include "ngx_gateway_feed.h"


/*
 * The registry's keys in Redis and every Lua script that reads or writes
 * them (ngx_http_gateway_redis_schema.c).  The formats take the prefix,
 * then the service name, then the instance id (all ngx_str_t *).
 */

#define NGX_HTTP_GATEWAY_KEY_EVENTS  "%Vevents"
#define NGX_HTTP_GATEWAY_KEY_FEED    "%Vfeed"
#define NGX_HTTP_GATEWAY_KEY_REV     "%V" NGX_HTTP_GATEWAY_KEY_SVC "%V"       \
                                     NGX_HTTP_GATEWAY_KEY_REV_TAIL
#define NGX_HTTP_GATEWAY_KEY_IDS     "%V" NGX_HTTP_GATEWAY_KEY_SVC "%V"       \
                                     NGX_HTTP_GATEWAY_KEY_IDS_TAIL
#define NGX_HTTP_GATEWAY_KEY_INST    "%V" NGX_HTTP_GATEWAY_KEY_SVC "%V"       \
                                     NGX_HTTP_GATEWAY_KEY_INST_TAIL "%V"

/* the pieces of a service's keys, for the sync's own formatting */
#define NGX_HTTP_GATEWAY_KEY_SVC       "svc:"
#define NGX_HTTP_GATEWAY_KEY_REV_TAIL  ":rev"
#define NGX_HTTP_GATEWAY_KEY_IDS_TAIL  ":ids"
#define NGX_HTTP_GATEWAY_KEY_INST_TAIL ":inst:"
#define NGX_HTTP_GATEWAY_KEY_SWEEPER "%Vsweeper"


/* the sync's: ngx_http_gateway_sync.c */

extern const ngx_str_t  ngx_http_gateway_lua_tick;
extern const ngx_str_t  ngx_http_gateway_lua_revisions;
extern const ngx_str_t  ngx_http_gateway_lua_snapshot;
extern const ngx_str_t  ngx_http_gateway_lua_restore;
extern const ngx_str_t  ngx_http_gateway_lua_expire;
extern const ngx_str_t  ngx_http_gateway_lua_release;

/* the admin API's: ngx_http_gateway_admin_redis.c */

extern const ngx_str_t  ngx_http_gateway_lua_register;
extern const ngx_str_t  ngx_http_gateway_lua_patch;
extern const ngx_str_t  ngx_http_gateway_lua_heartbeat;
extern const ngx_str_t  ngx_http_gateway_lua_deregister;


/* a change notice on P feed, parsed in place */

typedef struct {
    ngx_str_t                   epoch;
    ngx_str_t                   name;
    uint64_t                    revision;
    uint64_t                    time_us;    /* Redis time of the write */
    uint64_t                    registry;   /* P rev after it (0: none) */
    redisReply                 *entry;      /* as the snapshot script's, or
                                               NULL: instances not carried */
    void                       *mem;        /* to ngx_free() */
} ngx_http_gateway_feed_t;


ngx_int_t ngx_http_gateway_feed_parse(u_char *p, size_t len,
    ngx_http_gateway_feed_t *feed, ngx_log_t *log, const char **err);

size_t ngx_http_gateway_record_hash_size(const ngx_gateway_record_t *rec,
    unsigned mask, ngx_uint_t *nargs);
ngx_uint_t ngx_http_gateway_record_to_hash(const ngx_gateway_record_t *rec,
    unsigned mask, const char **argv, size_t *argvlen, u_char **p);

ngx_int_t ngx_http_gateway_key_parse_inst(ngx_str_t *prefix, u_char *key,
    size_t len, ngx_str_t *service, ngx_str_t *id);


#endif /* _NGX_HTTP_GATEWAY_REDIS_SCHEMA_H_INCLUDED_ */
