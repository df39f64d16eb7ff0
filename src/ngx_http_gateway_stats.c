
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * The per-instance counters the admin API shows, kept by an attempt
 * observer, and "active", the core's count of attempts in flight: shared
 * by all workers through the cells of each (see ngx_http_gateway_cell_t).
 */


#define NGX_HTTP_GATEWAY_READ_TRIES  64


ngx_http_gateway_cell_t  *ngx_http_gateway_cells;
ngx_event_t               ngx_http_gateway_cells_event;

static u_char      ngx_http_gateway_cells_used[NGX_HTTP_GATEWAY_CELLS];
static ngx_uint_t  ngx_http_gateway_ncells_used;

ngx_msec_t         ngx_http_gateway_cells_msec;
ngx_uint_t         ngx_http_gateway_cells_direct;
ngx_uint_t         ngx_http_gateway_cells_publish;


static void ngx_http_gateway_cell_publish(ngx_http_gateway_cell_t *c);
static void ngx_http_gateway_cell_move(ngx_http_gateway_cell_t *c);
static ngx_inline void ngx_http_gateway_cell_begin(ngx_http_gateway_cell_t *c);
static ngx_inline void ngx_http_gateway_cell_end(ngx_http_gateway_cell_t *c);
static void ngx_http_gateway_cells_handler(ngx_event_t *ev);


void
ngx_http_gateway_stats_observe(ngx_http_gateway_attempt_t *a)
{
    ngx_uint_t                 fail;
    ngx_http_gateway_cell_t   *c;
    ngx_http_gateway_stats_t  *st;

    fail = ngx_http_gateway_fail(a->result);

    if (!a->batched) {

        /* at once: see NGX_HTTP_GATEWAY_CELLS_DIRECT */

        st = &a->peer->inst->stats;

        (void) ngx_atomic_fetch_add(&st->requests, 1);
        (void) ngx_atomic_fetch_add(&st->time, a->end - a->start);

        if (a->number > 1) {
            (void) ngx_atomic_fetch_add(&st->retries, 1);
        }

        if (fail < NGX_HTTP_GATEWAY_FAILS) {
            (void) ngx_atomic_fetch_add(&st->fails[fail], 1);
        }

        return;
    }

    c = ngx_http_gateway_cell_of(a->snap, a->peer->inst);

    c->requests++;
    c->time += a->end - a->start;

    if (a->number > 1) {
        c->retries++;
    }

    if (fail < NGX_HTTP_GATEWAY_FAILS) {
        c->fails[fail]++;
    }
}


void
ngx_http_gateway_cells_init(void)
{
    ngx_http_gateway_cells_event.handler = ngx_http_gateway_cells_handler;
    ngx_http_gateway_cells_event.log = ngx_cycle->log;
    ngx_http_gateway_ncells_used = 0;
}


/*
 * The cell c for inst: when "active" is published at every pass, the
 * pass's first change posts the flush; a cell taken by another instance
 * has its counts moved first.
 */

ngx_http_gateway_cell_t *
ngx_http_gateway_cell_take(ngx_http_gateway_cell_t *c,
    ngx_http_gateway_snapshot_t *snap, ngx_http_gateway_instance_t *inst)
{
    if (ngx_http_gateway_cells_publish
        && !ngx_http_gateway_cells_event.posted)
    {
        ngx_post_event(&ngx_http_gateway_cells_event, &ngx_posted_events);
    }

    if (c->inst == inst) {
        return c;
    }

    if (c->inst) {
        ngx_http_gateway_cell_begin(c);
        ngx_http_gateway_cell_publish(c);
        ngx_http_gateway_cell_move(c);
        ngx_http_gateway_cell_end(c);

    } else {
        ngx_http_gateway_cells_used[ngx_http_gateway_ncells_used++] =
            (u_char) (c - ngx_http_gateway_cells);
    }

    /* the hold before the instance: a dead worker's reclaim reads both */

    ngx_http_gateway_store_order();
    c->snap = snap;
    ngx_http_gateway_store_order();
    c->inst = inst;

    return c;
}


