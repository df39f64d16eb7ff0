# scenario "notice": instructions (Ir) one gateway spends on one change
# notice, the unit of work every gateway does for every change (with 100
# gateways, 100 of them per change).  Gateway A (nginx, one worker) takes
# the writes: a service of BENCH_NOTICE_INSTANCES instances, then
# BENCH_NOTICE_N changes of one instance's weight (1..9, as the gateways
# scenario writes), PATCH through A's admin API one after the other,
# BENCH_NOTICE_PAUSE_MS apart.  Gateway B (single process, master_process
# off) runs under valgrind --tool=callgrind and only listens: its counters
# are zeroed once it has the service (callgrind_control -z), dumped once it
# is at the last change's revision (-d).  Ir per notice = dump total / N:
# the notice's read and parse (hiredis, the feed parser), the apply at the
# commit point (snapshot, balancer tables) and the lag stamp, plus B's
# 100 ms tick over the run (a few hundred Ir per tick); error_log at warn,
# as in the gateways scenario (at notice level each change also logs a
# line).  The per-function table shows where they go.
#
#   BENCH_NOTICE_N (1000)  BENCH_NOTICE_INSTANCES (10)  BENCH_NOTICE_PAUSE_MS (2)

notice_conf() {     # DIR PORT MASTER
    local dir=$1 port=$2 master=$3
    echo "load_module $GATEWAY_MODULE;"
    nginx_main_conf "$dir" 1 "$master"
    cat <<EOF
http {
$(nginx_http_common "$dir")
    gateway_registry zone=gw:16m redis=redis://127.0.0.1:$REDIS_PORT;
    upstream u {
        gateway_service users;
    }
    server {
        listen 127.0.0.1:$port;
        location /gateway/ { gateway_admin; }
    }
}
EOF
}

# notice_revision PORT: the revision of "users" a gateway reports (0: none)
notice_revision() {
    curl -s "http://127.0.0.1:$1/gateway/services/users" \
        | sed -n 's/^{"name":"users","revision":\([0-9]*\),.*/\1/p' | grep . || echo 0
}

scenario_notice() {
    local n=${BENCH_NOTICE_N:-1000} ni=${BENCH_NOTICE_INSTANCES:-10}
    local pause=${BENCH_NOTICE_PAUSE_MS:-2}
    local dir=$BENCH_TMP/notice pa pb pid i rev want out
    mkdir -p "$dir/a" "$dir/b"
    start_redis "$dir/redis"

    pa=$(free_port)
    notice_conf "$dir/a" "$pa" on > "$dir/a/nginx.conf"
    start_nginx gateway-a "$dir/a" "" "$pa"

    for ((i = 0; i < ni; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
              -d "{\"address\":\"127.0.0.1:$((20000 + i))\"}" \
              "http://127.0.0.1:$pa/gateway/services/users/instances/i$i")" = 201 ] \
            || die "notice: cannot register instance i$i through gateway A"
    done

    pb=$(free_port)
    notice_conf "$dir/b" "$pb" off > "$dir/b/nginx.conf"
    out=$dir/cg.out
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin GLIBC_TUNABLES="$BENCH_GLIBC_TUNABLES" \
        valgrind --tool=callgrind --callgrind-out-file="$out" \
        --dump-instr=no --collect-jumps=no \
        "$NGINX" -p "$dir/b" -c "$dir/b/nginx.conf" -e "$dir/b/error.log" \
        > "$out.log" 2>&1 &
    pid=$!
    track "$pid" callgrind-gateway-b
    wait_port "$pb" "$pid" 120 || { tail "$out.log" "$dir/b/error.log" >&2; die "notice: gateway B did not start under valgrind"; }

    rev=0
    for i in $(seq 1 120); do
        rev=$(notice_revision "$pb")
        [ "$rev" -gt 0 ] && break
        sleep 0.5
    done
    [ "$rev" -gt 0 ] || die "notice: gateway B never got service users"
    want=$(( $(notice_revision "$pa") + n ))

    callgrind_control -z "$pid" > "$out.ctl" 2>&1 || die "notice: callgrind_control -z failed: $(cat "$out.ctl")"
    perl -MIO::Socket::INET -e '
        my ($port, $n, $ni, $pause) = @ARGV;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!\n";
        for my $k (1 .. $n) {
            my $b = "{\"weight\":" . (1 + $k % 9) . "}";
            print $s "PATCH /gateway/services/users/instances/i" . ($k % $ni)
                   . " HTTP/1.1\r\nHost: a\r\nContent-Length: " . length($b)
                   . "\r\n\r\n$b";
            my ($h, $l) = ("", 0);
            while (defined(my $x = <$s>)) { $h .= $x; last if $x eq "\r\n" }
            die "PATCH $k: $h\n" unless $h =~ m{^HTTP/1\.1 200 };
            ($l) = $h =~ /^Content-Length: (\d+)/mi;
            read($s, my $body, $l);
            select(undef, undef, undef, $pause / 1000);
        }' "$pa" "$n" "$ni" "$pause" || die "notice: the changes through gateway A failed"

    for i in $(seq 1 200); do
        rev=$(notice_revision "$pb")
        [ "$rev" -ge "$want" ] && break
        sleep 0.1
    done
    callgrind_control -d "$pid" >> "$out.ctl" 2>&1 || die "notice: callgrind_control -d failed: $(cat "$out.ctl")"
    [ "$rev" -ge "$want" ] || problem "notice: gateway B at revision $rev, not $want"
    stop_pid "$pid" QUIT
    [ -s "$out.1" ] || die "notice: no callgrind dump $out.1"

    local total fetched per
    total=$(cg_total "$out.1")
    fetched=$(grep -c 'fetching the service' "$dir/b/error.log" || true)
    per=$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }')
    log "notice: gateway B: $total Ir for $n notices: $per Ir per notice ($fetched fetched instead)"

    echo "metric,value,unit,note" > "$RESULTS/notice.csv"
    printf 'ir_per_notice,%s,Ir,%s notices of a %s-instance service (one weight each) applied by a listening gateway: its whole process over the run / N\n' \
        "$per" "$n" "$ni" >> "$RESULTS/notice.csv"
    printf 'notices_fetched,%s,,notices the gateway answered with a fetch of the service instead (a gap)\n' \
        "$fetched" >> "$RESULTS/notice.csv"
    cg_funcs "$out.1" | sort -k2 -n -r | head -20 \
        | awk -v n="$n" 'BEGIN { print "function,ir_per_notice" }
                         { printf "%s,%.0f\n", $1, $2 / n }' \
        > "$RESULTS/notice_functions.csv"
    print_csv_table "$RESULTS/notice.csv" "metric value unit note"
}
