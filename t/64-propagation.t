#!/usr/bin/perl
# Change notices on P feed carry the change and its write time: a gateway
# whose revision is the one before applies it without a fetch, and records
# the propagation lag (gateway_metrics, the status JSON, the service's
# JSON).  A gap in revisions, a notice from another registry's epoch or a
# bad notice leads to a fetch or is skipped and logged; bad records in a
# notice are skipped like any record from Redis.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

# resync=1h: no tick fetches anything while the test runs, so what arrives
# arrives through the notices or the fetches they cause
my $conf = <<'EOF';
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t64: resync=1h full_resync=1h;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location = /metrics {
            gateway_metrics;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+) {
            proxy_pass http://gw;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend\n";
        }
    }
EOF

my $A = start_nginx(conf => $conf, workers => 1);
my $B = start_nginx(conf => $conf, workers => 2);
my $backend = '127.0.0.1:' . $A->port('PORT2');

for my $ng ($A, $B) {
    ok($ng->wait_log(qr/gateway: redis link to "[^"]*" is up/, timeout => 10),
       'a gateway links up');
}
ok(wait_until(sub { (redis_cmd('PUBSUB', 'NUMSUB', 't64:feed') || [])->[1] == 2 },
              timeout => 10),
   'both gateways subscribe to t64:feed');

sub service {
    my ($ng, $svc) = @_;
    my ($st, undef, $body) = $ng->get("/gateway/services/$svc");
    return undef unless $st == 200;
    return json_decode($body);
}

sub weight {
    my ($ng, $svc, $id) = @_;
    my $j = service($ng, $svc) or return 0;
    my ($i) = grep { $_->{id} eq $id } @{ $j->{instances} || [] };
    return $i ? $i->{weight} : 0;
}

sub status_redis {
    my ($ng) = @_;
    my ($st, undef, $body) = $ng->get('/gateway/services');
    return undef unless $st == 200;
    return (json_decode($body) || {})->{redis};
}

sub metrics {
    my ($ng) = @_;
    my ($st, undef, $body) = $ng->get('/metrics');
    return $st == 200 ? $body : '';
}

