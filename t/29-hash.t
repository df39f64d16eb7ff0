#!/usr/bin/perl
# gateway_balance hash KEY [consistent=ketama|maglev], end to end with two
# workers: 2,000 distinct keys spread over 10 instances, the same key goes
# to the same instance in every worker and across a reload, an instance
# added takes only its share, removed or drained gives back only its own
# keys, and a retry goes to the next distinct instance, the one a drain
# would give; with writers in both workers at once, requests are routed by
# the last commit.  The distribution over 100,000 keys is in
# t/unit/test_chash.c.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use HTTP::Tiny;
use POSIX ();
use GatewayTest;

# directives: a bad one fails nginx -t naming it
for my $bad (['gateway_balance hash;', qr/"gateway_balance hash" needs a key/],
             ['gateway_balance hash consistent=maglev;',
              qr/"gateway_balance hash" needs a key/],
             ['gateway_balance hash $arg_k consistent=ring;',
              qr/invalid parameter "consistent=ring" of "gateway_balance hash"/],
             ['gateway_balance hash $arg_k consistent=ketama consistent=maglev;',
              qr/invalid parameter "consistent=maglev" of "gateway_balance hash"/]) {
    my ($code, $out) = nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u { gateway_service users; $bad->[0] }
    server { listen 127.0.0.1:%%PORT%%; location / { proxy_pass http://u; } }
EOF
    isnt($code, 0, "nginx -t refuses \"$bad->[0]\"");
    like($out, $bad->[1], '... naming the directive');
}

my @port = map { free_port() } 0 .. 10;
my $dead = free_port();
my $listen = join "\n", map { "        listen 127.0.0.1:$_;" } @port;

my $backends = <<"EOF";
    server {
$listen
        location / {
            return 200 "\$server_port";
        }
    }
EOF

my $front = <<"EOF";
    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/(hr|kt|mg|hrw|ktw|mgw)\$ {
            proxy_pass http://\$1;
            proxy_next_upstream error;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            add_header X-Pid \$pid always;
        }
    }
EOF

my $ups = <<'EOF';
    upstream hr {
        gateway_service users;
        gateway_balance hash $arg_k;
    }

    upstream kt {
        gateway_service users;
        gateway_balance hash $arg_k consistent=ketama;
    }
EOF

my $maglev = <<'EOF';
    upstream mg {
        gateway_service users;
        gateway_balance hash $arg_k consistent=maglev;
    }

    upstream hrw {
        gateway_service weighted;
        gateway_balance hash $arg_k;
    }

    upstream ktw {
        gateway_service weighted;
        gateway_balance hash $arg_k consistent=ketama;
    }

    upstream mgw {
        gateway_service weighted;
        gateway_balance hash $arg_k consistent=maglev;
    }
EOF

# first without Maglev: the reload that adds it must build its tables
my $ng = start_nginx(workers => 2, conf => <<"EOF");
    gateway_registry zone=gw:8m;
$ups
    upstream mg { gateway_service users; }
$front
$backends
EOF

my %id_of = map { $port[$_] => sprintf('i%02d', $_) } 0 .. 10;

sub register {
    my ($id, $port, %rec) = @_;
    return $ng->request('PUT', "/gateway/services/users/instances/$id",
                        json => { address => "127.0.0.1:$port", %rec })->{status};
}

for my $i (0 .. 9) {
    is(register(sprintf('i%02d', $i), $port[$i]), 201, "instance $i registered")
        or BAIL_OUT('cannot register');
}

# keep-alive clients, two on each worker (a connection stays on its worker,
# reuseport spreads new ones): every mapping is read through both workers
my (@clients, %pids);

sub connect_clients {
    my ($nginx) = @_;
    my %on;
    @clients = ();
    for (1 .. 200) {
        my $c = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(5));
        my $pid = $c->get($nginx->url('/hr?k=probe'))->{headers}{'x-pid'} // next;
        push @{ $on{$pid} }, $c if @{ $on{$pid} || [] } < 2;
        last if keys %on >= 2 && !grep { @$_ < 2 } values %on;
    }
    @clients = map { @{ $on{$_} } } sort keys %on;    # A A B B
    return scalar keys %on;
}

