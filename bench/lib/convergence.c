/*
 * ngx_gateway bench: registration -> routing convergence probe.
 *
 * For each of N fresh services: take a CLOCK_MONOTONIC timestamp, write the
 * registration recipe of docs/registry.md (MULTI HSET SADD SADD INCR, the
 * registry revision and P changes, PUBLISH EXEC) to
 * Redis, then probe every gateway in a tight loop, each probe a new TCP
 * connection (so that reuseport spreads them over the workers):
 *
 *     GET /probe/?s=SERVICE HTTP/1.0        -> 503 until the worker knows it
 *                                          -> 200 + "X-Worker: <pid>" after
 *
 * until every gateway has answered 200 from WORKERS distinct worker pids.
 * Prints one CSV line per registration:
 *
 *     i,service,first_us,all_us,probes
 *
 * first_us: first 200 from any worker, all_us: every worker of every
 * gateway; -1 when the timeout passed first.  These are upper bounds: the
 * probes go round the gateways one after the other.
 *
 * With -m lag, the gateways' own stamps instead: the client registers
 * instance i1 of service PREFIX through the admin API of the first
 * gateway, then changes its weight N times (PATCH, the admin API's script:
 * its notice carries the change and Redis' time of the write).  After each
 * change it reads the service's revision from Redis and asks every gateway
 * (GET /gateway/services/PREFIX) until it reports that revision, with
 * "lag_ms", the time from the write in Redis until that gateway applied
 * it.  The order of the questions does not matter: the gateway stamped the
 * time itself.  One CSV line per change:
 *
 *     i,revision,all_us,p50_us,unknown,timeouts
 *
 * all_us: the largest lag over the gateways (convergence to all of them),
 * p50_us: the median gateway's; unknown: gateways at the revision without
 * a lag (they fetched the change); timeouts: gateways not at the revision
 * within the timeout.  -o FILE writes every gateway's lag (i,gateway,lag_us).
 * -w WAIT_MS: how long to wait after a change before asking (the stamps do
 * not depend on it; asking 100 gateways at once would take the CPU the
 * gateways need to apply the change).
 *
 *   convergence -r REDIS_PORT -g PORT:WORKERS [-g ...] -n N -a ADDR
 *               [-p PREFIX] [-t TIMEOUT_MS] [-s PAUSE_MS] [-m probe|lag]
 *               [-o FILE] [-w WAIT_MS]
 *
 * 127.0.0.1 only.  Plain C99 + POSIX, no dependencies.
 */

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define MAX_GW       128
#define MAX_WORKERS  64


typedef struct {
    int     port;
    int     workers;
    long    pids[MAX_WORKERS];
    int     npids;
} gateway_t;


static void
fatal(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "convergence: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


static int64_t
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int
tcp_connect(int port)
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

    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    return fd;
}


static int
write_all(int fd, const char *p, size_t n)
{
    ssize_t  w;

    while (n) {
        w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }

    return 0;
}


/* append one RESP command made of the given arguments */

static size_t
resp(char *buf, size_t size, size_t off, int argc, ...)
{
    int          i, n;
    va_list      ap;
    const char  *a;

    n = snprintf(buf + off, size - off, "*%d\r\n", argc);
    off += (size_t) n;

    va_start(ap, argc);
    for (i = 0; i < argc; i++) {
        a = va_arg(ap, const char *);
        n = snprintf(buf + off, size - off, "$%zu\r\n%s\r\n", strlen(a), a);
        off += (size_t) n;
    }
    va_end(ap);

    if (off >= size) {
        fatal("command buffer too small");
    }

    return off;
}


/* read Redis replies until the trailing PING's "+PONG\r\n" */

static void
redis_drain(int fd)
{
    char     buf[4096];
    size_t   have = 0;
    ssize_t  n;

    for ( ;; ) {
        n = read(fd, buf + have, sizeof(buf) - have - 1);
        if (n <= 0) {
            fatal("redis connection lost");
        }
        have += (size_t) n;
        buf[have] = '\0';

        if (have >= 7 && memcmp(buf + have - 7, "+PONG\r\n", 7) == 0) {
            if (strstr(buf, "-ERR") || strstr(buf, "-EXECABORT")) {
                fatal("redis error: %s", buf);
            }
            return;
        }

        if (have > sizeof(buf) - 64) {
            memmove(buf, buf + have - 32, 32);
            have = 32;
        }
    }
}


