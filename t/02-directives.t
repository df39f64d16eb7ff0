#!/usr/bin/perl
# Directive parsing: bad arguments make `nginx -t` fail with an [emerg] that
# names the directive; the good forms of the spec pass.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

# %%REGISTRY%%, %%ALLOW%%, %%UPSTREAM%%, %%PLAIN%%, %%SERVER%%, %%LOCATION%%
# are the slots a case fills (empty by default); upstream "plain" has no
# gateway_service
my $template = <<'EOF';
    %%REGISTRY%%
    %%ALLOW%%

    upstream gw {
        %%UPSTREAM%%
        keepalive 16;
    }

    upstream plain {
        %%PLAIN%%
        server 127.0.0.1:9;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        %%SERVER%%

        location /gateway/ {
            %%ADMIN%%
        }

        location ~ ^/svc/(?<gw_service>[A-Za-z0-9._-]+)(?<gw_rest>/.*)?$ {
            %%LOCATION%%
            proxy_pass http://gw$gw_rest$is_args$args;
        }
    }
EOF

my %default = (
    REGISTRY => 'gateway_registry zone=gw:1m;',
    ALLOW    => '',
    UPSTREAM => 'gateway_service $gw_service;',
    PLAIN    => '',
    SERVER   => '',
    ADMIN    => 'gateway_admin;',
    LOCATION => '',
);

sub conf_with {
    my (%slots) = @_;
    my %v = (%default, %slots);
    my $c = $template;
    $c =~ s/%%(REGISTRY|ALLOW|UPSTREAM|PLAIN|SERVER|ADMIN|LOCATION)%%/$v{$1}/g;
    return $c;
}

