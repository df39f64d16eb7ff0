
/*
 * Copyright (C) ngx_gateway authors
 */


#include "ngx_http_gateway.h"
#include "ngx_http_gateway_redis_schema.h"


/*
 * The registry in Redis (docs/registry.md): every key name is built here,
 * by the Lua helpers below for the scripts and by the formats and the
 * parser of ngx_http_gateway_redis_schema.h for the C side.  P is the
 * prefix (gateway_registry prefix=).
 *
 *     P services            SET of service names
 *     P svc:NAME:rev        STRING, the service's revision
 *     P svc:NAME:ids        SET of instance ids
 *     P svc:NAME:inst:ID    HASH, one instance; its key TTL is the heartbeat
 *     P events              channel of change notices by hand: NAME
 *     P feed                channel of the scripts' change notices, with
 *                           the change and its time (feed() below)
 *     P epoch               STRING, the registry's marker
 *     P rev                 STRING, the registry's revision: every change
 *     P rev:time            STRING, Redis time (ms) of the last change
 *     P changes             ZSET of service names, score: the registry's
 *                           revision of the service's last change
 *     P deadlines           ZSET of "NAME:ID", score: the heartbeat's
 *                           deadline (Redis time, ms)
 *     P sweeper             STRING with a TTL, the lease of the gateway
 *                           that sweeps expired heartbeats
 *
 * Names and ids never hold ':', so "NAME:ID" splits at its only colon.
 * Scripts read the clock (TIME) before they write: effects replication,
 * the default from Redis 5 on, asked for explicitly for Redis 4.
 */

/*
 * The key helpers; NGX_HTTP_GATEWAY_LUA_KEYS adds what writers need.  A
 * script that only reads (the snapshot, run by every gateway for every
 * change) takes the short form: each helper is a closure made at each call.
 */

#define NGX_HTTP_GATEWAY_LUA_READ                                             \
    "local function k_services(p) return p .. 'services' end\n"               \
    "local function k_epoch(p) return p .. 'epoch' end\n"                     \
    "local function k_rev(p, s) return p .. 'svc:' .. s .. ':rev' end\n"      \
    "local function k_ids(p, s) return p .. 'svc:' .. s .. ':ids' end\n"      \
    "local function k_log(p, s) return p .. 'svc:' .. s .. ':log' end\n"      \
    "local function k_logrev(p, s) return k_log(p, s) .. ':rev' end\n"        \
    "local function k_logbase(p, s) return k_log(p, s) .. ':base' end\n"      \
    "local function k_inst(p, s, id)\n"                                       \
    "  return p .. 'svc:' .. s .. ':inst:' .. id\n"                           \
    "end\n"                                                                   \
    "local function epoch(p)\n"                                               \
    "  local e = redis.pcall('GET', k_epoch(p))\n"                            \
    "  if type(e) ~= 'string' then return false end\n"                        \
    "  return e\n"                                                            \
    "end\n"

