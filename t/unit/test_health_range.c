
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_gateway_health_range.h"


#define S(s)  s, sizeof(s) - 1


static void
test_status_valid(void **state)
{
    char  buf[NGX_GATEWAY_HEALTH_STATUS_MAX + 2];

    (void) state;

    assert_true(ngx_gateway_health_status_valid(S("200-399")));
    assert_true(ngx_gateway_health_status_valid(S("200")));
    assert_true(ngx_gateway_health_status_valid(S("200,204,300-302")));
    assert_true(ngx_gateway_health_status_valid(S("100-599")));
    assert_true(ngx_gateway_health_status_valid(S("404-404")));

    assert_false(ngx_gateway_health_status_valid(S("")));
    assert_false(ngx_gateway_health_status_valid(S("99")));
    assert_false(ngx_gateway_health_status_valid(S("600")));
    assert_false(ngx_gateway_health_status_valid(S("2000")));
    assert_false(ngx_gateway_health_status_valid(S("399-200")));
    assert_false(ngx_gateway_health_status_valid(S("200-")));
    assert_false(ngx_gateway_health_status_valid(S("-200")));
    assert_false(ngx_gateway_health_status_valid(S("200,")));
    assert_false(ngx_gateway_health_status_valid(S(",200")));
    assert_false(ngx_gateway_health_status_valid(S("200,,204")));
    assert_false(ngx_gateway_health_status_valid(S("200 204")));
    assert_false(ngx_gateway_health_status_valid(S("200-300-400")));
    assert_false(ngx_gateway_health_status_valid(S("2x0")));
    assert_false(ngx_gateway_health_status_valid("200\0", 4));

    /* bounded: 64 bytes at most */
    memset(buf, 0, sizeof(buf));
    memcpy(buf, "200,200,200,200,200,200,200,200,"
                "200,200,200,200,200,200,200,200,2", 65);
    assert_false(ngx_gateway_health_status_valid(buf, 62));
    assert_true(ngx_gateway_health_status_valid(buf, 63));
    assert_false(ngx_gateway_health_status_valid(buf, 65));
}


static void
test_status_match(void **state)
{
    (void) state;

    assert_true(ngx_gateway_health_status_match(S("200-399"), 200));
    assert_true(ngx_gateway_health_status_match(S("200-399"), 399));
    assert_true(ngx_gateway_health_status_match(S("200-399"), 302));
    assert_false(ngx_gateway_health_status_match(S("200-399"), 199));
    assert_false(ngx_gateway_health_status_match(S("200-399"), 400));
    assert_false(ngx_gateway_health_status_match(S("200-399"), 0));

    assert_true(ngx_gateway_health_status_match(S("200,204,300-302"), 204));
    assert_true(ngx_gateway_health_status_match(S("200,204,300-302"), 301));
    assert_false(ngx_gateway_health_status_match(S("200,204,300-302"), 201));
    assert_false(ngx_gateway_health_status_match(S("200,204,300-302"), 303));

    assert_true(ngx_gateway_health_status_match(S("503"), 503));
    assert_false(ngx_gateway_health_status_match(S("503"), 502));

    /* an invalid list matches nothing */
    assert_false(ngx_gateway_health_status_match(S("200-"), 200));
}


static void
test_uri_valid(void **state)
{
    char  buf[NGX_GATEWAY_HEALTH_URI_MAX + 1];

    (void) state;

    assert_true(ngx_gateway_health_uri_valid(S("/")));
    assert_true(ngx_gateway_health_uri_valid(S("/healthz")));
    assert_true(ngx_gateway_health_uri_valid(S("/a/b?c=d&e=%20")));

    assert_false(ngx_gateway_health_uri_valid(S("")));
    assert_false(ngx_gateway_health_uri_valid(S("health")));
    assert_false(ngx_gateway_health_uri_valid(S("/a b")));
    assert_false(ngx_gateway_health_uri_valid(S("/a\r\nHost: x")));
    assert_false(ngx_gateway_health_uri_valid(S("/a\tb")));
    assert_false(ngx_gateway_health_uri_valid(S("/\x7f")));
    assert_false(ngx_gateway_health_uri_valid(S("/\xc3\xa9")));
    assert_false(ngx_gateway_health_uri_valid("/\0", 2));

    memset(buf, 'a', sizeof(buf));
    buf[0] = '/';
    assert_true(ngx_gateway_health_uri_valid(buf, NGX_GATEWAY_HEALTH_URI_MAX));
    assert_false(ngx_gateway_health_uri_valid(buf,
                                              NGX_GATEWAY_HEALTH_URI_MAX + 1));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_status_valid),
        cmocka_unit_test(test_status_match),
        cmocka_unit_test(test_uri_valid),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("health_range", tests, NULL, NULL);
}
