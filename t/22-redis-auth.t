#!/usr/bin/perl
# Redis with a password and with an ACL user: the gateway authenticates both
# of its links, and a wrong credential is logged rather than ignored.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

start_redis();
is(redis_cmd('CONFIG', 'SET', 'requirepass', 'topsecret'), 'OK',
   'Redis requires a password');

my @auth = ('-a', 'topsecret', '--no-auth-warning');

like(scalar redis_cli(@auth, 'ACL', 'SETUSER', 'gw', 'on', '>gwpass', '~*',
                      '&*', '+@all'),
     qr/OK/, 'an ACL user for the gateway');

my $conf = <<'EOF2';
    gateway_registry zone=gw:1m redis=%%REDIS_URL%%;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+) {
            proxy_pass http://gw;
        }

        location /gateway/ {
            gateway_admin;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend\n";
        }
    }
EOF2

sub register {
    my ($svc, $port) = @_;
    redis_cli({ stdin => <<"EOF2" }, @auth);
MULTI
HSET gateway:svc:$svc:inst:a address 127.0.0.1:$port
SADD gateway:svc:$svc:ids a
SADD gateway:services $svc
INCR gateway:svc:$svc:rev
PUBLISH gateway:events $svc
EXEC
EOF2
}

my $port = redis_port();
my $n = 0;

for my $case (["password", "redis://:topsecret\@127.0.0.1:$port"],
              ["ACL user", "redis://gw:gwpass\@127.0.0.1:$port"])
{
    my ($name, $url) = @$case;
    my $ng = start_nginx(conf => $conf, vars => { REDIS_URL => $url });
    my $svc = 'svc' . $n++;
    register($svc, $ng->port('PORT2'));
    ok(wait_until(sub { ($ng->get("/svc/$svc"))[0] == 200 }, timeout => 5),
       "$name: the gateway syncs from a Redis that requires it");
    $ng->stop;
}

# the ACL user of docs/registry.md, as the document writes it: the gateway
# syncs, writes, heart-beats and expires with those rights alone
open my $dfh, '<', repo_root() . '/docs/registry.md' or die $!;
my ($acl) = do { local $/; <$dfh> } =~ /^```text acl\n(ACL SETUSER [^\n]+)\n```/m;
close $dfh;
ok($acl, 'registry.md has the ACL user');
like(scalar redis_cli(@auth, map { s/^>PASSWORD$/>docpass/r } split ' ', $acl // ''),
     qr/OK/, 'the ACL user of registry.md is created');
{
    my $ng = start_nginx(conf => $conf,
        vars => { REDIS_URL => "redis://gateway:docpass\@127.0.0.1:$port" });
    register('docacl', $ng->port('PORT2'));
    ok(wait_until(sub { ($ng->get('/svc/docacl'))[0] == 200 }, timeout => 5),
       'ACL user of registry.md: a registration by hand is synced');
    my ($st, undef, $body) = $ng->request('PUT',
        '/gateway/services/docacl2/instances/a',
        body => '{"address":"127.0.0.1:' . $ng->port('PORT2') . '","ttl":1}');
    is($st, 201, 'ACL user of registry.md: an admin write works') or diag($body);
    ($st) = $ng->request('POST', '/gateway/services/docacl2/instances/a/heartbeat');
    is($st, 200, 'ACL user of registry.md: a heartbeat works');
    ok(wait_until(sub { ($ng->get('/gateway/services/docacl2'))[0] == 404 },
                  timeout => 5),
       'ACL user of registry.md: the expired instance is dropped');
    unlike($ng->error_log, qr/NOPERM|can't run this command|wrong type|not an integer/,
           'ACL user of registry.md: no command was refused');
    $ng->stop;
}

my $ng = start_nginx(conf => $conf,
                     vars => { REDIS_URL => "redis://:wrong\@127.0.0.1:$port" });
ok($ng->wait_log(qr/gateway: redis AUTH failed: WRONGPASS/, timeout => 5),
   'a wrong password is logged');
register('late', $ng->port('PORT2'));
is(($ng->get('/svc/late'))[0], 503, 'and nothing is routed');

done_testing();
