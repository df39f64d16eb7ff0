
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
#include <arpa/inet.h>
#include <cmocka.h>

#include "ngx_gateway_record.h"


#define S(s)  s, (sizeof(s) - 1)


static int
addr_ok(const char *s, const char *canon, ngx_gateway_addr_t *a)
{
    memset(a, 0xa5, sizeof(ngx_gateway_addr_t));

    if (ngx_gateway_parse_addr(s, strlen(s), a) != 0) {
        print_error("rejected \"%s\"\n", s);
        return 0;
    }

    if (a->text_len != strlen(canon)
        || memcmp(a->text, canon, a->text_len) != 0)
    {
        print_error("\"%s\": text \"%.*s\", expected \"%s\"\n", s,
                    (int) a->text_len, a->text, canon);
        return 0;
    }

    return 1;
}


static void
test_valid_name(void **state)
{
    char  buf[66];

    (void) state;

    assert_true(ngx_gateway_valid_name(S("users")));
    assert_true(ngx_gateway_valid_name(S("a")));
    assert_true(ngx_gateway_valid_name(S("0")));
    assert_true(ngx_gateway_valid_name(S("Users-v2.internal_x")));

    assert_false(ngx_gateway_valid_name(S("")));
    assert_false(ngx_gateway_valid_name(S("-a")));
    assert_false(ngx_gateway_valid_name(S(".a")));
    assert_false(ngx_gateway_valid_name(S("_a")));
    assert_false(ngx_gateway_valid_name(S("a b")));
    assert_false(ngx_gateway_valid_name(S("a/b")));
    assert_false(ngx_gateway_valid_name(S("a:b")));
    assert_false(ngx_gateway_valid_name(S("caf\xc3\xa9")));
    assert_false(ngx_gateway_valid_name("a\0b", 3));

    memset(buf, 'x', sizeof(buf));
    assert_true(ngx_gateway_valid_name(buf, 64));
    assert_false(ngx_gateway_valid_name(buf, 65));

    assert_true(ngx_gateway_valid_zone(S("")));
    assert_true(ngx_gateway_valid_zone(S("eu-west-1a")));
    assert_true(ngx_gateway_valid_zone(S("-a")));
    assert_true(ngx_gateway_valid_zone(buf, 64));
    assert_false(ngx_gateway_valid_zone(buf, 65));
    assert_false(ngx_gateway_valid_zone(S("a b")));
    assert_false(ngx_gateway_valid_zone(S("a\"")));
}


static void
test_state(void **state)
{
    (void) state;

    assert_int_equal(ngx_gateway_parse_state(S("up")), NGX_GATEWAY_STATE_UP);
    assert_int_equal(ngx_gateway_parse_state(S("drain")),
                     NGX_GATEWAY_STATE_DRAIN);
    assert_int_equal(ngx_gateway_parse_state(S("down")),
                     NGX_GATEWAY_STATE_DOWN);

    assert_int_equal(ngx_gateway_parse_state(S("")), -1);
    assert_int_equal(ngx_gateway_parse_state(S("UP")), -1);
    assert_int_equal(ngx_gateway_parse_state(S("upp")), -1);
    assert_int_equal(ngx_gateway_parse_state(S("u")), -1);
    assert_int_equal(ngx_gateway_parse_state(S("drained")), -1);
    assert_int_equal(ngx_gateway_parse_state(S(" up")), -1);
    assert_int_equal(ngx_gateway_parse_state("up\0", 3), -1);

    assert_string_equal(ngx_gateway_state_name(NGX_GATEWAY_STATE_UP), "up");
    assert_string_equal(ngx_gateway_state_name(NGX_GATEWAY_STATE_DRAIN),
                        "drain");
    assert_string_equal(ngx_gateway_state_name(NGX_GATEWAY_STATE_DOWN),
                        "down");
    assert_non_null(ngx_gateway_state_name(42));
}


static void
test_parse_uint(void **state)
{
    uint64_t  v;

    (void) state;

    assert_int_equal(ngx_gateway_parse_uint(S("0"), 10, &v), 0);
    assert_true(v == 0);
    assert_int_equal(ngx_gateway_parse_uint(S("10"), 10, &v), 0);
    assert_true(v == 10);
    assert_int_equal(ngx_gateway_parse_uint(S("007"), 10, &v), 0);
    assert_true(v == 7);
    assert_int_equal(ngx_gateway_parse_uint(S("18446744073709551615"),
                                            UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);

    v = 99;
    assert_int_equal(ngx_gateway_parse_uint(S("11"), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("5"), 4, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("1"), 0, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("18446744073709551616"),
                                            UINT64_MAX, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("99999999999999999999999"),
                                            UINT64_MAX, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S(""), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("+1"), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("-1"), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S(" 1"), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("1 "), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("1a"), 10, &v), -1);
    assert_int_equal(ngx_gateway_parse_uint(S("0x1"), 10, &v), -1);
    assert_true(v == 99);
}


static void
test_addr_ipv4(void **state)
{
    ngx_gateway_addr_t   a;
    struct sockaddr_in  *sin;

    (void) state;

    assert_true(addr_ok("127.0.0.1:8081", "127.0.0.1:8081", &a));
    sin = &a.u.sockaddr_in;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8081);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(a.socklen, sizeof(struct sockaddr_in));

    assert_true(addr_ok("192.0.2.255:1", "192.0.2.255:1", &a));
    assert_int_equal(ntohs(a.u.sockaddr_in.sin_port), 1);
    assert_true(addr_ok("0.0.0.0:65535", "0.0.0.0:65535", &a));
    assert_int_equal(ntohs(a.u.sockaddr_in.sin_port), 65535);
    assert_true(addr_ok("10.1.2.3:080", "10.1.2.3:80", &a));
    assert_int_equal(ntohs(a.u.sockaddr_in.sin_port), 80);

    /* every width of an octet, and a zero in the middle of one */
    assert_true(addr_ok("0.9.10.99:1", "0.9.10.99:1", &a));
    assert_true(addr_ok("100.105.200.250:65535", "100.105.200.250:65535",
                        &a));
}


