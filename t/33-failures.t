#!/usr/bin/perl
# Failures: passive ejection, its cap and panic mode, retry budgets and
# idempotent retries, with real backends that fail on demand, 4 workers.
#
# * One instance of three is killed under a steady GET load from several
#   clients: no client sees an error, the dead instance gets at most
#   failures x workers attempts (counted from nginx's own "connect()
#   failed" lines) before it is ejected, and once it listens again it
#   returns after its trial request.
# * A black-holed instance (a listener that never accepts: connects time
#   out) is ejected for "timeout".
# * With every instance failing, the backends' own logs count at most
#   (1 + percent) x requests + min attempts with a retry budget, and more
#   without one.
# * A POST is not retried after it was sent; with an Idempotency-Key and
#   gateway_retry_idempotency_key on, it is.
# * The ejection cap holds with two dead instances of four; panic mode
#   sends traffic to an ejected instance again.
# * Retries in flight are given back when the workers that hold them are
#   killed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

expect_log_errors(qr/worker process \d+ exited on signal 9/);

my $WORKERS = 4;
my $DIR = test_dir();

# --- backends ---------------------------------------------------------------

# answers every request after $o{delay} s with $o{status} and its name, or
# with close => 1 reads it and closes the connection, or with once => 1
# answers the first request of a connection, keeps it open and closes it
# when a second one comes (a server that closed an idle connection, as a
# proxy that reuses it sees it); each request is one line in $o{log}
sub backend {
    my (%o) = @_;
    return start_backend(sub { serve($_[0], %o) }, port => $o{port});
}

