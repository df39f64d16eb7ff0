#!/usr/bin/perl
# Registry events in the error log: one line when an instance is
# registered, changes weight, state or address, or is removed, whoever made
# the change (admin API, Redis); a storm is limited to 100 lines a second
# and what was left out is counted in one line.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:4m redis=redis://127.0.0.1:%%REDIS_PORT%%/4
                     prefix=t61: resync=500ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location = /metrics {
            gateway_metrics;
        }
    }
EOF

sub log_lines {
    my ($re) = @_;
    return grep { /$re/ } split /\n/, $ng->error_log;
}

sub wait_log {
    my ($re, $what) = @_;
    ok(wait_until(sub { scalar log_lines($re) }, timeout => 5), $what)
        or diag(join "\n", log_lines(qr/gateway:/));
}

sub admin {
    my ($method, $path, $json) = @_;
    return $ng->request($method, "/gateway/services/$path",
                        $json ? (json => $json) : ())->{status};
}

ok(wait_until(sub { redis_cmd('PUBSUB', 'NUMSUB', 't61:events')->[1] == 1 },
              timeout => 5), 'the gateway subscribed');

like(admin('PUT', 'users/instances/u1',
         { address => '127.0.0.1:9001', weight => 2 }), qr/^20[012]$/,
   'u1 registered through the admin API');
wait_log(qr/\[notice\].*gateway: instance "u1" of service "users" registered: 127\.0\.0\.1:9001, weight 2, up$/,
         'registered: one notice line with address, weight and state');

like(admin('PATCH', 'users/instances/u1', { weight => 5 }), qr/^20[012]$/, 'weight 5');
wait_log(qr/instance "u1" of service "users" changed: 127\.0\.0\.1:9001, weight 5, up \(was weight 2, up\)$/,
         'a weight change is one line with the old and new weight');

like(admin('PATCH', 'users/instances/u1', { state => 'drain' }), qr/^20[012]$/, 'drain');
wait_log(qr/instance "u1" of service "users" changed: 127\.0\.0\.1:9001, weight 5, drain \(was weight 5, up\)$/,
         'a state change is one line');

like(admin('PATCH', 'users/instances/u1', { address => '127.0.0.1:9002' }), qr/^20[012]$/,
   'another address');
wait_log(qr/instance "u1" of service "users" changed: 127\.0\.0\.1:9002, .*, another address\)$/,
         'an address change says so');

like(admin('POST', 'users/instances/u1/heartbeat'), qr/^20[012]$/, 'a heartbeat');

redis_cmd('SELECT', 4);
redis_cmd('HSET', 't61:svc:users:inst:u2', 'address', '127.0.0.1:9003');
redis_cmd('SADD', 't61:svc:users:ids', 'u2');
redis_cmd('SADD', 't61:services', 'users');
redis_cmd('INCR', 't61:svc:users:rev');
redis_cmd('PUBLISH', 't61:events', 'users');
wait_log(qr/instance "u2" of service "users" registered: 127\.0\.0\.1:9003/,
         'a record written into Redis by hand is an event too');

is(admin('DELETE', 'users/instances/u1'), 200, 'u1 deregistered');
wait_log(qr/instance "u1" of service "users" removed \(was 127\.0\.0\.1:9002\)$/,
         'removal: one line');

like(admin('DELETE', 'users/instances/u2'), qr/^200$/, 'u2 deregistered');
wait_log(qr/instance "u2" of service "users" removed \(was 127\.0\.0\.1:9003\)$/,
         'the removal of a service\'s last instance is one line too');

is(scalar log_lines(qr/instance "u1" of service "users" (registered|changed)/),
   4, 'the heartbeat logged nothing: four lines for u1 before its removal');

# a storm: 300 instances in one apply

my $cmds = "MULTI\n";
for my $i (1 .. 300) {
    my $port = 10000 + $i;
    $cmds .= "HSET t61:svc:big:inst:i$i address 127.0.0.1:$port\n"
          .  "SADD t61:svc:big:ids i$i\n";
}
$cmds .= "SADD t61:services big\nINCR t61:svc:big:rev\n"
      .  "PUBLISH t61:events big\nEXEC\n";
redis_cli({ stdin => $cmds }, '-n', 4);

ok(wait_until(sub {
       my $r = $ng->get('/gateway/services');
       $r->{status} == 200 && $r->{body} =~ /"name":"big","revision":\d+,"up":300/
   }, timeout => 10), 'the 300 instances of "big" were applied');

my $logged = scalar log_lines(qr/of service "big" registered/);
ok($logged <= 200 && $logged > 0,
   "the storm was limited: $logged lines for 300 instances");

# the count of what was left out comes with the next event, a second later

select(undef, undef, undef, 1.2);
like(admin('PUT', 'users/instances/u3', { address => '127.0.0.1:9004' }), qr/^20[012]$/,
   'one more change, a second later');
wait_log(qr/instance "u3" of service "users" registered/, 'logged');

my $dropped = 0;
$dropped += $_ for map { /gateway: (\d+) more registry events/ ? $1 : () }
                   log_lines(qr/more registry events were not logged/);
is($logged + $dropped, 300, "what was left out is counted: $logged + $dropped");

# the Redis link in the metrics page

my ($st, undef, $page) = $ng->get('/metrics');
is($st, 200, 'metrics in Redis mode');
like($page, qr/^gateway_redis_up 1$/m, 'the link is up');
like($page, qr/^gateway_redis_reconnects_total 0$/m, 'never lost');
my ($synced) = $page =~ /^gateway_registry_last_sync_timestamp_seconds (\d+)$/m;
ok($synced && abs($synced - time) < 60, 'the last resync is recent');

expect_log_errors(qr{gateway: redis "127\.0\.0\.1:\d+" lost the registry});
$redis->stop;
ok(wait_until(sub { ($ng->get('/metrics'))[2] =~ /^gateway_redis_up 0$/m },
              timeout => 5), 'Redis stopped: the link is down');
$redis->start;
ok(wait_until(sub {
       my $p = ($ng->get('/metrics'))[2];
       $p =~ /^gateway_redis_up 1$/m && $p =~ /^gateway_redis_reconnects_total 1$/m
   }, timeout => 10), 'Redis back: up again, one reconnect counted');

done_testing;
