
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_feed.h"


#define HEAD  "1:1,4:ep01,5:users,2:17,1:1,16:1700000000123456,3:901,"


typedef struct {
    char                     *buf;
    ngx_gateway_feed_item_t  *items;
    ngx_gateway_feed_t        feed;
    const char               *err;
} parsed_t;


/* counts and parses a copy of s (parsing writes NULs into it) */

static int
parse(parsed_t *ps, const char *s)
{
    int     rc;
    size_t  len, n;

    len = strlen(s);
    ps->buf = malloc(len + 1);
    assert_non_null(ps->buf);
    memcpy(ps->buf, s, len + 1);
    ps->items = NULL;

    if (ngx_gateway_feed_count(ps->buf, len, &n, &ps->err) != 0) {
        memset(&ps->feed, 0, sizeof(ngx_gateway_feed_t));
        return -1;
    }

    ps->items = calloc(n, sizeof(ngx_gateway_feed_item_t));
    assert_non_null(ps->items);

    rc = ngx_gateway_feed_parse(ps->buf, len, ps->items, n, &ps->feed,
                                &ps->err);
    return rc;
}


static void
done(parsed_t *ps)
{
    free(ps->items);
    free(ps->buf);
}


static void
expect_error(const char *s, const char *err, const char *name)
{
    parsed_t  ps;

    assert_int_equal(parse(&ps, s), -1);
    assert_string_equal(ps.err, err);

    /* refused: the message is left as it was, for the log */
    assert_string_equal(ps.buf, s);

    if (name == NULL) {
        assert_null(ps.feed.name.data);

    } else {
        assert_non_null(ps.feed.name.data);
        assert_int_equal(ps.feed.name.len, strlen(name));
        assert_memory_equal(ps.feed.name.data, name, strlen(name));
    }

    done(&ps);
}


static void
test_not_carried(void **state)
{
    parsed_t  ps;

    (void) state;

    assert_int_equal(parse(&ps, HEAD "1:-,"), 0);
    assert_int_equal(ps.feed.epoch.len, 4);
    assert_string_equal(ps.feed.epoch.data, "ep01");
    assert_string_equal(ps.feed.name.data, "users");
    assert_true(ps.feed.revision == 17);
    assert_int_equal(ps.feed.listed, 1);
    assert_true(ps.feed.time_us == 1700000000123456ULL);
    assert_true(ps.feed.registry == 901);
    assert_int_equal(ps.feed.carried, 0);
    assert_int_equal(ps.feed.nitems, NGX_GATEWAY_FEED_FIRST);
    done(&ps);
}


static void
test_carried(void **state)
{
    size_t    i;
    parsed_t  ps;

    (void) state;

    /* a: two fields; b: none (gone); an empty value and a comma in one */

    assert_int_equal(parse(&ps, HEAD "1:2,1:a,1:2,7:address,14:127.0.0.1:8080,"
                                "6:weight,3:1,2,1:b,1:0,"), 0);
    assert_int_equal(ps.feed.carried, 1);
    assert_int_equal(ps.feed.ninstances, 2);

    i = NGX_GATEWAY_FEED_FIRST;
    assert_string_equal(ps.items[i].data, "a");
    assert_int_equal(ps.items[i].nfields, 2);
    assert_string_equal(ps.items[i + 2].data, "address");
    assert_string_equal(ps.items[i + 3].data, "127.0.0.1:8080");
    assert_int_equal(ps.items[i + 5].len, 3);
    assert_memory_equal(ps.items[i + 5].data, "1,2", 3);

    i += 2 + 2 * 2;
    assert_string_equal(ps.items[i].data, "b");
    assert_int_equal(ps.items[i].nfields, 0);
    assert_int_equal(i + 2, ps.feed.nitems);
    done(&ps);

    /* a change that carries no instance (a bare revision) */

    assert_int_equal(parse(&ps, HEAD "1:0,"), 0);
    assert_int_equal(ps.feed.carried, 1);
    assert_int_equal(ps.feed.ninstances, 0);
    done(&ps);

    /* an epoch may be empty (no marker yet) */

    assert_int_equal(parse(&ps, "1:1,0:,1:s,1:1,1:0,1:5,1:0,1:-,"), 0);
    assert_int_equal(ps.feed.epoch.len, 0);
    assert_int_equal(ps.feed.listed, 0);
    done(&ps);
}


