
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _FUZZ_CHECK_H_INCLUDED_
#define _FUZZ_CHECK_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_gateway_json.h"
#include "ngx_gateway_text.h"


#define FUZZ_TOKS   256
#define FUZZ_DEPTH  16


/* a failed property aborts, so that libFuzzer keeps the input */

#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: property failed: %s\n",                  \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


/*
 * text is the canonical form of the value at orig[first]: it is valid
 * UTF-8 without control characters (so one line), parses to the same
 * tokens (types, sizes, structure, the same strings once unescaped), and
 * encodes to itself.
 */

static inline void
fuzz_check_canonical(const char *text, size_t len,
    const ngx_gateway_json_tok_t *orig, int first)
{
    int                      n, m, k;
    char                    *again, *a, *b;
    const ngx_gateway_json_tok_t  *o;
    ngx_gateway_json_tok_t  *toks;

    fuzz_assert(ngx_gateway_text_valid(text, len));

    toks = malloc(FUZZ_TOKS * sizeof(ngx_gateway_json_tok_t));
    fuzz_assert(toks != NULL);

    n = ngx_gateway_json_parse(text, len, toks, FUZZ_TOKS, FUZZ_DEPTH);
    fuzz_assert(n == orig[first].next - first);

    again = malloc(len + 1);
    fuzz_assert(again != NULL);

    m = ngx_gateway_json_encode(toks, 0, again, len);
    fuzz_assert(m == (int) len);
    fuzz_assert(memcmp(again, text, len) == 0);

    for (k = 0; k < n; k++) {
        o = &orig[first + k];

        fuzz_assert(toks[k].type == o->type);
        fuzz_assert(toks[k].size == o->size);
        fuzz_assert(toks[k].next == o->next - first);

        if (o->type != NGX_GATEWAY_JSON_STRING) {
            if (o->type != NGX_GATEWAY_JSON_ARRAY
                && o->type != NGX_GATEWAY_JSON_OBJECT)
            {
                fuzz_assert(toks[k].len == o->len);
                fuzz_assert(memcmp(toks[k].start, o->start, o->len) == 0);
            }

            continue;
        }

        /* a string means the same before and after */

        a = malloc(o->len + 1);
        b = malloc(toks[k].len + 1);
        fuzz_assert(a != NULL && b != NULL);

        m = ngx_gateway_json_string(o, a, o->len);
        fuzz_assert(m >= 0);
        fuzz_assert(ngx_gateway_json_string(&toks[k], b, toks[k].len) == m);
        fuzz_assert(memcmp(a, b, m) == 0);

        free(a);
        free(b);
    }

    free(again);
    free(toks);
}


#endif /* _FUZZ_CHECK_H_INCLUDED_ */
