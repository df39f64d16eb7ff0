# scenario "scale": a registry of SERVICES x INSTANCES (10,000 x 10 = 100,000
# instances) written to Redis (pipelined), then a gateway started on it:
#   - full sync time: from starting nginx until the worker logs "synced N
#     services with M instances from redis" (its error log, at notice level,
#     read every 20 ms: the gateway is asked nothing meanwhile, a dump of the
#     registry costs the worker more than a poll is worth), with the CPU
#     Redis (INFO cpu) and the worker (/proc/PID/stat) spent until then;
#     then one GET /gateway/services must list every service and instance
#   - shared memory: Rss of the zone's mapping (pages really touched), in a
#     256m zone; and whether a 64m zone is enough (sync completes, no
#     allocation failure in the log)
#   - idle cost of the periodic resync (CPU of the gateway worker and Redis,
#     Redis's own idle CPU measured before the gateway started subtracted):
#     the O(1) tick every resync= interval, and the full comparison (with the
#     sweeper's audit of every instance) every full_resync= interval,
#     measured apart with full_resync=2s after a reload
#   - req/s + Ir/request for one service of the big registry vs a gateway
#     whose registry is 1 service x 3 instances; then Ir/request of the same
#     pair with each other balancing method (BENCH_SCALE_BALANCERS)
#
#   BENCH_SCALE_SERVICES (10000) BENCH_SCALE_INSTANCES (10)
#   BENCH_SCALE_ROUNDS (5) BENCH_SCALE_TIMEOUT (120 s) BENCH_SCALE_CALLGRIND (1)
#   BENCH_SCALE_BALANCERS ("random least_request p2c peak_ewma hash"; hash
#                          keys on $request_uri; "" for none)
#   BENCH_SCALE_TABLES ("ketama maglev"; "" for none): the hash kinds with
#                          tables, against a registry of SERVICES x 1
#                          instance (+ users x 3): tables are built for
#                          every service with more than one instance, and
#                          10,000 of them take minutes to build under
#                          valgrind (Maglev's would need 2.5 GiB of zone)

# scale_populate SERVICES INSTANCES PORTS...: the spec's data model, written
# with redis-cli --pipe (no TTL)
scale_populate() {
    local ns=$1 ni=$2
    shift 2
    perl -e '
        my ($ns, $ni, @ports) = @ARGV;
        for my $s (1 .. $ns) {
            my $svc = sprintf "s%05d", $s;
            my @ids;
            for my $i (0 .. $ni - 1) {
                my $port = $ports[($s + $i) % @ports];
                print "HSET gateway:svc:$svc:inst:i$i address 127.0.0.1:$port",
                      " weight 1 zone z", $i % 3, " state up ttl 0",
                      " metadata {\"v\":\"1\"}\n";
                push @ids, "i$i";
            }
            print "SADD gateway:svc:$svc:ids @ids\n";
            print "SADD gateway:services $svc\n";
            print "SET gateway:svc:$svc:rev 1\n";
        }' "$ns" "$ni" "$@" | redis_pipe "$BENCH_TMP/scale/populate.log"
}

# wait_synced LOG T0 TIMEOUT: waits (reading the log every 20 ms, nothing
# asked of the gateway) for the sync worker's notice "synced N services with
# M instances from redis in T ms"; prints "WALL_S N M T", or "timeout"
wait_synced() {
    perl -MTime::HiRes=time,sleep -e '
        my ($log, $t0, $tmo) = @ARGV;
        my ($fh, $buf) = (undef, "");
        while (time - $t0 < $tmo) {
            open $fh, "<", $log or undef $fh unless $fh;
            if ($fh) {
                while (my $l = <$fh>) {
                    if ($l =~ /synced (\d+) services with (\d+) instances from redis in (\d+) ms/) {
                        printf "%.3f %d %d %d\n", time - $t0, $1, $2, $3;
                        exit 0;
                    }
                }
                seek $fh, 0, 1;
            }
            sleep 0.02;
        }
        print "timeout\n";
    ' "$@"
}