static void
test_malformed(void **state)
{
    (void) state;

    /* not netstrings: nothing is known, not even the service */

    expect_error("", "malformed", NULL);
    expect_error("1:1,4:ep01,", "malformed", NULL);
    expect_error("1:1,4:ep01,5:users", "malformed", NULL);
    expect_error("1:1,4:ep01,5:users;", "malformed", NULL);
    expect_error("1:1,4:ep01,9:users,", "malformed", NULL);
    expect_error("1:1,4:ep01,x:users,", "malformed", NULL);
    expect_error("1:1,4:ep01,5users,", "malformed", NULL);
    expect_error("1:1,4:ep01,0000000005:users,", "malformed", NULL);
    expect_error("1:1,4:ep01,99999999999999999999:users,", "malformed",
                 NULL);
    expect_error("1:1,4:ep01,5:users,1:-", "malformed", NULL);

    /* the service is known: the caller fetches it */

    expect_error("2:v2,4:ep01,5:users,", "of an unknown format", "users");
    expect_error("1:1,4:ep01,5:users,2:17,", "of too few items", "users");

    /* an invalid name is not the caller's: the message is ignored */

    expect_error("1:1,4:ep01,5:bad:n,2:17,", "of an invalid service name",
                 NULL);
    expect_error("1:1,4:ep01,0:,2:17,", "of an invalid service name", NULL);
}


static void
test_bad_values(void **state)
{
    (void) state;

    expect_error("1:1,4:ep01,5:users,2:1x,1:1,1:5,1:0,1:-,",
                 "of a bad revision, listed flag, time or registry revision",
                 "users");
    expect_error("1:1,4:ep01,5:users,1:1,1:2,1:5,1:0,1:-,",
                 "of a bad revision, listed flag, time or registry revision",
                 "users");
    expect_error("1:1,4:ep01,5:users,1:1,1:1,2:-5,1:0,1:-,",
                 "of a bad revision, listed flag, time or registry revision",
                 "users");
    expect_error("1:1,4:ep01,5:users,1:1,1:1,1:5,0:,1:-,",
                 "of a bad revision, listed flag, time or registry revision",
                 "users");
    expect_error(HEAD "1:-,1:x,", "of trailing items", "users");

    /* counts: more instances or fields than the message has */

    expect_error(HEAD "1:1,", "of a bad number of instances", "users");
    expect_error(HEAD "1:2,1:a,1:0,", "of a bad number of instances",
                 "users");
    expect_error(HEAD "1:1,1:a,1:1,", "of a bad instance", "users");
    expect_error(HEAD "1:1,1:a,1:1,1:k,", "of a bad instance", "users");
    expect_error(HEAD "1:1,1:a,2:-1,", "of a bad instance", "users");
    expect_error(HEAD "1:1,1:a,20:18446744073709551615,",
                 "of a bad instance", "users");
    expect_error(HEAD "1:1,1:a,1:0,1:x,", "of trailing items", "users");

    /* revision 0 carries no delta */

    expect_error("1:1,4:ep01,5:users,1:0,1:1,1:5,1:0,1:1,1:a,1:0,",
                 "of a bad number of instances", "users");
}


static void
test_too_long(void **state)
{
    char        *s;
    size_t       n;
    const char  *err;

    (void) state;

    s = malloc(NGX_GATEWAY_FEED_MAX + 1);
    assert_non_null(s);
    memset(s, '1', NGX_GATEWAY_FEED_MAX + 1);

    assert_int_equal(ngx_gateway_feed_count(s, NGX_GATEWAY_FEED_MAX + 1, &n,
                                            &err), -1);
    assert_string_equal(err, "too long");
    assert_int_equal(n, 0);
    free(s);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_not_carried),
        cmocka_unit_test(test_carried),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_too_long),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
