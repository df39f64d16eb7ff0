
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "ngx_gateway_chash.h"


/*
 * The gateway hashes ids and keys with nginx's ngx_crc32_long(), which is
 * zlib's crc32(): the mappings checked here are the module's.
 */

#define NKEYS   100000
#define MAXN    16

#define KETAMA  0
#define MAGLEV  1
#define HRW     2


typedef struct {
    int                          method;
    size_t                       n;
    char                         names[MAXN][16];
    ngx_gateway_chash_peer_t     peers[MAXN];
    ngx_gateway_ketama_point_t  *points;
    size_t                       npoints;
    uint32_t                    *table;
    ngx_gateway_maglev_fill_t    fill[MAXN];
} ring_t;


static uint32_t  keys[NKEYS];


static uint32_t
crc(const char *s)
{
    return (uint32_t) crc32(0, (const unsigned char *) s, strlen(s));
}


static void
keys_init(void)
{
    int   i;
    char  buf[32];

    for (i = 0; i < NKEYS; i++) {
        snprintf(buf, sizeof(buf), "/users/%d", i);
        keys[i] = crc(buf);
    }
}


static void
ring_build(ring_t *r)
{
    free(r->points);
    r->points = NULL;
    r->npoints = 0;

    if (r->method == KETAMA) {
        r->points = malloc(ngx_gateway_ketama_npoints(r->peers, r->n)
                           * sizeof(ngx_gateway_ketama_point_t));
        assert_non_null(r->points);
        r->npoints = ngx_gateway_ketama_build(r->peers, r->n, r->points);
        assert_int_equal(r->npoints,
                         ngx_gateway_ketama_npoints(r->peers, r->n));

    } else if (r->method == MAGLEV) {
        if (r->table == NULL) {
            r->table = malloc(NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t));
            assert_non_null(r->table);
        }

        ngx_gateway_maglev_build(r->peers, r->n, r->table, r->fill);
    }
}


/* instances in id order, as a snapshot has them */

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}


static void
ring_set(ring_t *r, int method, const int *ids, const int *weights, size_t n)
{
    size_t  i;

    r->method = method;
    r->n = n;

    for (i = 0; i < n; i++) {
        snprintf(r->names[i], sizeof(r->names[i]), "i-%02d", ids[i]);
    }

    qsort(r->names, n, sizeof(r->names[0]), name_cmp);

    for (i = 0; i < n; i++) {
        r->peers[i].id = crc(r->names[i]);
        r->peers[i].weight = weights ? (uint32_t) weights[ids[i]] : 1;
    }

    ring_build(r);
}


/* the instance (its number in its name) a key goes to */

static int
ring_get(ring_t *r, uint32_t key)
{
    size_t  i, best;
    double  s, top;

    switch (r->method) {

    case KETAMA:
        i = r->points[ngx_gateway_ketama_find(r->points, r->npoints, key)]
            .peer;
        break;

    case MAGLEV:
        i = r->table[ngx_gateway_maglev_slot(key)];
        break;

    default:
        best = 0;
        top = -1;

        for (i = 0; i < r->n; i++) {
            s = ngx_gateway_hrw_score(ngx_gateway_chash_mix(key,
                                                            r->peers[i].id),
                                      r->peers[i].weight);
            if (s > top) {
                top = s;
                best = i;
            }
        }

        i = best;
    }

    assert_true(i < r->n);

    return atoi(r->names[i] + 2);
}


static void
ring_free(ring_t *r)
{
    free(r->points);
    free(r->table);
    memset(r, 0, sizeof(ring_t));
}


static void
map_keys(ring_t *r, int *map)
{
    int  i;

    for (i = 0; i < NKEYS; i++) {
        map[i] = ring_get(r, keys[i]);
    }
}