#define NGX_HTTP_GATEWAY_LUA_KEYS                                             \
    NGX_HTTP_GATEWAY_LUA_READ                                                 \
    "if redis.replicate_commands then redis.replicate_commands() end\n"       \
    "local function k_regrev(p) return p .. 'rev' end\n"                      \
    "local function k_regtime(p) return p .. 'rev:time' end\n"                \
    "local function k_changes(p) return p .. 'changes' end\n"                 \
    "local function k_deadlines(p) return p .. 'deadlines' end\n"             \
    "local function k_sweeper(p) return p .. 'sweeper' end\n"                 \
    "local function now_ms()\n"                                               \
    "  local t = redis.call('TIME')\n"                                        \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"    \
    "end\n"                                                                   \
    "local function k_feed(p) return p .. 'feed' end\n"                       \
    /*                                                                        \
     * the change notice on P feed, netstrings ("LEN:BYTES,"): format 1,      \
     * epoch, service, revision, listed, Redis time in us, registry           \
     * revision, the number of instances and each one's id, number of         \
     * fields and names and values (0 fields: gone), or "-" when they are     \
     * not carried (fetch them)                                               \
     */                                                                       \
    "local function ns(v) return #v .. ':' .. v .. ',' end\n"                 \
    "local function feed(p, s, r, g, ids)\n"                                  \
    "  local t = redis.call('TIME')\n"                                        \
    "  local l = redis.pcall('SISMEMBER', k_services(p), s)\n"                \
    "  local out = {ns('1'), ns(epoch(p) or ''), ns(s),\n"                    \
    "    ns(type(r) == 'number' and string.format('%.0f', r) or '0'),\n"      \
    "    ns(l == 1 and '1' or '0'),\n"                                        \
    "    ns(t[1] .. string.format('%06d', tonumber(t[2]))),\n"                \
    "    ns(type(g) == 'number' and string.format('%.0f', g) or '0')}\n"      \
    "  local body, size = nil, 0\n"                                           \
    "  if type(r) == 'number' and ids and #ids <= 64 then\n"                  \
    "    body = {ns(string.format('%d', #ids))}\n"                            \
    "    for _, id in ipairs(ids) do\n"                                       \
    "      local h = redis.pcall('HGETALL', k_inst(p, s, id))\n"              \
    "      if type(h) ~= 'table' or h.err then body = nil break end\n"        \
    "      body[#body + 1] = ns(id) .. ns(string.format('%d', #h / 2))\n"     \
    "      for _, v in ipairs(h) do\n"                                        \
    "        body[#body + 1] = ns(v)\n"                                       \
    "        size = size + #v\n"                                              \
    "      end\n"                                                             \
    "      if size > 65536 then body = nil break end\n"                       \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  return table.concat(out) .. (body and table.concat(body) or ns('-'))\n"\
    "end\n"                                                                   \
    /*                                                                       \
     * the end of every change: both revisions, the time, the notice, and    \
     * the ids changed into the service's log (nil: not known, the log then  \
     * starts afresh); the log covers the revisions above its base           \
     */                                                                      \
    "local function logged(p, s, r, ids)\n"                                   \
    "  local lk = k_log(p, s)\n"                                              \
    "  local lr = tonumber(redis.pcall('GET', k_logrev(p, s)))\n"             \
    "  if lr ~= r - 1 or not ids then\n"                                      \
    "    redis.call('SET', k_logbase(p, s), ids and r - 1 or r)\n"            \
    "  end\n"                                                                 \
    "  for _, id in ipairs(ids or {}) do redis.pcall('ZADD', lk, r, id) end\n"\
    "  redis.call('SET', k_logrev(p, s), r)\n"                                \
    "  local n = redis.pcall('ZCARD', lk)\n"                                  \
    "  local keep = 2 * redis.call('SCARD', k_ids(p, s)) + 64\n"              \
    "  if type(n) == 'number' and n > keep then\n"                            \
    "    local cut = redis.call('ZRANGE', lk, n - keep - 1, n - keep - 1,\n"  \
    "                           'WITHSCORES')\n"                              \
    "    redis.call('ZREMRANGEBYRANK', lk, 0, n - keep - 1)\n"                \
    "    local b = tonumber(redis.pcall('GET', k_logbase(p, s))) or 0\n"      \
    "    if tonumber(cut[2]) > b then\n"                                      \
    "      redis.call('SET', k_logbase(p, s), cut[2])\n"                      \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "local function changed(p, s, strict, ids)\n"                             \
    "  local incr = strict and redis.call or redis.pcall\n"                   \
    "  local r = incr('INCR', k_rev(p, s))\n"                                 \
    "  if type(r) == 'number' then pcall(logged, p, s, r, ids) end\n"         \
    "  local g = redis.pcall('INCR', k_regrev(p))\n"                          \
    "  if type(g) == 'number' then\n"                                         \
    "    redis.call('SET', k_regtime(p), string.format('%.0f', now_ms()))\n"  \
    "    redis.pcall('ZADD', k_changes(p), g, s)\n"                           \
    "  end\n"                                                                 \
    "  redis.call('PUBLISH', k_feed(p), feed(p, s, r, g, ids))\n"             \
    "  return r\n"                                                            \
    "end\n"                                                                   \
    /* the heartbeat's deadline follows the key's TTL */                     \
    "local function deadline(p, s, id)\n"                                     \
    "  local t = redis.call('PTTL', k_inst(p, s, id))\n"                      \
    "  if t > 0 then\n"                                                       \
    "    redis.pcall('ZADD', k_deadlines(p), now_ms() + t, s .. ':' .. id)\n" \
    "  else\n"                                                                \
    "    redis.pcall('ZREM', k_deadlines(p), s .. ':' .. id)\n"               \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    /* drops an id whose key is gone; true if it was listed */               \
    "local function gone(p, s, id, later)\n"                                  \
    "  redis.pcall('ZREM', k_deadlines(p), s .. ':' .. id)\n"                 \
    "  if redis.call('SREM', k_ids(p, s), id) == 0 then return false end\n"   \
    "  if redis.call('SCARD', k_ids(p, s)) == 0 then\n"                       \
    "    redis.call('SREM', k_services(p), s)\n"                              \
    "  end\n"                                                                 \
    "  if not later then changed(p, s, false, {id}) end\n"                    \
    "  return true\n"                                                         \
    "end\n"                                                                   \
    /* the sweep lease: at most one gateway holds it, for ms; 0: not us */   \
    "local function lease(p, me, ms)\n"                                       \
    "  local cur = redis.pcall('GET', k_sweeper(p))\n"                        \
    "  local r\n"                                                             \
    "  if cur == me then\n"                                                   \
    "    r = redis.pcall('PEXPIRE', k_sweeper(p), ms)\n"                      \
    "    if r == 1 then return 1 end\n"                                       \
    "  elseif cur == false then\n"                                            \
    "    r = redis.pcall('SET', k_sweeper(p), me, 'PX', ms)\n"                \
    "    if type(r) == 'table' and r.ok then return 2 end\n"                  \
    "  end\n"                                                                 \
    "  return 0\n"                                                            \
    "end\n"                                                                   \
    "local function regrev(p)\n"                                              \
    "  local g = redis.pcall('GET', k_regrev(p))\n"                           \
    "  if type(g) ~= 'string' or not tonumber(g) then return '0' end\n"       \
    "  return g\n"                                                            \
    "end\n"                                                                   \


