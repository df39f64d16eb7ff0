#!/usr/bin/perl
# `make install DESTDIR=...`: the .so, the load_module snippet and its
# modules-enabled link laid out as Debian's libnginx-mod-* packages do, the
# snippet loads the installed .so (nginx -t), every document names the same
# load_module path, and (as root) the state directory it creates is one the
# workers (user www-data) can write, while a state file in root's
# /var/lib/nginx fails with a message that says what to do.
#
# It also builds the Debian package (make deb, about 20 s; not in valgrind
# mode, or with GATEWAY_TEST_NO_DEB=1) and checks that the .so inside it
# loads and that it declares libhiredis and the nginx ABI.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use GatewayTest;

my $LOAD = '/usr/lib/nginx/modules/ngx_http_gateway_module.so';
my $root = repo_root();

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

# --- one load_module path in every document ---------------------------------

my @docs = (glob("$root/README.md"), glob("$root/docs/*.md"),
            glob("$root/conf.d/*.conf"), "$root/debian/mod-http-gateway.conf");
my $n = 0;
for my $doc (@docs) {
    my $text = slurp($doc) // next;
    (my $name = $doc) =~ s{^\Q$root\E/}{};
    while ($text =~ /load_module\s+(\S*gateway\S*?);/g) {
        is($1, $LOAD, "$name: load_module $LOAD");
        $n++;
    }
}
cmp_ok($n, '>=', 4, "the documents name the module's path ($n times)");

# --- the full example of docs/directives.md passes nginx -t -----------------

