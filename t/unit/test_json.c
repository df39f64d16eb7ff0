
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_gateway_json.h"


#define NTOKS  64


static int
parse(const char *s, ngx_gateway_json_tok_t *toks)
{
    return ngx_gateway_json_parse(s, strlen(s), toks, NTOKS, 16);
}


static int
parse_rc(const char *s)
{
    ngx_gateway_json_tok_t  toks[NTOKS];

    return parse(s, toks);
}


static void
test_scalars(void **state)
{
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    assert_int_equal(parse("null", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_NULL);
    assert_int_equal(t[0].next, 1);

    assert_int_equal(parse(" true ", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_TRUE);
    assert_int_equal(t[0].len, 4);
    assert_memory_equal(t[0].start, "true", 4);

    assert_int_equal(parse("\t\r\nfalse\n", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_FALSE);
    assert_int_equal(t[0].len, 5);

    assert_int_equal(parse("-12.5e+3", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_NUMBER);
    assert_int_equal(t[0].len, 8);

    assert_int_equal(parse("\"a\\\"b\"", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_STRING);
    assert_int_equal(t[0].len, 4);
    assert_memory_equal(t[0].start, "a\\\"b", 4);

    assert_int_equal(parse("\"\"", t), 1);
    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_STRING);
    assert_int_equal(t[0].len, 0);
}


static void
test_numbers(void **state)
{
    (void) state;

    assert_int_equal(parse_rc("0"), 1);
    assert_int_equal(parse_rc("-0"), 1);
    assert_int_equal(parse_rc("0.5"), 1);
    assert_int_equal(parse_rc("1e10"), 1);
    assert_int_equal(parse_rc("1E-2"), 1);
    assert_int_equal(parse_rc("123456789012345678901234567890"), 1);

    assert_int_equal(parse_rc("01"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("-01"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("00"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("-"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("+1"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("1."), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc(".5"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("1e"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("1e+"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("0x10"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("NaN"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("Infinity"), NGX_GATEWAY_JSON_ESYNTAX);
    assert_int_equal(parse_rc("[01]"), NGX_GATEWAY_JSON_ESYNTAX);
}


static void
test_structure(void **state)
{
    ngx_gateway_json_tok_t  t[NTOKS];
    const char             *s;

    (void) state;

    s = "{\"a\": [1, {\"b\": null}, []], \"c\": {}, \"d\": \"x\"}";

    assert_int_equal(parse(s, t), 12);

    assert_int_equal(t[0].type, NGX_GATEWAY_JSON_OBJECT);
    assert_int_equal(t[0].size, 3);
    assert_int_equal(t[0].next, 12);
    assert_int_equal(t[0].len, strlen(s));
    assert_ptr_equal(t[0].start, s);

    assert_int_equal(t[1].type, NGX_GATEWAY_JSON_STRING);   /* "a" */
    assert_memory_equal(t[1].start, "a", 1);
    assert_int_equal(t[1].next, 2);

    assert_int_equal(t[2].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(t[2].size, 3);
    assert_int_equal(t[2].next, 8);
    assert_int_equal(t[2].len, strlen("[1, {\"b\": null}, []]"));

    assert_int_equal(t[3].type, NGX_GATEWAY_JSON_NUMBER);
    assert_int_equal(t[4].type, NGX_GATEWAY_JSON_OBJECT);
    assert_int_equal(t[4].size, 1);
    assert_int_equal(t[4].next, 7);
    assert_int_equal(t[5].type, NGX_GATEWAY_JSON_STRING);   /* "b" */
    assert_int_equal(t[6].type, NGX_GATEWAY_JSON_NULL);
    assert_int_equal(t[7].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(t[7].size, 0);
    assert_int_equal(t[7].next, 8);
    assert_int_equal(t[7].len, 2);

    assert_int_equal(t[8].type, NGX_GATEWAY_JSON_STRING);   /* "c" */
    assert_int_equal(t[9].type, NGX_GATEWAY_JSON_OBJECT);
    assert_int_equal(t[9].size, 0);
    assert_int_equal(t[9].next, 10);

    assert_int_equal(t[10].type, NGX_GATEWAY_JSON_STRING);  /* "d" */
    assert_int_equal(t[10].next, 11);
    assert_int_equal(t[11].type, NGX_GATEWAY_JSON_STRING);  /* "x" */
    assert_int_equal(t[11].next, 12);
    assert_memory_equal(t[11].start, "x", 1);

    assert_int_equal(parse("[[[]]]", t), 3);
    assert_int_equal(t[0].size, 1);
    assert_int_equal(t[0].next, 3);
    assert_int_equal(t[1].next, 3);
    assert_int_equal(t[2].next, 3);
    assert_int_equal(t[2].size, 0);

    assert_int_equal(parse("[1,\"2\",true]", t), 4);
    assert_int_equal(t[0].size, 3);
}


static void
test_syntax_errors(void **state)
{
    static const char  *bad[] = {
        "{", "}", "[", "]", "[1", "[1,", "[1,]", "[,1]", "{\"a\"}",
        "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{a:1}", "{'a':1}",
        "{1:2}", "{\"a\":1 \"b\":2}", "[1 2]", "[1:2]", "{\"a\":1]",
        "[1}", "tru", "truex", "nul", "nulll", "True", "\"abc",
        "\"abc\\", "\"abc\\\"", "1 2", "{} {}", "[] x", "{}}", "\"\"\"",
        "\x01", "/* c */ 1", "[1]//",
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_rc(bad[i]) != NGX_GATEWAY_JSON_ESYNTAX) {
            fail_msg("accepted or wrong error for \"%s\": %d", bad[i],
                     parse_rc(bad[i]));
        }
    }

    assert_int_equal(parse_rc(""), NGX_GATEWAY_JSON_EEMPTY);
    assert_int_equal(parse_rc(" \n\t\r "), NGX_GATEWAY_JSON_EEMPTY);

    /* a NUL byte is not whitespace */
    {
        ngx_gateway_json_tok_t  t[4];

        assert_int_equal(ngx_gateway_json_parse("1\0", 2, t, 4, 4),
                         NGX_GATEWAY_JSON_ESYNTAX);
        assert_int_equal(ngx_gateway_json_parse("\"a\0\"", 4, t, 4, 4),
                         NGX_GATEWAY_JSON_ESYNTAX);
        /* the length bounds the input, not the NUL */
        assert_int_equal(ngx_gateway_json_parse("[1]xyz", 3, t, 4, 4), 2);
    }
}


static void
test_strings(void **state)
{
    static const char  *good[] = {
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u20AC\"",
        "\"\\ud83d\\ude00\"", "\"\\u0000\"", "\"caf\xc3\xa9\"",
        "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\x7f\"",
    };

    static const char  *bad[] = {
        "\"\\x41\"", "\"\\a\"", "\"\\'\"", "\"\\U0041\"", "\"\\u004\"",
        "\"\\u00g1\"", "\"\\ud83d\"", "\"\\ud83dx\"", "\"\\ud83d\\u0041\"",
        "\"\\ude00\"", "\"\\ude00\\ud83d\"", "\"\\ud83d\\ud83d\"",
        "\"a\nb\"", "\"a\tb\"", "\"\x1f\"",
        "\"\xc3\"", "\"\xc3(\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"",
        "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\x80\"",
        "\"\\u12",
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (parse_rc(good[i]) != 1) {
            fail_msg("rejected \"%s\": %d", good[i], parse_rc(good[i]));
        }
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_rc(bad[i]) != NGX_GATEWAY_JSON_ESYNTAX) {
            fail_msg("accepted or wrong error for \"%s\": %d", bad[i],
                     parse_rc(bad[i]));
        }
    }
}


static void
test_unescape(void **state)
{
    int                     n;
    char                    out[64];
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    assert_int_equal(parse("\"a\\\"\\\\\\/\\b\\f\\n\\r\\tz\"", t), 1);
    n = ngx_gateway_json_string(&t[0], out, sizeof(out));
    assert_int_equal(n, 10);
    assert_memory_equal(out, "a\"\\/\b\f\n\r\tz", 10);

    assert_int_equal(parse("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"", t), 1);
    n = ngx_gateway_json_string(&t[0], out, sizeof(out));
    assert_int_equal(n, 1 + 2 + 3 + 4);
    assert_memory_equal(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10);

    assert_int_equal(parse("\"\\uDBFF\\uDFFF\"", t), 1);
    n = ngx_gateway_json_string(&t[0], out, sizeof(out));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xf4\x8f\xbf\xbf", 4);

    assert_int_equal(parse("\"x\\u0000y\"", t), 1);
    n = ngx_gateway_json_string(&t[0], out, sizeof(out));
    assert_int_equal(n, 3);
    assert_memory_equal(out, "x\0y", 3);

    assert_int_equal(parse("\"\"", t), 1);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 0), 0);

    /* exact fit and one byte short, including inside a multibyte char */
    assert_int_equal(parse("\"ab\\u20ac\"", t), 1);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 5), 5);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 4), -1);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 2), -1);

    assert_int_equal(parse("\"hello\"", t), 1);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 5), 5);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, 4), -1);

    /* not a string */
    assert_int_equal(parse("12", t), 1);
    assert_int_equal(ngx_gateway_json_string(&t[0], out, sizeof(out)), -1);
}


static void
test_int(void **state)
{
    int64_t                 v;
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    assert_int_equal(parse("0", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), 0);
    assert_true(v == 0);

    assert_int_equal(parse("-42", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), 0);
    assert_true(v == -42);

    assert_int_equal(parse("9223372036854775807", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), 0);
    assert_true(v == INT64_MAX);

    assert_int_equal(parse("-9223372036854775808", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), 0);
    assert_true(v == INT64_MIN);

    v = 7;

    assert_int_equal(parse("9223372036854775808", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_int_equal(parse("-9223372036854775809", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_int_equal(parse("99999999999999999999", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_int_equal(parse("1.0", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_int_equal(parse("1e3", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_true(v == 7);

    assert_int_equal(parse("\"5\"", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);

    assert_int_equal(parse("true", t), 1);
    assert_int_equal(ngx_gateway_json_int(&t[0], &v), -1);
}


static void
test_object_get(void **state)
{
    int                     i;
    int64_t                 v;
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    assert_int_equal(parse("{\"a\": {\"x\": 1, \"y\": [1, 2, {\"z\": 3}]},"
                           " \"b\": 2, \"w\\u0065ight\": 5,"
                           " \"q\\\"\": 6, \"\": 7, \"ab\": 8}", t), 22);

    i = ngx_gateway_json_object_get(t, 0, "a", 1);
    assert_int_equal(i, 2);
    assert_int_equal(t[i].type, NGX_GATEWAY_JSON_OBJECT);

    /* keys of nested objects are not keys of the outer one */
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "x", 1), -1);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "z", 1), -1);

    i = ngx_gateway_json_object_get(t, 0, "b", 1);
    assert_true(i > 0);
    assert_int_equal(ngx_gateway_json_int(&t[i], &v), 0);
    assert_true(v == 2);

    /* an escaped key matches by its unescaped value */
    i = ngx_gateway_json_object_get(t, 0, "weight", 6);
    assert_true(i > 0);
    assert_int_equal(ngx_gateway_json_int(&t[i], &v), 0);
    assert_true(v == 5);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "w\\u0065ight", 11),
                     -1);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "weigh", 5), -1);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "weightt", 7), -1);

    i = ngx_gateway_json_object_get(t, 0, "q\"", 2);
    assert_true(i > 0);
    assert_int_equal(ngx_gateway_json_int(&t[i], &v), 0);
    assert_true(v == 6);

    i = ngx_gateway_json_object_get(t, 0, "", 0);
    assert_true(i > 0);
    assert_int_equal(ngx_gateway_json_int(&t[i], &v), 0);
    assert_true(v == 7);

    i = ngx_gateway_json_object_get(t, 0, "ab", 2);
    assert_true(i > 0);
    assert_int_equal(ngx_gateway_json_int(&t[i], &v), 0);
    assert_true(v == 8);

    assert_int_equal(ngx_gateway_json_object_get(t, 0, "c", 1), -1);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "A", 1), -1);

    /* nested lookup */
    i = ngx_gateway_json_object_get(t, 0, "a", 1);
    i = ngx_gateway_json_object_get(t, i, "y", 1);
    assert_true(i > 0);
    assert_int_equal(t[i].type, NGX_GATEWAY_JSON_ARRAY);
    assert_int_equal(t[i].size, 3);

    /* not an object */
    assert_int_equal(ngx_gateway_json_object_get(t, i, "y", 1), -1);

    assert_int_equal(parse("{}", t), 1);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "a", 1), -1);

    /* the first of duplicate keys wins */
    assert_int_equal(parse("{\"k\":1,\"k\":2}", t), 5);
    assert_int_equal(ngx_gateway_json_object_get(t, 0, "k", 1), 2);
}


static void
test_limits(void **state)
{
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    assert_int_equal(ngx_gateway_json_parse("[1,2,3]", 7, t, 4, 4), 4);
    assert_int_equal(ngx_gateway_json_parse("[1,2,3]", 7, t, 3, 4),
                     NGX_GATEWAY_JSON_ENOMEM);
    assert_int_equal(ngx_gateway_json_parse("{\"a\":1}", 7, t, 2, 4),
                     NGX_GATEWAY_JSON_ENOMEM);
    assert_int_equal(ngx_gateway_json_parse("1", 1, t, 0, 4),
                     NGX_GATEWAY_JSON_ENOMEM);

    assert_int_equal(ngx_gateway_json_parse("[[[]]]", 6, t, NTOKS, 3), 3);
    assert_int_equal(ngx_gateway_json_parse("[[[]]]", 6, t, NTOKS, 2),
                     NGX_GATEWAY_JSON_EDEPTH);
    assert_int_equal(ngx_gateway_json_parse("{\"a\":{\"b\":{}}}", 14, t,
                                            NTOKS, 2),
                     NGX_GATEWAY_JSON_EDEPTH);
    assert_int_equal(ngx_gateway_json_parse("[[],[],[]]", 10, t, NTOKS, 2),
                     4);
    assert_int_equal(ngx_gateway_json_parse("1", 1, t, NTOKS, 0), 1);
    assert_int_equal(ngx_gateway_json_parse("[]", 2, t, NTOKS, 0),
                     NGX_GATEWAY_JSON_EDEPTH);

    assert_string_equal(ngx_gateway_json_strerror(NGX_GATEWAY_JSON_ESYNTAX),
                        "invalid JSON");
    assert_non_null(ngx_gateway_json_strerror(NGX_GATEWAY_JSON_ENOMEM));
    assert_non_null(ngx_gateway_json_strerror(NGX_GATEWAY_JSON_EDEPTH));
    assert_non_null(ngx_gateway_json_strerror(NGX_GATEWAY_JSON_EEMPTY));
    assert_non_null(ngx_gateway_json_strerror(-100));
}


static void
test_deep(void **state)
{
    int                     rc;
    char                    buf[4002];
    ngx_gateway_json_tok_t  t[2100];

    (void) state;

    /* deep nesting is bounded by max_depth, not by the C stack */

    memset(buf, '[', 2000);
    memset(buf + 2000, ']', 2000);

    rc = ngx_gateway_json_parse(buf, 4000, t, 2100, 2000);
    assert_int_equal(rc, 2000);
    assert_int_equal(t[0].next, 2000);
    assert_int_equal(t[1999].next, 2000);

    rc = ngx_gateway_json_parse(buf, 4000, t, 2100, 1999);
    assert_int_equal(rc, NGX_GATEWAY_JSON_EDEPTH);

    rc = ngx_gateway_json_parse(buf, 3999, t, 2100, 2000);
    assert_int_equal(rc, NGX_GATEWAY_JSON_ESYNTAX);
}


static void
test_escape(void **state)
{
    size_t                  n;
    char                    out[128];
    const char             *in;
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    in = "a\"b\\c\n\x01\x1f\x7f\xc3\xa9/";

    n = ngx_gateway_json_escape(NULL, in, strlen(in));
    assert_int_equal(n, 1 + 2 + 1 + 2 + 1 + 6 + 6 + 6 + 1 + 2 + 1);
    assert_int_equal(ngx_gateway_json_escape(out, in, strlen(in)), n);
    assert_memory_equal(out, "a\\\"b\\\\c\\u000a\\u0001\\u001f\x7f\xc3\xa9/",
                        n);

    /* round trip through the parser, including a NUL byte */
    out[0] = '"';
    n = ngx_gateway_json_escape(out + 1, "x\0\"\\\ty", 6);
    out[n + 1] = '"';
    assert_int_equal(ngx_gateway_json_parse(out, n + 2, t, NTOKS, 1), 1);
    {
        char  dec[16];

        assert_int_equal(ngx_gateway_json_string(&t[0], dec, sizeof(dec)),
                         6);
        assert_memory_equal(dec, "x\0\"\\\ty", 6);
    }

    assert_int_equal(ngx_gateway_json_escape(out, "", 0), 0);
}


/*
 * Robustness: every prefix and a few thousand mutations of valid documents.
 * Each input is copied into a heap buffer of exactly its length, so that
 * AddressSanitizer reports any read past the end.
 */

static uint32_t  rnd_state = 12345;


static uint32_t
rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}


