#!/usr/bin/perl
# Active health checks: the worker that keeps the registry probes every
# instance of a checked service; an instance that fails its probes gets no
# requests until it passes again, a new one of a "mandatory" check none
# until its first probe passed; an instance's record may name its own
# health URI and statuses; a removed instance is no longer probed, a moved
# one starts afresh; an upstream whose service name is a variable probes
# the services its requests resolved to (a fixed name's check wins where
# both cover one); 10,000 instances are probed while unrelated requests
# go on, with a fixed name and with a variable one (their p99 is reported,
# not asserted).
#
# The backends are a second nginx: /health answers 503 while a file
# down_PORT exists in the test dir, 200 otherwise; its access log tells
# which URIs were probed on which port.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use HTTP::Tiny;
use Time::HiRes qw(sleep time);

my $dir = test_dir();

my $be = start_nginx(workers => 2, conf => <<'EOF');
    log_format probe "$server_port $request_uri $status";
    access_log %%NGINX_DIR%%/probes.log probe;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        listen 127.0.0.1:%%PORT4%%;
        listen 127.0.0.1:%%PORT5%%;
        listen 127.0.0.1:%%PORT6%%;
        listen 127.0.0.1:%%PORT7%%;

        location /health {
            if (-f %%TESTDIR%%/down_$server_port) {
                return 503 "down\n";
            }
            return 200 "ok\n";
        }

        location /forbidden {
            return 403;
        }

        location /custom/ready {
            if (-f %%TESTDIR%%/down_$server_port) {
                return 500 "down\n";
            }
            return 204;
        }

        location / {
            return 200 "$server_port";
        }
    }
EOF

my @port = map { $be->port($_ == 1 ? 'PORT' : "PORT$_") } 1 .. 7;

sub down { my ($p) = @_; open my $fh, '>', "$dir/down_$p" or die $!; close $fh }
sub up   { my ($p) = @_; unlink "$dir/down_$p" }

sub probes {
    my ($p, $uri) = @_;
    my $n = 0;
    for (split /\n/, GatewayTest::_slurp($be->dir . '/probes.log') // '') {
        my ($port, $u) = split / /;
        $n++ if $port eq $p && (!defined $uri || $u eq $uri);
    }
    return $n;
}

########################################################################
# bad directives fail nginx -t, naming the directive

