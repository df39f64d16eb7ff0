#!/usr/bin/perl
# A gateway that starts on a registry already in Redis: the full sync from
# scratch fetches it with plain commands (no snapshot script), skips and
# logs bad records as the script's path does, leaves the sweeper's audit
# to the next full comparison, and fits services of 10 instances into the
# zone at the documented cost (docs/operations.md, "Sizing the zone":
# about 370 bytes per instance without health checks, ejection or
# locality).  A reload that adds gateway_eject and gateway_locality gives
# every instance its lines and every snapshot its zone groups, and both
# work on the instances that were there before.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $redis = start_redis();

my $conf = <<'EOF';
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%
                     prefix=t38: resync=200ms full_resync=%%FULL%%;

    upstream gw {
        gateway_service $gw_service;
        %%EXTRA%%
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location = /metrics {
            gateway_metrics;
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

    server {
        listen 127.0.0.1:%%PORT3%%;
        location / {
            return 200 "local\n";
        }
    }
EOF

# 120 services x 10 instances as bench/run scale writes them: 1,200
# instances
my $nsvc = 120;
my $backend = free_port();
my $local = free_port();
my $dead = free_port();
my $data = '';
for my $s (1 .. $nsvc) {
    my $svc = sprintf 's%03d', $s;
    for my $i (0 .. 9) {
        $data .= "HSET t38:svc:$svc:inst:i$i address 127.0.0.1:$backend"
                 . " weight 1 zone z" . ($i % 3) . " state up ttl 0"
                 . " metadata '{\"v\":\"1\"}'\n";
    }
    $data .= "SADD t38:svc:$svc:ids " . join(' ', map { "i$_" } 0 .. 9) . "\n"
             . "SADD t38:services $svc\nSET t38:svc:$svc:rev 1\n";
}

# bad data beside good instances, all there before the gateway starts
$data .= <<"EOF";
HSET t38:svc:mixed:inst:good address 127.0.0.1:$backend
SET t38:svc:mixed:inst:str notahash
HSET t38:svc:mixed:inst:badaddr address nowhere
HSET t38:svc:mixed:inst:bad/id address 127.0.0.1:$backend
SADD t38:svc:mixed:ids good str badaddr ghost bad/id
SADD t38:services mixed
SET t38:svc:mixed:rev 3
SET t38:svc:wrongids:ids x
SADD t38:services wrongids
SET t38:svc:wrongids:rev 1
HSET t38:svc:wrongrev:inst:a address 127.0.0.1:$backend
SADD t38:svc:wrongrev:ids a
SADD t38:services wrongrev
RPUSH t38:svc:wrongrev:rev x
HSET t38:svc:unlisted:inst:a address 127.0.0.1:$backend
SADD t38:svc:unlisted:ids a
SET t38:svc:unlisted:rev 1
HSET t38:svc:loc:inst:l1 address 127.0.0.1:$local zone z9
HSET t38:svc:loc:inst:l2 address 127.0.0.1:$backend zone z8
SADD t38:svc:loc:ids l1 l2
SADD t38:services loc
SET t38:svc:loc:rev 1
HSET t38:svc:ej:inst:e1 address 127.0.0.1:$backend
HSET t38:svc:ej:inst:e2 address 127.0.0.1:$dead
SADD t38:svc:ej:ids e1 e2
SADD t38:services ej
SET t38:svc:ej:rev 1
EOF
redis_cli({ stdin => $data });

redis_cmd('CONFIG', 'RESETSTAT');

my $full = int(tmo(3));      # the second full comparison: seconds
my $ng = start_nginx(conf => $conf, workers => 1,
                     vars => { FULL => "${full}s", PORT2 => $backend,
                               PORT3 => $local, EXTRA => '' });

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

my $all;
ok(wait_until(sub {
       my $s = services() or return 0;
       my $n = 0;
       $n += $s->{sprintf 's%03d', $_} ? $s->{sprintf 's%03d', $_}{instances} : 0
           for 1 .. $nsvc;
       $all = $s;
       return $n == 10 * $nsvc && $s->{mixed} && $s->{wrongrev}
              && $s->{loc} && $s->{ej};
   }, timeout => 20),
   "a 1m zone holds $nsvc services of 10 instances (and the bad data's)");
unlike($ng->error_log, qr/is full/, 'without running out of room');
like($ng->error_log,
     qr/synced 124 services with 1206 instances from redis in \d+ ms/,
     'the end of the full sync is logged, with what it brought');

# the first full comparison filled an empty zone: it did not audit
is(redis_calls('pttl'), 0, 'the full comparison that filled the zone did not audit');

# the full sync fetched the registry with plain commands, in transactions
ok(redis_calls('exec') >= 2, 'the services the zone did not have came in transactions');
ok(redis_calls('hgetall') >= 10 * $nsvc + 6, 'an HGETALL per instance id listed');

my $mixed = instances('mixed');
is(join(',', sort keys %$mixed), 'good', 'the good record of a mixed service is synced');
like($ng->error_log, qr/redis key "t38:svc:mixed:inst:str" skipped: not a hash/,
     'a hash of the wrong type is skipped and logged');
like($ng->error_log, qr/redis key "t38:svc:mixed:inst:badaddr" skipped: .*address/,
     'a bad address is skipped and logged');
like($ng->error_log, qr/redis key "t38:svc:mixed:inst:bad\/id" skipped: invalid instance id/,
     'an invalid instance id is skipped and logged');
is($mixed->{ghost}, undef, 'an id without a hash is not routed');
is($all->{mixed}{revision}, 3, "the service's revision is Redis'");
like($ng->error_log, qr/redis key "t38:svc:wrongids:ids" has the wrong type/,
     'an ids key of the wrong type is logged');
ok(!$all->{wrongids}, 'and that service is left out');
like($ng->error_log, qr/redis key "t38:svc:wrongrev:rev" is not an integer/,
     'a revision of the wrong type is warned about');
ok(instances('wrongrev')->{a}, 'and its service is synced');
ok(!$all->{unlisted}, 'a service that is not in P services is not synced');

my ($st, undef, $body) = $ng->get('/svc/s042');
is($st, 200, 'a service of the registry is routed');

# the next full comparison (full_resync=) audits every instance key
ok(wait_until(sub { redis_calls('pttl') >= 10 * $nsvc }, timeout => 3 * $full),
   'the next full comparison audits every instance key');

# the zone's pages in use per instance: 128 instance, 128 data, 51.2
# snapshot, 51.2 service, 12.8 sorted pointers; at this size the fixed
# part (the root, the name index, the page descriptors, partly used slab
# pages) adds about 30 more (the layout before lines were optional and
# peers read their strings from the data: about 680)
sub zone_used {
    my ($st, undef, $body) = $ng->get('/metrics');
    return undef unless $st == 200;
    my ($size) = $body =~ /^gateway_zone_size_bytes (\d+)$/m;
    my ($free) = $body =~ /^gateway_zone_free_bytes (\d+)$/m;
    return $size - $free;
}

my $used = zone_used();
my $per = $used / 1206;
note(sprintf 'zone in use: %d bytes, %.0f per instance', $used, $per);
ok($per > 300 && $per < 420,
   'an instance costs 300 to 420 bytes of zone (' . int($per) . ')');

ok($ng->spread('/svc/loc/', 8)->{"backend\n"},
   'without locality both zones get requests');
my $e2 = instances('ej')->{e2};
ok($e2 && !$e2->{ejection}, 'without gateway_eject nothing is ejected');

# a reload that uses the lines and the zone groups
my $extra = "gateway_eject failures=1 max_percent=100;\n"
            . "        gateway_locality zone=z9;";
ok($ng->reload(conf => $conf =~ s/%%EXTRA%%/$extra/r, wait_old => 1),
   'reload: gateway_eject and gateway_locality added');
my $grown = zone_used();
note(sprintf 'zone in use after the reload: %d bytes', $grown);
ok($grown - $used >= 128 * 1206,
   'every instance got its health and ejection lines (128 bytes)');
is_deeply($ng->spread('/svc/loc/', 8), { "local\n" => 8 },
          'locality prefers the local zone of an instance from before');
$ng->spread('/svc/ej/', 4);
ok(wait_until(sub { (instances('ej')->{e2}{ejection} // {})->{state} }),
   'an instance from before is ejected when it fails');
like($ng->error_log, qr/instance "e2" .* of service "ej" ejected/,
     'and the ejection is logged');
unlike($ng->error_log, qr/signal 11|too small/, 'no worker crashed');

# a zone without room for the lines fails the reload that needs them; the
# running configuration keeps routing
my $tiny_conf = <<'EOF';
    gateway_registry zone=tiny:32k;

    upstream gw {
        gateway_service fill;
        %%EXTRA%%
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location / {
            proxy_pass http://gw;
        }
    }
EOF

expect_log_errors(qr/zone "tiny" is too small for the health checks'/);
my $tiny = start_nginx(conf => $tiny_conf, vars => { EXTRA => '' });
my $stored = 0;
for my $n (1 .. 400) {
    my $st = $tiny->request('PUT', "/gateway/services/fill/instances/i$n",
                 body => qq({"address":"127.0.0.1:$backend"}))->{status};
    last if $st != 201;
    $stored++;
}
ok($stored > 10 && $stored < 400,
   "a 32k zone fills up after $stored instances");
ok(!$tiny->reload(conf => $tiny_conf =~ s/%%EXTRA%%/gateway_eject;/r),
   'a reload that needs the lines of every instance fails');
ok($tiny->wait_log(qr/\[emerg\].*zone "tiny" is too small for the health checks', ejection's or balancers' state of its instances/),
   'and says why');
my ($tst, undef, $tbody) = $tiny->get('/');
is($tst, 200, 'the running configuration keeps routing');
($tst, undef, $tbody) = $tiny->get('/gateway/services/fill');
is(scalar @{ json_decode($tbody)->{instances} }, $stored,
   'and has every instance');

done_testing();
