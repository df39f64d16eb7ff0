#!/usr/bin/perl
# The README's configuration and registration examples, run as they are
# written there (only ports change): a real gateway in Redis mode, a real
# Redis, and a backend nginx that answers with the request line it received.
# Requests must reach the backend without the /svc/NAME prefix and otherwise
# byte for byte as the client sent them (%20, %2F, %23, ?query, //), and the
# upstream connection must be kept alive.  conf.d/ routes the same way (the
# embedded one runs as its comment says to render it), and `make run` ends
# cleanly on Ctrl-C, as the README promises.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use GatewayTest;

sub slurp_file {
    my ($path) = @_;
    open my $f, '<', $path or return undef;
    local $/;
    return scalar <$f>;
}

# --- the README's blocks -----------------------------------------------------

my $readme_path = repo_root() . '/README.md';
open my $fh, '<', $readme_path or BAIL_OUT("cannot read $readme_path: $!");
my $readme = do { local $/; <$fh> };
close $fh;

my %block;
while ($readme =~ /^```(\w+)[ \t]+readme=([\w.-]+)[ \t]*\n(.*?)^```[ \t]*$/msg) {
    my ($lang, $name, $text) = ($1, $2, $3);
    ok(!exists $block{$name}, "README block $name appears once");
    $block{$name} = $text;
}
for my $name (qw(config register-admin register-redis)) {
    ok(exists $block{$name}, "README has the $name block")
        or BAIL_OUT("README block $name missing");
}

# the README's example addresses, and what each becomes here
my $redis = start_redis();
my $gw_port = free_port();
my %port = (6379 => $redis->port, 8080 => $gw_port,
            9001 => free_port(), 9002 => free_port());

sub localize {
    my ($text) = @_;
    my $n = 0;
    $n += $text =~ s/\b127\.0\.0\.1:(6379|8080|9001|9002)\b/127.0.0.1:$port{$1}/g;
    $n += $text =~ s/(redis-cli -h 127\.0\.0\.1 -p )6379\b/$1$port{6379}/g;
    return ($text, $n);
}

my ($conf, $nconf) = localize($block{config});
ok($nconf >= 2, 'config: the Redis and listen addresses are the only changes');
unlike($conf, qr/%%/, 'config: no test placeholders');
like($conf, qr/^\s*keepalive\s+\d+;/m, 'config: upstream keepalive');
like($conf, qr/^\s*proxy_http_version 1\.1;/m, 'config: proxy_http_version 1.1');
like($conf, qr/^\s*proxy_set_header Connection "";/m, 'config: Connection ""');

# --- backend: echoes the request line and the connection it came on --------

my ($b1port, $b2port) = ($port{9001}, $port{9002});

my $backend = start_nginx(module => 0, workers => 1,
                          wait_port => $port{9001}, conf => <<"EOF");
    server {
        listen 127.0.0.1:$port{9001};
        listen 127.0.0.1:$port{9002};
        keepalive_requests 1000;
        location / {
            default_type text/plain;
            return 200 "port=\$server_port conn=\$connection n=\$connection_requests line=\$request\\n";
        }
    }
EOF

# --- the gateway: the README's config, one worker so that keepalive means
# one upstream connection ---------------------------------------------------

my $ng = start_nginx(workers => 1, vars => { PORT => $gw_port }, conf => $conf);

# --- registration, verbatim ------------------------------------------------

for my $name (qw(register-admin register-redis)) {
    my ($script, $n) = localize($block{$name});
    ok($n >= 1, "$name: uses the README's addresses");
    my ($code, $out) = run_cmd(cmd => ['bash', '-e', '-c', $script],
                               timeout => 10);
    is($code, 0, "$name: the example runs") or diag($out);
    unlike($out, qr/"error"|EXECABORT|^\(error\)|ERR /m,
           "$name: no error in its output") or diag($out);
    note("$name: $out");
}

my $seen = wait_until(sub {
    my ($s1, undef, $b1) = $ng->get('/svc/users/');
    my ($s2, undef, $b2) = $ng->get('/svc/orders/');
    return $s1 == 200 && $s2 == 200 ? [$b1, $b2] : undef;
}, timeout => 5);
ok($seen, 'both registrations route') or BAIL_OUT('no routing');
like($seen->[0], qr/^port=$b1port /, 'users (admin API) goes to 127.0.0.1:9001');
like($seen->[1], qr/^port=$b2port /, 'orders (redis-cli) goes to 127.0.0.1:9002');