static int
encode(const char *in, size_t len, char *out, size_t size)
{
    int                     n;
    ngx_gateway_json_tok_t  t[NTOKS];

    n = ngx_gateway_json_parse(in, len, t, NTOKS, 16);
    if (n <= 0) {
        return -100 + n;
    }

    return ngx_gateway_json_encode(t, 0, out, size);
}


/* the canonical form of in is want: valid, one line, and a fixed point */

static void
encode_is(const char *in, const char *want)
{
    int     n, m;
    char    out[256], again[256];
    size_t  i;

    n = encode(in, strlen(in), out, sizeof(out));
    assert_int_equal(n, (int) strlen(want));
    assert_memory_equal(out, want, n);

    for (i = 0; i < (size_t) n; i++) {
        assert_true((unsigned char) out[i] >= 0x20 && out[i] != 0x7f);
    }

    m = encode(out, n, again, sizeof(again));
    assert_int_equal(m, n);
    assert_memory_equal(again, out, n);
}


static void
test_encode(void **state)
{
    int                     n;
    char                    out[64];
    ngx_gateway_json_tok_t  t[NTOKS];

    (void) state;

    encode_is("{\"team\":\n\"blue\"}", "{\"team\":\"blue\"}");
    encode_is(" { \"a\" : [ 1 , -2.5e+3 , true , false , null ] ,\r\n"
              "\t\"b\" : { } , \"c\" : [ ] } ",
              "{\"a\":[1,-2.5e+3,true,false,null],\"b\":{},\"c\":[]}");
    encode_is("42", "42");
    encode_is(" null ", "null");

    /* escapes that name ordinary characters become the characters */
    encode_is("\"\\u00e9\\/\\u0041\"", "\"\xc3\xa9/A\"");
    encode_is("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    encode_is("\"\\u00a0\"", "\"\xc2\xa0\"");
    encode_is("\"\\\"\\\\\"", "\"\\\"\\\\\"");

    /* every control character as \u00XX: C0, DEL, C1 (escaped or raw) */
    encode_is("\"a\\nb\\t\\u0001\\b\\f\\r\"",
              "\"a\\u000ab\\u0009\\u0001\\u0008\\u000c\\u000d\"");
    encode_is("\"\\u0000\"", "\"\\u0000\"");
    encode_is("\"\x7f\\u007F\"", "\"\\u007f\\u007f\"");
    encode_is("\"\xc2\x85\\u009f\\u0080\"",
              "\"\\u0085\\u009f\\u0080\"");

    /* keys are strings too */
    encode_is("{\"k\\u0065y\" :\"v\"}", "{\"key\":\"v\"}");

    /* a value inside a document */
    assert_int_equal(parse("{\"a\": {\"b\" : [ 1, \"x y\" ]}, \"c\": 2}", t),
                     9);
    n = ngx_gateway_json_encode(t, 2, out, sizeof(out));
    assert_int_equal(n, (int) strlen("{\"b\":[1,\"x y\"]}"));
    assert_memory_equal(out, "{\"b\":[1,\"x y\"]}", n);
    n = ngx_gateway_json_encode(t, 6, out, sizeof(out));
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\"x y\"", 5);
    n = ngx_gateway_json_encode(t, 8, out, sizeof(out));
    assert_int_equal(n, 1);
    assert_memory_equal(out, "2", 1);

    /* the size bound: exact fit, one byte short, and counting only */
    assert_int_equal(encode("{ \"a\" : \"\\n\" }", 14, out, 14), 14);
    assert_memory_equal(out, "{\"a\":\"\\u000a\"}", 14);
    assert_int_equal(encode("{ \"a\" : \"\\n\" }", 14, out, 13), -1);
    assert_int_equal(encode("{ \"a\" : \"\\n\" }", 14, NULL, 100), 14);
    assert_int_equal(encode("{ \"a\" : \"\\n\" }", 14, NULL, 5), -1);
    assert_int_equal(encode("[\"\\u00e9\"]", 10, out, 5), -1);
    assert_int_equal(encode("[\"\\u00e9\"]", 10, out, 6), 6);
}


