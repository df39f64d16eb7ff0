#!/usr/bin/perl
# Upstream protocols through gateway upstreams: proxy_pass https:// resumes
# TLS sessions per instance (a cache per worker, bounded by
# gateway_ssl_sessions, nothing stale offered as instances churn), and
# grpc_pass grpc:// and grpcs:// reach instances over HTTP/2.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $dir = test_dir();

my ($code, $out) = run_cmd(cmd => [
    'openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=backend.test', '-keyout', "$dir/backend.key",
    '-out', "$dir/backend.crt"]);
is($code, 0, 'a self-signed certificate for the TLS backends') or diag($out);

open my $js, '>', "$dir/grpc.js" or die "$dir/grpc.js: $!";
print {$js} <<'EOF';
function unary(r) {
    var body = r.requestBuffer;
    r.status = 200;
    r.headersOut['Content-Type'] = 'application/grpc';
    r.headersOut['X-Body'] = String(body ? body.length : 0);
    r.sendHeader();
    r.send('grpc-echo\n');
    r.finish();
}
export default {unary};
EOF
close $js;

my $MAX = 4;
my %vars = map { $_ => free_port() } qw(H2 GRPC GRPCS);

my $tls = <<'EOF';
        ssl_certificate %%TESTDIR%%/backend.crt;
        ssl_certificate_key %%TESTDIR%%/backend.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000;
        location / {
            add_header X-Conn $connection;
            return 200 "$server_port $ssl_session_reused $ssl_protocol\n";
        }
EOF

my $conf = <<"EOF";
    gateway_registry zone=gw:1m;
    gateway_ssl_sessions %%MAX%%;

    upstream gw {
        gateway_service \$gw_service;
    }

    upstream gw_keepalive {
        gateway_service \$gw_service;
        keepalive 4;
    }

    upstream grpc_tls {
        gateway_service grpc-secure;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%H2%% http2;

        location /gateway/ {
            gateway_admin;
        }

        location ~ ^/tls/(?<gw_service>[a-z0-9-]+)\$ {
            proxy_pass https://gw;
            add_header X-Upstream \$upstream_addr always;
        }

        location ~ ^/tls13/(?<gw_service>[a-z0-9-]+)\$ {
            proxy_pass https://gw;
            proxy_ssl_protocols TLSv1.3;
        }

        location ~ ^/keepalive/(?<gw_service>[a-z0-9-]+)\$ {
            proxy_pass https://gw_keepalive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location ~ ^/noreuse/(?<gw_service>[a-z0-9-]+)\$ {
            proxy_pass https://gw;
            proxy_ssl_session_reuse off;
        }

        location /test.Echo/ {
            set \$gw_service grpc-echo;
            grpc_pass grpc://gw;
        }

        location /test.Secure/ {
            grpc_pass grpcs://grpc_tls;
        }
    }

    # three TLS backends; each server block has its own session ticket keys
    server {
        listen 127.0.0.1:%%PORT2%% ssl;
$tls
    }

    server {
        listen 127.0.0.1:%%PORT3%% ssl;
$tls
    }

    server {
        listen 127.0.0.1:%%PORT4%% ssl;
        listen 127.0.0.1:%%PORT5%% ssl;
        listen 127.0.0.1:%%PORT6%% ssl;
        listen 127.0.0.1:%%PORT7%% ssl;
        listen 127.0.0.1:%%PORT8%% ssl;
$tls
    }

    # gRPC-shaped backends over HTTP/2, cleartext and TLS: they read the
    # request (an answer before the body is read resets the stream) and
    # answer without a length, the status in a trailer
    js_import grpc from %%TESTDIR%%/grpc.js;

    server {
        listen 127.0.0.1:%%GRPC%% http2;
        location / {
            add_header X-Backend "\$server_protocol \$request_method \$request_uri \$content_type te=\$http_te";
            add_trailer grpc-status 0;
            js_content grpc.unary;
        }
    }

    server {
        listen 127.0.0.1:%%GRPCS%% ssl http2;
        ssl_certificate %%TESTDIR%%/backend.crt;
        ssl_certificate_key %%TESTDIR%%/backend.key;
        location / {
            add_header X-Backend "\$server_protocol \$ssl_session_reused";
            add_trailer grpc-status 0;
            js_content grpc.unary;
        }
    }
EOF

# one worker: the session cache is per worker process
my $ng = start_nginx(conf => $conf, workers => 1, debug => 1, js => 1,
                     vars => { %vars, MAX => $MAX });
my ($A, $B, @C) = map { $ng->port("PORT$_") } 2 .. 8;

sub register {
    my ($svc, $id, $port) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => "127.0.0.1:$port" });
    return $r->{status};
}

sub deregister {
    my ($svc, $id) = @_;
    my $r = $ng->request('DELETE', "/gateway/services/$svc/instances/$id");
    return $r->{status};
}

