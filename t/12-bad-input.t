#!/usr/bin/perl
# Bad input from outside: metadata is stored in one canonical compact form
# (so the state file keeps every service over a restart), control characters
# never reach a response header (no header injection through a registered
# address), text from Redis or a request is escaped in the log (no forged
# lines), and a damaged state file loses only the damaged instances.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $INJECT = "unix:/tmp/x\r\nSet-Cookie: session=attacker";
my $META_NL = qq({"team":\n"blue"});

my $redis = start_redis();

my $common = <<'EOF';
    gateway_registry_allow 127.0.0.0/8;
    gateway_registry_allow unix:;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[^/]+) {
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

my $ng = start_nginx(conf => <<'EOF' . $common);
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t12: resync=500ms
                     state_file=%%NGINX_DIR%%/registry.state;
EOF
my $backend = "127.0.0.1:" . $ng->port('PORT2');
my $state = $ng->dir . '/registry.state';

sub redis_register {
    my ($svc, $id, @fields) = @_;
    redis_cmd('HSET', "t12:svc:$svc:inst:$id", @fields);
    redis_cmd('SADD', "t12:svc:$svc:ids", $id);
    redis_cmd('SADD', 't12:services', $svc);
    redis_cmd('INCR', "t12:svc:$svc:rev");
    redis_cmd('PUBLISH', 't12:events', $svc);
}

sub service {
    my ($node, $svc) = @_;
    my $r = $node->get("/gateway/services/$svc");
    return undef unless $r->{status} == 200;
    my $j = json_decode($r->{body}) or return undef;
    return { map { $_->{id} => $_ } @{ $j->{instances} } };
}

sub ids { my ($s) = @_; return join ',', sort keys %{ $s || {} } }

sub forged {
    my ($node, $text) = @_;
    return scalar grep { index($_, $text) == 0 } split /\n/, $node->error_log;
}

########################################################################
# Redis records

redis_register('mixed', 'good1', address => $backend, metadata => $META_NL);
redis_register('mixed', 'good2', address => $backend);
redis_register('mixed', 'bad', address => $INJECT);
redis_register('mixed', 'badmeta', address => $backend,
               metadata => '{"a":"x\r\nSet-Cookie: y"}');

my $svc;
ok(wait_until(sub { $svc = service($ng, 'mixed');
                    ids($svc) eq 'good1,good2' }, timeout => 5),
   'Redis: the good records of the service are synced, the bad ones not')
    or diag(ids($svc));
is_deeply($svc->{good1}{metadata}, { team => 'blue' },
          'metadata with a raw newline is kept');
like($ng->get('/gateway/services/mixed')->{body},
     qr/"metadata":\{"team":"blue"\}/, 'in its compact form');

like($ng->error_log,
     qr/redis key "t12:svc:mixed:inst:bad" skipped: invalid "address": must be valid UTF-8 without control characters/,
     'the address with CR LF is skipped and logged');
like($ng->error_log,
     qr/redis key "t12:svc:mixed:inst:badmeta" skipped: invalid "metadata": strings must be valid UTF-8 without control characters/,
     'metadata with an escaped CR LF is skipped and logged');

my ($injected, $ok) = (0, 0);
for (1 .. 12) {
    my $raw = http_raw($ng->port('PORT'),
                       "GET /svc/mixed HTTP/1.0\r\nHost: x\r\n\r\n");
    $injected++ if $raw =~ /^Set-Cookie/mi;
    $ok++ if $raw =~ m{^HTTP/1\.1 200 } && $raw =~ /^X-Upstream: \Q$backend\E\r$/m;
}
is($injected, 0, 'no response carries an injected header');
is($ok, 12, 'every request went to a good instance');

########################################################################
# the admin API, Redis mode

my $r = $ng->request('PUT', '/gateway/services/mixed/instances/adm',
                     json => { address => $INJECT });
is($r->{status}, 400, 'admin API: an address with CR LF is refused');
is((json_decode($r->{body}) // {})->{error},
   'invalid "address": must be valid UTF-8 without control characters',
   'with a JSON error');
is(redis_cmd('EXISTS', 't12:svc:mixed:inst:adm'), 0, 'nothing reaches Redis');

$r = $ng->request('PUT', '/gateway/services/mixed/instances/adm',
                  body => qq({"address":"unix:/tmp/a\\u000d\\u000aX: y"}));
is($r->{status}, 400, 'also when the CR LF is a JSON escape');

$r = $ng->request('PUT', '/gateway/services/mixed/instances/adm',
                  json => { address => $backend,
                            metadata => { a => "x\r\nSet-Cookie: y" } });
is($r->{status}, 400, 'metadata strings with control characters are refused');
like($r->{body}, qr/"error":"invalid \\"metadata\\": strings must be/,
     'with a JSON error naming the field');

$r = $ng->request('PUT', '/gateway/services/mixed/instances/adm',
                  body => qq({"address":"$backend","metadata":$META_NL}));
is($r->{status}, 201, 'admin API: metadata with a raw newline is accepted');
is(redis_cmd('HGET', 't12:svc:mixed:inst:adm', 'metadata'), '{"team":"blue"}',
   'and written to Redis in its compact form');
ok(wait_until(sub { ids(service($ng, 'mixed')) eq 'adm,good1,good2' },
              timeout => 3), 'and synced');

########################################################################
# log forgery

my $from = $ng->log_size;
expect_log_errors(qr/\\x0d\\x0a/);

redis_cmd('PUBLISH', 't12:events', "x\r\n2026/01/01 00:00:00 [alert] forged");
ok($ng->wait_log(qr/redis notice on "t12:events" names no valid service: "x\\x0d\\x0a2026\/01\/01 00:00:00 \[alert\] forged", ignored/,
                 from => $from),
   'a PUBLISH with CR LF is logged escaped');
is(forged($ng, '2026/01/01 00:00:00 [alert] forged'), 0,
   'and forges no log line');

redis_cmd('CONFIG', 'SET', 'notify-keyspace-events', 'Ex');
redis_cmd('SET', "t12:svc:x\r\n[alert] forged-expiry:inst:y", '1', 'PX', '50');
ok($ng->wait_log(qr/expired redis key "t12:svc:x\\x0d\\x0a\[alert\] forged-expiry:inst:y" has an invalid/,
                 from => $from),
   'an expired key with CR LF in its name is logged escaped');
is(forged($ng, '[alert] forged-expiry'), 0, 'and forges no log line');

redis_cmd('HSET', "t12:svc:mixed:inst:x\r\n[alert] forged-id", 'address', $backend);
redis_cmd('SADD', 't12:svc:mixed:ids', "x\r\n[alert] forged-id");
redis_cmd('PUBLISH', 't12:events', 'mixed');
ok($ng->wait_log(qr/redis key "t12:svc:mixed:inst:x\\x0d\\x0a\[alert\] forged-id" skipped/,
                 from => $from),
   'a bad id in a service\'s id set is logged escaped');
is(forged($ng, '[alert] forged-id'), 0, 'and forges no log line');
redis_cmd('SREM', 't12:svc:mixed:ids', "x\r\n[alert] forged-id");
redis_cmd('DEL', "t12:svc:mixed:inst:x\r\n[alert] forged-id");

# a revision key of the wrong type, a bad name in the services set: each
# is skipped with a warning (escaped), the rest of the registry is synced
redis_register('wrongrev', 'i1', address => $backend);
redis_cmd('DEL', 't12:svc:wrongrev:rev');
redis_cmd('RPUSH', 't12:svc:wrongrev:rev', 'x');
redis_cmd('SADD', 't12:services', "bad name\r\n[alert] forged-svc");
redis_cmd('INCR', 't12:rev');
ok($ng->wait_log(qr/redis key "t12:svc:wrongrev:rev" is not an integer/,
                 from => $from, timeout => 5),
   'a revision key of the wrong type is warned about');
ok($ng->wait_log(qr/redis service name "bad name\\x0d\\x0a\[alert\] forged-svc" is invalid, skipped/,
                 from => $from, timeout => 5),
   'a bad name in the services set is warned about, escaped');
is(forged($ng, '[alert] forged-svc'), 0, 'and forges no log line');
ok(service($ng, 'wrongrev') && service($ng, 'wrongrev')->{i1},
   'the service with the bad revision key is still synced');
redis_cmd('SREM', 't12:services', "bad name\r\n[alert] forged-svc");
redis_cmd('DEL', 't12:svc:wrongrev:rev', 't12:svc:wrongrev:ids',
          't12:svc:wrongrev:inst:i1');
redis_cmd('SREM', 't12:services', 'wrongrev');
redis_cmd('PUBLISH', 't12:events', 'wrongrev');
ok(wait_until(sub { !service($ng, 'wrongrev') }, timeout => 5),
   'and leaves once deregistered');

my ($st) = $ng->get('/svc/x%0d%0a[alert]%20forged-uri');
is($st, 503, 'a request for a service name with CR LF gets 503');
ok($ng->wait_log(qr/service "x\\x0d\\x0a\[alert\] forged-uri" has no live instance/,
                 from => $from),
   'the name is logged escaped');
is(forged($ng, '[alert] forged-uri'), 0, 'and forges no log line');

########################################################################
# the state file keeps every instance over a restart

ok(wait_until(sub { my $t = GatewayTest::_slurp($state) // '';
                    $t =~ /"id":"adm"/ && $t =~ /"id":"good1"/
                    && $t =~ /"id":"good2"/ }, timeout => 3),
   'the state file holds the three instances');
my @lines = split /\n/, GatewayTest::_slurp($state);
is(scalar(grep { json_decode($_) } @lines), scalar @lines,
   'every line of the state file is a JSON document');

$ng->stop;
$redis->stop;
$ng->start;
is(ids(service($ng, 'mixed')), 'adm,good1,good2',
   'Redis down, after a restart: the service and all its instances are back');
is_deeply(service($ng, 'mixed')->{good1}{metadata}, { team => 'blue' },
          'with their metadata');
is(($ng->get('/svc/mixed'))[0], 200, 'and routed');

########################################################################
# a damaged state file loses the damaged instances only

$ng->stop;
my $text = GatewayTest::_slurp($state);
$text =~ s/^(\{[^\n]*"id":"good2"[^\n]{10})[^\n]*/$1/m
    or fail('cut the line of good2');
$text =~ s/("id":"adm","address":")[^"]*/$1unix:\/x\\r\\nX: y/
    or fail('break the address of adm');
$text .= "garbage\n";
GatewayTest::_spit($state, $text);
$from = $ng->log_size;
$ng->start;
is(ids(service($ng, 'mixed')), 'good1',
   'a cut line and a bad address lose those two instances only');
like(substr($ng->error_log, $from), qr/state file "[^"]+": line \d+ skipped: not a JSON object/,
     'the cut line is logged');
like(substr($ng->error_log, $from),
     qr/state file "[^"]+": instance "adm" of service "mixed" skipped: invalid "address"/,
     'the bad instance is logged');
like(substr($ng->error_log, $from), qr/1 instances loaded, 3 entries skipped/,
     'with a summary');

# version 1 files, one line per service, are still read, instance by instance
$ng->stop;
GatewayTest::_spit($state, <<"EOF");
{"version":1,"generation":7}
{"name":"old","revision":3,"up":2,"instances":[{"id":"a","address":"$backend","weight":2,"zone":"z","state":"up","ttl":0,"metadata":{"k": "v"}},{"id":"b","address":"$backend","weight":0},{"id":"c","address":"$backend","state":"drain"}]}
{"name":"empty","revision":1,"up":0,"instances":[]}
EOF
$ng->start;
$svc = service($ng, 'old');
is(ids($svc), 'a,c', 'version 1: the bad instance of a service is skipped');
is($svc->{a}{weight}, 2, 'the good ones keep their fields');
is_deeply($svc->{a}{metadata}, { k => 'v' }, 'and their metadata');
is($ng->get('/gateway/services/empty')->{status}, 200,
   'a service without instances is kept');

########################################################################
# embedded mode: the admin API and the state file

$ng->stop;
my $em = start_nginx(conf => <<'EOF' . $common);
    gateway_registry zone=gw:1m state_file=%%NGINX_DIR%%/registry.state;
EOF
$backend = "127.0.0.1:" . $em->port('PORT2');
$r = $em->request('PUT', '/gateway/services/team/instances/a',
                  body => qq({"address":"$backend","metadata":$META_NL}));
is($r->{status}, 201, 'embedded: metadata with a raw newline is accepted');
$r = $em->request('PUT', '/gateway/services/team/instances/b',
                  json => { address => $backend, zone => 'z' });
is($r->{status}, 201, 'a second instance');
$r = $em->request('PUT', '/gateway/services/team/instances/c',
                  json => { address => $INJECT });
is($r->{status}, 400, 'an address with CR LF is refused');
like($r->{body}, qr/"error":"invalid \\"address\\"/, 'with a JSON error');
$r = $em->request('PATCH', '/gateway/services/team/instances/b',
                  body => qq({"zone":"\\u0007"}));
is($r->{status}, 400, 'PATCH: a zone with a control character is refused');
like($r->{body}, qr/"error":"invalid \\"zone\\"/, 'with a JSON error');

ok(wait_until(sub { (GatewayTest::_slurp($em->dir . '/registry.state') // '')
                    =~ /"id":"b"/ }, timeout => 3),
   'the state file is written');
$em->stop;
$em->start;
$svc = service($em, 'team');
is(ids($svc), 'a,b', 'after a restart the service and all its instances are back');
is_deeply($svc->{a}{metadata}, { team => 'blue' }, 'with their metadata');
is(($em->get('/svc/team'))[0], 200, 'and routed');

done_testing();