# shm_rss_kb MASTER_PID ZONE_KB: largest Rss (kB) of the zone mapping among
# the master and its workers
shm_rss_kb() {
    local pid max=0 v
    for pid in "$1" $(nginx_workers "$1"); do
        v=$(awk -v z="$2" '
            /^[0-9a-f]+-[0-9a-f]+ / { size = 0; hit = 0; next }
            /^Size:/ { hit = ($2 == z) }
            /^Rss:/ && hit { print $2; exit }' "/proc/$pid/smaps" 2>/dev/null)
        [ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v
    done
    echo "$max"
}

# srow METRIC VALUE UNIT TARGET NOTE: a line of bench/results/scale.csv
srow() {
    local note=${5//\"/\'}
    printf '%s,%s,%s,%s,"%s"\n' "$1" "$2" "$3" "$4" "$note" >> "$RESULTS/scale.csv"
}

# scale_cg DIR METHOD VARIANT...: Ir/request of each variant under
# callgrind with gateway_balance METHOD ("": round robin), a row
# ir_per_request_[METHOD_]VARIANT each, with its ratio to the first
scale_cg() {
    local dir=$1 b=$2 first=$3 v name port per ref=""
    shift 2
    for v in "$@"; do
        name=${b:+${b}_}$v
        mkdir -p "$dir/cg-$name"
        port=$(free_port)
        SCALE_BALANCE=$b SCALE_REGISTRY_EXTRA=resync=1h cg_make_conf "$v" "$dir/cg-$name" "$port"
        [ -z "$b" ] || grep -q 'gateway_balance' "$dir/cg-$name/nginx.conf" \
            || die "scale: no gateway_balance for $b"
        CG_READY_PORT=$port
        log "scale callgrind: $v${b:+, gateway_balance $b}"
        cg_run "$v" "$dir/cg-$name" "$port" "$dir/cg-$name/cg" 200 2000
        per=$(( $(cg_total "$dir/cg-$name/cg.1") / 2000 ))
        [ -n "$ref" ] || ref=$per
        srow "ir_per_request_$name" "$per" Ir "" "${b:+gateway_balance $b; }${VARIANT_DESC[$v]}; ratio to $first $(awk -v a="$per" -v b="$ref" 'BEGIN { printf "%.3f", a / b }')"
    done
}

# the gateway_balance directive of SCALE_BALANCE (a method of
# BENCH_SCALE_BALANCERS), none when it is empty
scale_balance() {
    case "${SCALE_BALANCE:-}" in
        "") ;;
        hash) echo 'gateway_balance hash $request_uri;' ;;
        ketama|maglev) echo "gateway_balance hash \$request_uri consistent=$SCALE_BALANCE;" ;;
        *) echo "gateway_balance $SCALE_BALANCE;" ;;
    esac
}

