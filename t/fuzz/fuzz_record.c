
/*
 * Copyright (C) ngx_gateway authors
 */


/*
 * libFuzzer target: the record parser.  The input is a list of
 * "field NUL value NUL ..." pairs applied to one record as a Redis hash
 * would be; each value is also tried as an address and as an allowlist
 * rule.  Whatever is accepted is safe to store: the address text, zone
 * and metadata are valid UTF-8 without control characters, the address
 * text parses back to itself, and the metadata is one line of canonical
 * JSON (an object) that re-encodes to itself.
 */


#include <stdint.h>

#include "fuzz_check.h"
#include "ngx_gateway_record.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_check_addr(const ngx_gateway_addr_t *addr)
{
    ngx_gateway_addr_t  again;

    fuzz_assert(addr->text_len > 0 && addr->text_len <= sizeof(addr->text));
    fuzz_assert(ngx_gateway_text_valid(addr->text, addr->text_len));
    fuzz_assert(addr->socklen > 0 && addr->socklen <= sizeof(addr->u));

    fuzz_assert(ngx_gateway_parse_addr(addr->text, addr->text_len, &again)
                == 0);
    fuzz_assert(again.text_len == addr->text_len);
    fuzz_assert(memcmp(again.text, addr->text, addr->text_len) == 0);
    fuzz_assert(again.socklen == addr->socklen);
    fuzz_assert(memcmp(&again.u, &addr->u, addr->socklen) == 0);
}


static void
fuzz_check_record(const ngx_gateway_record_t *rec)
{
    int                      n;
    const char              *err;
    ngx_gateway_json_tok_t  *toks;

    fuzz_assert(rec->weight >= 1 && rec->weight <= NGX_GATEWAY_WEIGHT_MAX);
    fuzz_assert(rec->ttl <= NGX_GATEWAY_TTL_MAX);
    fuzz_assert(rec->state == NGX_GATEWAY_STATE_UP
                || rec->state == NGX_GATEWAY_STATE_DRAIN
                || rec->state == NGX_GATEWAY_STATE_DOWN);
    fuzz_assert(ngx_gateway_valid_zone(rec->zone.data, rec->zone.len));

    fuzz_assert(rec->meta_len >= 2 && rec->meta_len <= NGX_GATEWAY_META_MAX);

    toks = malloc(FUZZ_TOKS * sizeof(ngx_gateway_json_tok_t));
    fuzz_assert(toks != NULL);

    n = ngx_gateway_json_parse(rec->meta, rec->meta_len, toks, FUZZ_TOKS,
                               FUZZ_DEPTH);
    fuzz_assert(n > 0 && toks[0].type == NGX_GATEWAY_JSON_OBJECT);
    fuzz_check_canonical(rec->meta, rec->meta_len, toks, 0);
    free(toks);

    err = NULL;

    if (rec->has_addr) {
        fuzz_check_addr(&rec->addr);
        fuzz_assert(ngx_gateway_record_check(rec, &err) == 0);

    } else {
        fuzz_assert(ngx_gateway_record_check(rec, &err) == -1);
        fuzz_assert(err != NULL);
    }
}


static void
fuzz_check_json_back(const ngx_gateway_record_t *rec)
{
    int                      n;
    char                    *json;
    size_t                   len;
    const char              *err;
    ngx_gateway_record_t     back;
    ngx_gateway_json_tok_t  *toks;

    len = 2 + ngx_gateway_record_json(rec, 0, NULL)
          + ngx_gateway_record_json(rec, 1, NULL);

    json = malloc(len);
    /* the metadata's tokens, the object and two for each other field */
    toks = malloc((FUZZ_TOKS + 32) * sizeof(ngx_gateway_json_tok_t));
    fuzz_assert(json != NULL && toks != NULL);

    json[0] = '{';
    n = 1 + (int) ngx_gateway_record_json(rec, 0, json + 1);
    n += (int) ngx_gateway_record_json(rec, 1, json + n);
    fuzz_assert((size_t) n + 1 == len && json[n - 1] == ',');
    json[n - 1] = '}';

    n = ngx_gateway_json_parse(json, (size_t) n, toks, FUZZ_TOKS + 32, 16);
    fuzz_assert(n > 0);

    ngx_gateway_record_init(&back);
    err = NULL;
    fuzz_assert(ngx_gateway_record_from_json(toks, 0, &back, 0, &err) == 0);
    fuzz_assert(ngx_gateway_record_same(rec, &back));

    free(toks);
    free(json);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  *buf, *p, *end, *field, *val, *nul;
    size_t                 field_len, val_len;
    const char            *err;
    ngx_gateway_addr_t     addr;
    ngx_gateway_cidr_t     cidr;
    ngx_gateway_record_t   rec, before;

    buf = malloc(size ? size : 1);
    fuzz_assert(buf != NULL);
    memcpy(buf, data, size);

    ngx_gateway_record_init(&rec);
    fuzz_check_record(&rec);

    p = buf;
    end = buf + size;

    while (p < end) {
        field = p;
        nul = memchr(p, '\0', end - p);
        field_len = (nul ? nul : end) - p;
        p = nul ? nul + 1 : end;

        val = p;
        nul = memchr(p, '\0', end - p);
        val_len = (nul ? nul : end) - p;
        p = nul ? nul + 1 : end;

        memcpy(&before, &rec, sizeof(rec));
        err = NULL;

        if (ngx_gateway_record_set(&rec, field, field_len, val, val_len,
                                   &err)
            == 0)
        {
            fuzz_assert(err == NULL);

        } else {
            /* a refused value names its field and changes nothing */
            fuzz_assert(err != NULL && strncmp(err, "invalid \"", 9) == 0);
            fuzz_assert(memcmp(&before, &rec, sizeof(rec)) == 0);
        }

        fuzz_check_record(&rec);

        (void) ngx_gateway_valid_name(val, val_len);
        (void) ngx_gateway_record_field_error(field, field_len);

        if (ngx_gateway_parse_addr(val, val_len, &addr) == 0) {
            fuzz_check_addr(&addr);
        }

        if (ngx_gateway_parse_cidr(val, val_len, &cidr) == 0) {
            fuzz_assert(cidr.family == AF_INET || cidr.family == AF_INET6
                        || cidr.family == AF_UNIX);

            if (rec.has_addr) {
                (void) ngx_gateway_addr_allowed(&rec.addr, &cidr, 1);
            }
        }
    }

    /* what the table writes out as JSON reads back as the same record */

    if (rec.has_addr) {
        fuzz_check_json_back(&rec);
    }

    free(buf);

    return 0;
}
