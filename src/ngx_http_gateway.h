
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


/*
 * What the module declares from here on is its own: hidden, so that calls
 * and globals inside the .so go direct, without the PLT and the GOT (nginx
 * finds the module through ngx_modules[], defined outside this header).
 */

#if !(NGX_HTTP_GATEWAY_EXPORTED)
#pragma GCC visibility push(hidden)
#endif


/*
 * Kept out of line: inlined, what only some requests need (or a loop of
 * calls) would give every request's functions a bigger frame (registers
 * saved, a stack canary for its locals)
 */
#if defined(__GNUC__)
#define NGX_HTTP_GATEWAY_NOINLINE  __attribute__ ((noinline))
#else
#define NGX_HTTP_GATEWAY_NOINLINE
#endif


#define NGX_HTTP_GATEWAY_SH_MAGIC      0x6777000b

#define NGX_HTTP_GATEWAY_EPOCH_LEN     32

/* the registry's marker as it may go into the state file's JSON header */
#define ngx_http_gateway_valid_marker(s, n)                                   \
    ((n) > 0 && (n) <= NGX_HTTP_GATEWAY_EPOCH_LEN                             \
     && ngx_gateway_valid_zone((const char *) (s), (n)))

/*
 * Slab chunks are aligned to their power-of-two size, so a member aligned
 * within a zone object is aligned in memory too.
 */
#define NGX_HTTP_GATEWAY_LINE_SIZE     64
#define NGX_HTTP_GATEWAY_LINE                                                 \
    __attribute__ ((aligned (NGX_HTTP_GATEWAY_LINE_SIZE)))

/* a snapshot's total weight up to which round robin gets a table */
#define NGX_HTTP_GATEWAY_ORDER_MAX     4096

/* instances of a service: peers' up weights add up within 32 bits */
#define NGX_HTTP_GATEWAY_INSTANCES_MAX  4000000

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
 * Memory that readers may still see when a writer unlinks it is retired,
 * not freed: it goes on the zone's retired list with the epoch of its
 * unlinking, and is freed once no worker can still be reading it (see
 * ngx_http_gateway_snapshot.c).
 */

typedef struct ngx_http_gateway_retired_s  ngx_http_gateway_retired_t;

struct ngx_http_gateway_retired_s {
    ngx_http_gateway_retired_t  *next;
    ngx_atomic_uint_t            epoch;
    uint32_t                     type;      /* 0: not retired */
    uint32_t                     nsnaps;    /* snapshots pointing here:
                                               data, instance, service */
};

#define NGX_HTTP_GATEWAY_RETIRED_SNAPSHOT  1
#define NGX_HTTP_GATEWAY_RETIRED_DATA      2
#define NGX_HTTP_GATEWAY_RETIRED_INSTANCE  3
#define NGX_HTTP_GATEWAY_RETIRED_SERVICE   4


/*
 * An instance's record: its sockaddr, weight, state and strings, replaced
 * as a whole on a change (snapshots may still point at the old one).  The
 * sockaddr follows the header, then id, address text, zone, metadata,
 * health URI and health status, each its length long; the accessors below
 * find them.  Lengths fit 16 bits: NGX_GATEWAY_*_MAX bound them.
 */

typedef struct {
    ngx_http_gateway_retired_t  rt;
    ngx_uint_t                  mark;       /* the writer's sweeps */
    u_char                     *strings;    /* after the sockaddr */
    uint32_t                    weight;
    uint32_t                    ttl;
    uint16_t                    id_len;
    uint16_t                    name_len;   /* the address as text */
    uint16_t                    zone_len;
    uint16_t                    meta_len;
    uint16_t                    health_uri_len;
    uint16_t                    health_status_len;
    uint8_t                     socklen;
    uint8_t                     state;
    uint8_t                     backup;
} ngx_http_gateway_data_t;


#define ngx_http_gateway_data_sockaddr(d)                                     \
    ((struct sockaddr *) ((d) + 1))

#define ngx_http_gateway_data_strings(d)  ((d)->strings)


static ngx_inline ngx_str_t
ngx_http_gateway_data_str(u_char *p, size_t len)
{
    ngx_str_t  s;

    s.data = p;
    s.len = len;

    return s;
}

/* where each string begins: right after the one before it */

#define ngx_http_gateway_data_name_at(d)                                      \
    (ngx_http_gateway_data_strings(d) + (d)->id_len)
#define ngx_http_gateway_data_zone_at(d)                                      \
    (ngx_http_gateway_data_name_at(d) + (d)->name_len)
#define ngx_http_gateway_data_meta_at(d)                                      \
    (ngx_http_gateway_data_zone_at(d) + (d)->zone_len)
#define ngx_http_gateway_data_health_uri_at(d)                                \
    (ngx_http_gateway_data_meta_at(d) + (d)->meta_len)
#define ngx_http_gateway_data_health_status_at(d)                             \
    (ngx_http_gateway_data_health_uri_at(d) + (d)->health_uri_len)

#define ngx_http_gateway_data_id(d)                                           \
    ngx_http_gateway_data_str(ngx_http_gateway_data_strings(d), (d)->id_len)
#define ngx_http_gateway_data_name(d)                                         \
    ngx_http_gateway_data_str(ngx_http_gateway_data_name_at(d), (d)->name_len)
#define ngx_http_gateway_data_zone(d)                                         \
    ngx_http_gateway_data_str(ngx_http_gateway_data_zone_at(d), (d)->zone_len)
#define ngx_http_gateway_data_meta(d)                                         \
    ngx_http_gateway_data_str(ngx_http_gateway_data_meta_at(d), (d)->meta_len)
#define ngx_http_gateway_data_health_uri(d)                                   \
    ngx_http_gateway_data_str(ngx_http_gateway_data_health_uri_at(d),         \
                              (d)->health_uri_len)
