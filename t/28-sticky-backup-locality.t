#!/usr/bin/perl
# What the core applies around every balancing method, with two workers:
# sticky sessions (gateway_sticky), backup instances (the record field
# backup), locality (gateway_locality) and drain (state "drain": no new
# requests, the ones in flight finish).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep);
use GatewayTest;

my $dir = test_dir();

# a backend that answers each request only once the file "release" exists:
# a request in flight for as long as the test wants
my $release = "$dir/release";
my $arrived = "$dir/arrived";
my $slow = start_backend(sub {
    my ($ls) = @_;
    while (my $c = $ls->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            my $n = sysread($c, $req, 4096, length $req);
            last unless $n;
        }
        if (open(my $fh, '>>', $arrived)) { close $fh }
        for (1 .. 400) {
            last if -e $release;
            sleep 0.05;
        }
        my $body = 'slow';
        print $c "HTTP/1.0 200 OK\r\nContent-Length: " . length($body)
                 . "\r\nConnection: close\r\n\r\n$body";
        close $c;
    }
});

my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream sticky {
        gateway_service st;
        gateway_sticky cookie=gw_route max_age=1h httponly;
    }

    upstream sticky_random {
        gateway_service st;
        gateway_balance random;
        gateway_sticky cookie=gw_r path=/app secure;
    }

    upstream backup {
        gateway_service bk;
    }

    upstream backup_random {
        gateway_service bk;
        gateway_balance random;
    }

    upstream local70 {
        gateway_service lc;
        gateway_locality zone=a;
    }

    upstream local50 {
        gateway_service lc;
        gateway_balance random;
        gateway_locality zone=a min_healthy=50;
    }

    upstream local100 {
        gateway_service lz;
        gateway_locality zone=a min_healthy=100;
    }

    upstream drain {
        gateway_service dr;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /sticky {
            proxy_pass http://sticky;
        }

        location /sticky_random {
            proxy_pass http://sticky_random;
        }

        location /backup {
            proxy_pass http://backup;
        }

        location /backup_random {
            proxy_pass http://backup_random;
        }

        location /local70 {
            proxy_pass http://local70;
        }

        location /local50 {
            proxy_pass http://local50;
        }

        location /local100 {
            proxy_pass http://local100;
        }

        location /drain {
            proxy_pass http://drain;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        listen 127.0.0.1:%%PORT4%%;
        listen 127.0.0.1:%%PORT5%%;
        location / {
            return 200 "$server_port";
        }
    }
EOF

my @port = map { $ng->port("PORT$_") } 2 .. 5;

sub put {
    my ($svc, $id, %rec) = @_;
    return $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                        json => \%rec)->{status};
}

sub patch {
    my ($svc, $id, %rec) = @_;
    return $ng->request('PATCH', "/gateway/services/$svc/instances/$id",
                        json => \%rec)->{status};
}

# n requests: a hash of answers (the backend's port) to their counts
sub spread { return $ng->spread(@_) }

sub set_cookie { my ($r) = @_; return $r->{headers}{'set-cookie'} }

# an instance as the admin API shows it
sub instance {
    my ($svc, $id) = @_;
    my ($st, $h, $body) = $ng->get("/gateway/services/$svc");
    return undef unless $st == 200;
    my ($i) = grep { $_->{id} eq $id } @{ json_decode($body)->{instances} || [] };
    return $i;
}

# --- sticky ---------------------------------------------------------------

my %id_of = (st1 => $port[0], st2 => $port[1], st3 => $port[2]);
my %port_id = reverse %id_of;
is(put('st', $_, address => "127.0.0.1:$id_of{$_}"), 201, "sticky: $_ registered")
    for sort keys %id_of;

my $r = $ng->get('/sticky');
is($r->{status}, 200, 'sticky: first request answered');
my $first = $r->{body};
is(set_cookie($r), "gw_route=$port_id{$first}; Path=/; Max-Age=3600; HttpOnly",
   'sticky: the first response sets the cookie to the id of the instance that answered');

my $cookie = { Cookie => "gw_route=$port_id{$first}" };
is_deeply(spread('/sticky', 30, headers => $cookie), { $first => 30 },
          'sticky: 30 requests with the cookie all go to that instance');
