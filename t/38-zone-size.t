#!/usr/bin/perl
# A gateway that starts on a registry already in Redis: the full sync from
# scratch fetches it with plain commands (no snapshot script), skips and
# logs bad records as the script's path does, leaves the sweeper's audit
# to the next full comparison, and fits services of 10 instances into the
# zone at the documented cost (docs/operations.md, "Sizing the zone":
# about 650 bytes per instance, 1m for roughly 1,200 of them).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

my $conf = <<'EOF';
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t37: resync=200ms full_resync=%%FULL%%;

    upstream gw {
        gateway_service $gw_service;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+) {
            proxy_pass http://gw;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "backend\n";
        }
    }
EOF

# 120 services x 10 instances as bench/run scale writes them: 1,200
# instances, with the old layout (960 bytes each) more than 1m holds
my $nsvc = 120;
my $backend = free_port();
my $data = '';
for my $s (1 .. $nsvc) {
    my $svc = sprintf 's%03d', $s;
    for my $i (0 .. 9) {
        $data .= "HSET t37:svc:$svc:inst:i$i address 127.0.0.1:$backend"
                 . " weight 1 zone z" . ($i % 3) . " state up ttl 0"
                 . " metadata '{\"v\":\"1\"}'\n";
    }
    $data .= "SADD t37:svc:$svc:ids " . join(' ', map { "i$_" } 0 .. 9) . "\n"
             . "SADD t37:services $svc\nSET t37:svc:$svc:rev 1\n";
}

# bad data beside good instances, all there before the gateway starts
$data .= <<"EOF";
HSET t37:svc:mixed:inst:good address 127.0.0.1:$backend
SET t37:svc:mixed:inst:str notahash
HSET t37:svc:mixed:inst:badaddr address nowhere
HSET t37:svc:mixed:inst:bad/id address 127.0.0.1:$backend
SADD t37:svc:mixed:ids good str badaddr ghost bad/id
SADD t37:services mixed
SET t37:svc:mixed:rev 3
SET t37:svc:wrongids:ids x
SADD t37:services wrongids
SET t37:svc:wrongids:rev 1
HSET t37:svc:wrongrev:inst:a address 127.0.0.1:$backend
SADD t37:svc:wrongrev:ids a
SADD t37:services wrongrev
RPUSH t37:svc:wrongrev:rev x
HSET t37:svc:unlisted:inst:a address 127.0.0.1:$backend
SADD t37:svc:unlisted:ids a
SET t37:svc:unlisted:rev 1
EOF
redis_cli({ stdin => $data });

redis_cmd('CONFIG', 'RESETSTAT');

my $full = int(tmo(3));      # the second full comparison: seconds
my $ng = start_nginx(conf => $conf, workers => 1,
                     vars => { FULL => "${full}s", PORT2 => $backend });

sub services {
    my ($st, undef, $body) = $ng->get('/gateway/services');
    return undef unless $st == 200;
    return { map { $_->{name} => $_ } @{ json_decode($body)->{services} } };
}

sub instances {
    my ($svc) = @_;
    my ($st, undef, $body) = $ng->get("/gateway/services/$svc");
    return undef unless $st == 200;
    return { map { $_->{id} => $_ } @{ json_decode($body)->{instances} } };
}

sub cmdstat {
    my ($cmd) = @_;
    my $info = redis_cmd('INFO', 'commandstats');
    return $info =~ /^cmdstat_\Q$cmd\E:calls=(\d+)/m ? $1 : 0;
}

my $all;
ok(wait_until(sub {
       my $s = services() or return 0;
       my $n = 0;
       $n += $s->{sprintf 's%03d', $_} ? $s->{sprintf 's%03d', $_}{instances} : 0
           for 1 .. $nsvc;
       $all = $s;
       return $n == 10 * $nsvc && $s->{mixed} && $s->{wrongrev};
   }, timeout => 20),
   "a 1m zone holds $nsvc services of 10 instances (and the bad data's)");
unlike($ng->error_log, qr/is full/, 'without running out of room');
like($ng->error_log,
     qr/synced 122 services with 1202 instances from redis in \d+ ms/,
     'the end of the full sync is logged, with what it brought');

# the first full comparison filled an empty zone: it did not audit
is(cmdstat('pttl'), 0, 'the full comparison that filled the zone did not audit');

# the full sync fetched the registry with plain commands, in transactions
ok(cmdstat('exec') >= 2, 'the services the zone did not have came in transactions');
ok(cmdstat('hgetall') >= 10 * $nsvc + 6, 'an HGETALL per instance id listed');

my $mixed = instances('mixed');
is(join(',', sort keys %$mixed), 'good', 'the good record of a mixed service is synced');
like($ng->error_log, qr/redis key "t37:svc:mixed:inst:str" skipped: not a hash/,
     'a hash of the wrong type is skipped and logged');
like($ng->error_log, qr/redis key "t37:svc:mixed:inst:badaddr" skipped: .*address/,
     'a bad address is skipped and logged');
like($ng->error_log, qr/redis key "t37:svc:mixed:inst:bad\/id" skipped: invalid instance id/,
     'an invalid instance id is skipped and logged');
is($mixed->{ghost}, undef, 'an id without a hash is not routed');
is($all->{mixed}{revision}, 3, "the service's revision is Redis'");
like($ng->error_log, qr/redis key "t37:svc:wrongids:ids" has the wrong type/,
     'an ids key of the wrong type is logged');
ok(!$all->{wrongids}, 'and that service is left out');
like($ng->error_log, qr/redis key "t37:svc:wrongrev:rev" is not an integer/,
     'a revision of the wrong type is warned about');
ok(instances('wrongrev')->{a}, 'and its service is synced');
ok(!$all->{unlisted}, 'a service that is not in P services is not synced');

my ($st, undef, $body) = $ng->get('/svc/s042');
is($st, 200, 'a service of the registry is routed');

# the next full comparison (full_resync=) audits every instance key
ok(wait_until(sub { cmdstat('pttl') >= 10 * $nsvc }, timeout => 3 * $full),
   'the next full comparison audits every instance key');

done_testing();