#define ngx_http_gateway_data_health_status(d)                                \
    ngx_http_gateway_data_str(ngx_http_gateway_data_health_status_at(d),      \
                              (d)->health_status_len)


/* counters of an instance, kept by the attempt observers, all workers */

#define NGX_HTTP_GATEWAY_FAILS  4  /* connect, timeout, status, error */

typedef struct {
    ngx_atomic_t                requests;
    ngx_atomic_t                active;
    ngx_atomic_t                fails[NGX_HTTP_GATEWAY_FAILS];
                                            /* see ngx_http_gateway_fail() */
    ngx_atomic_t                retries;    /* attempts after the first */
    ngx_atomic_t                time;       /* ms of all attempts */
} ngx_http_gateway_stats_t;


/*
 * What the metrics observer counts per service, all workers: requests by
 * the class of their last attempt's status ([0]: no response) and the
 * upstream response times of attempts, as a histogram in milliseconds.
 */

#define NGX_HTTP_GATEWAY_BUCKETS  11

typedef struct {
    ngx_atomic_t                requests[6];
    ngx_atomic_t                le[NGX_HTTP_GATEWAY_BUCKETS + 1];
    ngx_atomic_t                time_sum;   /* ms */
    ngx_atomic_t                attempts;
} ngx_http_gateway_service_stats_t;


/*
 * An instance's active health, written by the prober of the worker that
 * holds the lease (ngx_http_gateway_health.c), read by requests: state
 * 0 until the first probe, then up or down.
 */

#define NGX_HTTP_GATEWAY_HEALTH_UNKNOWN  0
#define NGX_HTTP_GATEWAY_HEALTH_UP       1
#define NGX_HTTP_GATEWAY_HEALTH_DOWN     2

typedef struct {
    ngx_atomic_t                state;
    ngx_atomic_t                fails;      /* in a row */
    ngx_atomic_t                passes;     /* in a row */
    ngx_atomic_t                probes;
    ngx_atomic_t                last;       /* ms since the epoch */
    ngx_atomic_t                status;     /* of the last probe, 0: none */
    ngx_atomic_t                error;      /* NGX_HTTP_GATEWAY_PROBE_* */
} ngx_http_gateway_health_t;


/*
 * Passive ejection of an instance (ngx_http_gateway_eject.c): atomics
 * that every worker changes.  The state word is a sequence number shifted
 * by two plus the state, so that a compare-and-set decides which worker
 * ejects an instance or sends its one trial request.
 */

#define NGX_HTTP_GATEWAY_EJECT_IN      0
#define NGX_HTTP_GATEWAY_EJECT_OUT     1
#define NGX_HTTP_GATEWAY_EJECT_TRIAL   2   /* one request decides */
#define NGX_HTTP_GATEWAY_EJECT_GONE    3   /* removed from the registry */

#define ngx_http_gateway_eject_state(s)  ((s) & 3)

typedef struct {
    ngx_atomic_t                state;
    ngx_atomic_t                until;      /* ngx_current_msec: out until,
                                               or the trial's deadline */
    ngx_atomic_t                fails;      /* failures in a row */
    ngx_atomic_t                count;      /* ejections so far */
    ngx_atomic_t                since;      /* unix ms of the last one */
    ngx_atomic_t                till;       /* unix ms it may return */
    ngx_atomic_t                reason;     /* attempt result, status */
    ngx_atomic_t                status;
} ngx_http_gateway_eject_t;


/*
 * An instance lives in the shared zone, in two cache lines (128 bytes, a
 * slab chunk of its own size).  Its record is in its data, written by
 * writers under the zone lock; requests read the record from the
 * service's snapshot (which points at the data it was built with), and
 * read and write here what is shared: the first line is read by every
 * request and written rarely; the counters that every attempt writes have
 * the second line alone.  What only some upstreams use (the health checks'
 * state, the balancers', ejection's) is in two more lines, allocated with
 * the instance once a configuration uses any of it (the zone's "uses"):
 * "lines" is NULL otherwise, and never NULL for a request of an upstream
 * with gateway_health_check, gateway_eject or a balancer with state per
 * instance.  It is freed when it is removed and no snapshot holds it.
 */

#define NGX_HTTP_GATEWAY_INSTANCE_LB  8     /* bytes of balancers' state */

typedef struct {
    ngx_http_gateway_health_t   health NGX_HTTP_GATEWAY_LINE;
    u_char                      lb[NGX_HTTP_GATEWAY_INSTANCE_LB]
                                    __attribute__ ((aligned (8)));
                                            /* balancers' state */

    ngx_http_gateway_eject_t    eject NGX_HTTP_GATEWAY_LINE;
} ngx_http_gateway_lines_t;


typedef struct {
    ngx_http_gateway_retired_t  rt;
    ngx_http_gateway_data_t    *data;       /* the record */
    uint64_t                    uid;
    ngx_atomic_t                expires;    /* embedded registry only */
    ngx_atomic_t                since;      /* eligible since: slow start */
    ngx_http_gateway_lines_t   *lines;

    ngx_http_gateway_stats_t    stats NGX_HTTP_GATEWAY_LINE;
} ngx_http_gateway_instance_t;


/* what a writer removed; snapshots may still point at it */
#define ngx_http_gateway_instance_removed(inst)  ((inst)->rt.type != 0)


/* the health checks' and ejection's view of an instance without lines */

static ngx_inline ngx_atomic_uint_t
ngx_http_gateway_instance_health_state(ngx_http_gateway_instance_t *inst)
{
    return inst->lines ? inst->lines->health.state
                       : NGX_HTTP_GATEWAY_HEALTH_UNKNOWN;
}


static ngx_inline ngx_atomic_uint_t
ngx_http_gateway_instance_eject_state(ngx_http_gateway_instance_t *inst)
{
    return inst->lines ? inst->lines->eject.state : NGX_HTTP_GATEWAY_EJECT_IN;
}