/*
 * The periodic resync, O(1) when nothing changed.  ARGV = prefix, the
 * registry revision seen, the gateway's lease id, the lease in ms, the
 * most expired heartbeats to sweep.  With the lease: the heartbeats whose
 * deadline passed (a key that still has a TTL, extended by hand, gets its
 * new deadline).  Then the services changed since the revision seen.
 * {epoch, revision, lease (0 no, 1 held, 2 taken now), swept ("NAME:ID"
 * that expired), due (how many were due), complete (1: the names are all
 * that changed), name, revision, ...}
 */

const ngx_str_t  ngx_http_gateway_lua_tick = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, seen = ARGV[1], ARGV[2]\n"
    "local held = lease(p, ARGV[3], tonumber(ARGV[4]))\n"
    "local swept, ndue = {}, 0\n"
    /* a Redis that refuses writes fails the sweep, not the resync */
    "if held > 0 then pcall(function()\n"
    "  local now = now_ms()\n"
    "  local due = redis.pcall('ZRANGEBYSCORE', k_deadlines(p), '-inf', now,\n"
    "                          'LIMIT', 0, tonumber(ARGV[5]))\n"
    "  if type(due) ~= 'table' or due.err then due = {} end\n"
    "  ndue = #due\n"
    "  for _, m in ipairs(due) do\n"
    "    local s, id = string.match(m, '^([^:]+):([^:]+)$')\n"
    "    if not s then\n"
    "      redis.call('ZREM', k_deadlines(p), m)\n"
    "    else\n"
    "      local t = redis.call('PTTL', k_inst(p, s, id))\n"
    "      if t > 0 then\n"
    "        redis.call('ZADD', k_deadlines(p), now + t, m)\n"
    "      elseif t == -1 then\n"
    "        redis.call('ZREM', k_deadlines(p), m)\n"
    "      elseif gone(p, s, id) then\n"
    "        swept[#swept + 1] = m\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end) end\n"
    "local g = regrev(p)\n"
    "local out = {epoch(p), g, held, swept, ndue, 1}\n"
    "if g == seen then return out end\n"
    "local top = redis.pcall('ZREVRANGE', k_changes(p), 0, 0, 'WITHSCORES')\n"
    "local gn, sn = tonumber(g), tonumber(seen)\n"
    "if not sn or type(top) ~= 'table' or top.err or #top < 2\n"
    "   or tonumber(top[2]) < gn or gn < sn then\n"
    "  out[6] = 0\n"
    "  return out\n"
    "end\n"
    "local names = redis.call('ZRANGEBYSCORE', k_changes(p), '(' .. seen,\n"
    "                         '+inf', 'LIMIT', 0, 1024)\n"
    "if #names == 1024 then out[6] = 0 return out end\n"
    "for _, s in ipairs(names) do\n"
    "  local rev = redis.pcall('GET', k_rev(p, s))\n"
    "  if type(rev) ~= 'string' then rev = '0' end\n"
    "  out[#out + 1] = s\n"
    "  out[#out + 1] = rev\n"
    "end\n"
    "return out\n");


