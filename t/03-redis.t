#!/usr/bin/perl
# Redis: the harness's own Redis plumbing (RESP client, redis-cli, the spec's
# register recipe verbatim), then a gateway with redis= connects to Redis,
# picks up a service registered there, and lets go of Redis when it stops.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

# --- the harness talks RESP ------------------------------------------------

is(redis_cmd('PING'), 'PONG', 'PING answers PONG');
is(redis_cmd('SET', 'gwtest:k', "a b\r\nc"), 'OK', 'SET (binary-safe bulk)');
is(redis_cmd('GET', 'gwtest:k'), "a b\r\nc", 'GET returns the bulk string');
is(redis_cmd('GET', 'gwtest:none'), undef, 'nil bulk is undef');
is(redis_cmd('INCR', 'gwtest:n'), 1, 'integer reply');
is(redis_cmd('RPUSH', 'gwtest:l', 'x', 'y'), 2, 'RPUSH');
is_deeply(redis_cmd('LRANGE', 'gwtest:l', 0, -1), ['x', 'y'], 'array reply');
is_deeply(redis_cmd('EVAL', 'return {1, {"a", 2}, redis.status_reply("ok")}', 0),
          [1, ['a', 2], 'ok'], 'nested arrays');
my $err = redis_cmd('NOSUCHCOMMAND');
like(redis_error($err), qr/^ERR/, 'error reply is a GatewayTest::RedisError');
is(redis_cmd('DEL', 'gwtest:k', 'gwtest:n', 'gwtest:l'), 3, 'DEL');

like(redis_cli('PING'), qr/PONG/, 'redis-cli reaches the test Redis');

# The register recipe of the interface spec, fed to redis-cli as it is.
my $recipe = <<'EOF';
MULTI
HSET gateway:svc:users:inst:u1 address 127.0.0.1:9001 weight 1 zone a state up ttl 10
EXPIRE gateway:svc:users:inst:u1 10
SADD gateway:svc:users:ids u1
SADD gateway:services users
INCR gateway:svc:users:rev
PUBLISH gateway:events users
EXEC
EOF
my ($out, $code) = redis_cli({ stdin => $recipe });
is($code, 0, 'register recipe: redis-cli exits 0') or diag($out);
is_deeply(redis_cmd('SMEMBERS', 'gateway:services'), ['users'], 'recipe: services set');
is(redis_cmd('HGET', 'gateway:svc:users:inst:u1', 'address'), '127.0.0.1:9001',
   'recipe: instance hash');
my $ttl = redis_cmd('TTL', 'gateway:svc:users:inst:u1');
ok($ttl > 0 && $ttl <= 10, "recipe: instance expires (ttl $ttl)");
is(redis_cmd('GET', 'gateway:svc:users:rev'), 1, 'recipe: revision');

# --- the gateway connects to Redis ------------------------------------------

my $my_id = redis_cmd('CLIENT', 'ID');

# clients other than this test's own connection
sub gateway_clients {
    my $list = redis_cmd('CLIENT', 'LIST');
    return grep { !/\bid=$my_id\b/ } split /\n/, $list;
}

is(scalar(gateway_clients()), 0, 'no other Redis client before nginx starts');

my $ng = start_nginx(conf => <<'EOF');
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%;

    upstream gw {
        gateway_service $gw_service;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?$ {
            proxy_pass http://gw$gw_rest$is_args$args;
        }
    }
EOF

my $connected = wait_until(sub { scalar gateway_clients() }, timeout => 5);
ok($connected, 'the gateway connects to Redis (CLIENT LIST)')
    or diag(redis_cmd('CLIENT', 'LIST'));
note($_) for gateway_clients();

# the service registered by the recipe above reaches the gateway
my $seen = wait_until(sub {
    my ($status, undef, $body) = $ng->get('/gateway/services');
    return 0 unless $status == 200;
    my $j = json_decode($body) or return 0;
    return grep { $_->{name} eq 'users' } @{ $j->{services} || [] };
}, timeout => 5);
ok($seen, 'the service registered in Redis shows in GET /gateway/services')
    or diag(scalar $ng->get('/gateway/services')->{content});

$ng->stop;

ok(wait_until(sub { !gateway_clients() }, timeout => 5),
   'the gateway closes its Redis connections when nginx stops')
    or diag(redis_cmd('CLIENT', 'LIST'));

done_testing();
