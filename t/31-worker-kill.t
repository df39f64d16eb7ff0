#!/usr/bin/perl
# A worker that dies with requests in flight leaves no reference behind.
#
# Requests to a backend that answers slowly are in flight in the gateway's
# workers; the workers are SIGKILLed.  After the master respawns them,
# every instance's "active" is back to 0 (the replacement, or the lease
# holder, reclaims what the dead worker held) and once the instances are
# deleted the zone holds no instance ("allocated" equals the listed count).
# The same for old workers killed while they finish their requests after a
# reload: nobody replaces them, the worker that keeps the registry reclaims
# their references on its own.  A worker stopped with SIGTERM (fast
# shutdown, its requests are not finished) gives them back as it exits.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

expect_log_errors(qr/worker process \d+ exited on signal 9/);

my $INFLIGHT = 6;

# --- a backend that reads a request and answers only after a long time -----

my $backend = start_slow_backend(delay => tmo(60), body => "slow\n",
                                 poll => 0.05);

my $conf = <<'EOF';
    gateway_registry zone=gw:1m;

    upstream gw {
        gateway_service slow;
    }

    # reuseport: the kernel spreads the connections over the workers
    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location = /pid {
            return 200 $pid;
        }

        location /svc/ {
            proxy_pass http://gw;
            proxy_read_timeout 300s;
        }
    }
EOF

# --- helpers ---------------------------------------------------------------

sub instances {
    my ($ng) = @_;
    my $r = $ng->get('/gateway/services/slow');
    return undef unless $r->{status} == 200;
    my $j = json_decode($r->{content}) or return undef;
    return $j->{instances};
}

sub active {
    my ($ng) = @_;
    my $inst = instances($ng) or return -1;
    my $n = 0;
    $n += $_->{active} for @$inst;
    return $n;
}

# the body of one answer on a kept connection (undef on an error)
sub answer {
    my ($s) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $deadline = time + tmo(5);
    while (time < $deadline && $sel->can_read($deadline - time)) {
        sysread($s, $buf, 4096, length $buf) or return undef;
        my ($head, $body) = split /\r\n\r\n/, $buf, 2;
        next unless defined $body;
        my ($len) = $head =~ /\r\nContent-Length: *(\d+)/i;
        return $body if defined $len && length $body >= $len;
    }
    return undef;
}

