#!/usr/bin/perl
# gateway_metrics: the Prometheus page.  promtool accepts it; its counters
# move exactly as the traffic sent predicts, summed over both workers; a
# reload keeps them; max_instances bounds the per-instance series; bad
# parameters fail nginx -t naming the directive.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $CONF = <<'EOF';
    gateway_registry zone=gw:1m;

    upstream users {
        gateway_service users;
    }

    upstream flaky {
        gateway_service flaky;
    }

    upstream broken {
        gateway_service broken;
    }

    upstream flaky_off {
        gateway_service flakyoff;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location = /metrics {
            gateway_metrics;
        }

        location = /few {
            gateway_metrics max_instances=2;
        }

        location /users {
            proxy_pass http://users;
        }

        location /flaky {
            proxy_pass http://flaky;
            proxy_next_upstream error;
        }

        location /broken {
            proxy_pass http://broken;
        }

        location /flaky_off {
            proxy_pass http://flaky_off;
            proxy_next_upstream off;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        location / {
            return 200 "$server_port";
        }
    }

    server {
        listen 127.0.0.1:%%PORT4%%;
        location / {
            return 503 "busy";
        }
    }
EOF

my $ng = start_nginx(workers => 2, conf => $CONF);

my ($p2, $p3, $p4) = map { $ng->port("PORT$_") } 2 .. 4;
my $closed = free_port();

sub register {
    my ($svc, $id, $addr) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => $addr });
    is($r->{status}, 201, "registered $svc/$id at $addr");
}

register('users', 'a', "127.0.0.1:$p2");
register('users', 'b', "127.0.0.1:$p3");
register('flaky', 'dead', "127.0.0.1:$closed");
register('flaky', 'live', "127.0.0.1:$p2");
register('broken', 'busy', "127.0.0.1:$p4");
register('flakyoff', 'dead', "127.0.0.1:$closed");
register('flakyoff', 'live', "127.0.0.1:$p2");

sub scrape {
    my ($path) = @_;
    my ($st, $h, $body) = $ng->get($path || '/metrics');
    is($st, 200, "GET " . ($path || '/metrics') . " is 200");
    like($h->{'content-type'} // '', qr{^text/plain; version=0\.0\.4},
         'the Prometheus text content type');
    my %m;
    for (split /\n/, $body) {
        next if /^#/;
        /^(\S+) (\S+)$/ or next;
        $m{$1} = $2;
    }
    return ($body, \%m);
}

sub promtool_ok {
    my ($body, $what) = @_;
    SKIP: {
        my $promtool = '/usr/bin/promtool';
        skip 'promtool is not installed (Debian package prometheus)', 1
            unless -x $promtool;
        my $f = test_dir() . "/metrics.txt";
        open my $fh, '>', $f or die "$f: $!";
        print $fh $body;
        close $fh;
        my $out = `$promtool check metrics < $f 2>&1`;
        is($?, 0, "promtool check metrics accepts $what")
            or diag($out);
    }
}

my ($body, $m) = scrape();
promtool_ok($body, 'the page of a fresh registry');

is($m->{'gateway_registry_services'}, 4, 'four services');
is($m->{'gateway_registry_instances{state="up"}'}, 7, 'seven instances up');
is($m->{'gateway_instance_requests_total{service="users",instance="a"}'}, 0,
   'no requests yet');

# 100 requests to users: each counted once, by class, in all workers

my $ok = 0;
for (1 .. 100) {
    my ($st) = $ng->get('/users');
    $ok++ if $st == 200;
}
is($ok, 100, '100 requests to users answered 200');

# 20 requests to flaky: the dead instance's refused connects are retried

my $flaky_ok = 0;
for (1 .. 20) {
    my ($st) = $ng->get('/flaky');
    $flaky_ok++ if $st == 200;
}
is($flaky_ok, 20, '20 requests to flaky answered 200 (retried)');

for (1 .. 7) {
    $ng->get('/broken');
}

# 20 requests to flakyoff: nginx does not retry (proxy_next_upstream off),
# so half of them end at the dead instance, with 502

my %flaky_off;
$flaky_off{ ($ng->get('/flaky_off'))[0] }++ for 1 .. 20;
is_deeply(\%flaky_off, { 200 => 10, 502 => 10 },
          'flakyoff: without retries 10 answered 200, 10 got 502');

($body, $m) = scrape();
promtool_ok($body, 'the page after traffic');

my $svc = 'gateway_service_requests_total{service="users",status_class=';
is($m->{$svc . '"2xx"}'}, 100, 'users: 100 requests of class 2xx');
is($m->{$svc . '"5xx"}'}, 0, 'users: none of class 5xx');

my $ra = $m->{'gateway_instance_requests_total{service="users",instance="a"}'};
my $rb = $m->{'gateway_instance_requests_total{service="users",instance="b"}'};
is($ra + $rb, 100, 'users: instance attempts add up to 100');
is($ra, 50, 'round robin: 50 attempts to a');