#define ngx_http_gateway_instance_id(inst)                                    \
    ngx_http_gateway_data_id((inst)->data)


/*
 * An instance becomes eligible again (ejection ended, a health check
 * passed): slow start ramps its weight from now.  Registration and a
 * state change to "up" call it too.
 */

static ngx_inline void
ngx_http_gateway_instance_recovered(ngx_http_gateway_instance_t *inst)
{
    inst->since = ngx_current_msec;
}


typedef struct ngx_http_gateway_service_s   ngx_http_gateway_service_t;


/* gateway_max_requests: a service's requests in flight, all workers */

typedef struct {
    ngx_atomic_t                in_flight;
    ngx_atomic_t                rejected;
    ngx_atomic_t                used;       /* a limit applies to it */
} ngx_http_gateway_limit_t;


/*
 * What a request sees of a service: its instances as of one commit,
 * immutable once published.  A request holds it (in its worker's entry)
 * while it uses it.  A peer is 32 bytes, on one cache line: what every
 * choice reads; its address and strings are read from the data it was
 * built with (ngx_http_gateway_peer_*() below).
 */

typedef struct {
    ngx_http_gateway_instance_t *inst;
    ngx_http_gateway_data_t    *data;
    uint64_t                    uid;
    uint32_t                    upto;       /* up weights up to its end */
    uint16_t                    weight;
    uint8_t                     state;
    uint8_t                     backup;     /* only when no primary is */
} ngx_http_gateway_peer_t;


#define ngx_http_gateway_peer_sockaddr(peer)                                  \
    ngx_http_gateway_data_sockaddr((peer)->data)
#define ngx_http_gateway_peer_socklen(peer)                                   \
    ((socklen_t) (peer)->data->socklen)
#define ngx_http_gateway_peer_name(peer)                                      \
    ngx_http_gateway_data_name((peer)->data)
#define ngx_http_gateway_peer_id(peer)                                        \
    ngx_http_gateway_data_id((peer)->data)
#define ngx_http_gateway_peer_zone(peer)                                      \
    ngx_http_gateway_data_zone((peer)->data)


/* a snapshot's peers of one tier and zone: by_zone[first .. first + n) */

typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  backup;
    uint32_t                    first;
    uint32_t                    n;
} ngx_http_gateway_zone_t;


typedef struct {
    ngx_http_gateway_retired_t  rt;
    ngx_http_gateway_service_t *service;
    ngx_uint_t                  npeers;
    ngx_uint_t                  total;      /* weight of the up peers */
    ngx_uint_t                  stride;     /* round robin's: coprime
                                               to total */
    uint16_t                   *order;      /* round robin's: a cycle's
                                               picks, if total is small */
    ngx_uint_t                  nbackup;    /* backup peers, any state */
    ngx_http_gateway_zone_t    *zones;      /* by tier, then name */
    ngx_uint_t                  nzones;
    uint32_t                   *by_zone;    /* peer indices, zone by zone */
    void                      **tables;     /* per balancer, NULL:
                                               none is used */
    ngx_http_gateway_peer_t     peers[1]    /* then tables, zones,
                                               by_zone and order */
                                    __attribute__ ((aligned (32)));
} ngx_http_gateway_snapshot_t;


struct ngx_http_gateway_service_s {
    ngx_str_node_t              sn;
    ngx_http_gateway_retired_t  rt;
    ngx_http_gateway_service_t *volatile hnext;     /* the name index */

    ngx_http_gateway_snapshot_t *volatile snapshot;
    ngx_http_gateway_snapshot_t *pending;   /* the last commit's, waiting
                                               for its tables */

    u_char                      name[NGX_GATEWAY_NAME_MAX];
    uint64_t                    revision;
    uint64_t                    written;    /* by this gateway's admin */
    uint64_t                    lag_rev;    /* the revision lag_us is of */
    uint64_t                    lag_us;     /* write in Redis to applied */
    ngx_http_gateway_instance_t **instances;        /* sorted by id */
    ngx_uint_t                  ninstances;
    ngx_uint_t                  nalloc;
    ngx_uint_t                  mark;
    ngx_http_gateway_service_t *dirty_next;
    unsigned                    dirty:1;
    unsigned                    removed:1;
    unsigned                    unrouted:1; /* its last change is not */
    uint64_t                    uid;        /* never the same twice */

    /*
     * from here on, what requests write (each of these is written by every
     * request of an upstream that uses it), away from the lines above that
     * every lookup reads; 512 bytes in all, a slab chunk of that size
     */

    ngx_http_gateway_service_stats_t stats NGX_HTTP_GATEWAY_LINE;

    ngx_http_gateway_limit_t    limit;

    /* ejection and retry budgets, all workers: ngx_http_gateway_eject.c */
    struct {
        ngx_atomic_t            ejected;    /* instances out or on trial */
        ngx_atomic_t            panic;      /* ngx_time() of the last log */
        ngx_atomic_t            first;      /* first attempts in flight */
        ngx_atomic_t            retries;    /* retries in flight */
        ngx_atomic_t            spent;      /* retries the budget refused */
        ngx_atomic_t            logged;     /* ngx_time() of the last log */
    }                           failures;

    ngx_atomic_t                health;     /* the gateway_health_check
                                               of a variable name that
                                               probes it, 0: none */
    ngx_uint_t                  lb[1];      /* balancers' state, sized
                                               at allocation */
};


#define ngx_http_gateway_rt_instance(rt)                                      \
    ((ngx_http_gateway_instance_t *) (rt))

#define ngx_http_gateway_rt_service(rt)                                       \
    ((ngx_http_gateway_service_t *)                                           \
         ((u_char *) (rt) - offsetof(ngx_http_gateway_service_t, rt)))