sub metric {
    my ($text, $name) = @_;
    return $text =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

sub fetches { return redis_calls('evalsha') }

# --- a new service: B has no revision before it, so it fetches ---------------

my ($st, undef, $body) = $A->request('PUT', '/gateway/services/users/instances/u1',
                                     json => { address => $backend, weight => 2 });
is($st, 201, 'a registration through the admin API of A') or diag($body);
ok(wait_until(sub { weight($B, 'users', 'u1') == 2 }, timeout => 5),
   'reaches B (which fetched the new service)');

my $r0 = status_redis($B);
is($r0->{lag_changes}, 0, 'B has applied no change from a notice yet');
ok(!defined $r0->{lag_ms}, '... and its lag is null');
like(metrics($B), qr/^gateway_registry_propagation_lag_seconds_count 0$/m,
     'the histogram is empty');

# --- the next change is carried by its notice: no fetch ----------------------

my $f0 = fetches();
($st) = $A->request('PATCH', '/gateway/services/users/instances/u1',
                    json => { weight => 5 });
is($st, 200, 'a PATCH through A');
ok(wait_until(sub { weight($B, 'users', 'u1') == 5 }, timeout => 5),
   'reaches B');
is(fetches() - $f0, 0, 'without a single EVALSHA (no fetch: the notice carried it)');

my $r1 = status_redis($B);
is($r1->{lag_changes}, 1, 'B counts one change applied from a notice');
ok(defined $r1->{lag_ms} && $r1->{lag_ms} >= 0 && $r1->{lag_ms} < tmo(2000),
   "its lag is plausible ($r1->{lag_ms} ms)");
ok(defined $r1->{lag_p99_ms} && $r1->{lag_p99_ms} >= $r1->{lag_ms},
   "the p99 is the bound of its bucket ($r1->{lag_p99_ms} ms)");

my $svc = service($B, 'users');
is($svc->{revision}, redis_cmd('GET', 't64:svc:users:rev'), 'B has Redis\' revision');
ok(defined $svc->{lag_ms} && $svc->{lag_ms} == $r1->{lag_ms},
   'the service shows the lag of the change that brought its revision');

my $m = metrics($B);
is(metric($m, 'gateway_registry_propagation_lag_seconds_count'), 1,
   'gateway_metrics: the histogram counts it');
is(metric($m, 'gateway_registry_propagation_lag_seconds_bucket{le="+Inf"}'), 1,
   '... in its buckets');
my $last = metric($m, 'gateway_registry_propagation_lag_last_seconds');
ok(defined $last && $last >= 0 && $last < tmo(2),
   "... and the last lag is a plausible gauge ($last s)");
ok(abs($last * 1000 - $r1->{lag_ms}) < 0.01, '... the same as the status JSON\'s');
is(metric($m, 'gateway_registry_propagation_lag_seconds_sum'), $last,
   'the sum is the one lag so far');
SKIP: {
    my $promtool = '/usr/bin/promtool';
    skip 'promtool is not installed (Debian package prometheus)', 1 unless -x $promtool;
    my $f = test_dir() . '/metrics.txt';
    open my $fh, '>', $f or die "$f: $!";
    print $fh $m;
    close $fh;
    my $out = `$promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool check metrics accepts the page with the lag families') or diag($out);
}

# the writer applies its own notice too (it mirrored the write already)
ok(status_redis($A)->{lag_changes} >= 1, 'A counts its own change as well');

# a deregistration of the last instance: the notice says the service left
($st) = $A->request('PUT', '/gateway/services/solo/instances/s1',
                    json => { address => $backend });
ok(wait_until(sub { weight($B, 'solo', 's1') == 1 }, timeout => 5),
   'another service reaches B');
$f0 = fetches();
($st) = $A->request('DELETE', '/gateway/services/solo/instances/s1');
is($st, 200, 'its only instance is deregistered through A');
ok(wait_until(sub { !service($B, 'solo') }, timeout => 5),
   'and the service leaves B');
is(fetches() - $f0, 0, 'without a fetch');

# --- a gap in revisions: B fetches, it does not apply the notice -------------

sub ns { join '', map { length($_) . ":$_," } @_ }

my $epoch = redis_cmd('GET', 't64:epoch');
my $rev = redis_cmd('GET', 't64:svc:users:rev');
my $n0 = status_redis($B)->{lag_changes};
$f0 = fetches();
redis_cmd('PUBLISH', 't64:feed',
          ns('1', $epoch, 'users', $rev + 2, 1, '1700000000000000', 0, 1,
             'u1', 2, 'address', $backend, 'weight', 7));
ok(wait_until(sub { fetches() > $f0 }, timeout => 5),
   'a notice two revisions ahead makes B fetch the service');
select(undef, undef, undef, 0.3);
is(weight($B, 'users', 'u1'), 5, '... and B keeps what Redis holds, not the notice\'s weight 7');
is(status_redis($B)->{lag_changes}, $n0, 'no lag is recorded for it');

# another registry's epoch: fetched as well
$f0 = fetches();
redis_cmd('PUBLISH', 't64:feed',
          ns('1', 'someotherepoch1', 'users', $rev + 1, 1, '1700000000000000', 0, 1,
             'u1', 2, 'address', $backend, 'weight', 8));
ok(wait_until(sub { fetches() > $f0 }, timeout => 5),
   'a notice of another epoch makes B fetch the service');
select(undef, undef, undef, 0.3);
is(weight($B, 'users', 'u1'), 5, '... and B keeps what Redis holds');

# --- bad notices: skipped and logged, nothing lost ---------------------------

expect_log_errors(qr/redis notice on "t64:feed"/, qr/redis key "t64:svc:users:inst:[^"]*" skipped/);

redis_cmd('PUBLISH', 't64:feed', "3:1,x\r\n[alert] forged");
ok($B->wait_log(qr/redis notice on "t64:feed" is malformed, ignored: "3:1,x\\x0d\\x0a\[alert\] forged"/,
                timeout => 5),
   'a malformed notice is logged, its text escaped');
redis_cmd('PUBLISH', 't64:feed', ns('2', $epoch, 'users', $rev + 1, 1, '1', 0, '-'));
ok($B->wait_log(qr/redis notice on "t64:feed" for service "users" is of an unknown format, fetching the service/,
                timeout => 5),
   'an unknown format names the service, which is fetched');
redis_cmd('PUBLISH', 't64:feed', ns('1', $epoch, 'users', $rev + 1));
ok($B->wait_log(qr/redis notice on "t64:feed" for service "users" is of too few items, fetching the service/,
                timeout => 5),
   'a notice of too few items still names the service, which is fetched');
redis_cmd('PUBLISH', 't64:feed', ns('1', $epoch, "us\x01ers", $rev + 1, 1, '1', 0, '-'));
ok($B->wait_log(qr/redis notice on "t64:feed" is of an invalid service name, ignored: "[^"]*us\\x01ers/, timeout => 5),
   'an invalid service name is ignored');
redis_cmd('PUBLISH', 't64:feed', ns('1', $epoch, 'users', $rev + 1, 1, '1', 0, 5, 'u1', 1));
ok($B->wait_log(qr/for service "users" is of a bad (?:number of instances|instance), fetching/,
                timeout => 5),
   'a notice whose counts do not add up is refused');
# more instances claimed than carried, the one carried with many fields:
# refused before any of its pointers is laid out (they would not fit)
redis_cmd('PUBLISH', 't64:feed',
          ns('1', $epoch, 'users', $rev + 1, 1, '1', 0, 410,
             'u1', 200, map { ("f$_", 'v') } 1 .. 200));
ok($B->wait_log(qr/for service "users" is of a bad number of instances, fetching/,
                timeout => 5),
   'a notice claiming more instances than it carries is refused');
select(undef, undef, undef, 0.3);
ok(!$B->wait_log(qr/exited on signal/, timeout => 0.5), '... and no worker crashed');

# a contiguous notice with one good and one bad record (by hand: anyone who
# can write Redis can publish): the good one is applied, the bad one skipped
$rev = redis_cmd('GET', 't64:svc:users:rev');
redis_cmd('PUBLISH', 't64:feed',
          ns('1', $epoch, 'users', $rev + 1, 1, '1700000000000000', 0, 2,
             'u1', 2, 'address', $backend, 'weight', 3,
             'u2', 1, 'address', "127.0.0.1:1\r\nX-Evil: 1"));
ok(wait_until(sub { weight($B, 'users', 'u1') == 3 }, timeout => 5),
   'a contiguous notice by hand is applied');
ok($B->wait_log(qr/redis key "t64:svc:users:inst:u2" skipped: /, timeout => 5),
   'its bad record is skipped and logged');
ok(!weight($B, 'users', 'u2'), '... and not routed');
my $rb = status_redis($B);
ok($rb->{lag_ms} > 86400000, 'a write time in the past (2023) gives a lag of years');
is(service($B, 'users')->{revision}, $rev + 1, 'B is at the notice\'s revision');

# a writer whose clock runs ahead (a write time in 2100): the lag is 0,
# never a negative one wrapped to a huge number
redis_cmd('PUBLISH', 't64:feed',
          ns('1', $epoch, 'users', $rev + 2, 1, '4102444800000000', 0, 1,
             'u1', 2, 'address', $backend, 'weight', 4));
ok(wait_until(sub { weight($B, 'users', 'u1') == 4 }, timeout => 5),
   'a notice written by a clock ahead is applied');
is(status_redis($B)->{lag_ms}, 0, '... with a lag of 0');

my ($code) = $B->get('/svc/users/');
is($code, 200, 'B still routes users');

# --- the tick: O(1) while every notice came in turn --------------------------

(my $ticking = $conf) =~ s/resync=1h/resync=200ms/;
my $C = start_nginx(conf => $ticking, workers => 1);
ok($C->wait_log(qr/gateway: redis link to "[^"]*" is up/, timeout => 10), 'C, ticking every 200 ms, links up');
ok(wait_until(sub { weight($C, 'users', 'u1') == redis_cmd('HGET', 't64:svc:users:inst:u1', 'weight') }, timeout => 5), 'C has the registry');
select(undef, undef, undef, 0.5);

# five changes, each followed by more than one tick of C: a tick that reads
# a moved P rev asks P changes (ZREVRANGE) what changed, unless the notices
# brought every revision (a tick may still fall between a write and its
# notice: once, not five times)
my $z0 = redis_calls('zrevrange');
my $got = 0;
for my $w (2 .. 6) {
    $A->request('PATCH', '/gateway/services/users/instances/u1', json => { weight => $w });
    $got++ if wait_until(sub { weight($C, 'users', 'u1') == $w }, timeout => 5);
    select(undef, undef, undef, 0.5);
}
is($got, 5, 'five changes reach C');
cmp_ok(redis_calls('zrevrange') - $z0, '<=', 1,
   'C\'s ticks meanwhile only read P rev: every registry revision came with its notice');
is(metric(metrics($C), 'gateway_registry_revision'), redis_cmd('GET', 't64:rev'),
   'C\'s gateway_registry_revision is Redis\' P rev');

# a change by hand without a notice leaves a gap in the registry revisions
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t64:svc:users:inst:u1 weight 9
INCR t64:svc:users:rev
EVAL "redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), ARGV[1])" 2 t64:rev t64:changes users
EXEC
EOF
ok(wait_until(sub { weight($C, 'users', 'u1') == 9 }, timeout => 5),
   'a change by hand without a notice is found by C\'s tick');
ok(redis_calls('zrevrange') > $z0, '... which asked P changes for it');
is(metric(metrics($C), 'gateway_registry_revision'), redis_cmd('GET', 't64:rev'),
   '... and C\'s gateway_registry_revision is the new P rev');

# a Redis that answers nothing (stopped) is a dead link: C drops it
expect_log_errors(qr/redis link lost/, qr/redis connection to "[^"]*" failed/);
$redis->pause;
ok($C->wait_log(qr/redis link lost: the previous resync got no answer/, timeout => tmo(5)),
   'C drops a link on which Redis answers nothing for a whole resync interval');
$redis->resume;
ok(wait_until(sub { my @up = $C->error_log =~ /redis link to "[^"]*" is up/g; @up >= 2 }, timeout => 10),
   'and links up again once Redis answers');

# P rev goes back (a Redis that came back empty, a registry restored) while
# C's notices had brought it further: one full comparison takes the new
# value, and the ticks after it are O(1) again
$A->request('PATCH', '/gateway/services/users/instances/u1', json => { weight => 7 });
ok(wait_until(sub { weight($C, 'users', 'u1') == 7 }, timeout => 5),
   'a change through A reaches C by its notice');
redis_cmd('SET', 't64:rev', 1);
ok(wait_until(sub { metric(metrics($C), 'gateway_registry_revision') == 1 },
              timeout => 5),
   'P rev set back to 1: C\'s full comparison takes it');
select(undef, undef, undef, 0.3);
my $s0 = redis_calls('sscan');
select(undef, undef, undef, 1.5);
cmp_ok(redis_calls('sscan') - $s0, '<=', 1,
       'and C\'s next ticks (every 200 ms) make no full comparison');
$C->stop;
$A->stop;
$B->stop;

done_testing();
