#!/usr/bin/perl
# Instances removed while requests are in flight cause no use-after-free and
# no leak.
#
# A gateway (2 workers) routes /svc/churn/... to one stable instance that is
# never removed and to ~10 churned instances that point at slow backends
# (njs, 20-50 ms per answer) or at ports nobody listens on.  Client processes
# send requests (keepalive and not) while the parent registers, deregisters,
# re-registers, drains and patches the churned instances, reloads the gateway
# in the middle, and at the end stops it gracefully with requests in flight.
# Run twice: with the embedded registry (writes through the admin API) and
# with Redis (writes through the admin API and through redis-cli / RESP
# MULTI recipes).
#
# Every request must get 200: a dead instance fails at connect (refused on
# loopback), proxy_next_upstream error moves on to an instance not tried
# yet, and the stable instance is always up, also for a request that sees
# dead instances registered while it is in flight (budget_test: the tries
# are counted at each attempt, not when the request starts).  A client
# whose idle keepalive
# connection is closed by an old worker at the reload just as it sends a
# request retries it once (RFC 9112 9.3.1); such resets are allowed only
# around the reload.
#
# After the churn the registry lists exactly the instances of the last
# operations, and the "active" counter of every instance is back to 0
# (references and connections are released).  The harness checks the error
# logs and, in valgrind mode, the valgrind logs of every nginx.  Valgrind
# does not see inside the shared zone (ngx_slab): a removed instance freed
# while a request still holds it shows up as "ngx_slab_free(): chunk is
# already free" alerts or as wrong "active" counters, not in valgrind; a
# leaked one (a reference never dropped) by the registry's "allocated"
# count of the instances its zone holds.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $VG = valgrind_mode();

# load: bounded by time and by count, small under valgrind
my $CLIENTS     = $VG ? 3 : 4;
my $DURATION    = $VG ? 30 : 5;       # seconds of client load
my $MAX_REQ     = $VG ? 1500 : 2000;  # per client
my $MAX_OPS     = $VG ? 150 : 400;    # churn operations per run
my $NIDS        = 10;                 # churned instance ids c0..c9
my $HANG_MS     = $VG ? 6000 : 3000;  # the hanging backend of the budget test
my $READ_TMO    = $VG ? '4s' : '1s';  # < HANG_MS

my $seed = $ENV{GATEWAY_CHURN_SEED} // (time ^ $$) & 0xffff;
srand($seed);
note("churn seed $seed (GATEWAY_CHURN_SEED=$seed reproduces the operations)");

my $dir = test_dir();

# --- backends: one nginx with njs, slow ports and a fast stable port ------

my $js = <<'EOF';
function slow(r) {
    var ms = 20 + Math.floor(Math.random() * 31);
    setTimeout(function () {
        r.return(200, r.variables.server_port + " slow\n");
    }, ms);
}
function hang(r) {
    setTimeout(function () {
        r.return(200, r.variables.server_port + " hang\n");
    }, HANG_MS);
}
export default { slow, hang };
EOF
# the hanging backend outlives the gateway's read timeout on /budget/
$js =~ s/HANG_MS/$HANG_MS/;
open my $fh, '>', "$dir/churn.js" or die "$dir/churn.js: $!";
print {$fh} $js;
close $fh or die "$dir/churn.js: $!";

my $backend = start_nginx(js => 1, module => 0, workers => 1, conf => <<'EOF');
    js_import churn from %%TESTDIR%%/churn.js;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        listen 127.0.0.1:%%PORT4%%;
        keepalive_requests 100000;
        access_log off;
        location / {
            js_content churn.slow;
        }
    }

    server {
        listen 127.0.0.1:%%PORT5%%;
        keepalive_requests 100000;
        access_log off;
        location / {
            return 200 "$server_port stable\n";
        }
    }

    server {
        listen 127.0.0.1:%%PORT6%%;
        access_log off;
        location / {
            js_content churn.hang;
        }
    }
EOF

my @slow = map { $backend->port($_) } qw(PORT PORT2 PORT3 PORT4);
my $stable_port = $backend->port('PORT5');
my $hang_port = $backend->port('PORT6');
my @dead = (free_port(), free_port());

my %SLOW = map { $_ => 1 } @slow;
my %DEAD = map { $_ => 1 } @dead;

