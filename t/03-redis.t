#!/usr/bin/perl
# Redis mode, what the gateway itself does with Redis: it connects (a command
# link and a link subscribed to the change channel), turns on keyspace
# notifications for expiry, picks up an instance registered in Redis and
# routes to it, follows a change and a deregistration announced on the
# channel, writes its own admin writes into Redis (hash, ids set, revision,
# notice), and closes its links when it stops.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();
redis_cmd('CONFIG', 'SET', 'notify-keyspace-events', '');

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

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend $request_uri\n";
        }
    }
EOF
my $backend = '127.0.0.1:' . $ng->port('PORT2');

# --- the links ---------------------------------------------------------------

my $raddr = '127.0.0.1:' . redis_port();
ok(wait_until(sub { $ng->error_log =~ /gateway: redis link to "\Q$raddr\E" is up/ },
              timeout => 5), 'the gateway says its Redis link is up, naming host and port');
my @clients = gateway_clients();
note($_) for @clients;
cmp_ok(scalar @clients, '>=', 2, 'the gateway holds a command and a pub/sub link');
is(scalar(grep { /\bsub=3\b/ && /\bcmd=subscribe\b/ } @clients), 1,
   'one link is subscribed to three channels');
is_deeply([ sort @{ redis_cmd('PUBSUB', 'CHANNELS') || [] } ],
          [ '__keyevent@0__:expired', 'gateway:events', 'gateway:feed' ],
          'the channels are gateway:events, gateway:feed and the expiry events of its database');
my $flags = (redis_cmd('CONFIG', 'GET', 'notify-keyspace-events') || [])->[1] // '';
ok($flags =~ /E/ && $flags =~ /[xA]/,
   "the gateway turned on keyspace notifications for expiry ($flags)");

# --- a registration in Redis reaches the gateway and gets traffic ------------

sub instances {
    my ($status, undef, $body) = $ng->get('/gateway/services/users');
    return undef unless $status == 200;
    my $j = json_decode($body) or return undef;
    return { map { $_->{id} => $_ } @{ $j->{instances} || [] } };
}

sub fields {
    my ($i) = @_;
    return $i && { map { $_ => $i->{$_} } qw(address weight zone state ttl metadata) };
}

my $recipe = <<"EOF";
MULTI
HSET gateway:svc:users:inst:u1 address $backend weight 1 zone a state up ttl 10
EXPIRE gateway:svc:users:inst:u1 10
SADD gateway:svc:users:ids u1
SADD gateway:services users
INCR gateway:svc:users:rev
PUBLISH gateway:events users
EXEC
EOF
my ($out, $code) = redis_cli({ stdin => $recipe });
is($code, 0, 'register in Redis with redis-cli') or diag($out);

my $seen = wait_until(sub { my $i = instances(); $i && $i->{u1} }, timeout => 3);
is_deeply(fields($seen), { address => $backend, weight => 1, zone => 'a', state => 'up',
                           ttl => 10, metadata => {} },
          'the gateway has the instance as Redis holds it');
my ($status, undef, $body) = $ng->get('/svc/users/hello?x=1');
is($status, 200, 'a request to the service is proxied to the instance');
is($body, "backend /hello?x=1\n", '... with the rest of the path and the args');

# --- a change announced on the channel ----------------------------------------

redis_cli({ stdin => "MULTI\nHSET gateway:svc:users:inst:u1 weight 4 state drain\n"
                     . "INCR gateway:svc:users:rev\nPUBLISH gateway:events users\nEXEC\n" });
my $changed = wait_until(sub {
    my $i = instances();
    return $i && $i->{u1} && $i->{u1}{weight} == 4 && $i->{u1}{state} eq 'drain';
}, timeout => 3);
ok($changed, 'a change in Redis (weight 4, drain) reaches the gateway');
($status) = $ng->get('/svc/users/x');
is($status, 503, '... and the drained instance gets no request');

# --- the gateway's own writes go to Redis ------------------------------------

my $sub = redis_connect();
$sub->cmd('SUBSCRIBE', 'gateway:feed');
my $rev = redis_cmd('GET', 'gateway:svc:users:rev');

my ($st, undef, $b) = $ng->request('PUT', '/gateway/services/users/instances/u2',
                                   body => qq({"address":"$backend","weight":3,"zone":"b"}));
is($st, 201, 'an admin PUT through the gateway') or diag($b);
is_deeply({ @{ redis_cmd('HGETALL', 'gateway:svc:users:inst:u2') || [] } },
          { address => $backend, weight => 3, zone => 'b', state => 'up', ttl => 0,
            backup => 'false', metadata => '{}' },
          '... is stored in Redis as an instance hash');
is(redis_cmd('SISMEMBER', 'gateway:svc:users:ids', 'u2'), 1, '... in the ids set');
is(redis_cmd('GET', 'gateway:svc:users:rev'), $rev + 1, '... with the revision incremented');
ok($sub->pending(2), '... and announced on gateway:feed');
my $notice = $sub->read_reply(2);
is_deeply([ @{$notice}[0, 1] ], ['message', 'gateway:feed'], '... as a message');
my @items;
my $msg = $notice->[2] // '';
while ($msg =~ s/^(\d+)://) { push @items, substr($msg, 0, $1, ''); $msg =~ s/^,// or last }
is_deeply([ @items[0, 2, 3, 4] ], [ '1', 'users', $rev + 1, '1' ],
          '... naming the service, its new revision, listed');
ok($items[5] =~ /^\d{16}$/ && abs($items[5] / 1e6 - time) < 60,
   '... stamped with Redis\' time in microseconds');
is($items[6], redis_cmd('GET', 'gateway:rev'), '... and the registry\'s revision');
is($items[7], 1, '... carrying the one instance changed');
is($items[8], 'u2', '... by its id');
my %h = @items[10 .. $#items];
is_deeply(\%h, { @{ redis_cmd('HGETALL', 'gateway:svc:users:inst:u2') } },
          '... with its hash as Redis holds it');
$sub->close;
($status, undef, $body) = $ng->get('/svc/users/x');
is($status, 200, 'the new instance gets the requests');

# --- a deregistration in Redis ------------------------------------------------

redis_cli({ stdin => "MULTI\nDEL gateway:svc:users:inst:u1 gateway:svc:users:inst:u2\n"
                     . "SREM gateway:svc:users:ids u1 u2\nSREM gateway:services users\n"
                     . "INCR gateway:svc:users:rev\nPUBLISH gateway:events users\nEXEC\n" });
ok(wait_until(sub { ($ng->get('/gateway/services/users'))[0] == 404 }, timeout => 3),
   'a service deregistered in Redis leaves the gateway');
($status) = $ng->get('/svc/users/x');
is($status, 503, '... and answers 503');

$ng->stop;

ok(wait_until(sub { !gateway_clients() }, timeout => 5),
   'the gateway closes its Redis connections when nginx stops')
    or diag(redis_cmd('CLIENT', 'LIST'));

done_testing();
