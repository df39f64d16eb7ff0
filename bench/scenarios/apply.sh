# scenario "apply": does applying a large service stall requests to the
# others?  A gateway (2 workers, Redis mode, short resync= interval) serves a
# small service ("users", 3 instances on real backends) under a steady
# open-loop load (lib/apply_load.c: a fixed request rate, each request's
# latency counted from the moment it was due, so a stall shows in every
# request that waited for it).  Three phases of the same length:
#
#   baseline  only "users" in the registry
#   during    plus a service of INSTANCES instances ("bulk", all pointing at
#             one backend) written to Redis without a revision key, so that
#             every resync fetches and applies it again
#   after     "bulk" removed again (a control for noise on the machine)
#
# Reported per phase: p50/p99/p99.9/max latency, added p99 and max over the
# baseline, p99 of the worker that keeps the registry (it does the apply)
# and of the other one, that worker's CPU, and how many times the zone
# changed (generation) and the gateway ran a script in Redis (EVAL calls).
# The load client, backends and Redis run on LOAD_CPU; the gateway's two
# workers are not pinned.
#
#   BENCH_APPLY_INSTANCES (10000)  BENCH_APPLY_RESYNC (1s)
#   BENCH_APPLY_DURATION (15 s per phase)  BENCH_APPLY_RATE (2000 req/s)
#   BENCH_APPLY_CONNS (16)  BENCH_APPLY_ZONE (64m)  BENCH_APPLY_TIMEOUT (60 s)

apply_gateway_conf() {     # DIR PORT RESYNC ZONE
    local dir=$1 port=$2 resync=$3 zone=$4
    echo "load_module $GATEWAY_MODULE;"
    nginx_main_conf "$dir" 2
    # notice level: the lease holder's pid ("now keeps the registry")
    echo "error_log $dir/notice.log notice;"
    cat <<EOF
http {
$(nginx_http_common "$dir")
    gateway_registry zone=gw:$zone redis=redis://127.0.0.1:$REDIS_PORT resync=$resync;
    upstream gw {
        gateway_service users;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
$(nginx_proxy_location gw)
            add_header X-Worker \$pid always;
        }
        location /gateway/ { gateway_admin; }
    }
}
EOF
}

# apply_populate N ADDRESS: service "bulk" with N instances at ADDRESS, the
# registration recipe of docs/registry.md without the revision key (and
# without EXPIRE: the instances never expire), one notice at the end
apply_populate() {
    local n=$1 addr=$2
    perl -e '
        my ($n, $addr) = @ARGV;
        print "DEL gateway:svc:bulk:rev gateway:svc:bulk:ids\n";
        my @ids;
        for my $i (1 .. $n) {
            my $id = sprintf "b%05d", $i;
            print "HSET gateway:svc:bulk:inst:$id address $addr weight 1",
                  " zone a state up ttl 0 metadata {\"version\":\"1.0\"}\n";
            push @ids, $id;
            if (@ids == 1000 || $i == $n) {
                print "SADD gateway:svc:bulk:ids @ids\n";
                @ids = ();
            }
        }
        print "SADD gateway:services bulk\n";
        print "PUBLISH gateway:events bulk\n";
    ' "$n" "$addr" | redis_pipe "$BENCH_TMP/apply/populate.log"
}

# apply_generation PORT: the zone's generation (GET /gateway/services)
apply_generation() {
    curl -s --max-time 5 "http://127.0.0.1:$1/gateway/services" \
        | sed -n 's/^{"generation":\([0-9]*\),.*/\1/p'
}

# apply_evals: EVAL calls Redis has served so far
apply_evals() {
    rcli INFO commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_eval:calls=\([0-9]*\),.*/\1/p'
}

# apply_phase NAME BIG_INSTANCES GATEWAY_PORT SYNC_PID OTHER_PID: one
# measured phase; appends to DIR/phases.txt and DIR/NAME.csv
apply_phase() {
    local name=$1 big=$2 port=$3 spid=$4 opid=$5
    local g0 g1 e0 e1 c0 c1 o0 o1 t0 t1
    log "apply: phase $name (bulk: $big instances), ${APPLY_DUR}s at $APPLY_RATE req/s"
    g0=$(apply_generation "$port"); e0=$(apply_evals)
    c0=$(cpu_ms "$spid"); o0=$(cpu_ms "$opid"); t0=$(now_ms)
    taskset -c "$LOAD_CPU" "$APPLY_CLIENT" -p "$port" -r "$APPLY_RATE" \
        -d "$APPLY_DUR" -c "$APPLY_CONNS" > "$APPLY_DIR/$name.csv" \
        || die "apply: load client failed"
    t1=$(now_ms); c1=$(cpu_ms "$spid"); o1=$(cpu_ms "$opid")
    g1=$(apply_generation "$port"); e1=$(apply_evals)
    echo "$name $big $((g1 - g0)) $((e1 - e0)) $c0 $c1 $o0 $o1 $t0 $t1" >> "$APPLY_DIR/phases.txt"
}