static void
test_addr_ipv6(void **state)
{
    ngx_gateway_addr_t    a;
    struct sockaddr_in6  *sin6;

    (void) state;

    assert_true(addr_ok("[::1]:8081", "[::1]:8081", &a));
    sin6 = &a.u.sockaddr_in6;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 8081);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_int_equal(sin6->sin6_flowinfo, 0);
    assert_int_equal(sin6->sin6_scope_id, 0);
    assert_int_equal(a.socklen, sizeof(struct sockaddr_in6));

    assert_true(addr_ok("[2001:0DB8:0000:0000:0000:0000:0000:0001]:443",
                        "[2001:db8::1]:443", &a));
    assert_true(addr_ok("[::]:1", "[::]:1", &a));
    assert_true(addr_ok("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]:80",
                        &a));
    assert_true(addr_ok("[fe80::1:2:3:4]:65535", "[fe80::1:2:3:4]:65535",
                        &a));
    assert_true(addr_ok("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:9",
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:9", &a));
}


static void
test_addr_unix(void **state)
{
    char                 buf[200];
    size_t               max;
    ngx_gateway_addr_t   a;
    struct sockaddr_un  *sun;

    (void) state;

    assert_true(addr_ok("unix:/run/app.sock", "unix:/run/app.sock", &a));
    sun = &a.u.sockaddr_un;
    assert_int_equal(sun->sun_family, AF_UNIX);
    assert_string_equal(sun->sun_path, "/run/app.sock");
    assert_int_equal(a.socklen, offsetof(struct sockaddr_un, sun_path)
                                + strlen("/run/app.sock") + 1);

    assert_true(addr_ok("unix:/", "unix:/", &a));

    /* the longest path that fits with its NUL */
    max = sizeof(sun->sun_path) - 1;
    memcpy(buf, "unix:", 5);
    memset(buf + 5, 'p', max);
    buf[5] = '/';
    buf[5 + max] = '\0';
    assert_true(addr_ok(buf, buf, &a));
    assert_int_equal(a.socklen, offsetof(struct sockaddr_un, sun_path)
                                + max + 1);
    assert_int_equal(a.u.sockaddr_un.sun_path[max], '\0');

    buf[5 + max] = 'p';
    buf[5 + max + 1] = '\0';
    assert_int_equal(ngx_gateway_parse_addr(buf, strlen(buf), &a), -1);
}


static void
test_addr_bad(void **state)
{
    static const char  *bad[] = {
        "", ":", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:99999999999999999999", "127.0.0.1:+80", "127.0.0.1:-1",
        "127.0.0.1: 80", "127.0.0.1:80 ", " 127.0.0.1:80", "127.0.0.1:80x",
        "127.0.0.1:0x50", "127.0.0.1:80:80", ":80", "127.1:80",
        "127.0.0.256:80", "127.0.0.01:80", "127.0.0.1.1:80", "0x7f.0.0.1:80",
        "localhost:80", "example.com:443", "host:80", "::1:80", "::1",
        "[::1]", "[::1]:", "[::1]:0", "[::1]:65536", "[::1]80", "[::1]:80]",
        "[::1:80", "::1]:80", "[]:80", "[127.0.0.1]:80", "[::1%lo]:80",
        "[fe80::1%eth0]:80", "[localhost]:80", "[:::1]:80", "[[::1]]:80",
        "unix:", "unix:relative.sock", "unix:./x", "UNIX:/x", "unix /x",
        "http://127.0.0.1:80", "127.0.0.1:80/", "1.2.3.4:80\n",
    };

    size_t              i;
    ngx_gateway_addr_t  a;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ngx_gateway_parse_addr(bad[i], strlen(bad[i]), &a) != -1) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }

    /* embedded NUL bytes */
    assert_int_equal(ngx_gateway_parse_addr("127.0.0.1\0:80", 13, &a), -1);
    assert_int_equal(ngx_gateway_parse_addr("127.0.0.1:80\0", 13, &a), -1);
    assert_int_equal(ngx_gateway_parse_addr("unix:/a\0b", 9, &a), -1);

    /* the length bounds the input */
    assert_int_equal(ngx_gateway_parse_addr("127.0.0.1:8080", 12, &a), 0);
    assert_int_equal(ntohs(a.u.sockaddr_in.sin_port), 80);
    assert_int_equal(ngx_gateway_parse_addr("127.0.0.1:8080", 10, &a), -1);
}


