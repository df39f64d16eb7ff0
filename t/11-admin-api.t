#!/usr/bin/perl
# The admin API as docs/admin-api.md describes it: every `sh example=` block
# of the document is run verbatim through bash (curl, with $GW and $TOKEN in
# the environment) against a gateway in embedded mode and one in Redis mode,
# and its status and JSON body are checked; in Redis mode the Redis keys are
# checked after each write.  Then the error cases with HTTP::Tiny: token
# required for writes but not for reads (401), malformed JSON and bad fields
# (400), bad names (400), disallowed addresses (403), unknown services and
# instances (404), wrong methods (405), oversized bodies (413), nginx's
# allow/deny in the location (403 from nginx), and in Redis mode a stopped
# Redis (503 at once) and a frozen Redis (503 after 3 s), with reads still
# served from the zone.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use GatewayTest;

my $TOKEN = 'doc-test-token-42';

# --- the examples of the document ------------------------------------------

my $doc_path = repo_root() . '/docs/admin-api.md';
open my $fh, '<', $doc_path or BAIL_OUT("cannot read $doc_path: $!");
my $doc = do { local $/; <$fh> };
close $fh;

my (%example, @doc_order);
while ($doc =~ /^```sh[ \t]+example=([\w.-]+)[ \t]*\n(.*?)^```[ \t]*$/msg) {
    my ($name, $text) = ($1, $2);
    ok(!exists $example{$name}, "example $name appears once");
    $example{$name} = $text;
    push @doc_order, $name;
}
note("examples in docs/admin-api.md: @doc_order");

# the order in which the examples run, and what each must answer:
# status, then a check of the decoded JSON body ($j), the response headers
# ($h) and the mode ('embedded' or 'redis')
sub inst_fields {
    my ($i) = @_;
    return undef unless ref $i eq 'HASH';
    return { map { $_ => $i->{$_} } qw(id address weight zone state ttl metadata) };
}

my @sequence = (
    [ register => 201, sub {
        my ($j) = @_;
        is($j->{service}, 'users', 'register: service');
        is($j->{created}, JSON::PP::true, 'register: created true');
        is_deeply(inst_fields($j->{instance}),
                  { id => 'u1', address => '127.0.0.1:9001', weight => 2, zone => 'eu-1',
                    state => 'up', ttl => 30, metadata => { version => '1.4.2' } },
                  'register: the instance as sent');
    } ],
    [ 'register-minimal' => 201, sub {
        my ($j) = @_;
        is_deeply(inst_fields($j->{instance}),
                  { id => 'u2', address => '127.0.0.1:9002', weight => 1, zone => '',
                    state => 'up', ttl => 0, metadata => {} },
                  'register-minimal: defaults');
        ok(!exists $j->{instance}{expires_in_ms}, 'register-minimal: no expiry');
    } ],
    [ list => 200, sub {
        my ($j, $h, $mode) = @_;
        ok(defined $j->{generation}, 'list: generation');
        if ($mode eq 'redis') {
            is(ref $j->{redis}, 'HASH', 'list: the redis link is shown');
            ok($j->{redis}{up}, 'list: redis is up');
            ok($j->{redis}{synced} && $j->{redis}{synced} > 1e9,
               'list: the time of the last resync');
        } else {
            ok(exists $j->{redis} && !defined $j->{redis},
               'list: redis is null in embedded mode');
        }
        my ($s) = grep { $_->{name} eq 'users' } @{ $j->{services} || [] };
        ok($s, 'list: users is listed');
        is($s && $s->{instances}, 2, 'list: 2 instances');
        is($s && $s->{up}, 2, 'list: 2 up');
    } ],
    [ show => 200, sub {
        my ($j) = @_;
        is($j->{name}, 'users', 'show: name');
        my %by = map { $_->{id} => $_ } @{ $j->{instances} || [] };
        is_deeply([ sort keys %by ], [qw(u1 u2)], 'show: both instances');
        is_deeply(inst_fields($by{u1}),
                  { id => 'u1', address => '127.0.0.1:9001', weight => 2, zone => 'eu-1',
                    state => 'up', ttl => 30, metadata => { version => '1.4.2' } },
                  'show: u1');
        # nothing was proxied through this gateway: the counters are 0
        # (they are checked under traffic further down)
        for my $k (qw(active requests fails)) {
            is($by{u1} && $by{u1}{$k}, 0, "show: $k is 0");
        }
    } ],
    [ replace => 200, sub {
        my ($j) = @_;
        is($j->{created}, JSON::PP::false, 'replace: created false');
        is_deeply(inst_fields($j->{instance}),
                  { id => 'u1', address => '127.0.0.1:9001', weight => 5, zone => '',
                    state => 'up', ttl => 30, metadata => {} },
                  'replace: missing fields went back to the defaults');
    } ],
    [ drain => 200, sub {
        my ($j) = @_;
        is($j->{instance}{state}, 'drain', 'drain: state drain');
        is($j->{instance}{weight}, 5, 'drain: weight kept');
        is($j->{instance}{ttl}, 30, 'drain: ttl kept');
    } ],
    [ undrain => 200, sub {
        my ($j) = @_;
        is($j->{instance}{state}, 'up', 'undrain: state up');
        is($j->{instance}{weight}, 3, 'undrain: weight 3');
    } ],
    [ heartbeat => 200, sub {
        my ($j, $h, $mode) = @_;
        is($j->{instance}{id}, 'u1', 'heartbeat: the instance');
        is($j->{created}, JSON::PP::false, 'heartbeat: created false');
        if ($mode eq 'embedded') {
            my $left = $j->{instance}{expires_in_ms} // -1;
            ok($left > 28000 && $left <= 30000, "heartbeat: expires in ~30s ($left ms)");
        }
    } ],
    [ deregister => 200, sub {
        my ($j) = @_;
        is_deeply($j, { deleted => JSON::PP::true }, 'deregister: {"deleted":true}');
    } ],
    [ 'error-bad-json' => 400, sub {
        is_deeply($_[0], { error => 'invalid JSON' }, 'error-bad-json: body');
    } ],
    [ 'error-no-token' => 401, sub {
        my ($j, $h) = @_;
        like($j->{error}, qr/token/, 'error-no-token: body');
        is($h->{'www-authenticate'}, 'Bearer', 'error-no-token: WWW-Authenticate: Bearer');
    } ],
    [ 'error-address' => 403, sub {
        like($_[0]{error}, qr/not allowed/, 'error-address: body');
    } ],
    [ 'error-not-found' => 404, sub {
        is_deeply($_[0], { error => 'no such instance' }, 'error-not-found: body');
    } ],
    [ 'error-method' => 405, sub {
        is_deeply($_[0], { error => 'method not allowed here' }, 'error-method: body');
    } ],
    [ 'error-too-large' => 413, sub {
        like($_[0]{error}, qr/64k/, 'error-too-large: body');
    } ],
);

