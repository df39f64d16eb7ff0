#!/usr/bin/perl
# The registry at scale: a registry-wide revision (P rev, P rev:time,
# P changes) that every change bumps, so that an idle resync is one O(1)
# script; heartbeat deadlines in a sorted set (P deadlines) that the holder
# of a Redis-side lease (P sweeper) sweeps, with keyspace notifications as
# the fast path; the slow full comparison as the safety net; and a gateway
# that adopts a registry written before these keys existed.
#
# Redis runs with CONFIG renamed, as on a managed Redis: the gateways cannot
# enable keyspace notifications, the test can (under the new name).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Sys::Hostname ();
use GatewayTest;

my $redis = start_redis(args => [ '--rename-command', 'CONFIG', 't26config' ]);

my $conf = <<'EOF';
    gateway_registry zone=gw:8m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t26: resync=500ms full_resync=%%FULL%%;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
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

expect_log_errors(qr/cannot read redis "notify-keyspace-events"/);

# --- today's data: no P rev, no P changes, no P deadlines ------------------
my $backend = free_port();
my $ttl = int(tmo(6));      # both must adopt it and audit it first, under load too
redis_cli({ stdin => <<"EOF" });
SET t26:epoch 0a1b2c3d4e5f6a7b
HSET t26:svc:old:inst:a address 127.0.0.1:$backend
HSET t26:svc:old:inst:b address 127.0.0.1:$backend ttl $ttl
EXPIRE t26:svc:old:inst:b $ttl
SADD t26:svc:old:ids a b
SADD t26:services old
SET t26:svc:old:rev 4
SADD t26:svc:ghost:ids x y z
SADD t26:services ghost
SET t26:svc:ghost:rev 1
EOF

# more services than one page of the full comparison (SSCAN ... COUNT 512)
redis_cli({ stdin => join '', map {
    "HSET t26:svc:p$_:inst:a address 127.0.0.1:$backend\n"
    . "SADD t26:svc:p$_:ids a\nSADD t26:services p$_\nSET t26:svc:p$_:rev 1\n"
} 1 .. 1500 });

my $A = start_nginx(conf => $conf, workers => 1, vars => { FULL => '2s' });
my $B = start_nginx(conf => $conf, workers => 1, vars => { FULL => '1h' });

sub ids {
    my ($ng, $svc) = @_;
    my ($st, undef, $body) = $ng->get("/gateway/services/$svc");
    return '' if $st == 404;
    return undef unless $st == 200;
    return join ',', map { $_->{id} } @{ json_decode($body)->{instances} };
}

sub weight {
    my ($ng, $svc, $id) = @_;
    my ($st, undef, $body) = $ng->get("/gateway/services/$svc");
    return 0 unless $st == 200;
    my ($i) = grep { $_->{id} eq $id } @{ json_decode($body)->{instances} };
    return $i ? $i->{weight} : 0;
}

sub swept_by {
    my ($ng, $id) = @_;
    return scalar(() = $ng->error_log
        =~ /gateway: instance "\Q$id\E" of service "[^"]+" missed its heartbeat/g);
}

my $host = lc Sys::Hostname::hostname();

