
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _NGX_GATEWAY_TEXT_H_INCLUDED_
#define _NGX_GATEWAY_TEXT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * Text that comes from outside (Redis, admin bodies, headers): the check
 * that it is safe to store, and its escaped form for a log line.  Plain C,
 * independent of nginx.
 */


/* input bytes shown in a log line; longer text is cut and ends in "..." */
#define NGX_GATEWAY_LOG_TEXT_MAX   64
/* the buffer ngx_gateway_text_log() needs: every byte as \xHH, and "..." */
#define NGX_GATEWAY_LOG_TEXT_SIZE  (4 * NGX_GATEWAY_LOG_TEXT_MAX + 3)


/* 1 when s is valid UTF-8 without control characters (C0, DEL, C1) */
int ngx_gateway_text_valid(const char *s, size_t len);

/*
 * Writes s as it may appear in a log line: printable ASCII as it is, a
 * backslash doubled, every other byte as \xHH; at most
 * NGX_GATEWAY_LOG_TEXT_MAX bytes of s, then "...".  out holds
 * NGX_GATEWAY_LOG_TEXT_SIZE bytes; returns the length written (no NUL).
 */
size_t ngx_gateway_text_log(char *out, const char *s, size_t len);

/* at most this many bytes: the digits of UINT64_MAX */
#define NGX_GATEWAY_UINT_LEN  20

/*
 * Writes v in decimal at p, returns the end: for pages of many numbers,
 * where a format parser costs more than the text.
 */
char *ngx_gateway_text_uint(char *p, uint64_t v);


#endif /* _NGX_GATEWAY_TEXT_H_INCLUDED_ */
