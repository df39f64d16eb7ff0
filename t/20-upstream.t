#!/usr/bin/perl
# Dynamic upstreams on the embedded registry: weighted round robin shared by
# all workers, retries to a different instance, keepalive, $upstream_addr,
# drain, 503 without live instances, heartbeats, reload and restart.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $conf = <<'EOF';
    gateway_registry zone=gw:1m state_file=%%NGINX_DIR%%/registry.state;
    gateway_registry_allow 127.0.0.0/8;
    gateway_registry_allow unix:;

    upstream gw {
        gateway_service $gw_service;
        keepalive 8;
    }

    upstream fixed {
        gateway_service users;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?$ {
            proxy_pass http://gw$gw_rest;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
            proxy_connect_timeout 1s;
            add_header X-Upstream $upstream_addr always;
        }

        location /fixed/ {
            proxy_pass http://fixed/;
            add_header X-Upstream $upstream_addr always;
        }

        location ~ ^/custom/(?<gw_service>[A-Za-z0-9._-]+) {
            proxy_pass http://gw;
            error_page 503 = @unavailable;
        }

        location @unavailable {
            default_type application/json;
            return 503 '{"error":"no instance of $gw_service"}';
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        listen 127.0.0.1:%%PORT4%%;
        keepalive_requests 10000;
        location / {
            return 200 "$server_port $connection\n";
        }
        location /bad {
            return 502;
        }
    }

    server {
        listen unix:%%NGINX_DIR%%/backend.sock;
        location / {
            return 200 "unix $connection\n";
        }
    }
EOF

my $ng = start_nginx(conf => $conf, workers => 2);
my @port = map { $ng->port("PORT$_") } 2 .. 4;
my $dead = free_port();

sub register {
    my ($svc, $id, %rec) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => \%rec);
    return $r->{status};
}

sub hits {
    my ($path, $n) = @_;
    my (%by_port, %conns, %status);
    for (1 .. $n) {
        my ($st, $h, $body) = $ng->get($path);
        $status{$st}++;
        next unless $st == 200;
        my ($port, $conn) = split ' ', $body;
        $by_port{$port}++;
        $conns{"$port/$conn"}++;
    }
    return (\%by_port, \%conns, \%status);
}

is(register('users', 'a', address => "127.0.0.1:$port[0]", weight => 1), 201,
   'register a');
is(register('users', 'b', address => "127.0.0.1:$port[1]", weight => 2), 201,
   'register b');
is(register('users', 'c', address => "127.0.0.1:$port[2]", weight => 1), 201,
   'register c');
is(register('users', 'a', address => "127.0.0.1:$port[0]", weight => 1), 200,
   'registering again replaces: 200');

# the balancer's state is shared: across both workers the split is exact
my ($by, $conns, $st) = hits('/svc/users/x', 40);
is_deeply($st, { 200 => 40 }, '40 requests, all 200');
is($by->{$port[0]}, 10, 'weight 1: 10 of 40');
is($by->{$port[1]}, 20, 'weight 2: 20 of 40');
is($by->{$port[2]}, 10, 'weight 1: 10 of 40');
cmp_ok(scalar(keys %$conns), '<', 20,
       'keepalive: backend connections are reused');

my ($status, $h, $body) = $ng->get('/svc/users/x');
like($h->{'x-upstream'}, qr/^127\.0\.0\.1:(\Q$port[0]\E|\Q$port[1]\E|\Q$port[2]\E)$/,
     '$upstream_addr is the instance');
($body =~ /^(\d+) /) && is("127.0.0.1:$1", $h->{'x-upstream'},
                           '$upstream_addr matches the instance that answered');

($status) = $ng->get('/fixed/x');
is($status, 200, 'an upstream with a fixed service name routes');

# a unix socket instance, allowed by "gateway_registry_allow unix:"
is(register('sock', 'u', address => 'unix:' . $ng->dir . '/backend.sock'), 201,
   'register a unix socket instance');
($status, $h, $body) = $ng->get('/svc/sock/x');
is($status, 200, 'a unix socket instance is routed');
like($body, qr/^unix /, 'to the socket');
is(register('sock', 'v', address => '[::1]:80'), 403,
   'an address outside the allowlist is refused');

# drain: no new requests
my $r = $ng->request('PATCH', '/gateway/services/users/instances/b',
                     json => { state => 'drain' });