scenario_apply() {
    local n=${BENCH_APPLY_INSTANCES:-10000} resync=${BENCH_APPLY_RESYNC:-1s}
    local zone=${BENCH_APPLY_ZONE:-64m} tmo=${BENCH_APPLY_TIMEOUT:-60}
    local dir=$BENCH_TMP/apply port pid i spid opid w res
    APPLY_DIR=$dir
    APPLY_DUR=${BENCH_APPLY_DURATION:-15}
    APPLY_RATE=${BENCH_APPLY_RATE:-2000}
    APPLY_CONNS=${BENCH_APPLY_CONNS:-16}
    mkdir -p "$dir/gw"

    APPLY_CLIENT=$dir/apply_load
    cc -O2 -Wall -o "$APPLY_CLIENT" "$BENCH_DIR/lib/apply_load.c" \
        || die "cannot compile lib/apply_load.c"

    start_redis "$dir/redis" "$LOAD_CPU"
    start_backends 3 "$LOAD_CPU"
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done

    port=$(free_port)
    apply_gateway_conf "$dir/gw" "$port" "$resync" "$zone" > "$dir/gw/nginx.conf"
    start_nginx gateway "$dir/gw" "" "$port"
    pid=$NGINX_PID
    wait_200 "http://127.0.0.1:$port/" 15 || die "apply: the gateway does not answer 200"
    res=$(wait_registry "$port" 1 3 "$(date +%s.%N)" 15)
    [ "${res%% *}" != timeout ] || die "apply: users x 3 not synced ($res)"

    # the worker that keeps the registry applies the snapshots
    spid=""
    for i in $(seq 1 50); do
        spid=$(sed -n 's/.*\[notice\] \([0-9]*\)#.*now keeps the registry.*/\1/p' \
               "$dir/gw/notice.log" | tail -n 1)
        [ -n "$spid" ] && break
        sleep 0.1
    done
    [ -n "$spid" ] || die "apply: no worker took the registry lease"
    opid=""
    for w in $(nginx_workers "$pid"); do
        [ "$w" = "$spid" ] || opid=$w
    done
    [ -n "$opid" ] || die "apply: expected 2 workers, found $(nginx_workers "$pid")"
    log "apply: gateway on $port, worker $spid keeps the registry, worker $opid does not"

    # warm-up: connections and keepalive to the backends
    taskset -c "$LOAD_CPU" "$APPLY_CLIENT" -p "$port" -r "$APPLY_RATE" -d 1 \
        -c "$APPLY_CONNS" > /dev/null || die "apply: load client failed"

    : > "$dir/phases.txt"
    apply_phase baseline 0 "$port" "$spid" "$opid"

    log "apply: writing service bulk, $n instances, no revision key"
    apply_populate "$n" "127.0.0.1:${BACKEND_PORTS[0]}"
    res=$(wait_registry "$port" 2 $((n + 3)) "$(date +%s.%N)" "$tmo")
    if [ "${res%% *}" = timeout ]; then
        problem "apply: the $n-instance service was not synced within ${tmo}s (polls, services, instances: ${res#timeout })"
        die "apply: bulk not synced ($res)"
    fi
    log "apply: bulk synced after ${res%% *}s"
    apply_phase during "$n" "$port" "$spid" "$opid"

    rcli SREM gateway:services bulk > /dev/null
    rcli PUBLISH gateway:events bulk > /dev/null
    res=$(wait_registry "$port" 1 3 "$(date +%s.%N)" "$tmo")
    [ "${res%% *}" != timeout ] || die "apply: bulk not removed ($res)"
    apply_phase after 0 "$port" "$spid" "$opid"

    check_nginx_log "$dir/gw" "apply gateway"
    stop_pid "$pid" QUIT

    apply_summary "$dir" "$spid" "$opid"
    print_csv_table "$RESULTS/apply.csv" "phase bulk_instances requests errors p50_ms p99_ms p99_9_ms max_ms added_p99_ms added_max_ms sync_worker_p99_ms other_worker_p99_ms sync_worker_cpu_pct zone_changes redis_evals"
}

