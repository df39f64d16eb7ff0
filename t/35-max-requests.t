#!/usr/bin/perl
# gateway_max_requests: at most NUMBER requests of a service in flight,
# across all workers (worker_processes 4).  20 requests at once to a
# backend that answers slowly, with a limit of 5: exactly 5 reach it, 15
# get 503 with Retry-After at once and never touch it.  The count goes
# back to zero when the service is idle, also after workers with requests
# in flight were killed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

expect_log_errors(qr/worker process \d+ exited on signal 9/);

my $dir = test_dir();
my $LIMIT = 5;
my $DELAY = tmo(1.5);

# backends that count every connection they accept and answer after a delay
my ($note_accept, $accepted) = accept_counter($dir);

my $slow = start_slow_backend(delay => $DELAY, body => "slow\n", poll => 0.02,
                              on_accept => $note_accept);
my $long = start_slow_backend(delay => tmo(60), body => "slow\n", poll => 0.02,
                              on_accept => $note_accept);

sub accepted { $accepted->() }

# bad directives fail nginx -t, naming the directive
for my $case (
    [ 'gateway_service s; gateway_max_requests 100;', 0 ],
    [ 'gateway_service $host; gateway_max_requests 1;', 0 ],
    [ 'gateway_max_requests 1;', qr/"gateway_max_requests" directive must follow "gateway_service"/ ],
    [ 'gateway_service s; gateway_max_requests 1; gateway_max_requests 2;',
      qr/"gateway_max_requests" directive is duplicate/ ],
    [ 'gateway_service s; gateway_max_requests 1 2;',
      qr/invalid number of arguments in "gateway_max_requests"/ ],
    map({ [ "gateway_service s; gateway_max_requests $_;",
            qr/invalid number "\Q$_\E" in "gateway_max_requests"/ ] }
        '0', '-1', 'ten', '1k', '99999999999'),
) {
    my ($ups, $want) = @$case;
    my ($code, $out) = nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u { $ups }
    server { listen 127.0.0.1:%%PORT%%; location / { proxy_pass http://u; } }
EOF
    if (!$want) {
        is($code, 0, "nginx -t accepts: $ups") or diag($out);
        next;
    }
    isnt($code, 0, "nginx -t refuses: $ups");
    like($out, qr/\[emerg\].*$want/, '... naming the directive');
}

my $ng = start_nginx(workers => 4, conf => <<"EOF");
    gateway_registry zone=gw:1m;

    upstream limited {
        gateway_service slow;
        gateway_max_requests $LIMIT;
    }

    upstream free {
        gateway_service slow;
    }

    upstream long {
        gateway_service long;
        gateway_max_requests 3;
    }

    # reuseport: the kernel spreads the burst's connections over the
    # workers, so the limit is shown to hold across them
    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location /limited {
            proxy_pass http://limited;
            add_header X-Pid \$pid always;
        }

        location /free {
            proxy_pass http://free;
        }

        location /long {
            proxy_pass http://long;
            add_header X-Pid \$pid always;
        }
    }
EOF

is($ng->request('PUT', '/gateway/services/slow/instances/a',
                json => { address => "127.0.0.1:$slow" })->{status}, 201,
   'a slow instance');
is($ng->request('PUT', '/gateway/services/long/instances/a',
                json => { address => "127.0.0.1:$long" })->{status}, 201,
   'an instance that never answers in time');

# n requests sent at once, each on its own connection; the answers come as
# [status, headers text, seconds after the send]
sub burst {
    my ($path, $n, $wait) = @_;
    my (@socks, %res, %buf);
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp') or die "connect: $!";
        push @socks, $s;
    }
    my $t0 = time;
    syswrite($_, "GET $path HTTP/1.0\r\nHost: x\r\n\r\n") for @socks;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + ($wait // tmo(20));
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.05)) {
            my $r = sysread($s, $buf{$s}, 4096, length($buf{$s} // ''));
            next if $r;
            $sel->remove($s);
            my ($st) = ($buf{$s} // '') =~ m{^HTTP/1\.\d (\d{3})};
            $res{$s} = [$st // 0, $buf{$s} // '', time - $t0];
        }
    }
    return ([values %res], \@socks);
}

sub service {
    my ($name) = @_;
    return json_decode($ng->get("/gateway/services/$name")->{body});
}

my ($res) = burst('/limited', 20);
my @ok = grep { $_->[0] == 200 } @$res;
my @busy = grep { $_->[0] == 503 } @$res;
is(scalar(@$res), 20, 'all 20 requests were answered');
is(scalar(@ok), $LIMIT, "exactly $LIMIT got through (limit $LIMIT)");
is(scalar(@busy), 20 - $LIMIT, 'the other ' . (20 - $LIMIT) . ' got 503');
is(scalar(grep { $_->[1] =~ /\r\nRetry-After: 1\r\n/i } @busy), scalar(@busy),
   'every 503 has Retry-After');
my ($first_ok) = sort { $a <=> $b } map { $_->[2] } @ok;
is(scalar(grep { $_->[2] < $first_ok } @busy), scalar(@busy),
   'the 503s came at once: before any answer of the backend');
my %pids = map { ($_->[1] =~ /\r\nX-Pid: (\d+)/i)[0] // 0 => 1 } @$res;
cmp_ok(scalar(keys %pids), '>=', 2, 'served by ' . scalar(keys %pids) . ' workers');
is(accepted(), $LIMIT, 'the backend saw only the requests that got through');

my $svc = service('slow');
is($svc->{limit}{in_flight}, 0, 'admin API: back to 0 in flight when idle');
is($svc->{limit}{rejected}, 20 - $LIMIT, 'admin API: the rejections are counted');
ok($ng->wait_log(qr/\[warn\].*gateway: service "slow" is at its limit of $LIMIT requests in flight: rejected with 503/),
   'a rejection is logged');
my $lines = () = $ng->error_log =~ /is at its limit of/g;
cmp_ok($lines, '<=', 4, "logged at most once a second per worker ($lines lines)");

($res) = burst('/limited', 8);
is(scalar(grep { $_->[0] == 200 } @$res), $LIMIT, "idle again: the next burst gets $LIMIT through");

($res) = burst('/free', 8);
is(scalar(grep { $_->[0] == 200 } @$res), 8, 'an upstream without the limit is not limited');

# a worker killed with requests in flight gives its places back
my ($pending, $socks) = burst('/long', 3, 1);
ok(wait_until(sub { (service('long')->{limit} // {})->{in_flight} == 3 },
              timeout => tmo(5)), '3 requests in flight on "long"');
($res) = burst('/long', 2, tmo(5));
is(scalar(grep { $_->[0] == 503 } @$res), 2, 'a fourth and fifth get 503');
is(scalar($ng->worker_pids), 4, '4 workers');
ok($ng->kill_workers, 'the killed workers are replaced');
close $_ for @$socks;
ok(wait_until(sub { (service('long')->{limit} // {})->{in_flight} == 0 },
              timeout => tmo(5)), 'the dead workers\' places are given back: 0 in flight');
($pending, $socks) = burst('/long', 3, 1);
is(scalar(@$pending), 0, 'and 3 new requests get through (none rejected)');
ok(wait_until(sub { (service('long')->{limit} // {})->{in_flight} == 3 },
              timeout => tmo(5)), '... and are in flight');
close $_ for @$socks;
ok(wait_until(sub { (service('long')->{limit} // {})->{in_flight} == 0 },
              timeout => tmo(5)), 'clients that go away give their places back');

done_testing();
