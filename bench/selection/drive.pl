#!/usr/bin/perl
# The selection microbenchmark's client: one keepalive connection to each
# of WORKERS distinct nginx workers (found by probing: a response names its
# worker's pid), then the long request PATH?n=N on all of them at once;
# prints each worker's answer line.  PATH may be a comma-separated list:
# the i-th worker gets the i-th path (round robin over the list).  PORT
# may be one too: WORKERS / (number of ports) workers are found on each
# (separate nginx instances, sent their requests at once as well).  With
# ONLY, all WORKERS are found but only the ONLY-th of them (counted from 0
# in the order of the ports, then of the pids) gets the long request: one
# process selects while the others of the same nginx stay idle.  N may
# be a window, "Dms": every worker then selects from one moment T, 20 ms
# after the requests are sent, until T + D ms (at=T&ms=D).
#
#   perl bench/selection/drive.pl PORT[,PORT...] WORKERS PATH[,PATH...] N
#                                 [EXTRA_ARGS] [ONLY]

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);

my ($port, $workers, $path, $n, $extra, $only) = @ARGV;
die "usage: drive.pl PORT[,PORT...] WORKERS PATH[,PATH...] N [EXTRA_ARGS]"
    . " [ONLY]\n"
    unless $port && $workers && $path && $n;
die "drive.pl: ONLY $only of $workers workers\n"
    if defined $only && $only ne '' && ($only !~ /^\d+$/ || $only >= $workers);
my @paths = split /,/, $path;
my @ports = split /,/, $port;
die "drive.pl: $workers workers on " . @ports . " ports\n" if $workers % @ports;
$extra = defined $extra && $extra ne '' ? "&$extra" : '';

sub request {
    my ($s, $q) = @_;
    print $s "GET $q HTTP/1.1\r\nHost: selbench\r\n\r\n";
}

sub response {     # the body of one response on a keepalive connection
    my $s = shift;
    my ($head, $line) = ('', '');
    while (defined($line = <$s>)) {
        last if $line eq "\r\n";
        $head .= $line;
    }
    die "drive.pl: connection closed\n" unless defined $line;
    die "drive.pl: not 200: " . (split /\r\n/, $head)[0] . "\n"
        unless $head =~ m{^HTTP/1\.1 200 };
    my ($len) = $head =~ /^Content-Length: (\d+)/mi;
    die "drive.pl: no Content-Length\n" unless defined $len;
    my $body = '';
    while (length $body < $len) {
        my $r = read($s, $body, $len - length $body, length $body);
        die "drive.pl: short body\n" unless $r;
    }
    return $body;
}

my (%by_pid, @order, @extra_conns);
my $per_port = $workers / @ports;
for my $p (@ports) {
    my ($found, @pids) = (0);
    for my $try (1 .. 200) {
        last if $found == $per_port;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                      Proto => 'tcp')
            or die "drive.pl: connect: $!\n";
        $s->autoflush(1);
        request($s, "$paths[0]?n=1");
        my ($pid) = response($s) =~ /\bpid=(\d+)/;
        die "drive.pl: no pid in the answer\n" unless $pid;
        if ($by_pid{$pid}) { push @extra_conns, $s }
        else { $by_pid{$pid} = $s; push @pids, $pid; $found++ }
    }
    push @order, sort { $a <=> $b } @pids;
}
die "drive.pl: found " . (keys %by_pid) . " of $workers workers\n"
    unless keys %by_pid == $workers;
close $_ for @extra_conns;

my $what = "n=$n";
if ($n =~ /^(\d+)ms$/) {
    my $at = int((clock_gettime(CLOCK_MONOTONIC) + 0.020) * 1e9);
    $what = "at=$at&ms=$1";
}

my @conns = map { $by_pid{$_} } @order;
if (defined $only && $only ne '') {
    close $_ for grep { $_ != $conns[$only] } @conns;
    @conns = ($conns[$only]);
}
for my $i (0 .. $#conns) {                      # all at once
    request($conns[$i], "$paths[$i % @paths]?$what$extra");
}
print response($_) for @conns;
close $_ for @conns;