my %expected = map { $_->[0] => 1 } @sequence;
for my $name (@doc_order) {
    ok($expected{$name}, "example $name is checked by this test")
        or diag("add example $name to \@sequence in $0");
}
for my $s (@sequence) {
    ok(exists $example{ $s->[0] }, "docs/admin-api.md has example $s->[0]");
}

# status, headers (lower-case names) and body of `curl -i` output; skips
# interim 1xx responses
sub parse_curl {
    my ($out) = @_;
    my ($status, %h);
    while ($out =~ s{\AHTTP/[\d.]+ (\d{3})[^\n]*\n((?:[^\r\n]+\r?\n)*)\r?\n}{}) {
        ($status, my $hdrs) = ($1, $2);
        %h = ();
        for (split /\r?\n/, $hdrs) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{ lc $k } = $v;
        }
        last if $status >= 200;
    }
    return ($status, \%h, $out);
}

sub run_example {
    my ($name, $gw) = @_;
    my ($code, $out) = run_cmd(
        cmd => [ 'bash', '-eu', '-o', 'pipefail', '-c', $example{$name} ],
        env => { GW => $gw, TOKEN => $TOKEN },
        timeout => 20);
    is($code, 0, "example $name: exit code 0") or diag($out);
    return parse_curl($out);
}

# --- the gateways ------------------------------------------------------------

my $locations = <<'EOF';
        location /gateway/ {
            gateway_admin;
            gateway_admin_token %%TOKEN%%;
        }

        location /open/ {
            gateway_admin;
        }

        location /local/ {
            gateway_admin;
            allow 127.0.0.1;
            deny all;
        }

        location /denied/ {
            gateway_admin;
            gateway_admin_token %%TOKEN%%;
            deny all;
        }
EOF

my $redis = start_redis();

my %gw;
$gw{embedded} = start_nginx(vars => { TOKEN => $TOKEN }, conf => <<"EOF");
    gateway_registry zone=gw:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
$locations
    }
EOF

$gw{redis} = start_nginx(vars => { TOKEN => $TOKEN }, conf => <<"EOF");
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%;

    server {
        listen 127.0.0.1:%%PORT%%;
$locations
    }
EOF

ok(wait_until(sub { $gw{redis}->error_log =~ /gateway: redis link to "[^"]*" is up/ },
              timeout => 5),
   'redis mode: the gateway connects to Redis');

# --- Redis keys after each write, in Redis mode -------------------------------

my $K = 'gateway:svc:users';

sub hash_of {
    my ($key) = @_;
    my $r = redis_cmd('HGETALL', $key);
    return ref $r eq 'ARRAY' ? { @$r } : $r;
}

my %redis_before = (
    heartbeat => sub { redis_cmd('EXPIRE', "$K:inst:u1", 5) },
);

my %redis_after = (
    register => sub {
        is_deeply(hash_of("$K:inst:u1"),
                  { address => '127.0.0.1:9001', weight => 2, zone => 'eu-1', state => 'up',
                    backup => 'false', ttl => 30, metadata => '{"version":"1.4.2"}' },
                  'redis: register wrote the instance hash');
        my $ttl = redis_cmd('TTL', "$K:inst:u1");
        ok($ttl > 25 && $ttl <= 30, "redis: the instance key expires ($ttl s)");
        is(redis_cmd('SISMEMBER', "$K:ids", 'u1'), 1, 'redis: id in the ids set');
        is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 1, 'redis: service listed');
        ok(redis_cmd('GET', "$K:rev") >= 1, 'redis: revision set');
    },
    'register-minimal' => sub {
        is(redis_cmd('HGET', "$K:inst:u2", 'address'), '127.0.0.1:9002', 'redis: u2 written');
        is(redis_cmd('TTL', "$K:inst:u2"), -1, 'redis: u2 (ttl 0) does not expire');
    },
    replace => sub {
        my $h = hash_of("$K:inst:u1");
        is_deeply([ @$h{qw(weight zone metadata ttl)} ], [ 5, '', '{}', 30 ],
                  'redis: replace rewrote all fields');
    },
    drain => sub {
        is(redis_cmd('HGET', "$K:inst:u1", 'state'), 'drain', 'redis: state drain');
        ok(redis_cmd('TTL', "$K:inst:u1") > 0, 'redis: drain kept the TTL');
    },
    undrain => sub {
        is_deeply([ @{ hash_of("$K:inst:u1") }{qw(state weight)} ], [ 'up', 3 ],
                  'redis: state up, weight 3');
    },
    heartbeat => sub {
        my $ttl = redis_cmd('TTL', "$K:inst:u1");
        ok($ttl > 25 && $ttl <= 30, "redis: heartbeat restored the TTL (5 -> $ttl s)");
    },
    deregister => sub {
        is(redis_cmd('EXISTS', "$K:inst:u1"), 0, 'redis: instance key deleted');
        is(redis_cmd('SISMEMBER', "$K:ids", 'u1'), 0, 'redis: id removed');
        is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 1,
           'redis: service still listed (u2 remains)');
    },
);

# --- run the examples in both modes -------------------------------------------