static void
test_cidr_parse(void **state)
{
    static const char  *bad[] = {
        "", "all", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8",
        "10.0.0.0/8/8", "10.0.0.0/8x", "10.0.0/8", "10.0.0.0.0", "/8",
        "::1/129", "::1/", "fd00::/8 ", " 10.0.0.1", "localhost",
        "[::1]", "[::1]/128", "unix:/x", "unix", "UNIX:", "10.0.0.1:80",
        "10.0.0.0/08x",
    };

    size_t              i;
    ngx_gateway_cidr_t  c;
    static const unsigned char  fd00[16] = { 0xfd };
    static const unsigned char  m8[16] = { 0xff };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ngx_gateway_parse_cidr(bad[i], strlen(bad[i]), &c) != -1) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }

    assert_int_equal(ngx_gateway_parse_cidr(S("10.0.0.0/8"), &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_memory_equal(c.addr, "\x0a\x00\x00\x00", 4);
    assert_memory_equal(c.mask, "\xff\x00\x00\x00", 4);

    assert_int_equal(ngx_gateway_parse_cidr(S("192.0.2.7"), &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_memory_equal(c.addr, "\xc0\x00\x02\x07", 4);
    assert_memory_equal(c.mask, "\xff\xff\xff\xff", 4);

    assert_int_equal(ngx_gateway_parse_cidr(S("192.0.2.255/23"), &c), 0);
    assert_memory_equal(c.addr, "\xc0\x00\x02\x00", 4);
    assert_memory_equal(c.mask, "\xff\xff\xfe\x00", 4);

    assert_int_equal(ngx_gateway_parse_cidr(S("0.0.0.0/0"), &c), 0);
    assert_memory_equal(c.mask, "\x00\x00\x00\x00", 4);

    assert_int_equal(ngx_gateway_parse_cidr(S("fd00::/8"), &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_memory_equal(c.addr, fd00, 16);
    assert_memory_equal(c.mask, m8, 16);

    assert_int_equal(ngx_gateway_parse_cidr(S("::1"), &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_memory_equal(c.mask, "\xff\xff\xff\xff\xff\xff\xff\xff"
                                "\xff\xff\xff\xff\xff\xff\xff\xff", 16);

    assert_int_equal(ngx_gateway_parse_cidr(S("::/0"), &c), 0);
    assert_int_equal(c.family, AF_INET6);

    assert_int_equal(ngx_gateway_parse_cidr(S("unix:"), &c), 0);
    assert_int_equal(c.family, AF_UNIX);

    /* the length bounds the input */
    assert_int_equal(ngx_gateway_parse_cidr("10.0.0.0/8junk", 10, &c), 0);
    assert_memory_equal(c.mask, "\xff\x00\x00\x00", 4);
}


static int
allowed(const char *addr, const char **rules, size_t n)
{
    size_t              i;
    ngx_gateway_addr_t  a;
    ngx_gateway_cidr_t  c[8];

    assert_true(n <= 8);
    assert_int_equal(ngx_gateway_parse_addr(addr, strlen(addr), &a), 0);

    for (i = 0; i < n; i++) {
        assert_int_equal(ngx_gateway_parse_cidr(rules[i], strlen(rules[i]),
                                                &c[i]),
                         0);
    }

    return ngx_gateway_addr_allowed(&a, c, n);
}


static void
test_cidr_match(void **state)
{
    static const char  *def[] = { "127.0.0.0/8", "::1" };
    static const char  *v4[] = { "10.0.0.0/8", "192.0.2.7", "172.16.0.0/12" };
    static const char  *v6[] = { "fd00::/8", "2001:db8::/32" };
    static const char  *ux[] = { "unix:" };
    static const char  *any[] = { "0.0.0.0/0", "::/0" };
    static const char  *odd[] = { "192.0.2.128/25" };

    (void) state;

    /* the default allowlist */
    assert_true(allowed("127.0.0.1:80", def, 2));
    assert_true(allowed("127.255.255.254:80", def, 2));
    assert_true(allowed("[::1]:80", def, 2));
    assert_false(allowed("128.0.0.1:80", def, 2));
    assert_false(allowed("10.0.0.1:80", def, 2));
    assert_false(allowed("[::2]:80", def, 2));
    assert_false(allowed("[::]:80", def, 2));
    assert_false(allowed("unix:/run/a.sock", def, 2));

    /* IPv4-mapped IPv6 addresses are matched against IPv4 rules */
    assert_true(allowed("[::ffff:127.0.0.1]:80", def, 2));
    assert_false(allowed("[::ffff:128.0.0.1]:80", def, 2));
    assert_true(allowed("[::ffff:10.9.8.7]:80", v4, 3));
    assert_false(allowed("[::ffff:11.9.8.7]:80", v4, 3));
    /* ... but not IPv4-compatible or other embeddings */
    assert_false(allowed("[::127.0.0.1]:80", def, 2));
    assert_false(allowed("[64:ff9b::127.0.0.1]:80", def, 2));

    assert_true(allowed("10.255.0.1:1", v4, 3));
    assert_true(allowed("192.0.2.7:1", v4, 3));
    assert_false(allowed("192.0.2.8:1", v4, 3));
    assert_false(allowed("192.0.2.6:1", v4, 3));
    assert_true(allowed("172.31.255.255:1", v4, 3));
    assert_false(allowed("172.32.0.0:1", v4, 3));
    assert_false(allowed("172.15.255.255:1", v4, 3));
    assert_false(allowed("[::1]:1", v4, 3));
    assert_false(allowed("unix:/x", v4, 3));

    assert_true(allowed("[fd12:3456::1]:1", v6, 2));
    assert_true(allowed("[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1", v6, 2));
    assert_false(allowed("[fe00::1]:1", v6, 2));
    assert_false(allowed("[fc00::1]:1", v6, 2));
    assert_true(allowed("[2001:db8:ffff::1]:1", v6, 2));
    assert_false(allowed("[2001:db9::1]:1", v6, 2));
    assert_false(allowed("10.0.0.1:1", v6, 2));
    assert_false(allowed("unix:/x", v6, 2));

    assert_true(allowed("unix:/run/a.sock", ux, 1));
    assert_false(allowed("127.0.0.1:80", ux, 1));
    assert_false(allowed("[::1]:80", ux, 1));

    assert_true(allowed("1.2.3.4:5", any, 2));
    assert_true(allowed("[2001:db8::5]:5", any, 2));
    assert_false(allowed("unix:/x", any, 2));

    /* host bits of a rule are ignored */
    assert_true(allowed("192.0.2.200:1", odd, 1));
    assert_false(allowed("192.0.2.127:1", odd, 1));

    /* no rules: nothing is allowed */
    assert_false(allowed("127.0.0.1:80", def, 0));
}


static void
test_record_defaults(void **state)
{
    const char            *err;
    ngx_gateway_record_t   r;

    (void) state;

    memset(&r, 0x5a, sizeof(r));
    ngx_gateway_record_init(&r);

    assert_int_equal(r.has_addr, 0);
    assert_int_equal(r.weight, 1);
    assert_int_equal(r.ttl, 0);
    assert_int_equal(r.state, NGX_GATEWAY_STATE_UP);
    assert_int_equal(r.backup, 0);
    assert_int_equal(r.zone.len, 0);
    assert_non_null(r.zone.data);
    assert_int_equal(r.meta_len, 2);
    assert_memory_equal(r.meta, "{}", 2);

    err = NULL;
    assert_int_equal(ngx_gateway_record_check(&r, &err), -1);
    assert_string_equal(err, "missing \"address\"");
}


static void
test_record_set_good(void **state)
{
    const char            *err, *meta;
    ngx_gateway_record_t   r;
    char                   big[NGX_GATEWAY_META_MAX + 1];

    (void) state;

    ngx_gateway_record_init(&r);
    err = NULL;

    assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                            S("127.0.0.1:9001"), &err), 0);
    assert_int_equal(r.has_addr, 1);
    assert_memory_equal(r.addr.text, "127.0.0.1:9001", 14);
    assert_int_equal(r.addr.text_len, 14);
    assert_int_equal(ngx_gateway_record_check(&r, &err), 0);

    assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                            S("[::1]:9002"), &err), 0);
    assert_int_equal(r.addr.u.sockaddr.sa_family, AF_INET6);
    assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                            S("unix:/tmp/a.sock"), &err), 0);
    assert_int_equal(r.addr.u.sockaddr.sa_family, AF_UNIX);

    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("1"), &err),
                     0);
    assert_int_equal(r.weight, 1);
    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("1000"), &err),
                     0);
    assert_int_equal(r.weight, 1000);
    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("5"), &err),
                     0);
    assert_int_equal(r.weight, 5);

    assert_int_equal(ngx_gateway_record_set(&r, S("zone"), S("eu-1a"), &err),
                     0);
    assert_int_equal(r.zone.len, 5);
    assert_memory_equal(r.zone.data, "eu-1a", 5);
    assert_int_equal(ngx_gateway_record_set(&r, S("zone"), S(""), &err), 0);
    assert_int_equal(r.zone.len, 0);

    assert_int_equal(ngx_gateway_record_set(&r, S("state"), S("drain"), &err),
                     0);
    assert_int_equal(r.state, NGX_GATEWAY_STATE_DRAIN);
    assert_int_equal(ngx_gateway_record_set(&r, S("state"), S("down"), &err),
                     0);
    assert_int_equal(r.state, NGX_GATEWAY_STATE_DOWN);
    assert_int_equal(ngx_gateway_record_set(&r, S("state"), S("up"), &err),
                     0);
    assert_int_equal(r.state, NGX_GATEWAY_STATE_UP);

    assert_int_equal(ngx_gateway_record_set(&r, S("ttl"), S("0"), &err), 0);
    assert_int_equal(r.ttl, 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("ttl"), S("86400"), &err),
                     0);
    assert_int_equal(r.ttl, 86400);
    assert_int_equal(ngx_gateway_record_set(&r, S("ttl"), S("10"), &err), 0);
    assert_int_equal(r.ttl, 10);

    meta = "{\"v\":\"1\",\"tags\":[\"a\",\"b\"],\"n\":{\"x\":null}}";
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), meta,
                                            strlen(meta), &err), 0);
    assert_ptr_equal(r.meta, r.meta_buf);
    assert_int_equal(r.meta_len, strlen(meta));
    assert_memory_equal(r.meta, meta, r.meta_len);

    /* metadata is kept in its canonical compact form */
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), S(" { } "),
                                            &err), 0);
    assert_int_equal(r.meta_len, 2);
    assert_memory_equal(r.meta, "{}", 2);

    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"),
                                            S("{\"team\":\n\"blue\"}"), &err),
                     0);
    assert_int_equal(r.meta_len, 15);
    assert_memory_equal(r.meta, "{\"team\":\"blue\"}", 15);

    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"),
                         S("{ \"k\\u00e9\" : [ \"a\\/b\", 1.5e3, true ] }"),
                         &err), 0);
    assert_int_equal(r.meta_len, 26);
    assert_memory_equal(r.meta, "{\"k\xc3\xa9\":[\"a/b\",1.5e3,true]}", 26);

    /* the zone is a copy too */
    {
        char  zone[] = "eu-2";

        assert_int_equal(ngx_gateway_record_set(&r, S("zone"), zone, 4,
                                                &err), 0);
        zone[0] = 'X';
        assert_memory_equal(r.zone.data, "eu-2", 4);
    }

    /* the limit is on the compact form: whitespace does not count */
    memset(big, ' ', sizeof(big));
    big[0] = '{';
    big[NGX_GATEWAY_META_MAX] = '}';
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), big,
                                            NGX_GATEWAY_META_MAX + 1, &err),
                     0);
    assert_int_equal(r.meta_len, 2);

    /* depth 8 is allowed */
    meta = "{\"a\":[[[[[[{}]]]]]]}";
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), meta,
                                            strlen(meta), &err), 0);

    /* unknown fields are ignored, known ones are case-sensitive */
    err = NULL;
    assert_int_equal(ngx_gateway_record_set(&r, S("color"), S("x"), &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("Weight"), S("x"), &err),
                     0);
    assert_int_equal(ngx_gateway_record_set(&r, S("weigh"), S("x"), &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("weights"), S("x"), &err),
                     0);
    assert_int_equal(ngx_gateway_record_set(&r, S(""), S("x"), &err), 0);
    assert_null(err);
    assert_int_equal(r.weight, 5);

    /* err may be NULL */
    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("0"), NULL),
                     -1);
}