# "PORT REUSED PROTOCOL" from the backend, e.g. "20001 r TLSv1.2"
sub hit {
    my ($path) = @_;
    my ($status, $h, $body) = $ng->get($path);
    return "status $status: $body" unless $status == 200;
    chomp $body;
    return $body;
}

sub hits { my ($path, $n) = @_; return [ map { hit($path) } 1 .. $n ] }

########################################################################
# one instance: the first request makes a session, the next ones resume it

is(register('one', 'a', $A), 201, 'register one/a');
is(hit('/tls/one'), "$A . TLSv1.2", 'first request: a full handshake');
is_deeply(hits('/tls/one', 3), [ ("$A r TLSv1.2") x 3 ],
          'later requests resume the session');

# two instances whose backends do not share ticket keys: one session each
is(register('two', 'p', $A), 201, 'register two/p');
is(register('two', 'q', $B), 201, 'register two/q');
my %seen;
for my $r (@{ hits('/tls/two', 6) }) {
    my ($port, $reused) = split ' ', $r;
    push @{ $seen{$port} }, $reused;
}
is_deeply(\%seen, { $A => [qw(. r r)], $B => [qw(. r r)] },
          'two instances: each resumes its own session');

########################################################################
# churn: a new instance gets no session of an old one

is(deregister('one', 'a'), 200, 'deregister one/a');
is(register('one', 'a', $A), 201, 'register one/a again, same address');
is(hit('/tls/one'), "$A . TLSv1.2",
   'the new instance is not offered the old one\'s session');
is(hit('/tls/one'), "$A r TLSv1.2", 'it makes and resumes its own');

# an instance that moves gets no session made with its old address
# ($C[0] and $C[1] share ticket keys: an offered session would resume)
is(register('one', 'a', $C[0]), 200, 'one/a moves to another backend');
is(hit('/tls/one'), "$C[0] . TLSv1.2", 'full handshake at the new address');
is(hit('/tls/one'), "$C[0] r TLSv1.2", 'resumed there');
is(register('one', 'a', $C[1]), 200, 'one/a moves again, same ticket keys');
is(hit('/tls/one'), "$C[1] . TLSv1.2",
   'the session of the old address is not offered');

# each location (TLS client context) has its own sessions
is(hit('/tls13/one'), "$C[1] . TLSv1.3", 'TLSv1.3 location: full handshake');
is(hit('/tls13/one'), "$C[1] r TLSv1.3",
   'TLSv1.3 resumes (a ticket that came after the handshake)');
is(hit('/tls/one'), "$C[1] r TLSv1.2",
   'the TLSv1.2 location still resumes its own session');
is_deeply(hits('/noreuse/one', 2), [ ("$C[1] . TLSv1.2") x 2 ],
          'proxy_ssl_session_reuse off: never resumed');

# keepalive wraps the gateway balancer: its connections are kept, TLS ones
my %conns;
for (1 .. 3) {
    my ($status, $h, $body) = $ng->get('/keepalive/one');
    $conns{ $status == 200 ? $h->{'x-conn'} : "status $status" }++;
}
is(scalar(keys %conns), 1, 'keepalive: three requests, one TLS connection')
    or diag(explain(\%conns));

# two workers, one cache each: at most one full handshake per worker
my $ng2 = start_nginx(workers => 2, conf => <<'EOF');
    gateway_registry zone=gw2:1m;

    upstream one {
        gateway_service one;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ {
            gateway_admin;
        }
        location / {
            proxy_pass https://one;
        }
    }
EOF
is($ng2->request('PUT', '/gateway/services/one/instances/a',
                 json => { address => "127.0.0.1:$A" })->{status}, 201,
   'two workers: register one/a');
