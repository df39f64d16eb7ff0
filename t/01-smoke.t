#!/usr/bin/perl
# Smoke: the module loads into Debian's nginx, a config using every directive
# passes `nginx -t`, and a running gateway (embedded registry, no Redis)
# answers its admin API and routes to an instance registered through it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

ok(-f module_path(), 'module built: ' . module_path())
    or BAIL_OUT('no module; run make first');

# every directive: gateway_registry (all parameters), gateway_registry_allow,
# gateway_service (name and variable), gateway_admin, gateway_admin_token
my $conf = <<'EOF';
    gateway_registry zone=gw:1m prefix=gateway: state_file=%%NGINX_DIR%%/registry.state resync=5s;
    gateway_registry_allow 127.0.0.0/8;
    gateway_registry_allow ::1;

    upstream gw {
        gateway_service $gw_service;
        keepalive 16;
    }

    upstream users_only {
        gateway_service users;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
            gateway_admin_token s3cret;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?$ {
            proxy_pass http://gw$gw_rest$is_args$args;
        }

        location /users-only/ {
            proxy_pass http://users_only/;
        }
    }

    # a demo backend
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend $request_uri\n";
        }
    }
EOF

my ($code, $out) = nginx_test_config(conf => $conf);
is($code, 0, 'nginx -t: every directive') or diag($out);
like($out, qr/test is successful/, 'nginx -t says the test is successful');

# the Redis URL forms of the spec parse (nginx -t does not connect)
for my $url ('redis://127.0.0.1:6379', 'redis://:secret@127.0.0.1:6379/2',
             'redis://user:secret@127.0.0.1:6379',
             'unix:/tmp/does-not-matter/redis.sock?db=1')
{
    my $c = $conf;
    $c =~ s/gateway_registry zone=gw:1m[^;]*;/gateway_registry zone=gw:1m redis=$url;/
        or die 'no gateway_registry line';
    my ($code, $out) = nginx_test_config(conf => $c);
    is($code, 0, "nginx -t: redis=$url") or diag($out);
}

# --- a running gateway ---------------------------------------------------

my $ng = start_nginx(conf => $conf);
my $backend = $ng->port('PORT2');

my ($status, $headers, $body) = $ng->get('/gateway/services');
is($status, 200, 'GET /gateway/services: 200') or diag($body);
like($headers->{'content-type'} // '', qr{^application/json}, '... JSON content type');
my $j = json_decode($body);
is(ref($j && $j->{services}), 'ARRAY', '... {"services":[...]}') or diag($body);
is(scalar @{ $j->{services} || [] }, 0, '... no service yet');

($status, undef, $body) = $ng->get('/gateway/services/users');
is($status, 404, 'GET an unknown service: 404');
ok((json_decode($body) || {})->{error}, '... with {"error":...}') or diag($body);

my $inst = { address => "127.0.0.1:$backend", weight => 1, zone => 'a',
             state => 'up', ttl => 0, metadata => { v => '1' } };

($status) = $ng->request('PUT', '/gateway/services/users/instances/u1', json => $inst);
is($status, 401, 'PUT without the token: 401');

($status) = $ng->request('PUT', '/gateway/services/users/instances/u1', json => $inst,
                         headers => { authorization => 'Bearer wrong' });
is($status, 401, 'PUT with a wrong token: 401');

my $auth = { authorization => 'Bearer s3cret' };
($status, undef, $body) = $ng->request('PUT', '/gateway/services/users/instances/u1',
                                       json => $inst, headers => $auth);
is($status, 201, 'PUT a new instance with the token: 201') or diag($body);
$j = json_decode($body) || {};
# docs/admin-api.md: {"service":NAME,"created":true|false,"instance":{...}}
is_deeply([ sort keys %$j ], [qw(created instance service)],
          '... {"service":..,"created":..,"instance":{...}}') or diag($body);
is($j->{service}, 'users', '... the service');
is($j->{created}, JSON::PP::true, '... created true');
is(($j->{instance} || {})->{id}, 'u1', '... the instance id');
is(($j->{instance} || {})->{address}, "127.0.0.1:$backend",
   '... the instance is echoed back') or diag($body);

($status, undef, $body) = $ng->get('/gateway/services/users');
is($status, 200, 'GET /gateway/services/users: 200') or diag($body);
$j = json_decode($body) || {};
is($j->{name}, 'users', '... name');
is_deeply([ map { $_->{id} } @{ $j->{instances} || [] } ], ['u1'], '... instances')
    or diag($body);

($status, undef, $body) = $ng->get('/svc/users/hello?x=1');
is($status, 200, 'GET /svc/users/hello is routed to the instance') or diag($body);
is($body, "backend /hello?x=1\n", '... with the rest of the path and the args');

($status, undef, $body) = $ng->get('/users-only/abc');
is($status, 200, 'an upstream with a fixed gateway_service routes too') or diag($body);
is($body, "backend /abc\n", '... to the same instance');

($status) = $ng->get('/svc/nosuch/');
is($status, 503, 'a service without a live instance: 503');

($status, undef, $body) = $ng->request('DELETE', '/gateway/services/users/instances/u1',
                                       headers => $auth);
is($status, 200, 'DELETE the instance: 200') or diag($body);
my $del = json_decode($body) || {};
ok($del->{deleted} && JSON::PP::is_bool($del->{deleted}), '... {"deleted":true}')
    or diag($body);

ok(wait_until(sub { ($ng->get('/svc/users/'))[0] == 503 }, timeout => 5),
   'after DELETE the service answers 503');

done_testing();