sub serve {
    my ($ls, %o) = @_;
    my $sel = IO::Select->new($ls);
    my (%buf, %due, %served);
    my $status = $o{status} // 200;
    my $body = "$o{name}\n";
    open(my $log, '>>', $o{log}) or die "$o{log}: $!";
    while (1) {
        for my $s ($sel->can_read(0.005)) {
            if ($s == $ls) {
                my $c = $ls->accept or next;
                $sel->add($c);
                $buf{$c} = '';
                next;
            }
            my $n = sysread($s, $buf{$s}, 65536, length $buf{$s});
            my $head;
            if ($n && $buf{$s} =~ /^(.*?)\r\n\r\n/s) {
                $head = $1;
                my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
                $head = undef
                    if length($buf{$s}) < length($head) + 4 + ($len // 0);
            }
            if ($head) {
                my ($line) = $head =~ /^([^\r\n]*)/;
                syswrite($log, "$line\n");
                if (!$o{close} && !($o{once} && $served{$s}++)) {
                    $due{$s} = [$s, time + ($o{delay} // 0)];
                    $buf{$s} = '';
                    next;
                }
            }
            next if $n && !$head;
            $sel->remove($s);
            delete $buf{$s};
            delete $due{$s};
            delete $served{$s};
            close $s;
        }
        for my $k (keys %due) {
            my ($s, $t) = @{ $due{$k} };
            next if time < $t;
            delete $due{$k};
            if ($o{once}) {
                syswrite($s, "HTTP/1.1 $status X\r\nContent-Length: "
                             . length($body) . "\r\n\r\n" . $body);
                next;
            }
            syswrite($s, "HTTP/1.1 $status X\r\nContent-Length: "
                         . length($body) . "\r\nConnection: close\r\n\r\n"
                         . $body);
            $sel->remove($s);
            delete $buf{$k};
            close $s;
        }
    }
}

sub lines {
    my ($file) = @_;
    open(my $fh, '<', $file) or return 0;
    my $n = 0;
    $n++ while <$fh>;
    return $n;
}

# --- clients ----------------------------------------------------------------

my $LOAD = 0;

# one request on its own connection: (status, seconds, body)
sub one_request {
    my ($port, $method, $path, $headers) = @_;
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => tmo(10)) or return (0, time - $t0, '');
    my $req = "$method $path HTTP/1.0\r\nHost: gw\r\n";
    $req .= "$_: $headers->{$_}\r\n" for sort keys %{ $headers || {} };
    $req .= "Content-Length: 5\r\n\r\nhello" if $method eq 'POST';
    $req .= "\r\n" if $method ne 'POST';
    syswrite($s, $req);
    my $resp = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(tmo(10))) {
        my $n = sysread($s, $resp, 65536, length $resp);
        last unless $n;
    }
    close $s;
    my ($st) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return ($st // 0, time - $t0, $body // '');
}

# $o{clients} processes send GETs for $o{seconds} s or $o{requests} each
sub load_start {
    my (%o) = @_;
    my $tag = ++$LOAD;
    my @pids;
    for my $k (1 .. $o{clients}) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open(my $fh, '>', "$DIR/load.$tag.$k") or POSIX::_exit(1);
            my $end = time + ($o{seconds} // 1e9);
            my $i = 0;
            while ($o{requests} ? $i < $o{requests} : time < $end) {
                $i++;
                my ($st, $t, $body) = one_request($o{port},
                    $o{method} // 'GET', $o{path}, $o{headers});
                # the backend's name, or "-" for nginx's own pages
                $body = $body =~ /^(\w+)\n\z/ ? $1 : '-';
                printf $fh "%d %.4f %s\n", $st, $t, $body;
            }
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return { tag => $tag, pids => \@pids, clients => $o{clients} };
}

# { n => requests, status => { code => count }, by => { body => count },
#   lat => [sorted seconds] }
sub load_wait {
    my ($l) = @_;
    waitpid($_, 0) for @{ $l->{pids} };
    my %r = (n => 0, status => {}, by => {}, lat => []);
    for my $k (1 .. $l->{clients}) {
        open(my $fh, '<', "$DIR/load.$l->{tag}.$k") or next;
        while (<$fh>) {
            my ($st, $t, $body) = split ' ', $_, 3;
            chomp $body;
            $r{n}++;
            $r{status}{$st}++;
            $r{by}{$body}++;
            push @{ $r{lat} }, $t;
        }
    }
    @{ $r{lat} } = sort { $a <=> $b } @{ $r{lat} };
    return \%r;
}

sub load { return load_wait(load_start(@_)) }

sub errors {
    my ($r) = @_;
    my $n = 0;
    $n += $r->{status}{$_} for grep { $_ != 200 } keys %{ $r->{status} };
    return $n;
}

sub show { json_encode($_[0]) }

# --- the gateway ------------------------------------------------------------

sub register {
    my ($ng, $svc, $id, $port) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => "127.0.0.1:$port" });
    ok($r->{status} == 201 || $r->{status} == 200, "register $svc/$id")
        or diag($r->{content});
}

sub service {
    my ($ng, $svc) = @_;
    my $r = $ng->get("/gateway/services/$svc");
    return json_decode($r->{content}) || {};
}

sub instance {
    my ($ng, $svc, $id) = @_;
    my ($i) = grep { $_->{id} eq $id } @{ service($ng, $svc)->{instances} };
    return $i || {};
}

# nginx's own lines for attempts that failed on that port, after $from (a
# connect to a backend that is stopping may be refused or reset)
sub failed_attempts {
    my ($ng, $port, $from, $what) = @_;
    my $text = substr($ng->error_log, $from);
    my $refused = join '|', '111: Connection refused',
                            '104: Connection reset by peer';
    my $re = $what eq 'timeout'
        ? qr/upstream timed out \(110: Connection timed out\)/
        : qr/connect\(\) failed \((?:$refused)\)/;
    my $n = () = $text =~ /$re[^\n]*upstream: "http:\/\/127\.0\.0\.1:$port\//g;
    return $n;
}

my $FAILURES = 5;

my $conf = <<"EOF";
    gateway_registry zone=gw:4m;

    upstream gw_app {
        gateway_service app;
        gateway_eject failures=$FAILURES time=3s max_time=60s max_percent=50;
    }

    upstream gw_hole {
        gateway_service hole;
        gateway_eject failures=3 time=30s max_percent=50;
    }

    upstream gw_budget {
        gateway_service down;
        gateway_retry_budget percent=20 min=0;
    }

    upstream gw_budget_min {
        gateway_service down;
        gateway_retry_budget percent=20 min=3;
    }

    upstream gw_stale {
        gateway_service stale;
        gateway_eject failures=1 time=30s max_percent=100 panic=0;
        keepalive 4;
    }

    upstream gw_nobudget {
        gateway_service down;
    }

    upstream gw_post {
        gateway_service post;
    }

    upstream gw_post_key {
        gateway_service post;
        gateway_retry_idempotency_key on;
    }

    upstream gw_cap {
        gateway_service cap;
        gateway_eject failures=2 time=30s max_percent=25 panic=0;
    }

    upstream gw_nopanic {
        gateway_service nopanic;
        gateway_eject failures=2 time=30s max_percent=100 panic=0;
    }

    upstream gw_panic {
        gateway_service panic;
        gateway_eject failures=2 time=30s max_percent=100 panic=60%;
    }

    upstream gw_kill {
        gateway_service kill;
        gateway_retry_budget percent=20 min=100;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        proxy_connect_timeout 300ms;
        proxy_read_timeout 10s;

        location /gateway/ {
            gateway_admin;
        }

        location /app/ {
            proxy_pass http://gw_app;
        }

        location /hole/ {
            proxy_pass http://gw_hole;
            proxy_read_timeout 1s;
        }

        location /budget/ {
            proxy_pass http://gw_budget;
            proxy_next_upstream error timeout http_503;
        }

        location /budgetmin/ {
            proxy_pass http://gw_budget_min;
            proxy_next_upstream error timeout http_503;
        }

        location /stale/ {
            proxy_pass http://gw_stale;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /nobudget/ {
            proxy_pass http://gw_nobudget;
            proxy_next_upstream error timeout http_503;
        }

        location /post/ {
            proxy_pass http://gw_post;
        }

        location /postkey/ {
            proxy_pass http://gw_post_key;
        }

        location /cap/ {
            proxy_pass http://gw_cap;
        }

        location /nopanic/ {
            proxy_pass http://gw_nopanic;
        }

        location /panic/ {
            proxy_pass http://gw_panic;
        }

        location /kill/ {
            proxy_pass http://gw_kill;
            proxy_next_upstream error timeout http_503;
        }
    }
EOF

# --- bad directives ---------------------------------------------------------

for my $bad ('gateway_eject failures=0;', 'gateway_eject statuses=99;',
             'gateway_eject time=5s max_time=1s;', 'gateway_eject panic=101;',
             'gateway_eject nonsense;', 'gateway_retry_budget percent=x;',
             'gateway_retry_budget min=-1;')
{
    my ($directive) = $bad =~ /^(\S+)/;
    my ($rc, $out) = nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u { gateway_service s; $bad }
EOF
    ok($rc != 0 && $out =~ /"\Q$directive\E"/, "nginx -t refuses '$bad'")
        or diag($out);
}

# a default gives way to the other limit given: time=400s alone (the
# default max_time is 300s), max_time=10s alone (the default time is 30s)
for my $good ('gateway_eject time=400s;', 'gateway_eject max_time=10s;') {
    my ($rc, $out) = nginx_test_config(conf => <<"EOF");
    gateway_registry zone=gw:1m;
    upstream u { gateway_service s; $good }
EOF
    is($rc, 0, "nginx -t accepts '$good'") or diag($out);
}

my $ng = start_nginx(conf => $conf, workers => $WORKERS);

# --- one dead instance of three ---------------------------------------------

{
    my @port = map { backend(name => "a$_", log => "$DIR/a$_.log") } 1 .. 3;
    register($ng, 'app', "a$_", $port[$_ - 1]) for 1 .. 3;

    my $from = $ng->log_size;
    my $l = load_start(port => $ng->port, path => '/app/x', clients => 8,
                       seconds => 3);
    sleep 0.5;
    stop_backend($port[2]);
    my $r = load_wait($l);

    is(errors($r), 0, "dead instance: no client error in $r->{n} requests")
        or diag(show($r->{status}));
    my $dead = failed_attempts($ng, $port[2], $from, 'connect');
    ok($dead >= $FAILURES && $dead <= $FAILURES * $WORKERS,
       "dead instance: $dead attempts on it, at least failures = $FAILURES "
       . "(each upstream's failure counted once), at most failures x "
       . "workers = " . $FAILURES * $WORKERS);
    like($ng->error_log, qr/gateway: instance "a3" \(127\.0\.0\.1:$port[2]\) of service "app" ejected for 3000ms \(ejection 1, last failure: connect\)/,
         'dead instance: one log line says it was ejected');
    my $ej = instance($ng, 'app', 'a3')->{ejection} || {};
    ok($ej->{count} >= 1 && $ej->{reason} eq 'connect'
       && $ej->{until} > $ej->{since},
       'dead instance: the admin API shows its ejection') or diag(show($ej));
    is(service($ng, 'app')->{ejected}, 1, '... and the service one ejected');

    # it listens again: its trial request brings it back
    backend(name => 'a3', log => "$DIR/a3.log", port => $port[2]);
    my $l2 = load_start(port => $ng->port, path => '/app/x', clients => 2,
                        seconds => 6);
    my $back = $ng->wait_log(
        qr/instance "a3" \(127\.0\.0\.1:$port[2]\) of service "app" returns: its trial request succeeded/,
        from => $from, timeout => tmo(10));
    $r = load_wait($l2);
    is(errors($r), 0, 'recovery: no client error');
    ok($back, 'recovered instance: a log line says it returns');
    $r = load(port => $ng->port, path => '/app/x', clients => 4,
              requests => 30);
    is(errors($r), 0, 'recovered instance: no client error');
    ok(($r->{by}{a3} // 0) > 0, "recovered instance gets requests again: "
       . ($r->{by}{a3} // 0) . " of $r->{n}") or diag(show($r->{by}));
    is(instance($ng, 'app', 'a3')->{ejection}{state}, 'in',
       'recovered instance: its state is "in" again');
    is(service($ng, 'app')->{ejected}, 0, '... and the service has none out');
}

# --- a black-holed instance: its connects time out ---------------------------

{
    my @port = map { backend(name => "h$_", log => "$DIR/h$_.log") } 1 .. 2;
    my $hp = free_port();
    my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $hp, Listen => 0, ReuseAddr => 1, Proto => 'tcp')
        or die "listen: $!";
    # the one connection its queue takes; every later SYN goes unanswered
    my $filler = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $hp, Proto => 'tcp', Timeout => 1);
    register($ng, 'hole', "h$_", $port[$_ - 1]) for 1 .. 2;
    register($ng, 'hole', 'h3', $hp);

    my $from = $ng->log_size;
    my $r = load(port => $ng->port, path => '/hole/x', clients => 6,
                 seconds => 3);
    is(errors($r), 0, "black hole: no client error in $r->{n} requests")
        or diag(show($r->{status}));
    my $n = failed_attempts($ng, $hp, $from, 'timeout');
    ok($n >= 3 && $n <= 3 * $WORKERS,
       "black hole: $n timeouts, at most failures x workers = "
       . 3 * $WORKERS);
    my $ej = instance($ng, 'hole', 'h3')->{ejection} || {};
    is($ej->{state}, 'out', 'black hole: it is ejected');
    is($ej->{reason}, 'timeout', '... for a timeout');
    my @lat = @{ $r->{lat} };
    my $slow = grep { $_ >= 0.3 } @lat;
    diag(sprintf "black hole: p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
         . "%d of %d requests waited for a connect timeout (300 ms)",
         1000 * $lat[int(@lat / 2)], 1000 * $lat[int(@lat * 0.99)],
         1000 * $lat[-1], $slow, scalar @lat);
    close $filler if $filler;
    close $hole;
}

# --- retry budget: every instance fails --------------------------------------

{
    my @port = map { backend(name => "d$_", log => "$DIR/d$_.log",
                             status => 503, delay => 0.2) } 1 .. 3;
    register($ng, 'down', "d$_", $port[$_ - 1]) for 1 .. 3;
    my $attempts = sub {
        my $n = 0;
        $n += lines("$DIR/d$_.log") for 1 .. 3;
        return $n;
    };

    my $a0 = $attempts->();
    # slow answers keep many first attempts in flight, so that "percent"
    # (not "min") sets the budget
    my $r = load(port => $ng->port, path => '/budget/x', clients => 40,
                 seconds => 3);
    my $a = $attempts->() - $a0;
    my $bound = int(1.2 * $r->{n});
    is($r->{status}{503} // 0, $r->{n},
       "budget: every one of $r->{n} requests gets the instances' 503");
    ok($a <= $bound, "budget: $a attempts in the backends' logs, at most "
       . "(1 + 20%) x $r->{n} + 0 = $bound");
    my $svc = service($ng, 'down');
    ok($svc->{retries}{budget_spent} > 0,
       "budget: refused retries are counted: $svc->{retries}{budget_spent}");
    is($svc->{retries}{in_flight}, 0, 'budget: no retry left in flight');
    like($ng->error_log, qr/retry budget of service "down" is spent/,
         'budget: the log says so');
    # a listed status is counted as one, not as another error
    my $f = instance($ng, 'down', 'd1')->{failures} || {};
    ok(($f->{status} // 0) > 0 && ($f->{other} // 0) == 0,
       "budget: the instances' 503s are counted as status failures: "
       . "status $f->{status}, other $f->{other}");

    # min: a lone client's requests are always retried, on all three
    $a0 = $attempts->();
    $r = load(port => $ng->port, path => '/budgetmin/x', clients => 1,
              requests => 10);
    is($attempts->() - $a0, 30, 'budget min=3: each of 10 requests of a '
       . 'lone client tries all three instances');

    # the same without a budget: a retry storm, all three tried
    $a0 = $attempts->();
    $r = load(port => $ng->port, path => '/nobudget/x', clients => 30,
              seconds => 1);
    $a = $attempts->() - $a0;
    ok($a > int(1.2 * $r->{n} + 3),
       "no budget: $a attempts for $r->{n} requests, above the bound");
}

# --- a POST is retried only with an Idempotency-Key and the opt-in ------------

{
    my $pa = backend(name => 'pa', log => "$DIR/pa.log", close => 1);
    my $pb = backend(name => 'pb', log => "$DIR/pb.log");
    register($ng, 'post', 'pa', $pa);
    register($ng, 'post', 'pb', $pb);

    my $case = sub {
        my ($path, $headers) = @_;
        my $a0 = lines("$DIR/pa.log");
        my $r = load(port => $ng->port, method => 'POST', path => $path,
                     headers => $headers, clients => 1, requests => 10);
        return ($r, lines("$DIR/pa.log") - $a0);
    };

    my ($r, $hit) = $case->('/post/x', { 'Idempotency-Key' => 'k1' });
    ok($hit > 0, "no opt-in: $hit POSTs reached the failing instance");
    is($r->{status}{502} // 0, $hit, '... and each of them got 502: '
       . 'not retried after it was sent') or diag(show($r->{status}));

    ($r, $hit) = $case->('/postkey/x', {});
    is($r->{status}{502} // 0, $hit,
       "opt-in without a key: the $hit that failed are not retried");

    ($r, $hit) = $case->('/postkey/x', { 'Idempotency-Key' => 'k2' });
    ok($hit > 0, "opt-in with a key: $hit POSTs reached the failing instance");
    is($r->{status}{200} // 0, 10, '... and all 10 succeed: retried')
        or diag(show($r->{status}));

    ($r, $hit) = $case->('/postkey/x', { 'Idempotency-Key' => "a\x01b" });
    is($r->{status}{502} // 0, $hit,
       'a key with a control character does not count');
}

# --- the ejection cap: two dead instances of four, max_percent=25 -------------

{
    my @port = map { backend(name => "c$_", log => "$DIR/c$_.log") } 1 .. 2;
    my @dead = (free_port(), free_port());
    register($ng, 'cap', "c$_", $port[$_ - 1]) for 1 .. 2;
    register($ng, 'cap', 'c3', $dead[0]);
    register($ng, 'cap', 'c4', $dead[1]);

    my $r = load(port => $ng->port, path => '/cap/x', clients => 6,
                 seconds => 2);
    is(errors($r), 0, "cap: no client error in $r->{n} requests");
    my $svc = service($ng, 'cap');
    is($svc->{ejected}, 1, 'cap: one instance of four is ejected, no more');
    my @out = grep { ($_->{ejection}{state} // '') eq 'out' }
              @{ $svc->{instances} };
    is(scalar @out, 1, '... one shows state "out"');
    like($ng->error_log,
         qr/of service "cap" is not ejected: 1 of its 4 instances are \(max_percent=25\)/,
         'cap: the log says why the other one is not');

    # another address is another host: the ejection does not follow it
    my $id = $out[0]{id};
    register($ng, 'cap', $id, $port[0]);
    my $i = instance($ng, 'cap', $id);
    ok(!exists $i->{ejection}, "cap: $id at a new address is not ejected")
        or diag(show($i));
    is(service($ng, 'cap')->{ejected}, 0, '... and its place in the cap is free');
}

# --- a stale keepalive connection is not a failure ---------------------------

{
    my @port = map { backend(name => "k$_", log => "$DIR/k$_.log", once => 1) }
               1 .. 2;
    register($ng, 'stale', "k$_", $port[$_ - 1]) for 1 .. 2;
    my $r = load(port => $ng->port, path => '/stale/x', clients => 1,
                 requests => 20);
    is(errors($r), 0, "stale: $r->{n} requests on reused connections succeed");
    my $tries = lines("$DIR/k1.log") + lines("$DIR/k2.log");
    ok($tries > $r->{n}, "stale: $tries attempts, some on connections the "
       . 'instances had closed');
    my @ej = grep { $_->{ejection} } @{ service($ng, 'stale')->{instances} };
    is(scalar @ej, 0, 'stale: no instance is ejected (failures=1)')
        or diag(show(\@ej));
}

# --- panic mode: one of two ejected, below panic=60% -------------------------

{
    for my $svc (qw(nopanic panic)) {
        my $p = backend(name => "${svc}1", log => "$DIR/$svc.log");
        my $dead = free_port();
        register($ng, $svc, 'ok', $p);
        register($ng, $svc, 'dead', $dead);

        my $r = load(port => $ng->port, path => "/$svc/x", clients => 4,
                     seconds => 1);
        is(errors($r), 0, "$svc: no client error");
        is(instance($ng, $svc, 'dead')->{ejection}{state}, 'out',
           "$svc: the dead instance is ejected");

        my $from = $ng->log_size;
        $r = load(port => $ng->port, path => "/$svc/x", clients => 4,
                  requests => 25);
        is(errors($r), 0, "$svc: no client error after the ejection");
        my $n = failed_attempts($ng, $dead, $from, 'connect');
        if ($svc eq 'panic') {
            ok($n > 10, "panic: the ejected instance gets traffic again "
               . "($n attempts in 100 requests)");
            like($ng->error_log,
                 qr/service "panic" is in panic mode: 1 of its 2 up instances are not ejected, below panic=60%/,
                 'panic: the log says so');
        } else {
            is($n, 0, 'no panic: the ejected instance gets no attempt');
        }
    }
}

# --- retries in flight in killed workers are given back ----------------------

{
    my $kf = backend(name => 'kf', log => "$DIR/kf.log", status => 503);
    my $ks = backend(name => 'ks', log => "$DIR/ks.log", delay => tmo(60));
    register($ng, 'kill', 'kf', $kf);
    register($ng, 'kill', 'ks', $ks);

    # each request fails on kf and waits on ks, or waits on ks at once
    my @c;
    for (1 .. 8) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ng->port, Proto => 'tcp', Timeout => tmo(5))
            or die "connect: $!";
        syswrite($s, "GET /kill/x HTTP/1.0\r\nHost: gw\r\n\r\n");
        push @c, $s;
    }
    my $inflight = sub { service($ng, 'kill')->{retries}{in_flight} // -1 };
    ok(wait_until(sub { lines("$DIR/ks.log") == 8 }, timeout => 5),
       'kill: 8 requests wait on the slow instance');
    my $retries = $inflight->();
    ok($retries > 0, "kill: $retries of them are retries in flight");

    my @old = $ng->worker_pids;
    kill 'KILL', @old;
    my %old = map { $_ => 1 } @old;
    ok(wait_until(sub {
        my @now = $ng->worker_pids;
        @now == $WORKERS && !grep { $old{$_} } @now;
    }, timeout => 10), 'kill: the master respawned the killed workers');
    ok(wait_until(sub { $inflight->() == 0 }, timeout => 5),
       'kill: the retries in flight are given back')
        or diag('in flight: ' . $inflight->());
    close $_ for @c;
}

done_testing();
