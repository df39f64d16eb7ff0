
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_JSON_H_INCLUDED_
#define _NGX_GATEWAY_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * A small, allocation-free JSON parser over a caller's buffer.  Plain C,
 * independent of nginx, so that it can be unit-tested and fuzzed alone.
 */


typedef enum {
    NGX_GATEWAY_JSON_NULL = 0,
    NGX_GATEWAY_JSON_TRUE,
    NGX_GATEWAY_JSON_FALSE,
    NGX_GATEWAY_JSON_NUMBER,
    NGX_GATEWAY_JSON_STRING,
    NGX_GATEWAY_JSON_ARRAY,
    NGX_GATEWAY_JSON_OBJECT
} ngx_gateway_json_type_e;


#define NGX_GATEWAY_JSON_ESYNTAX   -1
#define NGX_GATEWAY_JSON_ENOMEM    -2   /* more tokens than the caller gave */
#define NGX_GATEWAY_JSON_EDEPTH    -3
#define NGX_GATEWAY_JSON_EEMPTY    -4


typedef struct {
    int          type;    /* ngx_gateway_json_type_e */
    const char  *start;   /* value text; strings: inside the quotes, raw */
    size_t       len;
    int          size;    /* arrays: elements; objects: key/value pairs */
    int          next;    /* index of the token after this subtree */
} ngx_gateway_json_tok_t;


/*
 * Parses exactly one JSON value (surrounding whitespace allowed) into toks in
 * document order: an object is followed by key0, value0, key1, value1, ...;
 * an array by its elements.  Returns the number of tokens or a negative
 * NGX_GATEWAY_JSON_E* code.
 */
int ngx_gateway_json_parse(const char *buf, size_t len,
    ngx_gateway_json_tok_t *toks, int ntoks, int max_depth);
const char *ngx_gateway_json_strerror(int rc);

/* index of the value for key in the object at toks[obj], or -1 */
int ngx_gateway_json_object_get(const ngx_gateway_json_tok_t *toks, int obj,
    const char *key, size_t key_len);

/* unescapes a string token into out (no NUL); length or -1 */
int ngx_gateway_json_string(const ngx_gateway_json_tok_t *tok, char *out,
    size_t size);

/* an integer number token (no fraction, no exponent); 0 or -1 */
int ngx_gateway_json_int(const ngx_gateway_json_tok_t *tok, int64_t *out);

/*
 * Writes the value at toks[i] (from ngx_gateway_json_parse()) into out in
 * one canonical compact form: no whitespace outside strings; in strings
 * '"' and '\\' escaped, every control character (C0, DEL, C1) as \u00XX
 * and everything else as raw UTF-8 (so "\u00e9" and "\/" are written as
 * the characters); numbers, true, false and null as written.  The result is
 * one line of valid JSON, and encoding it again gives the same bytes.
 * Returns the length written (no NUL), or -1 when it needs more than size
 * bytes; with out == NULL only computes the length.
 */
int ngx_gateway_json_encode(const ngx_gateway_json_tok_t *toks, int i,
    char *out, size_t size);

/*
 * Writes in[0..len) escaped for use inside a JSON string (no quotes) and
 * returns the length written; with out == NULL only returns the length.
 * Control characters become \u00XX; bytes >= 0x80 are copied as they are.
 */
size_t ngx_gateway_json_escape(char *out, const char *in, size_t len);


#endif /* _NGX_GATEWAY_JSON_H_INCLUDED_ */
