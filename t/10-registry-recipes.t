#!/usr/bin/perl
# The redis-cli recipes of docs/registry.md, run verbatim through bash
# against a real Redis, and their effect seen through a real gateway (Redis
# mode): register -> the instance gets traffic, heartbeat -> its key TTL is
# extended, drain -> it gets no traffic, deregister -> it is gone.  Also the
# data model's promises: a record written by hand with only an address gets
# the defaults, bad records are skipped with a warn line naming their key
# while the good instance of the same service keeps serving, and an instance
# whose key expires leaves the rotation within about two seconds (keyspace
# notifications, which the gateway enables itself).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use GatewayTest;

# --- the recipes of the document -------------------------------------------

my $doc_path = repo_root() . '/docs/registry.md';
open my $fh, '<', $doc_path or BAIL_OUT("cannot read $doc_path: $!");
my $doc = do { local $/; <$fh> };
close $fh;

my (%recipe, @order);
while ($doc =~ /^```sh[ \t]+recipe=([\w.-]+)[ \t]*\n(.*?)^```[ \t]*$/msg) {
    my ($name, $text) = ($1, $2);
    ok(!exists $recipe{$name}, "recipe $name appears once");
    $recipe{$name} = $text;
    push @order, $name;
}
note("recipes in docs/registry.md: @order");
for my $name (qw(register heartbeat drain deregister)) {
    ok(exists $recipe{$name}, "docs/registry.md has the $name recipe")
        or BAIL_OUT("recipe $name missing");
    like($recipe{$name}, qr/\bredis-cli\b/, "$name: a redis-cli command");
}
for my $name (qw(register drain deregister)) {
    like($recipe{$name}, qr/^MULTI\n.*^INCR gateway:svc:users:rev\n.*^PUBLISH gateway:events users\nEXEC\n/ms,
         "$name: one MULTI/EXEC ending with INCR rev and PUBLISH");
}

# --- Redis, a gateway in Redis mode and two backends ------------------------

my $redis = start_redis();

# resync=30s: within the bounds below, changes can only arrive through the
# change notices and expiry through keyspace notifications
my $ng = start_nginx(conf => <<'EOF');
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%% resync=30s;

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
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Upstream $upstream_addr always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        default_type text/plain;
        location / { return 200 "b1"; }
    }

    server {
        listen 127.0.0.1:%%PORT3%%;
        default_type text/plain;
        location / { return 200 "b2"; }
    }
EOF

my $b1 = $ng->port('PORT2');
my $b2 = $ng->port('PORT3');

ok(wait_until(sub { $ng->error_log =~ /gateway: redis link to "[^"]*" is up/ },
              timeout => 5),
   'the gateway connects to Redis') or diag($ng->error_log);

