#!/usr/bin/perl
# gateway_metrics on a large registry (2,000 services x 3 instances, from a
# state file): the page is complete and valid though it is sent in steps;
# a client that reads it slowly gets all of it, and meanwhile the one
# worker keeps answering other requests.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes ();
use GatewayTest;

my $NSVC = 2000;
my $dir = test_dir();
my $state = "$dir/large.state";

open my $fh, '>', $state or die "$state: $!";
print $fh qq({"version":2,"generation":1}\n);
for my $s (1 .. $NSVC) {
    for my $i (1 .. 3) {
        printf $fh qq({"name":"svc%05d","revision":1,"instance":{"id":"i%d",)
                 . qq("address":"127.0.0.1:%d","weight":1,"zone":"","state":)
                 . qq("up","ttl":0,"metadata":{}}}\n), $s, $i, 20000 + $i;
    }
}
close $fh;
chmod 0666, $state;

my $ng = start_nginx(workers => 1, conf => <<"CONF");
    gateway_registry zone=gw:64m state_file=$state;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /metrics {
            gateway_metrics max_instances=100000;
        }

        location = /ping {
            return 200 "pong";
        }
    }
CONF

my ($st, $h, $page) = $ng->get('/metrics', timeout => 60);
is($st, 200, 'the page of 2,000 services');
ok(!defined $h->{'content-length'}, 'sent in steps: no Content-Length');

my @svc = $page =~ /^gateway_service_requests_total\{service="(svc\d+)",status_class="2xx"\}/mg;
is(scalar @svc, $NSVC, 'every service is on the page');
my %uniq = map { $_ => 1 } @svc;
is(scalar keys %uniq, $NSVC, 'each service once');
my (undef, undef, $again) = $ng->get('/metrics', timeout => 60);
my @svc2 = $again =~ /^gateway_service_requests_total\{service="(svc\d+)",status_class="2xx"\}/mg;
is_deeply(\@svc2, \@svc, 'in the same order at the next scrape');
my $inst = () = $page =~ /^gateway_instance_requests_total\{/mg;
is($inst, 3 * $NSVC, 'every instance is on the page');
like($page, qr/^gateway_metrics_omitted_instances 0\n\z/m,
     'and it ends with the last family');

SKIP: {
    skip 'promtool is not installed (Debian package prometheus)', 1
        unless -x '/usr/bin/promtool';
    my $f = "$dir/large.txt";
    open my $out, '>', $f or die;
    print $out $page;
    close $out;
    my $res = `/usr/bin/promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool accepts the large page') or diag($res);
}

# a slow reader: it takes 4 KiB, then stops reading for a second, so
# that the page waits for it once the socket buffers are full

my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port,
                                 Proto => 'tcp') or die "connect: $!";
print $sock "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
my $got = '';
sysread($sock, $got, 4096);
ok(length $got > 0, 'the slow reader got the start of the page');

my $t0 = Time::HiRes::time();
my ($pst, undef, $pong) = $ng->get('/ping');
my $ms = (Time::HiRes::time() - $t0) * 1000;
is($pst, 200, 'another request is answered while the page waits for its '
              . 'reader');
note(sprintf 'ping took %.1f ms', $ms);

sleep 1;

while (1) {
    my $n = sysread($sock, my $buf, 65536);
    last unless $n;
    $got .= $buf;
}
close $sock;

my ($body) = $got =~ /\r\n\r\n(.*)\z/s;
is(length($body // ''), length($page), 'the slow reader got the whole page')
    or diag(substr($got, -300));
like($body // '', qr/^gateway_metrics_omitted_instances 0\n\z/m,
     'up to its end');

done_testing;