typedef struct {
    const char  *field;
    const char  *val;
} bad_field_t;


static void
test_record_set_bad(void **state)
{
    static const bad_field_t  bad[] = {
        { "address", "" },
        { "address", "localhost:80" },
        { "address", "127.0.0.1:0" },
        { "address", "127.0.0.1:65536" },
        { "address", "127.0.0.1" },
        { "address", "unix:rel" },
        { "address", "unix:/tmp/x\r\nSet-Cookie: session=attacker" },
        { "address", "unix:/tmp/x\ny" },
        { "address", "unix:/tmp/\x7f" },
        { "address", "unix:/tmp/\xc2\x85" },
        { "address", "unix:/tmp/\xff" },
        { "address", "unix:/tmp/\xc3" },
        { "address", "unix:/tmp/\xed\xa0\x80" },
        { "weight", "" },
        { "weight", "0" },
        { "weight", "1001" },
        { "weight", "-1" },
        { "weight", "+5" },
        { "weight", "5 " },
        { "weight", "1.5" },
        { "weight", "abc" },
        { "weight", "99999999999999999999999" },
        { "zone", "a b" },
        { "zone", "a/b" },
        { "zone", "zone\"" },
        { "zone", "12345678901234567890123456789012345678901234567890"
                  "123456789012345" },
        { "state", "" },
        { "state", "UP" },
        { "state", "sleeping" },
        { "state", "up " },
        { "metadata", "" },
        { "metadata", "[]" },
        { "metadata", "\"x\"" },
        { "metadata", "1" },
        { "metadata", "null" },
        { "metadata", "{" },
        { "metadata", "{\"a\":1,}" },
        { "metadata", "{} {}" },
        { "metadata", "{\"a\":\"\\x\"}" },
        { "metadata", "{\"a\":[[[[[[[{}]]]]]]]}" },
        { "metadata", "{\"a\":\"x\\r\\nSet-Cookie: y\"}" },
        { "metadata", "{\"a\":\"\\u0000\"}" },
        { "metadata", "{\"a\":\"\\u007f\"}" },
        { "metadata", "{\"a\":\"\\u0085\"}" },
        { "metadata", "{\"a\":\"\x7f\"}" },
        { "metadata", "{\"a\":\"\xc2\x9b\"}" },
        { "metadata", "{\"a\\tb\":1}" },
        { "metadata", "{\"a\":[\"ok\",{\"b\":\"\\b\"}]}" },
        { "metadata", "{\"a\":\"\xff\"}" },
        { "metadata", "{\"a\":\"\\ud800\"}" },
        { "ttl", "" },
        { "ttl", "-1" },
        { "ttl", "86401" },
        { "ttl", "1e3" },
        { "ttl", "ten" },
        { "backup", "" },
        { "backup", "1" },
        { "backup", "yes" },
        { "backup", "True" },
        { "backup", "true " },
    };

    size_t                 i, n;
    char                   field[32];
    const char            *err;
    ngx_gateway_record_t   r, orig;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ngx_gateway_record_init(&r);
        assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                                S("127.0.0.1:1"), &err), 0);
        memcpy(&orig, &r, sizeof(r));
        err = NULL;

        if (ngx_gateway_record_set(&r, bad[i].field, strlen(bad[i].field),
                                   bad[i].val, strlen(bad[i].val), &err)
            != -1)
        {
            fail_msg("accepted %s \"%s\"", bad[i].field, bad[i].val);
        }

        if (err == NULL) {
            fail_msg("no error for %s \"%s\"", bad[i].field, bad[i].val);
        }

        /* the message names the field */
        n = (size_t) snprintf(field, sizeof(field), "\"%s\"", bad[i].field);
        assert_true(n < sizeof(field));

        if (strstr(err, field) == NULL) {
            fail_msg("error \"%s\" does not name %s", err, field);
        }

        /* a failed set leaves the record as it was */
        if (memcmp(&r, &orig, sizeof(r)) != 0) {
            fail_msg("%s \"%s\" changed the record", bad[i].field,
                     bad[i].val);
        }
    }

    /* one wording for each field, from one place */
    ngx_gateway_record_init(&r);
    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("0"), &err),
                     -1);
    assert_string_equal(err, "invalid \"weight\": must be an integer 1..1000");
    assert_ptr_equal(err, ngx_gateway_record_field_error(S("weight")));

    assert_int_equal(ngx_gateway_record_set(&r, S("ttl"), S("x"), &err), -1);
    assert_ptr_equal(err, ngx_gateway_record_field_error(S("ttl")));
    assert_string_equal(err, "invalid \"ttl\": must be an integer 0..86400");

    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), S("[]"), &err),
                     -1);
    assert_string_equal(err, "invalid \"metadata\": must be a JSON object");

    assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                            S("unix:/x\r\ny"), &err), -1);
    assert_string_equal(err, "invalid \"address\": must be valid UTF-8 "
                             "without control characters");

    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"),
                                            S("{\"a\":\"\\n\"}"), &err), -1);
    assert_string_equal(err, "invalid \"metadata\": strings must be valid "
                             "UTF-8 without control characters");

    assert_int_equal(ngx_gateway_record_set(&r, S("backup"), S("no"), &err),
                     -1);
    assert_string_equal(err, "invalid \"backup\": must be true or false");

    for (i = 0; i < 7; i++) {
        static const char  *f[] = {
            "address", "weight", "zone", "state", "backup", "metadata", "ttl"
        };

        err = ngx_gateway_record_field_error(f[i], strlen(f[i]));
        assert_non_null(err);
        n = (size_t) snprintf(field, sizeof(field), "invalid \"%s\": ", f[i]);
        assert_memory_equal(err, field, n);
    }

    assert_null(ngx_gateway_record_field_error(S("id")));
    assert_null(ngx_gateway_record_field_error(S("Weight")));
}


