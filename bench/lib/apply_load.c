/*
 * ngx_gateway bench: open-loop HTTP load with per-request latency.
 *
 * Sends GET PATH to 127.0.0.1:PORT at a fixed RATE (requests per second)
 * for DURATION seconds over CONNS keepalive HTTP/1.1 connections.  Request
 * k is due at start + k / RATE whether or not the previous ones have been
 * answered; when no connection is free it waits in a queue.  Its latency is
 * measured from its due time to the end of its response, so a stall of the
 * server shows in every request that was due during the stall (a
 * closed-loop client like wrk records one slow request per connection and
 * hides most of it).
 *
 * Prints one CSV line per request (no header):
 *
 *     due_us,latency_us,worker,status
 *
 * due_us: due time since the start; worker: the X-Worker response header
 * (0 when absent); status: the HTTP status, 0 for a broken connection, -1
 * (and latency -1) for a request unanswered TIMEOUT_MS after the last one
 * was due.
 *
 *   apply_load -p PORT -r RATE -d DURATION_S -c CONNS [-u PATH]
 *              [-t TIMEOUT_MS] [-w WORKERS]
 *
 * -w: the server has WORKERS worker processes (listen ... reuseport, which
 * spreads connections by a hash); connections are opened, probed once and
 * kept or closed until each worker holds CONNS / WORKERS of them.  Requests
 * go to the free connections in turn, so every worker serves its share.
 *
 * 127.0.0.1 only.  C99 + POSIX + Linux (epoll, timerfd), no dependencies.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>


#define RESP_MAX     16384
#define MAX_CONNS    1024
#define MAX_TOTAL    10000000


typedef struct {
    int      fd;
    int      busy;
    int64_t  req;           /* index of the request in flight */
    size_t   have;
    char     buf[RESP_MAX];
} conn_t;


typedef struct {
    int32_t  latency_us;
    int32_t  worker;
    int16_t  status;
    int8_t   done;
} result_t;


static int        port;
static int        ep;
static char       request[512];
static size_t     request_len;
static int64_t    start_ns;
static double     period_ns;
static result_t  *results;
static int64_t    finished;


static void
fatal(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "apply_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


static int64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static int64_t
due_ns(int64_t k)
{
    return start_ns + (int64_t) (k * period_ns);
}


static void
conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);       /* also leaves the epoll set */
    }

    c->fd = -1;
    c->busy = 0;
    c->have = 0;
}


/* a blocking connection to the server */

static int
tcp_connect(void)
{
    int                 fd, one = 1;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* blocking connect: loopback, and it happens only at start or after
     * the server closed a connection */
    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    return fd;
}


static int
conn_attach(conn_t *c, uint32_t idx, int fd)
{
    struct epoll_event  ev;

    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }

    ev.events = EPOLLIN;
    ev.data.u32 = idx;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return -1;
    }

    c->fd = fd;
    c->busy = 0;
    c->have = 0;

    return 0;
}


static int
conn_open(conn_t *c, uint32_t idx)
{
    int  fd;

    fd = tcp_connect();
    if (fd < 0) {
        return -1;
    }

    return conn_attach(c, idx, fd);
}


static void
finish(conn_t *c, int status, int worker, int64_t now)
{
    result_t  *r;

    r = &results[c->req];
    r->latency_us = (int32_t) ((now - due_ns(c->req)) / 1000);
    r->worker = worker;
    r->status = (int16_t) status;
    r->done = 1;
    finished++;
    c->busy = 0;
}


/*
 * the response at the start of buf: 1 when complete (its status, X-Worker
 * and total length set), 0 when more is needed, -1 when it cannot be parsed
 */