static void
ngx_http_gateway_cells_handler(ngx_event_t *ev)
{
    ngx_http_gateway_cells_flush();
}


/* the end of a pass: "active" of every cell published, the cells kept */

void
ngx_http_gateway_cells_flush(void)
{
    ngx_uint_t                i;
    ngx_http_gateway_cell_t  *c;

    for (i = 0; i < ngx_http_gateway_ncells_used; i++) {
        c = &ngx_http_gateway_cells[ngx_http_gateway_cells_used[i]];

        /* readers then take "active" as published (see stats_read()) */

        if (c->up || c->down) {
            ngx_http_gateway_cell_publish(c);
        }
    }
}


/* the tick, or the worker's exit: every cell published, moved and freed */

void
ngx_http_gateway_cells_drain(void)
{
    ngx_uint_t                i;
    ngx_http_gateway_cell_t  *c;

    for (i = 0; i < ngx_http_gateway_ncells_used; i++) {
        c = &ngx_http_gateway_cells[ngx_http_gateway_cells_used[i]];

        ngx_http_gateway_cell_begin(c);
        ngx_http_gateway_cell_publish(c);
        ngx_http_gateway_cell_move(c);
        ngx_http_gateway_cell_end(c);

        c->inst = NULL;
        ngx_http_gateway_store_order();
        c->snap = NULL;
    }

    ngx_http_gateway_ncells_used = 0;
}


static void
ngx_http_gateway_cell_publish(ngx_http_gateway_cell_t *c)
{
    ngx_atomic_uint_t   up, down;
    ngx_atomic_t       *active;

    /*
     * "active" gets the difference, one add or none; more +1s are
     * cleared after they are added, more -1s before (see the type)
     */

    active = &c->inst->stats.active;
    up = c->up;
    down = c->down;

    if (up >= down) {
        if (up != down) {
            (void) ngx_atomic_fetch_add(active, up - down);
        }

        c->down = 0;
        ngx_http_gateway_store_order();
        c->up = 0;

    } else {
        c->down = 0;
        ngx_http_gateway_store_order();
        (void) ngx_atomic_fetch_add(active, -(down - up));
        c->up = 0;
    }
}


/*
 * A cell's counts go into its instance (a publish, a move) while its
 * "seq" is odd: a reader that saw it even before and after counted them
 * once, in the cell or in the instance.
 */

static ngx_inline void
ngx_http_gateway_cell_begin(ngx_http_gateway_cell_t *c)
{
    c->seq++;
    ngx_memory_barrier();
}


static ngx_inline void
ngx_http_gateway_cell_end(ngx_http_gateway_cell_t *c)
{
    ngx_memory_barrier();
    c->seq++;
}


/*
 * The cell's counts but "active" into its instance, each on its own: a
 * count is added before it is cleared, so a worker killed in between
 * leaves that count (the cell's part of it) counted twice, never lost,
 * and none left behind in the cell for the instance that takes it next.
 */

static void
ngx_http_gateway_cell_move(ngx_http_gateway_cell_t *c)
{
    ngx_uint_t                 i;
    ngx_http_gateway_stats_t  *st;

    st = &c->inst->stats;

    if (c->requests) {
        (void) ngx_atomic_fetch_add(&st->requests, c->requests);
        c->requests = 0;
    }

    if (c->time) {
        (void) ngx_atomic_fetch_add(&st->time, c->time);
        c->time = 0;
    }

    if (c->retries) {
        (void) ngx_atomic_fetch_add(&st->retries, c->retries);
        c->retries = 0;
    }

    for (i = 0; i < NGX_HTTP_GATEWAY_FAILS; i++) {
        if (c->fails[i]) {
            (void) ngx_atomic_fetch_add(&st->fails[i], c->fails[i]);
            c->fails[i] = 0;
        }
    }
}


