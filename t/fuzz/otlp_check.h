
/*
 * Copyright (C) ngx_gateway authors
 */


#ifndef _OTLP_CHECK_H_INCLUDED_
#define _OTLP_CHECK_H_INCLUDED_


/*
 * A protobuf reader of the test side, independent of the encoder: walks a
 * message, checks that every field is well formed (tag, wire type, varint,
 * lengths within the message) and, for the field numbers given as nested
 * messages, walks them too.  Returns the number of fields, or -1.
 */

#include <stddef.h>
#include <stdint.h>


static int
otlp_check_varint(const unsigned char **p, const unsigned char *end,
    uint64_t *v)
{
    int  shift;

    *v = 0;

    for (shift = 0; shift < 64; shift += 7) {
        if (*p == end) {
            return -1;
        }

        *v |= (uint64_t) (**p & 0x7f) << shift;

        if ((*(*p)++ & 0x80) == 0) {
            return 0;
        }
    }

    return -1;
}


/*
 * nested(depth, field) says whether a length-delimited field at that depth
 * is a message to walk; the OTLP trace request's layout is in
 * otlp_check_nested().
 */

typedef int (*otlp_nested_pt)(int depth, const uint32_t *path);

static int
otlp_check_message(const unsigned char *p, const unsigned char *end,
    int depth, uint32_t *path, otlp_nested_pt nested)
{
    int        n;
    uint64_t   tag, len;

    n = 0;

    while (p < end) {
        if (otlp_check_varint(&p, end, &tag) != 0 || (tag >> 3) == 0) {
            return -1;
        }

        switch (tag & 7) {

        case 0:
            if (otlp_check_varint(&p, end, &len) != 0) {
                return -1;
            }
            break;

        case 1:
            if (end - p < 8) {
                return -1;
            }
            p += 8;
            break;

        case 5:
            if (end - p < 4) {
                return -1;
            }
            p += 4;
            break;

        case 2:
            if (otlp_check_varint(&p, end, &len) != 0
                || len > (uint64_t) (end - p))
            {
                return -1;
            }

            path[depth] = (uint32_t) (tag >> 3);

            if (depth < 7 && nested(depth, path)
                && otlp_check_message(p, p + len, depth + 1, path, nested)
                   < 0)
            {
                return -1;
            }

            p += len;
            break;

        default:
            return -1;
        }

        n++;
    }

    return p == end ? n : -1;
}


/*
 * ExportTraceServiceRequest.resource_spans(1) > ResourceSpans: resource(1)
 * > attributes(1) > KeyValue.value(2); scope_spans(2) > scope(1), spans(2)
 * > attributes(9) > value(2), status(15)
 */

static int
otlp_check_nested(int depth, const uint32_t *path)
{
    if (depth == 0) {
        return path[0] == 1;
    }

    if (depth == 1) {
        return path[1] == 1 || path[1] == 2;
    }

    if (path[1] == 1) {
        /* resource > attributes > value */
        return (depth == 2 && path[2] == 1) || (depth == 3 && path[3] == 2);
    }

    if (depth == 2) {
        return path[2] == 1 || path[2] == 2;
    }

    if (path[2] == 2) {
        return (depth == 3 && (path[3] == 9 || path[3] == 15))
               || (depth == 4 && path[3] == 9 && path[4] == 2);
    }

    return 0;
}


/* a span field as ngx_gateway_otlp_pb_span() writes it, inside ScopeSpans */

static int
otlp_check_span_nested(int depth, const uint32_t *path)
{
    if (depth == 0) {
        return path[0] == 2;
    }

    return (depth == 1 && (path[1] == 9 || path[1] == 15))
           || (depth == 2 && path[1] == 9 && path[2] == 2);
}


#endif /* _OTLP_CHECK_H_INCLUDED_ */
