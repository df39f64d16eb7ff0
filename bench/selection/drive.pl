#!/usr/bin/perl
# The selection microbenchmark's client: one keepalive connection to each
# of WORKERS distinct nginx workers (found by probing: a response names its
# worker's pid), then the long request PATH?n=N on all of them at once;
# prints each worker's answer line.  PATH may be a comma-separated list:
# the i-th worker gets the i-th path (round robin over the list).  PORT
# may be one too: WORKERS / (number of ports) workers are found on each
# (separate nginx instances, sent their requests at once as well).
#
#   perl bench/selection/drive.pl PORT[,PORT...] WORKERS PATH[,PATH...] N
#                                 [EXTRA_ARGS]

use strict;
use warnings;
use IO::Socket::INET;

my ($port, $workers, $path, $n, $extra) = @ARGV;
die "usage: drive.pl PORT[,PORT...] WORKERS PATH[,PATH...] N [EXTRA_ARGS]\n"
    unless $port && $workers && $path && $n;
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

my (%by_pid, @extra_conns);
my $per_port = $workers / @ports;
for my $p (@ports) {
    my $found = 0;
    for my $try (1 .. 200) {
        last if $found == $per_port;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                      Proto => 'tcp')
            or die "drive.pl: connect: $!\n";
        $s->autoflush(1);
        request($s, "$paths[0]?n=1");
        my ($pid) = response($s) =~ /\bpid=(\d+)/;
        die "drive.pl: no pid in the answer\n" unless $pid;
        if ($by_pid{$pid}) { push @extra_conns, $s } else { $by_pid{$pid} = $s; $found++ }
    }
}
die "drive.pl: found " . (keys %by_pid) . " of $workers workers\n"
    unless keys %by_pid == $workers;
close $_ for @extra_conns;

my @conns = values %by_pid;
for my $i (0 .. $#conns) {                      # all at once
    request($conns[$i], "$paths[$i % @paths]?n=$n$extra");
}
print response($_) for @conns;
close $_ for @conns;
