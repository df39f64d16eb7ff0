
/*
 * Copyright (C) ngx_gateway authors
 */


#include <string.h>

#include "ngx_gateway_json.h"


/*
 * The parser is iterative: the token array itself is the stack.  While a
 * container is open its "next" field holds the index of the enclosing open
 * container (or -1); it is set to its final value when the container closes.
 *
 * Depth: a top-level array or object is at depth 1; a value nested deeper
 * than max_depth containers fails with NGX_GATEWAY_JSON_EDEPTH (so
 * max_depth 0 admits scalars only).
 *
 * Strings must be valid UTF-8 (no overlong forms, no encoded surrogates,
 * nothing above U+10FFFF), as RFC 8259 requires of JSON text.
 */


typedef enum {
    ngx_gateway_json_st_value = 0,      /* a value is required */
    ngx_gateway_json_st_value_or_close, /* after '[' */
    ngx_gateway_json_st_key,            /* after ',' inside an object */
    ngx_gateway_json_st_key_or_close,   /* after '{' */
    ngx_gateway_json_st_colon,          /* after a key */
    ngx_gateway_json_st_comma_or_close, /* after a value inside a container */
    ngx_gateway_json_st_done            /* the top-level value is complete */
} ngx_gateway_json_state_e;


static int ngx_gateway_json_scan_string(const char *buf, size_t len,
    size_t *pos);
static int ngx_gateway_json_scan_number(const char *buf, size_t len,
    size_t *pos);
static int ngx_gateway_json_scan_utf8(const unsigned char *p, size_t n);
static int ngx_gateway_json_hex4(const char *p, uint32_t *out);
static size_t ngx_gateway_json_decode(const char **pp, const char *end,
    unsigned char *u8);
static size_t ngx_gateway_json_utf8(uint32_t cp, unsigned char *u8);
static int ngx_gateway_json_put(char *out, size_t size, size_t *n,
    const char *s, size_t len);
static int ngx_gateway_json_put_between(char *out, size_t size, size_t *n,
    const char *p, const char *end);
static int ngx_gateway_json_put_string(char *out, size_t size, size_t *n,
    const ngx_gateway_json_tok_t *tok);
static int ngx_gateway_json_put_char(char *out, size_t size, size_t *n,
    const unsigned char *u8, size_t m);


