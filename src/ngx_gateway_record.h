
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

#include "ngx_gateway_json.h"
#include "ngx_http_gateway_health_range.h"


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


/* a short text: 0..64 of [A-Za-z0-9._-] (a zone) */

typedef struct {
    const char          *data;
    size_t               len;
    char                 buf[NGX_GATEWAY_ZONE_MAX];
} ngx_gateway_word_t;


/* a health probe's URI (see ngx_http_gateway_health_range.h) */
typedef struct {
    const char          *data;
    size_t               len;
    char                 buf[NGX_GATEWAY_HEALTH_URI_MAX];
} ngx_gateway_path_t;


typedef struct {
    unsigned             given;     /* fields set, bit 1 << index */
    ngx_gateway_addr_t   addr;
    unsigned             has_addr;
    unsigned             weight;
    unsigned             ttl;       /* seconds, 0: no heartbeat needed */
    int                  state;
    unsigned             backup;    /* 1: only when no primary is left */
    ngx_gateway_word_t   zone;
    const char          *meta;      /* a JSON object, canonical form */
    size_t               meta_len;
    char                 meta_buf[NGX_GATEWAY_META_MAX];
    ngx_gateway_path_t   health_uri;    /* "": the upstream's */
    ngx_gateway_word_t   health_status; /* "": the upstream's */
} ngx_gateway_record_t;


/*
 * The fields of a record, in one table that parsing and validation, JSON
 * (admin API bodies, dumps, the state file) and the Redis hash (its reader
 * and writers) all go through.  A field's value as Redis stores it is
 * also the text that JSON carries, as a string (address, zone, state), a
 * number (weight, ttl), a boolean (backup; "true" or "false" in Redis) or
 * an object (metadata).
 */

#define NGX_GATEWAY_FIELD_STRING  0
#define NGX_GATEWAY_FIELD_NUMBER  1
#define NGX_GATEWAY_FIELD_OBJECT  2
#define NGX_GATEWAY_FIELD_BOOL    3       /* JSON true/false, Redis text */

#define NGX_GATEWAY_FIELD_BUF     24      /* a number as text */

#define NGX_GATEWAY_RECORD_PARTIAL  1     /* JSON: fields may be missing */
#define NGX_GATEWAY_RECORD_LENIENT  2     /* JSON: unknown ones skipped */

#define NGX_GATEWAY_RECORD_ALL      (~0u)

typedef struct ngx_gateway_field_s  ngx_gateway_field_t;

struct ngx_gateway_field_s {
    const char   *name;
    size_t        len;
    int           json;         /* NGX_GATEWAY_FIELD_* */
    int           late;         /* JSON: written after an instance's
                                   expiry, at the end of the record */
    size_t        offset;       /* of its value in ngx_gateway_record_t */
    uint64_t      min;          /* a number's limits, a word's */
    uint64_t      max;          /* longest length */
    const char   *def;          /* the default as text; NULL: required */
    const char   *error;        /* a value of the wrong form */
    const char   *missing;      /* a required field not given */

    /* parses and checks val into rec; 0, or -1 and *err */
    int         (*set)(const ngx_gateway_field_t *f,
                       ngx_gateway_record_t *rec,
                       const char *val, size_t len, const char **err);

    /* the value as text; numbers are written into buf */
    const char *(*get)(const ngx_gateway_field_t *f,
                       const ngx_gateway_record_t *rec,
                       char *buf, size_t *len);
    int           optional;     /* "" is its default: left out of JSON
                                   and of a whole record's hash */
};

/* ends with a field of name NULL */
extern const ngx_gateway_field_t  ngx_gateway_fields[];

#define ngx_gateway_field_bit(f)  (1u << ((f) - ngx_gateway_fields))


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

/*
 * defaults: weight 1, state up, backup false, ttl 0, zone "",
 * metadata "{}"
 */
void ngx_gateway_record_init(ngx_gateway_record_t *rec);
void ngx_gateway_record_defaults(ngx_gateway_record_t *rec);

/*
 * Applies one field as stored in a Redis hash ("address", "weight", "zone",
 * "state", "backup", "metadata", "ttl"), all values as text ("true" or
 * "false" for a boolean).  Unknown fields are
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

/* 0 when rec has every required field (an address), else -1 and *err */
int ngx_gateway_record_check(const ngx_gateway_record_t *rec,
    const char **err);

/* the field of that name, or NULL */
const ngx_gateway_field_t *ngx_gateway_field_find(const char *name,
    size_t len);

/* 'unknown field; known fields are "address", ... and "metadata"' */
const char *ngx_gateway_record_unknown(void);

/* the value of field f of rec as text, as Redis stores it */
const char *ngx_gateway_record_get(const ngx_gateway_record_t *rec,
    const ngx_gateway_field_t *f, char *buf, size_t *len);

/* 1 when every field of a and b has the same value, else 0 */
int ngx_gateway_record_same(const ngx_gateway_record_t *a,
    const ngx_gateway_record_t *b);

/*
 * Copies the fields of src named in mask (bits ngx_gateway_field_bit())
 * into dst, which keeps its own copies; 0 or -1.
 */
int ngx_gateway_record_merge(ngx_gateway_record_t *dst,
    const ngx_gateway_record_t *src, unsigned mask);

/*
 * Applies the JSON object at toks[obj] (from ngx_gateway_json_parse()) to
 * rec: each known field must have its JSON type, then goes through
 * ngx_gateway_record_set(); "id" (a string) is allowed and ignored.
 * Flags NGX_GATEWAY_RECORD_*.  0, or -1 and *err.
 */
int ngx_gateway_record_from_json(const ngx_gateway_json_tok_t *toks, int obj,
    ngx_gateway_record_t *rec, unsigned flags, const char **err);

/*
 * Writes '"name":value,' for each field of rec whose late flag is late,
 * in the table's order, and returns the length written; with out == NULL
 * only returns the length.
 */
size_t ngx_gateway_record_json(const ngx_gateway_record_t *rec, int late,
    char *out);


#endif /* _NGX_GATEWAY_RECORD_H_INCLUDED_ */
