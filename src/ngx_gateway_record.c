
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_record.h"
#include "ngx_gateway_text.h"


#define NGX_GATEWAY_META_TOKENS  256
#define NGX_GATEWAY_META_DEPTH   8


static int ngx_gateway_name_char(unsigned char c);
static int ngx_gateway_match(const unsigned char *addr,
    const unsigned char *rule, const unsigned char *mask, size_t n);

static int ngx_gateway_field_apply(ngx_gateway_record_t *rec,
    const ngx_gateway_field_t *f, const char *val, size_t len,
    const char **err);
static int ngx_gateway_field_failed(const char *msg, const char **err);
static int ngx_gateway_text_set(const ngx_gateway_field_t *f, int valid,
    const char *val, size_t len, char *buf, const char **data, size_t *dlen,
    const char **err);
static int ngx_gateway_set_addr(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_addr(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_uint(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_uint(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_health_uri(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_health_uri(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_health_status(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static int ngx_gateway_set_word(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_word(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_state(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_state(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_bool(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_bool(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);
static int ngx_gateway_set_meta(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err);
static const char *ngx_gateway_get_meta(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len);


/*
 * The fields, in the order of JSON output and of the unknown field
 * message.  A new field is one entry here (and its member in
 * ngx_gateway_record_t, and where an instance keeps it: see
 * ngx_http_gateway_registry.c).
 */

const ngx_gateway_field_t  ngx_gateway_fields[] = {

    { "address", 7, NGX_GATEWAY_FIELD_STRING, 0,
      offsetof(ngx_gateway_record_t, addr), 0, 0, NULL,
      "invalid \"address\": must be \"IPv4:port\", \"[IPv6]:port\" or "
      "\"unix:/path\"",
      "missing \"address\"",
      ngx_gateway_set_addr, ngx_gateway_get_addr, 0 },

    { "weight", 6, NGX_GATEWAY_FIELD_NUMBER, 0,
      offsetof(ngx_gateway_record_t, weight), 1, NGX_GATEWAY_WEIGHT_MAX, "1",
      "invalid \"weight\": must be an integer 1..1000", NULL,
      ngx_gateway_set_uint, ngx_gateway_get_uint, 0 },

    { "zone", 4, NGX_GATEWAY_FIELD_STRING, 0,
      offsetof(ngx_gateway_record_t, zone), 0, NGX_GATEWAY_ZONE_MAX, "",
      "invalid \"zone\": must be 0..64 characters of [A-Za-z0-9._-]", NULL,
      ngx_gateway_set_word, ngx_gateway_get_word, 0 },

    { "state", 5, NGX_GATEWAY_FIELD_STRING, 0,
      offsetof(ngx_gateway_record_t, state), 0, 0, "up",
      "invalid \"state\": must be \"up\", \"drain\" or \"down\"", NULL,
      ngx_gateway_set_state, ngx_gateway_get_state, 0 },

    { "backup", 6, NGX_GATEWAY_FIELD_BOOL, 0,
      offsetof(ngx_gateway_record_t, backup), 0, 0, "false",
      "invalid \"backup\": must be true or false", NULL,
      ngx_gateway_set_bool, ngx_gateway_get_bool, 0 },

    { "ttl", 3, NGX_GATEWAY_FIELD_NUMBER, 0,
      offsetof(ngx_gateway_record_t, ttl), 0, NGX_GATEWAY_TTL_MAX, "0",
      "invalid \"ttl\": must be an integer 0..86400", NULL,
      ngx_gateway_set_uint, ngx_gateway_get_uint, 0 },

    { "metadata", 8, NGX_GATEWAY_FIELD_OBJECT, 1,
      offsetof(ngx_gateway_record_t, meta), 0, NGX_GATEWAY_META_MAX, "{}",
      "invalid \"metadata\": must be a JSON object", NULL,
      ngx_gateway_set_meta, ngx_gateway_get_meta, 0 },

    { "health_uri", 10, NGX_GATEWAY_FIELD_STRING, 1,
      offsetof(ngx_gateway_record_t, health_uri), 0,
      NGX_GATEWAY_HEALTH_URI_MAX, "",
      "invalid \"health_uri\": must be a path of at most 256 bytes, "
      "\"/\" then printable ASCII without spaces", NULL,
      ngx_gateway_set_health_uri, ngx_gateway_get_health_uri, 1 },

    { "health_status", 13, NGX_GATEWAY_FIELD_STRING, 1,
      offsetof(ngx_gateway_record_t, health_status), 0,
      NGX_GATEWAY_HEALTH_STATUS_MAX, "",
      "invalid \"health_status\": must be statuses 100..599 or ranges "
      "of them, e.g. \"200-399\" or \"200,204\"", NULL,
      ngx_gateway_set_health_status, ngx_gateway_get_word, 1 },

    { NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0 }
};


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
    int                   family;
    char                  host[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN], *t;
    size_t                i, hlen, plen, tlen;
    uint64_t              port;
    const char           *h, *p;
    const unsigned char  *b;

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

        /* the canonical text without inet_ntop(): a sprintf() per octet */

        b = (const unsigned char *) &addr->u.sockaddr_in.sin_addr;
        t = addr->text;

        for (i = 0; i < 4; i++) {
            if (i) {
                *t++ = '.';
            }

            t = ngx_gateway_text_uint(t, b[i]);
        }

        tlen = (size_t) (t - addr->text);

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
    tlen = (size_t) (ngx_gateway_text_uint(addr->text + tlen, port)
                     - addr->text);

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

    ngx_gateway_record_defaults(rec);
}


/*
 * The fields not given get their defaults: a record read whole (a Redis
 * hash) is zeroed, set, then completed, so that a field given is parsed
 * once, not its default first
 */

void
ngx_gateway_record_defaults(ngx_gateway_record_t *rec)
{
    const ngx_gateway_field_t  *f;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (f->def != NULL && !(rec->given & ngx_gateway_field_bit(f))) {
            (void) f->set(f, rec, f->def, strlen(f->def), NULL);
        }
    }
}


const ngx_gateway_field_t *
ngx_gateway_field_find(const char *name, size_t len)
{
    const ngx_gateway_field_t  *f;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (len == f->len && memcmp(name, f->name, len) == 0) {
            return f;
        }
    }

    return NULL;
}


const char *
ngx_gateway_record_field_error(const char *field, size_t field_len)
{
    const ngx_gateway_field_t  *f;

    f = ngx_gateway_field_find(field, field_len);

    return (f == NULL) ? NULL : f->error;
}


const char *
ngx_gateway_record_unknown(void)
{
    int                         n;
    size_t                      len;
    const ngx_gateway_field_t  *f;

    static char  msg[512];

    if (msg[0] != '\0') {
        return msg;
    }

    /* built once from the table; t/unit checks that it fits */

    len = (size_t) snprintf(msg, sizeof(msg),
                            "unknown field; known fields are ");

    for (f = ngx_gateway_fields; f->name && len < sizeof(msg); f++) {
        n = snprintf(msg + len, sizeof(msg) - len, "%s\"%s\"",
                     (f == ngx_gateway_fields) ? ""
                     : (f[1].name == NULL) ? " and " : ", ",
                     f->name);
        len += (size_t) n;
    }

    return msg;
}


int
ngx_gateway_record_set(ngx_gateway_record_t *rec, const char *field,
    size_t field_len, const char *val, size_t val_len, const char **err)
{
    const ngx_gateway_field_t  *f;

    f = ngx_gateway_field_find(field, field_len);

    if (f == NULL) {
        return 0;
    }

    return ngx_gateway_field_apply(rec, f, val, val_len, err);
}


static int
ngx_gateway_field_apply(ngx_gateway_record_t *rec,
    const ngx_gateway_field_t *f, const char *val, size_t len,
    const char **err)
{
    if (f->set(f, rec, val, len, err) != 0) {
        return -1;
    }

    rec->given |= ngx_gateway_field_bit(f);

    return 0;
}


int
ngx_gateway_record_check(const ngx_gateway_record_t *rec, const char **err)
{
    const ngx_gateway_field_t  *f;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (f->def == NULL && !(rec->given & ngx_gateway_field_bit(f))) {
            return ngx_gateway_field_failed(f->missing, err);
        }
    }

    return 0;
}


const char *
ngx_gateway_record_get(const ngx_gateway_record_t *rec,
    const ngx_gateway_field_t *f, char *buf, size_t *len)
{
    return f->get(f, rec, buf, len);
}


int
ngx_gateway_record_same(const ngx_gateway_record_t *a,
    const ngx_gateway_record_t *b)
{
    char                        abuf[NGX_GATEWAY_FIELD_BUF];
    char                        bbuf[NGX_GATEWAY_FIELD_BUF];
    size_t                      alen, blen;
    const char                 *av, *bv;
    const ngx_gateway_field_t  *f;

    for (f = ngx_gateway_fields; f->name; f++) {

        /* every upsert compares: numbers without formatting them */

        if (f->get == ngx_gateway_get_uint || f->get == ngx_gateway_get_bool) {
            if (*(const unsigned *) ((const char *) a + f->offset)
                != *(const unsigned *) ((const char *) b + f->offset))
            {
                return 0;
            }

            continue;
        }

        av = f->get(f, a, abuf, &alen);
        bv = f->get(f, b, bbuf, &blen);

        if (alen != blen || memcmp(av, bv, alen) != 0) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gateway_record_merge(ngx_gateway_record_t *dst,
    const ngx_gateway_record_t *src, unsigned mask)
{
    char                        buf[NGX_GATEWAY_FIELD_BUF];
    size_t                      len;
    const char                 *v;
    const ngx_gateway_field_t  *f;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (!(mask & ngx_gateway_field_bit(f))) {
            continue;
        }

        v = f->get(f, src, buf, &len);

        if (f->set(f, dst, v, len, NULL) != 0) {
            return -1;
        }

        dst->given |= ngx_gateway_field_bit(f) & src->given;
    }

    return 0;
}


int
ngx_gateway_record_from_json(const ngx_gateway_json_tok_t *toks, int obj,
    ngx_gateway_record_t *rec, unsigned flags, const char **err)
{
    int                            i, k, n;
    char                           text[NGX_GATEWAY_ADDR_TEXT_MAX];
    int64_t                        iv;
    const ngx_gateway_json_tok_t  *key, *val;
    const ngx_gateway_field_t     *f;

    if (toks[obj].type != NGX_GATEWAY_JSON_OBJECT) {
        *err = "the body must be a JSON object";
        return -1;
    }

    k = obj + 1;

    for (i = 0; i < toks[obj].size; i++) {
        key = &toks[k];
        val = &toks[k + 1];
        k = val->next;

        f = ngx_gateway_field_find(key->start, key->len);

        if (f == NULL) {
            if (flags & NGX_GATEWAY_RECORD_LENIENT) {
                continue;
            }

            /* the id is the path's: one sent back as shown is ignored */

            if (key->len == 2 && memcmp(key->start, "id", 2) == 0) {
                if (val->type == NGX_GATEWAY_JSON_STRING) {
                    continue;
                }

                *err = "invalid \"id\": must be a string (it is ignored, "
                       "the id is the path's)";
                return -1;
            }

            *err = ngx_gateway_record_unknown();
            return -1;
        }

        switch (f->json) {

        case NGX_GATEWAY_FIELD_STRING:

            /* escapes are decoded; the field then checks the text */

            if (val->type != NGX_GATEWAY_JSON_STRING) {
                goto invalid;
            }

            n = ngx_gateway_json_string(val, text, sizeof(text));
            if (n < 0) {
                goto invalid;
            }

            if (ngx_gateway_field_apply(rec, f, text, (size_t) n, err) != 0) {
                return -1;
            }

            break;

        case NGX_GATEWAY_FIELD_NUMBER:
            if (val->type != NGX_GATEWAY_JSON_NUMBER
                || ngx_gateway_json_int(val, &iv) != 0
                || iv < 0)
            {
                goto invalid;
            }

            n = snprintf(text, sizeof(text), "%lld", (long long) iv);

            if (ngx_gateway_field_apply(rec, f, text, (size_t) n, err) != 0) {
                return -1;
            }

            break;

        case NGX_GATEWAY_FIELD_BOOL:
            if (val->type != NGX_GATEWAY_JSON_TRUE
                && val->type != NGX_GATEWAY_JSON_FALSE)
            {
                goto invalid;
            }

            if (ngx_gateway_field_apply(rec, f, val->start, val->len, err)
                != 0)
            {
                return -1;
            }

            break;

        default: /* NGX_GATEWAY_FIELD_OBJECT */
            if (val->type != NGX_GATEWAY_JSON_OBJECT) {
                goto invalid;
            }

            if (ngx_gateway_field_apply(rec, f, val->start, val->len, err)
                != 0)
            {
                return -1;
            }

            break;
        }
    }

    if (!(flags & NGX_GATEWAY_RECORD_PARTIAL)
        && ngx_gateway_record_check(rec, err) != 0)
    {
        return -1;
    }

    return 0;

invalid:

    *err = f->error;
    return -1;
}


size_t
ngx_gateway_record_json(const ngx_gateway_record_t *rec, int late,
    char *out)
{
    char                       *p;
    char                        buf[NGX_GATEWAY_FIELD_BUF];
    size_t                      len, n;
    const char                 *v;
    const ngx_gateway_field_t  *f;

    p = out;
    n = 0;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (f->late != late) {
            continue;
        }

        v = f->get(f, rec, buf, &len);

        if (f->optional && len == 0) {
            continue;
        }

        if (out == NULL) {
            n += f->len + 4
                 + ((f->json == NGX_GATEWAY_FIELD_STRING)
                    ? 2 + ngx_gateway_json_escape(NULL, v, len) : len);
            continue;
        }

        *p++ = '"';
        memcpy(p, f->name, f->len);
        p += f->len;
        *p++ = '"';
        *p++ = ':';

        if (f->json == NGX_GATEWAY_FIELD_STRING) {
            *p++ = '"';
            p += ngx_gateway_json_escape(p, v, len);
            *p++ = '"';

        } else {
            memcpy(p, v, len);
            p += len;
        }

        *p++ = ',';
    }

    return (out == NULL) ? n : (size_t) (p - out);
}


/* the fields' own parsers and texts */

static int
ngx_gateway_field_failed(const char *msg, const char **err)
{
    if (err != NULL) {
        *err = msg;
    }

    return -1;
}


/* a text that "valid" says is of the field's form, into its buffer */

static int
ngx_gateway_text_set(const ngx_gateway_field_t *f, int valid,
    const char *val, size_t len, char *buf, const char **data, size_t *dlen,
    const char **err)
{
    if (!valid || len > f->max) {
        return ngx_gateway_field_failed(f->error, err);
    }

    /* val may be the field's own buffer */

    memmove(buf, val, len);
    *data = buf;
    *dlen = len;

    return 0;
}


static int
ngx_gateway_set_addr(const ngx_gateway_field_t *f, ngx_gateway_record_t *rec,
    const char *val, size_t len, const char **err)
{
    ngx_gateway_addr_t  addr;

    if (!ngx_gateway_text_valid(val, len)) {
        return ngx_gateway_field_failed("invalid \"address\": must be "
                                        "valid UTF-8 without control "
                                        "characters", err);
    }

    if (ngx_gateway_parse_addr(val, len, &addr) != 0) {
        return ngx_gateway_field_failed(f->error, err);
    }

    memcpy((char *) rec + f->offset, &addr, sizeof(ngx_gateway_addr_t));
    rec->has_addr = 1;

    return 0;
}


static const char *
ngx_gateway_get_addr(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    const ngx_gateway_addr_t  *addr;

    (void) buf;

    addr = (const ngx_gateway_addr_t *) ((const char *) rec + f->offset);

    *len = addr->text_len;

    return addr->text;
}


static int
ngx_gateway_set_uint(const ngx_gateway_field_t *f, ngx_gateway_record_t *rec,
    const char *val, size_t len, const char **err)
{
    uint64_t  v;

    if (ngx_gateway_parse_uint(val, len, f->max, &v) != 0 || v < f->min) {
        return ngx_gateway_field_failed(f->error, err);
    }

    *(unsigned *) ((char *) rec + f->offset) = (unsigned) v;

    return 0;
}


static const char *
ngx_gateway_get_uint(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    int  n;

    n = snprintf(buf, NGX_GATEWAY_FIELD_BUF, "%u",
                 *(const unsigned *) ((const char *) rec + f->offset));

    *len = (size_t) n;

    return buf;
}


static int
ngx_gateway_set_word(const ngx_gateway_field_t *f, ngx_gateway_record_t *rec,
    const char *val, size_t len, const char **err)
{
    ngx_gateway_word_t  *w;

    w = (ngx_gateway_word_t *) ((char *) rec + f->offset);

    return ngx_gateway_text_set(f, ngx_gateway_valid_zone(val, len), val, len,
                                w->buf, &w->data, &w->len, err);
}


static const char *
ngx_gateway_get_word(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    const ngx_gateway_word_t  *w;

    (void) buf;

    w = (const ngx_gateway_word_t *) ((const char *) rec + f->offset);

    *len = w->len;

    return w->data;
}


/* "" or a path; "" or a list of statuses: see the health probes */

static int
ngx_gateway_set_health_uri(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err)
{
    ngx_gateway_path_t  *w;

    w = (ngx_gateway_path_t *) ((char *) rec + f->offset);

    return ngx_gateway_text_set(f,
                                len == 0
                                || ngx_gateway_health_uri_valid(val, len),
                                val, len, w->buf, &w->data, &w->len, err);
}


static const char *
ngx_gateway_get_health_uri(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    const ngx_gateway_path_t  *w;

    (void) buf;

    w = (const ngx_gateway_path_t *) ((const char *) rec + f->offset);

    *len = w->len;

    return w->data;
}


static int
ngx_gateway_set_health_status(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err)
{
    ngx_gateway_word_t  *w;

    w = (ngx_gateway_word_t *) ((char *) rec + f->offset);

    return ngx_gateway_text_set(f,
                                len == 0
                                || ngx_gateway_health_status_valid(val, len),
                                val, len, w->buf, &w->data, &w->len, err);
}


static int
ngx_gateway_set_state(const ngx_gateway_field_t *f,
    ngx_gateway_record_t *rec, const char *val, size_t len,
    const char **err)
{
    int  state;

    state = ngx_gateway_parse_state(val, len);

    if (state < 0) {
        return ngx_gateway_field_failed(f->error, err);
    }

    *(int *) ((char *) rec + f->offset) = state;

    return 0;
}


static const char *
ngx_gateway_get_state(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    const char  *name;

    (void) buf;

    name = ngx_gateway_state_name(*(const int *) ((const char *) rec
                                                  + f->offset));
    *len = strlen(name);

    return name;
}


static int
ngx_gateway_set_bool(const ngx_gateway_field_t *f, ngx_gateway_record_t *rec,
    const char *val, size_t len, const char **err)
{
    unsigned  v;

    if (len == 4 && memcmp(val, "true", 4) == 0) {
        v = 1;

    } else if (len == 5 && memcmp(val, "false", 5) == 0) {
        v = 0;

    } else {
        return ngx_gateway_field_failed(f->error, err);
    }

    *(unsigned *) ((char *) rec + f->offset) = v;

    return 0;
}


static const char *
ngx_gateway_get_bool(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    unsigned  v;

    (void) buf;

    v = *(const unsigned *) ((const char *) rec + f->offset);

    *len = v ? 4 : 5;

    return v ? "true" : "false";
}


static int
ngx_gateway_set_meta(const ngx_gateway_field_t *f, ngx_gateway_record_t *rec,
    const char *val, size_t val_len, const char **err)
{
    int                     rc, i, n, len;
    char                    str[NGX_GATEWAY_META_MAX];
    const char             *msg;
    ngx_gateway_json_tok_t  toks[NGX_GATEWAY_META_TOKENS];

    msg = f->error;

    if (val_len > NGX_GATEWAY_META_INPUT) {
        msg = "invalid \"metadata\": longer than 65536 bytes";
        goto failed;
    }

    rc = ngx_gateway_json_parse(val, val_len, toks, NGX_GATEWAY_META_TOKENS,
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

    /* val may be rec's own metadata: encoded into str first */

    len = ngx_gateway_json_encode(toks, 0, str, sizeof(str));
    if (len < 0) {
        goto too_long;
    }

    memcpy(rec->meta_buf, str, (size_t) len);
    rec->meta = rec->meta_buf;
    rec->meta_len = (size_t) len;

    return 0;

too_long:

    msg = "invalid \"metadata\": longer than 1024 bytes";

failed:

    return ngx_gateway_field_failed(msg, err);
}


static const char *
ngx_gateway_get_meta(const ngx_gateway_field_t *f,
    const ngx_gateway_record_t *rec, char *buf, size_t *len)
{
    (void) f;
    (void) buf;

    *len = rec->meta_len;

    return rec->meta;
}