/* what a request in flight holds: its worker frees it, or its successor */

typedef struct {
    ngx_http_gateway_snapshot_t *snap;
    ngx_http_gateway_peer_t     *peer;      /* NULL: between attempts */
    ngx_atomic_t                *counted;   /* a counter the attempt holds
                                               up, see hold_count() */
} ngx_http_gateway_hold_t;


/* a worker process: what it reads now, and what its requests hold */

typedef struct {
    /* alone on its cache line: written at every lookup */
    ngx_atomic_t                epoch;      /* 0: not reading */
    ngx_pid_t                   pid;
    ngx_http_gateway_hold_t    *held;
    ngx_uint_t                  nheld;      /* capacity */
    struct ngx_http_gateway_cell_s *cells;  /* NGX_HTTP_GATEWAY_CELLS */
} ngx_http_gateway_reader_t;


/* a record to apply, with its instance id */

typedef struct {
    ngx_str_t                   id;
    ngx_gateway_record_t        rec;
} ngx_http_gateway_entry_t;


/*
 * Propagation lag: from a change's write in Redis (the time its script
 * stamps its notice with) until this gateway applied it; written by the
 * sync only.  le[k]: changes with a lag up to bucket k, not cumulative.
 */

#define NGX_HTTP_GATEWAY_LAG_BUCKETS  14

typedef struct {
    ngx_atomic_t                last_us;
    ngx_atomic_t                count;
    ngx_atomic_t                sum_us;
    ngx_atomic_t                le[NGX_HTTP_GATEWAY_LAG_BUCKETS + 1];
} ngx_http_gateway_lag_t;

typedef struct {
    ngx_uint_t                  us;
    const char                 *le;         /* the bound in seconds */
} ngx_http_gateway_lag_bucket_t;

extern const ngx_http_gateway_lag_bucket_t
    ngx_http_gateway_lag_buckets[NGX_HTTP_GATEWAY_LAG_BUCKETS];

u_char *ngx_http_gateway_lag_json(u_char *p, ngx_http_gateway_lag_t *gl);


/*
 * What a configuration's upstreams use of the zone's optional parts:
 * instances' lines (health checks, ejection, balancers' state per
 * instance), snapshots' zone groups (locality), and "active" published
 * at every pass (a balancer that reads it).  Bits are only added, as old
 * workers may still use theirs.
 */

#define NGX_HTTP_GATEWAY_USES_LINES   0x01
#define NGX_HTTP_GATEWAY_USES_ZONES   0x02
#define NGX_HTTP_GATEWAY_USES_ACTIVE  0x04

#define ngx_http_gateway_uses(cf, what)                                       \
    ((ngx_http_gateway_main_conf_t *)                                         \
         ngx_http_conf_get_module_main_conf(cf, ngx_http_gateway_module))     \
        ->uses |= (what)


typedef struct {
    ngx_uint_t                  magic;
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;

    ngx_http_gateway_service_t *volatile *index;   /* by name hash */
    ngx_uint_t                  nindex;     /* a power of two */

    ngx_atomic_t                epoch;
    ngx_atomic_t                deleted;    /* services unlinked, ever */
    ngx_http_gateway_retired_t *retired;
    ngx_http_gateway_service_t *dirty;      /* to commit */
    ngx_http_gateway_reader_t **readers;    /* one per worker, reused */
    ngx_uint_t                  nreaders;
    ngx_uint_t                  nalloc_readers;

    uint64_t                    next_uid;
    ngx_uint_t                  generation;  /* bumped by every change */
    ngx_uint_t                  saved;       /* generation in state file */
    ngx_uint_t                  nservices;
    ngx_uint_t                  ninstances;
    ngx_uint_t                  allocated;   /* removed ones still held too */
    ngx_uint_t                  mark;
    ngx_msec_t                  next_expire;
    time_t                      stale_since; /* Redis lost the registry */
    u_char                      marker[NGX_HTTP_GATEWAY_EPOCH_LEN];
    size_t                      marker_len;  /* 0: never seen one */

    ngx_pid_t                   lease_pid;
    ngx_msec_t                  lease_expires;

    /* written by the sync only, read by the admin API and metrics */
    ngx_uint_t                  redis_up;
    ngx_uint_t                  redis_reconnects;
    time_t                      synced;      /* last complete resync */
    ngx_atomic_t                revision;    /* Redis' P rev applied */
    ngx_http_gateway_lag_t      lag;

    time_t                      events_time;  /* the events' log limit */
    ngx_uint_t                  events_logged;
    ngx_uint_t                  events_dropped;
    uint64_t                    tables;     /* balancers' tables built for
                                               every snapshot: OR'ed by
                                               each configuration */
    ngx_uint_t                  uses;       /* NGX_HTTP_GATEWAY_USES_*,
                                               OR'ed the same way */

} ngx_http_gateway_sh_t;


typedef struct {
    ngx_str_t                   host;       /* numeric, or unix path */
    ngx_str_t                   addr;       /* for log lines: host:port,
                                               [host]:port or the path */
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
    ngx_msec_t                  full_resync;

    ngx_array_t                *allow;      /* ngx_gateway_cidr_t */
    ngx_uint_t                  allow_all;

    ngx_array_t                 observers;  /* ngx_http_gateway_observer_pt */
    ngx_uint_t                  metrics;    /* gateway_metrics is used */
    ngx_uint_t                  attempt_us; /* an observer reads the
                                               attempts' start_us, end_us */
    uint64_t                    tables;     /* what its upstreams use */
    ngx_uint_t                  uses;       /* NGX_HTTP_GATEWAY_USES_* */
    ngx_array_t                 starts;     /* the same, at attempt start */

    ngx_log_t                  *log;
} ngx_http_gateway_main_conf_t;


