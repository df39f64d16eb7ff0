
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * Round robin's ticket blocks (ngx_gateway_swrr.h): how many tickets a
 * worker takes at once, and a model of workers sharing one service's
 * counter that checks no ticket is used twice or lost.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_swrr.h"


#define NWORKERS  4
#define NTICKETS  200000


typedef struct {
    uint64_t                counter;        /* the service's next ticket */
    uint64_t                fetches;        /* shared writes */
    ngx_gateway_rr_block_t  blocks[NWORKERS];
    unsigned char           used[NTICKETS];
} model_t;


/* what the balancer does for worker w at time now */

static uint64_t
take(model_t *m, unsigned w, uint64_t now)
{
    uint32_t                 n;
    uint64_t                 t;
    ngx_gateway_rr_block_t  *b;

    b = &m->blocks[w];

    if (b->next != b->end) {
        t = b->next++;

    } else {
        n = ngx_gateway_rr_block_size(b, now);
        assert_in_range(n, 1, NGX_GATEWAY_RR_BLOCK_MAX);

        t = ngx_gateway_rr_block_set(b, m->counter, n);
        m->counter += n;
        m->fetches++;
    }

    assert_true(t < NTICKETS);
    assert_int_equal(m->used[t], 0);
    m->used[t] = 1;

    return t;
}


/* the tick's compare-and-set: only the latest block goes back */

static int
give_back(model_t *m, unsigned w)
{
    ngx_gateway_rr_block_t  *b;

    b = &m->blocks[w];

    if (b->next != b->end && m->counter == b->end) {
        m->counter = b->next;
        b->end = b->next;
        return 1;
    }

    return 0;
}


static uint64_t
held(model_t *m, unsigned w)
{
    return m->blocks[w].end - m->blocks[w].next;
}


static int
setup(void **state)
{
    *state = calloc(1, sizeof(model_t));

    return *state == NULL;
}


static int
teardown(void **state)
{
    free(*state);

    return 0;
}


static void
test_rare_one_ticket(void **state)
{
    uint64_t  now, k;
    model_t  *m;

    m = *state;

    /* 15 selections in every millisecond: never a block */

    for (now = 1000; now < 1200; now++) {
        for (k = 0; k < NGX_GATEWAY_RR_HOT - 1; k++) {
            (void) take(m, 0, now);
            assert_int_equal(held(m, 0), 0);
        }
    }

    assert_int_equal(m->fetches, 200 * (NGX_GATEWAY_RR_HOT - 1));

    /* a selection every other millisecond: one ticket each */

    for (now = 2000; now < 2100; now += 2) {
        (void) take(m, 0, now);
        assert_int_equal(held(m, 0), 0);
    }
}


static void
test_hot_grows_to_bound(void **state)
{
    uint64_t  k, fetches;
    uint32_t  last;
    model_t  *m;

    m = *state;

    /* the first NGX_GATEWAY_RR_HOT of a millisecond are single tickets */

    for (k = 0; k < NGX_GATEWAY_RR_HOT; k++) {
        (void) take(m, 0, 5000);
        assert_int_equal(held(m, 0), 0);
    }

    /* then each block doubles, up to the bound, and stays there */

    last = 1;

    for (k = 0; k < 10000; k++) {
        fetches = m->fetches;
        (void) take(m, 0, 5000);

        if (m->fetches != fetches) {
            assert_true(m->blocks[0].size == last * 2
                        || m->blocks[0].size == NGX_GATEWAY_RR_BLOCK_MAX);
            last = m->blocks[0].size;
        }

        assert_true(held(m, 0) < NGX_GATEWAY_RR_BLOCK_MAX);
    }

    assert_int_equal(last, NGX_GATEWAY_RR_BLOCK_MAX);

    /* 10,016 selections: 16 single tickets, 6 growing blocks, then 64s */
    assert_true(m->fetches < NGX_GATEWAY_RR_HOT + 6
                             + 10000 / NGX_GATEWAY_RR_BLOCK_MAX + 2);
}


static void
test_cools_down(void **state)
{
    uint64_t  k;
    model_t  *m;

    m = *state;

    for (k = 0; k < 1000; k++) {
        (void) take(m, 0, 7000);
    }

    assert_int_equal(m->blocks[0].size, NGX_GATEWAY_RR_BLOCK_MAX);

    /* a block used up in the next millisecond: half */

    while (held(m, 0)) {
        (void) take(m, 0, 7001);
    }

    (void) take(m, 0, 7001);
    assert_int_equal(m->blocks[0].size, NGX_GATEWAY_RR_BLOCK_MAX / 2);

    /* after a longer pause: one ticket again */

    while (held(m, 0)) {
        (void) take(m, 0, 7001);
    }

    (void) take(m, 0, 7010);
    assert_int_equal(m->blocks[0].size, 1);
    assert_int_equal(held(m, 0), 0);
}


/*
 * Workers at different rates on one counter, with ticks: at any time the
 * tickets below the counter are each used once or held by a worker (at
 * most NGX_GATEWAY_RR_BLOCK_MAX - 1 each); once the latest blocks went
 * back and the others were used up, the used tickets are exactly
 * [0, counter): an exact split of whole cycles.
 */

static void
test_workers_lose_nothing(void **state)
{
    unsigned  w, rate[NWORKERS] = { 200, 40, 3, 1 };
    uint64_t  now, k, t, used, h;
    model_t  *m;

    m = *state;

    used = 0;

    for (now = 1; now <= 600; now++) {
        for (k = 0; k < 200; k++) {
            for (w = 0; w < NWORKERS; w++) {
                if (k < rate[w]) {
                    (void) take(m, w, now);
                    used++;
                }
            }
        }

        if (now % 100 == 0) {
            for (w = NWORKERS; w-- > 0; ) {
                (void) give_back(m, w);
            }
        }

        h = 0;

        for (w = 0; w < NWORKERS; w++) {
            assert_true(held(m, w) < NGX_GATEWAY_RR_BLOCK_MAX);
            h += held(m, w);
        }

        assert_int_equal(m->counter, used + h);
    }

    /* far fewer shared writes than selections */
    assert_true(m->fetches * 10 < used);

    /* the burst ends: what is latest goes back, the rest is used up */

    for (w = 0; w < NWORKERS; w++) {
        (void) give_back(m, w);
    }

    for (w = 0; w < NWORKERS; w++) {
        while (held(m, w)) {
            (void) take(m, w, 2000);
            used++;
        }
    }

    assert_int_equal(m->counter, used);

    for (t = 0; t < m->counter; t++) {
        assert_int_equal(m->used[t], 1);
    }
}


static void
test_give_back_latest_only(void **state)
{
    uint64_t  k;
    model_t  *m;

    m = *state;

    for (k = 0; k < 100; k++) {
        (void) take(m, 0, 9000);
    }

    assert_true(held(m, 0) > 0);

    /* another worker's ticket since: worker 0's block is not the latest */

    (void) take(m, 1, 9000);
    assert_int_equal(give_back(m, 0), 0);
    assert_true(held(m, 0) > 0);

    /* worker 0 keeps its tickets for its next selections */

    k = m->blocks[0].next;
    assert_int_equal(take(m, 0, 9050), k);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rare_one_ticket,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_hot_grows_to_bound,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_cools_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_lose_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_give_back_latest_only,
                                        setup, teardown),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