int
ngx_gateway_json_parse(const char *buf, size_t len,
    ngx_gateway_json_tok_t *toks, int ntoks, int max_depth)
{
    int                        n, cur, depth, parent;
    char                       c;
    size_t                     pos, start, llen;
    const char                *lit;
    ngx_gateway_json_tok_t    *t;
    ngx_gateway_json_state_e   st;

    n = 0;
    cur = -1;
    depth = 0;
    pos = 0;
    st = ngx_gateway_json_st_value;

    for ( ;; ) {

        while (pos < len
               && (buf[pos] == ' ' || buf[pos] == '\t'
                   || buf[pos] == '\n' || buf[pos] == '\r'))
        {
            pos++;
        }

        if (pos == len) {
            if (st == ngx_gateway_json_st_done) {
                return n;
            }

            if (n == 0) {
                return NGX_GATEWAY_JSON_EEMPTY;
            }

            return NGX_GATEWAY_JSON_ESYNTAX;
        }

        c = buf[pos];

        switch (st) {

        case ngx_gateway_json_st_done:
            return NGX_GATEWAY_JSON_ESYNTAX;

        case ngx_gateway_json_st_colon:
            if (c != ':') {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            pos++;
            st = ngx_gateway_json_st_value;
            continue;

        case ngx_gateway_json_st_comma_or_close:
            if (c == ',') {
                pos++;
                st = (toks[cur].type == NGX_GATEWAY_JSON_OBJECT)
                     ? ngx_gateway_json_st_key : ngx_gateway_json_st_value;
                continue;
            }

            goto close;

        case ngx_gateway_json_st_key_or_close:
            if (c == '}') {
                goto close;
            }

            /* fall through */

        case ngx_gateway_json_st_key:
            if (c != '"') {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            if (n >= ntoks) {
                return NGX_GATEWAY_JSON_ENOMEM;
            }

            start = ++pos;

            if (ngx_gateway_json_scan_string(buf, len, &pos) != 0) {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            t = &toks[n];
            t->type = NGX_GATEWAY_JSON_STRING;
            t->start = buf + start;
            t->len = pos - start;
            t->size = 0;
            t->next = n + 1;
            n++;
            pos++;  /* the closing quote */

            toks[cur].size++;
            st = ngx_gateway_json_st_colon;
            continue;

        case ngx_gateway_json_st_value_or_close:
            if (c == ']') {
                goto close;
            }

            /* fall through */

        case ngx_gateway_json_st_value:
            break;
        }

        /* a value starts at pos */

        if (n >= ntoks) {
            return NGX_GATEWAY_JSON_ENOMEM;
        }

        if (cur >= 0 && toks[cur].type == NGX_GATEWAY_JSON_ARRAY) {
            toks[cur].size++;
        }

        t = &toks[n];
        t->size = 0;
        t->next = n + 1;
        start = pos;

        switch (c) {

        case '{':
        case '[':
            if (depth >= max_depth) {
                return NGX_GATEWAY_JSON_EDEPTH;
            }

            depth++;
            t->type = (c == '{') ? NGX_GATEWAY_JSON_OBJECT
                                 : NGX_GATEWAY_JSON_ARRAY;
            t->start = buf + pos;
            t->len = 0;
            t->next = cur;
            cur = n++;
            pos++;
            st = (c == '{') ? ngx_gateway_json_st_key_or_close
                            : ngx_gateway_json_st_value_or_close;
            continue;

        case '"':
            start = ++pos;

            if (ngx_gateway_json_scan_string(buf, len, &pos) != 0) {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            t->type = NGX_GATEWAY_JSON_STRING;
            t->start = buf + start;
            t->len = pos - start;
            pos++;
            break;

        case 't':
        case 'f':
        case 'n':
            if (c == 't') {
                t->type = NGX_GATEWAY_JSON_TRUE;
                lit = "true";

            } else if (c == 'f') {
                t->type = NGX_GATEWAY_JSON_FALSE;
                lit = "false";

            } else {
                t->type = NGX_GATEWAY_JSON_NULL;
                lit = "null";
            }

            llen = strlen(lit);

            if (len - pos < llen || memcmp(buf + pos, lit, llen) != 0) {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            t->start = buf + pos;
            t->len = llen;
            pos += llen;
            break;

        default:
            if (c != '-' && (c < '0' || c > '9')) {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            if (ngx_gateway_json_scan_number(buf, len, &pos) != 0) {
                return NGX_GATEWAY_JSON_ESYNTAX;
            }

            t->type = NGX_GATEWAY_JSON_NUMBER;
            t->start = buf + start;
            t->len = pos - start;
            break;
        }

        n++;
        st = (cur < 0) ? ngx_gateway_json_st_done
                       : ngx_gateway_json_st_comma_or_close;
        continue;

    close:

        /* c is the character at pos; cur is the innermost open container */

        if (c != ((toks[cur].type == NGX_GATEWAY_JSON_OBJECT) ? '}' : ']')) {
            return NGX_GATEWAY_JSON_ESYNTAX;
        }

        pos++;
        t = &toks[cur];
        parent = t->next;
        t->next = n;
        t->len = (size_t) (buf + pos - t->start);
        cur = parent;
        depth--;

        st = (cur < 0) ? ngx_gateway_json_st_done
                       : ngx_gateway_json_st_comma_or_close;
    }
}


const char *
ngx_gateway_json_strerror(int rc)
{
    switch (rc) {

    case NGX_GATEWAY_JSON_ESYNTAX:
        return "invalid JSON";

    case NGX_GATEWAY_JSON_ENOMEM:
        return "JSON document has too many values";

    case NGX_GATEWAY_JSON_EDEPTH:
        return "JSON document is nested too deeply";

    case NGX_GATEWAY_JSON_EEMPTY:
        return "empty JSON document";

    default:
        return (rc >= 0) ? "no error" : "unknown JSON error";
    }
}


int
ngx_gateway_json_object_get(const ngx_gateway_json_tok_t *toks, int obj,
    const char *key, size_t key_len)
{
    int                            i, k, v;
    size_t                         n, m;
    const char                    *p, *end;
    unsigned char                  u8[4];
    const ngx_gateway_json_tok_t  *t;

    if (obj < 0 || toks[obj].type != NGX_GATEWAY_JSON_OBJECT) {
        return -1;
    }

    i = obj + 1;

    for (k = 0; k < toks[obj].size; k++) {
        t = &toks[i];
        v = i + 1;

        if (memchr(t->start, '\\', t->len) == NULL) {
            if (t->len == key_len && memcmp(t->start, key, key_len) == 0) {
                return v;
            }

        } else {
            p = t->start;
            end = t->start + t->len;
            n = 0;

            while (p < end) {
                m = ngx_gateway_json_decode(&p, end, u8);

                if (m == 0 || key_len - n < m || memcmp(key + n, u8, m) != 0)
                {
                    n = (size_t) -1;
                    break;
                }

                n += m;
            }

            if (n == key_len) {
                return v;
            }
        }

        i = toks[v].next;
    }

    return -1;
}


int
ngx_gateway_json_string(const ngx_gateway_json_tok_t *tok, char *out,
    size_t size)
{
    size_t          n, m;
    const char     *p, *end;
    unsigned char   u8[4];

    if (tok->type != NGX_GATEWAY_JSON_STRING || tok->len > 0x7fffffff) {
        return -1;
    }

    p = tok->start;
    end = tok->start + tok->len;
    n = 0;

    while (p < end) {
        m = ngx_gateway_json_decode(&p, end, u8);

        if (m == 0 || size - n < m) {
            return -1;
        }

        memcpy(out + n, u8, m);
        n += m;
    }

    return (int) n;
}


int
ngx_gateway_json_int(const ngx_gateway_json_tok_t *tok, int64_t *out)
{
    int          neg;
    size_t       i;
    uint64_t     v, d, lim;
    const char  *p;

    if (tok->type != NGX_GATEWAY_JSON_NUMBER || tok->len == 0) {
        return -1;
    }

    p = tok->start;
    i = 0;
    neg = 0;

    if (p[0] == '-') {
        neg = 1;
        i = 1;
    }

    if (i == tok->len) {
        return -1;
    }

    lim = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
    v = 0;

    for ( /* void */ ; i < tok->len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        d = (uint64_t) (p[i] - '0');

        if (v > (lim - d) / 10) {
            return -1;
        }

        v = v * 10 + d;
    }

    if (neg) {
        *out = (v == (uint64_t) INT64_MAX + 1) ? INT64_MIN : -(int64_t) v;

    } else {
        *out = (int64_t) v;
    }

    return 0;
}


size_t
ngx_gateway_json_escape(char *out, const char *in, size_t len)
{
    size_t          i, n;
    unsigned char   c;
    static const char  hex[] = "0123456789abcdef";

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) in[i];

        if (c == '"' || c == '\\') {
            if (out) {
                out[n] = '\\';
                out[n + 1] = (char) c;
            }

            n += 2;

        } else if (c < 0x20) {
            if (out) {
                out[n] = '\\';
                out[n + 1] = 'u';
                out[n + 2] = '0';
                out[n + 3] = '0';
                out[n + 4] = hex[c >> 4];
                out[n + 5] = hex[c & 0xf];
            }

            n += 6;

        } else {
            if (out) {
                out[n] = (char) c;
            }

            n++;
        }
    }

    return n;
}


/*
 * Only strings hold whitespace or escapes, so the canonical form is the
 * text between the strings without its whitespace, and each string
 * re-escaped.
 */

int
ngx_gateway_json_encode(const ngx_gateway_json_tok_t *toks, int i,
    char *out, size_t size)
{
    int                            j;
    size_t                         n;
    const char                    *p, *end;
    const ngx_gateway_json_tok_t  *t;

    t = &toks[i];
    p = t->start;
    end = t->start + t->len;

    if (t->type == NGX_GATEWAY_JSON_STRING) {
        p--;
        end++;
    }

    if (size > 0x7fffffff) {
        size = 0x7fffffff;
    }

    n = 0;

    for (j = i; j < t->next; j++) {
        if (toks[j].type != NGX_GATEWAY_JSON_STRING) {
            continue;
        }

        if (ngx_gateway_json_put_between(out, size, &n, p, toks[j].start - 1)
            != 0
            || ngx_gateway_json_put_string(out, size, &n, &toks[j]) != 0)
        {
            return -1;
        }

        p = toks[j].start + toks[j].len + 1;
    }

    if (ngx_gateway_json_put_between(out, size, &n, p, end) != 0) {
        return -1;
    }

    return (int) n;
}


static int
ngx_gateway_json_put(char *out, size_t size, size_t *n, const char *s,
    size_t len)
{
    if (size - *n < len) {
        return -1;
    }

    if (out) {
        memcpy(out + *n, s, len);
    }

    *n += len;

    return 0;
}


/* structural characters, numbers and literals: all but whitespace */

static int
ngx_gateway_json_put_between(char *out, size_t size, size_t *n,
    const char *p, const char *end)
{
    for ( /* void */ ; p < end; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            continue;
        }

        if (ngx_gateway_json_put(out, size, n, p, 1) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
ngx_gateway_json_put_string(char *out, size_t size, size_t *n,
    const ngx_gateway_json_tok_t *tok)
{
    size_t          m;
    const char     *p, *end;
    unsigned char   c, u8[4];

    p = tok->start;
    end = tok->start + tok->len;

    if (ngx_gateway_json_put(out, size, n, "\"", 1) != 0) {
        return -1;
    }

    while (p < end) {
        c = (unsigned char) *p;

        if (c == '\\') {
            m = ngx_gateway_json_decode(&p, end, u8);

            if (m == 0) {
                return -1;
            }

        } else {
            /* the parser checked the UTF-8 */
            m = (c < 0x80) ? 1 : (c < 0xe0) ? 2 : (c < 0xf0) ? 3 : 4;

            if ((size_t) (end - p) < m) {
                return -1;
            }

            memcpy(u8, p, m);
            p += m;
        }

        if (ngx_gateway_json_put_char(out, size, n, u8, m) != 0) {
            return -1;
        }
    }

    return ngx_gateway_json_put(out, size, n, "\"", 1);
}


static int
ngx_gateway_json_put_char(char *out, size_t size, size_t *n,
    const unsigned char *u8, size_t m)
{
    unsigned char  c;
    char           esc[6];

    static const char  hex[] = "0123456789abcdef";

    if (m == 1 && (u8[0] < 0x20 || u8[0] == 0x7f)) {
        c = u8[0];

    } else if (m == 2 && u8[0] == 0xc2 && u8[1] < 0xa0) {
        c = u8[1];    /* C1: U+0080..U+009F */

    } else if (m == 1 && (u8[0] == '"' || u8[0] == '\\')) {
        esc[0] = '\\';
        esc[1] = (char) u8[0];
        return ngx_gateway_json_put(out, size, n, esc, 2);

    } else {
        return ngx_gateway_json_put(out, size, n, (const char *) u8, m);
    }

    esc[0] = '\\';
    esc[1] = 'u';
    esc[2] = '0';
    esc[3] = '0';
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xf];

    return ngx_gateway_json_put(out, size, n, esc, 6);
}


/*
 * Scans a string body starting at *pos (just after the opening quote);
 * on success *pos is at the closing quote.
 */

static int
ngx_gateway_json_scan_string(const char *buf, size_t len, size_t *pos)
{
    int                   n;
    size_t                i;
    uint32_t              cp, lo;
    unsigned char         c;
    const unsigned char  *p;

    p = (const unsigned char *) buf;
    i = *pos;

    while (i < len) {
        c = p[i];

        if (c == '"') {
            *pos = i;
            return 0;
        }

        if (c < 0x20) {
            return -1;
        }

        if (c >= 0x80) {
            n = ngx_gateway_json_scan_utf8(p + i, len - i);

            if (n <= 0) {
                return -1;
            }

            i += (size_t) n;
            continue;
        }

        if (c != '\\') {
            i++;
            continue;
        }

        if (++i == len) {
            return -1;
        }

        switch (p[i]) {

        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            i++;
            continue;

        case 'u':
            break;

        default:
            return -1;
        }

        /* p[i] == 'u' */

        if (len - i < 5 || ngx_gateway_json_hex4(buf + i + 1, &cp) != 0) {
            return -1;
        }

        i += 5;

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            return -1;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (len - i < 6
                || p[i] != '\\' || p[i + 1] != 'u'
                || ngx_gateway_json_hex4(buf + i + 2, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                return -1;
            }

            i += 6;
        }
    }

    return -1;
}


static int
ngx_gateway_json_scan_number(const char *buf, size_t len, size_t *pos)
{
    size_t  i, s;

    i = *pos;

    if (buf[i] == '-') {
        i++;
    }

    if (i == len) {
        return -1;
    }

    if (buf[i] == '0') {
        i++;

    } else if (buf[i] >= '1' && buf[i] <= '9') {
        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            i++;
        }

    } else {
        return -1;
    }

    if (i < len && buf[i] == '.') {
        s = ++i;

        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            i++;
        }

        if (i == s) {
            return -1;
        }
    }

    if (i < len && (buf[i] == 'e' || buf[i] == 'E')) {
        i++;

        if (i < len && (buf[i] == '+' || buf[i] == '-')) {
            i++;
        }

        s = i;

        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            i++;
        }

        if (i == s) {
            return -1;
        }
    }

    *pos = i;

    return 0;
}


/* length of the valid UTF-8 sequence at p (p[0] >= 0x80), or -1 */

static int
ngx_gateway_json_scan_utf8(const unsigned char *p, size_t n)
{
    int            len, i;
    uint32_t       cp, min;
    unsigned char  c;

    c = p[0];

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
        min = 0x80;

    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
        min = 0x800;

    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;

    } else {
        return -1;
    }

    if (n < (size_t) len) {
        return -1;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return -1;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }

    return len;
}


static int
ngx_gateway_json_hex4(const char *p, uint32_t *out)
{
    int       i;
    char      c;
    uint32_t  v;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = (v << 4) | (uint32_t) (c - '0');

        } else if (c >= 'a' && c <= 'f') {
            v = (v << 4) | (uint32_t) (c - 'a' + 10);

        } else if (c >= 'A' && c <= 'F') {
            v = (v << 4) | (uint32_t) (c - 'A' + 10);

        } else {
            return -1;
        }
    }

    *out = v;

    return 0;
}