/*
 * one HTTP/1.0 request, the answer read to its end into buf: the status
 * (0 on failure), the body in *body
 */

static int
http(int port, const char *method, const char *uri, const char *payload,
    char *buf, size_t size, char **body)
{
    int      fd, status;
    char     req[1024];
    size_t   have = 0;
    ssize_t  n;

    *body = NULL;

    fd = tcp_connect(port);
    if (fd < 0) {
        return 0;
    }

    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.0\r\nHost: bench\r\n"
                 "Content-Length: %zu\r\n\r\n%s", method, uri,
                 payload ? strlen(payload) : 0, payload ? payload : "");

    if (write_all(fd, req, (size_t) n) != 0) {
        close(fd);
        return 0;
    }

    for ( ;; ) {
        n = read(fd, buf + have, size - have - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        have += (size_t) n;
        if (have == size - 1) {
            break;
        }
    }

    close(fd);
    buf[have] = '\0';

    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        return 0;
    }

    *body = strstr(buf, "\r\n\r\n");
    if (*body) {
        *body += 4;
    }

    return status;
}


/* GET KEY on the Redis connection: the integer it holds, -1 if none */

static long long
redis_get_int(int fd, const char *key)
{
    char     cmd[512], buf[256];
    size_t   off, have = 0;
    ssize_t  n;
    char    *nl;

    off = resp(cmd, sizeof(cmd), 0, 2, "GET", key);

    if (write_all(fd, cmd, off) != 0) {
        fatal("redis write failed");
    }

    for ( ;; ) {
        n = read(fd, buf + have, sizeof(buf) - have - 1);
        if (n <= 0) {
            fatal("redis connection lost");
        }
        have += (size_t) n;
        buf[have] = '\0';

        if (buf[0] == '$' && strncmp(buf, "$-1\r\n", 5) == 0) {
            return -1;
        }

        nl = strstr(buf, "\r\n");
        if (nl && strstr(nl + 2, "\r\n")) {
            return strtoll(nl + 2, NULL, 10);
        }

        if (have == sizeof(buf) - 1) {
            fatal("unexpected redis reply");
        }
    }
}


static int
cmp_ll(const void *a, const void *b)
{
    long long  x = *(const long long *) a, y = *(const long long *) b;

    return (x > y) - (x < y);
}


static void
pause_ms_for(int ms)
{
    struct timespec  ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

    if (ms > 0) {
        nanosleep(&ts, NULL);
    }
}


/* -m lag: see the top of the file */