static void
check_tokens(const char *buf, size_t len, ngx_gateway_json_tok_t *t, int n)
{
    int                     i, m, k;
    char                    out[512], again[512];
    ngx_gateway_json_tok_t  t2[NTOKS];

    /* the canonical form of every value parses, and is a fixed point */

    for (i = 0; i < n; i++) {
        m = ngx_gateway_json_encode(t, i, out, sizeof(out));

        if (m < 0) {
            continue;
        }

        for (k = 0; k < m; k++) {
            assert_true((unsigned char) out[k] >= 0x20 && out[k] != 0x7f);
        }

        assert_int_equal(ngx_gateway_json_parse(out, m, t2, NTOKS, 16),
                         t[i].next - i);
        assert_int_equal(ngx_gateway_json_encode(t2, 0, again,
                                                 sizeof(again)), m);
        assert_memory_equal(again, out, m);
    }

    for (i = 0; i < n; i++) {
        assert_true(t[i].start >= buf);
        assert_true(t[i].start + t[i].len <= buf + len);
        assert_true(t[i].next > i && t[i].next <= n);

        if (t[i].type == NGX_GATEWAY_JSON_STRING) {
            assert_true(ngx_gateway_json_string(&t[i], out, sizeof(out))
                        >= 0);
        }

        if (t[i].type == NGX_GATEWAY_JSON_OBJECT) {
            (void) ngx_gateway_json_object_get(t, i, "a", 1);
            (void) ngx_gateway_json_object_get(t, i, "\xc3\xa9", 2);
        }
    }
}


