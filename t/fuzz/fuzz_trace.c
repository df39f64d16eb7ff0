
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * The W3C Trace Context parser and the OTLP encoder on any input.
 *
 * traceparent: a value that parses is formatted back to the same text
 * (version 00) or to its first 55 characters under version 00 (later
 * versions); tracestate: a valid value is at most 512 bytes of printable
 * ASCII.  The input is then cut into strings for a span (name, tracestate,
 * attribute keys and values), written in one pass as the module does
 * (begin, attributes with their keys encoded first, end): the protobuf
 * encoding, its span length patched in, walks as well-formed OTLP with an
 * independent reader, and the JSON one parses; a buffer one byte short is
 * refused.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "otlp_check.h"
#include "ngx_gateway_otlp.h"
#include "ngx_gateway_traceparent.h"


#define FUZZ_ATTRS  8


typedef struct {
    ngx_gateway_otlp_span_t   sp;
    ngx_gateway_otlp_key_t    keys[FUZZ_ATTRS];
    int                       types[FUZZ_ATTRS];
    const char               *str[FUZZ_ATTRS];
    size_t                    len[FUZZ_ATTRS];
    int64_t                   num[FUZZ_ATTRS];
    size_t                    nattrs;
    int                       status;
} fuzz_span_t;


static unsigned char  fuzz_ids[32];


static void
fuzz_attrs(ngx_gateway_otlp_writer_t *w, const fuzz_span_t *f)
{
    size_t  i;

    for (i = 0; i < f->nattrs; i++) {
        switch (f->types[i]) {

        case 1:
            ngx_gateway_otlp_int(w, &f->keys[i], f->num[i]);
            break;

        case 2:
            ngx_gateway_otlp_bool(w, &f->keys[i], (int) (f->num[i] & 1));
            break;

        default:
            ngx_gateway_otlp_str(w, &f->keys[i], f->str[i], f->len[i]);
        }
    }
}


static size_t
fuzz_encode(unsigned char *out, size_t size, int json, const fuzz_span_t *f)
{
    ngx_gateway_otlp_writer_t  w;

    ngx_gateway_otlp_span_begin(&w, out, size, json, &f->sp);
    fuzz_attrs(&w, f);

    return ngx_gateway_otlp_span_end(&w, f->status);
}


static void
fuzz_traceparent(const char *s, size_t len)
{
    char                       out[NGX_GATEWAY_TRACEPARENT_LEN];
    size_t                     i;
    ngx_gateway_traceparent_t  tp;

    if (ngx_gateway_traceparent_parse(&tp, s, len) != 0) {
        return;
    }

    fuzz_assert(len >= NGX_GATEWAY_TRACEPARENT_LEN);
    fuzz_assert(len == NGX_GATEWAY_TRACEPARENT_LEN || s[55] == '-');
    fuzz_assert(memcmp(s, "ff", 2) != 0);

    ngx_gateway_traceparent_format(out, tp.trace_id, tp.span_id, tp.flags);
    fuzz_assert(memcmp(out + 2, s + 2, NGX_GATEWAY_TRACEPARENT_LEN - 2)
                == 0);

    if (s[0] == '0' && s[1] == '0') {
        fuzz_assert(len == NGX_GATEWAY_TRACEPARENT_LEN);
    }

    for (i = 0; i < 16 && tp.trace_id[i] == 0; i++) { /* void */ }
    fuzz_assert(i < 16);

    for (i = 0; i < 8 && tp.span_id[i] == 0; i++) { /* void */ }
    fuzz_assert(i < 8);
}


static void
fuzz_tracestate(const char *s, size_t len)
{
    size_t  i;

    if (!ngx_gateway_tracestate_valid(s, len)) {
        return;
    }

    fuzz_assert(len <= NGX_GATEWAY_TRACESTATE_MAX);

    for (i = 0; i < len; i++) {
        fuzz_assert(s[i] == '\t' || (s[i] >= 0x20 && s[i] < 0x7f));
    }
}