# every target a churned instance may point at: 4 slow, 2 dead
my @targets = ((map { "127.0.0.1:$_" } @slow), (map { "127.0.0.1:$_" } @dead));

my $ok = http_get("http://127.0.0.1:$slow[0]/x");
is($ok->{status}, 200, 'the slow backend answers');

# --- the gateway -----------------------------------------------------------

sub gateway_conf {
    my ($registry) = @_;
    return <<EOF;
    gateway_registry $registry;

    log_format churn '\$status \$request_uri up=[\$upstream_addr]'
                     ' ust=[\$upstream_status]';

    upstream gw {
        gateway_service \$gw_service;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%NGINX_DIR%%/churn.log churn;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?\$ {
            proxy_pass http://gw\$gw_rest;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 5s;
            add_header X-Upstream \$upstream_addr always;
        }

        location ~ ^/budget/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?\$ {
            proxy_pass http://gw\$gw_rest;
            proxy_next_upstream error timeout;
            proxy_read_timeout $READ_TMO;
            add_header X-Upstream \$upstream_addr always;
        }
    }
EOF
}

# --- client processes ------------------------------------------------------

# a client: GETs /svc/churn/... until the deadline or $MAX_REQ requests,
# randomly on a keepalive connection or on a fresh one; one line per request
sub start_client {
    my ($ng, $n, $out, $duration, $max) = @_;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    return $pid if $pid;

    # the child: no Test::More output, no END blocks
    my $rc = eval {
        srand($seed + $n * 7919 + $$);
        my $base = $ng->url('/svc/churn');
        my %o = (timeout => tmo(15), max_redirect => 0);
        my $ka = HTTP::Tiny->new(%o, keep_alive => 1);
        my $fresh = HTTP::Tiny->new(%o, keep_alive => 0);
        open my $fh, '>', $out or die "$out: $!";
        select((select($fh), $| = 1)[0]);
        my $deadline = time + $duration;
        for my $i (1 .. $max) {
            last if time > $deadline;
            my $use_ka = rand() < 0.6;
            my $http = $use_ka ? $ka : $fresh;
            my $t = time;
            my $res = $http->get("$base/c$n/r$i");
            if ($res->{status} == 599 && $use_ka
                && $res->{content} =~ /Connection reset by peer/)
            {
                # the gateway closed the idle keepalive connection as the
                # request went out on it (old workers do at a reload): not
                # answered, so retried once, as RFC 9112 9.3.1 allows
                (my $why = $res->{content}) =~ s/\s+/ /g;
                printf {$fh} "RACE\t-\t%s\t%.3f ka\n", $why, $t;
                $t = time;
                $res = $http->get("$base/c$n/r$i");
            }
            my $up = $res->{headers}{'x-upstream'} // '-';
            my $body = $res->{content} // '';
            $body =~ s/\s+/ /g;
            $body = substr($body, 0, 200);
            printf {$fh} "%s\t%s\t%s\t%.3f %s\n", $res->{status}, $up, $body,
                         $t, $use_ka ? 'ka' : 'new';
        }
        close $fh;
        1;
    };
    print STDERR "client $n: $@" unless $rc;
    POSIX::_exit($rc ? 0 : 1);
}

my %EXITED;    # client pid => wait status

# the clients of @$pids still running
sub running {
    my ($pids) = @_;
    for my $pid (@$pids) {
        next if exists $EXITED{$pid};
        my $r = waitpid($pid, WNOHANG);
        $EXITED{$pid} = $r == $pid ? $? : -1 if $r != 0;
    }
    return grep { !exists $EXITED{$_} } @$pids;
}

# waits for the clients (killed after $timeout): how many failed
sub reap {
    my ($pids, $timeout) = @_;
    my $deadline = time + $timeout;
    sleep 0.05 while running($pids) && time < $deadline;
    for my $pid (running($pids)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $EXITED{$pid} = -1;
    }
    return scalar grep { $EXITED{$_} != 0 } @$pids;
}

# --- the registry model ----------------------------------------------------

# the expected view: id => { address, weight, state }
sub view_of {
    my ($ng) = @_;
    my $r = $ng->get('/gateway/services/churn');
    return undef unless $r->{status} == 200;
    my $j = json_decode($r->{content}) or return undef;
    return $j;
}

