
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * The per-instance counters the admin API shows, kept by an attempt
 * observer, and "active", the core's count of attempts in flight: shared
 * by all workers, each worker adding its changes of a pass of its event
 * loop at the pass's end (see ngx_http_gateway_cell_t).
 */


ngx_http_gateway_cell_t  *ngx_http_gateway_cells;

static u_char      ngx_http_gateway_cells_used[NGX_HTTP_GATEWAY_CELLS];
static ngx_uint_t  ngx_http_gateway_ncells_used;
static ngx_event_t ngx_http_gateway_cells_event;

ngx_msec_t         ngx_http_gateway_cells_msec;
ngx_uint_t         ngx_http_gateway_cells_direct;


static void ngx_http_gateway_cell_publish(ngx_http_gateway_cell_t *c);
static void ngx_http_gateway_cells_handler(ngx_event_t *ev);


void
ngx_http_gateway_stats_observe(ngx_http_gateway_attempt_t *a)
{
    ngx_uint_t                 fail;
    ngx_http_gateway_cell_t   *c;
    ngx_http_gateway_stats_t  *st;

    c = a->batched ? ngx_http_gateway_cell_of(a->snap, a->peer->inst) : NULL;
    fail = ngx_http_gateway_fail(a->result);

    if (c == NULL) {

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
 * The cell c for inst, or NULL while the worker changes few counters (see
 * NGX_HTTP_GATEWAY_CELLS_DIRECT): a free cell joins the pass's list (the
 * first of a pass posts the flush), another instance's is published first.
 */

ngx_http_gateway_cell_t *
ngx_http_gateway_cell_take(ngx_http_gateway_cell_t *c,
    ngx_http_gateway_snapshot_t *snap, ngx_http_gateway_instance_t *inst)
{
    /* a new millisecond, and no cell taken: changes go at once again */

    if (ngx_http_gateway_ncells_used == 0
        && ngx_http_gateway_cells_msec != ngx_current_msec)
    {
        ngx_http_gateway_cells_msec = ngx_current_msec;
        ngx_http_gateway_cells_direct = NGX_HTTP_GATEWAY_CELLS_DIRECT - 1;
        return NULL;
    }

    /* the budget is spent, or cells are taken: none at once until then */

    ngx_http_gateway_cells_direct = 0;

    if (ngx_http_gateway_ncells_used == 0) {
        ngx_post_event(&ngx_http_gateway_cells_event, &ngx_posted_events);
    }

    if (c->inst) {
        ngx_http_gateway_cell_publish(c);
        c->inst = NULL;

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


/* the end of a pass, or of the worker: every cell published and freed */

void
ngx_http_gateway_cells_flush(void)
{
    ngx_uint_t                i;
    ngx_http_gateway_cell_t  *c;

    for (i = 0; i < ngx_http_gateway_ncells_used; i++) {
        c = &ngx_http_gateway_cells[ngx_http_gateway_cells_used[i]];

        ngx_http_gateway_cell_publish(c);

        c->inst = NULL;
        ngx_http_gateway_store_order();
        c->snap = NULL;
    }

    ngx_http_gateway_ncells_used = 0;
}


static void
ngx_http_gateway_cell_publish(ngx_http_gateway_cell_t *c)
{
    ngx_uint_t                 i;
    ngx_atomic_uint_t          up, down;
    ngx_http_gateway_stats_t  *st;

    st = &c->inst->stats;

    /*
     * "active" gets the difference, one add or none; more +1s are
     * cleared after they are added, more -1s before (see the type)
     */

    up = c->up;
    down = c->down;

    if (up >= down) {
        if (up != down) {
            (void) ngx_atomic_fetch_add(&st->active, up - down);
        }

        c->down = 0;
        ngx_http_gateway_store_order();
        c->up = 0;

    } else {
        c->down = 0;
        ngx_http_gateway_store_order();
        (void) ngx_atomic_fetch_add(&st->active, -(down - up));
        c->up = 0;
    }

    if (c->requests) {
        (void) ngx_atomic_fetch_add(&st->requests, c->requests);
        (void) ngx_atomic_fetch_add(&st->time, c->time);
        c->requests = 0;
        c->time = 0;

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
}


/*
 * A dead worker's cells, under the zone mutex: its pending changes are
 * published, its cells' holds dropped.  Its +1s of "active" go first:
 * lock-free readers never see a count below the truth.
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

        if (c->inst && c->snap && c->up) {
            (void) ngx_atomic_fetch_add(&c->inst->stats.active, c->up);
            c->up = 0;
        }
    }

    for (i = 0; i < NGX_HTTP_GATEWAY_CELLS; i++) {
        c = &rd->cells[i];

        /* its +1s are in: the publish takes the -1s off */

        if (c->inst && c->snap) {
            ngx_http_gateway_cell_publish(c);
        }

        c->inst = NULL;
        c->snap = NULL;
    }
}
