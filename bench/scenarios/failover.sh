# scenario "failover": three instances under wrk load, one of them fails in
# the middle of the run, by case:
#   kill       its backend process is killed (SIGKILL, by PID): connects are
#              refused at once
#   blackhole  after the kill a listener that never accepts takes its port
#              (backlog 0, its one queue slot filled): SYNs go unanswered and
#              every connect costs proxy_connect_timeout (1s)
# Counts what clients see (non-2xx, socket errors), when the last client
# error happened, and - from the proxy's access log ($msec $status
# $upstream_addr $upstream_status) - how many attempts went to the failed
# instance, when the last one ended, and when the last request that went
# there began (for an ejecting proxy: the time to ejection; a request that
# hangs on a connection the black hole's queue took ends only when wrk
# stops, 499).  Every proxy uses proxy_next_upstream error timeout; stock
# nginx has its per-worker passive max_fails=1 fail_timeout=10s; "gateway"
# has no ejection, "gateway_eject" has gateway_eject with its defaults
# (failures=5, time=30s: no trial within the run).  Reported as measured.
# Status 499 (wrk closing its connections with requests in flight when its
# duration ends) is counted apart, not as an error.
#
#   BENCH_FO_VARIANTS ("gateway gateway_eject stock") for the kill case
#   BENCH_FO_BH_VARIANTS ("gateway_eject stock") for the black-holed case
#   BENCH_FO_CASES ("kill blackhole")  BENCH_FO_DURATION (12 s)
#   BENCH_FO_KILL_AT (4 s)  BENCH_CONNS (50)

# blackhole_start PORT READY: a listener with backlog 0 that never accepts,
# on PORT beside the backend that still listens there (SO_REUSEPORT: the
# backends listen with "reuseport"), so that the port is black-holed the
# moment the backend is killed; a few connections fill its queue (those
# that the kernel gives to the backend die with it: the first connect
# after the kill may take the free slot and hang).  Touches READY once it
# listens; sets BLACKHOLE_PID.
blackhole_start() {
    perl -MIO::Socket::INET -e '
        my ($p, $ready) = @ARGV;
        my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
            LocalPort => $p, Listen => 0, ReuseAddr => 1, ReusePort => 1,
            Proto => "tcp") or die "blackhole: listen on $p: $!\n";
        my @c = map { IO::Socket::INET->new(PeerAddr => "127.0.0.1",
            PeerPort => $p, Proto => "tcp", Timeout => 0.2) } 1 .. 4;
        open(my $fh, ">", $ready) and close $fh;
        sleep 3600;' "$1" "$2" &
    BLACKHOLE_PID=$!
    track "$BLACKHOLE_PID" blackhole
}

