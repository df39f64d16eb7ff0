# scenario "apply": does applying a large service stall requests to the
# others?  A gateway (2 workers, Redis mode, short resync= interval) serves a
# small service ("users", 3 instances on real backends) under a steady
# open-loop load (lib/apply_load.c: a fixed request rate, each request's
# latency counted from the moment it was due, so a stall shows in every
# request that waited for it; its connections are spread evenly over the
# two workers).  Each round has two phases of the same length:
#
#   baseline  only "users" in the registry
#   during    plus a service of INSTANCES instances ("bulk", all pointing at
#             one backend) written to Redis without a revision key, so that
#             every resync fetches and applies it again; removed at the end
#             of the round
#
# Reported per phase (medians over the rounds; max = the largest): p50, p99,
# p99.9, max latency; added p99 (median of the rounds' during - baseline)
# and added max; p99 of the worker that keeps the registry (it applies the
# snapshots) and of the other one; that worker's CPU (including the
# requests it serves); how many times the zone changed (generation) and the
# gateway ran a script in Redis (EVAL).  The load client, backends and Redis
# run on LOAD_CPU; the gateway's two workers are not pinned.
#
#   BENCH_APPLY_INSTANCES (10000)  BENCH_APPLY_RESYNC (1s)
#   BENCH_APPLY_ROUNDS (3)  BENCH_APPLY_DURATION (8 s per phase)
#   BENCH_APPLY_RATE (2000 req/s)  BENCH_APPLY_CONNS (16)
#   BENCH_APPLY_ZONE (64m)  BENCH_APPLY_TIMEOUT (60 s, for a sync)

# apply_gateway_conf DIR PORT RESYNC ZONE [LOCATION]: the gateway of the
# apply and scrape scenarios; LOCATION is a location block more
apply_gateway_conf() {
    local dir=$1 port=$2 resync=$3 zone=$4 more=${5:-}
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
        $more
        location /gateway/ { gateway_admin; }
    }
}
EOF
}

# apply_populate N ADDRESS: the instances of service "bulk", N of them at
# ADDRESS, as the registration recipe of docs/registry.md writes them but
# without the revision key (and without EXPIRE: they never expire); the
# rounds list the service in P services (SADD + PUBLISH) and take it out
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
    ' "$n" "$addr" | redis_pipe "$BENCH_TMP/apply/populate.log"
}

# apply_start DIR: what the apply and scrape scenarios start the same way:
# the load client (APPLY_CLIENT), Redis, and "users" x 3 on real backends
apply_start() {
    local dir=$1 i
    mkdir -p "$dir/gw"

    APPLY_CLIENT=$dir/apply_load
    cc -O2 -Wall -o "$APPLY_CLIENT" "$BENCH_DIR/lib/apply_load.c" \
        || die "cannot compile lib/apply_load.c"

    start_redis "$dir/redis" "$LOAD_CPU"
    start_backends 3 "$LOAD_CPU"
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done
}

# apply_workers NAME DIR PID: APPLY_SPID, the worker of master PID that
# keeps the registry (from DIR/gw/notice.log), and APPLY_OPID, the other one
apply_workers() {
    local name=$1 dir=$2 pid=$3 i w
    APPLY_SPID=""
    for i in $(seq 1 50); do
        APPLY_SPID=$(sed -n 's/.*\[notice\] \([0-9]*\)#.*now keeps the registry.*/\1/p' \
                     "$dir/gw/notice.log" | tail -n 1)
        [ -n "$APPLY_SPID" ] && break
        sleep 0.1
    done
    [ -n "$APPLY_SPID" ] || die "$name: no worker took the registry lease"
    APPLY_OPID=""
    for w in $(nginx_workers "$pid"); do
        [ "$w" = "$APPLY_SPID" ] || APPLY_OPID=$w
    done
    [ -n "$APPLY_OPID" ] || die "$name: expected 2 workers, found $(nginx_workers "$pid")"
}

