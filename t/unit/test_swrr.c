
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_swrr.h"


#define NPEERS  8


typedef struct {
    ngx_gateway_swrr_t  peers[NPEERS];
    int                 eligible[NPEERS];
    size_t              n;
    size_t              calls;
} pool_t;


static ngx_gateway_swrr_t *
peer(void *ctx, size_t i)
{
    pool_t  *pool;

    pool = ctx;
    pool->calls++;

    assert_true(i < pool->n);

    return pool->eligible[i] ? &pool->peers[i] : NULL;
}


static void
pool_init(pool_t *pool, const int *weights, size_t n)
{
    size_t  i;

    memset(pool, 0, sizeof(pool_t));
    pool->n = n;

    for (i = 0; i < n; i++) {
        ngx_gateway_swrr_reset(&pool->peers[i], weights[i]);
        pool->eligible[i] = 1;
    }
}


static void
test_reset(void **state)
{
    ngx_gateway_swrr_t  p;

    (void) state;

    memset(&p, 0x5a, sizeof(p));
    ngx_gateway_swrr_reset(&p, 7);

    assert_int_equal(p.weight, 7);
    assert_int_equal(p.current_weight, 0);
}


static void
test_classic_sequence(void **state)
{
    int           i, round;
    char          seq[8];
    pool_t        pool;
    static const int  w[] = { 5, 1, 1 };

    (void) state;

    pool_init(&pool, w, 3);

    /* the sequence repeats every sum(weights) picks */

    for (round = 0; round < 3; round++) {
        for (i = 0; i < 7; i++) {
            seq[i] = (char) ('a' + ngx_gateway_swrr_select(3, peer, &pool));
        }

        seq[7] = '\0';
        assert_string_equal(seq, "aabacaa");

        for (i = 0; i < 3; i++) {
            assert_int_equal(pool.peers[i].current_weight, 0);
        }
    }

    /* every candidate is looked at once per pick */
    assert_int_equal(pool.calls, 3 * 7 * 3);
}


static void
test_skip_ineligible(void **state)
{
    int           i;
    ssize_t       r;
    pool_t        pool;
    static const int  w[] = { 5, 1, 1 };

    (void) state;

    pool_init(&pool, w, 3);
    pool.eligible[0] = 0;

    for (i = 0; i < 10; i++) {
        r = ngx_gateway_swrr_select(3, peer, &pool);
        assert_int_equal(r, 1 + i % 2);
    }

    /* an ineligible peer's state is not touched */
    assert_int_equal(pool.peers[0].current_weight, 0);
    assert_int_equal(pool.peers[0].weight, 5);

    /* only one left */
    pool.eligible[1] = 0;

    for (i = 0; i < 5; i++) {
        assert_int_equal(ngx_gateway_swrr_select(3, peer, &pool), 2);
    }

    /* the last one eligible */
    pool_init(&pool, w, 3);
    pool.eligible[0] = 0;
    pool.eligible[1] = 0;

    for (i = 0; i < 5; i++) {
        assert_int_equal(ngx_gateway_swrr_select(3, peer, &pool), 2);
    }
}


static void
test_none_eligible(void **state)
{
    pool_t        pool;
    static const int  w[] = { 5, 1, 1 };

    (void) state;

    pool_init(&pool, w, 3);
    pool.eligible[0] = 0;
    pool.eligible[1] = 0;
    pool.eligible[2] = 0;

    assert_int_equal(ngx_gateway_swrr_select(3, peer, &pool), -1);
    assert_int_equal(pool.calls, 3);

    /* no candidates at all */
    assert_int_equal(ngx_gateway_swrr_select(0, peer, &pool), -1);
    assert_int_equal(pool.calls, 3);
}


static void
test_distribution(void **state)
{
    int           i, count[NPEERS];
    size_t        k;
    ssize_t       r;
    pool_t        pool;
    static const int  w[] = { 3, 1, 6, 10, 5 };   /* sum 25 */

    (void) state;

    pool_init(&pool, w, 5);
    memset(count, 0, sizeof(count));

    for (i = 0; i < 1000; i++) {
        r = ngx_gateway_swrr_select(5, peer, &pool);
        assert_true(r >= 0 && r < 5);
        count[r]++;
    }

    for (k = 0; k < 5; k++) {
        assert_int_equal(count[k], w[k] * 1000 / 25);
    }

    /* smoothness: the heaviest peer is never picked 3 times in a row */
    pool_init(&pool, w, 5);

    {
        int      run;
        ssize_t  last;

        run = 0;
        last = -1;

        for (i = 0; i < 100; i++) {
            r = ngx_gateway_swrr_select(5, peer, &pool);
            run = (r == last) ? run + 1 : 1;
            last = r;
            assert_true(run <= 2);
        }
    }
}