# key => instance id (or "status N") for keys 0 .. n-1; with $other, each
# key is asked of the other worker than without
sub mapping {
    my ($method, $n, $nginx, $other) = @_;
    my %map;
    $nginx //= $ng;
    for my $k (0 .. $n - 1) {
        my $c = $clients[($k + ($other ? 2 : 0)) % @clients];
        my $res = $c->get($nginx->url("/$method?k=user-$k"));
        $pids{ $res->{headers}{'x-pid'} // '' }++;
        $map{$k} = $res->{status} == 200 ? ($id_of{ $res->{content} } // $res->{content})
                                          : "status $res->{status}";
    }
    return \%map;
}

sub shares { my ($m) = @_; my %c; $c{$_}++ for values %$m; return \%c }

sub moved {
    my ($one, $two) = @_;
    return [ grep { $one->{$_} ne $two->{$_} } sort { $a <=> $b } keys %$one ];
}

is(connect_clients($ng), 2, 'clients on both workers');

my $N = 2000;
my %orig;

for my $m (qw(hr kt)) {
    $orig{$m} = mapping($m, $N);
    my $c = shares($orig{$m});
    is(scalar(grep { /^i\d\d$/ } keys %$c), 10, "$m: all 10 instances get keys");
    is(scalar(grep { !/^i\d\d$/ } keys %$c), 0, "$m: every request answered");
    my @bad = grep { $c->{$_} < 140 || $c->{$_} > 260 } sort keys %$c;
    is("@bad", '', "$m: each instance gets 200 +- 60 of $N keys")
        or diag(explain($c));
    is_deeply(mapping($m, 500, $ng, 1), { map { $_ => $orig{$m}{$_} } 0 .. 499 },
              "$m: the same key goes to the same instance in the other worker");
}
is(scalar(grep { $_ } keys %pids), 2, 'both workers served every mapping');
cmp_ok(scalar(@{ moved($orig{hr}, $orig{kt}) }), '>', $N / 2,
       'ketama and rendezvous are different mappings');

# the reload that adds Maglev builds its table for the registered service
ok($ng->reload(conf => <<"EOF", wait_old => 1), 'reload adds a Maglev upstream');
    gateway_registry zone=gw:8m;
$ups
$maglev
$front
$backends
EOF
is(connect_clients($ng), 2, 'clients on both new workers');
%pids = ();

for my $m (qw(hr kt)) {
    is_deeply(mapping($m, $N), $orig{$m}, "$m: the same mapping after a reload");
}

$orig{mg} = mapping('mg', $N);
{
    my $c = shares($orig{mg});
    my @bad = grep { $c->{$_} < 140 || $c->{$_} > 260 } sort keys %$c;
    is(scalar(keys %$c), 10, 'mg: all 10 instances get keys');
    is("@bad", '', "mg: each instance gets 200 +- 60 of $N keys")
        or diag(explain($c));
    cmp_ok(scalar(@{ moved($orig{hr}, $orig{mg}) }), '>', $N / 2,
           'mg: its own table, not the rendezvous fallback');
    is_deeply(mapping('mg', 500, $ng, 1), { map { $_ => $orig{mg}{$_} } 0 .. 499 },
              'mg: the same key goes to the same instance in the other worker');
}
is(scalar(grep { $_ } keys %pids), 2, 'after the reload too');
unlike($ng->error_log, qr/has no "hash" table/, 'no table was missing');

# weights 1:2:5 over 2,000 keys: 250 / 500 / 1,250, each within +-20%
for my $i (0 .. 2) {
    is($ng->request('PUT', sprintf('/gateway/services/weighted/instances/i%02d', $i),
                    json => { address => "127.0.0.1:$port[$i]",
                              weight => (1, 2, 5)[$i] })->{status},
       201, 'weighted: instance ' . $i . ', weight ' . (1, 2, 5)[$i]);
}
for my $m (qw(hrw ktw mgw)) {
    my $c = shares(mapping($m, $N));
    my %want = (i00 => 250, i01 => 500, i02 => 1250);
    my @bad = grep { !$c->{$_} || abs($c->{$_} - $want{$_}) > $want{$_} / 5 }
              sort keys %want;
    is("@bad", '', "$m: weights 1:2:5 give their shares of $N keys (+-20%)")
        or diag(explain($c));
    is(scalar(keys %$c), 3, "$m: nothing else answered");
}

# an 11th instance takes at most 1/11 + 2% of the keys, from the others
is(register('i10', $port[10]), 201, 'an 11th instance');
for my $m (qw(hr kt mg)) {
    my $now = mapping($m, $N);
    my $moved = moved($orig{$m}, $now);
    my @elsewhere = grep { $now->{$_} ne 'i10' } @$moved;
    cmp_ok(scalar(@$moved), '>', 0, "$m: the 11th instance gets keys");
    cmp_ok(scalar(@$moved), '<=', $N / 11 + $N * 2 / 100,
           "$m: adding one moved " . scalar(@$moved) . " of $N keys (<= 1/11 + 2%)");
    cmp_ok(scalar(@elsewhere), '<=', $m eq 'mg' ? $N / 100 : 0,
           "$m: moved keys went to the new instance (" . scalar(@elsewhere)
           . ' elsewhere)');
}

# removing it gives back exactly the mapping before
is($ng->request('DELETE', '/gateway/services/users/instances/i10')->{status},
   200, 'the 11th instance is removed');
for my $m (qw(hr kt mg)) {
    is_deeply(mapping($m, $N), $orig{$m}, "$m: removing it moved only its keys back");
}

# a draining instance's keys go elsewhere, nobody else's move, and come back
is($ng->request('PATCH', '/gateway/services/users/instances/i03',
                json => { state => 'drain' })->{status}, 200, 'i03 drains');
my %drained;
for my $m (qw(hr kt mg)) {
    $drained{$m} = mapping($m, $N);
    my $moved = moved($orig{$m}, $drained{$m});
    my @wrong = grep { $orig{$m}{$_} ne 'i03' || $drained{$m}{$_} !~ /^i\d\d$/ }
                @$moved;
    my $own = grep { $orig{$m}{$_} eq 'i03' } keys %{ $orig{$m} };
    is(scalar(@$moved), $own, "$m: the $own keys of i03 moved");
    is(scalar(@wrong), 0, "$m: only they moved, to live instances");
}
is($ng->request('PATCH', '/gateway/services/users/instances/i03',
                json => { state => 'up' })->{status}, 200, 'i03 is up again');
is_deeply(mapping('kt', $N), $orig{kt}, 'kt: its keys came back');

# i03 refuses connections: its requests are retried on the instance a
# drain gives them, in every method; no other key moves
is(register('i03', $dead), 200, 'i03 now listens nowhere');
for my $m (qw(hr kt mg)) {
    is_deeply(mapping($m, $N), $drained{$m},
              "$m: retries went to the next distinct instance, never i03 again");
}

# all but one instance down: every key is answered by it
for my $i (0 .. 9) {
    next if $i == 7;
    $ng->request('PATCH', sprintf('/gateway/services/users/instances/i%02d', $i),
                 json => { state => 'down' });
}
for my $m (qw(hr kt mg)) {
    is_deeply(shares(mapping($m, 300)), { i07 => 300 },
              "$m: with one instance up, it gets every key");
}

# writers in both workers at once: each commit's tables are built without
# the zone lock, and a snapshot that a later commit overtook meanwhile is
# dropped, never published over it.  Weights of 100 make the ring the
# largest (262,144 points), so builds overlap; 4 writers, two per worker,
# each own some instances and end with even ones up, odd ones down, with
# weight 1, the last four writes (one each) at once: the last commit's
# ring (20,480 points) is built faster than the ones it overtook, which
# must not replace it.
{
    my (@kids, @go);
    my @workers = sort { $a <=> $b } $ng->worker_pids;
    pipe(my $ready_r, my $ready_w) or die "pipe: $!";
    for my $w (0 .. 3) {
        pipe(my $go_r, my $go_w) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $ready_r;
            close $go_w;
            # writers 0 and 2 write through one worker, 1 and 3 the other
            my $c;
            for (1 .. 200) {
                $c = HTTP::Tiny->new(keep_alive => 1, timeout => tmo(30));
                my $pid = $c->get($ng->url('/hr?k=probe'))->{headers}{'x-pid'};
                last if defined $pid && $pid == $workers[$w % 2];
            }
            my $ok = 1;
            for my $round (0 .. 7) {
                if ($round == 7) {
                    # the last writes start in every writer at once
                    syswrite($ready_w, "r");
                    sysread($go_r, my $go, 1);
                }
                for my $i (grep { $_ % 4 == $w } 0 .. 9) {
                    my $last = $round == 7 || ($round == 6 && $i >= 4);
                    next if $round == 7 && $i >= 4;
                    my $state = $last ? ($i % 2 ? 'down' : 'up')
                                      : (($round + $i) % 2 ? 'up' : 'down');
                    my $r = $c->request('PATCH',
                        $ng->url(sprintf('/gateway/services/users/instances/i%02d', $i)),
                        { content => json_encode({ state => $state,
                                                   weight => $last ? 1 : 100 }) });
                    $ok = 0 unless $r->{status} == 200;
                }
            }
            POSIX::_exit($ok ? 0 : 1);
        }
        close $go_r;
        push @kids, $pid;
        push @go, $go_w;
    }
    close $ready_w;
    sysread($ready_r, my $r, 1) for 0 .. 3;
    syswrite($_, "g") for @go;
    close $_ for @go;
    my $failed = 0;
    for my $pid (@kids) { waitpid($pid, 0); $failed++ if $? }
    is($failed, 0, 'concurrent writers: every write answered 200');

    my $svc = $ng->get('/gateway/services/users');
    my %state = map { $_->{id} => $_->{state} } @{ json_decode($svc->{content})->{instances} || [] };
    is_deeply(\%state, { map { (sprintf('i%02d', $_) => $_ % 2 ? 'down' : 'up') } 0 .. 9 },
              'concurrent writers: the registry has every last write');

    connect_clients($ng);
    for my $m (qw(kt mg)) {
        my $map = mapping($m, 600);
        is_deeply([ sort keys %{ shares($map) } ], [ qw(i00 i02 i04 i06 i08) ],
                  "$m: routed by the last commit: exactly the up instances get keys");
        is_deeply(mapping($m, 600, $ng, 1), $map,
                  "$m: the same mapping in the other worker");
    }
}

# a zone without room for a Maglev table: rendezvous, logged, still routed
my $small = start_nginx(workers => 2, conf => <<"EOF");
    gateway_registry zone=small:128k;
$ups
$maglev
$front
EOF
for my $i (0 .. 9) {
    $small->request('PUT', sprintf('/gateway/services/users/instances/i%02d', $i),
                    json => { address => "127.0.0.1:$port[$i]" });
}
ok($small->wait_log(qr/zone "small" is full, service "users" has no "hash" table/),
   'a full zone: the missing table is logged');
{
    connect_clients($small);
    my $mg = mapping('mg', 300, $small);
    is_deeply($mg, mapping('hr', 300, $small),
              'without its table, maglev hashes as rendezvous does');
    is(scalar(grep { !/^i\d\d$/ } values %$mg), 0, '... and answers every request');

    # the missing table waits for the service's next change: nothing is
    # rebuilt, committed or logged meanwhile (every tick commits)
    my $missing = sub { scalar(() = $small->error_log =~ /has no "hash" table/g) };
    my $state = sub {
        my $list = json_decode($small->get('/gateway/services')->{content});
        my $svc = json_decode($small->get('/gateway/services/users')->{content});
        return [ $list->{generation}, $svc->{revision} ];
    };
    my ($n0, $s0, $from) = ($missing->(), $state->(), $small->log_size);
    select(undef, undef, undef, 1.5);
    is_deeply($state->(), $s0, 'a missing table: no commit while nothing changes (generation, revision)');
    is($missing->(), $n0, '... nor another log line');
    $small->request('PUT', '/gateway/services/users/instances/i00',
                    json => { address => "127.0.0.1:$port[0]", weight => 2 });
    ok($small->wait_log(qr/has no "hash" table/, from => $from),
       'the next change of the service tries again (and logs it)');
}

done_testing();
