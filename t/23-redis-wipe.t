#!/usr/bin/perl
# A Redis that comes back empty (FLUSHALL under load): the gateway keeps
# routing what it knows, says the registry is stale, writes it back to
# Redis so that heartbeats keep working, and never empties its state file.
# Deliberate deregistration, service by service, keeps working.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use GatewayTest;

my $redis = start_redis();

my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t23: resync=300ms
                     state_file=%%NGINX_DIR%%/registry.state;

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

my $backend = $ng->port('PORT2');
my @services = map { "s$_" } 1 .. 4;

sub register {
    my ($svc, $id, $ttl, $more) = @_;
    my $expire = $ttl ? "EXPIRE t23:svc:$svc:inst:$id $ttl\n" : '';
    $more = $more ? " $more" : '';
    redis_cli({ stdin => <<"EOF" });
MULTI
HSET t23:svc:$svc:inst:$id address 127.0.0.1:$backend ttl $ttl$more
${expire}SADD t23:svc:$svc:ids $id
SADD t23:services $svc
INCR t23:svc:$svc:rev
PUBLISH t23:events $svc
EXEC
EOF
}

# three heart-beating instances per service, and one without a TTL
for my $svc (@services) {
    register($svc, "hb$_", 4) for 1 .. 3;
    register($svc, 'fixed', 0,
             q{weight 3 zone z state drain metadata '{"k":"v"}'});
}

ok(wait_until(sub {
       !grep { ($ng->get("/svc/$_"))[0] != 200 } @services
   }, timeout => 5), 'all services are routed');
ok(wait_until(sub {
       my $f = GatewayTest::_slurp($ng->dir . '/registry.state') // '';
       !grep { $f !~ /"name":"$_"/ } @services
   }, timeout => 5), 'the state file holds them');

# the heartbeats: EXPIRE on every heart-beating key, as the recipe does
my $hb = fork // die "fork: $!";
if ($hb == 0) {
    $SIG{$_} = 'DEFAULT' for qw(TERM INT);
    my $c = redis_connect();
    my $end = time + 40;
    while (time < $end) {
        for my $svc (@services) {
            eval { $c->cmd('EXPIRE', "t23:svc:$svc:inst:hb$_", 4) } for 1 .. 3;
        }
        sleep 0.25;
    }
    POSIX::_exit(0);
}

# the load: requests to every service, and the state file watched
my $report = $ng->dir . '/load.txt';
my $load = fork // die "fork: $!";
if ($load == 0) {
    $SIG{$_} = 'DEFAULT' for qw(TERM INT);
    my ($ok, $bad, $empty) = (0, 0, 0);
    my $end = time + 6;
    while (time < $end) {
        for my $svc (@services) {
            my ($st) = $ng->get("/svc/$svc");
            $st == 200 ? $ok++ : $bad++;
        }
        my $f = GatewayTest::_slurp($ng->dir . '/registry.state') // '';
        $empty++ if grep { $f !~ /"name":"$_"/ } @services;
    }
    GatewayTest::_spit($report, "$ok $bad $empty\n");
    POSIX::_exit(0);
}

sleep 1;
expect_log_errors(qr/gateway: redis "127\.0\.0\.1:\d+" lost the registry/,
                  qr/writing the registry back to redis failed/);

# the wipe, with writes refused for a while so that the stale state shows
redis_cli({ stdin => "MULTI\nFLUSHALL\nCONFIG SET min-replicas-to-write 1\nEXEC\n" });
my $stale;
ok(wait_until(sub {
       my ($st, $h, $body) = $ng->get('/gateway/services');
       $stale = json_decode($body) if $st == 200;
       $stale && $stale->{stale};
   }, timeout => 5), 'the admin API says the registry is stale');
ok($stale && $stale->{stale_since} > time - 60, 'and since when');
is(scalar @{ $stale->{services} || [] }, scalar @services,
   'while it still lists every service');
ok($ng->wait_log(qr/\[alert\].*lost the registry .*routing goes on with the last known 16 instances of 4 services/,
                 timeout => 5),
   'the lost registry is logged loudly, with what is kept');

sleep 1;
redis_cli('CONFIG', 'SET', 'min-replicas-to-write', 0);

ok(wait_until(sub {
       my ($st, $h, $body) = $ng->get('/gateway/services');
       $st == 200 && !json_decode($body)->{stale};
   }, timeout => 5), 'once Redis takes writes, the registry is no longer stale');
like($ng->error_log, qr/the registry is back in redis .*no longer stale/,
     'which is logged');

waitpid $load, 0;
my ($ok, $bad, $empty) = split ' ', GatewayTest::_slurp($report) // '0 1 1';
ok($ok > 50, "requests kept flowing through the wipe ($ok)");
is($bad, 0, 'no client errors through the wipe');
is($empty, 0, 'the state file never lost a service');

# every instance is back in Redis, and the heart-beating ones stay there
for my $svc (@services) {
    is(redis_cli('SCARD', "t23:svc:$svc:ids") + 0, 4, "$svc: all ids back in Redis");
}
sleep 5;   # longer than the TTL: only heartbeats keep the keys alive
my $alive = 0;
for my $svc (@services) {
    $alive += (redis_cli('EXISTS', "t23:svc:$svc:inst:hb$_") =~ /^1/) for 1 .. 3;
}
is($alive, 12, 'heart-beating instances are still registered after their TTL');
is(redis_cli('TTL', 't23:svc:s1:inst:fixed') + 0, -1,
   'an instance without a TTL is written back without one');
my $back = redis_cmd('HGETALL', 't23:svc:s1:inst:fixed');
is_deeply(ref $back eq 'ARRAY' ? { @$back } : $back,
          { address => "127.0.0.1:$backend", weight => 3, zone => 'z',
            state => 'drain', backup => 'false', ttl => 0, metadata => '{"k":"v"}' },
          'an instance is written back with every field as it was');
my ($st, $h, $body) = $ng->get('/gateway/services/s1');
is(scalar @{ json_decode($body)->{instances} }, 4, 's1 has its four instances');

# deliberate deregistration, service by service, is followed as before
redis_cli({ stdin => <<'EOF' });
DEL t23:svc:s4:inst:hb1 t23:svc:s4:inst:hb2 t23:svc:s4:inst:hb3 t23:svc:s4:inst:fixed
DEL t23:svc:s4:ids t23:svc:s4:rev
SREM t23:services s4
PUBLISH t23:events s4
EOF
ok(wait_until(sub { ($ng->get('/svc/s4'))[0] == 503 }, timeout => 5),
   'a service deregistered in Redis leaves routing');
is(($ng->get('/svc/s1'))[0], 200, 'the others stay');

# a marker set by hand with quotes and a newline marks the registry but
# never reaches the state file's JSON
redis_cmd('SET', 't23:epoch', "x\"}\n{\"oops");
register('s5', 'fixed', 0);
ok(wait_until(sub {
       (GatewayTest::_slurp($ng->dir . '/registry.state') // '') =~ /"name":"s5"/
   }, timeout => 5), 'the state file is written after the next change');
my @bad = grep { !eval { json_decode($_); 1 } }
          split /\n/, GatewayTest::_slurp($ng->dir . '/registry.state');
is(scalar @bad, 0, 'every line of the state file is still a JSON document');
unlike(GatewayTest::_slurp($ng->dir . '/registry.state'), qr/oops/,
       'the bad marker is not in it');
is(($ng->get('/svc/s1'))[0], 200, 'and the registry is not stale');

kill 'TERM', $hb;
waitpid $hb, 0;

done_testing();
