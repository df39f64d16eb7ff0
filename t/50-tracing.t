#!/usr/bin/perl
# Distributed tracing end to end: W3C Trace Context in and out, a SERVER span
# per request and a CLIENT span per upstream attempt, exported over OTLP/HTTP
# (protobuf, then JSON) to a test collector on loopback that decodes every
# batch with OpenTelemetry's own implementation (t/collector, npm
# @opentelemetry/otlp-transformer).  A collector that is down or hangs
# costs requests nothing; spans are dropped and counted, and export
# resumes when it is back; the last spans go out on a graceful shutdown.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use GatewayTest;

my ($node) = grep { -x "$_/node" } split /:/, $ENV{PATH};
plan skip_all => 'node is not installed (scripts/deps.sh installs nodejs '
               . 'and npm)' unless $node;

# the request head a backend's connection sends (up to the blank line)
sub read_head {
    my ($c) = @_;
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread($c, $head, 4096, length $head);
        last unless $n;
    }
    return $head;
}

# a backend that answers with the request head it got, every header line
sub echo_backend {
    return start_backend(sub {
        my ($ls) = @_;
        while (my $c = $ls->accept) {
            my $body = read_head($c);
            syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: " . length($body)
                         . "\r\nConnection: close\r\n\r\n$body");
            close $c;
        }
    });
}

my $echo = echo_backend();
my $echo2 = echo_backend();