# the gateway turns keyspace notifications for expired keys on by itself
my $flags = wait_until(sub {
    my $r = redis_cmd('CONFIG', 'GET', 'notify-keyspace-events');
    my $f = ref $r eq 'ARRAY' ? $r->[1] : '';
    return ($f =~ /E/ && $f =~ /[xA]/) ? $f : 0;
}, timeout => 5);
ok($flags, "notify-keyspace-events enabled by the gateway (\"" . ($flags // '') . '")');

# runs a recipe as it is written, with its variables in the environment
sub run_recipe {
    my ($name) = @_;
    my ($code, $out) = run_cmd(
        cmd => [ 'bash', '-eu', '-o', 'pipefail', '-c', $recipe{$name} ],
        env => { REDIS_PORT => redis_port(), BACKEND_PORT => $b1 },
        timeout => 20);
    is($code, 0, "recipe $name: exit code 0") or diag($out);
    unlike($out, qr/^(?:\(error\) )?(?:ERR|WRONGTYPE|EXECABORT|NOAUTH|NOPERM)\b/m,
           "recipe $name: no Redis error in the output") or diag($out);
    return $out;
}

# the service as the admin API shows it: the decoded JSON, or undef on 404
sub service {
    my ($name) = @_;
    my ($status, undef, $body) = $ng->get("/gateway/services/$name");
    return undef if $status == 404;
    die "GET /gateway/services/$name: $status $body\n" unless $status == 200;
    return json_decode($body);
}

sub instance {
    my ($svc, $id) = @_;
    my $s = service($svc) or return undef;
    my ($i) = grep { $_->{id} eq $id } @{ $s->{instances} || [] };
    return $i;
}

# $n requests to the service: { "b1" => count, "status 503" => count, ... }
sub hits { my ($svc, $n) = @_; return $ng->spread("/svc/$svc/", $n) }

sub show { my ($h) = @_; join ', ', map { "$_=$h->{$_}" } sort keys %$h }

# --- a record by hand, only the address: defaults ---------------------------

redis_cmd('HSET', 'gateway:svc:users:inst:u2', 'address', "127.0.0.1:$b2");
redis_cmd('SADD', 'gateway:svc:users:ids', 'u2');
redis_cmd('SADD', 'gateway:services', 'users');
redis_cmd('INCR', 'gateway:svc:users:rev');
redis_cmd('PUBLISH', 'gateway:events', 'users');

my $u2 = wait_until(sub { instance('users', 'u2') }, timeout => 3);
ok($u2, 'a record with only "address" is synced') or diag(explain(service('users')));
is_deeply($u2 && { map { $_ => $u2->{$_} } qw(address weight state zone ttl metadata) },
          { address => "127.0.0.1:$b2", weight => 1, state => 'up', zone => '',
            ttl => 0, metadata => {} },
          'missing optional fields get their defaults');
ok($u2 && !exists $u2->{expires_in_ms}, 'no expiry without a TTL');
my $h = hits('users', 6);
is_deeply($h, { b2 => 6 }, 'the minimal record receives traffic') or diag(show($h));

# --- register ---------------------------------------------------------------

my $rev0 = redis_cmd('GET', 'gateway:svc:users:rev');
run_recipe('register');

is(redis_cmd('HGET', 'gateway:svc:users:inst:u1', 'address'), "127.0.0.1:$b1",
   'register: the hash has the address');
my $pttl = redis_cmd('PTTL', 'gateway:svc:users:inst:u1');
ok($pttl > 0 && $pttl <= 10000, "register: the key has a TTL ($pttl ms)");
is(redis_cmd('SISMEMBER', 'gateway:svc:users:ids', 'u1'), 1, 'register: id listed');
is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 1, 'register: service listed');
ok(redis_cmd('GET', 'gateway:svc:users:rev') > $rev0, 'register: revision incremented');

my $t0 = time;
my $got = wait_until(sub { hits('users', 4)->{b1} }, timeout => 3, interval => 0.05);
ok($got, sprintf('register: the instance gets traffic (after %.2fs)', time - $t0));
my $u1 = instance('users', 'u1');
is_deeply($u1 && { map { $_ => $u1->{$_} } qw(address weight state zone ttl metadata) },
          { address => "127.0.0.1:$b1", weight => 1, state => 'up', zone => 'a',
            ttl => 10, metadata => { version => '1.0' } },
          'register: the gateway shows the recorded fields')
    or diag(explain($u1));
my $N = valgrind_mode() ? 8 : 20;
$h = hits('users', $N);
ok(($h->{b1} // 0) >= $N / 4 && ($h->{b2} // 0) >= $N / 4 && keys(%$h) == 2,
   'register: both instances share the traffic: ' . show($h));

# --- heartbeat --------------------------------------------------------------

# the recipe's TTL is 10s: register again (same record: no change for the
# gateway) so that a slow run (valgrind) does not let the key expire first
run_recipe('register');
sleep 1.2;
my $before = redis_cmd('PTTL', 'gateway:svc:users:inst:u1');
ok($before > 0 && $before < 9000, "heartbeat: the TTL went down meanwhile ($before ms)");
my $out = run_recipe('heartbeat');
like($out, qr/^1$/m, 'heartbeat: EXPIRE answers 1');
my $after = redis_cmd('PTTL', 'gateway:svc:users:inst:u1');
ok($after > $before && $after > 9000, "heartbeat: the TTL is extended ($before -> $after ms)");

# --- drain ------------------------------------------------------------------

run_recipe('drain');
is(redis_cmd('HGET', 'gateway:svc:users:inst:u1', 'state'), 'drain', 'drain: state in Redis');
ok(redis_cmd('PTTL', 'gateway:svc:users:inst:u1') > 0, 'drain: the key keeps its TTL');

$t0 = time;
ok(wait_until(sub { my $i = instance('users', 'u1'); $i && $i->{state} eq 'drain' },
              timeout => 3),
   sprintf('drain: the gateway shows state "drain" (after %.2fs)', time - $t0))
    or diag(explain(service('users')));
$h = hits('users', $N);
is_deeply($h, { b2 => $N }, 'drain: the drained instance gets no traffic') or diag(show($h));

# --- deregister -------------------------------------------------------------

run_recipe('deregister');
is(redis_cmd('EXISTS', 'gateway:svc:users:inst:u1'), 0, 'deregister: hash deleted');
is(redis_cmd('SISMEMBER', 'gateway:svc:users:ids', 'u1'), 0, 'deregister: id removed');
is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 1,
   'deregister: the service stays listed while it has another instance');

$t0 = time;
ok(wait_until(sub { my $s = service('users');
                    $s && !grep { $_->{id} eq 'u1' } @{ $s->{instances} } },
              timeout => 3),
   sprintf('deregister: gone from GET /gateway/services/users (after %.2fs)', time - $t0))
    or diag(explain(service('users')));
is_deeply([ map { $_->{id} } @{ (service('users') || {})->{instances} || [] } ], ['u2'],
          'deregister: the other instance stays');
$h = hits('users', 6);
is_deeply($h, { b2 => 6 }, 'deregister: traffic goes to the other instance') or diag(show($h));

# the last instance: deregister also removes the service
redis_cmd('DEL', 'gateway:svc:users:inst:u2');
redis_cmd('SREM', 'gateway:svc:users:ids', 'u2');
redis_cmd('INCR', 'gateway:svc:users:rev');
redis_cmd('PUBLISH', 'gateway:events', 'users');
run_recipe('register');
ok(wait_until(sub { instance('users', 'u1') }, timeout => 3),
   'register again: u1 is back as the only instance');
run_recipe('deregister');
is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 0,
   'deregister of the last instance: the service leaves gateway:services');
