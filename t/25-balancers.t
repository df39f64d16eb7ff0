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
        listen 127.0.0.1:%%PORT%% reuseport;

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

# one service selected from two workers at a high rate: a page includes
# the service 128 times (SSI subrequests, all selected within one
# millisecond of the worker's clock), so a busy worker takes tickets by
# blocks.  The split stays within what the workers may hold unused (63
# tickets each, docs/directives.md); once the blocks are given back or
# used up, it is exact again over whole cycles.
{
    open my $page, '>', test_dir() . '/page.html' or die "page.html: $!";
    print $page join(',', ('<!--# include virtual="/hot1" -->') x 128);
    close $page;
}
# as many instances as a cycle has tickets, more than a worker can hold:
# tickets missing from the middle (held, or lost) cannot make whole cycles
my @porth = map { free_port() } 1 .. 64;
my $listens = join "\n", map { "        listen 127.0.0.1:$_;" } @porth;
my $ngh = start_nginx(workers => 2, conf => <<"EOF");
    gateway_registry zone=gwh:1m;

    upstream hot {
        gateway_service hot;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location = /page {
            ssi on;
            default_type text/html;
            alias %%TESTDIR%%/page.html;
            add_header X-Pid \$pid always;
        }

        location = /hot1 {
            proxy_pass http://hot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Pid \$pid always;
        }
    }

    server {
$listens
        keepalive_requests 100000;
        location / {
            return 200 "\$server_port";
        }
    }
EOF
my %weight = map { $_ => 1 } @porth;
my $W = 64;
my $registered = 0;
for my $i (0 .. $#porth) {
    $registered++ if $ngh->request('PUT',
        sprintf('/gateway/services/hot/instances/h%02d', $i),
        json => { address => "127.0.0.1:$porth[$i]" })->{status} == 201;
}
is($registered, $W, "hot: $W instances of weight 1, a cycle of $W tickets");

my (%hot, $hot_bad);
$hot_bad = 0;
sub hot_count {
    my ($body) = @_;
    for (split /,/, $body) {
        if (exists $weight{$_}) { $hot{$_}++ } else { $hot_bad++ }
    }
}
sub hot_total { my $t = 0; $t += $_ for values %hot; return $t }

# the burst: 4 clients at once, each page on a new connection (reuseport
# spreads them over both workers)
my $clients = 4;
my $pages = 40;
my (@kids, %hot_pids);
for my $k (1 .. $clients) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $out, '>', test_dir() . "/hot.$k" or POSIX::_exit(1);
        for (1 .. $pages) {
            my ($st, $h, $body) = $ngh->get('/page', timeout => tmo(30));
            print $out ($st == 200 ? ($h->{'x-pid'} // '') . " $body"
                                   : "status $st"), "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
for my $k (1 .. $clients) {
    open my $in, '<', test_dir() . "/hot.$k" or die "hot.$k: $!";
    while (my $line = <$in>) {
        chomp $line;
        my ($pid, $body) = split / /, $line, 2;
        if (!defined $body) { $hot_bad++; next }
        $hot_pids{$pid}++;
        hot_count($body);
    }
}
is($hot_bad, 0, 'hot burst: every subrequest answered by an instance');
is(hot_total(), $clients * $pages * 128, 'hot burst: every subrequest counted');
is(scalar(keys %hot_pids), 2, 'hot burst: both workers served pages');
my $T = hot_total();
my @off = grep { abs(($hot{$_} // 0) - $T / $W) > 2 * 63 + $W } @porth;
is(scalar(@off), 0, "hot burst: every instance got its share of $T "
   . 'within the tickets two workers may hold, ' . (2 * 63) . ', and a cycle');

# after the burst: the latest blocks go back at the workers' tick, the
# others are used up by their workers' next selections; requests until
# each worker served 64 (more than it can hold) and the total is a whole
# number of cycles
select(undef, undef, undef, 0.5);
my %seq_pids;
my $n = 0;
while ($n < 4000) {
    my ($st, $h, $body) = $ngh->get('/hot1');
    $n++;
    if ($st == 200) { hot_count($body); $seq_pids{ $h->{'x-pid'} // '' }++ }
    else { $hot_bad++ }
    last if hot_total() % $W == 0 && keys(%seq_pids) == 2
            && !grep { $_ < 64 } values %seq_pids;
}
is($hot_bad, 0, 'after the burst: every request answered by an instance');
$T = hot_total();
is($T % $W, 0, "after the burst: $T selections, whole cycles of $W");
is_deeply(\%hot, { map { $_ => $T * $weight{$_} / $W } @porth },
          "after the burst: the split of all $T selections is exact again");

# one worker alone at a high rate (one keepalive connection): its block is
# always the latest, so its tick gives the unused tickets back; then the
# other worker's requests take the next tickets and complete a cycle
# exactly (tickets still held by the first would leave a gap)
my $ka = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(30));
my %one_pid;
for (1 .. 30) {
    my $res = $ka->get($ngh->url('/page'));
    if ($res->{status} == 200) {
        hot_count($res->{content});
        $one_pid{ $res->{headers}{'x-pid'} // '' }++;
    } else {
        $hot_bad++;
    }
}
my ($one) = keys %one_pid;
is(scalar(keys %one_pid), 1, 'one connection: its pages from one worker');
select(undef, undef, undef, 0.5);
my ($kb, $other);
for (1 .. 100) {
    $kb = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(5));
    my $res = $kb->get($ngh->url('/hot1'));
    if ($res->{status} == 200) { hot_count($res->{content}) } else { $hot_bad++ }
    $other = $res->{headers}{'x-pid'} // '';
    last if $other ne $one;
}
isnt($other, $one, 'a connection to the other worker');
while (hot_total() % $W) {
    my $res = $kb->get($ngh->url('/hot1'));
    if ($res->{status} == 200 && ($res->{headers}{'x-pid'} // '') eq $other) {
        hot_count($res->{content});
    } else {
        $hot_bad++;
        last;
    }
}
$T = hot_total();
is($hot_bad, 0, 'one worker: every request answered by an instance');
is_deeply(\%hot, { map { $_ => $T * $weight{$_} / $W } @porth },
          "one worker: its unused tickets went back, all $T selections "
          . 'split exactly');

done_testing();
