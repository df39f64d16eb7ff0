#!/usr/bin/perl
# gateway_slow_start: a newly registered or recovered instance (up again,
# healthy again, back from ejection) ramps its
# effective weight from nothing to all of it over TIME, under round robin
# (a ramping instance's tickets are taken in part) and weighted random
# (its weight in the draw); two workers share one ramp.  Bad values fail
# `nginx -t` naming the directive.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GatewayTest;

# --- the directive ----------------------------------------------------------

sub conf_with {
    my ($ups) = @_;
    return <<"EOF";
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

for my $bad (['abc', 'not a time'], ['-5s', 'negative'],
             ['1s 2s', 'two values'])
{
    my ($code, $out) = nginx_test_config(conf => conf_with(
        "        gateway_service users;\n"
        . "        gateway_slow_start $bad->[0];"));
    isnt($code, 0, "gateway_slow_start $bad->[1]: nginx -t fails");
    like($out, qr/\[emerg\].*gateway_slow_start/,
         "gateway_slow_start $bad->[1]: the error names the directive")
        or diag($out);
}

{
    my ($code, $out) = nginx_test_config(conf => conf_with(
        "        gateway_slow_start 10s;\n"
        . "        gateway_service users;"));
    isnt($code, 0, 'gateway_slow_start before gateway_service fails');
    like($out, qr/\[emerg\] "gateway_slow_start" directive must follow "gateway_service"/,
         'and says why') or diag($out);

    ($code, $out) = nginx_test_config(conf => conf_with(
        "        gateway_service users;\n"
        . "        gateway_balance random;\n"
        . "        gateway_slow_start 30s;"));
    is($code, 0, 'gateway_slow_start after gateway_balance passes')
        or diag($out);
}

# --- the ramp ---------------------------------------------------------------

my $T = tmo(3);     # the ramp, seconds

my $ng = start_nginx(workers => 2, conf => <<"EOF");
    gateway_registry zone=gw:1m;

    upstream rr {
        gateway_service users;
        gateway_slow_start ${T}s;
    }

    upstream rnd {
        gateway_service users;
        gateway_balance random;
        gateway_slow_start ${T}s;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /rr {
            proxy_pass http://rr;
        }

        location /rnd {
            proxy_pass http://rnd;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        location / {
            return 200 "\$server_port";
        }
    }
EOF

my @port = map { $ng->port("PORT$_") } 2 .. 3;

sub register {
    my ($id, $port) = @_;
    return $ng->request('PUT', "/gateway/services/users/instances/$id",
                        json => { address => "127.0.0.1:$port" })->{status};
}

sub set_state {
    my ($id, $state) = @_;
    return $ng->request('PATCH', "/gateway/services/users/instances/$id",
                        json => { state => $state })->{status};
}

# N requests to PATH (of NGINX, by default the first): the new
# instance's picks (it answers with PORT, by default $port[1]), and how far
# into its ramp the last one was (0..1)
sub burst {
    my ($path, $n, $since, $nginx, $new_port) = @_;
    my $new = 0;
    for (1 .. $n) {
        my ($st, $h, $body) = ($nginx // $ng)->get($path);
        die "status $st" unless $st == 200;
        $new++ if $body eq ($new_port // $port[1]);
    }
    my $at = (time - $since) / $T;
    return ($new, $at > 1 ? 1 : $at);
}

# the new instance's expected share at ramp fraction e against one full
# instance of the same weight: e / (1 + e); the bound allows for noise
sub most { my ($n, $e) = @_; return $n * $e / (1 + $e) + 0.1 * $n }

is(register('a', $port[0]), 201, 'a registered');

# let a's own ramp end: until then a and b would ramp together
sleep($T + 0.2);

for my $m (['rr', 'round robin'], ['rnd', 'random']) {
    my ($path, $name) = @$m;
    my ($new, $at);

    # the ramp starts between $since and $done: a bound on b's picks from
    # above counts from $since, one from below (and the ramp's end) from
    # $done, so that a slow registration cannot fail either
    my $since = time;
    is(register('b', $port[1]), 201, "$name: b registered");
    my $done = time;

    ($new, $at) = burst("/$path", 100, $since);
    cmp_ok($new, '<=', most(100, $at),
           "$name: b gets few of the first 100 requests "
           . sprintf('(%d, ramp at %.0f%%)', $new, 100 * $at));
    cmp_ok($new, '<', 50, "$name: fewer than its full share of 50");

    # half way: a share between what the ramp gave at the start and at
    # the end of the burst
    sleep($T / 2 - (time - $since)) if time - $since < $T / 2;

    my $from = (time - $done) / $T;
    ($new, $at) = burst("/$path", 200, $since);
    cmp_ok($new, '>=', 200 * $from / (1 + $from) - 0.1 * 200,
           "$name: half way b gets more ($new of 200, ramp at "
           . sprintf('%.0f..%.0f%%)', 100 * $from, 100 * $at));
    cmp_ok($new, '<=', most(200, $at), "$name: and not yet its full share");

    # after the ramp: the full, even share
    sleep($T - (time - $done) + 0.2) if time - $done < $T + 0.2;

    ($new) = burst("/$path", 200, $since);
    if ($path eq 'rr') {
        is($new, 100, "$name: after the ramp b gets exactly 100 of 200");
    } else {
        cmp_ok(abs($new - 100), '<=', 40,
               "$name: after the ramp b gets about half ($new of 200)");
    }

    is($ng->request('DELETE', '/gateway/services/users/instances/b')
       ->{status}, 200, "$name: b deregistered");
}

# recovery: down, then up again, ramps again
is(register('b', $port[1]), 201, 'b registered again');
sleep($T + 0.2);

my ($new) = burst('/rr', 100, time - $T);
is($new, 50, 'ramped: b gets exactly 50 of 100');

is(set_state('b', 'down'), 200, 'b down');
($new) = burst('/rr', 20, time);
is($new, 0, 'down: b gets nothing');

my $since = time;
is(set_state('b', 'up'), 200, 'b up again');
my $at;
($new, $at) = burst('/rr', 100, $since);
cmp_ok($new, '<=', most(100, $at),
       'recovered: b ramps again '
       . sprintf('(%d of 100, ramp at %.0f%%)', $new, 100 * $at));

# draining and back is a recovery too
sleep($T + 0.2);
is(set_state('b', 'drain'), 200, 'b draining');
$since = time;
is(set_state('b', 'up'), 200, 'b up from draining');
($new, $at) = burst('/rnd', 100, $since);
cmp_ok($new, '<=', most(100, $at),
       'up from draining: b ramps again '
       . sprintf('(%d of 100, ramp at %.0f%%)', $new, 100 * $at));

# a fixed service name: each worker remembers where it found the service;
# a service deleted (its last instance gone) and registered again is found
# anew, in both workers
for my $id ('a', 'b') {
    is($ng->request('DELETE', "/gateway/services/users/instances/$id")
       ->{status}, 200, "$id deregistered: the service is gone");
}
my %st;
$st{ ($ng->get('/rr'))[0] }++ for 1 .. 10;
is_deeply(\%st, { 503 => 10 }, 'no service: 503 from both workers');

# the freed service's memory likely goes to the next service registered
sleep(0.3);
is($ng->request('PUT', '/gateway/services/other/instances/o',
                json => { address => "127.0.0.1:$port[0]" })->{status},
   201, 'another service registered');
is(register('c', $port[1]), 201, 'the service registered again');
sleep($T + 0.2);
my %by;
$by{ ($ng->get('/rr'))[2] }++ for 1 .. 10;
is_deeply(\%by, { $port[1] => 10 },
          'both workers route to its instance, not the other service\'s');

# --- a recovery by a health check or from ejection ramps too ------------------

my $dir = test_dir();
my $ng2 = start_nginx(workers => 2, conf => <<"EOF");
    gateway_registry zone=gw2:1m;

    upstream hc {
        gateway_service checked;
        gateway_health_check uri=/health interval=100ms fails=1 passes=1;
        gateway_slow_start ${T}s;
    }

    upstream ej {
        gateway_service ejected;
        gateway_eject failures=2 time=1s statuses=502;
        gateway_slow_start ${T}s;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /hc {
            proxy_pass http://hc;
        }

        location /ej {
            proxy_pass http://ej;
            proxy_next_upstream error timeout http_502;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;

        location /health {
            if (-f %%TESTDIR%%/sick_\$server_port) {
                return 503;
            }
            return 200;
        }

        location / {
            if (-f %%TESTDIR%%/bad_\$server_port) {
                return 502;
            }
            return 200 "\$server_port";
        }
    }
EOF

my @bport = map { $ng2->port("PORT$_") } 2 .. 3;

sub b_instance {
    my ($svc) = @_;
    my $r = $ng2->get("/gateway/services/$svc");
    my $j = json_decode($r->{content}) || {};
    my ($i) = grep { $_->{id} eq 'b' } @{ $j->{instances} || [] };
    return $i || {};
}

sub flag {
    my ($name, $on) = @_;
    my $f = "$dir/${name}_$bport[1]";
    if ($on) { open(my $fh, '>', $f) or die "$f: $!"; close $fh }
    else { unlink $f }
}

# b's picks of the second nginx
sub burst2 {
    my ($path, $n, $since) = @_;
    return burst($path, $n, $since, $ng2, $bport[1]);
}

for my $svc ('checked', 'ejected') {
    for my $m (['a', $bport[0]], ['b', $bport[1]]) {
        is($ng2->request('PUT', "/gateway/services/$svc/instances/$m->[0]",
                         json => { address => "127.0.0.1:$m->[1]" })
           ->{status}, 201, "$svc: $m->[0] registered");
    }
}
sleep($T + 0.2);

my ($n2) = burst2('/hc', 100, time - $T);
is($n2, 50, 'health checked, ramped: b gets exactly 50 of 100');

flag('sick', 1);
ok(wait_until(sub { (b_instance('checked')->{health} || {})->{status}
                    eq 'unhealthy' }),
   'b fails its health check');
($n2) = burst2('/hc', 20, time);
is($n2, 0, 'unhealthy: b gets nothing');

flag('sick', 0);
# its ramp starts when the probe passed: after the look before the one
# that saw it healthy
my ($since2, $look) = (time, time);
ok(wait_until(sub { ($since2, $look) = ($look, time);
                    (b_instance('checked')->{health} || {})->{status}
                    eq 'healthy' }, interval => 0.01),
   'b passes its health check again');
my $at2;
($n2, $at2) = burst2('/hc', 100, $since2);
cmp_ok($n2, '<=', most(100, $at2),
       'healthy again: b ramps again '
       . sprintf('(%d of 100, ramp at %.0f%%)', $n2, 100 * $at2));

($n2) = burst2('/ej', 100, time - $T);
is($n2, 50, 'ejection on, ramped: b gets exactly 50 of 100');

flag('bad', 1);
burst2('/ej', 10, time);
is((b_instance('ejected')->{ejection} || {})->{state}, 'out', 'b is ejected');
flag('bad', 0);

# its trial, a request after its time, brings it back; its ramp starts
# then: after the look before the one that saw it in
($since2, $look) = (time, time);
ok(wait_until(sub {
        ($since2, $look) = ($look, time);
        $ng2->get('/ej');
        (b_instance('ejected')->{ejection} || {})->{state} eq 'in'
    }, timeout => 5, interval => 0.01),
   'b returns after a trial');
($n2, $at2) = burst2('/ej', 100, $since2);
cmp_ok($n2, '<=', most(100, $at2),
       'back from ejection: b ramps again '
       . sprintf('(%d of 100, ramp at %.0f%%)', $n2, 100 * $at2));

done_testing();