$r = $ng->get('/sticky', headers => $cookie);
ok(!defined set_cookie($r), 'sticky: a cookie that names the answering instance is not set again');

is_deeply(spread('/sticky', 20, headers => { Cookie => 'a=1; gw_route=st3; z=2' }),
          { $port[2] => 20 }, 'sticky: the cookie among others names st3: all to st3');
is_deeply(spread('/sticky_random', 20, headers => { Cookie => 'gw_r=st2' }),
          { $port[1] => 20 }, 'sticky over random: the cookie names st2: all to st2');
$r = $ng->get('/sticky_random');
like(set_cookie($r) // '', qr{^gw_r=st[123]; Path=/app; Secure$},
     'sticky over random: path= and secure in the cookie');

# without the cookie round robin goes on spreading
my $c = spread('/sticky', 30);
is(scalar(keys %$c), 3, 'sticky: requests without the cookie are spread by the algorithm');

# a cookie that names no instance, or is not an id, is ignored
for my $bad ('nosuch', '..%2F', '"st1"', 'st1%00') {
    $r = $ng->get('/sticky', headers => { Cookie => "gw_route=$bad" });
    is($r->{status}, 200, "sticky: cookie value $bad: answered");
    my $id = $port_id{ $r->{body} } // '?';
    is(set_cookie($r), "gw_route=$id; Path=/; Max-Age=3600; HttpOnly",
       "sticky: cookie value $bad: ignored, the cookie set to the instance chosen ($id)");
}
like($ng->error_log, qr/sticky cookie "gw_route" ignored: "\.\.%2F" is not an instance id/,
     'sticky: a value that is not an id is logged');

# a byte from the request that is not printable ASCII reaches the log
# escaped (a raw request: the HTTP client sends no such header)
{
    my $raw = http_raw($ng->port, "GET /sticky HTTP/1.1\r\nHost: a\r\n"
                       . "Cookie: gw_route=st1\x1b[2J\xff\r\n"
                       . "Connection: close\r\n\r\n");
    like($raw, qr{^HTTP/1\.1 200 },
         'sticky: a value with raw bytes: answered');
    like($ng->error_log,
         qr/ignored: "st1\\x1b\[2J\\xff" is not an instance id/,
         'sticky: raw bytes of the value are logged escaped');
    unlike($ng->error_log, qr/[\x1b\xff]/,
           'sticky: no raw byte of the value is logged');
}

