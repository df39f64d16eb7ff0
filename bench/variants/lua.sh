# variant "lua": the OpenResty way (Kong/APISIX style) on Debian's nginx:
# lua-nginx-module + lua-resty-core, balancer_by_lua choosing round robin over
# peers held in a lua_shared_dict; worker 0 refreshes the dict every second
# from the same Redis keys the gateway reads (nginx.redis client); every
# worker keeps a parsed copy and re-parses only when the dict's version moves.
VARIANT_DESC[lua]="nginx + lua balancer_by_lua, peers from Redis via lua_shared_dict, keepalive 32"

variant_lua_start() {       # DIR PORT [SERVICE]
    local dir=$1 port=$2 svc=${3:-users}
    cat > "$dir/bench_lb.lua" <<'LUA'
-- peers of one service: Redis -> lua_shared_dict (worker 0, every second)
-- -> per-worker parsed array (when the version changes) -> round robin.
local balancer = require "ngx.balancer"

local _M = {}
local dict = ngx.shared.bench_peers
local version = -1
local peers, n, idx = {}, 0, 0

function _M.sync(premature, port, svc)
    if premature then return end
    local redis = require "nginx.redis"
    local r = redis:new()
    r:set_timeout(1000)
    local ok, err = r:connect("127.0.0.1", port)
    if not ok then
        ngx.log(ngx.ERR, "bench: redis connect: ", err)
        return
    end
    local ids = r:smembers("gateway:svc:" .. svc .. ":ids")
    if type(ids) ~= "table" then
        r:close()
        return
    end
    table.sort(ids)
    local addrs = {}
    for _, id in ipairs(ids) do
        local a = r:hget("gateway:svc:" .. svc .. ":inst:" .. id, "address")
        if type(a) == "string" then addrs[#addrs + 1] = a end
    end
    r:set_keepalive(60000, 2)
    local list = table.concat(addrs, " ")
    if dict:get("peers") ~= list then
        dict:set("peers", list)
        dict:incr("version", 1, 0)
    end
end

function _M.balance()
    local v = dict:get("version") or 0
    if v ~= version then
        local new = {}
        for host, p in (dict:get("peers") or ""):gmatch("([%d%.]+):(%d+)") do
            new[#new + 1] = { host, tonumber(p) }
        end
        peers, n, version = new, #new, v
    end
    if n == 0 then
        return ngx.exit(503)
    end
    if not balancer.get_last_failure() then
        balancer.set_more_tries(n - 1)
    end
    idx = idx % n + 1
    local peer = peers[idx]
    local ok, err = balancer.set_current_peer(peer[1], peer[2])
    if not ok then
        ngx.log(ngx.ERR, "bench: set_current_peer: ", err)
        return ngx.exit(500)
    end
end

return _M
LUA
    {
        echo "load_module $NGX_MODULES_DIR/ndk_http_module.so;"
        echo "load_module $NGX_MODULES_DIR/ngx_http_lua_module.so;"
        nginx_main_conf "$dir" 1
        echo "http {"
        nginx_http_common "$dir"
        cat <<CONF
    lua_package_path "$dir/?.lua;;";
    lua_shared_dict bench_peers 1m;
    init_worker_by_lua_block {
        if ngx.worker.id() == 0 then
            local lb = require "bench_lb"
            ngx.timer.at(0, lb.sync, $REDIS_PORT, "$svc")
            ngx.timer.every(1, lb.sync, $REDIS_PORT, "$svc")
        end
    }
    upstream lua_rr {
        server 0.0.0.1;   # placeholder, balancer_by_lua picks the peer
        balancer_by_lua_block {
            require("bench_lb").balance()
        }
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
$(nginx_proxy_location lua_rr)
        }
    }
}
CONF
    } > "$dir/nginx.conf"
    start_nginx lua "$dir" "$PROXY_CPU" "$port"
    VARIANT_PID=$NGINX_PID
}