/*
 * The full comparison, a page of P services at a time (SSCAN).  ARGV =
 * prefix, cursor, audit (1: the sweeper's, which also drops ids whose key
 * is gone and gives a deadline to keys with a TTL that have none, e.g.
 * written by hand or before the deadlines existed).  {epoch, registry
 * revision, next cursor, name, revision, ...}
 */

const ngx_str_t  ngx_http_gateway_lua_revisions = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, audit = ARGV[1], ARGV[3] == '1'\n"
    "local out = {epoch(p), regrev(p), '0'}\n"
    "local page = redis.pcall('SSCAN', k_services(p), ARGV[2], 'COUNT', 512)\n"
    "if type(page) ~= 'table' or page.err then return out end\n"
    "out[3] = page[1]\n"
    "for _, s in ipairs(page[2]) do\n"
    "  if audit and string.find(s, ':', 1, true) == nil then pcall(function()\n"
    "    local ids = redis.pcall('SMEMBERS', k_ids(p, s))\n"
    /* one change per service, however many of its ids are gone */
    "    if type(ids) == 'table' and not ids.err then\n"
    "      local n = {}\n"
    "      for _, id in ipairs(ids) do\n"
    "        local t = redis.call('PTTL', k_inst(p, s, id))\n"
    "        if t == -2 then\n"
    "          if gone(p, s, id, true) then n[#n + 1] = id end\n"
    "        elseif t > 0 and not redis.call('ZSCORE', k_deadlines(p),\n"
    "                                        s .. ':' .. id) then\n"
    "          deadline(p, s, id)\n"
    "        end\n"
    "      end\n"
    "      if #n > 0 then changed(p, s, false, n) end\n"
    "    end\n"
    "  end) end\n"
    "  local rev = redis.pcall('GET', k_rev(p, s))\n"
    "  if type(rev) == 'table' then rev = 'WRONGTYPE'\n"
    "  elseif type(rev) ~= 'string' then rev = '0' end\n"
    "  out[#out + 1] = s\n"
    "  out[#out + 1] = rev\n"
    "end\n"
    "return out\n");


/*
 * ARGV = prefix, then per service its name and the revision the gateway
 * has (0: none).  {epoch, {name, listed, revision, {id, {field, value, ...}
 * or "WRONGTYPE", ...}, known}, ...}: with known > 0 the instances are only
 * those changed since that revision, an empty hash for one that is gone
 * (the service's log covers it); with 0, all of them.  A notice without a
 * new revision (a change by hand) gets them all.
 */

