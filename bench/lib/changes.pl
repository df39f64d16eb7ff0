#!/usr/bin/perl
# ngx_gateway bench: registry changes at a steady rate through a gateway's
# admin API (PATCH of an instance's weight: the admin API's Redis script,
# one change of one service each), on one keep-alive connection.
#
#   changes.pl PORT RATE SECONDS SERVICES [PREFIX]
#
# Services are PREFIX%05d (s00001 ...), instance i0.  Prints "sent ok
# seconds" at the end; exits 1 when a write failed.

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($port, $rate, $secs, $nsvc, $prefix) = @ARGV;
die "usage: changes.pl PORT RATE SECONDS SERVICES [PREFIX]\n" unless $nsvc;
$prefix //= 's';

my $sock;
sub conn {
    $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or die "changes.pl: cannot connect to port $port: $!\n";
}

sub patch {
    my ($svc, $weight) = @_;
    my $body = qq({"weight":$weight});
    conn() unless $sock;
    print $sock "PATCH /gateway/services/$svc/instances/i0 HTTP/1.1\r\n"
              . "Host: bench\r\nContent-Length: " . length($body) . "\r\n\r\n"
              . $body;
    my ($head, $buf) = ('', '');
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread($sock, $buf, 4096);
        if (!$n) { undef $sock; return 0 }
        $head .= $buf;
    }
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my ($len) = $head =~ /\r\nContent-Length: (\d+)/i;
    my $have = length($head) - index($head, "\r\n\r\n") - 4;
    while (defined $len && $have < $len) {
        my $n = sysread($sock, $buf, $len - $have) or last;
        $have += $n;
    }
    return defined $status && $status =~ /^20/;
}

my ($sent, $ok) = (0, 0);
my $t0 = time;
while (time - $t0 < $secs) {
    my $due = $t0 + $sent / $rate;
    my $wait = $due - time;
    sleep $wait if $wait > 0;
    my $svc = sprintf '%s%05d', $prefix, 1 + $sent % $nsvc;
    $ok++ if patch($svc, 1 + $sent % 9);
    $sent++;
}
printf "%d %d %.3f\n", $sent, $ok, time - $t0;
exit($ok == $sent ? 0 : 1);