/*
 * Decodes one character of a string token's raw text at *pp into UTF-8
 * bytes in u8 and advances *pp; returns the number of bytes, or 0 when the
 * text is malformed (it is not, for tokens from ngx_gateway_json_parse()).
 */

static size_t
ngx_gateway_json_decode(const char **pp, const char *end, unsigned char *u8)
{
    const char  *p;
    uint32_t     cp, lo;

    p = *pp;

    if (*p != '\\') {
        u8[0] = (unsigned char) *p;
        *pp = p + 1;
        return 1;
    }

    if (end - p < 2) {
        return 0;
    }

    switch (p[1]) {

    case '"':
    case '\\':
    case '/':
        u8[0] = (unsigned char) p[1];
        break;

    case 'b':
        u8[0] = '\b';
        break;

    case 'f':
        u8[0] = '\f';
        break;

    case 'n':
        u8[0] = '\n';
        break;

    case 'r':
        u8[0] = '\r';
        break;

    case 't':
        u8[0] = '\t';
        break;

    case 'u':
        if (end - p < 6 || ngx_gateway_json_hex4(p + 2, &cp) != 0) {
            return 0;
        }

        p += 6;

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            return 0;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u'
                || ngx_gateway_json_hex4(p + 2, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                return 0;
            }

            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }

        *pp = p;
        return ngx_gateway_json_utf8(cp, u8);

    default:
        return 0;
    }

    *pp = p + 2;

    return 1;
}


static size_t
ngx_gateway_json_utf8(uint32_t cp, unsigned char *u8)
{
    if (cp < 0x80) {
        u8[0] = (unsigned char) cp;
        return 1;
    }

    if (cp < 0x800) {
        u8[0] = (unsigned char) (0xc0 | (cp >> 6));
        u8[1] = (unsigned char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        u8[0] = (unsigned char) (0xe0 | (cp >> 12));
        u8[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u8[2] = (unsigned char) (0x80 | (cp & 0x3f));
        return 3;
    }

    u8[0] = (unsigned char) (0xf0 | (cp >> 18));
    u8[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
    u8[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
    u8[3] = (unsigned char) (0x80 | (cp & 0x3f));
    return 4;
}