static int
parse_head(char *buf, size_t have, size_t size, int *status, int *worker,
    size_t *len)
{
    int     have_clen = 0;
    char   *end, *p, *eol;
    size_t  hlen, clen = 0;

    end = memmem(buf, have, "\r\n\r\n", 4);
    if (end == NULL) {
        return have >= size ? -1 : 0;
    }

    hlen = (size_t) (end - buf) + 4;

    if (hlen < 12 || memcmp(buf, "HTTP/1.", 7) != 0) {
        return -1;
    }

    *status = atoi(buf + 9);
    *worker = 0;

    for (p = memchr(buf, '\n', hlen) + 1; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t) (end + 2 - p));
        if (eol == NULL) {
            break;
        }

        if (strncasecmp(p, "content-length:", 15) == 0) {
            clen = strtoul(p + 15, NULL, 10);
            have_clen = 1;

        } else if (strncasecmp(p, "x-worker:", 9) == 0) {
            *worker = atoi(p + 9);
        }
    }

    if (!have_clen || clen > size - hlen) {
        return -1;
    }

    if (have < hlen + clen) {
        return 0;
    }

    *len = hlen + clen;

    return 1;
}


static int
parse_response(conn_t *c, int64_t now)
{
    int     rc, status, worker;
    size_t  n;

    rc = parse_head(c->buf, c->have, sizeof(c->buf), &status, &worker, &n);
    if (rc <= 0) {
        return rc;
    }

    memmove(c->buf, c->buf + n, c->have - n);
    c->have -= n;

    finish(c, status, worker, now);

    return 1;
}


/* one blocking request on a fresh connection: the worker that answers */

static int
probe_worker(int fd, conn_t *c)
{
    int      rc, status, worker;
    size_t   n;
    ssize_t  r;

    if (write(fd, request, request_len) != (ssize_t) request_len) {
        return -1;
    }

    c->have = 0;

    for ( ;; ) {
        r = read(fd, c->buf + c->have, sizeof(c->buf) - c->have);
        if (r <= 0) {
            return -1;
        }

        c->have += (size_t) r;

        rc = parse_head(c->buf, c->have, sizeof(c->buf), &status, &worker,
                        &n);
        if (rc < 0 || (rc == 1 && (status != 200 || n != c->have))) {
            return -1;
        }

        if (rc == 1) {
            c->have = 0;
            return worker;
        }
    }
}


/* CONNS connections, CONNS / WORKERS on each worker */

static void
spread(conn_t *conns, int nconns, int workers)
{
    int   i, j, fd, w, tries, *count;
    long  *pids;

    if (nconns % workers) {
        fatal("-c %d is not a multiple of -w %d", nconns, workers);
    }

    pids = calloc((size_t) workers, sizeof(long));
    count = calloc((size_t) workers, sizeof(int));
    if (pids == NULL || count == NULL) {
        fatal("out of memory");
    }

    for (i = 0, tries = 0; i < nconns; tries++) {
        if (tries > 100 * nconns) {
            fatal("cannot spread %d connections over %d workers",
                  nconns, workers);
        }

        fd = tcp_connect();
        if (fd < 0) {
            fatal("cannot connect to 127.0.0.1:%d: %s", port,
                  strerror(errno));
        }

        w = probe_worker(fd, &conns[i]);
        if (w <= 0) {
            fatal("no \"X-Worker\" in a 200 response to the probe");
        }

        for (j = 0; j < workers && pids[j] != 0 && pids[j] != w; j++) {
            /* void */
        }

        if (j == workers) {
            fatal("more than %d workers answer", workers);
        }

        pids[j] = w;

        if (count[j] == nconns / workers) {
            close(fd);
            continue;
        }

        if (conn_attach(&conns[i], (uint32_t) i, fd) != 0) {
            fatal("epoll: %s", strerror(errno));
        }

        count[j]++;
        i++;
    }

    free(pids);
    free(count);
}


static void
usage(void)
{
    fatal("usage: apply_load -p PORT -r RATE -d DURATION_S -c CONNS "
          "[-u PATH] [-t TIMEOUT_MS] [-w WORKERS]");
}