static int
lag_mode(int rfd, gateway_t *gw, int ngw, int n, const char *addr,
    const char *prefix, int timeout_ms, int pause_ms, int wait_ms, FILE *raw)
{
    int         i, g, st, unknown, timeouts, nlag;
    char        uri[256], payload[256], key[256], buf[65536], *body, *p, *q;
    long long   rev, have, lag[MAX_GW];
    int64_t     t0;

    snprintf(uri, sizeof(uri), "/gateway/services/%s/instances/i1", prefix);
    snprintf(payload, sizeof(payload), "{\"address\":\"%s\"}", addr);
    snprintf(key, sizeof(key), "gateway:svc:%s:rev", prefix);

    st = http(gw[0].port, "PUT", uri, payload, buf, sizeof(buf), &body);
    if (st != 200 && st != 201) {
        fatal("registration through the admin API failed: %d", st);
    }

    /* every gateway has the service (fetched: it is new) before a change */

    snprintf(uri, sizeof(uri), "/gateway/services/%s", prefix);

    for (g = 0; g < ngw; g++) {
        t0 = now_us();

        while (http(gw[g].port, "GET", uri, NULL, buf, sizeof(buf), &body)
               != 200)
        {
            if (now_us() - t0 > (int64_t) timeout_ms * 1000) {
                fatal("gateway on port %d has not got %s", gw[g].port, uri);
            }

            pause_ms_for(1);
        }
    }

    snprintf(uri, sizeof(uri), "/gateway/services/%s/instances/i1", prefix);

    printf("i,revision,all_us,p50_us,unknown,timeouts\n");

    if (raw) {
        fprintf(raw, "i,gateway,lag_us\n");
    }

    for (i = 0; i < n; i++) {
        snprintf(payload, sizeof(payload), "{\"weight\":%d}", 1 + i % 9);

        st = http(gw[0].port, "PATCH", uri, payload, buf, sizeof(buf), &body);
        if (st != 200) {
            fatal("PATCH through the admin API failed: %d", st);
        }

        rev = redis_get_int(rfd, key);
        snprintf(uri, sizeof(uri), "/gateway/services/%s", prefix);

        pause_ms_for(wait_ms);

        unknown = 0;
        timeouts = 0;
        nlag = 0;

        for (g = 0; g < ngw; g++) {
            t0 = now_us();

            for ( ;; ) {
                st = http(gw[g].port, "GET", uri, NULL, buf, sizeof(buf),
                          &body);

                have = -1;
                p = (st == 200 && body) ? strstr(body, "\"revision\":")
                                        : NULL;
                if (p) {
                    have = strtoll(p + 11, NULL, 10);
                }

                if (have >= rev) {
                    break;
                }

                if (now_us() - t0 > (int64_t) timeout_ms * 1000) {
                    break;
                }

                pause_ms_for(1);
            }

            if (have < rev) {
                timeouts++;
                continue;
            }

            /* the service's own "lag_ms" is the last one in its object */

            for (q = NULL, p = body; (p = strstr(p, "\"lag_ms\":")); p++) {
                q = p;
            }

            if (have != rev || q == NULL || strncmp(q + 9, "null", 4) == 0) {
                unknown++;
                continue;
            }

            lag[nlag] = (long long) (strtod(q + 9, NULL) * 1000 + 0.5);

            if (raw) {
                fprintf(raw, "%d,%d,%lld\n", i, g, lag[nlag]);
            }

            nlag++;
        }

        snprintf(uri, sizeof(uri), "/gateway/services/%s/instances/i1",
                 prefix);

        qsort(lag, (size_t) nlag, sizeof(long long), cmp_ll);

        printf("%d,%lld,%lld,%lld,%d,%d\n", i, rev,
               (nlag && !unknown && !timeouts) ? lag[nlag - 1] : -1LL,
               nlag ? lag[nlag / 2] : -1LL, unknown, timeouts);
        fflush(stdout);

        pause_ms_for(pause_ms);
    }

    return 0;
}


/* one probe: returns the HTTP status (0 on failure), *pid the X-Worker */

static int
probe(int port, const char *svc, long *pid)
{
    int      fd, status;
    char     req[256], buf[4096], *h;
    size_t   have = 0;
    ssize_t  n;

    *pid = 0;

    fd = tcp_connect(port);
    if (fd < 0) {
        return 0;
    }

    n = snprintf(req, sizeof(req),
                 "GET /probe/?s=%s HTTP/1.0\r\nHost: bench\r\n\r\n", svc);

    if (write_all(fd, req, (size_t) n) != 0) {
        close(fd);
        return 0;
    }

    for ( ;; ) {
        n = read(fd, buf + have, sizeof(buf) - have - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        have += (size_t) n;
        if (have == sizeof(buf) - 1) {
            break;
        }
    }

    close(fd);
    buf[have] = '\0';

    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        return 0;
    }

    h = strstr(buf, "\r\nX-Worker: ");
    if (h) {
        *pid = strtol(h + 12, NULL, 10);
    }

    return status;
}


