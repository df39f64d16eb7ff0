# scenario "scrape": does rendering the metrics page of a large registry
# stall the requests of the worker that renders it?  A gateway (2 workers,
# Redis mode) holds "users" (3 instances on real backends) and SERVICES
# services of INSTANCES instances each ("s00001", ...), and serves "users"
# under the apply scenario's steady open-loop load (lib/apply_load.c).  Each
# round has two phases of the same length:
#
#   baseline  nobody reads /metrics
#   during    a client reads /metrics (gateway_metrics with its default
#             max_instances=10000) every INTERVAL seconds (default 1 s,
#             15 times Prometheus' default rate; 0: back to back, which
#             keeps a whole CPU of this 2-CPU machine rendering, so the
#             other processes queue for the CPU)
#
# Reported like the apply scenario (results/scrape.csv, scrape_rounds.csv):
# p50, p99, p99.9, max per phase and the added p99 (median of the rounds'
# during - baseline); plus the scrapes done, their size and mean time.
# Target: the added p99 at most 1 ms.
#
#   BENCH_SCRAPE_SERVICES (10000)  BENCH_SCRAPE_INSTANCES (10)
#   BENCH_SCRAPE_ROUNDS (3)  BENCH_SCRAPE_DURATION (8 s per phase)
#   BENCH_SCRAPE_RATE (2000 req/s)  BENCH_SCRAPE_ZONE (256m)
#   BENCH_SCRAPE_INTERVAL (1 s between the starts of two scrapes)

# scrape_populate SERVICES INSTANCES ADDRESS: the services, as the
# registration recipe writes them, in one pipeline
scrape_populate() {
    perl -e '
        my ($n, $k, $addr) = @ARGV;
        for my $s (1 .. $n) {
            my $svc = sprintf "s%05d", $s;
            my @ids;
            for my $i (1 .. $k) {
                print "HSET gateway:svc:$svc:inst:i$i address $addr weight 1",
                      " zone a state up ttl 0\n";
                push @ids, "i$i";
            }
            print "SADD gateway:svc:$svc:ids @ids\n";
            print "SET gateway:svc:$svc:rev 1\n";
            print "SADD gateway:services $svc\n";
        }
        print "INCR gateway:rev\n";
    ' "$1" "$2" "$3" | redis_pipe "$BENCH_TMP/scrape/populate.log"
}

# scrape_workers_cpu MASTER_PID: user + system CPU of its workers, in ms
scrape_workers_cpu() {
    local w t=0 tck
    tck=$(getconf CLK_TCK)
    for w in $(nginx_workers "$1"); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$w/stat")))
    done
    echo $((t * 1000 / tck))
}

scenario_scrape() {
    local n=${BENCH_SCRAPE_SERVICES:-10000} k=${BENCH_SCRAPE_INSTANCES:-10}
    local zone=${BENCH_SCRAPE_ZONE:-256m} rounds=${BENCH_SCRAPE_ROUNDS:-3}
    local dir=$BENCH_TMP/scrape port pid r spid opid res scraper
    local every=${BENCH_SCRAPE_INTERVAL:-1}
    APPLY_DIR=$dir
    APPLY_DUR=${BENCH_SCRAPE_DURATION:-8}
    APPLY_RATE=${BENCH_SCRAPE_RATE:-2000}
    APPLY_CONNS=${BENCH_APPLY_CONNS:-16}
    apply_start "$dir"
    log "scrape: writing $n services x $k instances"
    scrape_populate "$n" "$k" "127.0.0.1:${BACKEND_PORTS[0]}"

    port=$(free_port)
    apply_gateway_conf "$dir/gw" "$port" 5s "$zone" \
        'location = /metrics { gateway_metrics; }' > "$dir/gw/nginx.conf"
    start_nginx gateway "$dir/gw" "" "$port"
    pid=$NGINX_PID
    wait_200 "http://127.0.0.1:$port/" 15 || die "scrape: the gateway does not answer 200"
    res=$(wait_registry "$port" $((n + 1)) $((n * k + 3)) "$(date +%s.%N)" 120)
    [ "${res%% *}" != timeout ] || die "scrape: the registry was not synced ($res)"
    log "scrape: $((n + 1)) services synced after ${res%% *}s"

    apply_workers scrape "$dir" "$pid"
    spid=$APPLY_SPID
    opid=$APPLY_OPID

    curl -s -o "$dir/page.txt" --max-time 60 "http://127.0.0.1:$port/metrics" \
        || die "scrape: /metrics does not answer"
    log "scrape: the page is $(wc -c < "$dir/page.txt") bytes"

    apply_warmup scrape "$port"

    : > "$dir/phases.txt"
    : > "$dir/scrapes.txt"
    : > "$dir/scrape_cpu.txt"
    for ((r = 1; r <= rounds; r++)); do
        c0=$(scrape_workers_cpu "$pid")
        apply_phase "$r" baseline 0 "$port" "$spid" "$opid"
        c1=$(scrape_workers_cpu "$pid")

        # a scrape every $every s (0: back to back) for the phase, by curl:
        # a client in C, as light as a scraper on another host can be made
        # here (Perl's HTTP::Tiny took 3 times the CPU curl takes)
        perl -MTime::HiRes=time,sleep -e '
            my ($url, $every, $secs) = @ARGV;
            my $end = time + $secs;
            while (time < $end) {
                my $t = time;
                my $n = `curl -s -o /dev/null -w "%{size_download}" --max-time 30 $url`;
                printf "%d %.3f\n", $n || 0, time - $t;
                my $left = $every - (time - $t);
                sleep $left if $left > 0;
            }
        ' "http://127.0.0.1:$port/metrics" "$every" $((APPLY_DUR + 2)) \
            >> "$dir/scrapes.txt" &
        scraper=$!
        track "$scraper" scraper
        sleep 0.5
        c2=$(scrape_workers_cpu "$pid")
        apply_phase "$r" during "$n" "$port" "$spid" "$opid"
        c3=$(scrape_workers_cpu "$pid")
        # the workers' CPU the scrapes added: during - baseline (same length)
        echo $((c3 - c2 - (c1 - c0))) >> "$dir/scrape_cpu.txt"
        wait "$scraper" 2>/dev/null || true
    done

    check_nginx_log "$dir/gw" "scrape gateway"
    stop_pid "$pid" QUIT

    apply_summary "$dir" "$spid" "$opid" scrape
    awk 'FNR == NR { cpu += $1; next } { n++; b += $1; t += $2 } END {
            printf "scrapes,bytes_per_scrape,mean_scrape_s,worker_cpu_ms_per_scrape\n"
            printf "%d,%d,%.3f,%.1f\n", n, n ? b / n : 0, n ? t / n : 0,
                   n ? cpu / n : 0 }' \
        "$dir/scrape_cpu.txt" "$dir/scrapes.txt" > "$RESULTS/scrape_pages.csv"
    print_csv_table "$RESULTS/scrape.csv" "phase bulk_instances rounds requests errors p50_ms p99_ms p99_9_ms max_ms added_p99_ms added_max_ms sync_worker_p99_ms other_worker_p99_ms"
    echo
    print_csv_table "$RESULTS/scrape_pages.csv" "scrapes bytes_per_scrape mean_scrape_s worker_cpu_ms_per_scrape"
}
