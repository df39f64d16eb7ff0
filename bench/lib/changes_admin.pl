#!/usr/bin/perl
# ngx_gateway bench: registry changes at a steady rate through the gateways'
# admin API (PATCH of one instance's weight, one service each: the admin
# API's Redis script, which logs the changed instance), on one keep-alive
# connection per gateway port given, one request in flight on each.
#
#   changes_admin.pl RATE SECONDS SERVICES PORT...
#
# Services are s%05d (s00001 ...), instance i0.  Prints "sent ok seconds"
# at the end; exits 1 when a write failed or could not be sent.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

my ($rate, $secs, $nsvc, @ports) = @ARGV;
die "usage: changes_admin.pl RATE SECONDS SERVICES PORT...\n" unless @ports;

my (@conn, %by_fh);
for my $port (@ports) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or die "changes_admin.pl: cannot connect to port $port: $!\n";
    my $c = { fh => $s, busy => 0, buf => '' };
    push @conn, $c;
    $by_fh{fileno $s} = $c;
}
my $sel = IO::Select->new(map { $_->{fh} } @conn);

my ($sent, $ok, $bad, $next) = (0, 0, 0, 0);

sub reply {
    my ($c) = @_;
    my $n = sysread($c->{fh}, my $chunk, 65536);
    die "changes_admin.pl: a gateway closed the connection\n" unless $n;
    $c->{buf} .= $chunk;
    while ($c->{buf} =~ /^(HTTP\/1\.1 (\d+)[^\n]*\n.*?\r\n\r\n)/s) {
        my ($head, $status) = ($1, $2);
        my ($len) = $head =~ /\r\nContent-Length: (\d+)/i;
        last if length($c->{buf}) < length($head) + ($len // 0);
        substr($c->{buf}, 0, length($head) + ($len // 0), '');
        $status =~ /^20/ ? $ok++ : $bad++;
        $c->{busy} = 0;
    }
}

my $t0 = time;
while (time - $t0 < $secs) {
    my $due = $t0 + $sent / $rate;
    my $wait = $due - time;
    if ($wait > 0) {
        reply($by_fh{fileno $_}) for $sel->can_read($wait);
        next;
    }
    my ($c) = grep { !$_->{busy} } @conn[$next .. $#conn, 0 .. $next - 1];
    if (!$c) {
        reply($by_fh{fileno $_}) for $sel->can_read(0.05);
        next;
    }
    $next = ($next + 1) % @conn;
    my $svc = sprintf 's%05d', 1 + $sent % $nsvc;
    my $body = '{"weight":' . (1 + $sent % 9) . '}';
    syswrite($c->{fh}, "PATCH /gateway/services/$svc/instances/i0 HTTP/1.1\r\n"
                     . "Host: bench\r\nContent-Length: " . length($body)
                     . "\r\n\r\n$body");
    $c->{busy} = 1;
    $sent++;
}
my $el = time - $t0;
my $end = time + 10;
while (grep { $_->{busy} } @conn and time < $end) {
    reply($by_fh{fileno $_}) for $sel->can_read(0.1);
}
printf "%d %d %.3f\n", $sent, $ok, $el;
exit($ok == $sent ? 0 : 1);
