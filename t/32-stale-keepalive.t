#!/usr/bin/perl
# A stale keepalive connection is not an instance failure.
#
# The backend answers the first request of each connection and keeps it
# open, then closes it when a second request arrives on it: what a server
# that closed an idle connection looks like to the proxy that reuses it.
# nginx gives the request one more try on a fresh connection; the instance
# did not fail, so its "fails" stays 0 while every request succeeds.  A
# POST on such a connection is not retried (it is not idempotent), and
# the connection is still not the instance's fault.  A refused connect is a
# failure, and so is a reused connection that times out (another instance
# stops answering on reused connections): "fails" counts them.  No path
# leaves a reference behind: "active" is back to 0 after each case.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time);

# answers one request per connection; at the second it closes the
# connection, or with $hang leaves the request unanswered
sub one_shot_backend {
    my ($hang) = @_;
    return start_backend(sub { serve_once($_[0], $hang) });
}

sub serve_once {
    my ($ls, $hang) = @_;
    my $sel = IO::Select->new($ls);
    my (%buf, %served);
    while (1) {
        for my $s ($sel->can_read(1)) {
            if ($s == $ls) {
                my $c = $ls->accept or next;
                $sel->add($c);
                $buf{$c} = '';
                $served{$c} = 0;
                next;
            }
            my $n = sysread($s, $buf{$s}, 65536, length $buf{$s});
            my $done = !$n;
            while (!$done && $buf{$s} =~ /^(.*?)\r\n\r\n/s) {
                my $head = $1;
                my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
                my $need = length($head) + 4 + ($len // 0);
                last if length($buf{$s}) < $need;
                substr($buf{$s}, 0, $need, '');
                if ($served{$s}++) {
                    $done = !$hang;
                    last;
                }
                syswrite($s, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                             . "\r\nok\n");
            }
            next unless $done;
            $sel->remove($s);
            delete $buf{$s};
            delete $served{$s};
            close $s;
        }
    }
}

# answers every request with a status line and an invalid header
sub bad_header_backend {
    return start_backend(sub {
        my ($ls) = @_;
        while (my $c = $ls->accept) {
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                sysread($c, $req, 65536, length $req) or last;
            }
            syswrite($c, "HTTP/1.1 200 OK\r\nX\0Y: 1\r\n\r\n");
            close $c;
        }
    });
}

my $backend = one_shot_backend();
my $hanging = one_shot_backend(1);
my $dead = free_port();
my $read_timeout = valgrind_mode() ? 3 : 1;

my $ng = start_nginx(workers => 1, vars => { RT => "${read_timeout}s" },
                     conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream gw {
        gateway_service $gw_service;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[a-z]+) {
            proxy_pass http://gw;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_read_timeout %%RT%%;
        }
    }
EOF

sub register {
    my ($svc, $addr, $id) = @_;
    $id //= 'i1';
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => $addr });
    return $r->{status};
}

sub instance {
    my ($svc, $id) = @_;
    $id //= 'i1';
    my $j = json_decode($ng->get("/gateway/services/$svc")->{content}) || {};
    my ($i) = grep { $_->{id} eq $id } @{ $j->{instances} || [] };
    return $i || {};
}

sub log_count {
    my ($re, $from) = @_;
    my $text = substr($ng->error_log, $from);
    my $n = () = $text =~ /$re/g;
    return $n;
}

sub stale_closes { log_count(qr/upstream prematurely closed connection/, @_) }

is(register('stale', "127.0.0.1:$backend"), 201, 'register the backend');
is(register('refused', "127.0.0.1:$dead"), 201,
   'register an instance nobody listens on');

# GET: every reused connection is stale, nginx retries on a fresh one
my $from = $ng->log_size;
my $ok = 0;
for (1 .. 10) {
    my $r = $ng->get('/svc/stale/x');
    $ok++ if $r->{status} == 200 && $r->{content} eq "ok\n";
}
is($ok, 10, 'every request through stale keepalive connections succeeds');
cmp_ok(stale_closes($from), '>=', 5,
       'nginx did reuse connections the backend had closed');
