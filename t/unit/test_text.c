
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

#include "ngx_gateway_text.h"


#define S(s)  s, (sizeof(s) - 1)


static void
test_valid_good(void **state)
{
    static const char  *good[] = {
        "",
        "users",
        "unix:/tmp/a b.sock",
        "~!@#$%^&*()_+`-=[]{}\\|;':\",./<>?",
        "caf\xc3\xa9",                          /* U+00E9 */
        "\xc2\xa0",                             /* U+00A0, after C1 */
        "\xdf\xbf",                             /* U+07FF */
        "\xe0\xa0\x80",                         /* U+0800 */
        "\xed\x9f\xbf",                         /* U+D7FF */
        "\xee\x80\x80",                         /* U+E000 */
        "\xef\xbf\xbf",                         /* U+FFFF */
        "\xf0\x90\x80\x80",                     /* U+10000 */
        "\xf0\x9f\x98\x80",                     /* U+1F600 */
        "\xf4\x8f\xbf\xbf",                     /* U+10FFFF */
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!ngx_gateway_text_valid(good[i], strlen(good[i]))) {
            fail_msg("rejected \"%s\"", good[i]);
        }
    }
}


static void
test_valid_bad(void **state)
{
    static const char  *bad[] = {
        "\r\n",
        "x\r\nSet-Cookie: a=b",
        "\t",
        "\x1b[31m",
        "\x7f",                                 /* DEL */
        "\xc2\x80",                             /* U+0080, C1 */
        "\xc2\x85",                             /* NEL */
        "\xc2\x9f",                             /* U+009F, C1 */
        "\x80",                                 /* a lone continuation */
        "\xbf",
        "\xc0\x80",                             /* overlong NUL */
        "\xc1\xbf",                             /* overlong */
        "\xe0\x80\x80",                         /* overlong */
        "\xe0\x9f\xbf",                         /* overlong */
        "\xf0\x80\x80\x80",                     /* overlong */
        "\xf0\x8f\xbf\xbf",                     /* overlong */
        "\xed\xa0\x80",                         /* U+D800, a surrogate */
        "\xed\xbf\xbf",                         /* U+DFFF */
        "\xf4\x90\x80\x80",                     /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3",                                 /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3(",                                /* bad continuation */
        "\xe2(\xa1",
        "\xf0\x9f(\x80",
        "ok\xc3",
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ngx_gateway_text_valid(bad[i], strlen(bad[i]))) {
            fail_msg("accepted bad text #%zu", i);
        }
    }

    /* NUL, and the length bounds what is read */
    assert_false(ngx_gateway_text_valid("a\0b", 3));
    assert_true(ngx_gateway_text_valid("a\0b", 1));
    assert_false(ngx_gateway_text_valid("\xc3\xa9", 1));
    assert_true(ngx_gateway_text_valid("ab\r\n", 2));
}


/* printable ASCII is checked eight bytes at a time: every byte of a run */

static void
test_valid_words(void **state)
{
    char           buf[40];
    size_t         i, len;
    unsigned int   c;

    (void) state;

    for (len = 1; len <= sizeof(buf); len++) {
        memset(buf, 'a', sizeof(buf));
        assert_true(ngx_gateway_text_valid(buf, len));

        for (i = 0; i < len; i++) {
            for (c = 0; c < 256; c++) {
                buf[i] = (char) c;

                if ((c >= 0x20 && c < 0x7f)
                    != ngx_gateway_text_valid(buf, len))
                {
                    fail_msg("byte 0x%02x at %zu of %zu", c, i, len);
                }
            }

            buf[i] = '~';
        }

        /* a two-byte character across a word's end */

        if (len >= 2) {
            memcpy(buf + len - 2, "\xc3\xa9", 2);
            assert_true(ngx_gateway_text_valid(buf, len));
            assert_false(ngx_gateway_text_valid(buf, len - 1));
        }
    }
}


static void
log_is(const char *in, size_t len, const char *want)
{
    char    out[NGX_GATEWAY_LOG_TEXT_SIZE];
    size_t  n;

    n = ngx_gateway_text_log(out, in, len);

    if (n != strlen(want) || memcmp(out, want, n) != 0) {
        fail_msg("log text \"%.*s\", expected \"%s\"", (int) n, out, want);
    }
}


static void
test_log(void **state)
{
    size_t  i, n;
    char    in[NGX_GATEWAY_LOG_TEXT_MAX + 10], out[NGX_GATEWAY_LOG_TEXT_SIZE];

    (void) state;

    log_is(S(""), "");
    log_is(S("users"), "users");
    log_is(S("a b\"c'"), "a b\"c'");

    /* a forged line stays on one line */
    log_is(S("x\r\n2026/01/01 00:00:00 [alert] forged"),
           "x\\x0d\\x0a2026/01/01 00:00:00 [alert] forged");
    log_is(S("\t\x1b\x7f"), "\\x09\\x1b\\x7f");
    log_is("\0", 1, "\\x00");

    /* the backslash is doubled, so "\x0d" typed in is not a CR */
    log_is(S("\\x0d"), "\\\\x0d");

    /* bytes >= 0x80 are escaped, even valid UTF-8 */
    log_is(S("caf\xc3\xa9"), "caf\\xc3\\xa9");

    /* cut at NGX_GATEWAY_LOG_TEXT_MAX input bytes */
    memset(in, 'a', sizeof(in));
    n = ngx_gateway_text_log(out, in, NGX_GATEWAY_LOG_TEXT_MAX);
    assert_int_equal(n, NGX_GATEWAY_LOG_TEXT_MAX);

    n = ngx_gateway_text_log(out, in, NGX_GATEWAY_LOG_TEXT_MAX + 1);
    assert_int_equal(n, NGX_GATEWAY_LOG_TEXT_MAX + 3);
    assert_memory_equal(out + NGX_GATEWAY_LOG_TEXT_MAX, "...", 3);

    /* the worst case fills the buffer exactly */
    memset(in, '\n', sizeof(in));
    n = ngx_gateway_text_log(out, in, sizeof(in));
    assert_int_equal(n, NGX_GATEWAY_LOG_TEXT_SIZE);
    assert_memory_equal(out + n - 3, "...", 3);

    /* every byte value: printable ASCII only in the output */
    for (i = 0; i < 256; i++) {
        in[0] = (char) i;
        n = ngx_gateway_text_log(out, in, 1);
        assert_true(n == 1 || n == 2 || n == 4);

        while (n--) {
            assert_true(out[n] >= 0x20 && out[n] < 0x7f);
        }
    }
}


static void
test_uint(void **state)
{
    char  buf[NGX_GATEWAY_UINT_LEN + 1], *p;

    (void) state;

    p = ngx_gateway_text_uint(buf, 0);
    assert_int_equal(p - buf, 1);
    assert_memory_equal(buf, "0", 1);

    p = ngx_gateway_text_uint(buf, 1234567);
    assert_int_equal(p - buf, 7);
    assert_memory_equal(buf, "1234567", 7);

    p = ngx_gateway_text_uint(buf, UINT64_MAX);
    assert_int_equal(p - buf, NGX_GATEWAY_UINT_LEN);
    assert_memory_equal(buf, "18446744073709551615", NGX_GATEWAY_UINT_LEN);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_valid_good),
        cmocka_unit_test(test_valid_bad),
        cmocka_unit_test(test_valid_words),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_uint),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
