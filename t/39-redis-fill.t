#!/usr/bin/perl
# The full sync of an empty zone (a gateway's start): each page of
# services asks for the next one before its own fetches (about two pages
# in flight).  A registry of many pages is synced whole, each record as
# Redis holds it, and a change made while the fill runs is there at its
# end.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

my $conf = <<'EOF';
    gateway_registry zone=gw:32m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t39:;

    upstream gw {
        gateway_service fill;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }
    }
EOF

# many pages of about 512 (SSCAN ... COUNT 512), each fetched in batches
# of 256 services: 5000 services, 2 instances each
my $N = 5000;
redis_cli({ stdin => join '', map {
    my $w = 1 + $_ % 7;
    "HSET t39:svc:f$_:inst:a address 127.0.0.1:" . (1024 + $_) . " weight $w\n"
    . "HSET t39:svc:f$_:inst:b address 127.0.0.1:" . (1024 + $_) . " state drain\n"
    . "SADD t39:svc:f$_:ids a b\nSADD t39:services f$_\nSET t39:svc:f$_:rev 1\n"
} 1 .. $N });

my $ng = start_nginx(conf => $conf, workers => 1);

ok($ng->wait_log(qr/gateway: synced $N services with ${\($N * 2)} instances from redis in \d+ ms/,
                 timeout => 30),
   "the fill of $N services (about 10 pages) ends");

my ($st, undef, $body) = $ng->get('/gateway/services');
is($st, 200, 'the registry is listed');
my $list = json_decode($body)->{services};
is(scalar @$list, $N, "all $N services");
my $insts = 0;
$insts += $_->{instances} for @$list;
is($insts, 2 * $N, 'with both instances each');

my $bad = 0;
for my $i (1, 255, 256, 257, 512, 2049, 4097, $N) {
    my ($s, undef, $b) = $ng->get("/gateway/services/f$i");
    my %by = map { $_->{id} => $_ } @{ json_decode($b)->{instances} };
    $bad++ unless $s == 200
        && $by{a} && $by{a}{weight} == 1 + $i % 7 && $by{a}{state} eq 'up'
        && $by{a}{address} eq '127.0.0.1:' . (1024 + $i)
        && $by{b} && $by{b}{state} eq 'drain' && $by{b}{weight} == 1;
}
is($bad, 0, 'each record as Redis holds it (first, last and page edges)');

$ng->stop;

# a change while a fill runs: the fill reads the revision first, so the
# zone ends at Redis' revision with the changed record
my $ng2 = start_nginx(conf => $conf, workers => 1);
redis_cli({ stdin => "MULTI\nHSET t39:svc:f$N:inst:a weight 99\nINCR t39:svc:f$N:rev\n"
                     . "EXEC\nPUBLISH t39:events f$N\n" });
ok($ng2->wait_log(qr/gateway: synced $N services with ${\($N * 2)} instances from redis/,
                  timeout => 30),
   'a second gateway fills its zone');
ok(wait_until(sub {
        my ($s, undef, $b) = $ng2->get("/gateway/services/f$N");
        return 0 unless $s == 200;
        my ($a) = grep { $_->{id} eq 'a' } @{ json_decode($b)->{instances} };
        return $a && $a->{weight} == 99;
    }, timeout => 5),
   'a change made while it starts (its fill under way) is there');

done_testing();
