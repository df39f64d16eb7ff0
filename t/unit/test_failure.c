
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_failure.h"


static void
test_duration(void **state)
{
    (void) state;

    /* 30 s x ejections, at most 300 s */
    assert_int_equal(ngx_gateway_eject_duration(30000, 300000, 1), 30000);
    assert_int_equal(ngx_gateway_eject_duration(30000, 300000, 2), 60000);
    assert_int_equal(ngx_gateway_eject_duration(30000, 300000, 10), 300000);
    assert_int_equal(ngx_gateway_eject_duration(30000, 300000, 11), 300000);

    /* no overflow however often it was ejected */
    assert_int_equal(ngx_gateway_eject_duration(30000, 300000, UINT64_MAX),
                     300000);
    assert_int_equal(ngx_gateway_eject_duration(UINT64_MAX / 2, UINT64_MAX,
                                                3), UINT64_MAX);
    assert_int_equal(ngx_gateway_eject_duration(7, 20, 2), 14);
    assert_int_equal(ngx_gateway_eject_duration(7, 20, 3), 20);
}


static void
test_cap(void **state)
{
    (void) state;

    /* always at least one may be ejected */
    assert_int_equal(ngx_gateway_eject_cap(3, 10), 1);
    assert_int_equal(ngx_gateway_eject_cap(1, 0), 1);
    assert_int_equal(ngx_gateway_eject_cap(0, 10), 1);

    assert_int_equal(ngx_gateway_eject_cap(4, 25), 1);
    assert_int_equal(ngx_gateway_eject_cap(4, 50), 2);
    assert_int_equal(ngx_gateway_eject_cap(10, 10), 1);
    assert_int_equal(ngx_gateway_eject_cap(19, 10), 1);
    assert_int_equal(ngx_gateway_eject_cap(20, 10), 2);
    assert_int_equal(ngx_gateway_eject_cap(2, 100), 2);
    assert_int_equal(ngx_gateway_eject_cap(UINT64_MAX, 100), UINT64_MAX);
}


static void
test_panic(void **state)
{
    (void) state;

    /* fewer than panic percent in rotation */
    assert_true(ngx_gateway_eject_panic(1, 2, 60));
    assert_false(ngx_gateway_eject_panic(1, 2, 50));
    assert_false(ngx_gateway_eject_panic(2, 3, 50));
    assert_true(ngx_gateway_eject_panic(1, 3, 50));
    assert_false(ngx_gateway_eject_panic(0, 3, 0));
    assert_false(ngx_gateway_eject_panic(0, 0, 50));
    assert_true(ngx_gateway_eject_panic(0, 1, 1));
}


static void
test_budget(void **state)
{
    (void) state;

    /* percent of the first attempts in flight, at least min */
    assert_int_equal(ngx_gateway_retry_budget(0, 20, 3), 3);
    assert_int_equal(ngx_gateway_retry_budget(14, 20, 3), 3);
    assert_int_equal(ngx_gateway_retry_budget(20, 20, 3), 4);
    assert_int_equal(ngx_gateway_retry_budget(24, 20, 3), 4);
    assert_int_equal(ngx_gateway_retry_budget(25, 20, 3), 5);
    assert_int_equal(ngx_gateway_retry_budget(4, 20, 0), 0);
    assert_int_equal(ngx_gateway_retry_budget(10, 1000, 0), 100);
    assert_int_equal(ngx_gateway_retry_budget(UINT64_MAX, 100, 0),
                     UINT64_MAX);
}


static void
test_statuses(void **state)
{
    size_t    bad, badlen;
    uint64_t  bits[NGX_GATEWAY_STATUS_WORDS];

    (void) state;

    memset(bits, 0, sizeof(bits));

    assert_int_equal(ngx_gateway_status_list("502,503,504", 11, bits,
                                             &bad, &badlen), 0);
    assert_true(ngx_gateway_status_in(bits, 502));
    assert_true(ngx_gateway_status_in(bits, 503));
    assert_true(ngx_gateway_status_in(bits, 504));
    assert_false(ngx_gateway_status_in(bits, 500));
    assert_false(ngx_gateway_status_in(bits, 200));
    assert_false(ngx_gateway_status_in(bits, 0));
    assert_false(ngx_gateway_status_in(bits, 99999));

    memset(bits, 0, sizeof(bits));

    assert_int_equal(ngx_gateway_status_list("100,599", 7, bits,
                                             &bad, &badlen), 0);
    assert_true(ngx_gateway_status_in(bits, 100));
    assert_true(ngx_gateway_status_in(bits, 599));
    assert_false(ngx_gateway_status_in(bits, 101));

    assert_int_equal(ngx_gateway_status_list("502,99", 6, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(bad, 4);
    assert_int_equal(badlen, 2);

    assert_int_equal(ngx_gateway_status_list("600", 3, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(ngx_gateway_status_list("502,", 4, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(bad, 4);
    assert_int_equal(badlen, 0);
    assert_int_equal(ngx_gateway_status_list("5x2", 3, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(ngx_gateway_status_list("", 0, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(ngx_gateway_status_list("502,,503", 8, bits,
                                             &bad, &badlen), -1);
    assert_int_equal(bad, 4);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_panic),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_statuses),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("failure", tests, NULL, NULL);
}