# the big registry routed to a 3-instance service ("users", added to it) and
# to a 10-instance one (s05000); the small registry is "users" alone
variant_scale_big3_start() {
    GW_SERVICE=users GW_ZONE=${SCALE_ZONE:-256m} GW_REDIS_PORT=$SCALE_REDIS_BIG \
        GW_REGISTRY_EXTRA=${SCALE_REGISTRY_EXTRA:-} gateway_variant_start "$1" "$2" "$(scale_balance)"
}
variant_scale_big10_start() {
    GW_SERVICE=s05000 GW_ZONE=${SCALE_ZONE:-256m} GW_REDIS_PORT=$SCALE_REDIS_BIG \
        GW_REGISTRY_EXTRA=${SCALE_REGISTRY_EXTRA:-} gateway_variant_start "$1" "$2" ""
}
variant_scale_small_start() {
    GW_SERVICE=users GW_REDIS_PORT=$SCALE_REDIS_SMALL \
        GW_REGISTRY_EXTRA=${SCALE_REGISTRY_EXTRA:-} gateway_variant_start "$1" "$2" "$(scale_balance)"
}
variant_scale_one3_start() {
    GW_SERVICE=users GW_ZONE=${SCALE_ZONE:-256m} GW_REDIS_PORT=$SCALE_REDIS_ONE \
        GW_REGISTRY_EXTRA=${SCALE_REGISTRY_EXTRA:-} gateway_variant_start "$1" "$2" "$(scale_balance)"
}
variant_scale1m_users_start() {
    GW_SERVICE=users GW_ZONE=${SCALE1M_ZONE:-1024m} GW_REDIS_PORT=$SCALE1M_REDIS \
        gateway_variant_start "$1" "$2" ""
}
VARIANT_DESC[scale_small]="registry of 1 service x 3 instances"
VARIANT_DESC[scale1m_users]="registry of 100000 x 10 (+ users x 3), request to users (3 instances)"
VARIANT_DESC[scale_big3]="registry of 10000 x 10 (+ users x 3), request to users (3 instances)"
VARIANT_DESC[scale_big10]="registry of 10000 x 10 (+ users x 3), request to s05000 (10 instances)"
VARIANT_DESC[scale_one3]="registry of 10000 x 1 (+ users x 3), request to users (3 instances)"