const ngx_str_t  ngx_http_gateway_lua_snapshot = ngx_string(
    NGX_HTTP_GATEWAY_LUA_READ
    "local p = ARGV[1]\n"
    "local out = {epoch(p)}\n"
    "for i = 2, #ARGV - 1, 2 do\n"
    "  local s, known = ARGV[i], tonumber(ARGV[i + 1]) or 0\n"
    "  local rev = redis.pcall('GET', k_rev(p, s))\n"
    "  if type(rev) == 'table' then rev = 'WRONGTYPE'\n"
    "  elseif type(rev) ~= 'string' then rev = '0' end\n"
    "  local listed = redis.pcall('SISMEMBER', k_services(p), s)\n"
    "  if type(listed) ~= 'number' then listed = 0 end\n"
    "  local lr = tonumber(redis.pcall('GET', k_logrev(p, s)))\n"
    "  local lb = tonumber(redis.pcall('GET', k_logbase(p, s)))\n"
    "  if not (known > 0 and lr and lb and tostring(lr) == rev\n"
    "          and lb <= known and known < lr) then known = 0 end\n"
    "  local insts = {}\n"
    "  local ids\n"
    "  if known > 0 then\n"
    "    ids = redis.pcall('ZRANGEBYSCORE', k_log(p, s), '(' .. known,\n"
    "                      '+inf')\n"
    "  else\n"
    "    ids = redis.pcall('SMEMBERS', k_ids(p, s))\n"
    "  end\n"
    "  if type(ids) == 'table' and not ids.err then\n"
    "    for _, id in ipairs(ids) do\n"
    "      local h = redis.pcall('HGETALL', k_inst(p, s, id))\n"
    "      if type(h) == 'table' and not h.err then\n"
    "        if #h > 0 or known > 0 then\n"
    "          insts[#insts + 1] = id\n"
    "          insts[#insts + 1] = h\n"
    "        end\n"
    "      else\n"
    "        insts[#insts + 1] = id\n"
    "        insts[#insts + 1] = 'WRONGTYPE'\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    insts = 'WRONGTYPE'\n"
    "  end\n"
    "  out[#out + 1] = {s, listed, rev, insts, known}\n"
    "end\n"
    "return out\n");


/*
 * Writes back one service from the gateway's zone after Redis lost the
 * registry: ARGV = prefix, name, then per instance its id, the number of
 * its fields and a name and a value each.  Keys that exist again are left
 * alone.
 */

const ngx_str_t  ngx_http_gateway_lua_restore = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s = ARGV[1], ARGV[2]\n"
    "local n, i, done = 0, 3, {}\n"
    "while i <= #ARGV do\n"
    "  local id, m = ARGV[i], tonumber(ARGV[i + 1])\n"
    "  local k = k_inst(p, s, id)\n"
    "  if redis.call('EXISTS', k) == 0 then\n"
    "    redis.call('HSET', k, unpack(ARGV, i + 2, i + 1 + 2 * m))\n"
    "    local ttl = tonumber(redis.call('HGET', k, 'ttl') or '0')\n"
    "    if ttl and ttl > 0 then redis.call('EXPIRE', k, ttl) end\n"
    "    deadline(p, s, id)\n"
    "    n = n + 1\n"
    "    done[n] = id\n"
    "  end\n"
    "  redis.call('SADD', k_ids(p, s), id)\n"
    "  i = i + 2 + 2 * m\n"
    "end\n"
    "redis.call('SADD', k_services(p), s)\n"
    "if n > 0 then changed(p, s, false, done) end\n"
    "return n\n");


/*
 * ARGV = prefix, service, id of an instance key that expired (the
 * sweeper's, on a keyspace notification): "NAME:ID" if this removed it
 */

const ngx_str_t  ngx_http_gateway_lua_expire = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s, id = ARGV[1], ARGV[2], ARGV[3]\n"
    "if redis.call('EXISTS', k_inst(p, s, id)) == 0 and gone(p, s, id) then\n"
    "  return s .. ':' .. id\n"
    "end\n"
    "return 0\n");


/*
 * ARGV = prefix, the gateway's lease id: a gateway that stops gives the
 * sweep lease back, if it still holds it, so that another one takes it at
 * its next tick
 */

const ngx_str_t  ngx_http_gateway_lua_release = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "if redis.call('GET', k_sweeper(ARGV[1])) == ARGV[2] then\n"
    "  return redis.call('DEL', k_sweeper(ARGV[1]))\n"
    "end\n"
    "return 0\n");


