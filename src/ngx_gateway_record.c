
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>
#include <arpa/inet.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_record.h"
#include "ngx_gateway_text.h"


#define NGX_GATEWAY_META_TOKENS  256
#define NGX_GATEWAY_META_DEPTH   8


static int ngx_gateway_name_char(unsigned char c);
static int ngx_gateway_field_find(const char *field, size_t field_len);
static int ngx_gateway_match(const unsigned char *addr,
    const unsigned char *rule, const unsigned char *mask, size_t n);


static int
ngx_gateway_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}


int
ngx_gateway_valid_name(const char *s, size_t len)
{
    unsigned char  c;

    if (len == 0 || len > NGX_GATEWAY_NAME_MAX) {
        return 0;
    }

    c = (unsigned char) s[0];

    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9')))
    {
        return 0;
    }

    return ngx_gateway_valid_zone(s, len);
}


int
ngx_gateway_valid_zone(const char *s, size_t len)
{
    size_t  i;

    if (len > NGX_GATEWAY_ZONE_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!ngx_gateway_name_char((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gateway_parse_state(const char *s, size_t len)
{
    if (len == 2 && memcmp(s, "up", 2) == 0) {
        return NGX_GATEWAY_STATE_UP;
    }

    if (len == 5 && memcmp(s, "drain", 5) == 0) {
        return NGX_GATEWAY_STATE_DRAIN;
    }

    if (len == 4 && memcmp(s, "down", 4) == 0) {
        return NGX_GATEWAY_STATE_DOWN;
    }

    return -1;
}


const char *
ngx_gateway_state_name(int state)
{
    switch (state) {

    case NGX_GATEWAY_STATE_UP:
        return "up";

    case NGX_GATEWAY_STATE_DRAIN:
        return "drain";

    case NGX_GATEWAY_STATE_DOWN:
        return "down";

    default:
        return "unknown";
    }
}


int
ngx_gateway_parse_uint(const char *s, size_t len, uint64_t max,
    uint64_t *out)
{
    size_t    i;
    uint64_t  v, d;

    if (len == 0) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        d = (uint64_t) (s[i] - '0');

        if (d > max || v > (max - d) / 10) {
            return -1;
        }

        v = v * 10 + d;
    }

    *out = v;

    return 0;
}


int
ngx_gateway_parse_addr(const char *s, size_t len, ngx_gateway_addr_t *addr)
{
    int          family;
    char         host[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN];
    size_t       i, hlen, plen, tlen;
    uint64_t     port;
    const char  *h, *p;

    if (len == 0 || !ngx_gateway_text_valid(s, len)) {
        return -1;
    }

    memset(addr, 0, sizeof(ngx_gateway_addr_t));

    if (len >= 5 && memcmp(s, "unix:", 5) == 0) {
        p = s + 5;
        plen = len - 5;

        if (plen == 0 || plen >= sizeof(addr->u.sockaddr_un.sun_path)
            || p[0] != '/')
        {
            return -1;
        }

        addr->u.sockaddr_un.sun_family = AF_UNIX;
        memcpy(addr->u.sockaddr_un.sun_path, p, plen);
        addr->socklen = (socklen_t) (offsetof(struct sockaddr_un, sun_path)
                                     + plen + 1);

        memcpy(addr->text, s, len);
        addr->text_len = len;

        return 0;
    }

    if (s[0] == '[') {
        family = AF_INET6;

        for (i = 1; i < len && s[i] != ']'; i++) { /* void */ }

        if (i == len || i + 1 == len || s[i + 1] != ':') {
            return -1;
        }

        h = s + 1;
        hlen = i - 1;
        p = s + i + 2;

    } else {
        family = AF_INET;

        for (i = len; i > 0 && s[i - 1] != ':'; i--) { /* void */ }

        if (i == 0) {
            return -1;
        }

        h = s;
        hlen = i - 1;
        p = s + i;
    }

    plen = (size_t) (s + len - p);

    if (ngx_gateway_parse_uint(p, plen, 65535, &port) != 0 || port == 0) {
        return -1;
    }

    if (hlen == 0 || hlen >= sizeof(host)) {
        return -1;
    }

    memcpy(host, h, hlen);
    host[hlen] = '\0';

    if (family == AF_INET) {
        if (inet_pton(AF_INET, host, &addr->u.sockaddr_in.sin_addr) != 1) {
            return -1;
        }

        addr->u.sockaddr_in.sin_family = AF_INET;
        addr->u.sockaddr_in.sin_port = htons((uint16_t) port);
        addr->socklen = sizeof(struct sockaddr_in);

        if (inet_ntop(AF_INET, &addr->u.sockaddr_in.sin_addr, text,
                      sizeof(text))
            == NULL)
        {
            return -1;
        }

        tlen = strlen(text);
        memcpy(addr->text, text, tlen);

    } else {
        if (inet_pton(AF_INET6, host, &addr->u.sockaddr_in6.sin6_addr) != 1)
        {
            return -1;
        }

        addr->u.sockaddr_in6.sin6_family = AF_INET6;
        addr->u.sockaddr_in6.sin6_port = htons((uint16_t) port);
        addr->socklen = sizeof(struct sockaddr_in6);

        if (inet_ntop(AF_INET6, &addr->u.sockaddr_in6.sin6_addr, text,
                      sizeof(text))
            == NULL)
        {
            return -1;
        }

        tlen = strlen(text);
        addr->text[0] = '[';
        memcpy(addr->text + 1, text, tlen);
        addr->text[tlen + 1] = ']';
        tlen += 2;
    }

    /* ":65535" always fits: INET6_ADDRSTRLEN + 2 + 6 < 128 */

    addr->text[tlen++] = ':';

    for (i = 10000; i > 1 && port / i == 0; i /= 10) { /* void */ }

    for ( /* void */ ; i > 0; i /= 10) {
        addr->text[tlen++] = (char) ('0' + (port / i) % 10);
    }

    addr->text_len = tlen;

    return 0;
}


int
ngx_gateway_parse_cidr(const char *s, size_t len, ngx_gateway_cidr_t *cidr)
{
    int          family;
    char         host[INET6_ADDRSTRLEN];
    size_t       i, hlen, bits, max;
    uint64_t     n;
    const char  *slash;

    memset(cidr, 0, sizeof(ngx_gateway_cidr_t));

    if (len == 5 && memcmp(s, "unix:", 5) == 0) {
        cidr->family = AF_UNIX;
        return 0;
    }

    if (len == 0 || memchr(s, '\0', len) != NULL) {
        return -1;
    }

    slash = memchr(s, '/', len);
    hlen = (slash != NULL) ? (size_t) (slash - s) : len;

    if (hlen == 0 || hlen >= sizeof(host)) {
        return -1;
    }

    memcpy(host, s, hlen);
    host[hlen] = '\0';

    if (memchr(host, ':', hlen) != NULL) {
        family = AF_INET6;
        max = 128;

    } else {
        family = AF_INET;
        max = 32;
    }

    if (inet_pton(family, host, cidr->addr) != 1) {
        return -1;
    }

    if (slash != NULL) {
        if (ngx_gateway_parse_uint(slash + 1, (size_t) (s + len - slash - 1),
                                   max, &n)
            != 0)
        {
            return -1;
        }

        bits = (size_t) n;

    } else {
        bits = max;
    }

    cidr->family = family;

    for (i = 0; i < max / 8; i++) {
        if (bits >= 8) {
            cidr->mask[i] = 0xff;
            bits -= 8;

        } else {
            cidr->mask[i] = (unsigned char) (0xff << (8 - bits));
            bits = 0;
        }

        /* host bits are ignored, as nginx's "allow" does */
        cidr->addr[i] &= cidr->mask[i];
    }

    return 0;
}


static int
ngx_gateway_match(const unsigned char *addr, const unsigned char *rule,
    const unsigned char *mask, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if ((addr[i] & mask[i]) != rule[i]) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gateway_addr_allowed(const ngx_gateway_addr_t *addr,
    const ngx_gateway_cidr_t *rules, size_t n)
{
    int                   family;
    size_t                i;
    const unsigned char  *a4, *a6;

    family = addr->u.sockaddr.sa_family;
    a4 = NULL;
    a6 = NULL;

    switch (family) {

    case AF_INET:
        a4 = (const unsigned char *) &addr->u.sockaddr_in.sin_addr;
        break;

    case AF_INET6:
        a6 = addr->u.sockaddr_in6.sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&addr->u.sockaddr_in6.sin6_addr)) {
            a4 = a6 + 12;
        }

        break;

    case AF_UNIX:
        break;

    default:
        return 0;
    }

    for (i = 0; i < n; i++) {

        switch (rules[i].family) {

        case AF_UNIX:
            if (family == AF_UNIX) {
                return 1;
            }

            break;

        case AF_INET:
            if (a4 != NULL
                && ngx_gateway_match(a4, rules[i].addr, rules[i].mask, 4))
            {
                return 1;
            }

            break;

        case AF_INET6:
            if (a6 != NULL
                && ngx_gateway_match(a6, rules[i].addr, rules[i].mask, 16))
            {
                return 1;
            }

            break;
        }
    }

    return 0;
}


void
ngx_gateway_record_init(ngx_gateway_record_t *rec)
{
    memset(rec, 0, sizeof(ngx_gateway_record_t));

    rec->has_addr = 0;
    rec->weight = 1;
    rec->ttl = 0;
    rec->state = NGX_GATEWAY_STATE_UP;
    rec->zone = "";
    rec->zone_len = 0;
    rec->meta = "{}";
    rec->meta_len = 2;
}


/* the fields of a record, with the message for a value of the wrong form */

enum {
    ngx_gateway_field_address = 0,
    ngx_gateway_field_weight,
    ngx_gateway_field_zone,
    ngx_gateway_field_state,
    ngx_gateway_field_metadata,
    ngx_gateway_field_ttl
};


static const struct {
    const char  *name;
    size_t       len;
    const char  *error;
} ngx_gateway_fields[] = {
    { "address", 7, "invalid \"address\": must be \"IPv4:port\", "
                    "\"[IPv6]:port\" or \"unix:/path\"" },
    { "weight", 6, "invalid \"weight\": must be an integer 1..1000" },
    { "zone", 4, "invalid \"zone\": must be 0..64 characters "
                 "of [A-Za-z0-9._-]" },
    { "state", 5, "invalid \"state\": must be \"up\", \"drain\" or "
                  "\"down\"" },
    { "metadata", 8, "invalid \"metadata\": must be a JSON object" },
    { "ttl", 3, "invalid \"ttl\": must be an integer 0..86400" },
    { NULL, 0, NULL }
};


static int
ngx_gateway_field_find(const char *field, size_t field_len)
{
    int  i;

    for (i = 0; ngx_gateway_fields[i].name; i++) {
        if (field_len == ngx_gateway_fields[i].len
            && memcmp(field, ngx_gateway_fields[i].name, field_len) == 0)
        {
            return i;
        }
    }

    return -1;
}


const char *
ngx_gateway_record_field_error(const char *field, size_t field_len)
{
    int  i;

    i = ngx_gateway_field_find(field, field_len);

    return (i < 0) ? NULL : ngx_gateway_fields[i].error;
}


int
ngx_gateway_record_set(ngx_gateway_record_t *rec, const char *field,
    size_t field_len, const char *val, size_t val_len, const char **err)
{
    int                     f, rc, i, n, len, state;
    char                    str[NGX_GATEWAY_META_MAX];
    uint64_t                v;
    const char             *msg;
    ngx_gateway_addr_t      addr;
    ngx_gateway_json_tok_t  toks[NGX_GATEWAY_META_TOKENS];

    f = ngx_gateway_field_find(field, field_len);

    if (f < 0) {
        return 0;
    }

    msg = ngx_gateway_fields[f].error;

    switch (f) {

    case ngx_gateway_field_address:
        if (!ngx_gateway_text_valid(val, val_len)) {
            msg = "invalid \"address\": must be valid UTF-8 without "
                  "control characters";
            goto failed;
        }

        if (ngx_gateway_parse_addr(val, val_len, &addr) != 0) {
            goto failed;
        }

        rec->addr = addr;
        rec->has_addr = 1;
        return 0;

    case ngx_gateway_field_weight:
        if (ngx_gateway_parse_uint(val, val_len, NGX_GATEWAY_WEIGHT_MAX, &v)
            != 0
            || v == 0)
        {
            goto failed;
        }

        rec->weight = (unsigned) v;
        return 0;

    case ngx_gateway_field_zone:
        if (!ngx_gateway_valid_zone(val, val_len)) {
            goto failed;
        }

        memcpy(rec->zone_buf, val, val_len);
        rec->zone = rec->zone_buf;
        rec->zone_len = val_len;
        return 0;

    case ngx_gateway_field_state:
        state = ngx_gateway_parse_state(val, val_len);

        if (state < 0) {
            goto failed;
        }

        rec->state = state;
        return 0;

    case ngx_gateway_field_metadata:
        if (val_len > NGX_GATEWAY_META_INPUT) {
            msg = "invalid \"metadata\": longer than 65536 bytes";
            goto failed;
        }

        rc = ngx_gateway_json_parse(val, val_len, toks,
                                    NGX_GATEWAY_META_TOKENS,
                                    NGX_GATEWAY_META_DEPTH);

        if (rc == NGX_GATEWAY_JSON_ENOMEM || rc == NGX_GATEWAY_JSON_EDEPTH) {
            msg = "invalid \"metadata\": too complex";
            goto failed;
        }

        if (rc <= 0 || toks[0].type != NGX_GATEWAY_JSON_OBJECT) {
            goto failed;
        }

        /* a string too long for str is too long for the canonical form */

        for (i = 0; i < rc; i++) {
            if (toks[i].type != NGX_GATEWAY_JSON_STRING) {
                continue;
            }

            n = ngx_gateway_json_string(&toks[i], str, sizeof(str));

            if (n < 0) {
                goto too_long;
            }

            if (!ngx_gateway_text_valid(str, (size_t) n)) {
                msg = "invalid \"metadata\": strings must be valid UTF-8 "
                      "without control characters";
                goto failed;
            }
        }

        len = ngx_gateway_json_encode(toks, 0, NULL, NGX_GATEWAY_META_MAX);
        if (len < 0) {
            goto too_long;
        }

        (void) ngx_gateway_json_encode(toks, 0, rec->meta_buf,
                                       NGX_GATEWAY_META_MAX);
        rec->meta = rec->meta_buf;
        rec->meta_len = (size_t) len;
        return 0;

    default: /* ngx_gateway_field_ttl */
        if (ngx_gateway_parse_uint(val, val_len, NGX_GATEWAY_TTL_MAX, &v)
            != 0)
        {
            goto failed;
        }

        rec->ttl = (unsigned) v;
        return 0;
    }

too_long:

    msg = "invalid \"metadata\": longer than 1024 bytes";

failed:

    if (err != NULL) {
        *err = msg;
    }

    return -1;
}


int
ngx_gateway_record_check(const ngx_gateway_record_t *rec, const char **err)
{
    if (!rec->has_addr) {
        if (err != NULL) {
            *err = "missing \"address\"";
        }

        return -1;
    }

    return 0;
}