# apply_warmup NAME PORT: keepalive connections to the backends in both
# workers
apply_warmup() {
    taskset -c "$LOAD_CPU" "$APPLY_CLIENT" -p "$2" -r "$APPLY_RATE" -d 1 \
        -c "$APPLY_CONNS" -w 2 > /dev/null || die "$1: load client failed"
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

# apply_phase ROUND NAME BIG_INSTANCES GATEWAY_PORT SYNC_PID OTHER_PID: one
# measured phase; appends to DIR/phases.txt, requests in DIR/rROUND-NAME.csv
apply_phase() {
    local round=$1 name=$2 big=$3 port=$4 spid=$5 opid=$6
    local g0 g1 e0 e1 c0 c1 o0 o1 t0 t1
    log "apply: round $round, $name (bulk: $big instances), ${APPLY_DUR}s at $APPLY_RATE req/s"
    g0=$(apply_generation "$port"); e0=$(apply_evals)
    c0=$(cpu_ms "$spid"); o0=$(cpu_ms "$opid"); t0=$(now_ms)
    taskset -c "$LOAD_CPU" "$APPLY_CLIENT" -p "$port" -r "$APPLY_RATE" \
        -d "$APPLY_DUR" -c "$APPLY_CONNS" -w 2 > "$APPLY_DIR/r$round-$name.csv" \
        || die "apply: load client failed"
    t1=$(now_ms); c1=$(cpu_ms "$spid"); o1=$(cpu_ms "$opid")
    g1=$(apply_generation "$port"); e1=$(apply_evals)
    echo "$round $name $big $((g1 - g0)) $((e1 - e0)) $c0 $c1 $o0 $o1 $t0 $t1 $(cut -d' ' -f1 /proc/loadavg)" \
        >> "$APPLY_DIR/phases.txt"
}

# apply_slowlog ROUND PHASE: a row of results/apply_redis.csv from Redis'
# slow log (entries: id, time, duration in us, ...)
apply_slowlog() {
    rcli -2 --json SLOWLOG GET 1024 | perl -MJSON::PP -e '
        my ($r, $ph) = @ARGV;
        my $l = decode_json(join "", <STDIN>);
        my ($n, $max, $sum) = (0, 0, 0);
        for my $e (@$l) { $n++; $sum += $e->[2]; $max = $e->[2] if $e->[2] > $max }
        printf "%s,%s,%d,%.1f,%.1f\n", $r, $ph, $n, $max / 1000, $sum / 1000;
    ' "$1" "$2" >> "$RESULTS/apply_redis.csv"
}

scenario_apply() {
    local n=${BENCH_APPLY_INSTANCES:-10000} resync=${BENCH_APPLY_RESYNC:-1s}
    local zone=${BENCH_APPLY_ZONE:-64m} tmo=${BENCH_APPLY_TIMEOUT:-60}
    local rounds=${BENCH_APPLY_ROUNDS:-3}
    local dir=$BENCH_TMP/apply port pid r spid opid res
    APPLY_DIR=$dir
    APPLY_DUR=${BENCH_APPLY_DURATION:-8}
    APPLY_RATE=${BENCH_APPLY_RATE:-2000}
    APPLY_CONNS=${BENCH_APPLY_CONNS:-16}
    apply_start "$dir"

    port=$(free_port)
    apply_gateway_conf "$dir/gw" "$port" "$resync" "$zone" > "$dir/gw/nginx.conf"
    start_nginx gateway "$dir/gw" "" "$port"
    pid=$NGINX_PID
    wait_200 "http://127.0.0.1:$port/" 15 || die "apply: the gateway does not answer 200"
    res=$(wait_registry "$port" 1 3 "$(date +%s.%N)" 15)
    [ "${res%% *}" != timeout ] || die "apply: users x 3 not synced ($res)"

    # the worker that keeps the registry applies the snapshots
    apply_workers apply "$dir" "$pid"
    spid=$APPLY_SPID
    opid=$APPLY_OPID
    log "apply: gateway on $port, worker $spid keeps the registry, worker $opid does not"
    apply_warmup apply "$port"

    log "apply: writing service bulk, $n instances, no revision key"
    apply_populate "$n" "127.0.0.1:${BACKEND_PORTS[0]}"

    # Redis' slow log: how long its scripts keep Redis (on LOAD_CPU, with the
    # load client) busy in each phase
    rcli CONFIG SET slowlog-log-slower-than 5000 > /dev/null
    rcli CONFIG SET slowlog-max-len 1024 > /dev/null
    echo "round,phase,redis_commands_over_5ms,redis_slowest_ms,redis_slow_total_ms" \
        > "$RESULTS/apply_redis.csv"

    : > "$dir/phases.txt"
    for ((r = 1; r <= rounds; r++)); do
        rcli SLOWLOG RESET > /dev/null
        apply_phase "$r" baseline 0 "$port" "$spid" "$opid"
        apply_slowlog "$r" baseline

        rcli SADD gateway:services bulk > /dev/null
        rcli PUBLISH gateway:events bulk > /dev/null
        res=$(wait_registry "$port" 2 $((n + 3)) "$(date +%s.%N)" "$tmo")
        if [ "${res%% *}" = timeout ]; then
            problem "the $n-instance service was not synced within ${tmo}s (polls, services, instances: ${res#timeout })"
            die "apply: bulk not synced ($res)"
        fi
        log "apply: bulk synced after ${res%% *}s"
        rcli SLOWLOG RESET > /dev/null
        apply_phase "$r" during "$n" "$port" "$spid" "$opid"
        apply_slowlog "$r" during

        rcli SREM gateway:services bulk > /dev/null
        rcli PUBLISH gateway:events bulk > /dev/null
        res=$(wait_registry "$port" 1 3 "$(date +%s.%N)" "$tmo")
        [ "${res%% *}" != timeout ] || die "apply: bulk not removed ($res)"
    done

    check_nginx_log "$dir/gw" "apply gateway"
    stop_pid "$pid" QUIT

    apply_summary "$dir" "$spid" "$opid"
    print_csv_table "$RESULTS/apply_rounds.csv" "round phase requests errors p50_ms p99_ms p99_9_ms max_ms sync_worker_p99_ms other_worker_p99_ms sync_worker_cpu_pct zone_changes redis_evals"
    echo
    print_csv_table "$RESULTS/apply.csv" "phase bulk_instances rounds requests errors p50_ms p99_ms p99_9_ms max_ms added_p99_ms added_max_ms sync_worker_p99_ms other_worker_p99_ms sync_worker_cpu_pct zone_changes redis_evals"
}

# apply_summary DIR SYNC_PID OTHER_PID [NAME]: results/NAME_rounds.csv (a
# row per round and phase), results/NAME.csv (a row per phase, over the
# rounds) and results/NAME_series.csv (p99 and max per 250 ms, for the
# plot); NAME is apply unless given (the scrape scenario shares this)
apply_summary() {
    local dir=$1 spid=$2 opid=$3 name=${4:-apply}
    perl -e '
        my ($dir, $spid, $opid, $rate, $conns, $resync, $out_sum, $out_rounds,
            $out_series) = @ARGV;
        sub pct {   # nearest rank, of a sorted list
            my ($p, $v) = @_;
            return "nan" unless @$v;
            my $i = int($p / 100 * @$v + 0.999999);
            $i = 1 if $i < 1;
            $i = @$v if $i > @$v;
            return $v->[$i - 1];
        }
        sub median {
            my @v = sort { $a <=> $b } grep { $_ ne "nan" } @_;
            return "nan" unless @v;
            return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
        }
        sub maxof { my @v = sort { $a <=> $b } grep { $_ ne "nan" } @_; @v ? $v[-1] : "nan" }
        sub ms { $_[0] eq "nan" ? "nan" : sprintf "%.3f", $_[0] / 1000 }
        sub diff { ($_[0] eq "nan" || $_[1] eq "nan") ? "nan" : $_[0] - $_[1] }

        open my $ph, "<", "$dir/phases.txt" or die "$dir/phases.txt: $!\n";
        open my $rnd, ">", $out_rounds or die "$out_rounds: $!\n";
        open my $ser, ">", $out_series or die "$out_series: $!\n";
        print $rnd "round,phase,bulk_instances,seconds,rate,requests,errors,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms,sync_worker_requests,sync_worker_p99_ms,other_worker_requests,other_worker_p99_ms,sync_worker_cpu_pct,other_worker_cpu_pct,zone_changes,redis_evals,loadavg_1m\n";
        print $ser "round,phase,t_s,p99_ms,max_ms\n";
        my (%agg, @order);      # phase -> list of per-round hashes
        while (my $l = <$ph>) {
            my ($round, $name, $big, $gen, $evals, $c0, $c1, $o0, $o1, $t0, $t1, $load) = split " ", $l;
            open my $fh, "<", "$dir/r$round-$name.csv" or die "$dir/r$round-$name.csv: $!\n";
            my (@all, %w, %bucket, $n, $last);
            my $err = 0;
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
            my %r = (round => $round, big => $big, secs => ($last + 1) / 1e6,
                     n => $n, err => $err,
                     p50 => pct(50, \@all), p90 => pct(90, \@all), p99 => pct(99, \@all),
                     p999 => pct(99.9, \@all), max => (@all ? $all[-1] : "nan"),
                     sn => scalar @{$w{$spid} // []}, sp99 => pct(99, $w{$spid} // []),
                     on => scalar @{$w{$opid} // []}, op99 => pct(99, $w{$opid} // []),
                     scpu => 100 * ($c1 - $c0) / ($t1 - $t0), ocpu => 100 * ($o1 - $o0) / ($t1 - $t0),
                     gen => $gen, evals => $evals);
            push @order, $name unless $agg{$name};
            push @{$agg{$name}}, \%r;
            printf $rnd "%d,%s,%d,%.1f,%d,%d,%d,%s,%s,%s,%s,%s,%d,%s,%d,%s,%.1f,%.1f,%d,%d,%s\n",
                $round, $name, $big, $r{secs}, $rate, $n, $err,
                ms($r{p50}), ms($r{p90}), ms($r{p99}), ms($r{p999}), ms($r{max}),
                $r{sn}, ms($r{sp99}), $r{on}, ms($r{op99}), $r{scpu}, $r{ocpu}, $gen, $evals, $load;
            for my $k (sort { $a <=> $b } keys %bucket) {
                my @s = sort { $a <=> $b } @{$bucket{$k}};
                printf $ser "%d,%s,%.2f,%s,%s\n", $round, $name, $k * 0.25, ms(pct(99, \@s)), ms($s[-1]);
            }
        }

        open my $sum, ">", $out_sum or die "$out_sum: $!\n";
        print $sum "phase,bulk_instances,rounds,seconds,rate,conns,resync,requests,errors,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms,added_p99_ms,added_max_ms,sync_worker_p99_ms,other_worker_p99_ms,sync_worker_cpu_pct,other_worker_cpu_pct,zone_changes,redis_evals\n";
        my %base = map { $_->{round} => $_ } @{$agg{baseline} // []};
        my $base_max = maxof(map { $_->{max} } @{$agg{baseline} // []});
        for my $name (@order) {
            my @r = @{$agg{$name}};
            my $col = sub { my $k = shift; map { $_->{$k} } @r };
            my $sumof = sub { my $t = 0; $t += $_ for $col->(shift); $t };
            my $max = maxof($col->("max"));
            printf $sum "%s,%d,%d,%.1f,%d,%d,%s,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.1f,%.1f,%d,%d\n",
                $name, $r[0]{big}, scalar @r, median($col->("secs")), $rate,
                $conns, $resync,
                $sumof->("n"), $sumof->("err"),
                ms(median($col->("p50"))), ms(median($col->("p90"))), ms(median($col->("p99"))),
                ms(median($col->("p999"))), ms($max),
                ms(median(map { $base{$_->{round}} ? diff($_->{p99}, $base{$_->{round}}{p99}) : "nan" } @r)),
                ms(diff($max, $base_max)),
                ms(median($col->("sp99"))), ms(median($col->("op99"))),
                median($col->("scpu")), median($col->("ocpu")),
                $sumof->("gen"), $sumof->("evals");
        }
    ' "$dir" "$spid" "$opid" "$APPLY_RATE" "$APPLY_CONNS" "${BENCH_APPLY_RESYNC:-1s}" \
        "$RESULTS/$name.csv" \
        "$RESULTS/${name}_rounds.csv" "$RESULTS/${name}_series.csv"

    local e
    e=$(awk -F, 'NR > 1 { s += $7 } END { print s + 0 }' "$RESULTS/${name}_rounds.csv")
    [ "$e" = 0 ] || problem "$e requests to the unrelated service failed or timed out"

    [ "$name" = apply ] || return 0

    # a busy machine shows in the baseline: say so, the target is 2 ms
    local spread
    spread=$(awk -F, 'NR > 1 && $2 == "baseline" {
            if (n++ == 0 || $10 < lo) lo = $10; if ($10 > hi) hi = $10
            if ($21 > ld) ld = $21 }
        END { if (hi > 2) printf "%.1f..%.1f ms (1-minute load average up to %s)", lo, hi, ld }' \
        "$RESULTS/apply_rounds.csv")
    [ -z "$spread" ] || problem "baseline p99 was $spread: the machine was busy, so differences of a few ms are noise; re-run when it is quiet"

    # the slowest request of every 250 ms in round 1, one column per phase
    awk -F, 'NR > 1 && $1 == 1 { v[$3 "," $2] = $5; if (!($3 in seen)) { seen[$3]; t[++n] = $3 } }
        END {
            for (i = 1; i <= n; i++) {
                b = t[i] ",baseline"; d = t[i] ",during"
                print t[i], (b in v) ? v[b] : "NaN", (d in v) ? v[d] : "NaN"
            }
        }' "$RESULTS/apply_series.csv" > "$dir/series.dat"
    plot_series "$dir/series.dat" "$RESULTS/apply.png" \
        "users (3 instances): slowest request per 250 ms, round 1; bulk: $(awk -F, '$1 == "during" { print $2 }' "$RESULTS/apply.csv") instances, resync=${BENCH_APPLY_RESYNC:-1s}" \
        "seconds into the phase" "latency (ms)" \
        "2:baseline" "3:during (bulk applied at every resync)"
}