# a backend that answers with the status its path ends with: /status/404
my $statuses = start_backend(sub {
    my ($ls) = @_;
    while (my $c = $ls->accept) {
        my ($code) = read_head($c) =~ m{^\S+ \S*?(\d{3}) HTTP};
        syswrite($c, "HTTP/1.1 " . ($code // 200) . " X\r\n"
                     . "Content-Length: 0\r\nConnection: close\r\n\r\n");
        close $c;
    }
});

sub conf {
    my (%o) = @_;
    my $proto = $o{protocol} // 'protobuf';
    my $exp = $o{exporter}
        // "batch=4 interval=100ms timeout=1s buffer=64";
    return <<"EOF";
    gateway_registry zone=gw:1m;
    gateway_registry_allow 127.0.0.0/8;

    gateway_trace_exporter endpoint=http://127.0.0.1:%%CPORT%%/v1/traces
                           protocol=$proto $exp;
    gateway_trace_service_name test-gateway;

    upstream users {
        gateway_service users;
    }

    upstream flaky {
        gateway_service flaky;
    }

    upstream kept {
        gateway_service kept;
        keepalive 4;
    }

    upstream statuses {
        gateway_service statuses;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        # only requests that send X-Real-IP (the /realip/ test)
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;

        location /gateway/ {
            gateway_admin;
        }

        location /stats {
            return 200 "\$gateway_trace_exported \$gateway_trace_dropped \$gateway_trace_failed";
        }

        location = /metrics {
            gateway_metrics;
        }

        location /svc/ {
            gateway_trace on;
            proxy_pass http://users;
            add_header X-Traceparent \$gateway_traceparent;
            add_header X-Trace-Id \$gateway_trace_id;
            add_header X-Span-Id \$gateway_span_id;
        }

        location /status/ {
            gateway_trace on;
            proxy_pass http://statuses;
            add_header X-Trace-Id \$gateway_trace_id always;
        }

        location /flaky/ {
            gateway_trace on;
            proxy_pass http://flaky;
            proxy_next_upstream error http_502;
            add_header X-Trace-Id \$gateway_trace_id;
        }

        location /unsampled/ {
            gateway_trace on;
            gateway_trace_sample 0%;
            proxy_pass http://users;
            add_header X-Trace-Id \$gateway_trace_id;
            add_header X-Span-Id \$gateway_span_id;
        }

        location /forced/ {
            gateway_trace \$http_x_trace;
            proxy_pass http://users;
            add_header X-Trace-Id \$gateway_trace_id;
        }

        location /inject/ {
            gateway_trace on;
            gateway_trace_context inject;
            proxy_pass http://users;
            add_header X-Trace-Id \$gateway_trace_id;
        }

        location /extract/ {
            gateway_trace on;
            gateway_trace_context extract;
            proxy_pass http://users;
            add_header X-Trace-Id \$gateway_trace_id;
        }

        location /kept/ {
            gateway_trace on;
            proxy_pass http://kept;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Trace-Id \$gateway_trace_id;
        }

        location /local {
            gateway_trace on;
            return 500 "local";
        }

        location /realip/ {
            gateway_trace on;
            add_header X-Trace-Id \$gateway_trace_id;
            return 200 "ok";
        }

        location /plain/ {
            gateway_trace on;
            proxy_pass http://127.0.0.1:%%PORT4%%;
            add_header X-Span-Id \$gateway_span_id;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 502;
        }
    }

    server {
        listen 127.0.0.1:%%PORT4%%;
        location / {
            return 200 "\$http_traceparent";
        }
    }

    server {
        listen 127.0.0.1:%%PORT3%%;
        gateway_trace on;
        location / {
            return 200 "ok";
        }
    }
EOF
}

# the request head the backend got: its traceparent and tracestate lines
sub got {
    my ($body) = @_;
    my @tp = $body =~ /^traceparent: *([^\r\n]*)\r$/mgi;
    my @ts = $body =~ /^tracestate: *([^\r\n]*)\r$/mgi;
    return (\@tp, \@ts);
}

my $col = start_collector();
my $ng;

sub stats {
    my ($st, undef, $body) = $ng->get('/stats');
    return split ' ', $body;
}

sub spans_of {
    my ($trace, %o) = @_;
    my $want = $o{count} // 1;
    my $spans;
    wait_until(sub {
        $spans = [ grep { $_->{traceId} eq $trace } @{ $col->spans } ];
        @$spans >= $want;
    }, timeout => $o{timeout} // 5);
    return $spans;
}

sub register {
    my ($svc, $id, $addr) = @_;
    my $r = $ng->request('PUT', "/gateway/services/$svc/instances/$id",
                         json => { address => $addr });
    return $r->{status};
}

my $parent_span = '00f067aa0ba902b7';

for my $protocol (qw(protobuf json)) {
    # a trace of its own for each run
    my $parent_trace = $protocol eq 'json' ? '4bf92f3577b34da6a3ce929d0e0e4736'
                                           : '0af7651916cd43dd8448eb211c80319c';
    $ng = start_nginx(conf => conf(protocol => $protocol),
                      vars => { CPORT => $col->port });
    my $bad = $ng->port('PORT2');

    is(register('users', 'e1', "127.0.0.1:$echo"), 201, "$protocol: register");
    is(register('flaky', 'bad', "127.0.0.1:$bad"), 201, 'register bad');
    is(register('flaky', 'good', "127.0.0.1:$echo2"), 201, 'register good');

    my $seen = @{ $col->batches };

    # parent propagation: the same trace, the attempt's span as parent
    my ($st, $h, $body) = $ng->get('/svc/a?x=1', headers => {
        traceparent => "00-$parent_trace-$parent_span-01",
        tracestate => 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
        'user-agent' => 'trace-test/1.0' });
    is($st, 200, "$protocol: a traced request");
    my ($tp, $ts) = got($body);
    is(scalar(@$tp), 1, 'the backend got one traceparent');
    like($tp->[0] // '', qr/^00-$parent_trace-[0-9a-f]{16}-01$/,
         'with the client\'s trace id, sampled');
    is_deeply($ts, ['congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'],
              'tracestate carried unchanged');
    is($h->{'x-trace-id'}, $parent_trace, '$gateway_trace_id');
    like($h->{'x-span-id'}, qr/^[0-9a-f]{16}$/, '$gateway_span_id');
    is($h->{'x-traceparent'}, "00-$parent_trace-$h->{'x-span-id'}-01",
       '$gateway_traceparent: the SERVER span');

    # an upstream that is not the gateway's: the parent is the SERVER span
    my ($pst, $ph, $pbody) = $ng->get('/plain/p');
    is($pst, 200, "$protocol: proxy_pass to a plain upstream");
    like($pbody, qr/^00-[0-9a-f]{32}-([0-9a-f]{16})-01$/,
         'it got a traceparent');
    is(($pbody =~ /-([0-9a-f]{16})-01$/)[0], $ph->{'x-span-id'},
       'whose parent is the SERVER span');

    my $spans = spans_of($parent_trace, count => 2);
    my ($server) = grep { $_->{kind} == 2 } @$spans;
    my ($client) = grep { $_->{kind} == 3 } @$spans;
    ok($server && $client, 'a SERVER and a CLIENT span exported')
        or diag(explain($spans));
    $server //= {}; $client //= {};
    is($server->{parentSpanId}, $parent_span,
       'the SERVER span is a child of the client\'s span');
    is($server->{spanId}, $h->{'x-span-id'}, 'it is $gateway_span_id');
    is($client->{parentSpanId}, $server->{spanId},
       'the CLIENT span is a child of the SERVER span');
    my ($sent_parent) = ($tp->[0] // '') =~ /-([0-9a-f]{16})-01$/;
    is($sent_parent, $client->{spanId},
       'the upstream request\'s parent is the attempt\'s CLIENT span');
    is($server->{traceState}, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
       'the span carries the tracestate');
    my $sa = $server->{attributes} || {};
    is($sa->{'http.request.method'}, 'GET', 'http.request.method');
    is($sa->{'url.path'}, '/svc/a', 'url.path, without the query');
    is($sa->{'url.scheme'}, 'http', 'url.scheme');
    is($sa->{'http.response.status_code'}, 200, 'http.response.status_code');
    is($sa->{'server.port'}, $ng->port, 'server.port');
    is($sa->{'network.peer.address'}, '127.0.0.1', 'network.peer.address');
    is($sa->{'user_agent.original'}, 'trace-test/1.0', 'user_agent.original');
    is($sa->{'http.route'}, '/svc/', 'http.route: the location');
    is($server->{name}, 'GET /svc/', 'SERVER span name');
    is($server->{status}, 0, 'status unset for a 200');
    my $ca = $client->{attributes} || {};
    is($ca->{'gateway.attempt'}, 1, 'gateway.attempt');
    is($ca->{'gateway.service'}, 'users', 'gateway.service');
    is($ca->{'gateway.instance.id'}, 'e1', 'gateway.instance.id');
    is($ca->{'server.address'}, '127.0.0.1', 'server.address');
    is($ca->{'server.port'}, $echo, 'server.port of the instance');
    is($ca->{'http.response.status_code'}, 200, 'the response status');
    is($ca->{'gateway.connection.reused'}, JSON::PP::false,
       'gateway.connection.reused');
    cmp_ok($client->{start}, '>=', $server->{start}, 'CLIENT starts inside');
    cmp_ok($client->{end}, '<=', $server->{end}, 'and ends inside');

    my ($batch) = grep { grep { $_->{traceId} eq $parent_trace } @{ $_->{spans} } }
                  @{ $col->batches };
    is($batch->{protocol}, $protocol, "sent as $protocol");
    my $res = $batch->{resource};
    is($res->{'service.name'}, 'test-gateway', 'service.name');
    like($res->{'service.version'} // '', qr/^\d+\.\d+\.\d+$/,
         'service.version');
    ok(length($res->{'host.name'} // ''), 'host.name');
    is($res->{'telemetry.sdk.name'}, 'ngx_gateway', 'telemetry.sdk.name');
    ok($res->{'telemetry.sdk.version'}, 'telemetry.sdk.version');

    # the same bytes in the request line are not the header: left alone
    # (the client's header not last: it is looked for, not found at the end)
    my $uri = "/svc/00-$parent_trace-" . ('a' x 16) . '-01';
    $body = http_raw($ng->port, "GET $uri HTTP/1.1\r\nHost: a\r\n"
                     . "traceparent: 00-$parent_trace-$parent_span-01\r\n"
                     . "X-After: 1\r\nConnection: close\r\n\r\n") // '';
    $body =~ s/^.*?\r\n\r\n//s;
    like($body, qr{^GET \Q$uri\E HTTP/}, 'the request line arrives as sent');
    ($tp) = got($body);
    like($tp->[0] // '', qr/^00-$parent_trace-(?!$parent_span)[0-9a-f]{16}-01$/,
         'and the header was rewritten');

    # User-Agent text in a span: a control character leaves it out, a long
    # one is cut to 256 bytes before the character the limit would split
    my %ua = (ctl => "ua\x01x", long => 'a' . ("\xc3\xa9" x 200));
    my %ua_span;
    for my $k (sort keys %ua) {
        my $resp = http_raw($ng->port, "GET /svc/ua HTTP/1.1\r\nHost: a\r\n"
                            . "User-Agent: $ua{$k}\r\n"
                            . "Connection: close\r\n\r\n") // '';
        my ($tid) = $resp =~ /^x-trace-id: *([0-9a-f]{32})\r$/mi;
        my ($sv) = grep { $_->{kind} == 2 } @{ spans_of($tid // '-') };
        $ua_span{$k} = ($sv // {})->{attributes} // {};
    }
    ok(%{ $ua_span{ctl} } && !exists $ua_span{ctl}{'user_agent.original'},
       'a User-Agent with a control character is not in the span');
    is($ua_span{long}{'user_agent.original'}, 'a' . ("\x{e9}" x 127),
       'a long User-Agent is cut on a character boundary');

    # requests on one connection: each span has its own request's client
    # address (realip changes it per request), Host and User-Agent
    my @kept = (['10.0.0.1', 'h1', 'ua-one'], ['10.0.0.2', 'h1', "ua\x01"],
                ['10.0.0.3', 'h2', 'ua-three']);
    my $resp = http_raw($ng->port, join '', map {
        "GET /realip/ HTTP/1.1\r\nHost: $_->[1]\r\nX-Real-IP: $_->[0]\r\n"
        . "User-Agent: $_->[2]\r\n"
        . ($_ == $kept[-1] ? "Connection: close\r\n" : '') . "\r\n" } @kept)
        // '';
    my @tids = $resp =~ /^x-trace-id: *([0-9a-f]{32})\r$/mgi;
    is(scalar(@tids), 3, 'three requests on one connection');
    my @ka = map {
        my ($sv) = grep { $_->{kind} == 2 } @{ spans_of($_) };
        ($sv // {})->{attributes} // {} } @tids;
    is_deeply([ map { $_->{'network.peer.address'} // '' } @ka ],
              [ map { $_->[0] } @kept ],
              'network.peer.address: each request\'s own');
    is_deeply([ map { $_->{'server.address'} // '' } @ka ],
              [ map { $_->[1] } @kept ], 'server.address: each request\'s own');
    is_deeply([ map { $_->{'user_agent.original'} // '-' } @ka ],
              ['ua-one', '-', 'ua-three'],
              'user_agent.original: each request\'s own, a bad one left out');

    # requests on one connection to other locations, with other methods:
    # each SERVER span has its own name, method and route, each CLIENT span
    # its own method (the instance the same)
    my @mixed = (['GET', '/realip/m'], ['POST', '/svc/m'], ['GET', '/svc/m'],
                 ['DELETE', '/svc/m'], ['GET', '/realip/m']);
    $resp = http_raw($ng->port, join '', map {
        "$_->[0] $_->[1] HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
        . ($_ == $mixed[-1] ? "Connection: close\r\n" : '') . "\r\n" } @mixed)
        // '';
    @tids = $resp =~ /^x-trace-id: *([0-9a-f]{32})\r$/mgi;
    is(scalar(@tids), scalar(@mixed), 'requests of other methods on one connection');
    my (@names, @methods, @routes, @client_methods);
    for my $i (0 .. $#tids) {
        my $proxied = $mixed[$i][1] =~ m{^/svc/};
        my $sp = spans_of($tids[$i], count => $proxied ? 2 : 1);
        my ($sv) = grep { $_->{kind} == 2 } @$sp;
        my ($cl) = grep { $_->{kind} == 3 } @$sp;
        push @names, ($sv // {})->{name} // '';
        push @methods, (($sv // {})->{attributes} // {})->{'http.request.method'} // '';
        push @routes, (($sv // {})->{attributes} // {})->{'http.route'} // '';
        push @client_methods, (($cl // {})->{attributes} // {})->{'http.request.method'} // '-';
    }
    is_deeply(\@names, [ map { "$_->[0] " . ($_->[1] =~ m{^(/\w+/)})[0] } @mixed ],
              'SERVER span names: each request\'s own');
    is_deeply(\@methods, [ map { $_->[0] } @mixed ],
              'SERVER http.request.method: each request\'s own');
    is_deeply(\@routes, ['/realip/', '/svc/', '/svc/', '/svc/', '/realip/'],
              'http.route: each request\'s own location');
    is_deeply(\@client_methods, ['-', 'POST', 'GET', 'DELETE', '-'],
              'CLIENT http.request.method: each attempt\'s own');

    # connections to two listeners, one after the other (a worker gives a
    # new one the descriptor of the last): each span has its own port
    my (@ports, @want);
    for my $i (1 .. 8) {
        my $port = ($i % 2) ? $ng->port : $ng->port('PORT3');
        my $tid = sprintf('%s%08x', $protocol eq 'json' ? 'ab' x 12 : 'cd' x 12,
                          $i);
        http_raw($port, "GET /realip/ HTTP/1.1\r\nHost: a\r\n"
                        . "traceparent: 00-$tid-$parent_span-01\r\n"
                        . "Connection: close\r\n\r\n");
        my ($sv) = grep { $_->{kind} == 2 } @{ spans_of($tid) };
        push @ports, (($sv // {})->{attributes} // {})->{'server.port'} // 0;
        push @want, $port;
    }
    is_deeply(\@ports, \@want, 'server.port: each connection\'s own');

    # attempts to one instance with other statuses: each CLIENT span has
    # its own status (and its status ERROR for a 5xx)
    is(register('statuses', 's1', "127.0.0.1:$statuses"), 201,
       'register an instance that answers any status');
    my @codes = (200, 404, 404, 200, 503, 200);
    my (@got_codes, @errors);
    for my $code (@codes) {
        my ($sst, $sh) = $ng->get("/status/$code");
        my ($cl) = grep { $_->{kind} == 3 }
                   @{ spans_of($sh->{'x-trace-id'} // '-', count => 2) };
        push @got_codes, (($cl // {})->{attributes} // {})
                         ->{'http.response.status_code'} // 0;
        push @errors, ($cl // {})->{status} // -1;
    }
    is_deeply(\@got_codes, \@codes, 'CLIENT spans: each attempt\'s status');
    is_deeply(\@errors, [ map { $_ >= 500 ? 2 : 0 } @codes ],
              'CLIENT spans: ERROR for the 5xx only');

    # an instance that moves keeps its uid: its CLIENT spans follow it
    my %moved;
    for my $addr ($echo, $echo2, $echo) {
        is(register('users', 'e1', "127.0.0.1:$addr"), 200,
           "e1 at port $addr");
        for (1 .. 4) {
            my ($mst, $mh) = $ng->get('/svc/moved');
            my ($cl) = grep { $_->{kind} == 3 }
                       @{ spans_of($mh->{'x-trace-id'} // '-', count => 2) };
            push @{ $moved{$addr} }, (($cl // {})->{attributes} // {})
                                     ->{'server.port'} // 0;
        }
        is_deeply($moved{$addr}, [ ($addr) x 4 ],
                  "CLIENT spans: server.port $addr");
        delete $moved{$addr};
    }

    # a retried request: two CLIENT spans under one SERVER span
    my %retried;
    for (1 .. 4) {
        ($st, $h, $body) = $ng->get('/flaky/x');
        is($st, 200, 'a flaky request succeeds');
        my $sp = spans_of($h->{'x-trace-id'}, count => 2);
        my @c = grep { $_->{kind} == 3 } @$sp;
        # both spans are in: wait for a second CLIENT span when it retried
        if (grep { ($_->{attributes}{'gateway.attempt'} // 0) == 2 } @c) {
            $sp = spans_of($h->{'x-trace-id'}, count => 3);
            %retried = (spans => $sp, body => $body);
            last;
        }
    }
    ok(%retried, 'a request was retried');
    if (%retried) {
        my ($s) = grep { $_->{kind} == 2 } @{ $retried{spans} };
        my @c = sort { $a->{attributes}{'gateway.attempt'}
                       <=> $b->{attributes}{'gateway.attempt'} }
                grep { $_->{kind} == 3 } @{ $retried{spans} };
        is(scalar(@c), 2, 'two CLIENT spans');
        is(scalar(grep { $_->{parentSpanId} eq $s->{spanId} } @c), 2,
           'both under the SERVER span');
        isnt($c[0]{spanId}, $c[1]{spanId}, 'each its own span id');
        is($c[0]{attributes}{'server.port'}, $bad, 'first: the bad instance');
        is($c[1]{attributes}{'server.port'}, $echo2, 'second: the good one');
        is($c[0]{attributes}{'gateway.retry_reason'}, 'http_502',
           'the retry reason');
        is($c[0]{attributes}{'http.response.status_code'}, 502,
           'the first attempt\'s status');
        is($c[0]{status}, 2, 'the failed attempt is an ERROR');
        is($c[1]{status}, 0, 'the second is not');
        ok(!exists $c[1]{attributes}{'gateway.retry_reason'},
           'the last attempt has no retry reason');
        my ($tp2) = got($retried{body});
        my ($p2) = ($tp2->[0] // '') =~ /-([0-9a-f]{16})-01$/;
        is($p2, $c[1]{spanId},
           'the retry was sent with its own attempt as parent (rewritten '
           . 'in place)');
    }

    # unsampled: ids and propagation, nothing exported
    ($st, $h, $body) = $ng->get('/unsampled/x');
    is($st, 200, 'an unsampled request');
    ($tp) = got($body);
    like($tp->[0] // '', qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
         'propagates a context with the sampled flag off');
    my $unsampled = $h->{'x-trace-id'};
    like($unsampled // '', qr/^[0-9a-f]{32}$/, 'it has a trace id');
    my ($u_trace, $u_parent) = ($tp->[0] // '') =~ /^00-(\w+)-(\w+)-/;
    is($u_trace, $unsampled, 'unsampled: the upstream gets its trace id');
    like($h->{'x-span-id'} // '', qr/^[0-9a-f]{16}$/,
         'unsampled: it has a span id');
    ok(defined $u_parent && $u_parent ne ($h->{'x-span-id'} // ''),
       'unsampled: the parent id sent is the attempt\'s, rewritten in place, '
       . 'not the request\'s span');

    my $parent_off = 'a' x 32;
    ($st, $h, $body) = $ng->get('/svc/off', headers => {
        traceparent => "00-$parent_off-$parent_span-00" });
    ($tp) = got($body);
    like($tp->[0] // '', qr/^00-$parent_off-[0-9a-f]{16}-00$/,
         'a parent not sampled: followed, and propagated');

    # bad headers of every kind start a new trace
    my @bad = (
        "00-$parent_trace-$parent_span",                     # short
        "00-$parent_trace-$parent_span-01-",                 # 00 and longer
        "00-" . uc($parent_trace) . "-$parent_span-01",      # uppercase
        "00-" . ('0' x 32) . "-$parent_span-01",             # zero trace id
        "00-$parent_trace-" . ('0' x 16) . "-01",            # zero span id
        "ff-$parent_trace-$parent_span-01",                  # version ff
        "00_$parent_trace-$parent_span-01",                  # separator
        "00-$parent_trace-$parent_span-0g",                  # flags not hex
        "0-$parent_trace-$parent_span-01",                   # version length
        "00-${parent_trace}0-$parent_span-01",               # id length
    );
    my $fresh = 0;
    for my $v (@bad) {
        ($st, $h, $body) = $ng->get('/svc/bad', headers => { traceparent => $v });
        ($tp) = got($body);
        $fresh++ if $st == 200 && @$tp == 1 && $h->{'x-trace-id'} ne $parent_trace
                    && $tp->[0] =~ /^00-$h->{'x-trace-id'}-[0-9a-f]{16}-01$/;
    }
    is($fresh, scalar(@bad), 'every invalid traceparent starts a new trace, '
                             . 'sent on in place of the bad one');

    # a later version may be longer: what this version knows is used
    ($st, $h, $body) = $ng->get('/svc/v', headers => {
        traceparent => "01-$parent_trace-$parent_span-01-extra" });
    is($h->{'x-trace-id'}, $parent_trace, 'version 01 with more fields: kept');

    # two traceparent headers: invalid; one goes out
    ($st, $h, $body) = $ng->get('/svc/two', headers => {
        traceparent => ["00-$parent_trace-$parent_span-01",
                        "00-$parent_trace-$parent_span-01"],
        tracestate => 'a=b' });
    ($tp, $ts) = got($body);
    is(scalar(@$tp), 1, 'two traceparent headers: one is sent on');
    isnt($h->{'x-trace-id'}, $parent_trace, 'and a new trace started');
    is(scalar(@$ts), 0, 'the tracestate of no trace is not sent on');
    like($body, qr/^Host: /mi, 'the other headers are still there');

    # an invalid tracestate is dropped, the traceparent still counts
    ($st, $h, $body) = $ng->get('/svc/ts', headers => {
        traceparent => "00-$parent_trace-$parent_span-01",
        tracestate => 'UPPER=x' });
    ($tp, $ts) = got($body);
    is($h->{'x-trace-id'}, $parent_trace, 'invalid tracestate: parent kept');
    is(scalar(@$ts), 0, 'the tracestate is not sent on');

    # inject: a new trace; extract: the client's header goes on unchanged
    ($st, $h, $body) = $ng->get('/inject/x', headers => {
        traceparent => "00-$parent_trace-$parent_span-01",
        tracestate => 'a=b' });
    ($tp, $ts) = got($body);
    isnt($h->{'x-trace-id'}, $parent_trace, 'inject: a new trace');
    like($tp->[0] // '', qr/^00-$h->{'x-trace-id'}-/, 'inject: sent on');
    is(scalar(@$ts), 0, 'inject: no tracestate of another trace');

    ($st, $h, $body) = $ng->get('/extract/x', headers => {
        traceparent => "00-$parent_trace-$parent_span-01" });
    ($tp) = got($body);
    is($h->{'x-trace-id'}, $parent_trace, 'extract: the client\'s trace');
    is_deeply($tp, ["00-$parent_trace-$parent_span-01"],
              'extract: nothing injected');

    # gateway_trace $variable
    ($st, $h) = $ng->get('/forced/x');
    ok(!defined $h->{'x-trace-id'}, 'gateway_trace $var: empty is off');
    ($st, $h) = $ng->get('/forced/x', headers => { 'x-trace' => '0' });
    ok(!defined $h->{'x-trace-id'}, '"0" is off');
    ($st, $h) = $ng->get('/forced/x', headers => { 'x-trace' => 'yes' });
    like($h->{'x-trace-id'} // '', qr/^[0-9a-f]{32}$/, 'anything else is on');

    # a cached keepalive connection: said so, and the id still rewritten
    is(register('kept', 'k1', '127.0.0.1:' . $ng->port('PORT4')), 201,
       'register an instance kept alive');
    # (each worker has its own connections: a few requests, some reuse one)
    my (@fresh, @reused);
    for (1 .. 8) {
        ($st, $h, $body) = $ng->get('/kept/x');
        my ($c) = grep { $_->{kind} == 3 }
                  @{ spans_of($h->{'x-trace-id'}, count => 2) };
        $c //= { attributes => {} };
        if ($c->{attributes}{'gateway.connection.reused'}) {
            push @reused, [$body, $c];
        } else {
            push @fresh, [$body, $c];
        }
    }
    ok(@fresh >= 1 && @fresh <= 2, 'a connection opened per worker ('
       . scalar(@fresh) . ')');
    ok(@reused >= 6, 'the others reused one: gateway.connection.reused');
    is(scalar(grep { $_->[0] =~ /^00-[0-9a-f]{32}-\Q$_->[1]{spanId}\E-01$/ }
                   @reused, @fresh), 8,
       'and each request had its own CLIENT span as parent');

    # requests refused before their headers are read are traced too
    my $p3 = $ng->port('PORT3');
    like(http_raw($p3, "BAD\r\n\r\n") // '', qr{^HTTP/1\.1 400 },
         'a bad request line: 400');
    like(http_raw($p3, "GET / HTTP/1.1\r\nHost: a\r\n\x01bad: x\r\n\r\n")
         // '', qr{^HTTP/1\.1 400 }, 'a bad header line: 400');
    my $ok = http_get("http://127.0.0.1:$p3/");
    is($ok->{status}, 200, 'and the worker still serves');
    unlike($ng->error_log, qr/exited on signal/, 'no worker crashed');

    # a 500 of the gateway's own is an ERROR SERVER span
    ($st, $h) = $ng->get('/local');
    is($st, 500, 'a local 500');
    my $local;
    wait_until(sub {
        ($local) = grep { ($_->{attributes}{'http.route'} // '') eq '/local' }
                   @{ $col->spans };
    });
    is($local && $local->{status}, 2, 'a 5xx SERVER span is an ERROR');

    ok(!grep({ $_->{traceId} eq $unsampled || $_->{traceId} eq $parent_off }
             @{ $col->spans }),
       'nothing of the unsampled traces was exported');
    is_deeply($col->errors, [], 'every batch decoded by the OTLP receiver');

    my ($exported, $dropped, $failed) = stats();
    cmp_ok($exported, '>', 0, "spans exported: $exported");
    is($dropped, 0, 'none dropped');

    my $cs = $col->stats;
    cmp_ok($cs->{connections}, '<', $cs->{requests},
           "the connection is reused ($cs->{requests} exports on "
           . "$cs->{connections} connections)");

    $ng->stop;
}

# the collector down, then hanging: requests do not wait, spans are dropped
# and counted, export resumes when it is back
{
    $ng = start_nginx(conf => conf(exporter => 'batch=2 interval=100ms '
                                               . 'timeout=2s buffer=8'),
                      vars => { CPORT => $col->port });
    is(register('users', 'e1', "127.0.0.1:$echo"), 201, 'register');
    my ($w) = $ng->get('/svc/warm');
    is($w, 200, 'a first request');

    $col->stop;
    my ($e0, $d0, $f0) = stats();
    my $slow = 0;
    for (1 .. 20) {
        my $t = time;
        my ($st) = $ng->get('/svc/down');
        $slow++ if $st != 200 || time - $t > tmo(1.5);
    }
    is($slow, 0, 'collector down: every request succeeds at once');
    my ($e1, $d1, $f1);
    wait_until(sub { (undef, $d1, $f1) = stats(); $d1 > $d0 && $f1 > $f0 });
    cmp_ok($d1, '>', $d0, "the dropped count rises ($d0 -> $d1)");
    cmp_ok($f1, '>', $f0, "failed exports are counted ($f0 -> $f1)");
    my (undef, undef, $page) = $ng->get('/metrics');
    my %m = $page =~ /^(gateway_trace_\w+) (\d+)$/mg;
    my ($e2, $d2, $f2) = stats();
    is($m{gateway_trace_spans_dropped_total}, $d2,
       'the metrics page shows the dropped count');
    is($m{gateway_trace_export_failures_total}, $f2,
       'and the failed exports');
    is($m{gateway_trace_spans_exported_total}, $e2, 'and the exported spans');

    $col->start;
    my ($st, $h) = $ng->get('/svc/back');
    ok(spans_of($h->{'x-trace-id'}, count => 2),
       'the collector back (same port): export resumes');

    $col->pause;
    ($e0, $d0) = stats();
    $slow = 0;
    for (1 .. 20) {
        my $t = time;
        ($st) = $ng->get('/svc/hang');
        $slow++ if $st != 200 || time - $t > tmo(1.5);
    }
    is($slow, 0, 'collector hanging: every request succeeds at once');
    wait_until(sub { (undef, $d1) = stats(); $d1 > $d0 });
    cmp_ok($d1, '>', $d0, "the dropped count rises ($d0 -> $d1)");
    $col->resume;
    sleep 2.5;     # the export that hung times out (timeout=2s)
    ($st, $h) = $ng->get('/svc/resumed');
    ok(spans_of($h->{'x-trace-id'}, count => 2, timeout => 10),
       'the collector answering again: export resumes');
    $ng->stop;
}

# the collector's answer, as odd as HTTP allows: read with nginx's own
# parsers (bare LF line ends, spaces around values, any case, a head that
# comes in pieces); an invalid one fails the export, and nothing else
{
    my $dir = GatewayTest::test_dir() . '/raw-collector';
    mkdir $dir;
    my $answer = "$dir/answer";

    # every export answered with the bytes of $answer ("<pause>" between
    # pieces written apart); "C" and "R" lines in $dir/log: connections
    # accepted, exports read
    my $port = start_backend(sub {
        my ($ls) = @_;
        my $sel = IO::Select->new($ls);
        my %buf;
        my $log = sub {
            open my $f, '>>', "$dir/log" or die;
            syswrite($f, "$_[0]\n");
            close $f;
        };
        while (1) {
            for my $s ($sel->can_read(0.05)) {
                if ($s == $ls) {
                    my $c = $ls->accept or next;
                    $sel->add($c);
                    $buf{$c} = '';
                    $log->('C');
                    next;
                }
                my $n = sysread($s, $buf{$s}, 65536, length $buf{$s});
                if (!$n) {
                    $sel->remove($s);
                    delete $buf{$s};
                    close $s;
                    next;
                }
                while ($buf{$s} =~ /\A(.*?\r\n\r\n)/s) {
                    my $head = $1;
                    my ($len) = $head =~ /^Content-Length: *(\d+)\r$/mi;
                    last if length($buf{$s}) < length($head) + ($len // 0);
                    substr($buf{$s}, 0, length($head) + ($len // 0)) = '';
                    $log->('R');
                    open my $f, '<', $answer or die;
                    my $a = do { local $/; <$f> };
                    close $f;
                    next if $a eq '<hang>';
                    my @parts = split /<pause>/, $a;
                    $a =~ s/<pause>//g;
                    while (@parts) {
                        syswrite($s, shift @parts);
                        sleep 0.1 if @parts;
                    }
                    if ($a !~ /content-length/i) {
                        $sel->remove($s);
                        delete $buf{$s};
                        close $s;
                        last;
                    }
                }
            }
        }
    });

    my $set = sub {
        open my $f, '>', $answer or die;
        print $f $_[0];
        close $f;
        open $f, '>', "$dir/log" or die;
        close $f;
    };
    my $seen = sub {
        open my $f, '<', "$dir/log" or return (0, 0);
        my $t = do { local $/; <$f> } // '';
        return (scalar(() = $t =~ /^C$/mg), scalar(() = $t =~ /^R$/mg));
    };

    $set->("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    # one worker: one exporter, one kept connection to count
    $ng = start_nginx(conf => conf(exporter => 'batch=2 interval=50ms '
                                               . 'timeout=1s buffer=64'),
                      workers => 1, vars => { CPORT => $port });
    is(register('users', 'e1', "127.0.0.1:$echo"), 201, 'register');
    my ($w) = $ng->get('/svc/warm');
    is($w, 200, 'a first request');
    ok(wait_until(sub { (stats())[0] >= 2 }), 'its spans exported');

    for my $case (
        [ 'bare LF line ends',
          "HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", 1 ],
        [ 'spaces after the length',
          "HTTP/1.1 200 OK\r\nContent-Length: 2   \r\n\r\n{}", 1 ],
        [ 'no space, lowercase names, other headers',
          "HTTP/1.1 202 Accepted\r\nX-Odd:  y \r\ncontent-length:2\r\n"
          . "Content-Type: application/x-protobuf\r\n\r\n{}", 1 ],
        [ 'a head in pieces',
          "HTTP/1.1 200 OK\r\nContent-Le<pause>ngth: 1<pause>0\r\n\r\n"
          . "01234<pause>56789", 1 ],
        [ 'an empty body, bare LF', "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
          1 ],
        [ 'HTTP/1.0 without a length: the body to the end',
          "HTTP/1.0 200 OK\r\n\r\n{}", 0 ],
        [ 'a length that is not a number',
          "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\n{}", undef ],
        [ 'two lengths', "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         . "Content-Length: 3\r\n\r\n{}", undef ],
        [ 'not HTTP', "SMTP ready\r\n\r\n", undef ],
        [ 'a bad header line', "HTTP/1.1 200 OK\r\nContent Length: 2\r\n"
                               . "\r\n{}", undef ],
        [ 'a 500', "HTTP/1.1 500 Oops\nContent-Length: 0\n\n", undef ],
    ) {
        my ($name, $bytes, $keep) = @$case;
        $set->($bytes);
        my ($e0, $d0, $f0) = stats();
        for my $i (1 .. 3) {
            my ($st) = $ng->get('/svc/odd');
            is($st, 200, "$name: a request") if $i == 1;
            # one export per request (two spans, batch=2)
            wait_until(sub { my (undef, $r) = $seen->(); $r >= $i });
            wait_until(sub { my ($e, $d) = stats();
                             $e + $d >= $e0 + $d0 + 2 * $i });
        }
        my ($e1, undef, $f1) = stats();
        my ($conns, $reqs) = $seen->();
        if (defined $keep) {
            is($f1, $f0, "$name: no failed export");
            cmp_ok($e1, '>=', $e0 + 6, "$name: the spans count as exported");
            if ($keep) {
                is($conns, 0, "$name: the connection is kept ($reqs "
                              . "exports, $conns new connections)");
            } else {
                cmp_ok($conns, '>=', $reqs - 1,
                       "$name: the connection is not kept");
            }
        } else {
            cmp_ok($f1, '>', $f0, "$name: the export failed");
            is($e1, $e0, "$name: nothing counts as exported");
        }
    }
    like($ng->error_log, qr/trace export to \S+: invalid answer/,
         'an invalid answer is logged');

    # a kept connection that gets no answer in time: the export fails
    # once, after timeout=1s, and the batch is not sent again (only a
    # connection the collector had closed is retried)
    $set->("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    my ($st) = $ng->get('/svc/kept');
    ok(wait_until(sub { my (undef, $r) = $seen->(); $r >= 1 }),
       'hang: an export on a kept connection first');
    $set->('<hang>');
    my (undef, undef, $f0) = stats();
    ($st) = $ng->get('/svc/hang');
    is($st, 200, 'hang: a request');
    ok(wait_until(sub { (stats())[2] > $f0 }), 'hang: the export fails');
    sleep 1.5;      # a second send would have come and timed out by now
    my (undef, $reqs) = $seen->();
    is($reqs, 1, "hang: the batch was sent once ($reqs exports read)");
    $ng->stop;
}

# a graceful shutdown sends what is left, long before interval=
{
    $ng = start_nginx(conf => conf(exporter => 'batch=512 interval=1h '
                                               . 'timeout=3s'),
                      vars => { CPORT => $col->port });
    is(register('users', 'e1', "127.0.0.1:$echo"), 201, 'register');
    my ($st, $h) = $ng->get('/svc/last');
    is($st, 200, 'a request, its spans kept for an hour');
    my $trace = $h->{'x-trace-id'};
    sleep 0.3;
    ok(!grep({ $_->{traceId} eq $trace } @{ $col->spans }), 'not sent yet');
    my $t = time;
    $ng->stop;
    ok(time - $t < tmo(5), 'nginx stopped within timeout');
    ok(grep({ $_->{traceId} eq $trace } @{ $col->spans }),
       'its spans were sent at the graceful shutdown');
    like($ng->error_log, qr/trace export of this worker: \d+ spans exported/,
         'the worker logs its export counts at exit');
}

# directives: bad values fail nginx -t naming the directive
for my $case (
    [ 'gateway_trace maybe;', qr/invalid value "maybe" in "gateway_trace"/ ],
    [ 'gateway_trace_sample 150%;', qr/invalid ratio "150%" in "gateway_trace_sample"/ ],
    [ 'gateway_trace_sample 1.5;', qr/invalid ratio "1.5" in "gateway_trace_sample"/ ],
    [ 'gateway_trace_sample x%;', qr/invalid ratio "x%" in "gateway_trace_sample"/ ],
    [ 'gateway_trace_context sideways;', qr/invalid value "sideways" in "gateway_trace_context"/ ],
    [ 'gateway_trace_exporter endpoint=https://127.0.0.1:1/v1/traces;',
      qr/invalid parameter "endpoint=https:.*" in "gateway_trace_exporter"/ ],
    [ 'gateway_trace_exporter endpoint=http://127.0.0.1:1/v1/traces protocol=grpc;',
      qr/invalid parameter "protocol=grpc" in "gateway_trace_exporter"/ ],
    [ 'gateway_trace_exporter endpoint=http://127.0.0.1:1/v1/traces batch=0;',
      qr/invalid parameter "batch=0" in "gateway_trace_exporter"/ ],
    [ 'gateway_trace_exporter endpoint=http://127.0.0.1:1/v1/traces batch=10 buffer=5;',
      qr/batch= is larger than buffer= in "gateway_trace_exporter"/ ],
    [ 'gateway_trace_exporter batch=10;',
      qr/"gateway_trace_exporter" needs endpoint=/ ],
    [ "gateway_trace_service_name \"a\x01b\";",
      qr/invalid name in "gateway_trace_service_name"/ ],
) {
    my ($code, $out) = nginx_test_config(conf => $case->[0]);
    isnt($code, 0, "nginx -t fails: $case->[0]");
    like($out, $case->[1], 'and names the directive');
}

# the ready configurations of conf.d/ pass nginx -t as they are
for my $file (glob(repo_root() . '/conf.d/tracing-*.conf')) {
    open my $f, '<', $file or die "$file: $!";
    my $text = do { local $/; <$f> };
    my ($code, $out) = nginx_test_config(conf => $text);
    is($code, 0, "nginx -t: $file") or diag($out);
}

done_testing();