# apply_summary DIR SYNC_PID OTHER_PID: results/apply.csv (one row per
# phase) and results/apply_series.csv (p99 and max per 250 ms, for the plot)
apply_summary() {
    local dir=$1 spid=$2 opid=$3
    perl -e '
        my ($dir, $spid, $opid, $rate, $sum, $series) = @ARGV;
        sub pct {   # nearest rank, of a sorted list
            my ($p, $v) = @_;
            return "nan" unless @$v;
            my $i = int($p / 100 * @$v + 0.999999);
            $i = 1 if $i < 1;
            $i = @$v if $i > @$v;
            return $v->[$i - 1];
        }
        sub ms { $_[0] eq "nan" ? "nan" : sprintf "%.3f", $_[0] / 1000 }
        open my $ph, "<", "$dir/phases.txt" or die "$dir/phases.txt: $!\n";
        open my $out, ">", $sum or die "$sum: $!\n";
        open my $ser, ">", $series or die "$series: $!\n";
        print $out "phase,bulk_instances,seconds,rate,requests,errors,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms,added_p99_ms,added_max_ms,sync_worker_requests,sync_worker_p99_ms,other_worker_requests,other_worker_p99_ms,sync_worker_cpu_pct,other_worker_cpu_pct,zone_changes,redis_evals\n";
        print $ser "phase,t_s,p99_ms,max_ms\n";
        my ($base_p99, $base_max);
        while (my $l = <$ph>) {
            my ($name, $big, $gen, $evals, $c0, $c1, $o0, $o1, $t0, $t1) = split " ", $l;
            open my $fh, "<", "$dir/$name.csv" or die "$dir/$name.csv: $!\n";
            my (@all, %w, %bucket, $err, $n, $last);
            while (<$fh>) {
                my ($due, $lat, $wk, $st) = split /,/;
                $n++;
                $last = $due;
                if ($st != 200) { $err++; next }
                push @all, $lat;
                push @{$w{$wk}}, $lat;
                push @{$bucket{int($due / 250000)}}, $lat;
            }
            @all = sort { $a <=> $b } @all;
            $_ = [sort { $a <=> $b } @$_] for values %w;
            my $p99 = pct(99, \@all);
            my $max = @all ? $all[-1] : "nan";
            ($base_p99, $base_max) = ($p99, $max) unless defined $base_p99;
            my $secs = ($t1 - $t0) / 1000;
            printf $out "%s,%d,%.1f,%d,%d,%d,%s,%s,%s,%s,%s,%s,%s,%d,%s,%d,%s,%.1f,%.1f,%d,%d\n",
                $name, $big, ($last + 1) / 1e6, $rate, $n, $err // 0,
                ms(pct(50, \@all)), ms(pct(90, \@all)), ms($p99), ms(pct(99.9, \@all)), ms($max),
                ($p99 eq "nan" || $base_p99 eq "nan") ? "nan" : ms($p99 - $base_p99),
                ($max eq "nan" || $base_max eq "nan") ? "nan" : ms($max - $base_max),
                scalar @{$w{$spid} // []}, ms(pct(99, $w{$spid} // [])),
                scalar @{$w{$opid} // []}, ms(pct(99, $w{$opid} // [])),
                100 * ($c1 - $c0) / ($t1 - $t0), 100 * ($o1 - $o0) / ($t1 - $t0),
                $gen, $evals;
            for my $k (sort { $a <=> $b } keys %bucket) {
                my @s = sort { $a <=> $b } @{$bucket{$k}};
                printf $ser "%s,%.2f,%s,%s\n", $name, $k * 0.25, ms(pct(99, \@s)), ms($s[-1]);
            }
        }
    ' "$dir" "$spid" "$opid" "$APPLY_RATE" "$RESULTS/apply.csv" "$RESULTS/apply_series.csv"

    local e
    e=$(awk -F, 'NR > 1 { s += $6 } END { print s + 0 }' "$RESULTS/apply.csv")
    [ "$e" = 0 ] || problem "apply: $e requests to the unrelated service failed or timed out"

    # the slowest request of every 250 ms, one column per phase
    awk -F, 'NR > 1 { v[$2 "," $1] = $4; if (!($2 in seen)) { seen[$2]; t[++n] = $2 } }
        END {
            for (i = 1; i <= n; i++) {
                printf "%s", t[i]
                for (j = 1; j <= 3; j++) {
                    k = t[i] "," (j == 1 ? "baseline" : j == 2 ? "during" : "after")
                    printf " %s", (k in v) ? v[k] : "NaN"
                }
                print ""
            }
        }' "$RESULTS/apply_series.csv" > "$dir/series.dat"
    plot_series "$dir/series.dat" "$RESULTS/apply.png" \
        "slowest request to users (3 instances) per 250 ms; bulk: $(awk -F, '$1 == "during" { print $2 }' "$RESULTS/apply.csv") instances, resync=${BENCH_APPLY_RESYNC:-1s}" \
        "seconds into the phase" "latency (ms)" \
        "2:baseline" "3:during (bulk applied at every resync)" "4:after (bulk removed)"
}
