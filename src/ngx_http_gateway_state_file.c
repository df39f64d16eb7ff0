
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"


/*
 * The state file is the last known good registry: a header line
 * {"version":2,...}, then one JSON line per instance,
 * {"name":SERVICE,"revision":N,"instance":{...as the admin API shows it}},
 * and {"name":SERVICE,"revision":N} for a service without instances.  It
 * is written to a temporary file and renamed, so a reader never sees half
 * of it.  Version 1 files (one line per service, "instances":[...]) are
 * read as well.  What cannot be read is skipped an instance at a time.
 */


#define NGX_HTTP_GATEWAY_STATE_MAX  (256 * 1024 * 1024)


typedef struct {
    ngx_http_gateway_main_conf_t  *gmcf;
    ngx_log_t                     *log;
    ngx_uint_t                     line;
    ngx_uint_t                     loaded;
    ngx_uint_t                     skipped;
} ngx_http_gateway_state_ctx_t;


static void ngx_http_gateway_state_load_line(
    ngx_http_gateway_state_ctx_t *ctx, u_char *line, size_t len);
static void ngx_http_gateway_state_load_instance(
    ngx_http_gateway_state_ctx_t *ctx, ngx_gateway_json_tok_t *toks, int k,
    ngx_str_t *service, uint64_t revision);
static void ngx_http_gateway_state_skip(ngx_http_gateway_state_ctx_t *ctx,
    ngx_str_t *service, ngx_str_t *id, const char *err);


/*
 * The workers write the file, as the user of the "user" directive; a state
 * file in a directory that only root can write (Debian's /var/lib/nginx) is
 * the usual mistake, so the message says who needs what.
 */

static void
ngx_http_gateway_state_open_error(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log, ngx_err_t err, u_char *tmp)
{
    u_char           *p;
    ngx_str_t         dir;
    ngx_core_conf_t  *ccf;

    if (err != NGX_EACCES && err != NGX_EPERM && err != NGX_ENOENT) {
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "gateway: cannot write state file \"%s\"", tmp);
        return;
    }

    dir = gmcf->state_file;

    for (p = dir.data + dir.len; p > dir.data + 1 && p[-1] != '/'; p--) {
        /* void */
    }

    dir.len = (p > dir.data + 1) ? (size_t) (p - 1 - dir.data) : 1;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    if (ccf->username == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "gateway: cannot write state file \"%s\": the worker "
                      "processes run as uid %ui, which must be able to "
                      "create files in \"%V\"; use a directory that uid "
                      "%ui can write", tmp, (ngx_uint_t) geteuid(), &dir,
                      (ngx_uint_t) geteuid());
        return;
    }

    ngx_log_error(NGX_LOG_ERR, log, err,
                  "gateway: cannot write state file \"%s\": the worker "
                  "processes run as user \"%s\", which must be able to "
                  "create files in \"%V\"; give it a directory of its own, "
                  "e.g. \"install -d -o %s -m 0750 /var/lib/nginx/gateway\" "
                  "(make install does this), and set "
                  "\"state_file=/var/lib/nginx/gateway/registry.state\"",
                  tmp, ccf->username, &dir, ccf->username);
}


ngx_int_t
ngx_http_gateway_state_save(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log)
{
    u_char       *tmp;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_buf_t    *b;
    ngx_int_t     rc;
    ngx_uint_t    generation;
    ngx_pool_t   *pool;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    /* a failed save is retried at the next change, not at every tick */

    generation = gmcf->sh->generation;
    gmcf->sh->saved = generation;

    if (ngx_http_gateway_dump(pool, gmcf, NULL, NGX_HTTP_GATEWAY_DUMP_LINES,
                              &b)
        != NGX_OK)
    {
        goto done;
    }

    tmp = ngx_pnalloc(pool, gmcf->state_file.len + sizeof(".tmp.") - 1
                            + NGX_INT_T_LEN + 1);
    if (tmp == NULL) {
        goto done;
    }

    ngx_sprintf(tmp, "%V.tmp.%P%Z", &gmcf->state_file, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_http_gateway_state_open_error(gmcf, log, ngx_errno, tmp);
        goto done;
    }

    n = ngx_write_fd(fd, b->pos, b->last - b->pos);

    if (n != b->last - b->pos || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "gateway: cannot write state file \"%s\"", tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        goto done;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, gmcf->state_file.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "gateway: cannot rename \"%s\" to \"%V\"",
                      tmp, &gmcf->state_file);
        (void) ngx_delete_file(tmp);
        goto done;
    }

    rc = NGX_OK;