scenario_failover() {
    local variants=(${BENCH_FO_VARIANTS:-gateway gateway_eject stock})
    local bh_variants=(${BENCH_FO_BH_VARIANTS:-gateway_eject stock})
    local cases=(${BENCH_FO_CASES:-kill blackhole})
    local dur=${BENCH_FO_DURATION:-12} kill_at=${BENCH_FO_KILL_AT:-4}
    local conns=${BENCH_CONNS:-50}
    local dir=$BENCH_TMP/failover v port i c run
    mkdir -p "$dir"

    start_redis "$dir/redis" "$LOAD_CPU"

    local sum=$RESULTS/failover.csv
    echo "variant,case,requests,non2xx,socket_errors,last_client_error_after_kill_ms,attempts_to_dead_after_kill,last_attempt_to_dead_after_kill_ms,retried_requests,rps_before,rps_after,p99_after_kill_ms,aborted_by_client_499,dead_attempts_last_second,last_request_to_dead_started_after_kill_ms" > "$sum"
    local series=$RESULTS/failover_series.csv
    echo "variant,t_ms,rps,non2xx_per_s,dead_attempts_per_s" > "$series"

    local runs=()
    for c in "${cases[@]}"; do
        if [ "$c" = kill ]; then
            for v in "${variants[@]}"; do runs+=("$v:kill"); done
        else
            for v in "${bh_variants[@]}"; do runs+=("$v:blackhole"); done
        fi
    done

    for run in "${runs[@]}"; do
        v=${run%%:*} c=${run#*:}
        # the series and plots are named after the run: stock, stock_blackhole
        local name=$v
        [ "$c" = kill ] || name=${v}_$c
        local vdir=$dir/$name
        mkdir -p "$vdir"
        start_backends 3 "$LOAD_CPU"
        local svc=fo-$name
        for i in 1 2 3; do
            register_instance "$svc" "i$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
        done
        port=$(free_port)
        if [ "$v" = gateway ]; then
            BENCH_ACCESS_LOG=1 GW_SERVICE=$svc gateway_variant_start "$vdir" "$port" ""
        elif [ "$v" = gateway_eject ]; then
            BENCH_ACCESS_LOG=1 GW_SERVICE=$svc gateway_variant_start "$vdir" "$port" "gateway_eject;"
        else
            BENCH_ACCESS_LOG=1 "variant_${v}_start" "$vdir" "$port"
        fi
        local proxy_pid=$VARIANT_PID
        wait_200 "http://127.0.0.1:$port/" 15 || die "failover: $v does not answer 200"

        local dead_port=${BACKEND_PORTS[1]} dead_pid=${BACKEND_PIDS[1]}
        log "failover: $v, $c, wrk ${dur}s, SIGKILL backend 2 (pid $dead_pid, port $dead_port) at ${kill_at}s"
        local t_start t_kill wrk_pid
        t_start=$(now_ms)
        taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$conns" -d"${dur}s" --timeout 5s \
            -s "$BENCH_DIR/lib/latency.lua" "http://127.0.0.1:$port/" \
            > "$vdir/wrk.txt" 2>&1 &
        wrk_pid=$!
        track "$wrk_pid" wrk
        BLACKHOLE_PID=""
        sleep "$kill_at"
        if [ "$c" = blackhole ]; then
            rm -f "$vdir/blackhole.ready"
            blackhole_start "$dead_port" "$vdir/blackhole.ready"
            for i in $(seq 1 100); do
                [ -e "$vdir/blackhole.ready" ] && break
                sleep 0.01
            done
        fi
        t_kill=$(now_ms)
        { kill -KILL "$dead_pid"; wait "$dead_pid"; } 2>/dev/null || true
        wait "$wrk_pid" || true
        untrack "$wrk_pid"
        stop_pid "$proxy_pid" QUIT       # flushes the access log
        stop_backends
        [ -n "$BLACKHOLE_PID" ] && stop_pid "$BLACKHOLE_PID" KILL

        local serr
        serr=$(( $(wrk_field "$vdir/wrk.txt" err_connect) + $(wrk_field "$vdir/wrk.txt" err_read) \
               + $(wrk_field "$vdir/wrk.txt" err_write) + $(wrk_field "$vdir/wrk.txt" err_timeout) ))

        # access log: msec status "addr, addr" "status, status"
        awk -v v="$name" -v c="$c" -v tk="$t_kill" -v t0="$t_start" -v dead=":$dead_port" \
            -v serr="$serr" -v sum="$sum" -v series="$series" '
            {
                t = int($1 * 1000); st = $2
                if (t < t0) next        # the readiness probes before wrk
                addrs = $0; sub(/^[^"]*"/, "", addrs); sub(/".*$/, "", addrs)
                n++
                b = int((t - t0) / 250)
                cnt[b]++
                if (st == 499) aborted++     # wrk closing its connections at the end
                else if (st !~ /^2/) { err[b]++; nerr++; if (t > tk) lastErr = t }
                if (index(addrs, ",")) retried++
                if (t >= tk && index(addrs, dead)) {
                    m = split(addrs, a, ", ")
                    for (i = 1; i <= m; i++) if (a[i] ~ dead "$") { deadN++; dead_b[b]++ }
                    lastDead = t
                    dt[deadN] = t
                    # when the request began: a hung one ends much later
                    ts = t - int($NF * 1000)
                    if (ts > lastDeadStart) lastDeadStart = ts
                }
                if (t < tk) before++; else { after++; rt[after] = $NF * 1000 }
                if (n == 1 || t < tmin) tmin = t
                if (t > tmax) tmax = t
            }
            END {
                for (i = 1; i <= deadN; i++) if (dt[i] > tmax - 1000) lastSec++
                # p99 of $request_time after the kill (insertion-free: counting sort by ms)
                for (i = 1; i <= after; i++) { ms = int(rt[i]); h[ms]++; if (ms > hmax) hmax = ms }
                need = after * 0.99; acc = 0; p99 = 0
                for (ms = 0; ms <= hmax; ms++) { acc += h[ms]; if (acc >= need) { p99 = ms; break } }
                printf "%s,%s,%d,%d,%d,%s,%d,%s,%d,%.0f,%.0f,%d,%d,%d,%s\n", v, c, n, nerr, serr,
                    (lastErr ? lastErr - tk : "none"), deadN,
                    (lastDead ? lastDead - tk : "none"), retried,
                    before / ((tk - t0) / 1000), after / ((tmax - tk) / 1000), p99, aborted, lastSec,
                    (lastDeadStart ? lastDeadStart - tk : "none") >> sum
                for (i = 0; (i + 1) * 250 <= tmax - t0; i++)    # whole buckets only
                    printf "%s,%d,%d,%d,%d\n", v, i * 250 - (tk - t0),
                        cnt[i] * 4, err[i] * 4, dead_b[i] * 4 >> series
            }' "$vdir/access.log"
        check_nginx_log "$vdir" "$name (failover)"
        if awk '$2 !~ /^2/ && $2 != 499 { f = 1 } END { exit !f }' "$vdir/access.log"; then
            {
                echo "# $v: non-2xx answers (access log: msec status upstream_addr upstream_status), kill at $t_kill ms"
                awk '$2 !~ /^2/ && $2 != 499' "$vdir/access.log" | head -50
                echo "# error.log lines other than the refused connects to the dead instance:"
                grep -v 'connect() failed (111' "$vdir/error.log" | head -50
            } > "$RESULTS/failover_errors_$name.txt"
            problem "failover $name: $(awk '$2 !~ /^2/ && $2 != 499' "$vdir/access.log" | wc -l) non-2xx answers to clients (statuses: $(awk '$2 !~ /^2/ && $2 != 499 { print $2 }' "$vdir/access.log" | sort | uniq -c | sort -rn | head -3 | tr -s ' \n' ' ')); samples in bench/results/failover_errors_$name.txt"
        else
            rm -f "$RESULTS/failover_errors_$name.txt"
        fi
    done

    # one plot per variant: req/s, errors/s and attempts on the dead instance
    for run in "${runs[@]}"; do
        v=${run%%:*} c=${run#*:}
        [ "$c" = kill ] || v=${v}_$c
        awk -F, -v v="$v" '$1 == v { print $2 / 1000, $3, $4, $5 }' "$series" > "$dir/$v.series"
        plot_series "$dir/$v.series" "$RESULTS/failover_$v.png" \
            "failover, $v: backend 2 of 3 fails ($c) at t=0 (250 ms buckets)" \
            "seconds since the kill" "per second" \
            "2:requests answered" "3:non-2xx answers" "4:attempts on the dead instance"
    done

    print_csv_table "$sum" "variant case requests non2xx socket_errors last_client_error_after_kill_ms attempts_to_dead_after_kill last_attempt_to_dead_after_kill_ms last_request_to_dead_started_after_kill_ms dead_attempts_last_second rps_before rps_after p99_after_kill_ms"
}