int
main(int argc, char **argv)
{
    int                 o, rate = 0, duration = 0, nconns = 0, i, n;
    int                 timeout_ms = 5000, idle, rr = 0, workers = 0;
    int                 tfd;
    const char         *path = "/";
    char                drain[8];
    conn_t             *conns, *c;
    ssize_t             r;
    int64_t             total, next, now, t, end;
    struct itimerspec   its;
    struct epoll_event  ev, evs[64];

    while ((o = getopt(argc, argv, "p:r:d:c:u:t:w:")) != -1) {
        switch (o) {
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atoi(optarg); break;
        case 'd': duration = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 't': timeout_ms = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        default: usage();
        }
    }

    if (port <= 0 || port > 65535 || rate <= 0 || duration <= 0
        || nconns <= 0 || nconns > MAX_CONNS || timeout_ms <= 0
        || workers < 0 || workers > nconns
        || strlen(path) > 256 || path[0] != '/')
    {
        usage();
    }

    total = (int64_t) rate * duration;
    if (total > MAX_TOTAL) {
        fatal("rate x duration is more than %d requests", MAX_TOTAL);
    }

    request_len = (size_t) snprintf(request, sizeof(request),
                                    "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n",
                                    path);

    results = calloc((size_t) total, sizeof(result_t));
    conns = calloc((size_t) nconns, sizeof(conn_t));
    if (results == NULL || conns == NULL) {
        fatal("out of memory");
    }

    ep = epoll_create1(0);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (ep < 0 || tfd < 0) {
        fatal("epoll/timerfd: %s", strerror(errno));
    }

    ev.events = EPOLLIN;
    ev.data.u32 = (uint32_t) nconns;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

    for (i = 0; i < nconns; i++) {
        conns[i].fd = -1;
    }

    if (workers) {
        spread(conns, nconns, workers);

    } else {
        for (i = 0; i < nconns; i++) {
            if (conn_open(&conns[i], (uint32_t) i) != 0) {
                fatal("cannot connect to 127.0.0.1:%d: %s", port,
                      strerror(errno));
            }
        }
    }

    period_ns = 1e9 / rate;
    start_ns = now_ns() + 10000000;
    end = due_ns(total) + (int64_t) timeout_ms * 1000000;
    next = 0;

    for ( ;; ) {
        now = now_ns();

        /* send every due request that has a free connection */
        while (next < total && due_ns(next) <= now) {
            /* the free connections in turn, so that every worker gets
             * its share of the requests */
            idle = -1;
            for (i = 0; i < nconns; i++) {
                if (!conns[(rr + i) % nconns].busy) {
                    idle = (rr + i) % nconns;
                    break;
                }
            }

            if (idle < 0) {
                break;
            }

            rr = (idle + 1) % nconns;

            c = &conns[idle];
            if (c->fd < 0 && conn_open(c, (uint32_t) idle) != 0) {
                c->req = next++;
                finish(c, 0, 0, now);
                continue;
            }

            c->req = next++;
            c->busy = 1;

            r = write(c->fd, request, request_len);
            if (r != (ssize_t) request_len) {
                finish(c, 0, 0, now);
                conn_close(c);
            }
        }

        if (finished == total || now >= end) {
            break;
        }

        /* wake up for the next due request, or at the end */
        t = (next < total) ? due_ns(next) : end;
        if (t <= now) {
            t = end;    /* due but every connection is busy: wait for one */
        }

        memset(&its, 0, sizeof(its));
        its.it_value.tv_sec = t / 1000000000;
        its.it_value.tv_nsec = t % 1000000000;
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);

        n = epoll_wait(ep, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fatal("epoll_wait: %s", strerror(errno));
        }

        now = now_ns();

        for (i = 0; i < n; i++) {
            if (evs[i].data.u32 == (uint32_t) nconns) {
                while (read(tfd, drain, sizeof(drain)) > 0) { /* void */ }
                continue;
            }

            c = &conns[evs[i].data.u32];
            if (c->fd < 0) {
                continue;
            }

            r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }

            if (r <= 0) {
                if (c->busy) {
                    finish(c, 0, 0, now);
                }
                conn_close(c);
                continue;
            }

            c->have += (size_t) r;

            if (!c->busy) {
                fatal("response without a request");
            }

            if (parse_response(c, now) < 0) {
                fatal("unexpected response: %.*s", (int) c->have, c->buf);
            }
        }
    }

    for (t = 0; t < total; t++) {
        if (!results[t].done) {
            /* never sent, or sent and never answered */
            results[t].latency_us = -1;
            results[t].status = -1;
        }
    }

    for (t = 0; t < total; t++) {
        printf("%lld,%d,%d,%d\n", (long long) ((due_ns(t) - start_ns) / 1000),
               results[t].latency_us, results[t].worker, results[t].status);
    }

    return 0;
}