/*
 * One upstream attempt, from the choice of an instance to its end, given
 * to every observer once it is known how it ended.
 */

#define NGX_HTTP_GATEWAY_ATTEMPT_OK       0
#define NGX_HTTP_GATEWAY_ATTEMPT_NEXT     1   /* 403/404 and "next" */
#define NGX_HTTP_GATEWAY_ATTEMPT_CONNECT  2   /* no connection */
#define NGX_HTTP_GATEWAY_ATTEMPT_TIMEOUT  3
#define NGX_HTTP_GATEWAY_ATTEMPT_STATUS   4   /* a proxy_next_upstream status */
#define NGX_HTTP_GATEWAY_ATTEMPT_ERROR    5   /* reset, bad header, ... */
#define NGX_HTTP_GATEWAY_ATTEMPT_STALE    6   /* a cached keepalive
                                                 connection the instance
                                                 had closed: not its fault */

/* a failure's counter in fails[], CONNECT to ERROR; others are no failure */
#define ngx_http_gateway_fail(result)                                         \
    ((ngx_uint_t) (result) - NGX_HTTP_GATEWAY_ATTEMPT_CONNECT)

typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                  *service;
    ngx_http_gateway_snapshot_t *snap;      /* where peer is */
    ngx_http_gateway_peer_t    *peer;
    ngx_msec_t                  start;
    ngx_msec_t                  end;
    uint64_t                    start_us;   /* ngx_http_gateway_usec(), */
    uint64_t                    end_us;     /* if gmcf->attempt_us */
    uint16_t                    number;     /* 1: the first attempt */
    uint16_t                    result;
    uint32_t                    status;     /* 0: no response */
    off_t                       bytes_sent; /* for the observers, */
    off_t                       bytes_received; /* if any */

    /* bytes, not bit-fields: every attempt writes them, a store each */
    u_char                      cached;     /* a keepalive connection */
    u_char                      retried;    /* nginx had tries left */
    u_char                      trial;      /* an ejected instance's trial */
    u_char                      batched;    /* counted in a cell */
} ngx_http_gateway_attempt_t;

typedef void (*ngx_http_gateway_observer_pt)(ngx_http_gateway_attempt_t *a);


/*
 * A finer clock than ngx_current_msec (updated once per event loop
 * iteration, from a coarse clock), for response times.
 */

static ngx_inline uint64_t
ngx_http_gateway_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

ngx_int_t ngx_http_gateway_observer_add(ngx_conf_t *cf,
    ngx_http_gateway_observer_pt handler);

/*
 * A start observer gets the record once the attempt's instance is chosen,
 * before its request is sent (number, peer and start are set): it may
 * still change the request's bytes, r->upstream->request_bufs.
 */
ngx_int_t ngx_http_gateway_attempt_start_add(ngx_conf_t *cf,
    ngx_http_gateway_observer_pt handler);
void ngx_http_gateway_stats_observe(ngx_http_gateway_attempt_t *a);
void ngx_http_gateway_metrics_observe(ngx_http_gateway_attempt_t *a);
extern ngx_msec_t  ngx_http_gateway_buckets[NGX_HTTP_GATEWAY_BUCKETS];

ngx_int_t ngx_http_gateway_upstream_service(ngx_http_upstream_srv_conf_t *us,
    ngx_str_t *name);

/* active health checks: ngx_http_gateway_health.c */

ngx_uint_t ngx_http_gateway_health_unhealthy(ngx_http_upstream_srv_conf_t *us);
ngx_atomic_uint_t ngx_http_gateway_health_tag(
    ngx_http_upstream_srv_conf_t *us);
size_t ngx_http_gateway_health_json(u_char *p,
    ngx_http_gateway_instance_t *inst);

/* concurrency limits: ngx_http_gateway_limit.c */

size_t ngx_http_gateway_limit_json(u_char *p, ngx_http_gateway_service_t *svc);

void *ngx_http_gateway_upstream_balancer_conf(ngx_http_request_t *r,
    void *balancer);


extern ngx_module_t  ngx_http_gateway_module;


/* registry: ngx_http_gateway_registry.c */

ngx_int_t ngx_http_gateway_registry_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_http_gateway_service_t *ngx_http_gateway_service_lookup(
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *name);
ngx_int_t ngx_http_gateway_upsert_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *service, ngx_str_t *id, ngx_gateway_record_t *rec,
    ngx_uint_t *created);
ngx_int_t ngx_http_gateway_upsert_batch_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_service_t *svc,
    ngx_http_gateway_entry_t **entries, ngx_uint_t n,
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
ngx_uint_t ngx_http_gateway_expire_locked(ngx_http_gateway_main_conf_t *gmcf);
ngx_int_t ngx_http_gateway_addr_allowed(ngx_http_gateway_main_conf_t *gmcf,
    ngx_gateway_addr_t *addr);
void ngx_http_gateway_instance_record(ngx_http_gateway_instance_t *inst,
    ngx_gateway_record_t *rec);
ngx_int_t ngx_http_gateway_dump(ngx_pool_t *pool,
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *service, ngx_uint_t mode,
    ngx_buf_t **out);

ngx_int_t ngx_http_gateway_dump_one(ngx_pool_t *pool,
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *service, ngx_str_t *id,
    ngx_buf_t **out);

/* snapshots, the name index, reclamation: ngx_http_gateway_snapshot.c */

ngx_int_t ngx_http_gateway_index_init_locked(
    ngx_http_gateway_main_conf_t *gmcf, size_t zone_size);
ngx_http_gateway_service_t *ngx_http_gateway_index_find(
    ngx_http_gateway_main_conf_t *gmcf, ngx_str_t *name, uint32_t hash);
void ngx_http_gateway_index_insert_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc);
void ngx_http_gateway_index_delete_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc);
ngx_int_t ngx_http_gateway_read_begin(ngx_http_gateway_main_conf_t *gmcf);
void ngx_http_gateway_read_end(void);