# the [emerg] lines of nginx -t's output, without the " in FILE:LINE" tail
# (the temp dir's name must not be what matches)
sub emerg_lines {
    my ($out) = @_;
    return map { s/ in \S+:\d+\s*$//r } grep { /\[emerg\]/ } split /\n/, $out;
}

sub bad {
    my ($name, $directive, %slots) = @_;
    my ($code, $out) = nginx_test_config(conf => conf_with(%slots));
    isnt($code, 0, "$name: nginx -t fails");
    my @emerg = emerg_lines($out);
    ok(scalar(grep { /\Q$directive\E/ } @emerg),
       "$name: an [emerg] names \"$directive\"")
        or diag($out);
}

sub good {
    my ($name, %slots) = @_;
    my ($code, $out) = nginx_test_config(conf => conf_with(%slots));
    is($code, 0, "$name: nginx -t passes") or diag($out);
}

good('baseline');

# --- gateway_registry ------------------------------------------------------

bad('zone size "xx"', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:xx;');
bad('redis= not a redis URL', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:1m redis=http://x;');
bad('unknown parameter', 'gateway_registry',
    REGISTRY => 'gateway_registry foo=bar;');
bad('no zone=', 'gateway_registry',
    REGISTRY => 'gateway_registry redis=redis://127.0.0.1:6379;');
bad('redis= with a host name', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:1m redis=redis://localhost:6379;');
bad('resync= not a time', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:1m resync=often;');
bad('full_resync= below 100ms', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:1m full_resync=0;');
bad('prefix= with a control character', 'gateway_registry',
    REGISTRY => "gateway_registry zone=gw:1m \"prefix=gw\x01:\";");
bad('prefix= with a tab', 'gateway_registry',
    REGISTRY => "gateway_registry zone=gw:1m \"prefix=gw\t:\";");
bad('prefix= with a byte above ASCII', 'gateway_registry',
    REGISTRY => "gateway_registry zone=gw:1m \"prefix=gw\xc3\xa9:\";");
bad('prefix= longer than 64', 'gateway_registry',
    REGISTRY => 'gateway_registry zone=gw:1m prefix=' . ('p' x 65) . ';');
for my $p ('zone=gw2:1m', 'redis=redis://127.0.0.2', 'prefix=b:',
           'state_file=%%NGINX_DIR%%/b.state', 'resync=2s', 'full_resync=9m')
{
    my ($k) = $p =~ /^(\w+)=/;
    my ($code, $out) = nginx_test_config(conf => conf_with(REGISTRY =>
        "gateway_registry zone=gw:1m redis=redis://127.0.0.1 prefix=a:"
        . " state_file=%%NGINX_DIR%%/a.state resync=1s full_resync=5m $p;"));
    isnt($code, 0, "$k= twice: nginx -t fails");
    ok(scalar(grep { /duplicate parameter "\Q$k\E=.*" in "gateway_registry"/ }
                   emerg_lines($out)),
       "$k= twice: the [emerg] names the parameter") or diag($out);
}
bad('gateway_registry inside server{}', 'gateway_registry',
    SERVER => 'gateway_registry zone=gw2:1m;');

good('all parameters',
    REGISTRY => 'gateway_registry zone=gw:2m redis=redis://127.0.0.1:6379/1'
              . ' prefix=gw: resync=10s full_resync=10m;');
good('prefix= of 64 printable characters',
    REGISTRY => 'gateway_registry zone=gw:1m prefix=' . ('p' x 63) . '~;');
good('unix socket URL',
    REGISTRY => 'gateway_registry zone=gw:1m redis=unix:/run/redis/redis.sock?db=2;');
good('state_file',
    REGISTRY => 'gateway_registry zone=gw:1m state_file=%%NGINX_DIR%%/gw.state;');

# --- gateway_registry_allow -------------------------------------------------

bad('allow 300.1.1.1/8', 'gateway_registry_allow',
    ALLOW => 'gateway_registry_allow 300.1.1.1/8;');
bad('allow a word', 'gateway_registry_allow',
    ALLOW => 'gateway_registry_allow bogus;');
bad('allow without argument', 'gateway_registry_allow',
    ALLOW => 'gateway_registry_allow;');
good('allow CIDRs, unix:, all',
    ALLOW => join(' ', 'gateway_registry_allow 10.0.0.0/8;',
                       'gateway_registry_allow 192.0.2.7;',
                       'gateway_registry_allow fd00::/8;',
                       'gateway_registry_allow ::1;',
                       'gateway_registry_allow unix:;',
                       'gateway_registry_allow all;'));

# --- gateway_service ----------------------------------------------------------

bad('gateway_service outside upstream (server)', 'gateway_service',
    SERVER => 'gateway_service users;');
bad('gateway_service outside upstream (location)', 'gateway_service',
    LOCATION => 'gateway_service users;');
bad('gateway_service with two arguments', 'gateway_service',
    UPSTREAM => 'gateway_service a b;');
bad('gateway_service without argument', 'gateway_service',
    UPSTREAM => 'gateway_service;');
good('gateway_service with a fixed name',
    UPSTREAM => 'gateway_service users;');

# --- gateway_balance ------------------------------------------------------------

bad('gateway_balance with an unknown method', 'gateway_balance',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance fastest;');
bad('gateway_balance round_robin with a parameter', 'gateway_balance',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance round_robin x=1;');
bad('gateway_balance random with a parameter', 'gateway_balance',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance random two;');
bad('gateway_balance twice', 'gateway_balance',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance random;'
              . ' gateway_balance round_robin;');
bad('gateway_balance before gateway_service', 'gateway_balance',
    UPSTREAM => 'gateway_balance random; gateway_service $gw_service;');
bad('gateway_balance without argument', 'gateway_balance',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance;');
bad('gateway_balance outside upstream', 'gateway_balance',
    LOCATION => 'gateway_balance random;');
good('gateway_balance random',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance random;');
good('gateway_balance round_robin',
    UPSTREAM => 'gateway_service $gw_service; gateway_balance round_robin;');

# --- the upstream directives need gateway_service ------------------------------

# in an upstream without gateway_service each would do nothing: nginx -t
# fails naming it (and the upstream, for those that may come before
# gateway_service and so are checked once the upstream is complete)
my @needs_service = (
    [ 'gateway_balance',         'gateway_balance random;',           0 ],
    [ 'gateway_slow_start',      'gateway_slow_start 10s;',           0 ],
    [ 'gateway_sticky',          'gateway_sticky cookie=gw;',         0 ],
    [ 'gateway_locality',        'gateway_locality zone=a;',          0 ],
    [ 'gateway_health_check',    'gateway_health_check;',             0 ],
    [ 'gateway_max_requests',    'gateway_max_requests 10;',          0 ],
    [ 'gateway_eject',           'gateway_eject;',                    1 ],
    [ 'gateway_retry_budget',    'gateway_retry_budget percent=20;',  1 ],
    [ 'gateway_retry_idempotency_key',
                                 'gateway_retry_idempotency_key on;', 1 ],
    [ 'gateway_retry_idempotency_key',
                                 'gateway_retry_idempotency_key off;', 1 ],
);

for my $c (@needs_service) {
    my ($directive, $line, $names_upstream) = @$c;
    bad("$line without gateway_service", $directive, PLAIN => $line);

    next unless $names_upstream;
    my ($code, $out) = nginx_test_config(conf => conf_with(PLAIN => $line));
    ok(scalar(grep { /^.*"\Q$directive\E" requires "gateway_service" in upstream "plain"$/ }
                   emerg_lines($out)),
       "$line without gateway_service: the [emerg] names upstream \"plain\"")
        or diag($out);
    like($out, qr/in upstream "plain" in \S+:\d+/,
         "$line without gateway_service: and where the upstream is");
}

good('gateway_eject and gateway_retry_* before gateway_service',
    UPSTREAM => 'gateway_eject; gateway_retry_budget;'
              . ' gateway_retry_idempotency_key on; gateway_service users;');

# --- gateway_admin, gateway_admin_token ----------------------------------------

bad('gateway_admin with an argument', 'gateway_admin',
    ADMIN => 'gateway_admin on;');
bad('gateway_admin_token without argument', 'gateway_admin_token',
    ADMIN => 'gateway_admin; gateway_admin_token;');
good('gateway_admin_token',
    ADMIN => 'gateway_admin; gateway_admin_token s3cret;');

done_testing();
