
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>

#include "ngx_gateway_feed.h"
#include "ngx_gateway_record.h"


static const char *ngx_gateway_feed_netstring(const char *p,
    const char *last, size_t *len);
static char *ngx_gateway_feed_item(char *p, char *last,
    ngx_gateway_feed_item_t *v);
static void ngx_gateway_feed_terminate(ngx_gateway_feed_t *feed);


int
ngx_gateway_feed_count(const char *p, size_t len, size_t *nitems,
    const char **err)
{
    size_t       n, count;
    const char  *last, *bytes;

    *nitems = 0;
    *err = "malformed";

    if (len > NGX_GATEWAY_FEED_MAX) {
        *err = "too long";
        return -1;
    }

    last = p + len;

    for (count = 0; p < last; count++) {
        bytes = ngx_gateway_feed_netstring(p, last, &n);
        if (bytes == NULL) {
            return -1;
        }

        p = bytes + n + 1;
    }

    if (count < 3) {
        return -1;
    }

    *nitems = count;

    return 0;
}


int
ngx_gateway_feed_parse(char *p, size_t len, ngx_gateway_feed_item_t *items,
    size_t nitems, ngx_gateway_feed_t *feed, const char **err)
{
    char                     *last;
    size_t                    i, f;
    uint64_t                  n, m, listed;
    ngx_gateway_feed_item_t  *it;

    memset(feed, 0, sizeof(ngx_gateway_feed_t));

    *err = "malformed";

    if (nitems < 3) {
        return -1;
    }

    last = p + len;

    for (i = 0; i < nitems; i++) {
        p = ngx_gateway_feed_item(p, last, &items[i]);
        if (p == NULL) {
            return -1;
        }
    }

    if (p != last) {
        return -1;
    }

    it = items;
    feed->items = items;
    feed->nitems = nitems;

    /* format, epoch and service come first in every format */

    feed->epoch = it[1];

    if (!ngx_gateway_valid_name(it[2].data, it[2].len)) {
        *err = "of an invalid service name";
        return -1;
    }

    feed->name = it[2];

    if (it[0].len != 1 || it[0].data[0] != '1') {
        *err = "of an unknown format";
        return -1;
    }

    if (nitems < NGX_GATEWAY_FEED_FIRST) {
        *err = "of too few items";
        return -1;
    }

    if (ngx_gateway_parse_uint(it[3].data, it[3].len, UINT64_MAX,
                               &feed->revision)
        != 0
        || ngx_gateway_parse_uint(it[4].data, it[4].len, 1, &listed) != 0
        || ngx_gateway_parse_uint(it[5].data, it[5].len, UINT64_MAX,
                                  &feed->time_us)
           != 0
        || ngx_gateway_parse_uint(it[6].data, it[6].len, UINT64_MAX,
                                  &feed->registry)
           != 0)
    {
        *err = "of a bad revision, listed flag, time or registry revision";
        return -1;
    }

    feed->listed = (int) listed;

    if (it[7].len == 1 && it[7].data[0] == '-') {
        if (nitems != NGX_GATEWAY_FEED_FIRST) {
            *err = "of trailing items";
            return -1;
        }

        ngx_gateway_feed_terminate(feed);

        return 0;
    }

    if (ngx_gateway_parse_uint(it[7].data, it[7].len,
                               (nitems - NGX_GATEWAY_FEED_FIRST) / 2, &n)
        != 0
        || feed->revision == 0)
    {
        *err = "of a bad number of instances";
        return -1;
    }

    for (i = NGX_GATEWAY_FEED_FIRST, f = 0; f < n; f++) {
        if (i + 2 > nitems
            || ngx_gateway_parse_uint(it[i + 1].data, it[i + 1].len,
                                      (nitems - i) / 2, &m)
               != 0
            || i + 2 + 2 * m > nitems)
        {
            *err = "of a bad instance";
            return -1;
        }

        it[i].nfields = (size_t) m;
        i += 2 + 2 * m;
    }

    if (i != nitems) {
        *err = "of trailing items";
        return -1;
    }

    feed->carried = 1;
    feed->ninstances = n;

    ngx_gateway_feed_terminate(feed);

    return 0;
}


/* a message found good: its items NUL-terminated over their commas */

static void
ngx_gateway_feed_terminate(ngx_gateway_feed_t *feed)
{
    size_t  i;

    for (i = 0; i < feed->nitems; i++) {
        feed->items[i].data[feed->items[i].len] = '\0';
    }
}


/*
 * "LEN:BYTES," at p, before last: where the bytes start, their length in
 * *len; NULL if it is not one (LEN is 1 to 9 digits)
 */

static const char *
ngx_gateway_feed_netstring(const char *p, const char *last, size_t *len)
{
    size_t       n;
    const char  *d;

    n = 0;

    for (d = p; d < last && *d >= '0' && *d <= '9'; d++) {
        if (d - p == 9) {
            return NULL;
        }

        n = n * 10 + (*d - '0');
    }

    if (d == p || d == last || *d != ':' || (size_t) (last - d) < n + 2
        || d[n + 1] != ',')
    {
        return NULL;
    }

    *len = n;

    return d + 1;
}


/* a netstring's bytes in *v */

static char *
ngx_gateway_feed_item(char *p, char *last, ngx_gateway_feed_item_t *v)
{
    char    *bytes;
    size_t   len;

    bytes = (char *) ngx_gateway_feed_netstring(p, last, &len);
    if (bytes == NULL) {
        return NULL;
    }

    v->data = bytes;
    v->len = len;
    v->nfields = 0;

    return bytes + len + 1;
}