static void
test_record_meta_limits(void **state)
{
    int                    i;
    char                   buf[NGX_GATEWAY_META_MAX + 2];
    size_t                 n;
    const char            *err;
    ngx_gateway_record_t   r;

    (void) state;

    ngx_gateway_record_init(&r);

    /* a compact form of NGX_GATEWAY_META_MAX + 1 bytes */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "{\"a\":\"", 6);
    buf[NGX_GATEWAY_META_MAX - 1] = '"';
    buf[NGX_GATEWAY_META_MAX] = '}';
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), buf,
                                            NGX_GATEWAY_META_MAX + 1, &err),
                     -1);
    assert_string_equal(err, "invalid \"metadata\": longer than 1024 bytes");

    /* one byte less fits exactly */
    buf[NGX_GATEWAY_META_MAX - 2] = '"';
    buf[NGX_GATEWAY_META_MAX - 1] = '}';
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), buf,
                                            NGX_GATEWAY_META_MAX, &err), 0);
    assert_int_equal(r.meta_len, NGX_GATEWAY_META_MAX);

    /* escapes that the canonical form spells out count as written out */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "{\"a\":\"\\u00e9", 12);
    buf[NGX_GATEWAY_META_MAX - 1] = '"';
    buf[NGX_GATEWAY_META_MAX] = '}';
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), buf,
                                            NGX_GATEWAY_META_MAX + 1, &err),
                     0);
    assert_int_equal(r.meta_len, NGX_GATEWAY_META_MAX - 3);

    /* the input as sent is bounded as well */
    {
        char  *huge;

        huge = malloc(NGX_GATEWAY_META_INPUT + 1);
        assert_non_null(huge);
        memset(huge, ' ', NGX_GATEWAY_META_INPUT + 1);
        huge[0] = '{';
        huge[NGX_GATEWAY_META_INPUT] = '}';
        assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), huge,
                                                NGX_GATEWAY_META_INPUT, &err),
                         -1);
        huge[NGX_GATEWAY_META_INPUT - 1] = '}';
        assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), huge,
                                                NGX_GATEWAY_META_INPUT, &err),
                         0);
        assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), huge,
                                                NGX_GATEWAY_META_INPUT + 1,
                                                &err),
                         -1);
        free(huge);
    }

    ngx_gateway_record_init(&r);

    /* more values than the token array holds, within the size limit */
    n = 0;
    buf[n++] = '{';
    buf[n++] = '"';
    buf[n++] = 'a';
    buf[n++] = '"';
    buf[n++] = ':';
    buf[n++] = '[';

    for (i = 0; i < 400; i++) {
        buf[n++] = '0';
        buf[n++] = ',';
    }

    buf[n - 1] = ']';
    buf[n++] = '}';
    assert_true(n <= NGX_GATEWAY_META_MAX);

    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"), buf, n, &err),
                     -1);
    assert_non_null(strstr(err, "\"metadata\""));
    assert_int_equal(r.meta_len, 2);
}