static void
fuzz_one(const char *s, size_t len)
{
    int                     n;
    char                   *buf;
    int64_t                 v;
    ngx_gateway_json_tok_t  t[NTOKS];

    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, s, len);

    n = ngx_gateway_json_parse(buf, len, t, NTOKS, 8);

    if (n > 0) {
        check_tokens(buf, len, t, n);

        if (t[0].type == NGX_GATEWAY_JSON_NUMBER) {
            (void) ngx_gateway_json_int(&t[0], &v);
        }

    } else {
        assert_true(n == NGX_GATEWAY_JSON_ESYNTAX
                    || n == NGX_GATEWAY_JSON_ENOMEM
                    || n == NGX_GATEWAY_JSON_EDEPTH
                    || n == NGX_GATEWAY_JSON_EEMPTY);
    }

    /* the same input with fewer tokens and a tighter depth */
    (void) ngx_gateway_json_parse(buf, len, t, 3, 1);

    free(buf);
}


static void
test_fuzz(void **state)
{
    static const char  *docs[] = {
        "{\"address\":\"127.0.0.1:9001\",\"weight\":5,\"zone\":\"a\","
        "\"state\":\"up\",\"ttl\":10,\"metadata\":{\"v\":\"1\"}}",
        "[1, -2.5e+3, true, false, null, \"s\\u00e9\\ud83d\\ude00\\n\","
        " {\"k\": [[], {}]}]",
        "{\"a\\\"b\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\", \"\": [0, 0.0, 1E9]}",
        "\"\\\\\\/\\b\\f\\r\\t\\u0000\"",
        "  [ { } , [ ] , \"x\" ]  ",
    };

    static const char  alphabet[] = "{}[]\",:\\u0123456789aefnrtlsE.+- \x80"
                                    "\xc3\xff\xed\n";

    int     k, r, m;
    char    buf[256];
    size_t  i, j, len, pos;

    (void) state;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        len = strlen(docs[i]);
        assert_true(len < sizeof(buf));

        /* the document itself parses */
        {
            ngx_gateway_json_tok_t  t[NTOKS];

            assert_true(ngx_gateway_json_parse(docs[i], len, t, NTOKS, 8)
                        > 0);
        }

        for (j = 0; j <= len; j++) {
            fuzz_one(docs[i], j);
        }

        for (k = 0; k < 2000; k++) {
            memcpy(buf, docs[i], len);
            m = len;

            for (r = 1 + (int) (rnd() % 4); r > 0; r--) {
                pos = rnd() % (m ? (size_t) m : 1);

                switch (rnd() % 4) {

                case 0: /* replace a byte */
                    buf[pos] = alphabet[rnd() % (sizeof(alphabet) - 1)];
                    break;

                case 1: /* replace with any byte */
                    buf[pos] = (char) (rnd() & 0xff);
                    break;

                case 2: /* delete a byte */
                    if (m > 0) {
                        memmove(buf + pos, buf + pos + 1, m - pos - 1);
                        m--;
                    }
                    break;

                default: /* insert a byte */
                    if ((size_t) m + 1 < sizeof(buf)) {
                        memmove(buf + pos + 1, buf + pos, m - pos);
                        buf[pos] = alphabet[rnd() % (sizeof(alphabet) - 1)];
                        m++;
                    }
                    break;
                }
            }

            fuzz_one(buf, (size_t) m);
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_object_get),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_fuzz),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