static const int  ten[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
static const int  eleven[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const int  nine[] = { 0, 1, 2, 3, 5, 6, 7, 8, 9 };     /* no 4 */


/* 10 equal instances: each within +-10% of a tenth */

static void
check_even(int method)
{
    int     i, count[MAXN], *map;
    ring_t  r;

    memset(&r, 0, sizeof(ring_t));
    memset(count, 0, sizeof(count));

    map = malloc(NKEYS * sizeof(int));
    assert_non_null(map);

    ring_set(&r, method, ten, NULL, 10);
    map_keys(&r, map);

    for (i = 0; i < NKEYS; i++) {
        count[map[i]]++;
    }

    for (i = 0; i < 10; i++) {
        print_message("# method %d instance %d: %d keys\n", method, i,
                      count[i]);
        assert_in_range(count[i], NKEYS / 10 * 9 / 10, NKEYS / 10 * 11 / 10);
    }

    free(map);
    ring_free(&r);
}


/* an 11th instance takes at most 1/11 + 2% of the keys, all from others */

static void
check_add(int method)
{
    int     i, moved, *before, *after;
    ring_t  r;

    memset(&r, 0, sizeof(ring_t));

    before = malloc(NKEYS * sizeof(int));
    after = malloc(NKEYS * sizeof(int));
    assert_non_null(before);
    assert_non_null(after);

    ring_set(&r, method, ten, NULL, 10);
    map_keys(&r, before);

    ring_set(&r, method, eleven, NULL, 11);
    map_keys(&r, after);

    moved = 0;

    for (i = 0; i < NKEYS; i++) {
        if (before[i] != after[i]) {
            moved++;

            if (method != MAGLEV) {
                /* a key moves to the new instance only */
                assert_int_equal(after[i], 10);
            }
        }
    }

    print_message("# method %d: adding an 11th moved %d keys\n", method,
                  moved);

    assert_true(moved > 0);
    assert_true(moved <= NKEYS / 11 + NKEYS * 2 / 100);

    free(before);
    free(after);
    ring_free(&r);
}


/* removing instance 4 moves its keys, and (but Maglev) no others */

static void
check_remove(int method)
{
    int     i, moved, other, *before, *after;
    ring_t  r;

    memset(&r, 0, sizeof(ring_t));

    before = malloc(NKEYS * sizeof(int));
    after = malloc(NKEYS * sizeof(int));
    assert_non_null(before);
    assert_non_null(after);

    ring_set(&r, method, ten, NULL, 10);
    map_keys(&r, before);

    ring_set(&r, method, nine, NULL, 9);
    map_keys(&r, after);

    moved = 0;
    other = 0;

    for (i = 0; i < NKEYS; i++) {
        if (before[i] == 4) {
            assert_int_not_equal(after[i], 4);
            moved++;

        } else if (before[i] != after[i]) {
            other++;
        }
    }

    print_message("# method %d: removing one moved its %d keys and %d "
                  "others\n", method, moved, other);

    if (method == MAGLEV) {
        /* Maglev refills the table: a few other keys move (under 1%) */
        assert_true(other <= NKEYS / 100);

    } else {
        assert_int_equal(other, 0);
    }

    free(before);
    free(after);
    ring_free(&r);
}


/* weights 1:2:5: shares within +-10% of 1/8, 2/8, 5/8 */

static void
check_weights(int method)
{
    int     i, count[MAXN], *map;
    ring_t  r;

    static const int  three[] = { 0, 1, 2 };
    static const int  weights[] = { 1, 2, 5 };

    memset(&r, 0, sizeof(ring_t));
    memset(count, 0, sizeof(count));

    map = malloc(NKEYS * sizeof(int));
    assert_non_null(map);

    ring_set(&r, method, three, weights, 3);
    map_keys(&r, map);

    for (i = 0; i < NKEYS; i++) {
        count[map[i]]++;
    }

    for (i = 0; i < 3; i++) {
        print_message("# method %d weight %d: %d keys\n", method, weights[i],
                      count[i]);
        assert_in_range(count[i], NKEYS / 8 * weights[i] * 9 / 10,
                        NKEYS / 8 * weights[i] * 11 / 10);
    }

    free(map);
    ring_free(&r);
}


/* the same instances give the same mapping, whatever the order of builds */

static void
check_stable(int method)
{
    int     i, *one, *two;
    ring_t  r;

    memset(&r, 0, sizeof(ring_t));

    one = malloc(NKEYS * sizeof(int));
    two = malloc(NKEYS * sizeof(int));
    assert_non_null(one);
    assert_non_null(two);

    ring_set(&r, method, ten, NULL, 10);
    map_keys(&r, one);

    ring_set(&r, method, nine, NULL, 9);
    ring_set(&r, method, ten, NULL, 10);
    map_keys(&r, two);

    for (i = 0; i < NKEYS; i++) {
        assert_int_equal(one[i], two[i]);
    }

    free(one);
    free(two);
    ring_free(&r);
}


/* one cmocka test per check and method */

#define CHECK(name, check, method)                                            \
    static void                                                               \
    name(void **state __attribute__((unused)))                                \
    {                                                                         \
        check(method);                                                        \
    }

CHECK(test_ketama_even, check_even, KETAMA)
CHECK(test_ketama_add, check_add, KETAMA)
CHECK(test_ketama_remove, check_remove, KETAMA)
CHECK(test_ketama_weights, check_weights, KETAMA)
CHECK(test_ketama_stable, check_stable, KETAMA)
CHECK(test_maglev_even, check_even, MAGLEV)
CHECK(test_maglev_add, check_add, MAGLEV)
CHECK(test_maglev_remove, check_remove, MAGLEV)
CHECK(test_maglev_weights, check_weights, MAGLEV)
CHECK(test_maglev_stable, check_stable, MAGLEV)
CHECK(test_hrw_even, check_even, HRW)
CHECK(test_hrw_add, check_add, HRW)
CHECK(test_hrw_remove, check_remove, HRW)
CHECK(test_hrw_weights, check_weights, HRW)


/* a ring too large for NGX_GATEWAY_KETAMA_MAX is scaled, one point each */

static void
test_ketama_cap(void **state __attribute__((unused)))
{
    size_t                    i, n;
    ngx_gateway_chash_peer_t  peers[3];

    for (i = 0; i < 3; i++) {
        peers[i].id = (uint32_t) i;
        peers[i].weight = 1000;
    }

    n = ngx_gateway_ketama_npoints(peers, 3);
    assert_true(n <= NGX_GATEWAY_KETAMA_MAX + 3);
    assert_true(n >= NGX_GATEWAY_KETAMA_MAX - 3);

    peers[2].weight = 1;
    n = ngx_gateway_ketama_npoints(peers, 3);
    assert_true(n <= NGX_GATEWAY_KETAMA_MAX + 3);

    assert_int_equal(ngx_gateway_ketama_npoints(peers, 0), 0);
}


/* every slot of a Maglev table names an instance, 1 or 1,000 of them */

static void
test_maglev_full(void **state __attribute__((unused)))
{
    size_t                      i, n;
    uint32_t                   *table;
    ngx_gateway_chash_peer_t   *peers;
    ngx_gateway_maglev_fill_t  *fill;

    table = malloc(NGX_GATEWAY_MAGLEV_SIZE * sizeof(uint32_t));
    peers = malloc(1000 * sizeof(ngx_gateway_chash_peer_t));
    fill = malloc(1000 * sizeof(ngx_gateway_maglev_fill_t));
    assert_non_null(table);
    assert_non_null(peers);
    assert_non_null(fill);

    for (n = 1; n <= 1000; n *= 10) {
        for (i = 0; i < n; i++) {
            peers[i].id = crc("x") + (uint32_t) i * 7919;
            peers[i].weight = 1 + i % 3;
        }

        ngx_gateway_maglev_build(peers, n, table, fill);

        for (i = 0; i < NGX_GATEWAY_MAGLEV_SIZE; i++) {
            assert_true(table[i] < n);
        }
    }

    free(table);
    free(peers);
    free(fill);
}


/* the shortcut between equal weights orders as the scores do */

static void
test_hrw_better(void **state)
{
    int       n, want, got;
    double    a, b;
    uint32_t  h1, h2, w1, w2, x;

    (void) state;

    x = 12345;

    for (n = 0; n < 200000; n++) {
        x = x * 1103515245 + 12345;
        h1 = ngx_gateway_chash_mix(x, 1);
        h2 = ngx_gateway_chash_mix(x, 2);
        w1 = 1 + (x >> 8) % 4;
        w2 = (n % 3 == 0) ? w1 : 1 + (x >> 16) % 4;

        a = ngx_gateway_hrw_score(h1, w1);
        b = ngx_gateway_hrw_score(h2, w2);
        want = a > b;
        got = ngx_gateway_hrw_better(h1, w1, h2, w2);

        if (want != got) {
            fail_msg("h %u w %u vs h %u w %u: scores %.17g %.17g", h1, w1,
                     h2, w2, a, b);
        }
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ketama_even),
        cmocka_unit_test(test_ketama_add),
        cmocka_unit_test(test_ketama_remove),
        cmocka_unit_test(test_ketama_weights),
        cmocka_unit_test(test_ketama_stable),
        cmocka_unit_test(test_ketama_cap),
        cmocka_unit_test(test_maglev_even),
        cmocka_unit_test(test_maglev_add),
        cmocka_unit_test(test_maglev_remove),
        cmocka_unit_test(test_maglev_weights),
        cmocka_unit_test(test_maglev_stable),
        cmocka_unit_test(test_maglev_full),
        cmocka_unit_test(test_hrw_even),
        cmocka_unit_test(test_hrw_add),
        cmocka_unit_test(test_hrw_remove),
        cmocka_unit_test(test_hrw_weights),
        cmocka_unit_test(test_hrw_better),
    };

    keys_init();

    return cmocka_run_group_tests_name("chash", tests, NULL, NULL);
}