/* this worker's entry and its free slots (ngx_http_gateway_snapshot.c) */
extern ngx_http_gateway_reader_t  *ngx_http_gateway_reader;
extern ngx_uint_t                 *ngx_http_gateway_free_held;
extern ngx_uint_t                  ngx_http_gateway_nfree_held;

/* inline: every request runs them */

static ngx_inline void
ngx_http_gateway_read_begin_inline(ngx_http_gateway_main_conf_t *gmcf)
{
    ngx_http_gateway_reader->epoch = gmcf->sh->epoch;
    ngx_memory_barrier();
}


static ngx_inline void
ngx_http_gateway_read_end_inline(void)
{
    ngx_memory_barrier();
    ngx_http_gateway_reader->epoch = 0;
}


static ngx_inline void
ngx_http_gateway_snapshot_put(ngx_uint_t slot)
{
    ngx_http_gateway_hold_t  *h;

    h = &ngx_http_gateway_reader->held[slot];

    h->peer = NULL;
    h->counted = NULL;
    ngx_memory_barrier();
    h->snap = NULL;

    ngx_http_gateway_free_held[ngx_http_gateway_nfree_held++] = slot;
}


static ngx_inline void
ngx_http_gateway_hold_peer(ngx_uint_t slot, ngx_http_gateway_peer_t *peer)
{
    ngx_http_gateway_reader->held[slot].peer = peer;
}


/*
 * A counter in the zone (of the held snapshot's service or instances)
 * that a request keeps up while it runs, like "active": counted with
 * hold_count() (or, once a caller's own compare-and-set took the place,
 * hold_counted()), given back by hold_uncount(), or by whoever reclaims a
 * dead worker's holds.  One per hold.
 */

static ngx_inline void
ngx_http_gateway_hold_counted(ngx_uint_t slot, ngx_atomic_t *counter)
{
    ngx_http_gateway_reader->held[slot].counted = counter;
}


static ngx_inline void
ngx_http_gateway_hold_count(ngx_uint_t slot, ngx_atomic_t *counter)
{
    (void) ngx_atomic_fetch_add(counter, 1);
    ngx_http_gateway_hold_counted(slot, counter);
}


static ngx_inline void
ngx_http_gateway_hold_uncount(ngx_uint_t slot)
{
    ngx_http_gateway_hold_t  *h;

    h = &ngx_http_gateway_reader->held[slot];

    if (h->counted) {
        (void) ngx_atomic_fetch_add(h->counted, -1);
        h->counted = NULL;
    }
}

/*
 * An instance's counters as this worker changed them (ngx_http_gateway_
 * stats.c): a selection, a release and the stats observer add to the
 * instance's cell in the worker's own entry, so that requests to one hot
 * instance write no shared line of it for each request.  The counts stay
 * in the cell, which is in the zone: who reads them adds every worker's
 * cell of the instance to what the instance has
 * (ngx_http_gateway_stats_read()), and the worker moves them into the
 * instance when the cell is taken by another instance, at its tick and at
 * its exit.  When a balancer that reads "active" is configured (the
 * zone's NGX_HTTP_GATEWAY_USES_ACTIVE, "publish"), "active" is moved at
 * the end of every pass of the event loop too (a posted event, one atomic
 * add if it changed), as such a balancer reads what the instance has and
 * its own worker's cell only (ngx_http_gateway_active()).  The table is direct-mapped by the instance's address (128
 * bytes a chunk); a taken cell holds the snapshot it was taken with, which
 * keeps its instance in the zone until the cell is let go of, at the
 * tick at the latest.  "active" is two counts, so that a worker that dies
 * anywhere in between leaves at most a count too high, never too low: +1s
 * are added before the hold records its peer, -1s after the hold let go
 * of it; a flush publishes their difference, before it clears them when
 * the +1s are more, after it cleared the -1s when they are more.  A move
 * is bracketed by the cell's "seq", odd meanwhile, so that a reader never
 * counts a request twice nor misses one.
 *
 * A worker that starts few attempts adds their changes to the instance
 * at once: batching is for busy workers, and an idle one would otherwise
 * pay a posted event and a flush for each request's changes.  The first
 * NGX_HTTP_GATEWAY_CELLS_DIRECT attempts it starts in a millisecond (the
 * budget "direct") go so, the others to cells.
 */

#define NGX_HTTP_GATEWAY_CELLS         32   /* a power of two */
#define NGX_HTTP_GATEWAY_CELLS_DIRECT  10

typedef struct ngx_http_gateway_cell_s  ngx_http_gateway_cell_t;

struct ngx_http_gateway_cell_s {
    ngx_http_gateway_instance_t *inst;      /* NULL: free */
    ngx_http_gateway_snapshot_t *snap;      /* holds inst */
    ngx_atomic_uint_t           up;         /* "active" +1s */
    ngx_atomic_uint_t           down;       /* "active" -1s */
    ngx_atomic_uint_t           requests;
    ngx_atomic_uint_t           time;
    ngx_atomic_uint_t           retries;
    ngx_atomic_uint_t           fails[NGX_HTTP_GATEWAY_FAILS];
    ngx_atomic_t                seq;        /* odd: counts being moved */
} __attribute__ ((aligned (128)));

/*
 * The order of stores to this worker's own entry, as a worker killed
 * between two of them leaves it (a signal stops it between instructions,
 * and its reclaim comes later, under the mutex): the compiler's order.
 */
#define ngx_http_gateway_store_order()  __asm__ volatile ("" ::: "memory")

extern ngx_http_gateway_cell_t  *ngx_http_gateway_cells;
extern ngx_event_t               ngx_http_gateway_cells_event;
extern ngx_msec_t                ngx_http_gateway_cells_msec;
extern ngx_uint_t                ngx_http_gateway_cells_direct;  /* left */
extern ngx_uint_t                ngx_http_gateway_cells_publish;