scenario_scale() {
    local ns=${BENCH_SCALE_SERVICES:-10000} ni=${BENCH_SCALE_INSTANCES:-10}
    local rounds=${BENCH_SCALE_ROUNDS:-5} tmo=${BENCH_SCALE_TIMEOUT:-120}
    local dur=${BENCH_DURATION:-4} warm=${BENCH_WARMUP:-1} conns=${BENCH_CONNS:-50}
    local dir=$BENCH_TMP/scale i t0 res port pid
    mkdir -p "$dir"
    local sum=$RESULTS/scale.csv
    echo "metric,value,unit,target,note" > "$sum"

    start_redis "$dir/redis-small" "$LOAD_CPU"; SCALE_REDIS_SMALL=$REDIS_PORT
    local redis_small_pid=$REDIS_PID
    start_redis "$dir/redis-big" "$LOAD_CPU"; SCALE_REDIS_BIG=$REDIS_PORT
    local redis_big_pid=$REDIS_PID
    # 3 backends x 4 ports: the 10 instances of a service are 10 addresses
    start_backends 3 "$LOAD_CPU" 4

    REDIS_PORT=$SCALE_REDIS_SMALL
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done

    REDIS_PORT=$SCALE_REDIS_BIG
    log "scale: writing $ns services x $ni instances to Redis"
    t0=$(date +%s.%N)
    scale_populate "$ns" "$ni" "${BACKEND_PORTS[@]}"
    local pop_s
    pop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    # plus "users" x 3 (the throughput comparison routes to it)
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done
    local nsvc ninst
    nsvc=$(rcli SCARD gateway:services)
    ninst=$(( ns * ni + 3 ))
    SCALE_NSVC=$nsvc SCALE_NINST=$ninst
    [ "$nsvc" = $((ns + 1)) ] || die "scale: Redis holds $nsvc services, expected $((ns + 1))"
    log "scale: Redis holds $nsvc services, $ninst instances, $(rcli DBSIZE) keys (written in ${pop_s}s), used_memory $(rcli INFO memory | awk -F: '/^used_memory_human/ { print $2 }' | tr -d '\r')"
    srow redis_populate "$pop_s" s "" "$ns services x $ni instances via redis-cli --pipe (then users x 3 added: $nsvc services / $ninst instances in all)"

    # Redis's own idle CPU with the registry loaded, no gateway
    local rbase0 rbase1 rbase
    sleep 1
    rbase0=$(redis_cpu_ms); sleep 10; rbase1=$(redis_cpu_ms)
    rbase=$(awk -v a="$rbase0" -v b="$rbase1" 'BEGIN { printf "%.3f", (b - a) / 10 }')

    # --- full sync into a 256m zone: time and shared memory ---------------
    local zone_kb=$((256 * 1024))
    mkdir -p "$dir/sync256"
    port=$(free_port)
    local rc0 rc1 wcpu load chk chk_s chk_i chk_ms
    rc0=$(redis_cpu_ms)
    t0=$(date +%s.%N)
    NGINX_LOG_LEVEL=notice SCALE_ZONE=256m variant_scale_big10_start "$dir/sync256" "$port"
    pid=$VARIANT_PID
    res=$(wait_synced "$dir/sync256/error.log" "$t0" "$tmo")
    rc1=$(redis_cpu_ms)
    wcpu=$(cpu_ms "$(nginx_workers "$pid" | awk '{ print $1 }')")
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "scale: full sync (256m zone): $res (wall s, services, instances, worker's ms)"
    local sync_s="" shm_kb
    if [ "$res" = timeout ]; then
        problem "scale: full sync of $ns x $ni not logged within ${tmo}s"
        srow full_sync_256m timeout s "< 2" "no 'synced ... from redis' notice within ${tmo}s"
    else
        read -r sync_s chk_s chk_i chk_ms <<< "$res"
        [ "$chk_s $chk_i" = "$nsvc $ninst" ] \
            || problem "scale: the sync logged $chk_s services / $chk_i instances, expected $nsvc / $ninst"
        chk=$(wait_registry "$port" "$nsvc" "$ninst" "$(date +%s.%N)" 30)
        [ "${chk#* }" = 1 ] \
            || problem "scale: after the sync's notice GET /gateway/services did not list the whole registry at once ($chk)"
        srow full_sync_256m "$sync_s" s "< 2" "start of nginx until the worker logged 'synced $chk_s services with $chk_i instances from redis in $chk_ms ms' (its log read every 20 ms, the gateway not polled; then one GET /gateway/services listed all of them); 1-min load average $load on $(nproc) cores"
    fi
    srow sync_cpu_redis "$(awk -v a="$rc0" -v b="$rc1" 'BEGIN { printf "%.0f", b - a }')" ms "" "Redis CPU (INFO cpu) from the gateway's start until it was synced"
    srow sync_cpu_worker "$(awk -v w="$wcpu" 'BEGIN { printf "%.0f", w }')" ms "" "the worker's CPU (/proc/PID/stat) from its start until it logged it was synced"
    shm_kb=$(shm_rss_kb "$pid" "$zone_kb")
    srow shm_touched_256m_zone "$(awk -v k="$shm_kb" 'BEGIN { printf "%.1f", k / 1024 }')" MiB "< 64" "Rss of the zone mapping (max over master and worker) after the full sync"
    log "scale: zone pages touched: $((shm_kb / 1024)) MiB of 256 MiB"

    # idle cost of the periodic resync (defaults: resync=5s, full_resync=5m)
    local w cpu0 cpu1 rcpu0 rcpu1 idle_s=${BENCH_SCALE_IDLE:-20} tick full
    sleep 3
    w=$(nginx_workers "$pid")
    cpu0=$(cpu_ms $w); rcpu0=$(redis_cpu_ms)
    sleep "$idle_s"
    cpu1=$(cpu_ms $w); rcpu1=$(redis_cpu_ms)
    tick=$(awk -v a="$rcpu0" -v b="$rcpu1" -v s="$idle_s" -v o="$rbase" 'BEGIN { printf "%.3f", (b - a) / s - o }')
    srow idle_cpu_gateway_worker "$(awk -v a="$cpu0" -v b="$cpu1" -v s="$idle_s" 'BEGIN { printf "%.2f", (b - a) / s }')" "ms per s" "" "idle worker CPU over $idle_s s (the tick every 5 s)"
    srow redis_own_idle_cpu "$rbase" "ms per s" "" "Redis alone with the registry loaded, no gateway (INFO cpu, 10 s): subtracted below"
    srow idle_cpu_redis "$tick" "ms per s" "<= 1" "Redis CPU for one idle gateway over $idle_s s (INFO cpu), defaults: an O(1) tick every 5 s, no full comparison in the window"

    # the full comparison alone: full_resync=2s, after a reload
    sed -i 's|\(gateway_registry zone=[^;]*\);|\1 full_resync=2s;|' "$dir/sync256/nginx.conf"
    kill -HUP "$pid"
    sleep 6
    rcpu0=$(redis_cpu_ms); sleep 10; rcpu1=$(redis_cpu_ms)
    full=$(awk -v a="$rcpu0" -v b="$rcpu1" -v o="$rbase" 'BEGIN { printf "%.1f", ((b - a) / 10 - o) * 2 }')
    srow redis_cpu_per_full_comparison "$full" ms "" "Redis CPU of one full comparison of $nsvc services with the sweeper's audit of $ninst instances (full_resync=2s over 10 s, less the idle tick); amortized over the default full_resync=5m"
    srow idle_cpu_redis_amortized "$(awk -v t="$tick" -v f="$full" 'BEGIN { printf "%.3f", (t > 0 ? t : 0) + f / 300 }')" "ms per s" "<= 1" "idle tick + one full comparison every 5 min"
    check_nginx_log "$dir/sync256" "scale gateway (256m)"
    stop_pid "$pid" QUIT

    # --- does a 64m zone hold it? -------------------------------------------
    mkdir -p "$dir/sync64"
    port=$(free_port)
    t0=$(date +%s.%N)
    NGINX_LOG_LEVEL=notice SCALE_ZONE=64m variant_scale_big10_start "$dir/sync64" "$port"
    pid=$VARIANT_PID
    res=$(wait_synced "$dir/sync64/error.log" "$t0" 60)
    local nomem
    nomem=$(grep -c 'no memory\|ngx_slab_alloc() failed\|could not allocate' "$dir/sync64/error.log" || true)
    if [ "$res" = timeout ] || [ "$(echo "$res" | awk '{ print $2, $3 }')" != "$nsvc $ninst" ] \
       || [ "$nomem" != 0 ]; then
        srow fits_in_64m_zone no "" yes "sync (wall s, services, instances, worker's ms): $res; allocation failures logged: $nomem"
        problem "scale: $ns x $ni does not fit a 64m zone (sync: $res, allocation failures logged: $nomem)"
    else
        srow fits_in_64m_zone yes "" yes "full sync in ${res%% *} s with zone=gw:64m"
    fi
    log "scale: 64m zone: $res, allocation failures logged: $nomem"
    check_nginx_log "$dir/sync64" "scale gateway (64m)"
    stop_pid "$pid" QUIT

    # --- throughput: the big registry vs 1 x 3 ----------------------------
    declare -A vport=() vpid=()
    local v svariants=(scale_small scale_big3 scale_big10)
    for v in "${svariants[@]}"; do
        mkdir -p "$dir/$v"
        port=$(free_port)
        "variant_${v}_start" "$dir/$v" "$port"
        vport[$v]=$port
        vpid[$v]=$VARIANT_PID
    done
    for v in scale_big3 scale_big10; do
        res=$(wait_registry "${vport[$v]}" "$nsvc" "$ninst" "$(date +%s.%N)" "$tmo")
        [ "${res%% *}" != timeout ] || problem "scale: $v not fully synced before the throughput rounds ($res)"
    done
    for v in "${svariants[@]}"; do
        wait_200 "http://127.0.0.1:${vport[$v]}/" 15 || die "scale: $v does not answer 200"
    done

    local raw=$RESULTS/scale_rounds.csv ssum=$dir/summary.csv
    bench_rounds "$raw" "$dir" "$rounds" "$dur" "$warm" "$conns" "${svariants[@]}"
    bench_summary "$raw" "$ssum" "${svariants[@]}"
    for v in "${svariants[@]}"; do
        check_nginx_log "$dir/$v" "$v"
        stop_pid "${vpid[$v]}" QUIT
    done
    for v in "${svariants[@]}"; do
        export V=$v
        local rps p99 ratio cpu cratio
        read -r rps p99 ratio cpu cratio < <(perl -MText::ParseWords=parse_line -ne '
            my @f = parse_line(",", 0, $_);
            print "$f[2] $f[4] $f[5] $f[11] $f[12]\n" if $f[0] eq $ENV{V}' "$ssum")
        srow "rps_$v" "$rps" req/s "" "${VARIANT_DESC[$v]}; median of $rounds rounds; p99 $p99 us; ratio to scale_small $ratio; proxy CPU $cpu us/req (ratio $cratio)"
    done

    # --- Ir/request under callgrind (resync=1h: the periodic resync is
    # measured separately above, as idle CPU) ------------------------------
    if [ "${BENCH_SCALE_CALLGRIND:-1}" = 1 ]; then
        scale_cg "$dir" "" "${svariants[@]}"

        # every other balancing method: the same service, small and big
        # registry (round robin is the first pass)
        local b
        for b in ${BENCH_SCALE_BALANCERS-random least_request p2c peak_ewma hash}; do
            scale_cg "$dir" "$b" scale_small scale_big3
        done

        local tables=(${BENCH_SCALE_TABLES-ketama maglev})
        if [ "${#tables[@]}" -gt 0 ]; then
            start_redis "$dir/redis-one" "$LOAD_CPU"; SCALE_REDIS_ONE=$REDIS_PORT
            log "scale: writing $ns services x 1 instance to Redis (the hash kinds with tables)"
            scale_populate "$ns" 1 "${BACKEND_PORTS[@]}"
            for i in 1 2 3; do
                register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
            done
            SCALE_ONE_NSVC=$(( ns + 1 )) SCALE_ONE_NINST=$(( ns + 3 ))
            for b in "${tables[@]}"; do
                scale_cg "$dir" "$b" scale_small scale_one3
                if grep -q 'has no "hash" table' "$dir/cg-${b}_scale_one3/error.log"; then
                    problem "scale: $b: a table did not fit the zone"
                fi
            done
        fi
    fi

    print_csv_table "$sum" "metric value unit target note"
}

# callgrind readiness for the big registry: fully synced (slow under valgrind)
cg_ready_scale_big3() { cg_ready_scale_big "$SCALE_NSVC" "$SCALE_NINST"; }
cg_ready_scale_big10() { cg_ready_scale_big "$SCALE_NSVC" "$SCALE_NINST"; }
cg_ready_scale_one3() { cg_ready_scale_big "$SCALE_ONE_NSVC" "$SCALE_ONE_NINST"; }
cg_ready_scale_big() {     # cg_ready_scale_big SERVICES INSTANCES
    local res
    res=$(wait_registry "$CG_READY_PORT" "$1" "$2" "$(date +%s.%N)" 600)
    [ "${res%% *}" != timeout ] || die "scale: big registry not synced under valgrind ($res)"
    log "  synced under valgrind after ${res%% *}s more"
}

# callgrind readiness for the million instances: the sync's notice (valgrind
# started with --instr-atstart=no: the sync runs uninstrumented, about 5x
# faster), then instrumentation on for the warm-up and the measured requests
cg_ready_scale1m_users() {
    local res
    res=$(wait_synced "$CG_READY_DIR/error.log" "$(date +%s.%N)" 1800)
    [ "$res" != timeout ] || die "scale1m: the million instances not synced under valgrind"
    log "  synced under valgrind: $res (wall s, services, instances, worker's ms)"
    callgrind_control -i on "$pid" > /dev/null 2>&1 \
        || die "scale1m: callgrind_control -i on $pid failed"
}

# scenario "scale1m" (a separate command, not in the default run: about
# 2 minutes and 1.5 GB of RAM): 100,000 services x 10 instances = 1,000,000
# instances in Redis, a gateway started on it with a 1g zone: full sync time
# (until the worker's notice, as in "scale") with Redis' and the worker's CPU,
# zone pages touched (so the memory per instance), Redis CPU of the idle tick,
# and a request served from the registry.
#
#   BENCH_SCALE1M_SERVICES (100000) BENCH_SCALE1M_INSTANCES (10)
#   BENCH_SCALE1M_ZONE_MB (1024) BENCH_SCALE1M_TIMEOUT (600 s)
scenario_scale1m() {
    local ns=${BENCH_SCALE1M_SERVICES:-100000} ni=${BENCH_SCALE1M_INSTANCES:-10}
    local zmb=${BENCH_SCALE1M_ZONE_MB:-1024} tmo=${BENCH_SCALE1M_TIMEOUT:-600}
    local dir=$BENCH_TMP/scale sum=$RESULTS/scale1m.csv t0 res port pid
    mkdir -p "$dir/sync1m"
    echo "metric,value,unit,target,note" > "$sum"
    row() { printf '%s,%s,%s,%s,"%s"\n' "$1" "$2" "$3" "$4" "${5//\"/\'}" >> "$sum"; }

    start_redis "$dir/redis-1m" "$LOAD_CPU"
    start_backends 3 "$LOAD_CPU" 4
    log "scale1m: writing $ns services x $ni instances to Redis"
    t0=$(date +%s.%N)
    scale_populate "$ns" "$ni" "${BACKEND_PORTS[@]}"
    row redis_populate "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" s "" \
        "$ns x $ni via redis-cli --pipe; Redis used_memory $(rcli INFO memory | awk -F: '/^used_memory_human/ { print $2 }' | tr -d '\r')"
    local rb0 rb1 rbase
    # Redis rehashes its keyspace for a while after the load: let it settle
    sleep 10
    port=$(free_port)
    local rc0 rc1 wcpu load
    rc0=$(redis_cpu_ms)
    t0=$(date +%s.%N)
    NGINX_LOG_LEVEL=notice GW_SERVICE=s05000 GW_ZONE=${zmb}m gateway_variant_start "$dir/sync1m" "$port" ""
    pid=$VARIANT_PID
    res=$(wait_synced "$dir/sync1m/error.log" "$t0" "$tmo")
    rc1=$(redis_cpu_ms)
    wcpu=$(cpu_ms "$(nginx_workers "$pid" | awk '{ print $1 }')")
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "scale1m: full sync: $res (wall s, services, instances, worker's ms)"
    if [ "$res" = timeout ]; then
        problem "scale1m: full sync of $ns x $ni not logged within ${tmo}s"
        row full_sync timeout s "< 6" "no 'synced ... from redis' notice within ${tmo}s"
    else
        local sync_s chk_s chk_i chk_ms chk
        read -r sync_s chk_s chk_i chk_ms <<< "$res"
        [ "$chk_s $chk_i" = "$ns $((ns * ni))" ] \
            || problem "scale1m: the sync logged $chk_s services / $chk_i instances, expected $ns / $((ns * ni))"
        row full_sync "$sync_s" s "< 6" "start of nginx until the worker logged 'synced $chk_s services with $chk_i instances from redis in $chk_ms ms' (its log read every 20 ms, the gateway not polled); 1-min load average $load on $(nproc) cores"
    fi
    row sync_cpu_redis "$(awk -v a="$rc0" -v b="$rc1" 'BEGIN { printf "%.0f", b - a }')" ms "" "Redis CPU (INFO cpu) from the gateway's start until it was synced"
    row sync_cpu_worker "$(awk -v w="$wcpu" 'BEGIN { printf "%.0f", w }')" ms "" "the worker's CPU (/proc/PID/stat) from its start until it logged it was synced"
    if [ "$res" != timeout ]; then
        chk=$(wait_registry "$port" "$ns" $((ns * ni)) "$(date +%s.%N)" 60)
        [ "${chk#* }" = 1 ] \
            || problem "scale1m: after the sync's notice GET /gateway/services did not list the whole registry at once ($chk)"
    fi
    local kb
    kb=$(shm_rss_kb "$pid" $((zmb * 1024)))
    row shm_touched "$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')" MiB "< 400" "Rss of the ${zmb}m zone mapping after the full sync"
    row shm_per_instance "$(awk -v k="$kb" -v n=$((ns * ni)) 'BEGIN { printf "%.0f", k * 1024 / n }')" bytes "" "zone pages touched / instances (services, snapshots and the name index included)"
    row worker_rss "$(awk '/^VmRss|^VmRSS/ { print $2; exit }' "/proc/$(nginx_workers "$pid" | awk '{ print $1 }')/status" | awk '{ printf "%.0f", $1 / 1024 }')" MiB "" "the worker's resident memory, zone pages included (nothing of the registry's size is kept outside the zone)"
    sleep 3
    local c0 c1
    c0=$(redis_cpu_ms); sleep 20; c1=$(redis_cpu_ms)
    wait_200 "http://127.0.0.1:$port/" 15 && row served yes "" yes "GET / routed to service s05000 (10 instances)" \
        || { row served no "" yes "GET / not answered 200"; problem "scale1m: a request to s05000 was not answered 200"; }
    check_nginx_log "$dir/sync1m" "scale1m gateway"
    stop_pid "$pid" QUIT
    # Redis's own idle CPU, measured now: right after the load it is busy
    # rehashing the new keys for a while
    sleep 2
    rb0=$(redis_cpu_ms); sleep 10; rb1=$(redis_cpu_ms)
    rbase=$(awk -v a="$rb0" -v b="$rb1" 'BEGIN { printf "%.3f", (b - a) / 10 }')
    row idle_cpu_redis "$(awk -v a="$c0" -v b="$c1" -v o="$rbase" 'BEGIN { printf "%.3f", (b - a) / 20 - o }')" "ms per s" "<= 1" "Redis CPU for the idle gateway over 20 s, less Redis's own $rbase ms/s (measured after the gateway stopped)"

    # Ir/request under callgrind: a 3-instance service in the million
    # instances against the same service alone in a registry (resync=1h:
    # the periodic resync is measured above, as idle CPU)
    if [ "${BENCH_SCALE1M_CALLGRIND:-1}" = 1 ]; then
        local big=$REDIS_PORT v per ref_ir="" i
        start_redis "$dir/redis-1m-small" "$LOAD_CPU"
        SCALE_REDIS_SMALL=$REDIS_PORT
        for i in 1 2 3; do
            register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
        done
        REDIS_PORT=$big
        for i in 1 2 3; do
            register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
        done
        SCALE1M_REDIS=$big SCALE1M_ZONE=${zmb}m
        for v in scale_small scale1m_users; do
            mkdir -p "$dir/cg1m-$v"
            port=$(free_port)
            NGINX_LOG_LEVEL=notice SCALE_REGISTRY_EXTRA=resync=1h \
                cg_make_conf "$v" "$dir/cg1m-$v" "$port"
            CG_READY_PORT=$port CG_READY_DIR=$dir/cg1m-$v
            log "scale1m callgrind: $v"
            if [ "$v" = scale1m_users ]; then
                BENCH_CG_VALGRIND_OPTS="--instr-atstart=no ${BENCH_CG_VALGRIND_OPTS:-}" \
                    cg_run "$v" "$dir/cg1m-$v" "$port" "$dir/cg1m-$v/cg" 200 2000
            else
                cg_run "$v" "$dir/cg1m-$v" "$port" "$dir/cg1m-$v/cg" 200 2000
            fi
            per=$(( $(cg_total "$dir/cg1m-$v/cg.1") / 2000 ))
            [ -n "$ref_ir" ] || ref_ir=$per
            row "ir_per_request_$v" "$per" Ir "" "${VARIANT_DESC[$v]}; ratio to scale_small $(awk -v a="$per" -v b="$ref_ir" 'BEGIN { printf "%.3f", a / b }') (target: within +1%)"
        done
    fi
    print_csv_table "$sum" "metric value unit target note"
}