is($r->{status}, 200, 'drain b');
($by, undef, $st) = hits('/svc/users/x', 20);
ok(!$by->{$port[1]}, 'a drained instance gets no requests');
is($st->{200}, 20, 'the others answer');

# retries go to a different instance: a dead one is skipped
is(register('flaky', 'dead', address => "127.0.0.1:$dead"), 201,
   'register an instance nobody listens on');
is(register('flaky', 'live', address => "127.0.0.1:$port[0]"), 201,
   'and a live one');
my $retried = 0;
for (1 .. 6) {
    my ($s, $hd) = $ng->get('/svc/flaky/x');
    is($s, 200, 'a request with one dead instance succeeds');
    if (($hd->{'x-upstream'} // '') =~ /^127\.0\.0\.1:$dead, 127\.0\.0\.1:$port[0]$/) {
        $retried++;
    }
}
cmp_ok($retried, '>=', 2, 'the dead instance was tried, then the live one');

# every try picks an instance not tried before
register('bad', "b$_", address => "127.0.0.1:$port[$_]") for 0 .. 2;
($status, $h) = $ng->get('/svc/bad/bad');
is($status, 502, 'all instances answer 502: 502');
my @tried = split /, /, $h->{'x-upstream'} // '';
is(scalar(@tried), 3, 'three tries');
my %uniq = map { $_ => 1 } @tried;
is(scalar(keys %uniq), 3, 'each try went to a different instance');
register('alldead', "d$_", address => '127.0.0.1:' . free_port()) for 1 .. 2;
($status, $h) = $ng->get('/svc/alldead/x');
is($status, 502, 'every instance refuses: 502');
ok($ng->wait_log(qr/gateway: no live instance of service "alldead" left to try/,
                 timeout => 3),
   'when every instance was tried, the log says so');
my $bad = json_decode(scalar $ng->get('/gateway/services/bad')->{content});
is_deeply([ map { $_->{failures} } @{ $bad->{instances} } ],
          [ ({ connect => 0, timeout => 0, status => 1, other => 0 }) x 3 ],
          'a proxy_next_upstream status is a failure by cause "status"');

# no live instance: 503, fast, with a clear log line
my $t0 = time;
($status) = $ng->get('/svc/nosuch/x');
is($status, 503, 'an unknown service: 503');
$r = $ng->request('PATCH', '/gateway/services/flaky/instances/live',
                  json => { state => 'down' });
$r = $ng->request('PATCH', '/gateway/services/flaky/instances/dead',
                  json => { state => 'drain' });
($status) = $ng->get('/svc/flaky/x');
is($status, 503, 'a service whose instances are down or draining: 503');
cmp_ok(time - $t0, '<=', tmo(2), '503s are fast');
($status, $h, $body) = $ng->get('/custom/nosuch');
is($status, 503, 'error_page 503 applies to a service without instances');
is($body, '{"error":"no instance of nosuch"}', 'with its own body');
like($ng->error_log, qr/gateway: service "nosuch" has no live instance/,
     'the log names the service without live instances');

# heartbeats (embedded registry): an instance missing its TTL goes away
is(register('hb', 'x', address => "127.0.0.1:$port[0]", ttl => 1), 201,
   'register with ttl 1');
($status) = $ng->get('/svc/hb/x');
is($status, 200, 'routed while fresh');
for (1 .. 3) {
    select(undef, undef, undef, 0.4);
    $r = $ng->request('POST', '/gateway/services/hb/instances/x/heartbeat');
    is($r->{status}, 200, 'heartbeat');
}
($status) = $ng->get('/svc/hb/x');
is($status, 200, 'heartbeats keep it alive past its ttl');
ok(wait_until(sub { ($ng->get('/svc/hb/x'))[0] == 503 }, timeout => 3),
   'without heartbeats it leaves routing');
ok(wait_until(sub { $ng->get('/gateway/services/hb')->{status} == 404 },
              timeout => 2),
   'and the registry');

# the zone survives a reload
ok($ng->reload(wait_old => 1), 'reload');
($by, undef, $st) = hits('/svc/users/x', 8);
is($st->{200}, 8, 'instances are still routed after a reload');

# and the state file carries it over a restart
ok(wait_until(sub { -s $ng->dir . '/registry.state' }, timeout => 3),
   'the state file is written');
$ng->stop;
$ng->start;
($by, undef, $st) = hits('/svc/users/x', 6);
is($st->{200}, 6, 'after a restart the state file routes');
ok(!$by->{$port[1]}, 'and keeps the drained state');

done_testing();