ngx_http_gateway_cell_t *ngx_http_gateway_cell_take(
    ngx_http_gateway_cell_t *c, ngx_http_gateway_snapshot_t *snap,
    ngx_http_gateway_instance_t *inst) NGX_HTTP_GATEWAY_NOINLINE;
void ngx_http_gateway_cells_init(void);
void ngx_http_gateway_cells_flush(void);
void ngx_http_gateway_cells_drain(void);
void ngx_http_gateway_cells_apply_locked(ngx_http_gateway_reader_t *rd);
void ngx_http_gateway_stats_read(ngx_http_gateway_sh_t *sh,
    ngx_http_gateway_reader_t **readers, ngx_uint_t nreaders,
    ngx_http_gateway_instance_t *inst, ngx_http_gateway_stats_t *st);


/* where inst's cell is in a worker's table, taken by inst or not */

#define ngx_http_gateway_cell_in(cells, inst)                                 \
    ((ngx_http_gateway_cell_t *)                                              \
         ((u_char *) (cells)                                                  \
          + ((uintptr_t) (inst)                                               \
             & ((NGX_HTTP_GATEWAY_CELLS - 1)                                  \
                * sizeof(ngx_http_gateway_cell_t)))))

#define ngx_http_gateway_cell_at(inst)                                        \
    ngx_http_gateway_cell_in(ngx_http_gateway_cells, inst)


/*
 * inst's cell for an attempt counted in one (its +1 may be in it still,
 * or was moved into the instance with another cell of it).  A taken
 * cell is used at once, when "active" is published at every pass while a
 * flush is posted (the pass's first change posts it).
 */

static ngx_inline ngx_http_gateway_cell_t *
ngx_http_gateway_cell_of(ngx_http_gateway_snapshot_t *snap,
    ngx_http_gateway_instance_t *inst)
{
    ngx_http_gateway_cell_t  *c;

    c = ngx_http_gateway_cell_at(inst);

    if (c->inst == inst
        && (ngx_http_gateway_cells_event.posted
            || !ngx_http_gateway_cells_publish))
    {
        return c;
    }

    return ngx_http_gateway_cell_take(c, snap, inst);
}


/*
 * inst's cell for an attempt that starts, or NULL: the attempt's changes
 * go to the instance at once (see NGX_HTTP_GATEWAY_CELLS_DIRECT); snap
 * (held by the caller) points at inst
 */

static ngx_inline ngx_http_gateway_cell_t *
ngx_http_gateway_cell(ngx_http_gateway_snapshot_t *snap,
    ngx_http_gateway_instance_t *inst)
{
    if (ngx_http_gateway_cells_msec != ngx_current_msec) {
        ngx_http_gateway_cells_msec = ngx_current_msec;
        ngx_http_gateway_cells_direct = NGX_HTTP_GATEWAY_CELLS_DIRECT;
    }

    if (ngx_http_gateway_cells_direct) {
        ngx_http_gateway_cells_direct--;
        return NULL;
    }

    return ngx_http_gateway_cell_of(snap, inst);
}


/*
 * An attempt starts and ends: "active" +1 and -1.  An attempt's changes
 * all go the way its +1 went (a->batched): at once, or to a cell.
 */

static ngx_inline ngx_uint_t
ngx_http_gateway_active_up(ngx_http_gateway_snapshot_t *snap,
    ngx_http_gateway_instance_t *inst)
{
    ngx_http_gateway_cell_t  *c;

    c = ngx_http_gateway_cell(snap, inst);

    if (c) {
        c->up++;

        /* before the hold records its peer (an atomic add is a barrier) */
        ngx_http_gateway_store_order();

        return 1;
    }

    (void) ngx_atomic_fetch_add(&inst->stats.active, 1);

    return 0;
}


static ngx_inline void
ngx_http_gateway_active_down(ngx_http_gateway_attempt_t *a)
{
    ngx_http_gateway_cell_t  *c;

    if (a->batched) {
        c = ngx_http_gateway_cell_of(a->snap, a->peer->inst);

        /* after the hold let go of its peer */
        ngx_http_gateway_store_order();

        c->down++;
        return;
    }

    (void) ngx_atomic_fetch_add(&a->peer->inst->stats.active, -1);
}


/* attempts in flight: all workers' published ones, and this worker's */

static ngx_inline ngx_atomic_uint_t
ngx_http_gateway_active(ngx_http_gateway_instance_t *inst)
{
    ngx_http_gateway_cell_t  *c;

    c = ngx_http_gateway_cell_at(inst);

    if (c->inst == inst) {
        return inst->stats.active + c->up - c->down;
    }

    return inst->stats.active;
}


ngx_int_t ngx_http_gateway_snapshot_get(ngx_http_gateway_main_conf_t *gmcf,
    ngx_str_t *name, uint32_t hash, ngx_http_gateway_snapshot_t **snapp,
    ngx_uint_t *slot);

/* a worker's memory of where a fixed service name was found */

typedef struct {
    ngx_http_gateway_service_t *svc;
    ngx_atomic_uint_t           deleted;    /* sh->deleted then */
} ngx_http_gateway_lookup_t;

ngx_int_t ngx_http_gateway_snapshot_get_cached(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_lookup_t *cache,
    ngx_str_t *name, uint32_t hash, ngx_http_gateway_snapshot_t **snapp,
    ngx_uint_t *slot);
ngx_int_t ngx_http_gateway_hold_grow(ngx_http_gateway_main_conf_t *gmcf);


/*
 * snapshot_get_cached() inline, for the upstream's every attempt; see
 * ngx_http_gateway_snapshot.c
 */