for my $mode (qw(embedded redis)) {
    my $ng = $gw{$mode};
    my $gwurl = $ng->url('/gateway');
    note("--- $mode mode: GW=$gwurl");

    for my $s (@sequence) {
        my ($name, $want, $check) = @$s;
        next unless exists $example{$name};
        $redis_before{$name}->() if $mode eq 'redis' && $redis_before{$name};
        my $rev = $mode eq 'redis' ? redis_cmd('GET', "$K:rev") // 0 : 0;

        my ($status, $h, $body) = run_example($name, $gwurl);
        is($status, $want, "$mode: example $name answers $want")
            or diag($body);
        like($h->{'content-type'} // '', qr{^application/json}, "$mode: $name: JSON")
            or next;
        my $j = json_decode($body);
        ok(ref $j eq 'HASH', "$mode: $name: a JSON object") or next;
        $check->($j, $h, $mode);

        if ($mode eq 'redis') {
            $redis_after{$name}->() if $redis_after{$name};
            if ($want < 300 && $example{$name} =~ /-X (?:PUT|PATCH|DELETE)\b/) {
                ok(redis_cmd('GET', "$K:rev") > $rev, "redis: $name incremented the revision");
            }
            if ($want >= 400) {
                is(redis_cmd('GET', "$K:rev") // 0, $rev, "redis: $name changed nothing");
            }
        }
    }

    # after the examples: u2 is left; u1 is gone
    my ($status, undef, $body) = $ng->get('/gateway/services/users');
    is($status, 200, "$mode: GET users after the examples");
    my $j = json_decode($body) || {};
    is_deeply([ map { $_->{id} } @{ $j->{instances} || [] } ], ['u2'],
              "$mode: only u2 is left");

    # deleting the last instance removes the service
    ($status) = $ng->request('DELETE', '/gateway/services/users/instances/u2',
                             headers => { Authorization => "Bearer $TOKEN" });
    is($status, 200, "$mode: DELETE u2");
    ok(wait_until(sub { ($ng->get('/gateway/services/users'))[0] == 404 }, timeout => 3),
       "$mode: the service is gone with its last instance");
    if ($mode eq 'redis') {
        is(redis_cmd('SISMEMBER', 'gateway:services', 'users'), 0,
           'redis: the service left gateway:services');
    }
}

# --- error cases with HTTP::Tiny, both modes ------------------------------------

my $AUTH = { Authorization => "Bearer $TOKEN" };
my $OK_BODY = '{"address":"127.0.0.1:9001"}';

sub api {
    my ($ng, $method, $path, %o) = @_;
    my ($status, $h, $body) = $ng->request($method, $path, %o);
    my $j;
    if (($h->{'content-type'} // '') =~ m{^application/json} && length($body // '')) {
        $j = json_decode($body);
    }
    return ($status, $j, $h, $body);
}

for my $mode (qw(embedded redis)) {
    my $ng = $gw{$mode};
    my $P = '/gateway/services';

    # a service to work with
    my ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i1", headers => $AUTH,
                       body => '{"address":"127.0.0.1:9001","ttl":60}');
    is($st, 201, "$mode: PUT i1") or diag(explain($j));

    # an instance's keys come in the order docs/admin-api.md shows them
    my (undef, undef, undef, $raw) = api($ng, 'PUT', "$P/order/instances/o1",
        headers => $AUTH,
        body => '{"metadata":{"k":"v"},"ttl":30,"state":"drain","zone":"z",'
              . '"weight":2,"address":"127.0.0.1:9009"}');
    my $exp = $mode eq 'embedded' ? '"expires_in_ms":\d+,' : '';
    like($raw // '', qr/^\{"service":"order","created":true,"instance":\{"id":"o1",
        "address":"127\.0\.0\.1:9009","weight":2,"zone":"z","state":"drain","backup":false,
        "ttl":30,$exp"metadata":\{"k":"v"\},"active":0,"requests":0,"retries":0,
        "response_ms":0,"fails":0,
        "failures":\{"connect":0,"timeout":0,"status":0,"other":0\}\}\}\n?$/x,
         "$mode: an instance's keys in the documented order");
    ($st) = api($ng, 'DELETE', "$P/order/instances/o1", headers => $AUTH);
    is($st, 200, "$mode: DELETE o1");

    # reads need no token, writes do
    ($st, $j) = api($ng, 'GET', $P);
    is($st, 200, "$mode: GET without a token is allowed");
    ($st, $j) = api($ng, 'GET', "$P/svc1");
    is($st, 200, "$mode: GET a service without a token is allowed");
    my ($hst, undef, $hh, $hbody) = api($ng, 'HEAD', $P);
    is($hst, 200, "$mode: HEAD works");
    is($hbody // '', '', "$mode: HEAD has no body");

    for my $case (
        [ 'no Authorization', {} ],
        [ 'wrong token',      { Authorization => 'Bearer nope' } ],
        [ 'token prefix',     { Authorization => 'Bearer ' . substr($TOKEN, 0, -1) } ],
        [ 'token plus more',  { Authorization => "Bearer ${TOKEN}x" } ],
        [ 'Basic scheme',     { Authorization => "Basic $TOKEN" } ],
        [ 'bare token',       { Authorization => $TOKEN } ],
    ) {
        my ($what, $hdr) = @$case;
        for my $req ([ 'PUT', "$P/svc1/instances/i1", $OK_BODY ],
                     [ 'PATCH', "$P/svc1/instances/i1", '{"state":"drain"}' ],
                     [ 'POST', "$P/svc1/instances/i1/heartbeat", '' ],
                     [ 'DELETE', "$P/svc1/instances/i1", undef ]) {
            my ($m, $path, $body) = @$req;
            my ($s, $jj, $h) = api($ng, $m, $path, headers => $hdr,
                                   defined $body ? (body => $body) : ());
            is($s, 401, "$mode: $m with $what: 401");
            ok($jj && $jj->{error}, "$mode: $m with $what: JSON error");
            is($h->{'www-authenticate'}, 'Bearer', "$mode: $m with $what: WWW-Authenticate")
                if $m eq 'PUT';
        }
    }
    ($st, $j) = api($ng, 'GET', "$P/svc1");
    is(($j->{instances}[0] || {})->{state}, 'up', "$mode: refused writes changed nothing");

    ($st) = api($ng, 'PATCH', "$P/svc1/instances/i1",
                headers => { Authorization => "bearer $TOKEN" }, body => '{"weight":4}');
    is($st, 200, "$mode: the scheme name is case-insensitive");

    # no token configured: writes are open
    ($st, $j) = api($ng, 'PUT', '/open/services/svc1/instances/i9', body => $OK_BODY);
    is($st, 201, "$mode: without gateway_admin_token writes need no token");
    ($st) = api($ng, 'DELETE', '/open/services/svc1/instances/i9');
    is($st, 200, "$mode: DELETE without a token there");

    # allow / deny of the location
    my ($ds, undef, $dh, $dbody) = api($ng, 'GET', '/denied/services');
    is($ds, 403, "$mode: deny all: GET answers 403");
    unlike($dbody // '', qr/"error"/, "$mode: the 403 is nginx's page, not the API");
    ($ds) = api($ng, 'PUT', '/denied/services/svc1/instances/i1', headers => $AUTH,
                body => $OK_BODY);
    is($ds, 403, "$mode: deny all: a write with the token is refused too");
    ($ds) = api($ng, 'GET', '/local/services');
    is($ds, 200, "$mode: allow 127.0.0.1 lets the local client in");

    # 400: bodies
    for my $case (
        [ 'invalid JSON',          '{"address": ',                              qr/invalid JSON/ ],
        [ 'trailing garbage',      '{"address":"127.0.0.1:9001"} x',            qr/JSON/ ],
        [ 'empty body',            '',                                          qr/body/ ],
        [ 'an array',              '[1,2]',                                     qr/object/ ],
        [ 'a string',              '"127.0.0.1:9001"',                          qr/object/ ],
        [ 'no address',            '{"weight":1}',                              qr/address/ ],
        [ 'host name',             '{"address":"localhost:9001"}',              qr/address/ ],
        [ 'no port',               '{"address":"127.0.0.1"}',                   qr/address/ ],
        [ 'port 0',                '{"address":"127.0.0.1:0"}',                 qr/address/ ],
        [ 'port 65536',            '{"address":"127.0.0.1:65536"}',             qr/address/ ],
        [ 'address a number',      '{"address":9001}',                          qr/address/ ],
        [ 'weight 0',              '{"address":"127.0.0.1:9001","weight":0}',   qr/weight/ ],
        [ 'weight -1',             '{"address":"127.0.0.1:9001","weight":-1}',  qr/weight/ ],
        [ 'weight 1001',           '{"address":"127.0.0.1:9001","weight":1001}', qr/weight/ ],
        [ 'weight a string',       '{"address":"127.0.0.1:9001","weight":"2"}', qr/weight/ ],
        [ 'weight 1.5',            '{"address":"127.0.0.1:9001","weight":1.5}', qr/weight/ ],
        [ 'state unknown',         '{"address":"127.0.0.1:9001","state":"off"}', qr/state/ ],
        [ 'ttl too big',           '{"address":"127.0.0.1:9001","ttl":86401}',  qr/ttl/ ],
        [ 'zone too long',         '{"address":"127.0.0.1:9001","zone":"' . ('z' x 65) . '"}', qr/zone/ ],
        [ 'zone bad chars',        '{"address":"127.0.0.1:9001","zone":"a b"}', qr/zone/ ],
        [ 'metadata an array',     '{"address":"127.0.0.1:9001","metadata":[1]}', qr/metadata/ ],
        [ 'metadata too long',     '{"address":"127.0.0.1:9001","metadata":{"a":"' . ('m' x 1100) . '"}}', qr/metadata/ ],
        [ 'unknown field',         '{"address":"127.0.0.1:9001","wieght":2}',   qr/unknown field/ ],
        [ 'id not a string',       '{"address":"127.0.0.1:9001","id":7}',       qr/^invalid "id": must be a string/ ],
    ) {
        my ($what, $body, $re) = @$case;
        my ($s, $jj) = api($ng, 'PUT', "$P/svc1/instances/i1", headers => $AUTH, body => $body);
        is($s, 400, "$mode: PUT $what: 400");
        like($jj && $jj->{error} // '', $re, "$mode: PUT $what: JSON error names it");
    }
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i1", headers => $AUTH,
                    body => '{"address":"127.0.0.1:9001","id":"other"}');
    ok($st == 200 && $j->{instance}{id} eq 'i1',
       "$mode: PUT: a string id is ignored, the path's is kept");
    for my $case ([ 'empty object', '{}', qr/nothing to change/ ],
                  [ 'unknown field', '{"stat":"drain"}', qr/unknown field/ ],
                  [ 'bad state', '{"state":"sleeping"}', qr/state/ ],
                  [ 'invalid JSON', '{"state":', qr/JSON/ ]) {
        my ($what, $body, $re) = @$case;
        my ($s, $jj) = api($ng, 'PATCH', "$P/svc1/instances/i1", headers => $AUTH, body => $body);
        is($s, 400, "$mode: PATCH $what: 400");
        like($jj && $jj->{error} // '', $re, "$mode: PATCH $what: JSON error");
    }

    # 400: names in the path
    for my $case ([ 'service starting with -', "$P/-svc/instances/i1" ],
                  [ 'service with a space',   "$P/a%20b/instances/i1" ],
                  [ 'service of 65 chars',    "$P/" . ('s' x 65) . '/instances/i1' ],
                  [ 'id starting with .',     "$P/svc1/instances/.i1" ],
                  [ 'id with a colon',        "$P/svc1/instances/i:1" ],
                  [ 'id of 65 chars',         "$P/svc1/instances/" . ('i' x 65) ]) {
        my ($what, $path) = @$case;
        my ($s, $jj) = api($ng, 'PUT', $path, headers => $AUTH, body => $OK_BODY);
        is($s, 400, "$mode: $what: 400");
        like($jj && $jj->{error} // '', qr/invalid (?:service name|instance id)/,
             "$mode: $what: JSON error");
    }
    my ($s64) = api($ng, 'PUT', "$P/" . ('s' x 64) . '/instances/' . ('i' x 64),
                    headers => $AUTH, body => $OK_BODY);
    is($s64, 201, "$mode: names of 64 characters are fine");
    api($ng, 'DELETE', "$P/" . ('s' x 64) . '/instances/' . ('i' x 64), headers => $AUTH);
    ($st, $j) = api($ng, 'GET', "$P/bad%20name");
    is($st, 400, "$mode: GET with a bad service name: 400");

    # 403: addresses outside gateway_registry_allow (default: loopback only)
    for my $addr ('192.0.2.10:8080', '10.0.0.1:80', '[2001:db8::1]:80', 'unix:/tmp/app.sock') {
        my ($s, $jj) = api($ng, 'PUT', "$P/svc1/instances/i2", headers => $AUTH,
                           body => qq({"address":"$addr"}));
        is($s, 403, "$mode: PUT address $addr: 403");
        like($jj && $jj->{error} // '', qr/gateway_registry_allow/, "$mode: $addr: JSON error");
    }
    ($st, $j) = api($ng, 'PATCH', "$P/svc1/instances/i1", headers => $AUTH,
                    body => '{"address":"192.0.2.10:8080"}');
    is($st, 403, "$mode: PATCH to a disallowed address: 403");
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i2", headers => $AUTH,
                    body => '{"address":"[::1]:9002"}');
    is($st, 201, "$mode: [::1] is allowed by default");
    api($ng, 'DELETE', "$P/svc1/instances/i2", headers => $AUTH);

    # 413
    my $pad = '{"address":"127.0.0.1:9001","metadata":{"p":"' . ('x' x 70000) . '"}}';
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i1", headers => $AUTH, body => $pad);
    is($st, 413, "$mode: a body over 64k: 413");
    like($j && $j->{error} // '', qr/64k/, "$mode: 413 JSON error");
    ($st, $j) = api($ng, 'POST', "$P/svc1/instances/i1/heartbeat", headers => $AUTH,
                    body => ' ' x 65537);
    is($st, 413, "$mode: heartbeat with a body over 64k: 413");
    ($st) = api($ng, 'PUT', "$P/svc1/instances/i1", headers => $AUTH,
                body => '{"address":"127.0.0.1:9001","ttl":60}' . (' ' x (65536 - 37)));
    is($st, 200, "$mode: a body of exactly 64k is accepted");
    my ($cst, $ch) = $ng->request('PUT', "$P/svc1/instances/i1",
                                  headers => $AUTH, body => ' ' x (1100 * 1024));
    is($cst, 413, "$mode: a body over client_max_body_size: 413");
    like($ch->{'content-type'} // '', qr{text/html},
         "$mode: ... nginx's own page, as documented");

    # 404
    for my $case ([ 'GET', "$P/nosuch", 'no such service' ],
                  [ 'PATCH', "$P/nosuch/instances/i1", 'no such instance', '{"weight":2}' ],
                  [ 'PATCH', "$P/svc1/instances/nosuch", 'no such instance', '{"weight":2}' ],
                  [ 'POST', "$P/svc1/instances/nosuch/heartbeat", 'no such instance' ],
                  [ 'DELETE', "$P/svc1/instances/nosuch", 'no such instance' ],
                  [ 'DELETE', "$P/nosuch/instances/i1", 'no such instance' ],
                  [ 'GET', '/gateway/other', qr/not found/ ],
                  [ 'GET', "$P/svc1/instances", qr/not found/ ],
                  [ 'GET', "$P/svc1/things/i1", qr/not found/ ],
                  [ 'POST', "$P/svc1/instances/i1/other", qr/not found/ ],
                  [ 'GET', "$P/svc1/instances/i1/heartbeat/more", qr/not found/ ]) {
        my ($m, $path, $msg, $body) = @$case;
        my ($s, $jj) = api($ng, $m, $path, headers => $AUTH,
                           defined $body ? (body => $body) : ());
        is($s, 404, "$mode: $m $path: 404");
        if (ref $msg) {
            like($jj && $jj->{error} // '', $msg, "$mode: $m $path: JSON error");
        } else {
            is($jj && $jj->{error}, $msg, "$mode: $m $path: \"$msg\"");
        }
    }

    # 405
    for my $case ([ 'POST', $P ], [ 'PUT', $P ], [ 'DELETE', $P ], [ 'PATCH', $P ],
                  [ 'POST', "$P/svc1" ], [ 'DELETE', "$P/svc1" ],
                  [ 'GET', "$P/svc1/instances/i1" ], [ 'POST', "$P/svc1/instances/i1" ],
                  [ 'HEAD', "$P/svc1/instances/i1" ],
                  [ 'GET', "$P/svc1/instances/i1/heartbeat" ],
                  [ 'DELETE', "$P/svc1/instances/i1/heartbeat" ],
                  [ 'PATCH', "$P/svc1/instances/i1/heartbeat" ]) {
        my ($m, $path) = @$case;
        my ($s, $jj) = api($ng, $m, $path, headers => $AUTH);
        is($s, 405, "$mode: $m $path: 405");
        is($jj && $jj->{error}, 'method not allowed here', "$mode: $m $path: JSON error")
            unless $m eq 'HEAD';
    }

    # heartbeat with PUT works as well
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i1/heartbeat", headers => $AUTH);
    is($st, 200, "$mode: PUT .../heartbeat: 200");

    # a ttl without heartbeats: the instance goes away (embedded: the
    # gateway's own clock; Redis: the key's TTL and keyspace notifications)
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/short", headers => $AUTH,
                    body => '{"address":"127.0.0.1:9003","ttl":1}');
    is($st, 201, "$mode: PUT an instance with ttl 1");
    my $t0 = time;
    ok(wait_until(sub {
        my (undef, $jj) = api($ng, 'GET', "$P/svc1");
        return !grep { $_->{id} eq 'short' } @{ ($jj || {})->{instances} || [] };
    }, timeout => 3), sprintf("$mode: without heartbeats it is gone after ~1s (%.1fs)",
                              time - $t0));
    ($st) = api($ng, 'POST', "$P/svc1/instances/short/heartbeat", headers => $AUTH);
    is($st, 404, "$mode: a heartbeat after the expiry is 404");

    # what is left is intact
    ($st, $j) = api($ng, 'GET', "$P/svc1");
    is_deeply([ map { $_->{id} } @{ $j->{instances} || [] } ], ['i1'],
              "$mode: the refused requests left the registry alone");
}


# --- PATCH naming every field: each one applied, in both modes ------------------

for my $mode (qw(embedded redis)) {
    my $ng = $gw{$mode};
    my $P = '/gateway/services/every/instances/e1';
    my $from = $ng->log_size;

    my ($st, $j) = api($ng, 'PUT', $P, headers => $AUTH,
                       body => '{"address":"127.0.0.1:9001","weight":1,"state":"drain",'
                             . '"zone":"a","metadata":{"k":"v"},"ttl":60}');
    is($st, 201, "$mode: PUT an instance to patch") or diag(explain($j));

    ($st, $j) = api($ng, 'PATCH', $P, headers => $AUTH,
                    body => '{"weight":3,"state":"up","zone":"z","metadata":{},"ttl":0,'
                          . '"backup":true,"address":"127.0.0.1:9002"}');
    is($st, 200, "$mode: PATCH naming every field: 200") or diag(explain($j));
    my $want = { id => 'e1', address => '127.0.0.1:9002', weight => 3, zone => 'z',
                 state => 'up', ttl => 0, metadata => {} };
    is_deeply(inst_fields($j && $j->{instance}), $want,
              "$mode: PATCH naming every field: each one is applied");
    ok($j && $j->{instance}{backup} && JSON::PP::is_bool($j->{instance}{backup}),
       "$mode: PATCH: backup is now true (a JSON boolean)");

    ($st, $j) = api($ng, 'GET', '/gateway/services/every');
    is_deeply(inst_fields(($j && $j->{instances} || [])->[0]), $want,
              "$mode: GET shows the patched fields");

    if ($mode eq 'redis') {
        is_deeply(hash_of('gateway:svc:every:inst:e1'),
                  { address => '127.0.0.1:9002', weight => 3, zone => 'z', state => 'up',
                    backup => 'true', metadata => '{}', ttl => 0 },
                  'redis: PATCH wrote every field');
        is(redis_cmd('TTL', 'gateway:svc:every:inst:e1'), -1,
           'redis: ttl 0 made the key persistent');
    }

    my $log = substr($ng->error_log, $from);
    unlike($log, qr/exited on signal/, "$mode: no worker crashed");

    ($st) = api($ng, 'DELETE', $P, headers => $AUTH);
    is($st, 200, "$mode: DELETE the patched instance");
}


# --- a full zone: embedded refuses and logs; Redis mode keeps the write in
# Redis, says so with 202, and logs it -------------------------------------------

{
    my %tiny;
    for my $mode (qw(embedded redis)) {
        my $redis_param = $mode eq 'redis'
            ? ' redis=redis://127.0.0.1:%%REDIS_PORT%% prefix=tiny:' : '';
        # the smallest zone gateway_registry accepts: 8 pages
        $tiny{$mode} = start_nginx(conf => <<"EOF2");
    gateway_registry zone=tiny:32k$redis_param;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ {
            gateway_admin;
        }
    }
EOF2
    }
    ok(wait_until(sub { $tiny{redis}->error_log =~ /gateway: redis link to "[^"]*" is up/ },
                  timeout => 5), 'tiny zone, redis mode: connected');

    my $meta = '{"pad":"' . ('p' x 900) . '"}';

    for my $mode (qw(embedded redis)) {
        my $ng = $tiny{$mode};
        my $P = '/gateway/services/fill/instances';
        my $from = $ng->log_size;
        my (@stored, $last, $j);
        for my $n (1 .. 200) {
            my $st;
            ($st, $j) = api($ng, 'PUT', "$P/i$n",
                            body => qq({"address":"127.0.0.1:9001","metadata":$meta}));
            if ($st != 201) {
                $last = [ $n, $st ];
                last;
            }
            push @stored, "i$n";
        }
        ok($last, "tiny zone, $mode: the zone fills up after "
                  . scalar(@stored) . ' instances');
        cmp_ok(scalar @stored, '>', 0, "tiny zone, $mode: some instances fit");
        my $n = $last ? $last->[0] : 0;

        if ($mode eq 'embedded') {
            is($last && $last->[1], 500, 'tiny zone, embedded: the write that does not fit: 500');
            is_deeply($j, { error => 'the registry zone is full' },
                      'tiny zone, embedded: JSON error');
            ok($ng->wait_log(qr/\[error\][^\n]*gateway: zone "tiny" is full, admin write of instance "i$n" of service "fill" refused/,
                             from => $from, timeout => 2),
               'tiny zone, embedded: zone "tiny" is full is logged');
        } else {
            is($last && $last->[1], 202,
               'tiny zone, redis: the write committed in Redis but not held here: 202');
            is_deeply($j, { service => 'fill', id => "i$n", created => JSON::PP::true,
                            applied => JSON::PP::false,
                            reason => 'the registry zone is full' },
                      'tiny zone, redis: the JSON says what was not applied');
            is(redis_cmd('HGET', "tiny:svc:fill:inst:i$n", 'address'), '127.0.0.1:9001',
               'tiny zone, redis: the instance is in Redis');
            is(redis_cmd('SISMEMBER', 'tiny:svc:fill:ids', "i$n"), 1,
               'tiny zone, redis: and in its ids set');
            ok($ng->wait_log(qr/\[error\][^\n]*gateway: zone "tiny" is full, admin write of instance "i$n" of service "fill" is in redis but not applied here/,
                             from => $from, timeout => 2),
               'tiny zone, redis: zone "tiny" is full is logged');
        }

        my ($st, $sj) = api($ng, 'GET', '/gateway/services/fill');
        my %listed = map { $_->{id} => 1 } @{ ($sj || {})->{instances} || [] };
        if ($mode eq 'embedded') {
            # what fitted is kept, what did not is not listed
            ok(!$listed{"i$n"}, "tiny zone, $mode: the refused instance is not listed");
            is(scalar(grep { $listed{$_} } @stored), scalar @stored,
               "tiny zone, $mode: every instance that fitted is still listed");
        } else {
            # the sync worker applies Redis' snapshots as well, in its own
            # time: which instances fit may change, never more than fit
            my %in_redis = map { $_ => 1 } @{ redis_cmd('SMEMBERS', 'tiny:svc:fill:ids') };
            is(scalar(keys %in_redis), $n, "tiny zone, $mode: Redis has all $n");
            cmp_ok(scalar(keys %listed), '<', $n, "tiny zone, $mode: the zone lists fewer");
            is(scalar(grep { !$in_redis{$_} } keys %listed), 0,
               "tiny zone, $mode: and only instances Redis has");
        }
    }
    $tiny{$_}->stop for qw(embedded redis);
    redis_cmd('DEL', @{ redis_cmd('KEYS', 'tiny:*') });
}


# --- the counters: requests, fails and active count what really happened ------

{
    my $cnt = start_nginx(workers => 2, conf => <<'EOF2');
    gateway_registry zone=cnt:1m;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?$ {
            proxy_pass http://gw$gw_rest;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout 1s;
            add_header X-Upstream $upstream_addr always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "ok\n";
        }
    }
EOF2
    my $live = '127.0.0.1:' . $cnt->port('PORT2');
    my $dead = '127.0.0.1:' . free_port();       # nothing listens: refused

    my $put = sub {
        my ($svc, $id, $addr) = @_;
        my ($st) = api($cnt, 'PUT', "/gateway/services/$svc/instances/$id",
                       body => qq({"address":"$addr"}));
        return $st;
    };
    my $counters = sub {
        my ($svc) = @_;
        my (undef, $j) = api($cnt, 'GET', "/gateway/services/$svc");
        return {} unless $j;
        return { map { my $i = $_; $i->{id} => { map { $_ => $i->{$_} } qw(requests fails active) } }
                 @{ $j->{instances} || [] } };
    };

    is($put->('cnt', 'a', $live), 201, 'counters: register a live instance');
    is_deeply($counters->('cnt'), { a => { requests => 0, fails => 0, active => 0 } },
              'counters: all 0 for a new instance');

    my %status;
    $status{ ($cnt->get('/svc/cnt/x'))[0] }++ for 1 .. 9;
    is_deeply(\%status, { 200 => 9 }, 'counters: 9 requests, all 200');
    is_deeply($counters->('cnt'), { a => { requests => 9, fails => 0, active => 0 } },
              'counters: 9 proxied requests count 9, none active at rest');

    # a dead instance next to it: every attempt to it is a refused connect,
    # retried on the live one
    is($put->('cnt', 'd', $dead), 201, 'counters: register a dead instance');
    my ($tried_dead, $ok) = (0, 0);
    for (1 .. 10) {
        my ($st, $h) = $cnt->get('/svc/cnt/x');
        $ok++ if $st == 200;
        $tried_dead++ if ($h->{'x-upstream'} // '') =~ /\Q$dead\E/;
    }
    is($ok, 10, 'counters: with a dead instance every request is still 200');
    cmp_ok($tried_dead, '>=', 3, "counters: the dead instance was tried ($tried_dead times)");
    is_deeply($counters->('cnt'),
              { a => { requests => 19, fails => 0, active => 0 },
                d => { requests => $tried_dead, fails => $tried_dead, active => 0 } },
              'counters: each refused connect is one fail of the dead instance; '
              . 'the live one served all');

    # a service with only the dead instance: each request one attempt, one fail
    is($put->('gone', 'g', $dead), 201, 'counters: a service with only a dead instance');
    for my $n (1 .. 2) {
        my ($st) = $cnt->get('/svc/gone/x');
        is($st, 502, "counters: request $n to it: 502");
        is_deeply($counters->('gone'), { g => { requests => $n, fails => $n, active => 0 } },
                  "counters: fails $n after $n refused connects");
    }

    # active while a request is in flight: an instance that accepts and never
    # answers (the kernel completes the handshake; nobody reads)
    my $hang = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp', Listen => 8)
        or die "listen: $!";
    is($put->('slow', 's', '127.0.0.1:' . $hang->sockport), 201,
       'counters: register an instance that never answers');
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cnt->port,
                                  Proto => 'tcp') or die "connect: $!";
    print {$c} "GET /svc/slow/x HTTP/1.0\r\nHost: t\r\n\r\n";
    my $busy = wait_until(sub { ($counters->('slow')->{s} || {})->{active} == 1 },
                          timeout => 2, interval => 0.02);
    ok($busy, 'counters: active is 1 while the request is in flight');
    my $resp = do { local $/; <$c> } // '';
    close $c;
    like($resp, qr{^HTTP/1\.\d 504}, 'counters: the request times out: 504');
    is(($counters->('slow')->{s} || {})->{active}, 0,
       'counters: active is back to 0 when it is over');
    close $hang;
    $cnt->stop;
}

# --- Redis mode: a second gateway on the same Redis, Redis refusing a write -------

{
    my $ng = $gw{redis};
    my $other = start_nginx(vars => { TOKEN => $TOKEN }, conf => <<"EOF");
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%;

    server {
        listen 127.0.0.1:%%PORT%%;
$locations
    }
EOF
    ok(wait_until(sub { $other->error_log =~ /gateway: redis link to "[^"]*" is up/ },
                  timeout => 5), 'second gateway: connected');

    my ($st) = api($ng, 'PUT', '/gateway/services/shared/instances/s1', headers => $AUTH,
                   body => '{"address":"127.0.0.1:9001","weight":7}');
    is($st, 201, 'second gateway: PUT on the first one');
    my $seen = wait_until(sub {
        my ($s, $j) = api($other, 'GET', '/gateway/services/shared');
        return $s == 200 && ($j->{instances}[0] || {})->{weight} == 7;
    }, timeout => 2);
    ok($seen, 'second gateway: sees the write through the change notice');
    ($st) = api($other, 'DELETE', '/gateway/services/shared/instances/s1', headers => $AUTH);
    is($st, 200, 'second gateway: DELETE there');
    ok(wait_until(sub { (api($ng, 'GET', '/gateway/services/shared'))[0] == 404 },
                  timeout => 2),
       'first gateway: sees the delete');
    $other->stop;

    # a key of the wrong type makes the script fail: 503, Redis' error logged
    redis_cmd('SET', 'gateway:svc:wt:ids', 'not a set');
    my $from = $ng->log_size;
    my ($s, $j) = api($ng, 'PUT', '/gateway/services/wt/instances/i1', headers => $AUTH,
                      body => $OK_BODY);
    is($s, 503, 'redis refuses the write: 503');
    is_deeply($j, { error => 'redis refused the write' }, 'redis refuses the write: JSON error');
    ok($ng->wait_log(qr/gateway: admin write to redis failed: [^\n]*(?:WRONGTYPE|is not a set)/, from => $from,
                     timeout => 2),
       "redis refuses the write: Redis' error is logged");
    is((api($ng, 'GET', '/gateway/services/wt'))[0], 404, 'redis refuses the write: nothing local');
    redis_cmd('DEL', 'gateway:svc:wt:ids', 'gateway:svc:wt:inst:i1');

    # another writer left a bad field: the heartbeat is done in Redis, but
    # this gateway cannot apply the record: 202, why, and a log line
    ($s, $j) = api($ng, 'PUT', '/gateway/services/bad/instances/b1', headers => $AUTH,
                   body => $OK_BODY);
    is($s, 201, 'a bad field in Redis: PUT b1');
    redis_cmd('HSET', 'gateway:svc:bad:inst:b1', 'weight', 'heavy');
    $from = $ng->log_size;
    ($s, $j) = api($ng, 'POST', '/gateway/services/bad/instances/b1/heartbeat',
                   headers => $AUTH);
    is($s, 202, 'a bad field in Redis: the heartbeat answers 202');
    is_deeply([ @{ $j || {} }{qw(service id created applied)} ],
              [ 'bad', 'b1', JSON::PP::false, JSON::PP::false ],
              'a bad field in Redis: not applied here');
    like($j && $j->{reason} // '', qr/"weight"/, 'a bad field in Redis: the reason names it');
    ok($ng->wait_log(qr/gateway: redis key "gateway:svc:bad:inst:b1" skipped: [^\n]*"weight"/,
                     from => $from, timeout => 2),
       'a bad field in Redis: logged');
    api($ng, 'DELETE', '/gateway/services/bad/instances/b1', headers => $AUTH);
}

# --- Redis mode: Redis stopped, Redis frozen ------------------------------------

{
    my $ng = $gw{redis};
    my $P = '/gateway/services';

    my ($st0, $before) = api($ng, 'GET', "$P/svc1");
    is($st0, 200, 'redis mode: GET svc1 before Redis stops');
    my @before = map { [ $_->{id}, $_->{weight}, $_->{state} ] } @{ $before->{instances} || [] };

    # Redis comes back empty: the gateway writes its registry back
    expect_log_errors(qr/gateway: redis "[^"]*" lost the registry/);
    $redis->stop;

    my $t0 = time;
    my ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i3", headers => $AUTH, body => $OK_BODY);
    is($st, 503, 'redis stopped: PUT answers 503');
    is_deeply($j, { error => 'redis is unreachable' }, 'redis stopped: JSON error');
    cmp_ok(time - $t0, '<', tmo(2), 'redis stopped: at once, not after a timeout');
    for my $req ([ 'PATCH', "$P/svc1/instances/i1", '{"weight":7}' ],
                 [ 'POST', "$P/svc1/instances/i1/heartbeat", '' ],
                 [ 'DELETE', "$P/svc1/instances/i1", undef ]) {
        my ($m, $path, $body) = @$req;
        my ($s, $jj) = api($ng, $m, $path, headers => $AUTH,
                           defined $body ? (body => $body) : ());
        is($s, 503, "redis stopped: $m answers 503");
        like($jj && $jj->{error} // '', qr/redis/, "redis stopped: $m: JSON error");
    }
    ($st, $j) = api($ng, 'GET', "$P/svc1");
    is($st, 200, 'redis stopped: reads are served from the zone');
    is_deeply([ map { [ $_->{id}, $_->{weight}, $_->{state} ] } @{ $j->{instances} || [] } ],
              \@before, 'redis stopped: the failed writes changed nothing locally');
    # the 401 check comes before Redis
    ($st) = api($ng, 'PUT', "$P/svc1/instances/i3", body => $OK_BODY);
    is($st, 401, 'redis stopped: a write without the token is still 401');

    $redis->start;
    my $ok = wait_until(sub {
        my ($s) = api($ng, 'PUT', "$P/svc1/instances/i3", headers => $AUTH, body => $OK_BODY);
        return $s == 201 || $s == 200;
    }, timeout => 5, interval => 0.2);
    ok($ok, 'redis back: writes work again');
    is(redis_cmd('HGET', 'gateway:svc:svc1:inst:i3', 'address'), '127.0.0.1:9001',
       'redis back: the write is in Redis');

    # frozen: reachable, but no answer
    $redis->pause;
    $t0 = time;
    ($st, $j) = api($ng, 'PUT', "$P/svc1/instances/i4", headers => $AUTH, body => $OK_BODY,
                    timeout => tmo(10));
    my $took = time - $t0;
    $redis->resume;
    is($st, 503, 'redis frozen: PUT answers 503');
    is_deeply($j, { error => 'redis did not answer in time' }, 'redis frozen: JSON error');
    ok($took >= 2.5 && $took < tmo(6), sprintf('redis frozen: after about 3s (%.1fs)', $took));

    ok(wait_until(sub {
        my ($s) = api($ng, 'PUT', "$P/svc1/instances/i5", headers => $AUTH, body => $OK_BODY);
        return $s == 201 || $s == 200;
    }, timeout => 5, interval => 0.2), 'redis thawed: writes work again');
    ($st, $j) = api($ng, 'GET', "$P/svc1");
    is($st, 200, 'redis thawed: GET works');
}

done_testing();