/*
 * The admin API's writes.  ARGV: prefix, service, id, then (register,
 * patch) a field name and its value each; HSET in Redis 4+ takes many
 * pairs.  Replies: {0} when there is no such instance, else {1, revision}
 * and, for patch and heartbeat, the instance's hash as it is now.  A
 * heartbeat moves the deadline only: no revision, no notice, no refetch.
 */

const ngx_str_t  ngx_http_gateway_lua_register = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s, id = ARGV[1], ARGV[2], ARGV[3]\n"
    "local k = k_inst(p, s, id)\n"
    "for _, key in ipairs({k_ids(p, s), k_services(p)}) do\n"
    "  local t = redis.call('TYPE', key).ok\n"
    "  if t ~= 'set' and t ~= 'none' then\n"
    "    return redis.error_reply(key .. ' is not a set')\n"
    "  end\n"
    "end\n"
    "local r = redis.call('TYPE', k_rev(p, s)).ok\n"
    "if r ~= 'none' and (r ~= 'string'\n"
    "    or not tonumber(redis.call('GET', k_rev(p, s)))) then\n"
    "  return redis.error_reply(k_rev(p, s) .. ' is not an integer')\n"
    "end\n"
    "local existed = redis.call('EXISTS', k)\n"
    "redis.call('DEL', k)\n"
    "redis.call('HSET', k, unpack(ARGV, 4))\n"
    "local t = tonumber(redis.call('HGET', k, 'ttl') or '0') or 0\n"
    "if t > 0 then redis.call('EXPIRE', k, t) end\n"
    "deadline(p, s, id)\n"
    "redis.call('SADD', k_ids(p, s), id)\n"
    "redis.call('SADD', k_services(p), s)\n"
    "local rev = changed(p, s, true, {id})\n"
    "return {existed, rev}\n");

const ngx_str_t  ngx_http_gateway_lua_patch = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s, id = ARGV[1], ARGV[2], ARGV[3]\n"
    "local k = k_inst(p, s, id)\n"
    "if redis.call('TYPE', k).ok ~= 'hash' then return {0} end\n"
    "for i = 4, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end\n"
    "local t = tonumber(redis.call('HGET', k, 'ttl') or '0') or 0\n"
    "if t > 0 then redis.call('EXPIRE', k, t) else\n"
    "  redis.call('PERSIST', k) end\n"
    "deadline(p, s, id)\n"
    "local rev = changed(p, s, true, {id})\n"
    "return {1, rev, redis.call('HGETALL', k)}\n");

const ngx_str_t  ngx_http_gateway_lua_heartbeat = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s, id = ARGV[1], ARGV[2], ARGV[3]\n"
    "local k = k_inst(p, s, id)\n"
    "if redis.call('TYPE', k).ok ~= 'hash' then return {0} end\n"
    "local t = tonumber(redis.call('HGET', k, 'ttl') or '0') or 0\n"
    "if t > 0 then\n"
    "  redis.call('EXPIRE', k, t)\n"
    "  deadline(p, s, id)\n"
    "end\n"
    "return {1, 0, redis.call('HGETALL', k)}\n");

const ngx_str_t  ngx_http_gateway_lua_deregister = ngx_string(
    NGX_HTTP_GATEWAY_LUA_KEYS
    "local p, s, id = ARGV[1], ARGV[2], ARGV[3]\n"
    "local d = redis.call('DEL', k_inst(p, s, id))\n"
    "redis.pcall('ZREM', k_deadlines(p), s .. ':' .. id)\n"
    "local r = redis.call('SREM', k_ids(p, s), id)\n"
    "if d + r == 0 then return {0} end\n"
    "if redis.call('SCARD', k_ids(p, s)) == 0 then\n"
    "  redis.call('SREM', k_services(p), s)\n"
    "end\n"
    "local rev = changed(p, s, true, {id})\n"
    "return {1, rev}\n");