static ngx_inline ngx_int_t
ngx_http_gateway_snapshot_hold(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_lookup_t *cache, ngx_str_t *name, uint32_t hash,
    ngx_http_gateway_snapshot_t **snapp, ngx_uint_t *slot)
{
    ngx_uint_t                    s;
    ngx_atomic_uint_t             deleted;
    ngx_http_gateway_hold_t      *h;
    ngx_http_gateway_service_t   *svc;
    ngx_http_gateway_snapshot_t  *snap;

    if (ngx_http_gateway_reader == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_gateway_nfree_held == 0
        && ngx_http_gateway_hold_grow(gmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    s = ngx_http_gateway_free_held[--ngx_http_gateway_nfree_held];
    h = &ngx_http_gateway_reader->held[s];

    ngx_http_gateway_read_begin_inline(gmcf);

    deleted = gmcf->sh->deleted;

    if (cache && cache->svc && cache->deleted == deleted) {
        svc = cache->svc;

    } else {
        svc = ngx_http_gateway_index_find(gmcf, name, hash);

        if (cache) {
            cache->svc = svc;
            cache->deleted = deleted;
        }
    }

    snap = svc ? svc->snapshot : NULL;

    /* a free slot has neither peer nor counter (see snapshot_put()) */

    h->snap = snap;

    ngx_http_gateway_read_end_inline();

    if (snap == NULL) {
        ngx_http_gateway_free_held[ngx_http_gateway_nfree_held++] = s;
        return NGX_DECLINED;
    }

    *snapp = snap;
    *slot = s;

    return NGX_OK;
}

/* gateway_max_requests' place of a request: ngx_http_gateway_limit.c */

ngx_int_t ngx_http_gateway_limit_take(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_lookup_t *lookup, ngx_str_t *service, uint32_t hash,
    ngx_uint_t *slot);
void ngx_http_gateway_limit_release(ngx_uint_t slot);
ngx_uint_t ngx_http_gateway_limit_conf(ngx_http_upstream_srv_conf_t *us);
ngx_int_t ngx_http_gateway_reader_init(ngx_http_gateway_main_conf_t *gmcf);
void ngx_http_gateway_reader_exit(ngx_http_gateway_main_conf_t *gmcf);
void ngx_http_gateway_readers_reclaim_locked(
    ngx_http_gateway_main_conf_t *gmcf);
void ngx_http_gateway_retire_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_retired_t *rt, ngx_uint_t type);
void ngx_http_gateway_service_touch_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc);
void ngx_http_gateway_write_end(ngx_http_gateway_main_conf_t *gmcf);
ngx_uint_t ngx_http_gateway_snapshot_wanted_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_snapshot_t *snap);
void ngx_http_gateway_snapshot_publish_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_snapshot_t *snap);
void ngx_http_gateway_events_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_service_t *svc, ngx_http_gateway_snapshot_t *old,
    ngx_http_gateway_snapshot_t *snap);
void ngx_http_gateway_reclaim_locked(ngx_http_gateway_main_conf_t *gmcf);

/* the zone index of a snapshot: ngx_http_gateway_locality.c */

size_t ngx_http_gateway_zones_size(ngx_uint_t npeers);
ngx_uint_t ngx_http_gateway_peer_in_zone(ngx_http_gateway_peer_t *peer,
    ngx_str_t *zone);
void ngx_http_gateway_zones_build(ngx_http_gateway_snapshot_t *snap,
    u_char *p);

/* balancers: ngx_http_gateway_balancer.c */

void ngx_http_gateway_balancers_init(void);
size_t ngx_http_gateway_instance_size(void);
size_t ngx_http_gateway_service_size(void);
size_t ngx_http_gateway_balancers_tables_size(
    ngx_http_gateway_main_conf_t *gmcf);
ngx_int_t ngx_http_gateway_balancers_update_locked(
    ngx_http_gateway_main_conf_t *gmcf, ngx_http_gateway_snapshot_t *snap);
void ngx_http_gateway_balancers_tables_build(
    ngx_http_gateway_main_conf_t *gmcf);
void ngx_http_gateway_balancers_free_locked(ngx_http_gateway_main_conf_t *gmcf,
    ngx_http_gateway_snapshot_t *snap);

/* round robin's ticket blocks, at every tick of the worker (mutex held) */
void ngx_http_gateway_rr_tick_locked(ngx_http_gateway_main_conf_t *gmcf);
ngx_int_t ngx_http_gateway_balancers_init_zone(
    ngx_http_gateway_main_conf_t *gmcf);

/* state file: ngx_http_gateway_state_file.c */

ngx_int_t ngx_http_gateway_state_load(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log);
ngx_int_t ngx_http_gateway_state_save(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log);

/* redis: ngx_http_gateway_redis.c */

ngx_int_t ngx_http_gateway_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_gateway_redis_conf_t *rc);
redisAsyncContext *ngx_http_gateway_redis_connect(
    ngx_http_gateway_main_conf_t *gmcf, ngx_log_t *log,
    redisConnectCallback *on_connect, redisDisconnectCallback *on_disconnect,
    ngx_uint_t select);
ngx_str_t *ngx_http_gateway_redis_errstr(redisReply *reply, ngx_str_t *v,
    u_char *buf);
void ngx_http_gateway_redis_on_error(redisAsyncContext *ac, void *r,
    void *privdata);
void ngx_http_gateway_redis_admin_close(void);

/* the sync: ngx_http_gateway_sync.c */

void ngx_http_gateway_sync_start(ngx_http_gateway_main_conf_t *gmcf,
    ngx_cycle_t *cycle);
void ngx_http_gateway_sync_stop(void);

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

/* a record from an instance's hash: ngx_http_gateway_redis_schema.c */

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


#if !(NGX_HTTP_GATEWAY_EXPORTED)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_GATEWAY_H_INCLUDED_ */
