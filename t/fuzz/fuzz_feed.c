
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * libFuzzer target: the change notice parser (messages on the registry's
 * feed channel come from Redis: anything may arrive).  A message that
 * parses has a valid service name, every item inside the message and
 * NUL-terminated in place, and a carried change whose instances, walked
 * the way the sync walks them, end exactly at the last item.  The message
 * is copied to a buffer of its own size, so that a read or write past it
 * is caught.
 */


#include <stdint.h>

#include "fuzz_check.h"
#include "ngx_gateway_feed.h"
#include "ngx_gateway_record.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* an item inside the message, before its comma (a NUL once parsed) */

static void
fuzz_check_item(const char *buf, size_t size, ngx_gateway_feed_item_t *it,
    char end)
{
    fuzz_assert(it->data >= buf && it->data + it->len < buf + size);
    fuzz_assert(it->data[it->len] == end);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc;
    char                     *buf;
    size_t                    n, i, f, m;
    const char               *err;
    ngx_gateway_feed_t        feed;
    ngx_gateway_feed_item_t  *items;

    buf = malloc(size ? size : 1);
    fuzz_assert(buf != NULL);
    memcpy(buf, data, size);

    if (ngx_gateway_feed_count(buf, size, &n, &err) != 0) {
        fuzz_assert(err != NULL && n == 0);
        free(buf);
        return 0;
    }

    fuzz_assert(n >= 3 && n <= size / 2);

    items = malloc(n * sizeof(ngx_gateway_feed_item_t));
    fuzz_assert(items != NULL);

    rc = ngx_gateway_feed_parse(buf, size, items, n, &feed, &err);

    if (rc != 0) {

        /* refused: the message as it was, for the log */

        fuzz_assert(err != NULL);
        fuzz_assert(memcmp(buf, data, size) == 0);

        if (feed.name.data) {
            fuzz_check_item(buf, size, &feed.name, ',');
        }

        goto done;
    }

    fuzz_assert(feed.items == items && feed.nitems == n);
    fuzz_assert(ngx_gateway_valid_name(feed.name.data, feed.name.len));
    fuzz_assert(feed.listed == 0 || feed.listed == 1);

    for (i = 0; i < n; i++) {
        fuzz_check_item(buf, size, &items[i], '\0');
    }

    if (!feed.carried) {
        fuzz_assert(n == NGX_GATEWAY_FEED_FIRST);
        goto done;
    }

    fuzz_assert(feed.revision > 0);

    for (i = NGX_GATEWAY_FEED_FIRST, f = 0; f < feed.ninstances; f++) {
        fuzz_assert(i + 2 <= n);
        m = items[i].nfields;
        fuzz_assert(i + 2 + 2 * m <= n);
        i += 2 + 2 * m;
    }

    fuzz_assert(i == n);

done:

    free(items);
    free(buf);

    return 0;
}
