#!/usr/bin/perl
# gateway_dashboard in a real headless Chromium: the page shows the
# registered instances, drains one through the admin API with the token
# (and not without it), sets a weight, follows a registration made in
# Redis, and leaves a screenshot (build/artifacts/dashboard.png).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy ();
use File::Path ();
use GatewayTest;
use GatewayBrowser;

ok(GatewayBrowser::available(),
   "chromium is installed ($GatewayBrowser::CHROMIUM; scripts/deps.sh "
   . "installs it)") or do { done_testing; exit };

my $redis = start_redis();

my $ng = start_nginx(workers => 2, conf => <<'CONF');
    gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%/5
                     prefix=t62: resync=500ms;

    upstream users {
        gateway_service users;
        gateway_health_check uri=/ interval=1s timeout=500ms;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location /gateway/ {
            gateway_admin;
            gateway_admin_token secret;
        }

        location = /dashboard {
            gateway_dashboard admin=/gateway/;
        }

        location /users {
            proxy_pass http://users;
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
CONF

my @port = map { $ng->port("PORT$_") } 2 .. 4;

sub register_in_redis {
    my ($svc, $id, $port, $zone) = @_;
    redis_cli({ stdin => <<"REDIS" }, '-n', 5);
MULTI
HSET t62:svc:$svc:inst:$id address 127.0.0.1:$port zone $zone
SADD t62:svc:$svc:ids $id
SADD t62:services $svc
INCR t62:svc:$svc:rev
PUBLISH t62:events $svc
EXEC
REDIS
}

redis_cmd('SELECT', 5);

ok(wait_until(sub { redis_cmd('PUBSUB', 'NUMSUB', 't62:events')->[1] == 1 },
              timeout => 5), 'the gateway subscribed');

register_in_redis('users', 'u1', $port[0], 'eu-1');
register_in_redis('users', 'u2', $port[1], 'eu-2');
register_in_redis('orders', 'o1', $port[2], 'eu-1');

ok(wait_until(sub { ($ng->get('/gateway/services'))[2] =~ /"orders"/ },
              timeout => 5), 'the registry has both services');

my ($st, $h, $page) = $ng->get('/dashboard');
is($st, 200, 'GET /dashboard is 200');
like($h->{'content-type'}, qr{^text/html}, 'an HTML page');
like($h->{'content-security-policy'} // '', qr/connect-src 'self'/,
     'a content security policy keeps it to its own origin');
like($page, qr{<meta name="gateway-admin" content="/gateway/">},
     'the page knows where the admin API is');
unlike($page, qr{(?:src|href)="?https?://}, 'and loads nothing from elsewhere');

# traffic, so that the page has counters to show
for (1 .. 30) { $ng->get('/users') }

my $dir = test_dir();
my $b = GatewayBrowser->start(dir => $dir, timeout => tmo(30));
my $tab = $b->open_page($ng->url('/dashboard'));

sub page_until {
    my ($expr, $what) = @_;
    my $v;
    my $ok = wait_until(sub { $v = eval { $b->evaluate($tab, $expr) }; $v },
                        timeout => 15);
    ok($ok, $what) or diag("last value: " . ($v // 'undef') . "; status: "
                           . (eval { $b->evaluate($tab,
                                  'document.getElementById("status")'
                                  . '.textContent') } // '?'));
    return $v;
}

sub row { qq{document.querySelector('tr[data-instance="$_[0]"]')} }

page_until(q{document.querySelectorAll('tr[data-instance]').length === 3},
           'the page shows the three registered instances');
page_until(row('users/u1') . q{.textContent.indexOf('eu-1') >= 0},
           'with their zone');
page_until(row('users/u1') . q{.querySelector('td.health').textContent
                              === 'healthy'},
           'the health check\'s state is shown');
is($b->evaluate($tab, 'document.getElementById("mode").textContent'), 'redis',
   'the registry mode is shown');
page_until(q{/^up/.test(document.getElementById("sync").textContent)},
           'and the Redis link');

# without the token the write is refused, and the page says so

$b->evaluate($tab, row('users/u2') . q{.querySelector('button.act-drain').click()});
page_until(q{document.getElementById("status").className === "error"
             && /token/.test(document.getElementById("status").textContent)},
           'a drain without the token is refused, and the page says why');
is(redis_cmd('HGET', 't62:svc:users:inst:u2', 'state'), undef,
   'u2 is not drained in Redis');

# with it, the drain goes through the admin API into Redis

$b->evaluate($tab, q{(function () {
    var t = document.getElementById("token");
    t.value = "secret";
    t.dispatchEvent(new Event("change"));
    return true; })()});
$b->evaluate($tab, row('users/u1') . q{.querySelector('button.act-drain').click()});

ok(wait_until(sub {
       (redis_cmd('HGET', 't62:svc:users:inst:u1', 'state') // '') eq 'drain'
   }, timeout => 10), 'the drain button drained u1 in the registry (Redis)');
ok(wait_until(sub {
       ($ng->get('/gateway/services/users'))[2] =~ /"id":"u1",[^}]*"state":"drain"/
   }, timeout => 10), 'and the gateway shows u1 drained');
page_until(row('users/u1') . q{.dataset.state === "drain"},
           'the page shows u1 drained');
page_until(q{/^[0-9.]+ ms, p99 \u2264 [0-9.]+ ms$/.test(
                document.getElementById("lag").textContent)},
           'the sync panel shows the propagation lag of the change');

# set a weight

$b->evaluate($tab, row('users/u2')
               . q{.querySelector('input.weight').value = "7"});
$b->evaluate($tab, row('users/u2')
               . q{.querySelector('button.set-weight').click()});
ok(wait_until(sub {
       (redis_cmd('HGET', 't62:svc:users:inst:u2', 'weight') // '') eq '7'
   }, timeout => 10), 'Set weight changed u2 to 7 in the registry');

# a registration made in Redis appears by itself

register_in_redis('users', 'u3', $port[2], 'eu-3');
page_until(row('users/u3') . ' !== null',
           'an instance registered in Redis appears on the page');

# rates, once the page has seen traffic between two polls

my $deadline = time + tmo(10);
my $shown;
while (time < $deadline) {
    $ng->get('/users') for 1 .. 10;
    $shown = eval { $b->evaluate($tab, q{Array.prototype.some.call(
        document.querySelectorAll('tr[data-instance^="users/"] td.rate'),
        function (td) { return parseFloat(td.textContent) > 0; })}) };
    last if $shown;
}
ok($shown, 'request rates are shown');

my $png = "$dir/dashboard.png";
page_until(q{(function () {
    var s = 0;
    document.querySelectorAll('tr[data-instance^="users/"]')
      .forEach(function (tr) { s += parseFloat(tr.children[7].textContent)
                                    || 0; });
    return Math.abs(s - 100) <= 2; })()}, 'the shares of traffic add up to 100%');

ok($b->screenshot($tab, $png) > 10_000, 'a screenshot was taken');
my $art = repo_root() . '/build/artifacts';
File::Path::make_path($art);
File::Copy::copy($png, "$art/dashboard.png");
note("screenshot: $art/dashboard.png");

$b->stop;

# the directive

for my $t (['gateway_dashboard admin=gateway;',
            qr/invalid admin "gateway" in "gateway_dashboard": an absolute path/],
           ['gateway_dashboard admin=/a"b/;',
            qr/invalid admin "\/a"b\/" in "gateway_dashboard"/],
           ['gateway_dashboard foo=1;',
            qr/invalid parameter "foo=1" in "gateway_dashboard"/])
{
    my ($bad, $want) = @$t;
    my ($code, $out) = nginx_test_config(conf => <<"CONF");
    gateway_registry zone=gw:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /d { $bad }
    }
CONF
    isnt($code, 0, "nginx -t fails: $bad");
    like($out, $want, 'and says what is wrong, naming the directive');
}

done_testing;