my %flags;
for (1 .. 20) {
    my ($status, undef, $body) = $ng2->get('/');
    $flags{ $status == 200 ? (split ' ', $body)[1] : "status $status" }++;
}
ok(($flags{'.'} // 0) >= 1 && ($flags{'.'} // 0) <= 2
   && ($flags{r} // 0) == 20 - $flags{'.'},
   'two workers: 20 requests, one or two full handshakes, the rest resumed')
    or diag(explain(\%flags));
$ng2->stop;

########################################################################
# the cache is bounded: more instances in turn than it holds thrash it

for my $i (1 .. $MAX + 1) {
    register('many', "m$i", $C[$i - 1]);
}
my @first = @{ hits('/tls/many', $MAX + 1) };
my @again = @{ hits('/tls/many', $MAX + 1) };
is_deeply([ sort map { (split ' ')[0] } @first ],
          [ sort @C[0 .. $MAX] ], 'one request to each instance')
    or diag(explain(\@first));
is_deeply([ map { (split ' ')[1] } @again ], [ ('.') x ($MAX + 1) ],
          "$MAX sessions cached: LRU over " . ($MAX + 1) . ' instances never hits')
    or diag(explain(\@again));

is(deregister('many', "m" . ($MAX + 1)), 200, 'one instance fewer');
hits('/tls/many', $MAX);
is_deeply([ map { (split ' ')[1] } @{ hits('/tls/many', $MAX) } ],
          [ ('r') x $MAX ], "$MAX instances: every one resumes");

# many register/deregister cycles: no stale session, no error, bounded
my $cycles = valgrind_mode() ? 15 : 150;
my $log_from = $ng->log_size;
my ($bad, $churn_ok) = (0, 0);
for my $i (1 .. $cycles) {
    my $id = "c$i";
    $bad++ unless register('churn', $id, $A) == 201;
    my $r = hit('/tls/churn');
    $churn_ok++ if $r eq "$A . TLSv1.2";
    $bad++ unless deregister('churn', $id) == 200;
}
is($bad, 0, "$cycles register/deregister cycles");
is($churn_ok, $cycles, 'every new instance: 200 and a full handshake');

my $log = substr($ng->error_log, $log_from);
my @cached = $log =~ /gateway save ssl session: \S+, instance \d+, (\d+) cached/g;
cmp_ok(scalar(@cached), '>=', $cycles, 'a session was saved in every cycle');
my ($most) = sort { $b <=> $a } @cached;
cmp_ok($most // 0, '<=', $MAX, "the cache never held more than $MAX");
unlike($log, qr/\[(?:error|alert|crit)\].*(?:SSL|session)/,
       'no TLS error during the churn');

########################################################################
# gRPC: grpc_pass to a gateway upstream, HTTP/2 on both sides

is(register('grpc-echo', 'g1', $vars{GRPC}), 201, 'register grpc-echo/g1');

sub grpc_call {
    my ($path) = @_;
    # a length-prefixed gRPC message: uncompressed, 2 bytes
    my $msg = "$dir/grpc-msg.bin";
    open my $fh, '>:raw', $msg or die "$msg: $!";
    print {$fh} "\0\0\0\0\2hi";
    close $fh;
    my ($rc, $text) = run_cmd(cmd => [
        'curl', '-sS', '-v', '-o', '-', '--http2-prior-knowledge', '-X', 'POST',
        '-H', 'content-type: application/grpc', '-H', 'te: trailers',
        '--data-binary', "\@$msg",
        "http://127.0.0.1:$vars{H2}$path"]);
    return ($rc, $text);
}

($code, $out) = grpc_call('/test.Echo/Say');
is($code, 0, 'curl over HTTP/2 to the gateway') or diag($out);
like($out, qr{^< HTTP/2 200}m, 'gRPC call answered 200 over HTTP/2')
    or diag($out);
like($out, qr{^< content-type: application/grpc\r?$}mi, 'content-type');
like($out, qr{^< x-backend: HTTP/2\.0 POST /test\.Echo/Say application/grpc te=trailers\r?$}mi,
     'the instance got a gRPC request over HTTP/2');
like($out, qr{^< grpc-status: 0\r?$}m, 'the grpc-status trailer came back');
like($out, qr{^< x-body: 7\r?$}mi, 'with the request body');
like($out, qr{grpc-echo}, 'the response body came back');

is(register('grpc-secure', 's1', $vars{GRPCS}), 201,
   'register grpc-secure/s1');
my @reused;
for (1 .. 3) {
    ($code, $out) = grpc_call('/test.Secure/Say');
    push @reused, $out =~ m{^< x-backend: HTTP/2\.0 (\S+)\r?$}mi ? $1 : $out;
}
is_deeply(\@reused, [qw(. r r)], 'grpcs: HTTP/2 over TLS, session resumed');

########################################################################
# gateway_ssl_sessions 0 caches nothing; bad values fail the configuration

my @old = $ng->worker_pids;
ok($ng->reload(conf => $conf =~ s/%%MAX%%/0/r, wait_old => 1),
   'reload with gateway_ssl_sessions 0');
# the old worker, with its sessions, must be gone before we look
ok(wait_until(sub { !grep { kill 0, $_ } @old }, timeout => 10),
   'the old worker exited');
is_deeply([ map { (split ' ')[1] } @{ hits('/tls/one', 3) } ],
          [ ('.') x 3 ], 'gateway_ssl_sessions 0: nothing resumed');

my %bad = (
    'many' => qr/"gateway_ssl_sessions" directive invalid number/,
    '-1'   => qr/"gateway_ssl_sessions" directive invalid number/,
    '1 2'  => qr/invalid number of arguments in "gateway_ssl_sessions"/,
);
for my $bad (sort keys %bad) {
    my ($rc, $text) = nginx_test_config(
        conf => "gateway_registry zone=gw:1m;\ngateway_ssl_sessions $bad;\n");
    isnt($rc, 0, "gateway_ssl_sessions $bad: nginx -t fails");
    like($text, $bad{$bad}, '... naming the directive');
}
my ($rc, $text) = nginx_test_config(
    conf => "server { gateway_ssl_sessions 8; }\n");
like($text, qr/"gateway_ssl_sessions" directive is not allowed here/,
     'gateway_ssl_sessions is an http-level directive');

$ng->stop;

done_testing();
