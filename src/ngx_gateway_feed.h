
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_FEED_H_INCLUDED_
#define _NGX_GATEWAY_FEED_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * A change notice on the registry's feed channel (the scripts' feed()):
 * netstrings ("LEN:BYTES,"): format "1", epoch, service, revision, listed
 * (0 or 1), Redis time in us, the registry's revision, then "-" (the
 * instances are not carried) or the number of instances and, per
 * instance, its id, its number of fields and their names and values.
 * Plain C: the sync turns a parsed notice into a snapshot entry.
 */


#define NGX_GATEWAY_FEED_MAX     (1024 * 1024)
#define NGX_GATEWAY_FEED_FIRST   8          /* the first instance's item */


typedef struct {
    size_t                    len;
    char                     *data;         /* NUL-terminated in place */
    size_t                    nfields;      /* an instance id's: its number
                                               of fields (the next item) */
} ngx_gateway_feed_item_t;


typedef struct {
    ngx_gateway_feed_item_t  *items;
    size_t                    nitems;
    ngx_gateway_feed_item_t   epoch;
    ngx_gateway_feed_item_t   name;         /* data NULL: not found, or
                                               not a valid name */
    uint64_t                  revision;
    uint64_t                  time_us;      /* Redis time of the write */
    uint64_t                  registry;     /* the registry's revision */
    int                       listed;
    int                       carried;      /* instances in the items */
    size_t                    ninstances;
} ngx_gateway_feed_t;


/*
 * The number of items of a message in *nitems (at least 3); 0 or -1 with
 * *err.  The caller gives feed_parse() that many items.
 */
int ngx_gateway_feed_count(const char *p, size_t len, size_t *nitems,
    const char **err);

/*
 * Parses the message in place: 0, each item NUL-terminated over its
 * comma; or -1 with *err, the message as it was, and feed->name set if
 * the message got that far with a valid name: the service whose change
 * is not known.  On
 * success every instance of a carried change is items[i] (id, with its
 * number of fields m in items[i].nfields), items[i + 1] (m as text) and
 * 2 m names and values, from i = FEED_FIRST, and they end at the last
 * item.
 */
int ngx_gateway_feed_parse(char *p, size_t len,
    ngx_gateway_feed_item_t *items, size_t nitems, ngx_gateway_feed_t *feed,
    const char **err);


#endif /* _NGX_GATEWAY_FEED_H_INCLUDED_ */