is(redis_cmd('SCARD', 'gateway:svc:users:ids'), 0, 'deregister: no ids left');
ok(wait_until(sub { !defined service('users') }, timeout => 3),
   'deregister of the last instance: GET /gateway/services/users is 404');
my ($st) = $ng->get('/svc/users/');
is($st, 503, 'a service without instances answers 503');

# --- bad records are skipped, named in the log, the good one serves -----------

my $log_from = $ng->log_size;
my $big = '{"pad":"' . ('x' x 1100) . '"}';
my @bad = (
    [ 'bad-addr',   'HSET', 'gateway:svc:mixed:inst:bad-addr', 'address', 'backend.example:80' ],
    [ 'bad-weight', 'HSET', 'gateway:svc:mixed:inst:bad-weight', 'address', "127.0.0.1:$b2",
                    'weight', '-1' ],
    [ 'bad-type',   'SET',  'gateway:svc:mixed:inst:bad-type', "127.0.0.1:$b2" ],
    [ 'bad-meta',   'HSET', 'gateway:svc:mixed:inst:bad-meta', 'address', "127.0.0.1:$b2",
                    'metadata', $big ],
    [ 'bad-allow',  'HSET', 'gateway:svc:mixed:inst:bad-allow', 'address', '192.0.2.10:80' ],
    [ 'no-addr',    'HSET', 'gateway:svc:mixed:inst:no-addr', 'weight', '3' ],
);
redis_cmd('HSET', 'gateway:svc:mixed:inst:g1', 'address', "127.0.0.1:$b1", 'weight', '2');
for my $b (@bad) {
    my ($id, @cmd) = @$b;
    my $r = redis_cmd(@cmd);
    ok(!redis_error($r), "wrote the bad record $id") or diag("$r");
}
redis_cmd('SADD', 'gateway:svc:mixed:ids', 'g1', map { $_->[0] } @bad);
redis_cmd('SADD', 'gateway:services', 'mixed');
redis_cmd('INCR', 'gateway:svc:mixed:rev');
redis_cmd('PUBLISH', 'gateway:events', 'mixed');