{
    my ($example) = slurp("$root/docs/directives.md") =~ /^```nginx\n(.*?)^```$/ms;
    ok($example && $example =~ /^load_module \Q$LOAD\E;$/m,
       'docs/directives.md: a complete example loading the module');
    my $dir = tempdir('ngxgw-example-XXXXXX', DIR => test_dir(), CLEANUP => 0);
    $example =~ s{^load_module \Q$LOAD\E;}{load_module ${\ module_path()};}m;
    my $temp = join '', map { "    ${_}_temp_path $dir/$_;\n" }
                   qw(client_body proxy fastcgi uwsgi scgi);
    $example =~ s/^http \{\n/http {\n$temp/m;
    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print {$fh} $example;
    close $fh;
    my ($c, $o) = run_cmd(cmd => ['/usr/sbin/nginx', '-t', '-p', "$dir/", '-c',
                                  "$dir/nginx.conf", '-e', "$dir/error.log",
                                  '-g', "pid $dir/nginx.pid;"]);
    is($c, 0, 'docs/directives.md: its example passes nginx -t') or diag($o);
}

# --- make install DESTDIR=... -------------------------------------------------

my $dest = tempdir('ngxgw-install-XXXXXX', DIR => test_dir(), CLEANUP => 0);
chmod 0755, $dest;    # the workers (www-data) must reach the state directory
my ($rc, $out) = run_cmd(cmd => ['make', '--no-print-directory', '-C', $root,
                                 'install', "DESTDIR=$dest"],
                         env => { SKIP_DEPS => 1 }, timeout => 120);
is($rc, 0, 'make install DESTDIR=... succeeds') or diag($out);

my $so = "$dest$LOAD";
ok(-f $so, 'the .so is in /usr/lib/nginx/modules/');
is(slurp($so), slurp(module_path()), 'it is the module that was built');
is((stat $so)[2] & 07777, 0644, 'mode 0644');

my $link = "$dest/etc/nginx/modules-enabled/50-mod-http-gateway.conf";
ok(-l $link, 'modules-enabled/50-mod-http-gateway.conf is a symlink');
is(readlink($link), '/usr/share/nginx/modules-available/mod-http-gateway.conf',
   'to modules-available/mod-http-gateway.conf, as libnginx-mod-* do');
my $snippet = slurp($dest . readlink($link));
is($snippet, "load_module $LOAD;\n", 'the snippet loads the installed module');

my $state_dir = "$dest/var/lib/nginx/gateway";
ok(-d $state_dir, 'the state directory /var/lib/nginx/gateway exists');
is((stat $state_dir)[2] & 07777, 0750, 'mode 0750');

# the snippet, with the staged path, in front of a configuration that uses
# the module's directives: nginx -t must load it
(my $staged = $snippet) =~ s{\Q$LOAD\E}{$so};
($rc, $out) = nginx_test_config(module => 0, main => $staged, conf => <<'EOF');
    gateway_registry zone=gw:1m;
    upstream gw { gateway_service $gw_service; keepalive 4; }
    map $request_uri $gw_service { default x; }
EOF
is($rc, 0, 'nginx -t with the installed snippet: the module loads') or diag($out);

# and without it the same configuration is unknown to nginx
($rc, $out) = nginx_test_config(module => 0, conf => 'gateway_registry zone=gw:1m;');
isnt($rc, 0, 'without the snippet the directive is unknown (the check can fail)');

# --- the state directory, as Debian's nginx uses it (root only) ------------

sub write_error {
    my ($dir) = @_;
    return qr/\[error\] .*gateway: cannot write state file "\Q$dir\E\/gateway\.state\.tmp\.\d+": the worker processes run as user "www-data", which must be able to create files in "\Q$dir\E"; give it a directory of its own, e\.g\. "install -d -o www-data -m 0750 \/var\/lib\/nginx\/gateway" \(make install does this\), and set "state_file=\/var\/lib\/nginx\/gateway\/registry\.state" \(13: Permission denied\)/;
}

SKIP: {
    skip 'needs root (nginx with "user www-data;")', 9 if $> != 0;
    skip 'no www-data user', 9 unless defined getpwnam('www-data');

    is((stat $state_dir)[4], scalar getpwnam('www-data'),
       'make install gave the state directory to www-data');

    my $ng = start_nginx(main => 'user www-data;', workers => 1, conf => <<"EOF");
    gateway_registry zone=gw:1m state_file=$state_dir/registry.state;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ { gateway_admin; }
    }
EOF
    my ($s) = $ng->request('PUT', '/gateway/services/users/instances/u1',
                           body => '{"address":"127.0.0.1:9"}');
    is($s, 201, 'registered (workers as www-data)');
    ok(wait_until(sub { -s "$state_dir/registry.state" }, timeout => 3),
       'the workers wrote the state file into /var/lib/nginx/gateway');
    unlike($ng->error_log, qr/cannot write state file/, 'no write error');
    $ng->stop;

    # the mistake the old documentation led to: /var/lib/nginx is root's
    my $root_dir = "$dest/var/lib/nginx";
    is((stat $root_dir)[4], 0, '/var/lib/nginx belongs to root');
    my $bad = start_nginx(main => 'user www-data;', workers => 1, conf => <<"EOF");
    gateway_registry zone=gw:1m state_file=$root_dir/gateway.state;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /gateway/ { gateway_admin; }
    }
EOF
    ($s) = $bad->request('PUT', '/gateway/services/users/instances/u1',
                         body => '{"address":"127.0.0.1:9"}');
    is($s, 201, 'routing and registration do not depend on the state file');
    my $line = wait_until(sub {
        $bad->error_log =~ /^(.*cannot write state file.*)$/m ? $1 : undef;
    }, timeout => 3);
    like($line // '', write_error($root_dir),
         'the error names the file, the user, the directory, the fix and errno')
        or diag($line // $bad->error_log);
    like(slurp("$root/docs/operations.md"), write_error('/var/lib/nginx'),
         'docs/operations.md shows that message as it is');
    ok(!-e "$root_dir/gateway.state", 'nothing was written there');
    $bad->stop;
}

# --- make deb ---------------------------------------------------------------

SKIP: {
    skip 'make deb: not in valgrind mode or with GATEWAY_TEST_NO_DEB=1', 7
        if valgrind_mode() || $ENV{GATEWAY_TEST_NO_DEB};

    my $out_dir = tempdir('ngxgw-deb-XXXXXX', DIR => test_dir(), CLEANUP => 0);
    ($rc, $out) = run_cmd(cmd => ['make', '--no-print-directory', '-C', $root,
                                  'deb', "DEB_OUT=$out_dir"],
                          env => { SKIP_DEPS => 1 }, timeout => 300);
    is($rc, 0, 'make deb succeeds') or diag($out);
    my ($deb) = glob("$out_dir/libnginx-mod-http-gateway_*.deb");
    ok($deb, 'it made libnginx-mod-http-gateway_*.deb') or diag($out);
    $deb //= '/nonexistent';

    my ($c, $fields) = run_cmd(cmd => ['dpkg-deb', '-f', $deb, 'Depends']);
    like($fields, qr/\blibhiredis0\.14\b/, 'Depends: libhiredis (shlibs)');
    like($fields, qr/\bnginx-abi-1\.22\.1-\d+\b/, 'Depends: the nginx ABI');

    my $x = tempdir('ngxgw-debx-XXXXXX', DIR => test_dir(), CLEANUP => 0);
    ($c, $out) = run_cmd(cmd => ['dpkg-deb', '-x', $deb, $x]);
    is(slurp("$x/usr/share/nginx/modules-available/mod-http-gateway.conf"),
       "load_module $LOAD;\n", 'the package has the same snippet');
    ok(-d "$x/var/lib/nginx/gateway", 'and the state directory');
    ($rc, $out) = nginx_test_config(module => 0, main => "load_module $x$LOAD;",
                                    conf => 'gateway_registry zone=gw:1m;');
    is($rc, 0, 'the .so inside the package loads (nginx -t)') or diag($out);
}

done_testing();