static redisReply *
ngx_http_gateway_feed_string(redisReply *node, ngx_gateway_feed_item_t *v)
{
    node->type = REDIS_REPLY_STRING;
    node->str = v->data;
    node->len = v->len;

    return node;
}


/*
 * P feed's message (feed() in the scripts above, parsed by
 * ngx_gateway_feed_parse()): the instances become one entry of the
 * snapshot script's reply, a delta from the revision before (the records
 * are checked where every record from Redis is).  Every node is allocated
 * for the items the message has: nothing of fixed size holds them.
 */

ngx_int_t
ngx_http_gateway_feed_parse(u_char *p, size_t len,
    ngx_http_gateway_feed_t *feed, ngx_log_t *log, const char **err)
{
    size_t                    nitems, i, j, k, f, m;
    redisReply               *nodes, **ptrs, *entry, *insts, *fields;
    ngx_gateway_feed_t        parsed;
    ngx_gateway_feed_item_t  *item;

    ngx_memzero(feed, sizeof(ngx_http_gateway_feed_t));

    if (ngx_gateway_feed_count((char *) p, len, &nitems, err) != 0) {
        return NGX_ERROR;
    }

    item = ngx_alloc(nitems * sizeof(ngx_gateway_feed_item_t)
                     + (nitems + 6) * (sizeof(redisReply)
                                       + sizeof(redisReply *)),
                     log);
    if (item == NULL) {
        *err = "out of memory";
        return NGX_ERROR;
    }

    feed->mem = item;
    nodes = (redisReply *) (item + nitems);
    ptrs = (redisReply **) (nodes + nitems + 6);
    ngx_memzero(nodes, (nitems + 6) * sizeof(redisReply));

    if (ngx_gateway_feed_parse((char *) p, len, item, nitems, &parsed, err)
        != 0)
    {
        /* the name, if found, is the message's */

        feed->name.data = (u_char *) parsed.name.data;
        feed->name.len = parsed.name.len;

        ngx_free(feed->mem);
        feed->mem = NULL;

        return NGX_ERROR;
    }

    feed->epoch.data = (u_char *) parsed.epoch.data;
    feed->epoch.len = parsed.epoch.len;
    feed->name.data = (u_char *) parsed.name.data;
    feed->name.len = parsed.name.len;
    feed->revision = parsed.revision;
    feed->time_us = parsed.time_us;
    feed->registry = parsed.registry;

    if (!parsed.carried) {
        return NGX_OK;
    }

    /* {name, listed, revision, {id, {field, value, ...}, ...}, known} */

    entry = &nodes[0];
    insts = &nodes[1];
    k = 2;

    entry->type = REDIS_REPLY_ARRAY;
    entry->elements = 5;
    entry->element = ptrs;
    ptrs += 5;

    entry->element[0] = ngx_http_gateway_feed_string(&nodes[k++], &item[2]);
    entry->element[1] = &nodes[k++];
    entry->element[1]->type = REDIS_REPLY_INTEGER;
    entry->element[1]->integer = parsed.listed;
    entry->element[2] = ngx_http_gateway_feed_string(&nodes[k++], &item[3]);
    entry->element[3] = insts;
    entry->element[4] = &nodes[k++];
    entry->element[4]->type = REDIS_REPLY_INTEGER;
    entry->element[4]->integer = (long long) (parsed.revision - 1);

    insts->type = REDIS_REPLY_ARRAY;
    insts->elements = 2 * parsed.ninstances;
    insts->element = ptrs;
    ptrs += 2 * parsed.ninstances;

    for (i = NGX_GATEWAY_FEED_FIRST, f = 0; f < parsed.ninstances; f++) {
        m = item[i].nfields;

        insts->element[2 * f] = ngx_http_gateway_feed_string(&nodes[k++],
                                                             &item[i]);
        fields = &nodes[k++];
        insts->element[2 * f + 1] = fields;

        fields->type = REDIS_REPLY_ARRAY;
        fields->elements = 2 * m;
        fields->element = ptrs;
        ptrs += 2 * m;

        for (i += 2, j = 0; j < 2 * m; j++, i++) {
            fields->element[j] = ngx_http_gateway_feed_string(&nodes[k++],
                                                              &item[i]);
        }
    }

    feed->entry = entry;

    return NGX_OK;
}