done:

    ngx_destroy_pool(pool);

    return rc;
}


ngx_int_t
ngx_http_gateway_state_load(ngx_http_gateway_main_conf_t *gmcf,
    ngx_log_t *log)
{
    u_char                        *buf, *p, *last, *eol;
    ssize_t                        n;
    ngx_fd_t                       fd;
    ngx_uint_t                     services;
    ngx_file_info_t                fi;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_gateway_state_ctx_t   ctx;

    fd = ngx_open_file(gmcf->state_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                          "gateway: cannot open state file \"%V\"",
                          &gmcf->state_file);
        }

        return NGX_DECLINED;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_GATEWAY_STATE_MAX)
    {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "gateway: state file \"%V\" is unusable",
                      &gmcf->state_file);
        goto failed;
    }

    buf = ngx_alloc((size_t) ngx_file_size(&fi) + 1, log);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));
    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "gateway: cannot read state file \"%V\"",
                      &gmcf->state_file);
        goto failed;
    }

    (void) ngx_close_file(fd);
    fd = NGX_INVALID_FILE;

    p = buf;
    last = buf + n;

    ctx.gmcf = gmcf;
    ctx.log = log;
    ctx.line = 0;
    ctx.loaded = 0;
    ctx.skipped = 0;

    ngx_shmtx_lock(&gmcf->shpool->mutex);

    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        ctx.line++;

        if (eol > p) {
            ngx_http_gateway_state_load_line(&ctx, p, eol - p);
        }

        p = eol + 1;
    }

    /*
     * Redis mode: revisions say "nothing changed" for services that lost
     * an instance here; revision 0 makes the first resync fetch them all.
     */

    if (ctx.skipped && gmcf->redis) {
        node = gmcf->sh->rbtree.root;
        sentinel = gmcf->sh->rbtree.sentinel;

        for (node = (node == sentinel) ? NULL : ngx_rbtree_min(node, sentinel);
             node;
             node = ngx_rbtree_next(&gmcf->sh->rbtree, node))
        {
            ((ngx_http_gateway_service_t *) node)->revision = 0;
        }
    }

    services = gmcf->sh->nservices;
    gmcf->sh->saved = gmcf->sh->generation;

    ngx_http_gateway_write_end(gmcf);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "gateway: loaded %ui services from state file \"%V\"",
                  services, &gmcf->state_file);

    if (ctx.skipped) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "gateway: state file \"%V\": %ui instances loaded, "
                      "%ui entries skipped", &gmcf->state_file, ctx.loaded,
                      ctx.skipped);
    }

    ngx_free(buf);

    return NGX_OK;

failed:

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (buf) {
        ngx_free(buf);
    }

    return NGX_ERROR;
}


static void
ngx_http_gateway_state_load_line(ngx_http_gateway_state_ctx_t *ctx,
    u_char *line, size_t len)
{
    int                          ntoks, name, rev, inst, insts, i, k;
    int64_t                      revision;
    ngx_str_t                    sname;
    const char                  *err;
    ngx_gateway_json_tok_t      *toks;
    ngx_http_gateway_service_t  *svc;

    ntoks = (int) (len / 2 + 2);

    toks = ngx_alloc(ntoks * sizeof(ngx_gateway_json_tok_t), ctx->log);
    if (toks == NULL) {
        ctx->skipped++;
        return;
    }

    ntoks = ngx_gateway_json_parse((char *) line, len, toks, ntoks, 16);

    if (ntoks <= 0 || toks[0].type != NGX_GATEWAY_JSON_OBJECT) {
        err = "not a JSON object";
        goto skip;
    }

    if (ngx_gateway_json_object_get(toks, 0, "version", 7) >= 0) {
        k = ngx_gateway_json_object_get(toks, 0, "marker", 6);

        if (k >= 0 && toks[k].type == NGX_GATEWAY_JSON_STRING
            && ngx_http_gateway_valid_marker(toks[k].start, toks[k].len))
        {
            ctx->gmcf->sh->marker_len = toks[k].len;
            ngx_memcpy(ctx->gmcf->sh->marker, toks[k].start, toks[k].len);
        }

        goto done;
    }

    name = ngx_gateway_json_object_get(toks, 0, "name", 4);
    rev = ngx_gateway_json_object_get(toks, 0, "revision", 8);
    inst = ngx_gateway_json_object_get(toks, 0, "instance", 8);
    insts = ngx_gateway_json_object_get(toks, 0, "instances", 9);

    if (name < 0
        || toks[name].type != NGX_GATEWAY_JSON_STRING
        || !ngx_gateway_valid_name(toks[name].start, toks[name].len))
    {
        err = "no valid service name";
        goto skip;
    }

    sname.data = (u_char *) toks[name].start;
    sname.len = toks[name].len;

    if (rev < 0 || ngx_gateway_json_int(&toks[rev], &revision) != 0
        || revision < 0)
    {
        revision = 0;
    }

    if (inst >= 0) {

        /* version 2: one instance */

        ngx_http_gateway_state_load_instance(ctx, toks, inst, &sname,
                                             (uint64_t) revision);
        goto done;
    }

    if (insts >= 0 && toks[insts].type == NGX_GATEWAY_JSON_ARRAY) {

        /* version 1: a service with all its instances */

        k = insts + 1;

        for (i = 0; i < toks[insts].size; i++, k = toks[k].next) {
            ngx_http_gateway_state_load_instance(ctx, toks, k, &sname,
                                                 (uint64_t) revision);
        }

        if (toks[insts].size > 0) {
            goto done;
        }
    }

    /* a service without instances */

    svc = ngx_http_gateway_service_get_locked(ctx->gmcf, &sname);
    if (svc == NULL) {
        err = "the zone is full";
        goto skip;
    }

    svc->revision = (uint64_t) revision;

done:

    ngx_free(toks);
    return;

skip:

    ngx_http_gateway_state_skip(ctx, NULL, NULL, err);
    ngx_free(toks);
}