static void
test_equal_weights(void **state)
{
    int           i;
    pool_t        pool;
    static const int  w[] = { 1, 1, 1, 1 };

    (void) state;

    pool_init(&pool, w, 4);

    for (i = 0; i < 12; i++) {
        assert_int_equal(ngx_gateway_swrr_select(4, peer, &pool), i % 4);
    }
}


static void
test_current_weights_sum_to_zero(void **state)
{
    int           i, sum;
    size_t        k;
    pool_t        pool;
    static const int  w[] = { 3, 2, 1, 7 };

    (void) state;

    /* each pick adds the weights and takes their total from the chosen one */

    pool_init(&pool, w, 4);

    for (i = 0; i < 100; i++) {
        assert_true(ngx_gateway_swrr_select(4, peer, &pool) >= 0);

        sum = 0;

        for (k = 0; k < 4; k++) {
            sum += pool.peers[k].current_weight;
            assert_true(pool.peers[k].current_weight > -13);
            assert_true(pool.peers[k].current_weight < 13);
        }

        assert_int_equal(sum, 0);
    }
}


static void
test_weight_change(void **state)
{
    int           i, count[NPEERS];
    ssize_t       r;
    pool_t        pool;
    static const int  w[] = { 1, 1 };

    (void) state;

    /* a new weight (the registry resets the peer) gives the new share */

    pool_init(&pool, w, 2);

    for (i = 0; i < 5; i++) {
        (void) ngx_gateway_swrr_select(2, peer, &pool);
    }

    ngx_gateway_swrr_reset(&pool.peers[1], 3);
    memset(count, 0, sizeof(count));

    for (i = 0; i < 400; i++) {
        r = ngx_gateway_swrr_select(2, peer, &pool);
        assert_true(r == 0 || r == 1);
        count[r]++;
    }

    assert_in_range(count[0], 99, 101);
    assert_in_range(count[1], 299, 301);
}



/* ticket round robin */

static unsigned long
gcd(unsigned long a, unsigned long b)
{
    return b ? gcd(b, a % b) : a;
}


static void
test_stride_coprime(void **state)
{
    unsigned long  total, s;

    (void) state;

    for (total = 1; total <= 5000; total++) {
        s = ngx_gateway_rr_stride(total);

        assert_true(s >= 1);
        assert_true(total == 1 || s < total);
        assert_int_equal(gcd(s, total), 1);
    }

    /* near total / phi */
    assert_true(ngx_gateway_rr_stride(1000) > 600);
    assert_true(ngx_gateway_rr_stride(1000) < 640);
}


/* position p is ticket p x inverse: each ticket's position, back */

static void
test_stride_inverse(void **state)
{
    unsigned long  total, s, inv, p;

    (void) state;

    assert_int_equal(ngx_gateway_rr_inverse(1, 1), 0);

    for (total = 2; total <= 5000; total++) {
        s = ngx_gateway_rr_stride(total);
        inv = ngx_gateway_rr_inverse(s, total);

        assert_true(inv < total);
        assert_int_equal(s * inv % total, 1);

        for (p = 0; p < total; p += 1 + total / 7) {
            assert_int_equal(ngx_gateway_rr_position(p * inv % total, total,
                                                     s),
                             p);
        }
    }
}


/* the instance whose range of weights laid end to end holds pos */

static size_t
owner(const unsigned long *w, size_t n, unsigned long pos)
{
    size_t         i;
    unsigned long  upto;

    upto = 0;

    for (i = 0; i < n; i++) {
        upto += w[i];

        if (pos < upto) {
            return i;
        }
    }

    fail();
    return 0;
}


static unsigned long
test_upto(void *ctx, size_t i)
{
    const unsigned long  *w = ctx;
    unsigned long         upto;
    size_t                k;

    for (upto = 0, k = 0; k <= i; k++) {
        upto += w[k];
    }

    return upto;
}


/* the table written in one pass is each ticket's owner, by definition */

static void
test_order_table(void **state)
{
    static const unsigned long  ws[][5] = {
        { 1, 0, 0, 0, 0 }, { 1, 1, 0, 0, 0 }, { 1, 3, 0, 0, 0 },
        { 1, 2, 5, 0, 0 }, { 3, 0, 4, 0, 9 }, { 50, 1, 7, 13, 2 },
        { 1000, 999, 1, 0, 0 }, { 7, 7, 7, 7, 7 } };

    size_t         t, n;
    uint16_t       order[2000];
    unsigned long  k, total, stride;

    (void) state;

    for (t = 0; t < sizeof(ws) / sizeof(ws[0]); t++) {
        for (n = 5; n > 1 && ws[t][n - 1] == 0; n--) { /* void */ }

        total = test_upto((void *) ws[t], n - 1);
        stride = ngx_gateway_rr_stride(total);

        ngx_gateway_rr_order(order, total, stride, n, test_upto,
                             (void *) ws[t]);

        for (k = 0; k < total; k++) {
            assert_int_equal(order[k],
                owner(ws[t], n, ngx_gateway_rr_position(k, total, stride)));
        }
    }
}


