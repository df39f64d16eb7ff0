#!/usr/bin/perl
# The Redis registry: one worker syncs (a lease that moves when it dies), a
# lost link reconnects and resyncs, two gateways share one Redis, and the
# state file routes a gateway that starts while Redis is down.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

my $conf = <<'EOF';
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%/3
                     prefix=t21: resync=500ms
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
            add_header X-Upstream $upstream_addr always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend\n";
        }
    }
EOF

my $ng = start_nginx(conf => $conf, workers => 2);
my $backend = $ng->port('PORT2');

sub register_in_redis {
    my ($svc, $id, $addr) = @_;
    my $out = redis_cli({ stdin => <<"EOF" }, '-n', 3);
MULTI
HSET t21:svc:$svc:inst:$id address $addr
SADD t21:svc:$svc:ids $id
SADD t21:services $svc
INCR t21:svc:$svc:rev
INCR t21:rev
PUBLISH t21:events $svc
EXEC
EOF
    return $out;
}

sub routed {
    my ($svc, $timeout) = @_;
    return wait_until(sub { ($ng->get("/svc/$svc"))[0] == 200 },
                      timeout => $timeout // 5);
}

sub gateway_links {
    my $list = redis_cmd('CLIENT', 'LIST');
    my $n = 0;
    for my $line (split /\n/, $list) {
        $n++ if $line =~ /cmd=(?:subscribe|eval|ping|config|psubscribe)/
                || $line =~ /sub=[1-9]/;
    }
    return $n;
}

register_in_redis('one', 'a', "127.0.0.1:$backend");
ok(routed('one'), 'a registration in Redis (db 3, prefix t21:) is routed');

my $subs = redis_cmd('PUBSUB', 'NUMSUB', 't21:events');
is($subs->[1], 1, 'exactly one worker subscribes to change notices');

# the lease moves when the worker holding it dies
my ($holder) = $ng->error_log =~ /(\d+)#\d+: gateway: this worker now keeps the registry/;
ok($holder, "worker $holder holds the registry lease");
expect_log_errors(qr/worker process \d+ exited on signal 9/);
kill 'KILL', $holder;
ok(wait_until(sub {
       my @m = $ng->error_log =~ /(\d+)#\d+: gateway: this worker now keeps the registry/g;
       return @m >= 2 && $m[-1] != $holder;
   }, timeout => 5),
   'another worker takes the lease after the holder is killed');
register_in_redis('two', 'a', "127.0.0.1:$backend");
ok(routed('two'), 'and registrations are synced again');
ok(wait_until(sub { redis_cmd('PUBSUB', 'NUMSUB', 't21:events')->[1] == 1 },
              timeout => 3),
   'still exactly one subscriber');

# Redis restarts empty: the gateway reconnects and follows Redis
$redis->restart;
ok(wait_until(sub { redis_cmd('PUBSUB', 'NUMSUB', 't21:events')->[1] == 1 },
              timeout => 10),
   'the gateway resubscribes after Redis restarts');
expect_log_errors(qr/gateway: redis "127\.0\.0\.1:\d+" lost the registry/);
ok(wait_until(sub { redis_cli('-n', 3, 'SISMEMBER', 't21:services', 'one') =~ /^1/
                    && redis_cli('-n', 3, 'EXISTS', 't21:svc:two:inst:a') =~ /^1/ },
              timeout => 10),
   'a Redis that lost the registry gets it back from the gateway');
is(($ng->get('/svc/one'))[0], 200, 'and its services were routed throughout');
ok(wait_until(sub { $ng->error_log =~ /no longer stale/ }, timeout => 5),
   'the end of the stale registry is logged');

# deliberate deregistration, service by service, still works
redis_cli({ stdin => <<"EOF" }, '-n', 3);
DEL t21:svc:one:inst:a t21:svc:one:ids t21:svc:one:rev
SREM t21:services one
PUBLISH t21:events one
EOF
ok(wait_until(sub { ($ng->get('/svc/one'))[0] == 503 }, timeout => 5),
   'a service deregistered in Redis leaves routing');
register_in_redis('three', 'a', "127.0.0.1:$backend");
ok(routed('three'), 'new registrations are routed after the reconnect');

# a notice lost on the way is repaired by the periodic resync
redis_cli({ stdin => <<"EOF" }, '-n', 3);
MULTI
HSET t21:svc:quiet:inst:a address 127.0.0.1:$backend
SADD t21:svc:quiet:ids a
SADD t21:services quiet
INCR t21:svc:quiet:rev
INCR t21:rev
EXEC
EOF
ok(routed('quiet', 3), 'a write without PUBLISH is picked up by the resync');

# a second gateway sharing the Redis sees the same registry
my $ng2 = start_nginx(conf => $conf, workers => 1);
ok(wait_until(sub { ($ng2->get('/svc/three'))[0] == 200 }, timeout => 5),
   'a second gateway routes what is in Redis');
my $r = $ng2->request('PUT', '/gateway/services/four/instances/x',
                      json => { address => "127.0.0.1:$backend" });
is($r->{status}, 201, 'an admin write on the second gateway');
ok(routed('four'), 'is routed by the first');

# the state file routes a gateway that starts while Redis is down
ok(wait_until(sub { (GatewayTest::_slurp($ng->dir . '/registry.state') // '')
                    =~ /"name":"four"/ },
              timeout => 3),
   'the state file holds the registry');
$ng2->stop;
$ng->stop;
$redis->stop;
expect_log_errors(qr/gateway: redis/);
$ng->start;
my ($status, $h) = $ng->get('/svc/four');
is($status, 200, 'with Redis down, the state file routes after a restart');
$r = $ng->request('PUT', '/gateway/services/five/instances/x',
                  json => { address => "127.0.0.1:$backend" });
is($r->{status}, 503, 'admin writes answer 503 while Redis is down');
like($r->{body}, qr/"error":"redis/, 'with a JSON error');
like($ng->error_log, qr/gateway: redis connection to "127\.0\.0\.1:\d+" failed/,
     'the lost link is logged');

# Redis comes back empty: the marker in the state file tells a wipe from a
# deregistration, so the gateway writes its registry back
expect_log_errors(qr/gateway: redis "127\.0\.0\.1:\d+" lost the registry/);
$redis->start;
ok(wait_until(sub { redis_cli('-n', 3, 'SISMEMBER', 't21:services', 'four') =~ /^1/ },
              timeout => 10),
   'once Redis is back (empty), the gateway writes its registry back');
is(($ng->get('/svc/four'))[0], 200, 'and keeps routing it');
is(($ng->get('/svc/five'))[0], 503, 'a write Redis never took stays unknown');

done_testing();