# $n requests sent on their own connections, left waiting for the answer,
# as many in each worker: the master's workers must each hold some (an
# old worker without requests would exit at a reload at once).  Each
# connection asks first which worker accepted it; one of a worker that
# has its share already is closed.
sub in_flight {
    my ($ng, $n) = @_;
    my @w = $ng->worker_pids;
    my $share = $n / @w;
    my (@c, %on);
    my $deadline = time + tmo(10);
    while (@c < $n) {
        die "in_flight: the connections did not spread over the workers"
            . " in time: " . join(' ', %on) . "\n" if time > $deadline;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp', Timeout => tmo(5))
            or die "connect to nginx: $!\n";
        syswrite($s, "GET /pid HTTP/1.1\r\nHost: gw\r\n\r\n");
        my $pid = answer($s) // die "GET /pid: no answer\n";
        if (($on{$pid} // 0) >= $share) {
            close $s;
            next;
        }
        $on{$pid}++;
        syswrite($s, "GET /svc/x HTTP/1.1\r\nHost: gw\r\n\r\n");
        push @c, $s;
    }
    return @c;
}

# the references reclaimed from dead processes, by their pid, after $from
sub reclaimed {
    my ($ng, $from) = @_;
    my $text = substr($ng->error_log, $from);
    my %r;
    my $re = qr/gateway: reclaimed (\d+) instance references of dead/
             . qr/ process (\d+)/;
    while ($text =~ /$re/g) {
        $r{$2} += $1;
    }
    return \%r;
}

sub sum { my $n = 0; $n += $_ for values %{ $_[0] }; return $n }

sub register_all {
    my ($ng, $tag) = @_;
    for my $id (qw(s1 s2)) {
        my $r = $ng->request('PUT', "/gateway/services/slow/instances/$id",
                             json => { address => "127.0.0.1:$backend" });
        ok($r->{status} == 201 || $r->{status} == 200, "$tag register $id");
    }
}

sub delete_all_and_check {
    my ($ng, $tag) = @_;
    for my $id (qw(s1 s2)) {
        my $r = $ng->request('DELETE', "/gateway/services/slow/instances/$id");
        is($r->{status}, 200, "$tag delete $id");
    }
    my $all = json_decode($ng->get('/gateway/services')->{content}) || {};
    my $listed = 0;
    $listed += $_->{instances} for @{ $all->{services} || [] };
    is($listed, 0, "$tag no instance is listed");
    ok(exists $all->{allocated}, "$tag the summary reports \"allocated\"");
    is($all->{allocated}, $listed,
       "$tag the deleted instances are freed: allocated is the listed count");
}

# --- killed workers are replaced -------------------------------------------

for my $workers (1, 2) {
    my $tag = "[$workers worker" . ($workers > 1 ? 's' : '') . ']';
    my $ng = start_nginx(conf => $conf, workers => $workers);

    register_all($ng, $tag);

    my @conns = in_flight($ng, $INFLIGHT);
    ok(wait_until(sub { active($ng) == $INFLIGHT }, timeout => 5),
       "$tag $INFLIGHT requests are in flight")
        or diag("active: " . active($ng));

    my @old = $ng->worker_pids;
    is(scalar(@old), $workers, "$tag $workers worker processes");
    my $from = $ng->log_size;
    my %old = map { $_ => 1 } @old;
    ok($ng->kill_workers, "$tag the master respawned the killed workers");

    ok(wait_until(sub { active($ng) == 0 }, timeout => 5),
       "$tag every instance is back to active 0")
        or diag("active: " . active($ng));

    my $r;
    wait_until(sub { $r = reclaimed($ng, $from); sum($r) >= $INFLIGHT },
               timeout => 3);
    is(sum($r), $INFLIGHT,
       "$tag the log tells the references reclaimed, $INFLIGHT in all");
    ok(!grep({ !$old{$_} } keys %$r),
       "$tag only from the killed processes");

    close $_ for @conns;

    # the registry still routes (a request is counted and released)
    my $inst = instances($ng) || [];
    is(scalar(@$inst), 2, "$tag both instances are still registered");

    delete_all_and_check($ng, $tag);
    $ng->stop;
}

# --- old workers killed after a reload: nobody replaces them ---------------

{
    my $tag = '[reload]';
    my $ng = start_nginx(conf => $conf, workers => 2);
    register_all($ng, $tag);

    my @conns = in_flight($ng, $INFLIGHT);
    ok(wait_until(sub { active($ng) == $INFLIGHT }, timeout => 5),
       "$tag $INFLIGHT requests are in flight");

    my @old = $ng->worker_pids;
    my %old = map { $_ => 1 } @old;
    ok($ng->reload, "$tag reload");
    ok(wait_until(sub { scalar(grep { !$old{$_} } $ng->worker_pids) == 2 },
                  timeout => 5), "$tag the new workers run");
    is(scalar(grep { $old{$_} } $ng->worker_pids), 2,
       "$tag the old workers still finish their requests");
    is(active($ng), $INFLIGHT, "$tag their requests are still active");

    my $from = $ng->log_size;
    ok($ng->kill_workers(pids => \@old, replaced => 0, timeout => 5),
       "$tag the old workers are gone");
    is(scalar($ng->worker_pids), 2, "$tag and not replaced");

    ok(wait_until(sub { active($ng) == 0 }, timeout => 5),
       "$tag every instance is back to active 0 without a replacement")
        or diag("active: " . active($ng));
    my $r;
    wait_until(sub { $r = reclaimed($ng, $from); sum($r) >= $INFLIGHT },
               timeout => 3);
    is(sum($r), $INFLIGHT, "$tag the log tells the references reclaimed");

    close $_ for @conns;
    delete_all_and_check($ng, $tag);
    $ng->stop;
}

# --- a worker stopped with SIGTERM gives back what it holds itself ---------

{
    my $tag = '[sigterm]';
    my $ng = start_nginx(conf => $conf, workers => 2);
    register_all($ng, $tag);

    my @conns = in_flight($ng, $INFLIGHT);
    ok(wait_until(sub { active($ng) == $INFLIGHT }, timeout => 5),
       "$tag $INFLIGHT requests are in flight");

    my $from = $ng->log_size;
    my @old = $ng->worker_pids;
    my %old = map { $_ => 1 } @old;
    kill 'TERM', @old;
    ok(wait_until(sub {
        my @now = $ng->worker_pids;
        @now == 2 && !grep { $old{$_} } @now;
    }, timeout => 10), "$tag the master respawned the stopped workers");

    my $released = 0;
    wait_until(sub {
        $released = 0;
        $released += $_ for substr($ng->error_log, $from)
            =~ /gateway: released (\d+) instance references at exit/g;
        $released >= $INFLIGHT;
    }, timeout => 3);
    is($released, $INFLIGHT, "$tag the stopped workers released them");
    is(sum(reclaimed($ng, $from)), 0, "$tag nothing was left to reclaim");
    is(active($ng), 0, "$tag every instance is back to active 0");

    close $_ for @conns;
    delete_all_and_check($ng, $tag);
    $ng->stop;
}

done_testing();
