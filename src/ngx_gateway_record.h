
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_RECORD_H_INCLUDED_
#define _NGX_GATEWAY_RECORD_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>


/*
 * Validation of registry records (service names, instance ids, addresses,
 * weights, states, metadata) and the address allowlist.  Plain C, shared by
 * the Redis sync, the admin API and the state file.
 */


#define NGX_GATEWAY_NAME_MAX      64
#define NGX_GATEWAY_ZONE_MAX      64
#define NGX_GATEWAY_META_MAX      1024    /* in the canonical form */
#define NGX_GATEWAY_META_INPUT    65536   /* as sent, whitespace included */
#define NGX_GATEWAY_WEIGHT_MAX    1000
#define NGX_GATEWAY_TTL_MAX       86400
#define NGX_GATEWAY_ADDR_TEXT_MAX 128

#define NGX_GATEWAY_STATE_UP      0
#define NGX_GATEWAY_STATE_DRAIN   1
#define NGX_GATEWAY_STATE_DOWN    2


typedef struct {
    union {
        struct sockaddr      sockaddr;
        struct sockaddr_in   sockaddr_in;
        struct sockaddr_in6  sockaddr_in6;
        struct sockaddr_un   sockaddr_un;
    } u;
    socklen_t   socklen;
    size_t      text_len;
    char        text[NGX_GATEWAY_ADDR_TEXT_MAX];  /* canonical, no NUL */
} ngx_gateway_addr_t;


typedef struct {
    int            family;     /* AF_INET, AF_INET6 or AF_UNIX ("unix:") */
    unsigned char  addr[16];
    unsigned char  mask[16];
} ngx_gateway_cidr_t;


typedef struct {
    ngx_gateway_addr_t   addr;
    unsigned             has_addr;
    unsigned             weight;
    unsigned             ttl;       /* seconds, 0: no heartbeat needed */
    int                  state;
    const char          *zone;
    size_t               zone_len;
    const char          *meta;      /* a JSON object, canonical form */
    size_t               meta_len;
    char                 zone_buf[NGX_GATEWAY_ZONE_MAX];
    char                 meta_buf[NGX_GATEWAY_META_MAX];
} ngx_gateway_record_t;


/* 1..64 of [A-Za-z0-9._-], starting with a letter or digit */
int ngx_gateway_valid_name(const char *s, size_t len);
/* 0..64 of [A-Za-z0-9._-] */
int ngx_gateway_valid_zone(const char *s, size_t len);

/* "up", "drain", "down"; -1 otherwise */
int ngx_gateway_parse_state(const char *s, size_t len);
const char *ngx_gateway_state_name(int state);

/* unsigned decimal without sign or spaces, <= max; 0 or -1 */
int ngx_gateway_parse_uint(const char *s, size_t len, uint64_t max,
    uint64_t *out);

/*
 * "192.0.2.1:8080", "[2001:db8::1]:8080" or "unix:/path/to.sock"; no host
 * names.  Port 1..65535; a path is valid UTF-8 without control characters.
 * Fills addr, including its canonical text.  0 or -1.
 */
int ngx_gateway_parse_addr(const char *s, size_t len,
    ngx_gateway_addr_t *addr);

/* "10.0.0.0/8", "192.0.2.7", "::1", "fd00::/8", "unix:"; 0 or -1 */
int ngx_gateway_parse_cidr(const char *s, size_t len,
    ngx_gateway_cidr_t *cidr);
int ngx_gateway_addr_allowed(const ngx_gateway_addr_t *addr,
    const ngx_gateway_cidr_t *rules, size_t n);

/* defaults: weight 1, state up, ttl 0, zone "", metadata "{}" */
void ngx_gateway_record_init(ngx_gateway_record_t *rec);

/*
 * Applies one field as stored in a Redis hash ("address", "weight", "zone",
 * "state", "metadata", "ttl"), all values as text.  Unknown fields are
 * ignored.  On error returns -1 and points *err at a static message
 * 'invalid "FIELD": REASON'.  rec keeps its own copies of zone and
 * metadata; metadata is kept in the canonical form of
 * ngx_gateway_json_encode(), and its strings (keys and values, unescaped)
 * must be valid UTF-8 without control characters.
 */
int ngx_gateway_record_set(ngx_gateway_record_t *rec, const char *field,
    size_t field_len, const char *val, size_t val_len, const char **err);

/*
 * The message for a field whose value has the wrong form, e.g.
 * 'invalid "weight": must be an integer 1..1000'; NULL for other fields.
 */
const char *ngx_gateway_record_field_error(const char *field,
    size_t field_len);

/* 0 when rec is complete (it has an address), else -1 and *err */
int ngx_gateway_record_check(const ngx_gateway_record_t *rec,
    const char **err);


#endif /* _NGX_GATEWAY_RECORD_H_INCLUDED_ */
