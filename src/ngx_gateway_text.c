
/*
 * Copyright (C) ngx_gateway authors
 */


#include <stdint.h>
#include <string.h>

#include "ngx_gateway_text.h"


int
ngx_gateway_text_valid(const char *s, size_t len)
{
    size_t          i, n, k;
    uint64_t        w, x;
    uint32_t        a, b, y, z;
    unsigned int    cp, min;
    unsigned char   c;

    for (i = 0; i < len; /* void */) {

        /* most text is printable ASCII: eight bytes at a time */

        if (len - i >= 8) {
            memcpy(&w, s + i, 8);
            x = w ^ 0x7f7f7f7f7f7f7f7fULL;

            if (((w | ((w - 0x2020202020202020ULL) & ~w)
                  | ((x - 0x0101010101010101ULL) & ~x))
                 & 0x8080808080808080ULL)
                == 0)
            {
                i += 8;

                /*
                 * The last bytes as the word that ends the text: it
                 * overlaps the ASCII just checked.
                 */

                if (len - i < 8 && i != len) {
                    i = len - 8;
                }

                continue;
            }
        }

        /* four to seven bytes left: two words of four, overlapping */

        if (len - i >= 4 && len - i < 8) {
            memcpy(&a, s + i, 4);
            memcpy(&b, s + len - 4, 4);
            y = a ^ 0x7f7f7f7fU;
            z = b ^ 0x7f7f7f7fU;

            if (((a | ((a - 0x20202020U) & ~a) | ((y - 0x01010101U) & ~y)
                  | b | ((b - 0x20202020U) & ~b) | ((z - 0x01010101U) & ~z))
                 & 0x80808080U)
                == 0)
            {
                return 1;
            }
        }

        c = (unsigned char) s[i];

        if ((unsigned char) (c - 0x20) < 0x7f - 0x20) {
            i++;
            continue;
        }

        if (c < 0x80) {
            return 0;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1; cp = c & 0x1f; min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2; cp = c & 0x0f; min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3; cp = c & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if (len - i <= n) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            c = (unsigned char) s[i + k];

            if ((c & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (c & 0x3f);
        }

        /* overlong forms, surrogates, beyond U+10FFFF, C1 controls */

        if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff
            || (cp >= 0x80 && cp <= 0x9f))
        {
            return 0;
        }

        i += n + 1;
    }

    return 1;
}


size_t
ngx_gateway_text_log(char *out, const char *s, size_t len)
{
    char           *p;
    size_t          i, n;
    unsigned char   c;

    static const char  hex[] = "0123456789abcdef";

    p = out;
    n = len > NGX_GATEWAY_LOG_TEXT_MAX ? NGX_GATEWAY_LOG_TEXT_MAX : len;

    for (i = 0; i < n; i++) {
        c = (unsigned char) s[i];

        if (c == '\\') {
            *p++ = '\\';
            *p++ = '\\';

        } else if (c >= 0x20 && c < 0x7f) {
            *p++ = (char) c;

        } else {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }

    if (n < len) {
        *p++ = '.';
        *p++ = '.';
        *p++ = '.';
    }

    return (size_t) (p - out);
}


char *
ngx_gateway_text_uint(char *p, uint64_t v)
{
    char    buf[NGX_GATEWAY_UINT_LEN], *d;
    size_t  n;

    d = buf + NGX_GATEWAY_UINT_LEN;

    do {
        *--d = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    n = (size_t) (buf + NGX_GATEWAY_UINT_LEN - d);

    while (n--) {
        *p++ = *d++;
    }

    return p;
}