# an instance that is no longer eligible: back to the algorithm, cookie re-set
is(patch('st', 'st3', state => 'drain'), 200, 'sticky: st3 drains');
$c = spread('/sticky', 20, headers => { Cookie => 'gw_route=st3' });
ok(!$c->{ $port[2] } && ($c->{ $port[0] } // 0) + ($c->{ $port[1] } // 0) == 20,
   'sticky: the cookie names a drained instance: the others answer')
    or diag(explain($c));
$r = $ng->get('/sticky', headers => { Cookie => 'gw_route=st3' });
like(set_cookie($r) // '', qr/^gw_route=st[12];/, 'sticky: and the cookie is re-set to the new one');
is(patch('st', 'st3', state => 'up'), 200, 'sticky: st3 up again');
is_deeply(spread('/sticky', 10, headers => { Cookie => 'gw_route=st3' }), { $port[2] => 10 },
          'sticky: st3 is eligible again: the cookie takes requests back to it');

# a sticky instance that refuses connections: the retry goes elsewhere
my $dead = free_port();
is(put('st', 'st3', address => "127.0.0.1:$dead"), 200, 'sticky: st3 now refuses connections');
$r = $ng->get('/sticky', headers => { Cookie => 'gw_route=st3' });
is($r->{status}, 200, 'sticky: the request for st3 is retried and answered');
like(set_cookie($r) // '', qr/^gw_route=st[12];/, 'sticky: by another instance, named in the cookie');
expect_log_errors(qr/connect\(\) failed/);

# --- backup ---------------------------------------------------------------

is(put('bk', 'p1', address => "127.0.0.1:$port[0]"), 201, 'backup: p1 (primary)');
is(put('bk', 'p2', address => "127.0.0.1:$port[1]"), 201, 'backup: p2 (primary)');
is(put('bk', 'b1', address => "127.0.0.1:$port[2]", backup => JSON::PP::true), 201,
   'backup: b1 (backup)');
ok(JSON::PP::is_bool(instance('bk', 'b1')->{backup}) && instance('bk', 'b1')->{backup},
   'backup: the admin API shows backup true');
ok(!instance('bk', 'p1')->{backup}, 'backup: and false by default');

is_deeply(spread('/backup', 40), { $port[0] => 20, $port[1] => 20 },
          'backup: round robin: only the primaries answer, evenly');

# round robin's cycle is the primaries': a heavy backup takes no turns
is(patch('bk', 'b1', weight => 10), 200, 'backup: b1 weighs 10');
is_deeply(spread('/backup', 40), { $port[0] => 20, $port[1] => 20 },
          'backup: a heavy backup leaves the primaries\' split exact');

# without an up primary the cycle is the backups', by their weights
is(put('bk', 'b2', address => "127.0.0.1:$port[3]", backup => JSON::PP::true,
       weight => 2), 201, 'backup: b2 (backup, weight 2)');
is(patch('bk', 'p1', state => 'down'), 200, 'backup: p1 down');
is(patch('bk', 'p2', state => 'down'), 200, 'backup: p2 down');
is_deeply(spread('/backup', 60), { $port[2] => 50, $port[3] => 10 },
          'backup: the backups split by weight, exactly');
is($ng->request('DELETE', '/gateway/services/bk/instances/b2')->{status}, 200,
   'backup: b2 removed');
is(patch('bk', 'b1', weight => 1), 200, 'backup: b1 weighs 1 again');
is(patch('bk', 'p1', state => 'up'), 200, 'backup: p1 up');
is(patch('bk', 'p2', state => 'up'), 200, 'backup: p2 up');
$c = spread('/backup_random', 40);
ok(!$c->{ $port[2] } && ($c->{ $port[0] } // 0) + ($c->{ $port[1] } // 0) == 40,
   'backup over random: the backup gets nothing while a primary is eligible')
    or diag(explain($c));

is(patch('bk', 'p1', state => 'drain'), 200, 'backup: p1 drains');
is_deeply(spread('/backup', 20), { $port[1] => 20 }, 'backup: one primary left takes everything');
is(patch('bk', 'p2', state => 'down'), 200, 'backup: p2 down');
is_deeply(spread('/backup', 20), { $port[2] => 20 }, 'backup: no primary eligible: the backup answers');
is_deeply(spread('/backup_random', 20), { $port[2] => 20 }, 'backup over random: the same');
is(patch('bk', 'p2', state => 'up'), 200, 'backup: p2 up again');
is_deeply(spread('/backup', 20), { $port[1] => 20 }, 'backup: a primary is back: the backup is left alone');

# a primary that fails: the retry may go to a backup
is(put('bk', 'p2', address => "127.0.0.1:$dead"), 200, 'backup: p2 refuses connections');
is_deeply(spread('/backup', 10), { $port[2] => 10 },
          'backup: the only primary fails: each request is retried on the backup');

is(patch('bk', 'b1', backup => JSON::PP::false), 200, 'backup: b1 is a primary now');
is(patch('bk', 'p2', state => 'down'), 200, 'backup: p2 down');
is_deeply(spread('/backup', 10), { $port[2] => 10 }, 'backup: b1 answers as a primary');

# a bad value is refused and changes nothing
my $res = $ng->request('PATCH', '/gateway/services/bk/instances/b1',
                       body => '{"backup":"yes"}', headers => { 'content-type' => 'application/json' });
is($res->{status}, 400, 'backup: "yes" is refused');
like($res->{body}, qr/invalid \\?"backup\\?": must be true or false/, 'backup: with the field\'s message');

# --- backup in Redis records and the state file ---------------------------

start_redis();
my $ngr = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gwr:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     state_file=%%NGINX_DIR%%/registry.state;

    upstream backup {
        gateway_service rb;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /backup {
            proxy_pass http://backup;
        }
    }
EOF

sub redis_instance {
    my ($id, @fields) = @_;
    redis_cmd('HSET', "gateway:svc:rb:inst:$id", @fields);
    redis_cmd('SADD', 'gateway:svc:rb:ids', $id);
}
redis_instance('r1', address => "127.0.0.1:$port[0]");
redis_instance('r2', address => "127.0.0.1:$port[1]", backup => 'true');
redis_instance('r3', address => "127.0.0.1:$port[2]", backup => 'yes');
redis_cmd('SADD', 'gateway:services', 'rb');
redis_cmd('INCR', 'gateway:svc:rb:rev');
redis_cmd('PUBLISH', 'gateway:events', 'rb');

sub rb_ids {
    my ($st, $h, $body) = $ngr->get('/gateway/services/rb');
    return '' unless $st == 200;
    return join ',', map { "$_->{id}:" . ($_->{backup} ? 'backup' : 'primary') }
                     @{ json_decode($body)->{instances} || [] };
}
ok(wait_until(sub { rb_ids() eq 'r1:primary,r2:backup' }, timeout => tmo(5)),
   'redis: backup "true" read from the hash, the record with "yes" skipped')
    or diag(rb_ids());
like($ngr->error_log, qr/redis key "gateway:svc:rb:inst:r3" skipped: invalid "backup": must be true or false/,
     'redis: the bad record is logged with the field\'s message');

my $rc = $ngr->spread('/backup', 10);
is_deeply($rc, { $port[0] => 10 }, 'redis: the primary takes every request');
redis_cmd('HSET', 'gateway:svc:rb:inst:r1', state => 'down');
redis_cmd('INCR', 'gateway:svc:rb:rev');
redis_cmd('PUBLISH', 'gateway:events', 'rb');
ok(wait_until(sub { ($ngr->spread('/backup', 1)->{ $port[1] } // 0) == 1 }, timeout => tmo(5)),
   'redis: the primary down: the backup answers');

my $state = $ngr->dir . '/registry.state';
ok(wait_until(sub { (eval { GatewayTest::_slurp($state) } // '') =~ /"id":"r1".*"state":"down"/ },
              timeout => tmo(5)), 'state file: written');
my ($line) = grep { /"id":"r2"/ } split /\n/, GatewayTest::_slurp($state);
like($line // '', qr/"backup":true/, 'state file: r2 is kept as a backup');

# the state file gives the backup back at the next start, Redis away
$ngr->stop;
GatewayTest::_spit($state, GatewayTest::_slurp($state) =~ s/"id":"r1"(.*?)"state":"down"/"id":"r1"$1"state":"up"/r);
$ngr->{conf} =~ s{redis=redis://127\.0\.0\.1:%%REDIS_PORT%%}{redis=redis://127.0.0.1:1};
expect_log_errors(qr/redis/);
$ngr->start;
is(rb_ids(), 'r1:primary,r2:backup', 'state file: loaded with the backup field');
is_deeply($ngr->spread('/backup', 10), { $port[0] => 10 },
          'state file: the primary from the file takes every request');
$ngr->stop;

# --- locality -------------------------------------------------------------

is(put('lc', 'a1', address => "127.0.0.1:$port[0]", zone => 'a'), 201, 'locality: a1 in zone a');
is(put('lc', 'a2', address => "127.0.0.1:$port[1]", zone => 'a'), 201, 'locality: a2 in zone a');
is(put('lc', 'b1', address => "127.0.0.1:$port[2]", zone => 'b'), 201, 'locality: b1 in zone b');
is(put('lc', 'n1', address => "127.0.0.1:$port[3]"), 201, 'locality: n1 without a zone');

is_deeply(spread('/local70', 40), { $port[0] => 20, $port[1] => 20 },
          'locality: all local instances eligible: only zone a answers');
$c = spread('/local50', 40);
ok(!$c->{ $port[2] } && !$c->{ $port[3] }, 'locality over random: only zone a answers')
    or diag(explain($c));

is(patch('lc', 'a1', state => 'drain'), 200, 'locality: a1 drains (1 of 2 local eligible)');
$c = spread('/local70', 60);
ok($c->{ $port[1] } && $c->{ $port[2] } && $c->{ $port[3] } && !$c->{ $port[0] },
   'locality: 50% < min_healthy 70%: spills over to every eligible instance') or diag(explain($c));
is_deeply(spread('/local50', 30), { $port[1] => 30 },
          'locality: 50% >= min_healthy 50%: still only zone a');

is(patch('lc', 'a2', state => 'down'), 200, 'locality: a2 down (no local eligible)');
$c = spread('/local50', 40);
ok(!$c->{ $port[0] } && !$c->{ $port[1] } && $c->{ $port[2] } && $c->{ $port[3] },
   'locality: none local eligible, min_healthy 50: all the others answer') or diag(explain($c));

# locality within the tier: backups of zone a are not local primaries
is(put('lc', 'x1', address => "127.0.0.1:$port[0]", zone => 'a', backup => JSON::PP::true), 201,
   'locality: x1, a backup in zone a');
is(put('lc', 'x2', address => "127.0.0.1:$port[1]", zone => 'b', backup => JSON::PP::true), 201,
   'locality: x2, a backup in zone b');
$c = spread('/local50', 40);
ok(!$c->{ $port[0] } && !$c->{ $port[1] } && $c->{ $port[2] } && $c->{ $port[3] },
   'locality: a local backup does not take requests from remote primaries') or diag(explain($c));
is(patch('lc', $_, state => 'down'), 200, "locality: $_ down") for qw(b1 n1);
is_deeply(spread('/local50', 20), { $port[0] => 20 },
          'locality: no primary left: among the backups, the local one');
is(patch('lc', 'x1', state => 'drain'), 200, 'locality: the local backup drains');
is_deeply(spread('/local50', 20), { $port[1] => 20 },
          'locality: then the remote backup');

# zones whose ids interleave (i1 a, i2 b, i3 a): both a's count
is(put('lz', 'i1', address => "127.0.0.1:$port[0]", zone => 'a'), 201, 'locality: i1 in zone a');
is(put('lz', 'i2', address => "127.0.0.1:$port[1]", zone => 'b'), 201, 'locality: i2 in zone b');
is(put('lz', 'i3', address => "127.0.0.1:$port[2]", zone => 'a'), 201, 'locality: i3 in zone a');
is_deeply(spread('/local100', 20), { $port[0] => 10, $port[2] => 10 },
          'locality: min_healthy 100, both local eligible: zone a only');
is(patch('lz', 'i3', state => 'drain'), 200, 'locality: i3 drains');
$c = spread('/local100', 20);
ok($c->{ $port[0] } && $c->{ $port[1] } && !$c->{ $port[2] },
   'locality: 1 of 2 local eligible < 100%: spills over to zone b') or diag(explain($c));

# --- drain ----------------------------------------------------------------

is(put('dr', 'd1', address => "127.0.0.1:$slow"), 201, 'drain: d1 (the slow backend)');

# a request in flight to d1
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port,
                              Proto => 'tcp', Timeout => tmo(5))
    or die "connect: $!\n";
print $s "GET /drain HTTP/1.0\r\nHost: x\r\n\r\n";
ok(wait_until(sub { -e $arrived }, timeout => tmo(10)), 'drain: a request is in flight at d1');

sub active_of {
    my ($id) = @_;
    my $i = instance('dr', $id);
    return $i ? $i->{active} : undef;
}
is(active_of('d1'), 1, 'drain: the admin API shows d1 with 1 in flight');

is(put('dr', 'd2', address => "127.0.0.1:$port[0]"), 201, 'drain: d2');
is(patch('dr', 'd1', state => 'drain'), 200, 'drain: d1 drains');
is_deeply(spread('/drain', 30), { $port[0] => 30 }, 'drain: new requests all go to d2');

if (open(my $fh, '>', $release)) { close $fh }
my $sel = IO::Select->new($s);
my $resp = '';
while ($sel->can_read(tmo(10))) {
    my $n = sysread($s, $resp, 4096, length $resp);
    last unless $n;
}
close $s;
like($resp, qr{^HTTP/1\.[01] 200 .*\r\n\r\nslow$}s, 'drain: the request in flight at d1 finished');
ok(wait_until(sub { (active_of('d1') // -1) == 0 }, timeout => tmo(5)),
   'drain: d1 has nothing in flight any more');

# --- sticky added and removed by a reload ---------------------------------

my $conf_of = sub {
    my ($sticky) = @_;
    return <<"EOF";
    gateway_registry zone=gwt:1m;
    upstream u {
        gateway_service rl;
        $sticky
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ { gateway_admin; }
        location / { proxy_pass http://u; }
    }
EOF
};
my $ngt = start_nginx(workers => 2, conf => $conf_of->(''));
is($ngt->request('PUT', '/gateway/services/rl/instances/q1',
                 json => { address => "127.0.0.1:$port[0]" })->{status}, 201, 'reload: q1');
$r = $ngt->get('/');
ok($r->{status} == 200 && !defined set_cookie($r), 'reload: no gateway_sticky, no cookie');
ok($ngt->reload(conf => $conf_of->('gateway_sticky cookie=k;'), wait_old => 1),
   'reload: gateway_sticky added');
is(set_cookie(scalar $ngt->get('/')), 'k=q1; Path=/', 'reload: now the response sets the cookie');
ok($ngt->reload(conf => $conf_of->(''), wait_old => 1), 'reload: gateway_sticky removed');
$r = $ngt->get('/');
ok($r->{status} == 200 && !defined set_cookie($r), 'reload: no cookie any more');
$ngt->stop;

# --- the directives' errors -----------------------------------------------

sub conf_test {
    my ($ups) = @_;
    return nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u {
        $ups
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { proxy_pass http://u; }
    }
EOF
}

my @bad = (
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky max_age=1h;', qr/needs cookie=NAME/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky "cookie=a b";', qr/invalid cookie name/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=_a;',
      qr/invalid cookie name "_a" in "gateway_sticky": .*starting with a letter or digit/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a max_age=0;', qr/invalid max_age/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a max_age=soon;', qr/invalid max_age/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a max_age=1500ms;',
      qr/invalid max_age "1500ms" in "gateway_sticky": .*in whole seconds/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a path=x;', qr/invalid path/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a "path=/a;b";', qr/invalid path/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a always;', qr/invalid parameter "always"/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a path=/a path=/b;', qr/invalid parameter "path=\/b"/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a secure secure;', qr/invalid parameter "secure"/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a httponly httponly;', qr/invalid parameter "httponly"/ ],
    [ 'gateway_sticky', 'gateway_service s; gateway_sticky cookie=a; gateway_sticky cookie=b;', qr/is duplicate/ ],
    [ 'gateway_sticky', 'gateway_sticky cookie=a; gateway_service s;', qr/must follow "gateway_service"/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality min_healthy=10;', qr/needs zone=NAME/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=;', qr/invalid zone/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=a/b;', qr/invalid zone/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=a min_healthy=101;', qr/invalid min_healthy/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=a min_healthy=x;', qr/invalid min_healthy/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=a min_healthy=5 x;', qr/invalid parameter "x"/ ],
    [ 'gateway_locality', 'gateway_service s; gateway_locality zone=a min_healthy=1 min_healthy=2;',
      qr/invalid parameter "min_healthy=2"/ ],
    [ 'gateway_locality', 'gateway_locality zone=a; gateway_service s;', qr/must follow "gateway_service"/ ],
);
for my $b (@bad) {
    my ($directive, $ups, $re) = @$b;
    my ($code, $out) = conf_test($ups);
    isnt($code, 0, "nginx -t fails: $ups");
    ok(scalar(grep { /\[emerg\]/ && /\Q$directive\E/ && /$re/ } split /\n/, $out),
       "  the [emerg] names \"$directive\" and says why") or diag($out);
}
my ($code, $out) = conf_test('gateway_service s; gateway_balance random; '
    . 'gateway_sticky cookie=s max_age=30m path=/x secure httponly; '
    . 'gateway_locality zone=eu-1 min_healthy=0;');
is($code, 0, 'nginx -t passes with every parameter') or diag($out);

done_testing();