is($m->{'gateway_service_upstream_response_seconds_count{service="users"}'},
   100, 'users: 100 attempts in the response time histogram');
is($m->{'gateway_service_upstream_response_seconds_bucket{service="users",'
        . 'le="+Inf"}'}, 100, 'the +Inf bucket holds every attempt');

my $dead = 'gateway_instance_%s{service="flaky",instance="dead"%s}';
my $fails = $m->{sprintf $dead, 'failures_total', ',cause="connect"'};
ok($fails > 0, "flaky: the dead instance has $fails connect failures");
is($m->{sprintf $dead, 'requests_total', ''}, $fails,
   'flaky: every attempt to the dead instance failed');
is($m->{'gateway_instance_retries_total{service="flaky",instance="live"}'},
   $fails, 'flaky: each failure was retried on the live instance');
is($m->{'gateway_instance_requests_total{service="flaky",instance="live"}'},
   20, 'flaky: the live instance answered all 20');
is($m->{'gateway_service_requests_total{service="flaky",status_class="2xx"}'},
   20, 'flaky: 20 requests counted once each, at their last attempt');
is($m->{'gateway_service_upstream_response_seconds_count{service="flaky"}'},
   20 + $fails, 'flaky: the histogram counts every attempt');

is($m->{'gateway_service_requests_total{service="broken",status_class="5xx"}'},
   7, 'broken: 7 requests of class 5xx');
is($m->{'gateway_service_requests_total{service="flakyoff",status_class="2xx"}'},
   10, 'flakyoff: 10 requests of class 2xx');
is($m->{'gateway_service_requests_total{service="flakyoff",status_class="none"}'}
   + $m->{'gateway_service_requests_total{service="flakyoff",status_class="5xx"}'},
   10, 'flakyoff: and the 10 failed ones, not retried, counted too');
is($m->{'gateway_instance_in_flight{service="users",instance="a"}'}, 0,
   'nothing in flight when idle');
is($m->{'gateway_instance_state{service="users",instance="a",state="up"}'},
   1, 'the state gauge shows up');
is($m->{'gateway_instance_state{service="users",instance="a",state="drain"}'},
   0, 'and not drain');
is($m->{'gateway_instance_ejected{service="users",instance="a"}'}, 0,
   'not ejected');
is($m->{'gateway_instance_ejections_total{service="users",instance="a"}'}, 0,
   'never ejected');
is($m->{'gateway_instance_health{service="users",instance="a",health="unknown"}'},
   1, 'no health check: health unknown');
is($m->{'gateway_service_retry_budget_exhausted_total{service="flaky"}'}, 0,
   'no retry budget: nothing refused');
is($m->{'gateway_service_limit_rejections_total{service="users"}'}, 0,
   'no limit: nothing rejected');
ok($m->{'gateway_zone_free_bytes'} > 0
   && $m->{'gateway_zone_free_bytes'} < $m->{'gateway_zone_size_bytes'},
   'zone bytes: free below size');
ok($m->{'gateway_registry_changes_total'} >= 5, 'registry changes counted');

# a reload keeps the counters: they live in the zone

$ng->reload;
my ($body2, $m2) = scrape();
is($m2->{$svc . '"2xx"}'}, 100, 'after a reload: still 100');
is($m2->{'gateway_instance_requests_total{service="users",instance="a"}'}, $ra,
   'after a reload: instance counters kept');

# max_instances bounds the per-instance series

my ($few, $mf) = scrape('/few');
my @inst = grep { /^gateway_instance_requests_total\{/ } split /\n/, $few;
is(scalar @inst, 2, 'max_instances=2: two instances in a family');
is($mf->{'gateway_metrics_omitted_instances'}, 5, 'five left out, counted');
promtool_ok($few, 'the bounded page');

# writes and bad parameters

my ($st) = $ng->request('POST', '/metrics');
is($st, 405, 'POST /metrics is 405');

for my $t (['gateway_metrics max_instances=x;',
            qr/invalid parameter "max_instances=x" in "gateway_metrics"/],
           ['gateway_metrics max_instances=-1;',
            qr/invalid parameter "max_instances=-1" in "gateway_metrics"/],
           ['gateway_metrics foo;',
            qr/invalid parameter "foo" in "gateway_metrics"/],
           ['gateway_metrics; gateway_metrics;',
            qr/"gateway_metrics" directive is duplicate/])
{
    my ($bad, $want) = @$t;
    (my $conf = $CONF) =~ s/gateway_metrics max_instances=2;/$bad/;
    my ($code, $out) = nginx_test_config(conf => $conf);
    isnt($code, 0, "nginx -t fails: $bad");
    like($out, $want, 'and names the parameter and the directive');
}

done_testing;