ok(wait_until(sub { instance('mixed', 'g1') }, timeout => 3),
   'the good instance of the service is synced');
is_deeply([ map { $_->{id} } @{ (service('mixed') || {})->{instances} || [] } ], ['g1'],
          'only the good instance is in the registry') or diag(explain(service('mixed')));

my %reason = (
    'bad-addr'   => qr/invalid "address"/,
    'bad-weight' => qr/invalid "weight"/,
    'bad-type'   => qr/not a hash/,
    'bad-meta'   => qr/invalid "metadata"/,
    'bad-allow'  => qr/gateway_registry_allow/,
    'no-addr'    => qr/missing "address"/,
);
for my $b (@bad) {
    my $id = $b->[0];
    my $line = $ng->wait_log(
        qr/\[warn\][^\n]*gateway: redis key "gateway:svc:mixed:inst:\Q$id\E" skipped: [^\n]*/,
        from => $log_from, timeout => 3);
    ok($line, "$id: a warn line names the key") or next;
    like($line, $reason{$id}, "$id: and says why");
}
$h = hits('mixed', 10);
is_deeply($h, { b1 => 10 }, 'the good instance receives all traffic') or diag(show($h));

# --- a short TTL: the instance leaves the rotation within about 2s --------------

redis_cmd('HSET', 'gateway:svc:eph:inst:e1', 'address', "127.0.0.1:$b1");
redis_cmd('HSET', 'gateway:svc:eph:inst:e2', 'address', "127.0.0.1:$b2", 'ttl', '1');
redis_cmd('SADD', 'gateway:svc:eph:ids', 'e1', 'e2');
redis_cmd('SADD', 'gateway:services', 'eph');
redis_cmd('INCR', 'gateway:svc:eph:rev');
redis_cmd('PUBLISH', 'gateway:events', 'eph');
ok(wait_until(sub { my $s = service('eph'); $s && @{ $s->{instances} } == 2 }, timeout => 3),
   'two instances of service eph synced');
$h = hits('eph', 10);
ok(($h->{b1} // 0) && ($h->{b2} // 0), 'both get traffic: ' . show($h));

$log_from = $ng->log_size;
my $rev_eph = redis_cmd('GET', 'gateway:svc:eph:rev');
is(redis_cmd('EXPIRE', 'gateway:svc:eph:inst:e2', 1), 1, 'EXPIRE e2 1');
$t0 = time;
my $gone = wait_until(sub { !instance('eph', 'e2') }, timeout => 3, interval => 0.05);
my $elapsed = time - $t0;
ok($gone, sprintf('the expired instance is gone from the registry (after %.2fs)', $elapsed));
cmp_ok($elapsed, '<=', tmo(2.2), 'within about 2 seconds of EXPIRE 1');
$h = hits('eph', 10);
is_deeply($h, { b1 => 10 }, 'the expired instance gets no traffic') or diag(show($h));
ok($ng->wait_log(qr/gateway: instance "e2" of service "eph" missed its heartbeat/,
                 from => $log_from, timeout => 2),
   'the expiry is logged');
ok(wait_until(sub { !redis_cmd('SISMEMBER', 'gateway:svc:eph:ids', 'e2') }, timeout => 2),
   'the gateway removed the expired id from the ids set');
ok(redis_cmd('GET', 'gateway:svc:eph:rev') > $rev_eph, 'and incremented the revision');

done_testing();
