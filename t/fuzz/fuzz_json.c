
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * libFuzzer target: the JSON parser and the canonical re-encoder.  Whatever
 * the parser accepts, every value in it re-encodes to one line of valid
 * JSON without control characters that means the same and is a fixed point
 * of the encoder; the lookups never read outside the input.
 */


#include <stdint.h>

#include "fuzz_check.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                      n, i, m, depth;
    char                    *buf, *out;
    int64_t                  v;
    ngx_gateway_json_tok_t  *toks;

    /* a copy of exactly size bytes, so ASan sees any read past the end */

    buf = malloc(size ? size : 1);
    toks = malloc(FUZZ_TOKS * sizeof(ngx_gateway_json_tok_t));
    fuzz_assert(buf != NULL && toks != NULL);
    memcpy(buf, data, size);

    n = ngx_gateway_json_parse(buf, size, toks, FUZZ_TOKS, FUZZ_DEPTH);

    if (n < 0) {
        fuzz_assert(n == NGX_GATEWAY_JSON_ESYNTAX
                    || n == NGX_GATEWAY_JSON_ENOMEM
                    || n == NGX_GATEWAY_JSON_EDEPTH
                    || n == NGX_GATEWAY_JSON_EEMPTY);
        fuzz_assert(ngx_gateway_json_strerror(n) != NULL);
        goto limits;
    }

    fuzz_assert(n > 0 && n <= FUZZ_TOKS);

    for (i = 0; i < n; i++) {
        fuzz_assert(toks[i].start >= buf
                    && toks[i].start + toks[i].len <= buf + size);
        fuzz_assert(toks[i].next > i && toks[i].next <= n);

        m = ngx_gateway_json_encode(toks, i, NULL, (size_t) -1);
        fuzz_assert(m >= 0);

        out = malloc(m ? m : 1);
        fuzz_assert(out != NULL);

        fuzz_assert(ngx_gateway_json_encode(toks, i, out, m) == m);

        if (m > 0) {
            fuzz_assert(ngx_gateway_json_encode(toks, i, out, m - 1) == -1);
        }

        fuzz_check_canonical(out, m, toks, i);
        free(out);

        if (toks[i].type == NGX_GATEWAY_JSON_NUMBER) {
            (void) ngx_gateway_json_int(&toks[i], &v);
        }

        if (toks[i].type == NGX_GATEWAY_JSON_OBJECT) {
            (void) ngx_gateway_json_object_get(toks, i, "a", 1);
            (void) ngx_gateway_json_object_get(toks, i, "\xc3\xa9", 2);
            (void) ngx_gateway_json_object_get(toks, i, "", 0);
        }
    }

limits:

    /* fewer tokens and tighter depths end cleanly too */

    for (depth = 0; depth < 3; depth++) {
        n = ngx_gateway_json_parse(buf, size, toks, 1 + depth * 3, depth);
        fuzz_assert(n <= 1 + depth * 3);
    }

    free(toks);
    free(buf);

    return 0;
}