static void
fuzz_otlp(const char *s, size_t len)
{
    int                          n;
    char                        *pieces[2 + 2 * FUZZ_ATTRS];
    size_t                       lens[2 + 2 * FUZZ_ATTRS];
    size_t                       i, np, out_len, k, head, rlen;
    uint32_t                     path[8];
    const char                  *p, *end, *nl;
    unsigned char               *out, *small, *req, *rattrs;
    fuzz_span_t                  f;
    ngx_gateway_json_tok_t      *toks;
    ngx_gateway_otlp_writer_t    w;
    ngx_gateway_otlp_resource_t  res;

    /* pieces split at newlines: name, tracestate, then key, value, ... */

    p = s;
    end = s + len;

    for (np = 0; np < 2 + 2 * FUZZ_ATTRS && p <= end; np++) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL) {
            nl = end;
        }

        pieces[np] = (char *) p;
        lens[np] = nl - p;
        p = nl + 1;
    }

    memset(&f, 0, sizeof(f));

    for (i = 0; i < 32; i++) {
        fuzz_ids[i] = len ? (unsigned char) s[i % len] : (unsigned char) i;
    }

    f.sp.trace_id = fuzz_ids;
    f.sp.span_id = fuzz_ids + 16;
    f.sp.parent_id = (len & 1) ? fuzz_ids + 24 : NULL;
    f.sp.kind = (int) (len % 4);
    f.sp.start = (uint64_t) len * 0x9e3779b97f4a7c15ULL;
    f.sp.end = ~f.sp.start;
    f.sp.flags = (uint32_t) len;
    f.status = (int) (len % 3);

    f.sp.name = np > 0 ? pieces[0] : "";
    f.sp.name_len = np > 0 ? lens[0] : 0;

    /* only valid UTF-8 reaches the encoder (the module checks first) */

    if (!ngx_gateway_text_valid(f.sp.name, f.sp.name_len)) {
        f.sp.name_len = 0;
    }

    if (np > 1 && ngx_gateway_tracestate_valid(pieces[1], lens[1])) {
        f.sp.trace_state = pieces[1];
        f.sp.trace_state_len = lens[1];
    }

    for (i = 2; i + 1 < np; i += 2) {
        if (!ngx_gateway_text_valid(pieces[i], lens[i])) {
            continue;
        }

        /* a key is 1 to NGX_GATEWAY_OTLP_KEY_MAX bytes, or refused */

        if (ngx_gateway_otlp_key(&f.keys[f.nattrs], pieces[i], lens[i])
            != 0)
        {
            fuzz_assert(lens[i] == 0 || lens[i] > NGX_GATEWAY_OTLP_KEY_MAX);
            continue;
        }

        fuzz_assert(lens[i] > 0 && lens[i] <= NGX_GATEWAY_OTLP_KEY_MAX);

        f.types[f.nattrs] = (int) (lens[i + 1] % 3);
        f.str[f.nattrs] = pieces[i + 1];
        f.len[f.nattrs] = ngx_gateway_text_valid(pieces[i + 1], lens[i + 1])
                          ? lens[i + 1] : 0;
        f.num[f.nattrs] = (int64_t) (lens[i + 1] * 0x5851f42d4c957f2dULL);
        f.nattrs++;
    }

    k = 1024 + 16 * len;
    out = malloc(k);
    toks = malloc(FUZZ_TOKS * sizeof(ngx_gateway_json_tok_t));
    fuzz_assert(out != NULL && toks != NULL);

    /* a span over NGX_GATEWAY_OTLP_SPAN_MAX bytes is refused */

    out_len = fuzz_encode(out, k, 0, &f);
    fuzz_assert(out_len > 0 || len > NGX_GATEWAY_OTLP_SPAN_MAX / 4);

    if (out_len) {
        fuzz_assert(out_len <= 3 + NGX_GATEWAY_OTLP_SPAN_MAX);
        fuzz_assert(otlp_check_message(out, out + out_len, 0, path,
                                       otlp_check_span_nested) == 1);

        small = malloc(out_len);
        fuzz_assert(small != NULL);
        fuzz_assert(fuzz_encode(small, out_len - 1, 0, &f) == 0);
        free(small);

        /* a whole request: the attributes as the resource's too */

        rattrs = malloc(k);
        fuzz_assert(rattrs != NULL);
        ngx_gateway_otlp_attrs_begin(&w, rattrs, k, 0);
        fuzz_attrs(&w, &f);
        rlen = ngx_gateway_otlp_attrs_end(&w);
        fuzz_assert(rlen > 0 || f.nattrs == 0);

        res.attrs = rattrs;
        res.attrs_len = rlen;
        res.scope = f.sp.name;
        res.scope_len = f.sp.name_len;
        res.version = "0";
        res.version_len = 1;

        req = malloc(2 * k + out_len);
        fuzz_assert(req != NULL);
        head = ngx_gateway_otlp_pb_head(req, 2 * k, &res, out_len);
        fuzz_assert(head > 0);
        memcpy(req + head, out, out_len);
        fuzz_assert(otlp_check_message(req, req + head + out_len, 0, path,
                                       otlp_check_nested) == 1);
        free(req);
        free(rattrs);
    }

    out_len = fuzz_encode(out, k, 1, &f);
    fuzz_assert(out_len > 0);

    n = ngx_gateway_json_parse((char *) out, out_len, toks, FUZZ_TOKS, 8);
    fuzz_assert(n > 0 || n == NGX_GATEWAY_JSON_ENOMEM);

    if (n > 0) {
        fuzz_check_canonical((char *) out, out_len, toks, 0);
    }

    small = malloc(out_len);
    fuzz_assert(small != NULL);
    fuzz_assert(fuzz_encode(small, out_len - 1, 1, &f) == 0);
    free(small);

    free(toks);
    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *buf;

    buf = malloc(size ? size : 1);
    fuzz_assert(buf != NULL);
    memcpy(buf, data, size);

    fuzz_traceparent(buf, size);
    fuzz_tracestate(buf, size);
    fuzz_otlp(buf, size);

    free(buf);

    return 0;
}