static void
check_cycles(const unsigned long *w, size_t n, uint64_t first)
{
    size_t         i, counts[NPEERS];
    uint64_t       t;
    unsigned long  total, stride, c;

    total = 0;
    for (i = 0; i < n; i++) {
        total += w[i];
    }

    stride = ngx_gateway_rr_stride(total);

    /* any total consecutive tickets, wherever they start */

    for (c = 0; c < 3; c++) {
        memset(counts, 0, sizeof(counts));

        for (t = first + c * total; t < first + (c + 1) * total; t++) {
            counts[owner(w, n, ngx_gateway_rr_position(t, total, stride))]++;
        }

        for (i = 0; i < n; i++) {
            assert_int_equal(counts[i], w[i]);
        }
    }
}


static void
test_ticket_cycles_exact(void **state)
{
    static const unsigned long  w1[] = { 1, 3 };
    static const unsigned long  w2[] = { 5, 1, 1 };
    static const unsigned long  w3[] = { 1, 2, 5 };
    static const unsigned long  w4[] = { 1000, 999, 1, 7, 13, 1, 1, 500 };

    (void) state;

    check_cycles(w1, 2, 0);
    check_cycles(w2, 3, 12345);
    check_cycles(w3, 3, 7);
    check_cycles(w4, 8, UINT64_MAX - 10000);
}


static void
test_ticket_interleaved(void **state)
{
    static const unsigned long  w[] = { 1, 3 };
    static const unsigned long  w5[] = { 5, 1, 1 };

    size_t         prev, cur, run, longest;
    uint64_t       t;
    unsigned long  stride;

    (void) state;

    /* 1:3: the light one never twice in a row */

    stride = ngx_gateway_rr_stride(4);
    prev = 1;

    for (t = 0; t < 400; t++) {
        cur = owner(w, 2, ngx_gateway_rr_position(t, 4, stride));
        assert_false(cur == 0 && prev == 0);
        prev = cur;
    }

    /*
     * 5:1:1: the heavy one at most four in a row, as in nginx's SWRR
     * (a a b a c a a, then a a again: four across two cycles)
     */

    stride = ngx_gateway_rr_stride(7);
    run = 0;
    longest = 0;

    for (t = 0; t < 700; t++) {
        cur = owner(w5, 3, ngx_gateway_rr_position(t, 7, stride));
        run = (cur == 0) ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }

    assert_true(longest <= 4);
}


static void
test_ticket_accept_share(void **state)
{
    uint64_t       c;
    unsigned long  k, part, taken, weight;

    (void) state;

    /* weight 1: part/64 of the cycles */

    for (part = 1; part <= 64; part++) {
        taken = 0;

        for (c = 0; c < 6400; c++) {
            taken += ngx_gateway_rr_accept(c, 0, part, 64);
        }

        assert_true(taken >= part * 100 - 2 && taken <= part * 100 + 2);
    }

    /* weight 5 at a quarter: a quarter of its picks, every cycle close */

    weight = 5;
    part = weight * 64 / 4;
    taken = 0;

    for (c = 0; c < 1000; c++) {
        for (k = 0; k < weight; k++) {
            taken += ngx_gateway_rr_accept(c, k, part, 64);
        }
    }

    assert_true(taken >= 1240 && taken <= 1260);

    /* all of it: always */

    for (c = 0; c < 100; c++) {
        for (k = 0; k < weight; k++) {
            assert_true(ngx_gateway_rr_accept(c, k, weight * 64, 64));
        }
    }
}

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_classic_sequence),
        cmocka_unit_test(test_skip_ineligible),
        cmocka_unit_test(test_none_eligible),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_equal_weights),
        cmocka_unit_test(test_current_weights_sum_to_zero),
        cmocka_unit_test(test_weight_change),
        cmocka_unit_test(test_stride_coprime),
        cmocka_unit_test(test_stride_inverse),
        cmocka_unit_test(test_order_table),
        cmocka_unit_test(test_ticket_cycles_exact),
        cmocka_unit_test(test_ticket_interleaved),
        cmocka_unit_test(test_ticket_accept_share),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("swrr", tests, NULL, NULL);
}
