
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

#include "ngx_gateway_traceparent.h"


#define TP  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


static int
parse(ngx_gateway_traceparent_t *tp, const char *s)
{
    return ngx_gateway_traceparent_parse(tp, s, strlen(s));
}


static void
test_parse_good(void **state)
{
    static const unsigned char  trace[] = {
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
        0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
    static const unsigned char  span[] = {
        0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };

    ngx_gateway_traceparent_t  tp;

    (void) state;

    assert_int_equal(parse(&tp, TP), 0);
    assert_memory_equal(tp.trace_id, trace, 16);
    assert_memory_equal(tp.span_id, span, 8);
    assert_int_equal(tp.flags, 1);

    assert_int_equal(parse(&tp,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), 0);
    assert_int_equal(tp.flags, 0);

    /* other flags are kept as they are */
    assert_int_equal(parse(&tp,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"), 0);
    assert_int_equal(tp.flags, 0xff);

    /* a later version: what follows after a dash is not this version's */
    assert_int_equal(parse(&tp,
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), 0);
    assert_int_equal(parse(&tp,
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"), 0);
    assert_int_equal(tp.flags, 1);
}


static void
test_parse_bad(void **state)
{
    static const char  *bad[] = {
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        TP "-",                                      /* 00 is 55 exactly */
        TP " ",
        " " TP,
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\x80\x80",
    };

    size_t                     i;
    ngx_gateway_traceparent_t  tp;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(&tp, bad[i]) != -1) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }
}


static void
test_format(void **state)
{
    char                       out[NGX_GATEWAY_TRACEPARENT_LEN + 1];
    ngx_gateway_traceparent_t  tp;

    (void) state;

    assert_int_equal(parse(&tp, TP), 0);

    memset(out, 'x', sizeof(out));
    ngx_gateway_traceparent_format(out, tp.trace_id, tp.span_id, tp.flags);
    assert_int_equal(out[NGX_GATEWAY_TRACEPARENT_LEN], 'x');
    assert_memory_equal(out, TP, NGX_GATEWAY_TRACEPARENT_LEN);

    ngx_gateway_traceparent_format(out, tp.trace_id, tp.span_id, 0);
    assert_memory_equal(out,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        NGX_GATEWAY_TRACEPARENT_LEN);

    /* the parent id is where a rewrite in place puts it */
    assert_memory_equal(out + NGX_GATEWAY_TRACEPARENT_SPAN,
                        "00f067aa0ba902b7", 16);
}


/* every byte value, at every offset and length, against snprintf */

static void
test_hex(void **state)
{
    char           out[64], want[64];
    size_t         off, n, i, k;
    unsigned char  in[24];

    (void) state;

    for (i = 0; i < 256; i++) {
        memset(in, (int) i, sizeof(in));
        in[i % 7] = (unsigned char) (255 - i);
        in[(i + 3) % 11] = (unsigned char) (i * 37);

        for (off = 0; off < 4; off++) {
            for (n = 0; off + n <= 20; n++) {
                ngx_gateway_hex(out, in + off, n);

                for (k = 0; k < n; k++) {
                    snprintf(want + 2 * k, 3, "%02x", in[off + k]);
                }

                assert_memory_equal(out, want, 2 * n);
            }
        }
    }
}


static int
state_valid(const char *s)
{
    return ngx_gateway_tracestate_valid(s, strlen(s));
}


static void
test_tracestate_good(void **state)
{
    static const char  *good[] = {
        "",
        "congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE",
        "rojo=1,\tcongo=2",
        "a=1,,b=2",                                   /* empty member */
        "a=1, ,b=2",
        "tenant@vendor=x",
        "0tenant@v=x",
        "a_-*/z=~!\"#$%&'()*+-./0123456789:;<>?@[\\]^_`{|}~",
        "a=b c",
        "a=1 ",                                       /* trailing OWS */
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!state_valid(good[i])) {
            fail_msg("rejected \"%s\"", good[i]);
        }
    }
}


static void
test_tracestate_bad(void **state)
{
    static const char  *bad[] = {
        "a",
        "=b",
        "A=b",                                        /* uppercase key */
        "1a=b",                                       /* digit first */
        "a=",                                         /* empty value */
        "a=b=c",
        "a=b\x01",
        "a=b\x7f",
        "a=caf\xc3\xa9",
        "a=1,a=2",                                    /* key twice */
        "@v=x",
        "t@=x",
        "t@V=x",
        "t@1v=x",
        "t@v@w=x",
        "t@abcdefghijklmno=x",                        /* system id > 14 */
        "a b=c",
    };

    char    buf[1024], *p;
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (state_valid(bad[i])) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }

    /* 32 members are fine, 33 are not */

    p = buf;

    for (i = 0; i < 32; i++) {
        p += sprintf(p, "%sk%02zu=v", i ? "," : "", i);
    }

    assert_true(state_valid(buf));
    sprintf(p, ",k99=v");
    assert_false(state_valid(buf));

    /* at most 512 bytes */

    memset(buf, 'v', sizeof(buf));
    memcpy(buf, "a=", 2);
    memcpy(buf + 258, ",b=", 3);
    assert_true(ngx_gateway_tracestate_valid(buf, 258 + 3 + 251));
    assert_false(ngx_gateway_tracestate_valid(buf, 258 + 3 + 252));

    /* a value of at most 256, a key of at most 256 */

    memset(buf, 'v', sizeof(buf));
    memcpy(buf, "a=", 2);
    assert_true(ngx_gateway_tracestate_valid(buf, 2 + 256));
    assert_false(ngx_gateway_tracestate_valid(buf, 2 + 257));

    memset(buf, 'k', 300);
    buf[257] = '=';
    buf[258] = 'v';
    assert_false(ngx_gateway_tracestate_valid(buf, 259));
    buf[256] = '=';
    buf[257] = 'v';
    assert_true(ngx_gateway_tracestate_valid(buf, 258));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_tracestate_good),
        cmocka_unit_test(test_tracestate_bad),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("traceparent", tests, NULL, NULL);
}