/* what every other part relies on the table for */

static void
test_field_table(void **state)
{
    char                        buf[NGX_GATEWAY_FIELD_BUF];
    size_t                      n, len;
    const char                 *v, *err;
    ngx_gateway_record_t        r, d;
    const ngx_gateway_field_t  *f, *g;

    (void) state;

    n = 0;

    for (f = ngx_gateway_fields; f->name; f++) {
        n++;

        /* names are unique, found by name, and len is right */
        assert_int_equal(f->len, strlen(f->name));
        assert_ptr_equal(ngx_gateway_field_find(f->name, f->len), f);

        for (g = f + 1; g->name; g++) {
            assert_string_not_equal(f->name, g->name);
        }

        assert_non_null(f->set);
        assert_non_null(f->get);
        assert_non_null(f->error);
        assert_true(f->def != NULL || f->missing != NULL);

        /* the default is valid, and what an initialized record holds */
        ngx_gateway_record_init(&r);

        if (f->def != NULL) {
            v = f->get(f, &r, buf, &len);
            assert_int_equal(len, strlen(f->def));
            assert_memory_equal(v, f->def, len);
        }
    }

    /* each field has a bit in rec->given */
    assert_true(n > 0 && n <= 8 * sizeof(r.given));

    assert_null(ngx_gateway_field_find(S("id")));
    assert_null(ngx_gateway_field_find(S("Weight")));

    /* an initialized record has nothing given, and misses its address */
    ngx_gateway_record_init(&r);
    assert_int_equal(r.given, 0);
    assert_int_equal(ngx_gateway_record_check(&r, &err), -1);
    assert_string_equal(err, "missing \"address\"");

    /* a value read back sets the same value */
    assert_int_equal(ngx_gateway_record_set(&r, S("address"),
                                            S("[2001:DB8::1]:80"), &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("weight"), S("7"), &err),
                     0);
    assert_int_equal(ngx_gateway_record_set(&r, S("zone"), S("eu-1"), &err),
                     0);
    assert_int_equal(ngx_gateway_record_set(&r, S("state"), S("drain"),
                                            &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("ttl"), S("30"), &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("backup"), S("true"),
                                            &err), 0);
    assert_int_equal(r.backup, 1);
    assert_int_equal(ngx_gateway_record_set(&r, S("metadata"),
                                            S("{ \"v\" : [1, 2] }"), &err),
                     0);
    assert_int_equal(ngx_gateway_record_set(&r, S("health_uri"),
                                            S("/ready?x=1"), &err), 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("health_status"),
                                            S("200,204"), &err), 0);
    assert_int_equal(r.given, (1u << n) - 1);

    ngx_gateway_record_init(&d);
    assert_false(ngx_gateway_record_same(&r, &d));
    assert_int_equal(ngx_gateway_record_merge(&d, &r, NGX_GATEWAY_RECORD_ALL),
                     0);
    assert_true(ngx_gateway_record_same(&r, &d));
    assert_int_equal(d.given, r.given);

    /* one field apart is not the same */
    d.ttl++;
    assert_false(ngx_gateway_record_same(&r, &d));
    d.ttl--;
    d.zone.len--;
    assert_false(ngx_gateway_record_same(&r, &d));
    d.zone.len++;
    d.backup = 0;
    assert_false(ngx_gateway_record_same(&r, &d));
    d.backup = 1;
    assert_true(ngx_gateway_record_same(&r, &d));
    d.health_uri.len--;
    assert_false(ngx_gateway_record_same(&r, &d));
    d.health_uri.len++;
    assert_true(ngx_gateway_record_same(&r, &d));

    /* the health fields: "" is the default, else a path and a list */
    assert_int_equal(ngx_gateway_record_set(&r, S("health_uri"), S(""),
                                            &err), 0);
    assert_int_equal(r.health_uri.len, 0);
    assert_int_equal(ngx_gateway_record_set(&r, S("health_uri"),
                                            S("/a\r\nX: y"), &err), -1);
    assert_string_equal(err, "invalid \"health_uri\": must be a path of "
                             "at most 256 bytes, \"/\" then printable ASCII "
                             "without spaces");
    assert_int_equal(ngx_gateway_record_set(&r, S("health_uri"),
                                            S("ready"), &err), -1);
    assert_int_equal(ngx_gateway_record_set(&r, S("health_status"),
                                            S("399-200"), &err), -1);
    assert_string_equal(err, "invalid \"health_status\": must be statuses "
                             "100..599 or ranges of them, e.g. \"200-399\" "
                             "or \"200,204\"");
    assert_int_equal(ngx_gateway_record_set(&r, S("health_status"), S(""),
                                            &err), 0);

    /* d keeps its own copies */
    assert_ptr_equal(d.zone.data, d.zone.buf);
    assert_ptr_equal(d.meta, d.meta_buf);

    for (f = ngx_gateway_fields; f->name; f++) {
        v = ngx_gateway_record_get(&d, f, buf, &len);

        if (strcmp(f->name, "address") == 0) {
            assert_int_equal(len, sizeof("[2001:db8::1]:80") - 1);
            assert_memory_equal(v, "[2001:db8::1]:80", len);

        } else if (strcmp(f->name, "weight") == 0) {
            assert_int_equal(len, 1);
            assert_memory_equal(v, "7", 1);

        } else if (strcmp(f->name, "backup") == 0) {
            assert_int_equal(len, 4);
            assert_memory_equal(v, "true", 4);

        } else if (strcmp(f->name, "metadata") == 0) {
            assert_int_equal(len, sizeof("{\"v\":[1,2]}") - 1);
            assert_memory_equal(v, "{\"v\":[1,2]}", len);
        }
    }

    /* a merge of some fields changes those only */
    ngx_gateway_record_init(&d);
    assert_int_equal(ngx_gateway_record_set(&d, S("address"),
                                            S("127.0.0.1:1"), &err), 0);
    f = ngx_gateway_field_find(S("weight"));
    assert_int_equal(ngx_gateway_record_merge(&d, &r,
                                              ngx_gateway_field_bit(f)), 0);
    assert_int_equal(d.weight, 7);
    assert_int_equal(d.ttl, 0);
    assert_int_equal(d.addr.text_len, sizeof("127.0.0.1:1") - 1);
}