ok(wait_until(sub { (ids($A, 'old') // '') eq 'a,b' && (ids($B, 'old') // '') eq 'a,b' },
              timeout => 5),
   'both gateways adopt a registry without the new keys');
sub nservices {
    my ($ng) = @_;
    my ($st, undef, $body) = $ng->get('/gateway/services');
    return $st == 200 ? scalar @{ json_decode($body)->{services} } : 0;
}
ok(wait_until(sub { nservices($A) == 1501 && nservices($B) == 1501 }, timeout => 10),
   'all 1501 services, synced page by page (less the one without instance keys)');
is(redis_cmd('GET', 't26:sweeper'), "$host:" . $A->pid,
   'the first gateway holds the sweep lease (hostname:master pid)');
ok(wait_until(sub { defined redis_cmd('ZSCORE', 't26:deadlines', 'old:b') }, timeout => 5),
   'the sweeper gives a heartbeat deadline to a key with a TTL written without one');
ok(!defined redis_cmd('ZSCORE', 't26:deadlines', 'old:a'),
   'and none to a key without a TTL');
ok(wait_until(sub { redis_cmd('SCARD', 't26:svc:ghost:ids') == 0 }, timeout => 5),
   'the sweeper drops ids whose key does not exist');
is(redis_cmd('GET', 't26:svc:ghost:rev'), 2, 'as one change of their service');
is(redis_cmd('SISMEMBER', 't26:services', 'ghost'), 0,
   'which leaves P services with its last id');
like($A->error_log, qr/this gateway now sweeps expired heartbeats \(lease "t26:sweeper"\)/,
     'the lease is logged by its holder');
unlike($B->error_log, qr/this gateway now sweeps/, 'and not by the other gateway');

# --- expiry through the sorted set, keyspace notifications off ------------
is(redis_cmd('t26config', 'GET', 'notify-keyspace-events')->[1], '',
   'keyspace notifications are off');
ok(wait_until(sub { ids($A, 'old') eq 'a' && ids($B, 'old') eq 'a' }, timeout => $ttl + 10),
   'an expired heartbeat leaves both gateways without notifications');
is(redis_cmd('SISMEMBER', 't26:svc:old:ids', 'b'), 0, 'its id is gone from Redis');
ok(!defined redis_cmd('ZSCORE', 't26:deadlines', 'old:b'), 'and its deadline');
ok(defined redis_cmd('GET', 't26:rev') && redis_cmd('GET', 't26:rev') >= 1,
   'the sweep bumps the registry revision');
is(swept_by($A, 'b') . '/' . swept_by($B, 'b'), '1/0',
   'only the lease holder sweeps it');

# --- a hand-written change without the registry-wide bump -----------------
sleep 1;    # the ticks have seen the sweep's revision
my $rev = redis_cmd('GET', 't26:rev');
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t26:svc:old:inst:a weight 7
INCR t26:svc:old:rev
EXEC
EOF
ok(wait_until(sub { weight($A, 'old', 'a') == 7 }, timeout => 10),
   'a change without P rev and without a notice is found by the full comparison');
is(weight($B, 'old', 'a'), 1,
   'which is the only way to find it (the other gateway, full_resync=1h, has not)');
is(redis_cmd('GET', 't26:rev'), $rev, 'the registry revision did not move');

# --- a lost notice: the tick names the service (P changes) ----------------
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t26:svc:tick:inst:a address 127.0.0.1:$backend
SADD t26:svc:tick:ids a
SADD t26:services tick
INCR t26:svc:tick:rev
EVAL "redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), ARGV[1])" 2 t26:rev t26:changes tick
EXEC
EOF
ok(wait_until(sub { (ids($B, 'tick') // '') eq 'a' }, timeout => 5),
   'a change without a notice but in P changes is fetched by the next tick');

# the recipes bump P rev only: the tick then runs the full comparison
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t26:svc:recipe:inst:a address 127.0.0.1:$backend
SADD t26:svc:recipe:ids a
SADD t26:services recipe
INCR t26:svc:recipe:rev
INCR t26:rev
EXEC
EOF
ok(wait_until(sub { (ids($B, 'recipe') // '') eq 'a' }, timeout => 5),
   'a change that bumps P rev but not P changes is found by the tick too');

# --- admin writes bump and stamp the registry revision ----------------------
$rev = redis_cmd('GET', 't26:rev');
my ($st) = $B->request('PUT', '/gateway/services/hb/instances/c',
                       json => { address => "127.0.0.1:$backend", ttl => 2 });
like($st, qr/^20[012]$/, 'a registration through the admin API');
is(redis_cmd('GET', 't26:rev'), $rev + 1, 'bumps the registry revision by one');
is(redis_cmd('ZSCORE', 't26:changes', 'hb'), $rev + 1,
   'and records the service in P changes at that revision');
my $now = redis_cmd('TIME');
ok(abs(redis_cmd('GET', 't26:rev:time') - ($now->[0] * 1000 + int($now->[1] / 1000))) < 5000,
   'and stamps it with the time of the change (ms)');
my $dl = redis_cmd('ZSCORE', 't26:deadlines', 'hb:c');
ok(defined $dl, 'the instance has a heartbeat deadline');

$rev = redis_cmd('GET', 't26:rev');
sleep 1;
($st) = $B->request('POST', '/gateway/services/hb/instances/c/heartbeat');
like($st, qr/^20[012]$/, 'a heartbeat');
is(redis_cmd('GET', 't26:rev'), $rev, 'does not move the registry revision');
ok(redis_cmd('ZSCORE', 't26:deadlines', 'hb:c') > $dl, 'but moves the deadline');

ok(wait_until(sub { ids($A, 'hb') eq '' && ids($B, 'hb') eq '' },
              timeout => 10),
   'the expired instance leaves both gateways');
is(swept_by($A, 'c') . '/' . swept_by($B, 'c'), '1/0',
   'two gateways: only the lease holder swept it');

# --- a change fetches only what changed (the service's log) ----------------
for my $i (1 .. 10) {
    $B->request('PUT', "/gateway/services/big/instances/i$i",
                json => { address => "127.0.0.1:$backend" });
}
ok(wait_until(sub { ids($A, 'big') =~ /^(?:i\d+,){9}i\d+$/ && ids($B, 'big') =~ /^(?:i\d+,){9}i\d+$/ },
              timeout => 5),
   'a service of 10 instances registered through the admin API');
sub hgetalls {
    my ($line) = grep { /^cmdstat_hgetall:/ } split /\r?\n/, redis_cmd('INFO', 'commandstats');
    return $line && $line =~ /calls=(\d+)/ ? $1 : 0;
}
redis_cmd('t26config', 'RESETSTAT');
($st) = $B->request('PATCH', '/gateway/services/big/instances/i4', json => { weight => 9 });
like($st, qr/^20[012]$/, 'one of them patched');
ok(wait_until(sub { weight($A, 'big', 'i4') == 9 && weight($B, 'big', 'i4') == 9 }, timeout => 5),
   'both gateways have the change');
ok(hgetalls() <= 4, 'each fetched that instance alone (' . hgetalls()
   . ' HGETALL: the patch script\'s and one per gateway, not 10 each)');
($st) = $B->request('DELETE', '/gateway/services/big/instances/i7');
ok(wait_until(sub { ids($A, 'big') !~ /\bi7\b/ && ids($B, 'big') !~ /\bi7\b/ }, timeout => 5),
   'a deregistration fetched the same way removes the instance everywhere');
is(scalar(() = ids($A, 'big') =~ /i\d+/g), 9, 'and only that one');
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t26:svc:big:inst:i2 weight 5
INCR t26:svc:big:rev
PUBLISH t26:events big
EXEC
EOF
ok(wait_until(sub { weight($A, 'big', 'i2') == 5 && weight($B, 'big', 'i2') == 5 }, timeout => 5),
   'a change by hand, not in the log, makes the gateways fetch the whole service');

# --- with keyspace notifications (the fast path) ----------------------------
redis_cmd('t26config', 'SET', 'notify-keyspace-events', 'Ex');
($st) = $A->request('PUT', '/gateway/services/hb/instances/d',
                    json => { address => "127.0.0.1:$backend", ttl => 1 });
like($st, qr/^20[012]$/, 'an instance with a heartbeat of 1 s');
ok(wait_until(sub { (ids($B, 'hb') // '') eq 'd' }, timeout => 5), 'is routed');
ok(wait_until(sub { ids($A, 'hb') eq '' && ids($B, 'hb') eq '' }, timeout => 10),
   'with notifications on, its expiry leaves both gateways');
ok(wait_until(sub { !defined redis_cmd('ZSCORE', 't26:deadlines', 'hb:d') }, timeout => 5),
   'and its deadline is dropped');
is(swept_by($A, 'd') . '/' . swept_by($B, 'd'), '1/0', 'by the lease holder only');

# --- the lease moves when its gateway dies ----------------------------------
my $apid = $A->pid;
$A->kill_hard;
ok(wait_until(sub { (redis_cmd('GET', 't26:sweeper') // '') eq "$host:" . $B->pid },
              timeout => 10),
   'the lease moves to the other gateway once the dead one\'s expires');
ok($B->wait_log(qr/this gateway now sweeps expired heartbeats/, timeout => 5),
   'which logs it');
redis_cmd('t26config', 'SET', 'notify-keyspace-events', '');
($st) = $B->request('PUT', '/gateway/services/hb/instances/e',
                    json => { address => "127.0.0.1:$backend", ttl => 1 });
like($st, qr/^20[012]$/, 'another instance with a heartbeat of 1 s');
ok(wait_until(sub { ids($B, 'hb') eq '' && !redis_cmd('SISMEMBER', 't26:svc:hb:ids', 'e') },
              timeout => 10),
   'is swept by the new holder (notifications off)');
is(swept_by($B, 'e'), 1, 'which logs it');

# --- the sync calls its scripts by SHA1; a SCRIPT FLUSH reloads them --------
redis_cmd('SCRIPT', 'FLUSH');
redis_cli({ stdin => <<"EOF" });
MULTI
HSET t26:svc:flushed:inst:a address 127.0.0.1:$backend
SADD t26:svc:flushed:ids a
SADD t26:services flushed
INCR t26:svc:flushed:rev
PUBLISH t26:events flushed
EXEC
EOF
ok(wait_until(sub { (ids($B, 'flushed') // '') eq 'a' }, timeout => 10),
   'after SCRIPT FLUSH the gateway reloads its scripts and syncs again');
ok($B->wait_log(qr/redis link lost: the sync's scripts are gone from redis/, timeout => 5),
   'which it logs');

# --- a gateway that stops hands the lease back --------------------------------
# C renews every 5 s (a lease of 15 s): another gateway takes it at once
# only if C gives it back when it stops
(my $slow = $conf) =~ s/resync=500ms/resync=5s/;
my $C = start_nginx(conf => $slow, workers => 1, vars => { FULL => '1h' });
ok($C->wait_log(qr/redis link to "[^"]*" is up/, timeout => 10), 'a third gateway, C, links up');
is(redis_cmd('GET', 't26:sweeper'), "$host:" . $B->pid, 'B still sweeps');
$B->stop;
like($B->error_log, qr/this gateway hands the sweep lease back \(lease "t26:sweeper"\)/,
     'B, stopped, hands the lease back');
ok(wait_until(sub { (redis_cmd('GET', 't26:sweeper') // '') eq "$host:" . $C->pid },
              timeout => tmo(8)),
   'C takes it at its next tick');
my $D = start_nginx(conf => $conf, workers => 1, vars => { FULL => '1h' });
ok($D->wait_log(qr/redis link to "[^"]*" is up/, timeout => 10), 'a fourth gateway, D, links up');
select(undef, undef, undef, 0.5);
is(redis_cmd('GET', 't26:sweeper'), "$host:" . $C->pid, '... and finds the lease taken by C');
$C->stop;
ok(wait_until(sub { (redis_cmd('GET', 't26:sweeper') // '') eq "$host:" . $D->pid },
              timeout => tmo(4)),
   'when C stops, D takes the lease well before C\'s would have expired (15 s)');
ok($D->wait_log(qr/this gateway now sweeps expired heartbeats/, timeout => 5),
   'which D logs');

done_testing();
