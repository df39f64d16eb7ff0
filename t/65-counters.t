#!/usr/bin/perl
# The per-instance counters, kept per worker ("active" published once per
# pass of its event loop, the others read from every worker's cells): a
# burst of concurrent requests over two workers is counted exactly, at
# once (requests summed over both, "active" back to 0), and
# least_request sees its own worker's requests of the same pass (a burst
# that one pass handles spreads evenly, instead of all of them seeing the
# same published counts and drawing among ties at random).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);

sub service {
    my ($ng, $name) = @_;
    my $r = $ng->get("/gateway/services/$name");
    return undef unless $r->{status} == 200;
    my $j = json_decode($r->{content}) or return undef;
    return { map { $_->{id} => $_ } @{ $j->{instances} } };
}

sub total {
    my ($inst, $field) = @_;
    my $n = 0;
    $n += $_->{$field} for values %$inst;
    return $n;
}

sub register {
    my ($ng, $svc, $id, $port) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => "127.0.0.1:$port" });
    ok($r->{status} == 201 || $r->{status} == 200, "register $svc/$id");
}

# $n connections, each sends one request; answers: worker pid => count
sub burst {
    my ($ng, $n, $path) = @_;
    my (@c, %by_worker, %buf);
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp', Timeout => tmo(5))
            or die "connect to nginx: $!\n";
        push @c, $s;
    }
    syswrite($_, "GET $path HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        for @c;
    my $sel = IO::Select->new(@c);
    my $deadline = time + tmo(10);
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.1)) {
            my $got = sysread($s, $buf{$s}, 4096, length($buf{$s} // ''));
            next if $got;
            $sel->remove($s);
            my ($pid) = ($buf{$s} // '') =~ /^X-Worker: (\d+)/mi;
            my ($st) = ($buf{$s} // '') =~ m{^HTTP/1\.1 (\d+)};
            $by_worker{ ($st // 0) == 200 ? ($pid // 'none') : 'failed' }++;
            close $s;
        }
    }
    return \%by_worker;
}

# --- two workers: every request counted once, nothing left active ----------

{
    my @ports = map { start_slow_backend(delay => 0, body => "b$_\n") } 1 .. 3;

    my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream gw {
        gateway_service users;
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location = /metrics {
            gateway_metrics;
        }

        location /svc/ {
            add_header X-Worker $pid;
            proxy_pass http://gw;
        }
    }
EOF

    register($ng, 'users', "u$_", $ports[$_ - 1]) for 1 .. 3;

    sub metrics_requests {
        my ($ng) = @_;
        my ($n, $page) = (0, $ng->get('/metrics')->{content} // '');
        $n += $1 while $page
            =~ /^gateway_instance_requests_total\{service="users",[^}]*\} (\d+)$/mg;
        return $n;
    }

    # a request is counted once its attempt ended, in its worker's cell
    # until the worker's tick moves it to the instance: a reader adds the
    # cells, so every burst is counted by the time its last answer came
    my ($rounds, $conns) = (5, 40);
    my (%workers, @seen);
    for my $round (1 .. $rounds) {
        my $b = burst($ng, $conns, '/svc/x');
        $workers{$_} += $b->{$_} for keys %$b;
        my $now = service($ng, 'users');
        push @seen, $now ? total($now, 'requests') : -1,
                    metrics_requests($ng);
    }
    my $sent = $rounds * $conns;
    is_deeply(\@seen, [ map { ($_ * $conns) x 2 } 1 .. $rounds ],
              'each burst counted exactly, read right after its answers '
              . '(admin API, then metrics)');

    ok(!$workers{failed} && !$workers{none},
       "all $sent requests answered 200 by a worker")
        or diag(explain(\%workers));
    is(scalar(keys %workers), 2, 'both workers served requests')
        or diag(explain(\%workers));

    # the last answers' counts are published at the end of their pass
    my $inst;
    ok(wait_until(sub {
           $inst = service($ng, 'users');
           $inst && total($inst, 'requests') >= $sent
               && total($inst, 'active') == 0
       }, timeout => 5),
       'the counters are published')
        or diag(explain($inst));

    is(total($inst, 'requests'), $sent,
       "requests summed over both workers: exactly $sent");
    is(total($inst, 'active'), 0, 'active is back to 0');
    ok(!grep({ $_->{requests} == 0 } values %$inst),
       'every instance got requests');
    is(total($inst, 'retries'), 0, 'no retries counted');
    is(total($inst, 'fails'), 0, 'no failures counted');

    # and stays so: nothing published twice
    sleep 0.3;
    $inst = service($ng, 'users');
    is(total($inst, 'requests'), $sent, 'still exactly the same later');
    is(total($inst, 'active'), 0, 'still no request active');

    $ng->stop;
}

# --- round robin only: "active" is read from every worker's cells at once --

{
    my ($note_accept, $accepted) = accept_counter(test_dir());
    my $slow = start_slow_backend(delay => tmo(5), body => "slow\n",
                                  poll => 0.01, on_accept => $note_accept);

    my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream gw {
        gateway_service slow;
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location /svc/ {
            proxy_pass http://gw;
        }
    }
EOF

    register($ng, 'slow', 'a', $slow);

    # no balancer reads "active": nothing publishes it at each pass, and
    # a tick moves it every 100 ms only; the admin API adds the cells
    my (@socks, @seen);
    for my $i (1 .. 5) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp') or die "connect: $!";
        syswrite($s, "GET /svc/x HTTP/1.0\r\nHost: gw\r\n\r\n");
        push @socks, $s;
        my $until = time + tmo(5);
        sleep 0.002 while $accepted->() < $i && time < $until;
        my $inst = service($ng, 'slow');
        push @seen, $inst ? $inst->{a}{active} : -1;
    }
    is_deeply(\@seen, [ 1 .. 5 ],
              'each attempt is in "active" as soon as its backend accepted it');
    close $_ for @socks;
    ok(wait_until(sub { my $i = service($ng, 'slow'); $i && $i->{a}{active} == 0 },
                  timeout => tmo(5)),
       'and out once its clients went away');

    $ng->stop;
}

# --- least_request: a burst in one pass spreads by the worker's own picks ---

{
    my @ports = map { start_slow_backend(delay => tmo(30), poll => 0.05) }
                1 .. 3;

    my $ng = start_nginx(workers => 1, conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream gw {
        gateway_service slow;
        gateway_balance least_request;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location = /status {
            stub_status;
        }

        location /svc/ {
            proxy_pass http://gw;
            proxy_read_timeout 300s;
        }
    }
EOF

    register($ng, 'slow', "s$_", $ports[$_ - 1]) for 1 .. 3;

    # the connections are accepted first; the worker is stopped while the
    # requests are written, so that one pass of its loop reads them all
    my $n = 30;
    my @c;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp', Timeout => tmo(5))
            or die "connect to nginx: $!\n";
        push @c, $s;
    }
    my ($worker) = $ng->worker_pids;
    my $open;
    ok(wait_until(sub {
           ($open) = ($ng->get('/status')->{content} // '')
                     =~ /Active connections: (\d+)/;
           ($open // 0) == $n + 1
       }, timeout => 5), "the worker accepted the $n connections")
        or diag("active connections: " . ($open // 'none'));

    kill 'STOP', $worker;
    syswrite($_, "GET /svc/x HTTP/1.1\r\nHost: gw\r\n\r\n") for @c;
    sleep 0.2;
    kill 'CONT', $worker;

    my $inst;
    ok(wait_until(sub {
           $inst = service($ng, 'slow');
           $inst && total($inst, 'active') == $n
       }, timeout => 5),
       "$n requests in flight")
        or diag(explain($inst));
    is_deeply([map { $inst->{"s$_"}{active} } 1 .. 3], [10, 10, 10],
              'least_request spread the burst evenly: 10 active each')
        or diag(explain($inst));

    close $_ for @c;
    ok(wait_until(sub {
           $inst = service($ng, 'slow');
           $inst && total($inst, 'active') == 0
       }, timeout => 5),
       'active back to 0 once the clients are gone')
        or diag(explain($inst));

    $ng->stop;
}

done_testing();