int
main(int argc, char **argv)
{
    int         i, g, c, n = 200, redis_port = 0, ngw = 0, rfd, done, st;
    int         timeout_ms = 6000, pause_ms = 20, wait_ms = 0, probes, k, known;
    long        pid;
    char        svc[128], key[256], ids[256], rev[256];
    char        cmd[8192];
    const char *addr = NULL, *prefix = "conv", *gp, *mode = "probe";
    FILE       *raw = NULL;
    size_t      off;
    int64_t     t0, t, first, all;
    gateway_t   gw[MAX_GW];

    while ((c = getopt(argc, argv, "r:g:n:a:p:t:s:m:o:w:")) != -1) {
        switch (c) {
        case 'r': redis_port = atoi(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 'a': addr = optarg; break;
        case 'p': prefix = optarg; break;
        case 't': timeout_ms = atoi(optarg); break;
        case 's': pause_ms = atoi(optarg); break;
        case 'm': mode = optarg; break;
        case 'w': wait_ms = atoi(optarg); break;
        case 'o':
            raw = fopen(optarg, "w");
            if (raw == NULL) {
                fatal("cannot write %s", optarg);
            }
            break;
        case 'g':
            if (ngw == MAX_GW) {
                fatal("too many gateways");
            }
            gw[ngw].port = atoi(optarg);
            gp = strchr(optarg, ':');
            gw[ngw].workers = gp ? atoi(gp + 1) : 1;
            if (gw[ngw].workers < 1 || gw[ngw].workers > MAX_WORKERS) {
                fatal("bad worker count in %s", optarg);
            }
            ngw++;
            break;
        default:
            fatal("usage: convergence -r REDIS_PORT -g PORT:WORKERS ... -n N "
                  "-a ADDR [-p PREFIX] [-t TIMEOUT_MS] [-s PAUSE_MS] "
                  "[-m probe|lag] [-o FILE] [-w WAIT_MS]");
        }
    }

    if (redis_port == 0 || ngw == 0 || addr == NULL) {
        fatal("-r, -g and -a are required");
    }

    rfd = tcp_connect(redis_port);
    if (rfd < 0) {
        fatal("cannot connect to redis on port %d", redis_port);
    }

    if (strcmp(mode, "lag") == 0) {
        lag_mode(rfd, gw, ngw, n, addr, prefix, timeout_ms, pause_ms, wait_ms,
                 raw);

        if (raw) {
            fclose(raw);
        }

        close(rfd);
        return 0;
    }

    printf("i,service,first_us,all_us,probes\n");

    for (i = 0; i < n; i++) {
        snprintf(svc, sizeof(svc), "%s-%d", prefix, i);
        snprintf(key, sizeof(key), "gateway:svc:%s:inst:i1", svc);
        snprintf(ids, sizeof(ids), "gateway:svc:%s:ids", svc);
        snprintf(rev, sizeof(rev), "gateway:svc:%s:rev", svc);

        off = resp(cmd, sizeof(cmd), 0, 1, "MULTI");
        off = resp(cmd, sizeof(cmd), off, 12, "HSET", key, "address", addr,
                   "weight", "1", "zone", "a", "state", "up", "ttl", "0");
        off = resp(cmd, sizeof(cmd), off, 3, "SADD", ids, "i1");
        off = resp(cmd, sizeof(cmd), off, 3, "SADD", "gateway:services", svc);
        off = resp(cmd, sizeof(cmd), off, 2, "INCR", rev);
        off = resp(cmd, sizeof(cmd), off, 6, "EVAL",
                   "redis.call('ZADD', KEYS[2], "
                   "redis.call('INCR', KEYS[1]), ARGV[1])",
                   "2", "gateway:rev", "gateway:changes", svc);
        off = resp(cmd, sizeof(cmd), off, 3, "PUBLISH", "gateway:events",
                   svc);
        off = resp(cmd, sizeof(cmd), off, 1, "EXEC");
        off = resp(cmd, sizeof(cmd), off, 1, "PING");

        for (g = 0; g < ngw; g++) {
            gw[g].npids = 0;
        }

        first = -1;
        all = -1;
        probes = 0;

        t0 = now_us();

        if (write_all(rfd, cmd, off) != 0) {
            fatal("redis write failed");
        }

        redis_drain(rfd);

        for ( ;; ) {
            done = 1;

            for (g = 0; g < ngw; g++) {
                if (gw[g].npids >= gw[g].workers) {
                    continue;
                }

                st = probe(gw[g].port, svc, &pid);
                probes++;

                if (st == 200) {
                    if (first < 0) {
                        first = now_us() - t0;
                    }

                    known = 0;
                    for (k = 0; k < gw[g].npids; k++) {
                        if (gw[g].pids[k] == pid) {
                            known = 1;
                        }
                    }
                    if (!known && pid > 0) {
                        gw[g].pids[gw[g].npids++] = pid;
                    }
                }

                if (gw[g].npids < gw[g].workers) {
                    done = 0;
                }
            }

            t = now_us() - t0;

            if (done) {
                all = t;
                break;
            }

            if (t > (int64_t) timeout_ms * 1000) {
                break;
            }
        }

        printf("%d,%s,%lld,%lld,%d\n", i, svc, (long long) first,
               (long long) all, probes);
        fflush(stdout);

        if (pause_ms > 0) {
            struct timespec  ts = { pause_ms / 1000,
                                    (long) (pause_ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    }

    close(rfd);

    return 0;
}