static void
ngx_http_gateway_state_load_instance(ngx_http_gateway_state_ctx_t *ctx,
    ngx_gateway_json_tok_t *toks, int k, ngx_str_t *service,
    uint64_t revision)
{
    int                          id;
    ngx_str_t                    sid;
    ngx_uint_t                   created;
    const char                  *err;
    ngx_gateway_record_t         rec;
    ngx_http_gateway_service_t  *svc;

    if (toks[k].type != NGX_GATEWAY_JSON_OBJECT) {
        ngx_http_gateway_state_skip(ctx, service, NULL,
                                    "not a JSON object");
        return;
    }

    id = ngx_gateway_json_object_get(toks, k, "id", 2);

    if (id < 0
        || toks[id].type != NGX_GATEWAY_JSON_STRING
        || !ngx_gateway_valid_name(toks[id].start, toks[id].len))
    {
        ngx_http_gateway_state_skip(ctx, service, NULL, "no valid id");
        return;
    }

    sid.data = (u_char *) toks[id].start;
    sid.len = toks[id].len;

    ngx_gateway_record_init(&rec);
    err = NULL;

    if (ngx_gateway_record_from_json(toks, k, &rec,
                                     NGX_GATEWAY_RECORD_LENIENT, &err)
        != 0)
    {
        ngx_http_gateway_state_skip(ctx, service, &sid, err);
        return;
    }

    if (!ngx_http_gateway_addr_allowed(ctx->gmcf, &rec.addr)) {
        ngx_http_gateway_state_skip(ctx, service, &sid, "its address is not "
                                    "in gateway_registry_allow");
        return;
    }

    if (ngx_http_gateway_upsert_locked(ctx->gmcf, service, &sid, &rec,
                                       &created)
        != NGX_OK)
    {
        svc = ngx_http_gateway_service_lookup(ctx->gmcf, service);

        if (svc && svc->ninstances == 0) {
            ngx_http_gateway_service_delete_locked(ctx->gmcf, svc);
        }

        ngx_http_gateway_state_skip(ctx, service, &sid, "the zone is full");
        return;
    }

    svc = ngx_http_gateway_service_lookup(ctx->gmcf, service);
    if (svc) {
        svc->revision = revision;
    }

    ctx->loaded++;
}


/* names are logged only once they are known to be valid */

static void
ngx_http_gateway_state_skip(ngx_http_gateway_state_ctx_t *ctx,
    ngx_str_t *service, ngx_str_t *id, const char *err)
{
    ctx->skipped++;

    if (id) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "gateway: state file \"%V\": instance \"%V\" of "
                      "service \"%V\" skipped: %s", &ctx->gmcf->state_file,
                      id, service, err);

    } else if (service) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "gateway: state file \"%V\": line %ui: an instance of "
                      "service \"%V\" skipped: %s", &ctx->gmcf->state_file,
                      ctx->line, service, err);

    } else {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "gateway: state file \"%V\": line %ui skipped: %s",
                      &ctx->gmcf->state_file, ctx->line, err);
    }
}