sub summary {
    my ($j) = @_;
    my %v;
    for my $i (@{ $j->{instances} || [] }) {
        $v{ $i->{id} } = { address => $i->{address}, weight => $i->{weight},
                           state => $i->{state} };
    }
    return \%v;
}

sub same {
    my ($a, $b) = @_;
    return json_encode($a) eq json_encode($b);
}

# --- one run ---------------------------------------------------------------

sub run_churn {
    my ($mode) = @_;
    my $redis = $mode eq 'redis';
    my $tag = "[$mode]";

    my $registry = $redis
        ? 'zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%% resync=1s'
        : 'zone=gw:1m';
    my $ng = start_nginx(conf => gateway_conf($registry), workers => 2);

    my %model;     # id => { address, weight, state }
    my %count;     # operation kind => n
    my @bad_ops;
    my @lagging;   # redis: PATCH answered from a zone that lags behind Redis

    my $admin = sub {
        my ($method, $id, $body) = @_;
        my $path = "/gateway/services/churn/instances/$id";
        my $r = $ng->request($method, $path,
                             $body ? (json => $body) : (), timeout => tmo(10));
        return $r;
    };

    my $check = sub {
        my ($what, $r, @want) = @_;
        return if grep { $r->{status} == $_ } @want;
        # With Redis, PATCH changes the hash in Redis and then mirrors the
        # fields into the zone; when the zone does not have the instance
        # yet (a notice not synced yet, or a snapshot taken before the
        # instance was written overtook the write) it answers 201 Created,
        # or 404 when a stale snapshot swept it out between the mirror and
        # the answer.  Redis has the change either way (the model stays
        # right); counted apart.
        if ($redis && $what =~ /^PATCH/ && "@want" eq '200'
            && ($r->{status} == 201 || $r->{status} == 404))
        {
            push @lagging, "$what: $r->{status} "
                           . substr($r->{content} // '', 0, 200);
            return;
        }
        push @bad_ops, "$what: $r->{status} (want @want) "
                       . substr($r->{content} // '', 0, 200);
    };

    # the stable instance, never touched again
    my $r = $admin->('PUT', 'stable',
                     { address => "127.0.0.1:$stable_port", weight => 1 });
    is($r->{status}, 201, "$tag register the stable instance");
    $model{stable} = { address => "127.0.0.1:$stable_port", weight => 1,
                       state => 'up' };

    # the Redis recipe (redis-cli MULTI ... EXEC) and its removal
    my $recipe = sub {
        my ($id, $addr, $weight, $state) = @_;
        my @cmds = (
            [ 'HSET', "gateway:svc:churn:inst:$id", 'address', $addr,
              'weight', $weight, 'state', $state ],
            [ 'SADD', 'gateway:svc:churn:ids', $id ],
            [ 'SADD', 'gateway:services', 'churn' ],
            [ 'INCR', 'gateway:svc:churn:rev' ],
            [ 'PUBLISH', 'gateway:events', 'churn' ],
        );
        return run_multi(\@cmds);
    };
    my $recipe_remove = sub {
        my ($id) = @_;
        return run_multi([
            [ 'DEL', "gateway:svc:churn:inst:$id" ],
            [ 'SREM', 'gateway:svc:churn:ids', $id ],
            [ 'INCR', 'gateway:svc:churn:rev' ],
            [ 'PUBLISH', 'gateway:events', 'churn' ],
        ]);
    };

    ok(wait_until(sub { my $j = view_of($ng); $j && @{ $j->{instances} } == 1 },
                  timeout => 5),
       "$tag the stable instance is routed");

    # load
    my @pids;
    my @files;
    for my $n (1 .. $CLIENTS) {
        my $f = "$dir/$mode-client-$n.out";
        push @files, $f;
        push @pids, start_client($ng, $n, $f, $DURATION, $MAX_REQ);
    }

    # churn while the clients run
    my $t0 = time;
    my $t1;
    my $pause = $DURATION / $MAX_OPS * 0.8;
    my $reloaded = 0;
    my ($tr0, $tr1) = (0, 0);
    my $ops = 0;

    while ($ops < $MAX_OPS && time - $t0 < $DURATION) {
        last if $ops % 10 == 0 && !running(\@pids);
        $ops++;

        if (!$reloaded && (time - $t0 > $DURATION / 2 || $ops > $MAX_OPS / 2)) {
            $reloaded = 1;
            $tr0 = time;
            ok($ng->reload(wait_old => 1, timeout => 30),
               "$tag reload in the middle of the churn (old workers exit)");
            $tr1 = time;
            next;
        }

        my $id = 'c' . int(rand($NIDS));
        my $addr = $targets[int(rand(@targets))];
        my $weight = 1 + int(rand(3));
        my $have = exists $model{$id};
        my $x = rand();

        if ($redis && $x < 0.25) {
            # straight into Redis: register / replace, or remove
            if (rand() < 0.6) {
                my $state = rand() < 0.8 ? 'up' : 'drain';
                my $err = $recipe->($id, $addr, $weight, $state);
                push @bad_ops, "recipe register $id: $err" if $err;
                if ($have) {
                    @{ $model{$id} }{qw(address weight state)}
                        = ($addr, $weight, $state);
                } else {
                    $model{$id} = { address => $addr, weight => $weight,
                                    state => $state };
                }
                $count{'redis register'}++;
            } else {
                my $err = $recipe_remove->($id);
                push @bad_ops, "recipe remove $id: $err" if $err;
                delete $model{$id};
                $count{'redis remove'}++;
            }

        } elsif ($x < 0.45) {
            $r = $admin->('PUT', $id, { address => $addr, weight => $weight });
            $check->("PUT $id", $r, $have ? 200 : 201);
            $model{$id} = { address => $addr, weight => $weight, state => 'up' };
            $count{register}++;

        } elsif ($x < 0.65) {
            $r = $admin->('DELETE', $id);
            $check->("DELETE $id", $r, $have ? 200 : 404);
            delete $model{$id};
            $count{deregister}++;

        } elsif ($x < 0.75) {
            $r = $admin->('PATCH', $id, { weight => $weight });
            $check->("PATCH $id weight", $r, $have ? 200 : 404);
            $model{$id}{weight} = $weight if $have;
            $count{'patch weight'}++;

        } elsif ($x < 0.9) {
            my $state = ('drain', 'up', 'down')[int(rand(3))];
            $r = $admin->('PATCH', $id, { state => $state });
            $check->("PATCH $id state", $r, $have ? 200 : 404);
            $model{$id}{state} = $state if $have;
            $count{"patch $state"}++;

        } else {
            $r = $admin->('PATCH', $id, { address => $addr });
            $check->("PATCH $id address", $r, $have ? 200 : 404);
            $model{$id}{address} = $addr if $have;
            $count{'patch address'}++;
        }

        sleep $pause;
    }

    $t1 = time;
    note("$tag $ops operations in " . sprintf('%.1f', $t1 - $t0) . 's: '
         . join(', ', map { "$_ $count{$_}" } sort keys %count));
    ok($reloaded, "$tag reloaded during the churn");
    is(scalar(@bad_ops), 0, "$tag every admin / redis operation answered as expected")
        or diag(join("\n", @bad_ops[0 .. ($#bad_ops < 20 ? $#bad_ops : 19)]));
    is(scalar(@lagging), 0, "$tag PATCH answered 200 for every instance"
                            . ' that Redis has')
        or diag(join("\n", map { "$tag $_" } @lagging[0 .. ($#lagging < 10 ? $#lagging : 10)]));

    is(reap(\@pids, tmo(30) + $DURATION), 0, "$tag the clients finished");

    # what the clients saw
    my (%status, %hit, @budget, @failed, @races, @late_races);
    my ($total, $retried) = (0, 0);
    my ($first, $last);
    for my $f (@files) {
        open my $fh, '<', $f or next;
        while (my $line = <$fh>) {
            chomp $line;
            my ($st, $up, $body, $when) = split /\t/, $line;
            my ($t) = ($when // '') =~ /^([\d.]+)/;
            if ($t) {
                $first = $t if !defined $first || $t < $first;
                $last = $t if !defined $last || $t > $last;
            }
            if ($st eq 'RACE') {
                push @races, $line;
                # only old workers that shut down close idle connections
                push @late_races, $line
                    unless $t && $t >= $tr0 - 0.1 && $t <= $tr1 + tmo(1);
                next;
            }
            $total++;
            $status{$st}++;
            my @tries = split /, /, $up;
            my @kind = map {
                my ($port) = /:(\d+)$/;
                !$port ? 'other' : $port == $stable_port ? 'stable'
                    : $SLOW{$port} ? 'slow' : $DEAD{$port} ? 'dead' : 'other'
            } @tries;
            if ($st != 200) {
                # 502 after only dead instances, the stable one never tried:
                # the retry budget ran out (see the "budget" test below)
                if ($st == 502 && @kind && !grep { $_ ne 'dead' } @kind) {
                    push @budget, $line;
                } else {
                    push @failed, $line;
                }
                next;
            }
            $retried++ if @tries > 1;
            $hit{$_}++ for @kind;
        }
    }
    note(sprintf("%s %d requests in %.1fs (churn %.1fs): ", $tag, $total,
                 ($last // 0) - ($first // 0), $t1 - $t0)
         . join(', ', map { "$_ x$status{$_}" } sort keys %status)
         . "; tries: " . join(', ', map { "$_ $hit{$_}" } sort keys %hit)
         . "; $retried retried; " . scalar(@races)
         . sprintf(' keepalive close races (reload at %.2f..%.2fs)',
                   $tr0 - $t0, $tr1 - $t0));
    cmp_ok($total, '>=', $CLIENTS * 10, "$tag the clients sent requests");
    is(scalar(@failed), 0, "$tag every request got 200 (or the 502 below)")
        or do {
            diag("$tag failed: $_") for @failed[0 .. ($#failed < 20 ? $#failed : 19)];
            my @log = grep { !/^200 / && m{/svc/} }
                      split /\n/, do { local (@ARGV, $/) = ($ng->dir . '/churn.log'); <> // '' };
            diag("$tag churn.log: $_") for @log[0 .. ($#log < 20 ? $#log : 19)];
        };
    is(scalar(@budget), 0, "$tag no 502 after only dead instances while"
                           . ' the stable one was up')
        or diag(join("\n", map { "$tag 502: $_" } @budget));
    is(scalar(@late_races), 0, "$tag keepalive connections were closed under"
                               . ' requests only during the reload')
        or diag(join("\n", map { "$tag race: $_" } @late_races));
    ok($hit{slow}, "$tag requests went to the churned slow instances");
    ok($hit{stable}, "$tag and to the stable one");

    # the registry converges to the last operations, with nothing active
    my $want = { map { $_ => $model{$_} } keys %model };
    my $j;
    my $converged = wait_until(sub {
        $j = view_of($ng) or return 0;
        return same(summary($j), $want);
    }, timeout => 10);
    ok($converged, "$tag GET /gateway/services/churn lists exactly the "
                   . scalar(keys %model) . ' instances of the last operations')
        or is_deeply($j ? summary($j) : undef, $want, "$tag registry view");

    my $idle = wait_until(sub {
        $j = view_of($ng) or return 0;
        return !grep { $_->{active} != 0 } @{ $j->{instances} };
    }, timeout => 10);
    ok($idle, "$tag every instance is back to active 0 when idle")
        or diag(json_encode([ map { { id => $_->{id}, active => $_->{active} } }
                              @{ $j->{instances} || [] } ]));
    my ($st) = grep { $_->{id} eq 'stable' } @{ $j->{instances} || [] };
    cmp_ok($st->{requests} // 0, '>', 0, "$tag the stable instance counted requests");

    # removed instances are freed once the last request lets go of them: a
    # registry that reports how many instances its zone holds ("allocated",
    # removed ones still referenced included) must hold only the listed ones
    # (they are freed at the next commit or tick, within about 100 ms)
    my ($all, $listed);
    wait_until(sub {
        $all = json_decode(scalar $ng->get('/gateway/services')->{content}) || {};
        $listed = 0;
        $listed += $_->{instances} for @{ $all->{services} || [] };
        return ($all->{allocated} // -1) == $listed;
    }, timeout => 2);
    like($all->{allocated} // '', qr/^\d+$/,
         "$tag GET /gateway/services reports \"allocated\"");
    is($all->{allocated}, $listed,
       "$tag no removed instance is left allocated in the zone");

    budget_test($ng, $tag);

    # a graceful stop with requests in flight on churned slow instances
    for my $id (keys %model) {
        next if $id eq 'stable';
        $admin->('DELETE', $id);
    }
    $r = $admin->('PUT', 'last', { address => "127.0.0.1:$slow[0]", weight => 5 });
    is($r->{status}, 201, "$tag a slow instance for the stop");
    my @last = map {
        start_client($ng, 100 + $_, "$dir/$mode-stop-$_.out", tmo(1), 50)
    } 1 .. 2;
    sleep($VG ? 2 : 0.3);
    $r = $admin->('DELETE', 'last');
    is($r->{status}, 200, "$tag it is deregistered while requests are in flight");
    $ng->stop;
    ok(!$ng->running, "$tag graceful stop");
    reap(\@last, tmo(20));
}

# The retry budget.  A request that starts while service "budget" has two
# instances gets peer.tries = 2; it goes to the hanging instance (weight 50).
# While it waits, two instances at dead ports are registered (weight 50).
# After the read timeout the next try goes to a dead instance (refused), and
# with tries exhausted the request ends with 502 although the stable instance
# was up all along and never tried.  With tries following the instances that
# are there, the request would go on to the second dead one and then to the
# stable one: 200.
sub budget_test {
    my ($ng, $tag) = @_;
    my $put = sub {
        my ($id, $port, $w) = @_;
        return $ng->request('PUT', "/gateway/services/budget/instances/$id",
            json => { address => "127.0.0.1:$port", weight => $w })->{status};
    };
    is($put->('stable', $stable_port, 1), 201, "$tag budget: a stable instance");
    is($put->('hang', $hang_port, 50), 201, "$tag budget: a hanging one");

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ng->port, Proto => 'tcp',
                                     Timeout => tmo(5));
    ok($sock, "$tag budget: connected") or return;
    syswrite($sock, "GET /budget/budget/x HTTP/1.0\r\nHost: gw\r\n\r\n");
    sleep($VG ? 1.5 : 0.3);       # it waits on the hanging instance now
    is($put->('dead1', $dead[0], 50), 201, "$tag budget: a dead instance"
                                          . ' registered while it waits');
    is($put->('dead2', $dead[1], 50), 201, "$tag budget: and another one");

    my $sel = IO::Select->new($sock);
    my $buf = '';
    my $deadline = time + tmo(10);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        last unless sysread($sock, $buf, 65536, length $buf);
    }
    close $sock;
    my ($status) = $buf =~ m{^HTTP/1\.\d (\d+)};
    my ($up) = $buf =~ m{^X-Upstream: ([^\r\n]*)}mi;
    note("$tag budget: " . ($status // 'no answer') . ', tried ' . ($up // '-'));
    is($status, 200, "$tag budget: the request ends at the stable instance"
                     . ' (tried ' . ($up // '-') . ')');
    for my $id (qw(stable hang dead1 dead2)) {
        $ng->request('DELETE', "/gateway/services/budget/instances/$id");
    }
}

# runs redis commands as one MULTI/EXEC: half the time through redis-cli
# (the documented recipe, verbatim), else on the harness's RESP connection;
# undef when all went well, else what went wrong
sub run_multi {
    my ($cmds) = @_;
    if (rand() < 0.5) {
        my $text = join('', "MULTI\n", (map { join(' ', @$_) . "\n" } @$cmds),
                        "EXEC\n");
        my ($out, $code) = redis_cli({ stdin => $text });
        return "redis-cli exit $code: $out" if $code;
        return "redis-cli: $out" if $out =~ /ERR|WRONGTYPE/;
        return undef;
    }
    my $r = redis_cmd('MULTI');
    return "MULTI: $r" unless defined $r && $r eq 'OK';
    for my $c (@$cmds) {
        $r = redis_cmd(@$c);
        return "@$c: $r" unless defined $r && $r eq 'QUEUED';
    }
    $r = redis_cmd('EXEC');
    return 'EXEC: ' . (defined $r ? $r : 'nil') unless ref $r eq 'ARRAY';
    for (@$r) { return "EXEC: $_" if redis_error($_) }
    return undef;
}

run_churn('embedded');

start_redis();
run_churn('redis');

done_testing();