my $i = instance('stale');
is($i->{fails}, 0, 'a stale keepalive connection is not counted as a failure');
is($i->{active}, 0, 'no reference is left behind');
cmp_ok($i->{requests}, '>', 10, 'the retried attempts are counted as requests');

# POST: the request is not retried on a fresh connection
my $r = $ng->get('/svc/stale/x');
is($r->{status}, 200, 'a GET leaves a cached connection');
$from = $ng->log_size;
$r = $ng->request('POST', '/svc/stale/x', body => 'payload');
is($r->{status}, 502, 'a POST on a stale connection is not retried: 502');
is(stale_closes($from), 1, 'it went to the closed connection');
$i = instance('stale');
is($i->{fails}, 0, 'nor is that stale connection counted as a failure');
is($i->{active}, 0, 'and its reference is released at the request\'s end');

# a refused connect is a failure of the instance
$r = $ng->get('/svc/refused/x');
is($r->{status}, 502, 'a refused connect: 502');
$i = instance('refused');
is($i->{fails}, 1, 'a refused connect counts 1 failure');
is($i->{active}, 0, 'and releases its reference');

$r = $ng->get('/svc/refused/x');
is(instance('refused')->{fails}, 2, 'each refused connect counts');
is_deeply(instance('refused')->{failures},
          { connect => 2, timeout => 0, status => 0, other => 0 },
          'refused connects are failures by cause "connect"');

is(instance('stale')->{fails}, 0, 'the stale backend still has no failure');

# an invalid header after a status line: a failure, but not by its status
my $badhdr = bad_header_backend();
is(register('badhdr', "127.0.0.1:$badhdr"), 201, 'register a backend with a bad header');
$r = $ng->get('/svc/badhdr/x');
is($r->{status}, 502, 'an invalid header: 502');
is_deeply(instance('badhdr')->{failures},
          { connect => 0, timeout => 0, status => 0, other => 1 },
          'an invalid header is a failure by cause "other"');

# a cached connection that times out is a failure: with a retry (the next
# get) and without one (the request's end)
is(register('slow', "127.0.0.1:$hanging", 'h'), 201,
   'register an instance that stops answering on reused connections');
is(register('slow', "127.0.0.1:$backend", 'b'), 201, 'and the backend');
$from = $ng->log_size;
$ok = 0;
for (1 .. 6) {
    my $r = $ng->get('/svc/slow/x', timeout => tmo(10));
    $ok++ if $r->{status} == 200;
}
is($ok, 6, 'every request succeeds, on the other instance if need be');
my $timeouts = log_count(qr/upstream timed out/, $from);
cmp_ok($timeouts, '>=', 1, 'some went to a reused connection that hung');
is(instance('slow', 'h')->{fails}, $timeouts,
   'each time-out on a cached connection counts 1 failure');
is(instance('slow', 'h')->{failures}{timeout}, $timeouts,
   'by cause "timeout"');
is(instance('slow', 'b')->{fails}, 0, 'the stale connections do not');
is(instance('slow', 'h')->{active} + instance('slow', 'b')->{active}, 0,
   'no reference is left behind');

# alone, it answers on a new connection and times out on a reused one
# (whichever comes first), with no retry left
$r = $ng->request('DELETE', '/gateway/services/slow/instances/b');
is($r->{status}, 200, 'delete the backend');
$from = $ng->log_size;
my $fails = instance('slow', 'h')->{fails};
my @st = sort map { $ng->get('/svc/slow/x', timeout => tmo(10))->{status} }
                  1 .. 2;
is("@st", '200 504', 'a new connection answers, a reused one times out: 504');
is(log_count(qr/upstream timed out/, $from), 1, 'one time-out');
is(instance('slow', 'h')->{fails}, $fails + 1,
   'counted as a failure at the request\'s end');
is(instance('slow', 'h')->{active}, 0, 'and released');

done_testing();