# --- the path as sent ------------------------------------------------------

# raw request lines, so that nothing on the client side re-encodes them
sub raw_get { return raw_get_port($gw_port, @_) }

sub raw_get_port {
    my ($p, $target) = @_;
    my $resp = http_raw($p, "GET $target HTTP/1.1\r\nHost: localhost\r\n"
                                  . "Connection: close\r\n\r\n");
    return (undef, '') unless defined $resp;
    my ($status) = $resp =~ m{^HTTP/1\.[01] (\d{3})};
    my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
    return ($status // 0, $body // '');
}

my @cases = (
    ['/svc/users'                    => '/'],
    ['/svc/users/'                   => '/'],
    ['/svc/users?x=1'                => '/?x=1'],
    ['/svc/users/hello'              => '/hello'],
    ['/svc/users/a%20b'              => '/a%20b'],
    ['/svc/users/a%2Fb/c'            => '/a%2Fb/c'],
    ['/svc/users/a%23b'              => '/a%23b'],
    ['/svc/users/p?q=a%20b&r=%26%3F' => '/p?q=a%20b&r=%26%3F'],
    ['/svc/users/x?'                 => '/x?'],
    ['/svc/users//double'            => '//double'],
    ['/svc/users/a/../b'             => '/a/../b'],
    ['/svc/users/%C3%A9t%C3%A9'      => '/%C3%A9t%C3%A9'],
    ['/svc/users/svc/users/x'        => '/svc/users/x'],
);
for my $c (@cases) {
    my ($sent, $want) = @$c;
    my ($status, $body) = raw_get($sent);
    is($status, 200, "GET $sent: 200");
    like($body, qr/^port=$b1port .* line=GET \Q$want\E HTTP\/1\.1$/m,
         "GET $sent reaches the backend as GET $want") or diag($body);
}

my ($st, $body) = raw_get('/svc/orders/o%20k?a=%2F');
like($body, qr/^port=$b2port .* line=GET \/o%20k\?a=%2F HTTP\/1\.1$/m,
     'the other service gets its path as sent too') or diag($body);

# absolute-form request line: $request_uri is still the path and query
($st, $body) = raw_get("http://localhost/svc/users/abs%20x?y=1");
like($body, qr/ line=GET \/abs%20x\?y=1 HTTP\/1\.1$/m,
     'GET http://host/svc/users/... is routed the same way') or diag($body);

# a dot segment does not switch services: the raw URI names "users", whose
# backend gets /../orders/x as sent (and, being nginx, refuses it with 400)
($st, $body) = raw_get('/svc/users/../orders/x');
is($st, 400, '/svc/users/../orders/x goes to users as sent, not to orders')
    or diag($body);

# the raw URI must name the service: an encoded name is not routed
($st) = raw_get('/svc/us%65rs/x');
is($st, 404, 'an encoded service name (/svc/us%65rs/x) gets 404');
($st) = raw_get('/svc/users%2Fx');
is($st, 404, '/svc/users%2Fx gets 404, not the users service');
($st) = raw_get('/svc/nosuch/x');
is($st, 503, 'a service that is not registered gets 503');

# --- keepalive -------------------------------------------------------------

my (%conns, $max_n);
$max_n = 0;
for my $i (1 .. 10) {
    my ($s, undef, $b) = $ng->get("/svc/users/ka$i");
    my ($conn, $n) = $b =~ /conn=(\d+) n=(\d+)/;
    next unless $s == 200 && defined $conn;
    $conns{$conn}++;
    $max_n = $n if $n > $max_n;
}
is(scalar(keys %conns), 1,
   '10 requests through one worker arrive on one upstream connection')
    or diag(explain(\%conns));
cmp_ok($max_n, '>=', 10, 'the backend counts 10+ requests on that connection');

# --- conf.d/ uses the same routing; the embedded one runs as documented ----

my @maps = $block{config} =~ /^(map \$request_uri .*?^\})/msg;
is(scalar @maps, 2, 'README: two maps of $request_uri');
for my $file (qw(gateway.conf gateway-embedded.conf)) {
    my $path = repo_root() . "/conf.d/$file";
    open my $cf, '<', $path or die "$path: $!";
    my $text = do { local $/; <$cf> };
    close $cf;
    for my $m (@maps) {
        ok(index($text, $m) >= 0, "conf.d/$file has the README's "
                                  . ($m =~ /gw_service/ ? 'service' : 'URI') . ' map');
    }
}

