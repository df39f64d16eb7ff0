#!/usr/bin/perl
# Balancing methods behind one interface, chosen per upstream block: two
# upstreams of one nginx route the same service, one with smooth weighted
# round robin, one with weighted random; both skip what is not eligible.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $ng = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw:1m;

    upstream rr {
        gateway_service users;
    }

    upstream rnd {
        gateway_service users;
        gateway_balance random;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /rr {
            proxy_pass http://rr;
        }

        location /rnd {
            proxy_pass http://rnd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        listen 127.0.0.1:%%PORT4%%;
        location / {
            return 200 "$server_port";
        }
    }
EOF

my @port = map { $ng->port("PORT$_") } 2 .. 4;

sub register {
    my ($id, %rec) = @_;
    return $ng->request('PUT', "/gateway/services/users/instances/$id",
                        json => \%rec)->{status};
}

sub sequence {
    my ($path, $n) = @_;
    my @seq;
    for (1 .. $n) {
        my ($st, $h, $body) = $ng->get($path);
        push @seq, $st == 200 ? $body : "status $st";
    }
    return @seq;
}

sub count { my %c; $c{$_}++ for @_; return \%c }

sub longest_run {
    my ($what, @seq) = @_;
    my ($longest, $run) = (0, 0);
    for (@seq) {
        $run = $_ eq $what ? $run + 1 : 0;
        $longest = $run if $run > $longest;
    }
    return $longest;
}

is(register('a', address => "127.0.0.1:$port[0]", weight => 1), 201, 'a, weight 1');
is(register('b', address => "127.0.0.1:$port[1]", weight => 3), 201, 'b, weight 3');

# round robin: exact shares across both workers, a smooth order
my @rr = sequence('/rr', 400);
my $c = count(@rr);
is($c->{$port[0]}, 100, 'round_robin: weight 1 gets exactly 100 of 400');
is($c->{$port[1]}, 300, 'round_robin: weight 3 gets exactly 300 of 400');
is(longest_run($port[0], @rr), 1,
   'round_robin: the light instance never gets two in a row');

# random: weighted shares, but no fixed order
my @rnd = sequence('/rnd', 800);
$c = count(@rnd);
is(($c->{$port[0]} // 0) + ($c->{$port[1]} // 0), 800,
   'random: every request answered by a or b');
cmp_ok($c->{$port[0]} // 0, '>', 120, 'random: weight 1 gets about a quarter (> 120 of 800)');
cmp_ok($c->{$port[0]} // 0, '<', 280, 'random: weight 1 gets about a quarter (< 280 of 800)');
cmp_ok(longest_run($port[0], @rnd), '>=', 2,
       'random: no fixed order (the light instance twice in a row somewhere)');

# what the core filters out, no method chooses
is($ng->request('PATCH', '/gateway/services/users/instances/b',
                json => { state => 'drain' })->{status}, 200, 'b drains');
is_deeply(count(sequence('/rnd', 50)), { $port[0] => 50 },
          'random: a drained instance gets nothing');
is_deeply(count(sequence('/rr', 50)), { $port[0] => 50 },
          'round_robin: a drained instance gets nothing');

# a refused connect is retried on another instance, never the same one
my $dead = free_port();
is(register('b', address => "127.0.0.1:$dead", weight => 3), 200, 'b is now dead');
is_deeply(count(sequence('/rnd', 60)), { $port[0] => 60 },
          'random: every request that hit the dead instance went on to a');

# four workers share one round robin: the split stays exact
my $ng4 = start_nginx(workers => 4, conf => <<'EOF');
    gateway_registry zone=gw4:1m;

    upstream rr {
        gateway_service users;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
        }

        location /rr {
            proxy_pass http://rr;
            add_header X-Pid $pid always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        listen 127.0.0.1:%%PORT3%%;
        location / {
            return 200 "$server_port";
        }
    }
EOF
my @port4 = map { $ng4->port("PORT$_") } 2 .. 3;
is($ng4->request('PUT', '/gateway/services/users/instances/a',
                 json => { address => "127.0.0.1:$port4[0]", weight => 1 })->{status},
   201, '4 workers: a, weight 1');
is($ng4->request('PUT', '/gateway/services/users/instances/b',
                 json => { address => "127.0.0.1:$port4[1]", weight => 2 })->{status},
   201, '4 workers: b, weight 2');
my (%by, %pids);
for (1 .. 300) {
    my ($st, $h, $body) = $ng4->get('/rr');
    $by{$st == 200 ? $body : "status $st"}++;
    $pids{ $h->{'x-pid'} // '' }++;
}
is_deeply(\%by, { $port4[0] => 100, $port4[1] => 200 },
          '4 workers: round_robin splits 300 requests exactly 100 / 200');
cmp_ok(scalar(keys %pids), '>=', 2, '4 workers: the requests were served by '
       . scalar(keys %pids) . ' workers');

done_testing();