/* "P svc:NAME:inst:ID": NAME and ID, not yet validated */

ngx_int_t
ngx_http_gateway_key_parse_inst(ngx_str_t *prefix, u_char *key, size_t len,
    ngx_str_t *service, ngx_str_t *id)
{
    u_char  *p, *last, *sep;

    p = key;
    last = key + len;

    if (len <= prefix->len + 4
        || ngx_strncmp(p, prefix->data, prefix->len) != 0)
    {
        return NGX_DECLINED;
    }

    p += prefix->len;

    if (ngx_strncmp(p, "svc:", 4) != 0) {
        return NGX_DECLINED;
    }

    p += 4;

    sep = ngx_strlchr(p, last, ':');
    if (sep == NULL || last - sep < 6 || ngx_strncmp(sep, ":inst:", 6) != 0) {
        return NGX_DECLINED;
    }

    service->data = p;
    service->len = sep - p;
    id->data = sep + 6;
    id->len = last - id->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_gateway_record_from_hash(ngx_http_gateway_main_conf_t *gmcf,
    redisReply *fields, ngx_gateway_record_t *rec, const char **err)
{
    size_t  f;

    *err = NULL;

    ngx_memzero(rec, sizeof(ngx_gateway_record_t));

    for (f = 0; f + 1 < fields->elements; f += 2) {
        if (fields->element[f]->type != REDIS_REPLY_STRING
            || fields->element[f + 1]->type != REDIS_REPLY_STRING)
        {
            *err = "not a hash of strings";
            return NGX_ERROR;
        }

        if (ngx_gateway_record_set(rec, fields->element[f]->str,
                                   fields->element[f]->len,
                                   fields->element[f + 1]->str,
                                   fields->element[f + 1]->len, err)
            != 0)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_gateway_record_check(rec, err) != 0) {
        return NGX_ERROR;
    }

    ngx_gateway_record_defaults(rec);

    if (!ngx_http_gateway_addr_allowed(gmcf, &rec->addr)) {
        *err = "address is not in gateway_registry_allow";
        return NGX_ERROR;
    }

    return NGX_OK;
}




/*
 * An instance's hash as HSET's arguments: the name and the value of each
 * field of rec in mask.  _size() gives the bytes the values need and the
 * number of arguments; _to_hash() copies the values to *p and fills argv.
 */

size_t
ngx_http_gateway_record_hash_size(const ngx_gateway_record_t *rec,
    unsigned mask, ngx_uint_t *nargs)
{
    char                        buf[NGX_GATEWAY_FIELD_BUF];
    size_t                      size, len;
    const ngx_gateway_field_t  *f;

    size = 0;
    *nargs = 0;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (mask & ngx_gateway_field_bit(f)) {
            (void) ngx_gateway_record_get(rec, f, buf, &len);

            if (f->optional && len == 0 && mask == NGX_GATEWAY_RECORD_ALL) {
                continue;
            }

            size += len;
            *nargs += 2;
        }
    }

    return size;
}


ngx_uint_t
ngx_http_gateway_record_to_hash(const ngx_gateway_record_t *rec,
    unsigned mask, const char **argv, size_t *argvlen, u_char **p)
{
    char                        buf[NGX_GATEWAY_FIELD_BUF];
    size_t                      len;
    ngx_uint_t                  n;
    const char                 *v;
    const ngx_gateway_field_t  *f;

    n = 0;

    for (f = ngx_gateway_fields; f->name; f++) {
        if (!(mask & ngx_gateway_field_bit(f))) {
            continue;
        }

        v = ngx_gateway_record_get(rec, f, buf, &len);

        /* a whole record replaces the hash: a default needs no field */

        if (f->optional && len == 0 && mask == NGX_GATEWAY_RECORD_ALL) {
            continue;
        }

        argv[n] = f->name;
        argvlen[n++] = f->len;
        argv[n] = (const char *) *p;
        argvlen[n++] = len;

        *p = ngx_cpymem(*p, v, len);
    }

    return n;
}