my $emb_port = free_port();
my ($sed) = do {
    open my $cf, '<', repo_root() . '/conf.d/gateway-embedded.conf' or die $!;
    local $/;
    <$cf> =~ /^#   (sed .*?gateway-embedded\.conf)\s*>/ms;
};
ok($sed, 'conf.d/gateway-embedded.conf shows how to render it');
$sed =~ s/\\\n#\s*/ /g;
$sed =~ s/8080/$emb_port/g;
$sed =~ s{\|/var/lib/nginx/gateway\|}{|%%NGINX_DIR%%|}g;
note("render: $sed");
my $state_dir = test_dir();
my ($rc, $rendered) = run_cmd(cmd => ['bash', '-c', $sed],
                              dir => repo_root(), timeout => 10);
is($rc, 0, 'the documented sed renders it');
like($rendered, qr/state_file=%%NGINX_DIR%%\/registry\.state;/,
     'state_file path as documented, only the directory replaced');
my $emb = start_nginx(workers => 1, vars => { PORT => $emb_port },
                      conf => $rendered);
my ($s) = $emb->request('PUT', '/gateway/services/users/instances/u1',
                        body => qq({"address":"127.0.0.1:$port{9001}"}));
is($s, 201, 'embedded: registered through the admin API');
($s, $body) = raw_get_port($emb_port, '/svc/users/a%20b?c=%23');
like($body, qr/ line=GET \/a%20b\?c=%23 HTTP\/1\.1$/m,
     'embedded conf.d: the path arrives as sent') or diag($body);
ok(wait_until(sub { -s $emb->dir . '/registry.state' }, timeout => 3),
   'embedded conf.d: the registry is saved to the state file');

# --- make run: Ctrl-C ends it cleanly, KEEP_TMP=1 keeps its directory ------

SKIP: {
    skip 'make run is not run in valgrind mode', 6 if valgrind_mode();

    my $log = test_dir() . '/make-run.out';
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        # like a foreground job in a terminal: own process group, SIGINT on
        setpgrp(0, 0);
        $SIG{INT} = 'DEFAULT';
        open STDOUT, '>', $log or die "$log: $!";
        open STDERR, '>&', \*STDOUT or die "stderr: $!";
        $ENV{SKIP_DEPS} = 1;
        $ENV{KEEP_TMP} = 1;
        exec 'make', '--no-print-directory', '-C', repo_root(), 'run';
        die "exec make: $!";
    }
    my $ready = wait_until(sub { (slurp_file($log) // '') =~ /Press Ctrl-C/ },
                           timeout => 90, interval => 0.2);
    ok($ready, 'make run is up and waits for Ctrl-C');
    kill 'INT', -$pid;                  # what the terminal does on Ctrl-C
    my $status = wait_until(sub {
        my $r = waitpid($pid, POSIX::WNOHANG());
        return $r == $pid ? [$?] : undef;
    }, timeout => 30);
    if (!$status) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    my $out = slurp_file($log) // '';
    ok($status, 'make run ended after Ctrl-C') or diag($out);
    # make itself dies of the SIGINT it got too; what matters is that the
    # script exits 0, so make reports no error
    unlike($out, qr/make: \*\*\*/, 'no "make: *** ... Error" line') or diag($out);
    like($out, qr/==> stopping .*redis/, 'everything it started was stopped');
    my ($kept) = $out =~ /^\s*kept (\S+)$/m;
    ok($kept && -d $kept, 'KEEP_TMP=1 kept the temporary directory')
        or diag($out);
    ok($kept && -s "$kept/gateway/error.log", 'with the gateway\'s logs');
    if ($kept && $kept =~ m{/ngx_gateway\.[A-Za-z0-9]+$}) {
        system('rm', '-rf', $kept);
    }
}

done_testing();