sub conf_test {
    my ($ups) = @_;
    return nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u {
        $ups
    }
    upstream v {
        gateway_service app;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { proxy_pass http://u; }
    }
EOF
}

for my $case (
    [ 'gateway_service app; gateway_health_check;', 0 ],
    [ 'gateway_service app; gateway_health_check uri=/ready interval=2s '
      . 'timeout=500ms fails=3 passes=2 status=200,204,300-399 mandatory;', 0 ],
    [ 'gateway_health_check;', qr/"gateway_health_check" directive must follow "gateway_service"/ ],
    [ 'gateway_service $host; gateway_health_check;', 0 ],
    [ 'gateway_service $host; gateway_health_check uri=/ready mandatory;', 0 ],
    [ 'gateway_service app; gateway_health_check interval=1s timeout=2s;',
      qr/"gateway_health_check" timeout=2000 is longer than its interval=1000/ ],
    [ 'gateway_service app; gateway_health_check interval=500ms;', 0 ],
    [ 'gateway_service app; gateway_health_check interval=500ms timeout=1s;',
      qr/"gateway_health_check" timeout=1000 is longer than its interval=500/ ],
    [ 'gateway_service app; gateway_health_check; gateway_health_check;',
      qr/"gateway_health_check" directive is duplicate/ ],
    map({ [ "gateway_service app; gateway_health_check $_;",
            qr/invalid parameter "\Q$_\E" in "gateway_health_check"/ ] }
        'uri=health', 'uri=/' . ('x' x 256), 'interval=0', 'interval=5x', 'timeout=1ms',
        'fails=0', 'passes=x', 'status=200-', 'status=600', 'status=', 'mandatory=1',
        'port=80'),
) {
    my ($ups, $want) = @$case;
    my ($code, $out) = conf_test($ups);
    if (!$want) {
        is($code, 0, "nginx -t accepts: $ups") or diag($out);
        next;
    }
    isnt($code, 0, "nginx -t refuses: $ups");
    like($out, qr/\[emerg\].*$want/, '... naming the directive');
}

{
    my ($code, $out) = nginx_test_config(conf => <<'EOF');
    gateway_registry zone=gw:1m;
    upstream u { gateway_service app; gateway_health_check; }
    upstream v { gateway_service app; gateway_health_check uri=/x; }
    server { listen 127.0.0.1:%%PORT%%; location / { proxy_pass http://u; } }
EOF
    isnt($code, 0, 'nginx -t refuses two health checks of one service');
    like($out, qr/\[emerg\].*"gateway_health_check" for service "app" is given twice, in upstream "v"/,
         '... naming the directive and the upstream');
}

# probes every 300 ms (every 2 s under valgrind), each with as long to answer
my %HC = (HC => valgrind_mode() ? '2s' : '300ms');

my $ng_conf = <<'EOF';
    gateway_registry zone=gw:4m;

    upstream app {
        gateway_service app;
        gateway_health_check uri=/health interval=%%HC%% timeout=%%HC%%
                             fails=2 passes=2;
    }

    upstream fresh {
        gateway_service fresh;
        gateway_health_check uri=/health interval=%%HC%% timeout=%%HC%%
                             mandatory;
    }

    upstream unchecked {
        gateway_service app;
    }

    upstream byname {
        gateway_service $svc;
        gateway_health_check uri=/health?by=name interval=%%HC%%
                             timeout=%%HC%% fails=2 passes=2;
    }

    upstream byname_mandatory {
        gateway_service $svc;
        gateway_health_check uri=/health interval=%%HC%% timeout=%%HC%%
                             mandatory;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /app {
            proxy_pass http://app;
        }

        location /fresh {
            proxy_pass http://fresh;
        }

        location /unchecked {
            proxy_pass http://unchecked;
        }

        location ~ ^/by/(?<svc>[a-z0-9]+) {
            proxy_pass http://byname;
        }

        location ~ ^/bym/(?<svc>[a-z0-9]+) {
            proxy_pass http://byname_mandatory;
        }
    }
EOF
my $ng = start_nginx(workers => 2, vars => \%HC, conf => $ng_conf);

sub register {
    my ($svc, $id, %rec) = @_;
    return $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                        json => \%rec)->{status};
}

sub instance {
    my ($svc, $id) = @_;
    my $r = $ng->get("/gateway/services/$svc");
    return undef unless $r->{status} == 200;
    my ($i) = grep { $_->{id} eq $id } @{ json_decode($r->{body})->{instances} };
    return $i;
}

sub health { my $i = instance(@_); return $i ? $i->{health} : undef }
sub hstatus { my $h = health(@_); return $h ? $h->{status} : '' }

sub answers { return $ng->spread(@_) }

########################################################################
# an instance that fails its probes is taken out, and brought back

is(register('app', 'a', address => "127.0.0.1:$port[0]"), 201, 'a registered');
is(register('app', 'b', address => "127.0.0.1:$port[1]"), 201, 'b registered');

ok(wait_until(sub { my $h = health('app', 'b'); $h && $h->{passes} >= 2 },
              timeout => tmo(5)), 'b is probed and passes');
my $h = health('app', 'b');
is($h->{status}, 'healthy', 'admin API: b is healthy');
is($h->{last_status}, 200, 'admin API: the last probe got 200');
is($h->{last_error}, undef, 'admin API: and no error');
cmp_ok($h->{last_probe_ms}, '>', (time - 60) * 1000,
       'admin API: the last probe time is in ms since the epoch');
ok(wait_until(sub { probes($port[1], '/health') >= 2 }, timeout => tmo(5)),
   'the backend saw the probes on /health');
is_deeply(answers('/app', 20), { $port[0] => 10, $port[1] => 10 },
          'both instances get requests');

my $log_from = $ng->log_size;
down($port[1]);
ok(wait_until(sub { hstatus('app', 'b') eq 'unhealthy' },
              timeout => tmo(5)), 'b fails its probes: unhealthy');
$h = health('app', 'b');
cmp_ok($h->{fails}, '>=', 2, 'after fails=2 probes failed in a row');
is($h->{last_status}, 503, 'admin API: the last probe got 503');
is($h->{last_error}, 'status', 'admin API: which is a failing status');
is($h->{passes}, 0, 'admin API: no passes in a row');
ok($ng->wait_log(qr/\[warn\].*gateway: instance "b" \(127\.0\.0\.1:$port[1]\) of service "app" is unhealthy: \d+ probes failed, the last with status 503/,
                 from => $log_from, timeout => tmo(2)),
   'one log line names the instance and its service');
is_deeply(answers('/app', 20), { $port[0] => 20 },
          'an unhealthy instance gets no requests');
is_deeply(answers('/unchecked', 20), { $port[0] => 10, $port[1] => 10 },
          'an upstream without a health check still uses it');

$log_from = $ng->log_size;
up($port[1]);
ok(wait_until(sub { hstatus('app', 'b') eq 'healthy' },
              timeout => tmo(5)), 'b passes again: healthy');
ok($ng->wait_log(qr/\[notice\].*gateway: instance "b" \(127\.0\.0\.1:$port[1]\) of service "app" is healthy: 2 probes passed/,
                 from => $log_from, timeout => tmo(2)),
   'after passes=2 in a row, logged');
is_deeply(answers('/app', 20), { $port[0] => 10, $port[1] => 10 },
          'b gets requests again');

# a connect that is refused fails a probe too
my $dead = free_port();
is(register('app', 'c', address => "127.0.0.1:$dead"), 201, 'c registered on a closed port');
ok(wait_until(sub { hstatus('app', 'c') eq 'unhealthy' },
              timeout => tmo(5)), 'c is unhealthy');
is(health('app', 'c')->{last_error}, 'connect', 'by a failed connect');
is_deeply(answers('/app', 20), { $port[0] => 10, $port[1] => 10 },
          'the requests went to a and b');
is(instance('app', 'c')->{requests}, 0, 'c got no attempt at all');

# a moved instance starts afresh; the same address keeps its history
is(register('app', 'c', address => "127.0.0.1:$dead", weight => 2), 200,
   'c re-registered at the same address');
is(health('app', 'c')->{status}, 'unhealthy', 'keeps its health');
is(register('app', 'c', address => "127.0.0.1:$port[2]"), 200, 'c moves');
$h = health('app', 'c');
ok(!$h || $h->{status} ne 'unhealthy', 'a moved instance does not keep the old health');
ok(wait_until(sub { hstatus('app', 'c') eq 'healthy' },
              timeout => tmo(5)), 'and is probed at its new address');

# a removed instance is no longer probed
is($ng->request('DELETE', '/gateway/services/app/instances/c')->{status}, 200,
   'c removed');
sleep(tmo(0.5));
my $before = probes($port[2]);
sleep(tmo(1));
is(probes($port[2]), $before, 'a removed instance is not probed any more');

########################################################################
# an instance's record names its own health URI and statuses

is(register('app', 'd', address => "127.0.0.1:$port[2]",
            health_uri => '/custom/ready', health_status => '204'), 201,
   'd registered with health_uri and health_status');
my $d = instance('app', 'd');
is($d->{health_uri}, '/custom/ready', 'admin API: health_uri is shown');
is($d->{health_status}, '204', 'admin API: health_status is shown');
ok(!exists instance('app', 'a')->{health_uri}, 'and left out where not set');
ok(wait_until(sub { hstatus('app', 'd') eq 'healthy' },
              timeout => tmo(5)), 'd passes with 204 on its own URI');
ok(wait_until(sub { probes($port[2], '/custom/ready') >= 1 }, timeout => tmo(5)),
   'the backend saw /custom/ready');
is(probes($port[2], '/health'), $before, 'and not /health');
down($port[2]);
ok(wait_until(sub { hstatus('app', 'd') eq 'unhealthy' },
              timeout => tmo(5)), 'd unhealthy when its URI answers 500');
is(health('app', 'd')->{last_status}, 500, 'admin API: with the status 500');
up($port[2]);
ok(wait_until(sub { hstatus('app', 'd') eq 'healthy' },
              timeout => tmo(5)), 'and healthy again');

for my $bad ([ health_uri => "/a b" ], [ health_uri => "ready" ],
             [ health_uri => "/\r\nX: y" ], [ health_uri => '/' . ('x' x 256) ],
             [ health_status => '2000' ], [ health_status => '399-200' ],
             [ health_status => '200,' ]) {
    my $r = $ng->request('PUT', '/gateway/services/app/instances/e',
                         json => { address => "127.0.0.1:$port[2]", @$bad });
    (my $shown = substr($bad->[1], 0, 20)) =~ s/[^ -~]/?/g;
    is($r->{status}, 400, "$bad->[0] \"$shown\" is refused")
        or diag($r->{body});
    like($r->{body}, qr/"error":"invalid \\"$bad->[0]\\": must be/,
         '... with an error naming the field');
}
my $r = $ng->request('PATCH', '/gateway/services/app/instances/d',
                     json => { health_uri => '' });
is($r->{status}, 200, 'PATCH health_uri "" goes back to the upstream\'s URI');
ok(!exists instance('app', 'd')->{health_uri}, '... and is no longer shown');
ok(wait_until(sub { probes($port[2], '/health') > $before }, timeout => tmo(5)),
   '... and /health is probed again');

########################################################################
# mandatory: a new instance gets nothing until its first probe passes

down($port[3]);
is(register('fresh', 'n', address => "127.0.0.1:$port[3]"), 201,
   'n registered, failing');
is(($ng->get('/fresh'))[0], 503, 'mandatory: a new instance gets no request before its first probe');
ok(wait_until(sub { health('fresh', 'n') }, timeout => tmo(5)), 'n is probed');
is(health('fresh', 'n')->{status}, 'unhealthy', 'and unhealthy');
is(($ng->get('/fresh'))[0], 503, 'so it gets no request');
up($port[3]);
ok(wait_until(sub { hstatus('fresh', 'n') eq 'healthy' },
              timeout => tmo(5)), 'n passes');
is_deeply(answers('/fresh', 5), { $port[3] => 5 }, 'and gets requests');

########################################################################
# a probe's status outside status= fails it, whatever the status; probes
# are not attempts: the instance's requests and failures do not count them

is(register('app', 'f', address => "127.0.0.1:$port[2]",
            health_uri => '/forbidden'), 201, 'f registered, its URI answers 403');
ok(wait_until(sub { hstatus('app', 'f') eq 'unhealthy' },
              timeout => tmo(5)), 'f: a 403 fails its probes');
$h = health('app', 'f');
is($h->{last_status}, 403, 'admin API: last_status 403');
is($h->{last_error}, 'status', 'admin API: last_error "status"');
my $f = instance('app', 'f');
is($f->{requests}, 0, 'probes are not counted as requests');
is($f->{fails}, 0, 'nor as fails');
is_deeply($f->{failures}, { connect => 0, timeout => 0, status => 0, other => 0 },
          'nor as failures of any cause');
is($ng->request('DELETE', '/gateway/services/app/instances/f')->{status}, 200,
   'f removed');

########################################################################
# a variable service name: a service is probed once a request through the
# upstream resolved to it, with that upstream's check

# what must not happen is given a few intervals (not scaled: a longer
# wait only makes those checks stricter)
my $hc_s = valgrind_mode() ? 2 : 0.3;
my $VAR = '/health?by=name';

# v1: x on port 5, y on port 6; v2: x on port 5, y on port 7
is(register('v1', 'x', address => "127.0.0.1:$port[4]"), 201, 'v1 x registered');
is(register('v1', 'y', address => "127.0.0.1:$port[5]"), 201, 'v1 y registered');
is(register('v2', 'x', address => "127.0.0.1:$port[4]"), 201, 'v2 x registered');
is(register('v2', 'y', address => "127.0.0.1:$port[6]"), 201, 'v2 y registered');
sleep(3 * $hc_s);
ok(!health('v1', 'y') && !health('v2', 'y'),
   'before any request through the upstream, neither service is probed');
is(probes($port[4]) + probes($port[5]) + probes($port[6]), 0,
   '... the backends saw no probe');

is_deeply(answers('/by/v1', 10), { $port[4] => 5, $port[5] => 5 },
          'requests through the upstream resolve to v1');
ok(wait_until(sub { my $h = health('v1', 'y'); $h && $h->{passes} >= 2 },
              timeout => tmo(5)), 'v1 is probed from then on');
ok(probes($port[5], $VAR) >= 2, "... on the upstream's URI");
ok(!health('v2', 'y'), 'v2, not requested yet, is not probed');

is_deeply(answers('/by/v2', 10), { $port[4] => 5, $port[6] => 5 },
          'requests resolve to v2');
ok(wait_until(sub { my $h = health('v2', 'y'); $h && $h->{passes} >= 2 },
              timeout => tmo(5)), 'v2 is probed too');

$log_from = $ng->log_size;
down($port[5]);
down($port[6]);
ok(wait_until(sub { hstatus('v1', 'y') eq 'unhealthy'
                    && hstatus('v2', 'y') eq 'unhealthy' },
              timeout => tmo(5)), "each service's y fails its probes: unhealthy");
cmp_ok(health('v1', 'y')->{fails}, '>=', 2, "after the upstream's fails=2");
ok($ng->wait_log(qr/\[warn\].*gateway: instance "y" \(127\.0\.0\.1:$port[6]\) of service "v2" is unhealthy: \d+ probes failed, the last with status 503/,
                 from => $log_from, timeout => tmo(2)),
   'the log line names the service the instance is of');
is(hstatus('v1', 'x'), 'healthy', 'x stays healthy');
is_deeply(answers('/by/v1', 10), { $port[4] => 10 },
          'v1: the unhealthy instance gets no requests');
is_deeply(answers('/by/v2', 10), { $port[4] => 10 },
          'v2: the unhealthy instance gets no requests');

up($port[5]);
up($port[6]);
ok(wait_until(sub { hstatus('v1', 'y') eq 'healthy'
                    && hstatus('v2', 'y') eq 'healthy' },
              timeout => tmo(5)), 'both pass again: healthy');
is_deeply(answers('/by/v1', 10), { $port[4] => 5, $port[5] => 5 },
          'v1: y gets requests again');
is_deeply(answers('/by/v2', 10), { $port[4] => 5, $port[6] => 5 },
          'v2: y gets requests again');

# an instance's own health URI and statuses hold for it here too
is(register('v1', 'z', address => "127.0.0.1:$port[6]",
            health_uri => '/custom/ready', health_status => '204'), 201,
   'v1 z registered with health_uri and health_status');
ok(wait_until(sub { hstatus('v1', 'z') eq 'healthy' }, timeout => tmo(5)),
   'z passes with 204 on its own URI');
is(health('v1', 'z')->{last_status}, 204, 'admin API: the last probe got 204');
ok(probes($port[6], '/custom/ready') >= 1, 'the backend saw /custom/ready');
is($ng->request('DELETE', '/gateway/services/v1/instances/z')->{status}, 200,
   'z removed');

# a removed service is attached again by its next request
is($ng->request('DELETE', "/gateway/services/v2/instances/$_")->{status}, 200,
   "v2 $_ removed") for qw(x y);
is(register('v2', 'y', address => "127.0.0.1:$port[6]"), 201, 'v2 created again');
sleep(3 * $hc_s);
ok(!health('v2', 'y'), 'the new v2 is not probed before a request');
is_deeply(answers('/by/v2', 4), { $port[6] => 4 }, 'a request resolves to it');
ok(wait_until(sub { hstatus('v2', 'y') eq 'healthy' }, timeout => tmo(5)),
   'and it is probed again');

# a service with a check of its fixed name keeps that one
my $app_probes = probes($port[0], '/health');
is(($ng->get('/by/app'))[0], 200, 'a request through the upstream resolves to app');
sleep(4 * $hc_s);
is(probes($port[0], $VAR) + probes($port[1], $VAR), 0,
   "app is not probed by the variable name's check");
cmp_ok(probes($port[0], '/health'), '>', $app_probes,
       'its own check goes on probing it');

# mandatory: a service's first request finds its instances unknown
is(register('m1', 'x', address => "127.0.0.1:$port[4]"), 201, 'm1 registered');
is(($ng->get('/bym/m1'))[0], 503,
   'mandatory: the first request to a service gets 503, its instances unprobed');
ok(wait_until(sub { hstatus('m1', 'x') eq 'healthy' }, timeout => tmo(5)),
   'that request attached it: probed and healthy');
is_deeply(answers('/bym/m1', 4), { $port[4] => 4 }, 'then requests go through');

# a reload keeps the services attached to an upstream of the same name,
# with its new parameters; one attached by an upstream the new
# configuration lacks is released, and attached again by its next request
(my $ng_conf2 = $ng_conf) =~ s{/health\?by=name}{/health?by=again};
$ng_conf2 =~ s{\n    upstream byname_mandatory \{.*?\n    \}\n}{\n}s
    or die 'no byname_mandatory upstream';
$ng_conf2 =~ s{\n        location ~ \^/bym/.*?\n        \}\n}{\n}s
    or die 'no /bym/ location';
my $v1_probes = probes($port[5], $VAR);
ok($ng->reload(conf => $ng_conf2, wait_old => 1), 'reloaded: a new URI for byname, byname_mandatory gone');
ok(wait_until(sub { probes($port[5], '/health?by=again') >= 2 }, timeout => tmo(5)),
   "v1 is probed with the new URI, without a request since");
sleep(3 * $hc_s);
my $m1_probes = health('m1', 'x')->{probes};
sleep(3 * $hc_s);
is(health('m1', 'x')->{probes}, $m1_probes,
   'm1, attached by the upstream that is gone, is not probed any more');
is_deeply(answers('/by/m1', 2), { $port[4] => 2 }, 'a request through byname resolves to m1');
ok(wait_until(sub { health('m1', 'x')->{probes} > $m1_probes }, timeout => tmo(5)),
   'and attaches it again: probed');

########################################################################
# Redis mode: the fields are in the instance's hash only when set

my $redis = start_redis();
my $rg = start_nginx(vars => \%HC, conf => <<'EOF2');
    gateway_registry zone=rg:1m redis=redis://127.0.0.1:%%REDIS_PORT%%;

    upstream app {
        gateway_service app;
        gateway_health_check uri=/health interval=%%HC%% timeout=%%HC%%;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ {
            gateway_admin;
        }
    }
EOF2
my $hash = sub { my $r = redis_cmd('HGETALL', $_[0]); return ref $r eq 'ARRAY' ? { @$r } : {} };
is($rg->request('PUT', '/gateway/services/app/instances/r1',
                json => { address => "127.0.0.1:$port[2]",
                          health_uri => '/custom/ready',
                          health_status => '204' })->{status}, 201,
   'Redis mode: an instance with health_uri and health_status');
is($hash->('gateway:svc:app:inst:r1')->{health_uri}, '/custom/ready',
   'Redis mode: health_uri is in the hash');
is($hash->('gateway:svc:app:inst:r1')->{health_status}, '204',
   'Redis mode: health_status is in the hash');
is($rg->request('PUT', '/gateway/services/app/instances/r2',
                json => { address => "127.0.0.1:$port[2]" })->{status}, 201,
   'Redis mode: an instance without them');
ok(!grep({ /^health/ } keys %{ $hash->('gateway:svc:app:inst:r2') }),
   'Redis mode: its hash has no health field');
redis_cmd('HSET', 'gateway:svc:app:inst:r2', 'health_uri', '/custom/ready');
redis_cmd('INCR', 'gateway:svc:app:rev');
ok(wait_until(sub {
        my $r = $rg->get('/gateway/services/app');
        return 0 unless $r->{status} == 200;
        my ($i) = grep { $_->{id} eq 'r2' } @{ json_decode($r->{body})->{instances} };
        return $i && ($i->{health_uri} // '') eq '/custom/ready'
               && (($i->{health} // {})->{status} // '') eq 'healthy'
               && ($i->{health}{last_status} // 0) == 204;
    }, timeout => tmo(10)), 'Redis mode: a health_uri written to Redis is used by the probes');
$rg->stop;

########################################################################
# 10,000 instances are probed while requests go on

if (valgrind_mode()) {
    note('valgrind mode: the 10,000 instances are left out');
    done_testing();
    exit;
}

my $N = 10_000;
open my $fh, '>', "$dir/many.state" or die $!;
print $fh qq({"version":2,"generation":1}\n);
for my $i (1 .. $N) {
    my $p = $port[$i % 4];
    printf $fh qq({"name":"many","revision":1,"instance":{"id":"i%05d","address":"127.0.0.1:%d"}}\n),
        $i, $p;
}
printf $fh qq({"name":"other","revision":1,"instance":{"id":"o","address":"127.0.0.1:%d"}}\n),
    $port[0];
close $fh;

sub p99_of {
    my ($gw, $path, $secs) = @_;
    my $http = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(10));
    my (@lat, $bad);
    my $end = time + $secs;
    while (time < $end) {
        my $t = time;
        my $r = $http->get($gw->url($path));
        push @lat, time - $t;
        $bad++ unless $r->{status} == 200;
    }
    @lat = sort { $a <=> $b } @lat;
    return (scalar(@lat), $bad // 0, 1000 * $lat[int(0.99 * $#lat)],
            1000 * $lat[int(0.5 * $#lat)]);
}

my $many = start_nginx(workers => 2, conf => <<'EOF2');
    gateway_registry zone=many:64m state_file=%%TESTDIR%%/many.state;

    upstream many {
        gateway_service many;
        gateway_health_check uri=/health interval=5s timeout=1s;
    }

    upstream other {
        gateway_service other;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /other {
            proxy_pass http://other;
        }
    }
EOF2

my $svc_many = sub { json_decode($many->get('/gateway/services/many')->{body}) };
is(scalar(@{ $svc_many->()->{instances} }), $N, "$N instances loaded");

my ($n0, $bad0, $p99_0, $p50_0) = p99_of($ng, '/app', 3);
# the probes the backends saw on the ports of the instances
sub probed { my $n = 0; $n += probes($port[$_], '/health') for 0 .. 3; return $n }

my $probes_before = probed();
my ($n, $bad, $p99, $p50) = p99_of($many, '/other', 6);
my $probed = probed() - $probes_before;
diag(sprintf("unrelated requests while %d instances are probed: %d requests, "
             . "p50 %.2f ms, p99 %.2f ms (without that probing: %d requests, "
             . "p50 %.2f ms, p99 %.2f ms); %d probes seen meanwhile",
             $N, $n, $p50, $p99, $n0, $p50_0, $p99_0, $probed));
is($bad, 0, 'every unrelated request was answered 200 meanwhile');
cmp_ok($n, '>', 100, 'requests kept flowing');
ok(wait_until(sub { !grep { !$_->{health} } @{ $svc_many->()->{instances} } },
              timeout => tmo(15), interval => 1),
   "every one of the $N instances was probed");
my @unhealthy = grep { $_->{health}{status} ne 'healthy' }
                @{ $svc_many->()->{instances} };
is(scalar(@unhealthy), 0, 'and all are healthy');
$many->stop;

# the same through a variable name, at its worst: 10,000 services of one
# instance each, attached by one request each, then walked every round

open $fh, '>', "$dir/vmany.state" or die $!;
print $fh qq({"version":2,"generation":1}\n);
for my $i (1 .. $N) {
    printf $fh qq({"name":"s%05d","revision":1,"instance":{"id":"i","address":"127.0.0.1:%d"}}\n),
        $i, $port[$i % 4];
}
printf $fh qq({"name":"other","revision":1,"instance":{"id":"o","address":"127.0.0.1:%d"}}\n),
    $port[0];
close $fh;

my $vmany = start_nginx(workers => 2, conf => <<'EOF2');
    gateway_registry zone=vmany:64m state_file=%%TESTDIR%%/vmany.state;

    upstream byname {
        gateway_service $svc;
        gateway_health_check uri=/health interval=5s timeout=1s;
    }

    upstream other {
        gateway_service other;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /metrics {
            gateway_metrics max_instances=20000;
        }

        location ~ ^/by/(?<svc>s[0-9]+) {
            proxy_pass http://byname;
        }

        location /other {
            proxy_pass http://other;
        }
    }
EOF2

my $healthy = sub {
    my $page = $vmany->get('/metrics')->{body} // '';
    my @n = $page =~ /^gateway_instance_health\{service="s\d+",instance="i",health="healthy"\} 1$/mg;
    return scalar @n;
};
is($healthy->(), 0, 'no request yet: none of the 10,000 services is probed');
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(10));
my $attached = 0;
for my $i (1 .. $N) {
    $attached++ if $http->get($vmany->url(sprintf('/by/s%05d', $i)))->{status} == 200;
}
is($attached, $N, "one request to each of the $N services");
$probes_before = probed();
($n, $bad, $p99, $p50) = p99_of($vmany, '/other', 6);
$probed = probed() - $probes_before;
diag(sprintf("unrelated requests while %d services of a variable name are "
             . "probed: %d requests, p50 %.2f ms, p99 %.2f ms; %d probes "
             . "seen meanwhile", $N, $n, $p50, $p99, $probed));
is($bad, 0, 'every unrelated request was answered 200 meanwhile');
cmp_ok($n, '>', 100, 'requests kept flowing');
ok(wait_until(sub { $healthy->() == $N }, timeout => tmo(15), interval => 1),
   "every one of the $N services was probed, and is healthy");

done_testing();
