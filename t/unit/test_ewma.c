
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <cmocka.h>

#include "ngx_gateway_ewma.h"


#define DECAY  10000.0      /* ms */


static void
test_pack(void **state)
{
    uint64_t  w;

    (void) state;

    w = ngx_gateway_ewma_pack(1234.5, 987654321);
    assert_true(ngx_gateway_ewma_rtt(w) == 1234.5);
    assert_int_equal(ngx_gateway_ewma_stamp(w), 987654321);

    /* an estimate over an hour is kept at an hour, none is negative */
    w = ngx_gateway_ewma_pack(1e12, 5);
    assert_true(ngx_gateway_ewma_rtt(w) == (double) (float) 3600e6);
    assert_int_equal(ngx_gateway_ewma_stamp(w), 5);
    assert_true(ngx_gateway_ewma_rtt(ngx_gateway_ewma_pack(-3, 5)) == 0);

    /* the stamp keeps the low 32 bits of the clock */
    w = ngx_gateway_ewma_pack(7, (1ULL << 32) + 3);
    assert_true(ngx_gateway_ewma_rtt(w) == 7);
    assert_int_equal(ngx_gateway_ewma_stamp(w), 3);
}


static void
test_weight(void **state)
{
    double  x;

    (void) state;

    for (x = 0; x < 3; x += 1.0 / 256) {
        assert_true(fabs(ngx_gateway_ewma_weight(x) - exp(-x)) < 1e-6);
    }
}


static void
test_decay_without_samples(void **state)
{
    uint64_t  w;

    (void) state;

    w = ngx_gateway_ewma_pack(50000, 1000);

    assert_true(fabs(ngx_gateway_ewma_at(w, 1000, DECAY) - 50000) < 1e-9);
    assert_true(fabs(ngx_gateway_ewma_at(w, 1000 + 10000, DECAY)
                     - 50000 * exp(-1)) < 0.01);
    assert_true(ngx_gateway_ewma_at(w, 1000 + 100000, DECAY) < 3);

    /* a stamp a little ahead of now (another worker's clock) is now */
    assert_true(fabs(ngx_gateway_ewma_at(w, 999, DECAY) - 50000) < 1e-9);

    /* across the stamp's wrap */
    w = ngx_gateway_ewma_pack(50000, (1ULL << 32) - 5000);
    assert_true(fabs(ngx_gateway_ewma_at(w, (1ULL << 32) + 5000, DECAY)
                     - 50000 * exp(-1)) < 0.01);
}


static void
test_peak(void **state)
{
    uint64_t  w;

    (void) state;

    /* the first sample is the estimate */
    w = ngx_gateway_ewma_sample(0, 100, 800, DECAY);
    assert_true(ngx_gateway_ewma_rtt(w) == 800);
    assert_int_equal(ngx_gateway_ewma_stamp(w), 100);

    /* a slower one replaces it at once */
    w = ngx_gateway_ewma_sample(w, 101, 50000, DECAY);
    assert_true(ngx_gateway_ewma_rtt(w) == 50000);
    assert_int_equal(ngx_gateway_ewma_stamp(w), 101);

    /* a faster one in the same millisecond changes nothing */
    w = ngx_gateway_ewma_sample(w, 101, 800, DECAY);
    assert_true(ngx_gateway_ewma_rtt(w) == 50000);

    /* a decay later it is blended in: 50000 / e + 800 (1 - 1 / e) */
    w = ngx_gateway_ewma_sample(w, 101 + 10000, 800, DECAY);
    assert_true(fabs(ngx_gateway_ewma_rtt(w)
                     - (50000 * exp(-1) + 800 * (1 - exp(-1)))) < 0.01);

    /* above the decayed estimate (not the stored one) is a peak */
    w = ngx_gateway_ewma_pack(50000, 0);
    w = ngx_gateway_ewma_sample(w, 30000, 20000, DECAY);
    assert_true(ngx_gateway_ewma_rtt(w) == 20000);
}


static void
test_converges(void **state)
{
    int       i;
    uint64_t  w;

    (void) state;

    /*
     * samples of 1 ms every millisecond for 100 s (10 decays) pull a
     * 30 ms start down to 1 ms: each moves it by a part in 10,000
     */
    w = ngx_gateway_ewma_pack(30000, 0);

    for (i = 1; i <= 100000; i++) {
        w = ngx_gateway_ewma_sample(w, (uint64_t) i, 1000, DECAY);
    }

    assert_true(ngx_gateway_ewma_rtt(w) >= 1000);
    assert_true(ngx_gateway_ewma_rtt(w) < 1000 + 29000 * exp(-10) + 1);

    /* never 0, which means "no estimate" */
    assert_true(ngx_gateway_ewma_sample(0, 0, 0, DECAY) != 0);
    assert_true(ngx_gateway_ewma_sample(ngx_gateway_ewma_pack(0, 0), 0, 0,
                                        DECAY)
                != 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack),
        cmocka_unit_test(test_weight),
        cmocka_unit_test(test_decay_without_samples),
        cmocka_unit_test(test_peak),
        cmocka_unit_test(test_converges),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("ewma", tests, NULL, NULL);
}