/*
 * inst's counters, all workers: what the instance has and what each
 * worker's cell of it holds, read again while a cell's counts were moved
 * meanwhile.  When "active" is published at every pass (sh's uses), it is
 * taken as published, with this worker's own changes, as the balancers
 * take it: those publishes are not bracketed by the seq.  readers[] are
 * entries of the zone, which are never freed, nor are their cells.
 */

void
ngx_http_gateway_stats_read(ngx_http_gateway_sh_t *sh,
    ngx_http_gateway_reader_t **readers, ngx_uint_t nreaders,
    ngx_http_gateway_instance_t *inst, ngx_http_gateway_stats_t *st)
{
    ngx_uint_t                i, k, tries, published;
    ngx_atomic_int_t          active;
    ngx_atomic_uint_t         seq, before, after, odd, down;
    ngx_http_gateway_cell_t  *c;

    published = sh->uses & NGX_HTTP_GATEWAY_USES_ACTIVE;

    for (tries = 1; /* void */; tries++) {

        before = 0;
        odd = 0;

        for (i = 0; i < nreaders; i++) {
            if (readers[i]->cells) {
                seq = ngx_http_gateway_cell_in(readers[i]->cells, inst)->seq;
                before += seq;
                odd |= seq;
            }
        }

        ngx_memory_barrier();

        *st = inst->stats;
        active = st->active;

        for (i = 0; i < nreaders; i++) {
            if (readers[i]->cells == NULL) {
                continue;
            }

            c = ngx_http_gateway_cell_in(readers[i]->cells, inst);

            if (c->inst != inst) {
                continue;
            }

            /* -1s before +1s: an attempt's +1 comes first, never too low */

            if (!published) {
                down = c->down;
                ngx_memory_barrier();
                active += c->up - down;
            }

            st->requests += c->requests;
            st->time += c->time;
            st->retries += c->retries;

            for (k = 0; k < NGX_HTTP_GATEWAY_FAILS; k++) {
                st->fails[k] += c->fails[k];
            }
        }

        ngx_memory_barrier();

        /* each seq only grows: the same sum means that none changed */

        after = 0;

        for (i = 0; i < nreaders; i++) {
            if (readers[i]->cells) {
                after += ngx_http_gateway_cell_in(readers[i]->cells, inst)->seq;
            }
        }

        /* a worker killed in a move leaves its seq odd until its reclaim */

        if ((!(odd & 1) && after == before)
            || tries == NGX_HTTP_GATEWAY_READ_TRIES)
        {
            break;
        }
    }

    if (published) {
        st->active = ngx_http_gateway_cells ? ngx_http_gateway_active(inst)
                                            : inst->stats.active;

    } else {
        st->active = active > 0 ? active : 0;
    }
}


/*
 * A dead worker's cells, under the zone mutex: its pending changes are
 * published and moved, its cells' holds dropped.  Its +1s of "active" go
 * first: lock-free readers never see a count below the truth.  Its cells
 * stay with its entry, for the next worker (readers read them lock-free).
 */

void
ngx_http_gateway_cells_apply_locked(ngx_http_gateway_reader_t *rd)
{
    ngx_uint_t                 i;
    ngx_http_gateway_cell_t   *c;

    if (rd->cells == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_GATEWAY_CELLS; i++) {
        c = &rd->cells[i];

        if (c->inst == NULL || c->snap == NULL) {
            continue;
        }

        /* killed in a move, its seq is odd: what it did not clear yet */

        if (!(c->seq & 1)) {
            ngx_http_gateway_cell_begin(c);
        }

        if (c->up) {
            (void) ngx_atomic_fetch_add(&c->inst->stats.active, c->up);
            c->up = 0;
        }
    }

    for (i = 0; i < NGX_HTTP_GATEWAY_CELLS; i++) {
        c = &rd->cells[i];

        /* its +1s are in: the publish takes the -1s off */

        if (c->inst && c->snap) {
            ngx_http_gateway_cell_publish(c);
            ngx_http_gateway_cell_move(c);
            ngx_http_gateway_cell_end(c);
        }

        c->inst = NULL;
        c->snap = NULL;
    }
}