static int
from_json(const char *json, ngx_gateway_record_t *r, unsigned flags,
    const char **err)
{
    int                     n;
    ngx_gateway_json_tok_t  toks[64];

    n = ngx_gateway_json_parse(json, strlen(json), toks, 64, 16);
    assert_true(n > 0);

    ngx_gateway_record_init(r);
    *err = NULL;

    return ngx_gateway_record_from_json(toks, 0, r, flags, err);
}


static void
test_record_json(void **state)
{
    char                   out[2048];
    size_t                 n;
    const char            *err;
    ngx_gateway_record_t   r;

    (void) state;

    assert_int_equal(from_json("{\"id\":\"x\",\"address\":\"127.0.0.1:80\","
                               "\"weight\":3,\"zone\":\"a\","
                               "\"state\":\"down\",\"ttl\":5,"
                               "\"backup\":true,"
                               "\"metadata\":{\"k\": \"\\u00e9\\\"\"}}",
                               &r, 0, &err), 0);

    /* the order and the form of the admin API's instances */
    n = ngx_gateway_record_json(&r, 0, out);
    assert_int_equal(n, ngx_gateway_record_json(&r, 0, NULL));
    out[n] = '\0';
    assert_string_equal(out, "\"address\":\"127.0.0.1:80\",\"weight\":3,"
                             "\"zone\":\"a\",\"state\":\"down\","
                             "\"backup\":true,\"ttl\":5,");

    n = ngx_gateway_record_json(&r, 1, out);
    assert_int_equal(n, ngx_gateway_record_json(&r, 1, NULL));
    out[n] = '\0';
    assert_string_equal(out, "\"metadata\":{\"k\":\"\xc3\xa9\\\"\"},");

    /* a unix path is escaped as a JSON string */
    assert_int_equal(from_json("{\"address\":\"unix:/a\\\"b\"}", &r, 0, &err),
                     0);
    n = ngx_gateway_record_json(&r, 0, out);
    out[n] = '\0';
    assert_non_null(strstr(out, "\"address\":\"unix:/a\\\"b\","));

    /* defaults, the wrong JSON types, unknown fields */
    assert_int_equal(from_json("{\"address\":\"127.0.0.1:80\"}", &r, 0,
                               &err), 0);
    assert_int_equal(r.weight, 1);

    assert_int_equal(from_json("{\"weight\":2}", &r, 0, &err), -1);
    assert_string_equal(err, "missing \"address\"");
    assert_int_equal(from_json("{\"weight\":2}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), 0);
    assert_int_equal(r.weight, 2);

    assert_int_equal(from_json("{\"weight\":\"2\"}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_string_equal(err, "invalid \"weight\": must be an integer "
                             "1..1000");
    assert_int_equal(from_json("{\"ttl\":-1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_string_equal(err, "invalid \"ttl\": must be an integer 0..86400");
    assert_int_equal(from_json("{\"zone\":1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_ptr_equal(err, ngx_gateway_record_field_error(S("zone")));
    assert_int_equal(from_json("{\"metadata\":\"{}\"}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_string_equal(err, "invalid \"metadata\": must be a JSON object");

    assert_int_equal(from_json("{\"backup\":\"true\"}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_ptr_equal(err, ngx_gateway_record_field_error(S("backup")));
    assert_int_equal(from_json("{\"backup\":1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_int_equal(from_json("{\"backup\":false}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), 0);
    assert_int_equal(r.backup, 0);

    assert_int_equal(from_json("{\"color\":1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_string_equal(err, "unknown field; known fields are \"address\", "
                             "\"weight\", \"zone\", \"state\", \"backup\", "
                             "\"ttl\", \"metadata\", \"health_uri\" and "
                             "\"health_status\"");
    assert_ptr_equal(err, ngx_gateway_record_unknown());
    assert_int_equal(from_json("{\"color\":1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL
                               | NGX_GATEWAY_RECORD_LENIENT, &err), 0);
    assert_int_equal(from_json("{\"id\":1}", &r,
                               NGX_GATEWAY_RECORD_PARTIAL, &err), -1);
    assert_int_equal(from_json("[]", &r, 0, &err), -1);
    assert_string_equal(err, "the body must be a JSON object");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_parse_uint),
        cmocka_unit_test(test_addr_ipv4),
        cmocka_unit_test(test_addr_ipv6),
        cmocka_unit_test(test_addr_unix),
        cmocka_unit_test(test_addr_bad),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_record_defaults),
        cmocka_unit_test(test_record_set_good),
        cmocka_unit_test(test_record_set_bad),
        cmocka_unit_test(test_record_meta_limits),
        cmocka_unit_test(test_field_table),
        cmocka_unit_test(test_record_json),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);

    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
