#!/usr/bin/perl
# $upstream_addr of an attempt whose snapshot is gone.  An attempt's name
# points at its snapshot's text while the attempt's hold keeps the
# snapshot; a retry takes a newer snapshot and lets the old one go, so the
# first attempt's name must have been copied by then: nginx reads
# $upstream_addr (add_header, the access log) at the end of the request.
#
# The first attempt goes to an instance that closes the connection
# without an answer after a while; while it waits, a second instance is
# registered and the first one removed (a new snapshot without it); the
# retry goes to the second, a backend that answers late; while it waits,
# the registry is rewritten many times, so that the first snapshot and the
# removed instance's text are freed and their memory used again.  The
# response and the access log must still name both instances, exactly.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Socket::INET;
use Time::HiRes qw(sleep);

my $DIR = test_dir();
my $WAIT = tmo(1);
my $DELAY = tmo(3);

(my $conf = <<'EOF') =~ s/%%READ%%/int(2 * $DELAY + 1) . 's'/e;
    gateway_registry zone=gw:1m;
    gateway_registry_allow 127.0.0.0/8;

    log_format addr '$request_uri up=[$upstream_addr]';

    upstream gw {
        gateway_service app;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location / {
            access_log %%NGINX_DIR%%/addr.log addr;
            proxy_pass http://gw;
            proxy_next_upstream error timeout;
            proxy_read_timeout %%READ%%;
            add_header X-Upstream $upstream_addr always;
        }
    }
EOF

# a backend that reads each request, notes it in the file $got, waits
# $delay and then answers (or, with $answer false, closes without one)
sub serve {
    my ($ls, $got, $delay, $answer) = @_;
    while (my $c = $ls->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            sysread($c, $req, 4096, length $req) or last;
        }
        open my $fh, '>>', $got or die $!;
        close $fh;
        sleep $delay;
        syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                     . "Connection: close\r\n\r\nlate\n") if $answer;
        close $c;
    }
}

my $closer = start_backend(sub { serve($_[0], "$DIR/closer", $WAIT, 0) });
my $late = start_backend(sub { serve($_[0], "$DIR/late", $DELAY, 1) });

my $ng = start_nginx(conf => $conf, workers => 1);

sub put {
    my ($id, $addr, $state) = @_;
    return $ng->request('PUT', "/gateway/services/app/instances/$id",
                        json => { address => $addr, state => $state // 'up' })
        ->{status};
}

sub del {
    my ($id) = @_;
    return $ng->request('DELETE', "/gateway/services/app/instances/$id")
        ->{status};
}

is(put('b', "127.0.0.1:$closer"), 201, 'an instance that fails late');

my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port,
                              Proto => 'tcp') or die "connect: $!";
print $c "GET /first HTTP/1.0\r\nHost: gw\r\n\r\n";

# while the first attempt waits: a new snapshot with a second instance,
# which the retry will take, and without the first
ok(wait_until(sub { -e "$DIR/closer" }), 'the first attempt is sent');
is(put('c', "127.0.0.1:$late"), 201,
   'a second instance, while the first attempt waits');
is(del('b'), 200, 'the first one is removed');

# while the retry waits: the first snapshot goes, and its memory is
# written again by other snapshots (other ids and addresses; down, so
# that no retry goes to them)
ok(wait_until(sub { -e "$DIR/late" }), 'the retry is sent');
my $writes = 0;
for my $i (1 .. 40) {
    $writes++ if put("a$i", sprintf('127.%d.%d.%d:%d', $i, $i, $i, 1000 + $i),
                     'down') == 201;
    my ($p, $d) = (put('b', "127.0.0.$i:9", 'down'), del('b'));
    $writes++ if $p == 201 && $d == 200;
}
is($writes, 80, 'the registry was rewritten while the retry waits');

my $resp = do { local $/; <$c> };
close $c;

like($resp, qr{^HTTP/1\.[01] 200 }, 'the retry answered 200')
    or diag($resp);
my ($hdr) = $resp =~ /\r\nX-Upstream: ([^\r\n]*)\r\n/i;
is($hdr, "127.0.0.1:$closer, 127.0.0.1:$late",
   '$upstream_addr names both attempts (response header)');

ok(wait_until(sub { -s $ng->dir . '/addr.log' }),
   'the access log line is written');
my $log = do { local (@ARGV, $/) = ($ng->dir . '/addr.log'); <> };
like($log, qr{^/first up=\[\Q127.0.0.1:$closer, 127.0.0.1:$late\E\]$}m,
     '$upstream_addr names both attempts (access log)') or diag($log);

done_testing();
