#!/usr/bin/perl
# ngx_gateway bench: registry changes at a steady rate, written to Redis
# with the drain recipe of docs/registry.md (one MULTI/EXEC: HSET of one
# instance's weight, both revisions and P changes, PUBLISH), one service
# each, on one connection; replies are read as they come, so a slow Redis
# does not lower the rate.
#
#   changes.pl REDIS_PORT RATE SECONDS SERVICES [PREFIX]
#
# Services are PREFIX%05d (s00001 ...), instance i0.  Prints "sent ok
# seconds" at the end; exits 1 when a transaction failed.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

my ($port, $rate, $secs, $nsvc, $prefix) = @ARGV;
die "usage: changes.pl REDIS_PORT RATE SECONDS SERVICES [PREFIX]\n" unless $nsvc;
$prefix //= 's';

my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => 5)
    or die "changes.pl: cannot connect to redis on port $port: $!\n";
$sock->autoflush(1);
my $sel = IO::Select->new($sock);

sub resp { join '', '*' . @_ . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @_ }

my $zadd = "redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), ARGV[1])";

sub change {
    my ($svc, $weight) = @_;
    return resp('MULTI')
         . resp('HSET', "gateway:svc:$svc:inst:i0", 'weight', $weight)
         . resp('INCR', "gateway:svc:$svc:rev")
         . resp('EVAL', $zadd, 2, 'gateway:rev', 'gateway:changes', $svc)
         . resp('PUBLISH', 'gateway:events', $svc)
         . resp('EXEC');
}

# replies: +OK, +QUEUED x 4, then the EXEC array; an error (-...) anywhere
# or a null EXEC fails the transaction
my ($buf, $done, $bad) = ('', 0, 0);
sub drain {
    my ($wait) = @_;
    while ($sel->can_read($wait)) {
        my $n = sysread($sock, my $chunk, 65536);
        die "changes.pl: redis closed the connection\n" unless $n;
        $buf .= $chunk;
        $wait = 0;
    }
    $bad += () = $buf =~ /^-/mg;
    $done += () = $buf =~ /^\*4\r\n/mg;
    $bad += () = $buf =~ /^\*-1\r\n/mg;
    $buf =~ s/.*\n//s;
}

my $sent = 0;
my $t0 = time;
while (time - $t0 < $secs) {
    my $due = $t0 + $sent / $rate;
    drain($due - time) while time < $due;
    drain(0);
    my $svc = sprintf '%s%05d', $prefix, 1 + $sent % $nsvc;
    print $sock change($svc, 1 + $sent % 9);
    $sent++;
}
my $el = time - $t0;
my $end = time + 10;
drain(0.1) while $done + $bad < $sent && time < $end;
printf "%d %d %.3f\n", $sent, $done, $el;
exit($done == $sent && !$bad ? 0 : 1);
