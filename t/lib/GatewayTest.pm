package GatewayTest;

# Test harness for ngx_gateway: starts real redis-server and real nginx
# (Debian's /usr/sbin/nginx with build/ngx_http_gateway_module.so) on free
# loopback ports inside a temp dir per test file, and stops them by PID at the
# end, also when the test dies.  Core Perl only.
#
#   use FindBin; use lib "$FindBin::Bin/lib";
#   use Test::More;
#   use GatewayTest;
#
#   my $redis = start_redis();                 # 127.0.0.1:free port
#   is(redis_cmd('PING'), 'PONG');
#   my $ng = start_nginx(conf => <<'EOF');     # text inside http { }
#       gateway_registry zone=gw:1m redis=redis://127.0.0.1:%%REDIS_PORT%%;
#       server { listen 127.0.0.1:%%PORT%%; location /gateway/ { gateway_admin; } }
#   EOF
#   my ($status, $headers, $body) = $ng->get('/gateway/services');
#   done_testing();
#
# Placeholders in conf/main/events text: %%PORT%%, %%PORT2%%..%%PORT9%% (a
# free port each, kept across reloads of the same nginx), %%REDIS_PORT%%,
# %%REDIS_SOCKET%% (the last started Redis), %%TESTDIR%% (the test file's temp
# dir), %%NGINX_DIR%% (this nginx's own dir), %%ROOT%% (repo root), and any
# NAME given in vars => { NAME => value }.
#
# At the end (and at every explicit ->stop) each nginx's error log must have
# no [alert], [crit] or [emerg] line other than those allowed with
# expect_log_errors(qr/.../), every nginx must exit within a bound after
# SIGQUIT, and in valgrind mode no valgrind log may report an error.  A
# violation fails the test file.
#
# Environment:
#   GATEWAY_TEST_VALGRIND=1   run nginx under valgrind memcheck (make test-valgrind)
#   GATEWAY_TEST_KEEP=1       keep the temp dirs (they are kept anyway on failure)
#   GATEWAY_TEST_DEBUG=1      error_log level debug instead of info
#   GATEWAY_TEST_TIMEOUT_FACTOR=N  multiply every timeout (default 1, valgrind 20)
#   GATEWAY_NGINX, GATEWAY_MODULE  other nginx binary / module .so
#   GATEWAY_TEST_TMPDIR       where temp dirs go (default $TMPDIR or /tmp)

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG setpgid);
use Test::More ();
use Test2::API qw(test2_add_callback_exit);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    free_port test_dir repo_root module_path valgrind_mode tmo wait_until
    run_cmd
    start_redis redis_cmd redis_cli redis_port redis_connect redis_error
    redis_calls
    start_nginx nginx_test_config start_backend backend_pid stop_backend
    start_slow_backend accept_counter
    start_collector
    http_get http_request http_raw
    json_decode json_encode
    expect_log_errors
);

my $ROOT      = abs_path(dirname(abs_path(__FILE__)) . '/../..');
my $MAIN_PID  = $$;
my $VALGRIND  = $ENV{GATEWAY_TEST_VALGRIND} ? 1 : 0;
my $FACTOR    = $ENV{GATEWAY_TEST_TIMEOUT_FACTOR} || ($VALGRIND ? 20 : 1);
my $NGINX     = $ENV{GATEWAY_NGINX} || '/usr/sbin/nginx';
my $MODULE    = $ENV{GATEWAY_MODULE} || "$ROOT/build/ngx_http_gateway_module.so";
my $JS_MODULE = '/usr/lib/nginx/modules/ngx_http_js_module.so';
my $REDIS_SERVER = '/usr/bin/redis-server';
my $REDIS_CLI    = '/usr/bin/redis-cli';

my $TESTDIR;
my %USED_PORTS;
my @NGINX;            # every nginx started (GatewayTest::Nginx)
my @REDIS;            # every redis started (GatewayTest::RedisServer)
my $CUR_NGINX;        # the last started nginx: default for http_get('/x')
my $CUR_REDIS;        # the last started redis: default for redis_cmd
my %REDIS_CONN;       # port => GatewayTest::RedisConn for redis_cmd
my @LOG_ALLOW;        # expect_log_errors patterns
my @PROBLEMS;         # found at the end, after done_testing
my $EXIT_FAIL = 0;
my $CONF_N = 0;

$SIG{PIPE} = 'IGNORE';
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        Test::More::diag("caught SIG$sig, stopping");
        exit 1;
    };
}

sub repo_root     { $ROOT }
sub module_path   { $MODULE }
sub valgrind_mode { $VALGRIND }

# a timeout in seconds, scaled for valgrind mode
sub tmo { my ($s) = @_; return $s * $FACTOR }

sub test_dir {
    return $TESTDIR if defined $TESTDIR;
    my $base = $ENV{GATEWAY_TEST_TMPDIR} || File::Spec->tmpdir;
    my ($name) = $0 =~ m{([^/]+?)(?:\.t)?$};
    $name = 'test' unless defined $name;
    $name =~ s/[^A-Za-z0-9._-]/_/g;
    $TESTDIR = tempdir("ngxgw-$name-XXXXXX", DIR => $base, CLEANUP => 0);
    # nginx workers run as "nobody" when the tests run as root: let them
    # write here (state files, unix sockets) as they would in their own dir
    chmod 0777, $TESTDIR;
    return $TESTDIR;
}

# a free TCP port on 127.0.0.1, below the ephemeral range (so that it does not
# collide with the local ports of outgoing connections), never handed twice
sub free_port {
    for (1 .. 1000) {
        my $port = 20000 + int(rand(12000));
        next if $USED_PORTS{$port};
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
            Listen => 1, ReuseAddr => 0) or next;
        close $s;
        $USED_PORTS{$port} = 1;
        return $port;
    }
    die "free_port: no free port found\n";
}

# wait_until(sub { ... }, timeout => 5, interval => 0.05): the first true
# value the sub returns, or undef after the (scaled) timeout
sub wait_until {
    my ($code, %o) = @_;
    my $deadline = time + tmo($o{timeout} // 5);
    my $interval = $o{interval} // 0.05;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return undef if time > $deadline;
        sleep $interval;
    }
}

sub expect_log_errors { push @LOG_ALLOW, @_ }

sub _slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    my $text = <$fh>;
    return defined $text ? $text : '';
}

sub _spit {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "cannot write $file: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $file: $!\n";
}

sub _tail {
    my ($file, $n) = @_;
    my @lines = split /\n/, _slurp($file);
    @lines = @lines[-$n .. -1] if @lines > $n;
    return join("\n", @lines);
}

# fork + exec in a new process group; stdout+stderr to $out
sub _spawn {
    my (%o) = @_;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        eval {
            setpgid(0, 0);
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', $o{out} or die "open $o{out}: $!";
            open STDERR, '>&', \*STDOUT or die "dup: $!";
            if (defined $o{stdin}) {
                open STDIN, '<', $o{stdin} or die "open $o{stdin}: $!";
            }
            $ENV{$_} = $o{env}{$_} for keys %{ $o{env} || {} };
            chdir $o{dir} if defined $o{dir};
            exec { $o{cmd}[0] } @{ $o{cmd} } or die "exec $o{cmd}[0]: $!";
        };
        print STDERR $@ if $@;
        POSIX::_exit(127);
    }
    return $pid;
}

# waits for $pid at most $timeout seconds: its wait status, or undef
sub _wait_pid {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r < 0;                # not our child (any more)
        return undef if time > $deadline;
        sleep 0.02;
    }
}

# runs a command to completion (bounded): (exit code, output)
sub _run {
    my (%o) = @_;
    my $out = File::Spec->catfile(test_dir(), sprintf('run-%d-%d.out', $$, ++$CONF_N));
    unlink $out;
    my $pid = _spawn(%o, out => $out);
    my $st = _wait_pid($pid, $o{timeout} // tmo(30));
    if (!defined $st) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        $st = _wait_pid($pid, 5);
        my $text = _slurp($out);
        unlink $out;
        return (-1, $text . "\n[killed: timeout]\n");
    }
    my $text = _slurp($out);
    unlink $out;
    my $code = $st & 127 ? 128 + ($st & 127) : $st >> 8;
    return ($code, $text);
}

# run_cmd(cmd => [...], stdin => FILE, env => {...}, dir => DIR,
#         timeout => s): runs it to completion, stdout and stderr together;
# returns (exit code, output); exit code -1 when it was killed on timeout
sub run_cmd {
    my (%o) = @_;
    $o{timeout} = tmo($o{timeout} // 30);
    return _run(%o);
}

sub _problem {
    my ($msg) = @_;
    my $tb = Test::More->builder;
    if ($$ == $MAIN_PID && !defined $tb->has_plan) {
        # still inside the test: a real failing test
        Test::More::ok(0, $msg);
    } else {
        Test::More::diag("FAIL: $msg");
        $EXIT_FAIL = 1;
    }
}

########################################################################
# JSON and HTTP

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub json_encode { $JSON->encode($_[0]) }

# undef (and a diag) when the text is not JSON
sub json_decode {
    my ($text) = @_;
    return undef unless defined $text;
    my $v = eval { $JSON->decode($text) };
    if ($@) {
        my $show = length($text) > 300 ? substr($text, 0, 300) . '...' : $text;
        Test::More::diag("json_decode: not JSON: $show");
        return undef;
    }
    return $v;
}

# http_request(METHOD, URL_OR_PATH, headers => {...}, body => '...',
#              json => $data, timeout => s)
# A path ("/x") goes to the last started nginx's %%PORT%%.  List context:
# (status, headers, body); scalar context: HTTP::Tiny's response hash (with
# status, reason, headers, content) plus body => content.  Status 599 means
# the request itself failed (content tells why).
sub http_request {
    my ($method, $url, %o) = @_;
    if ($url =~ m{^/}) {
        die "http_request: no nginx started for path $url\n" unless $CUR_NGINX;
        $url = $CUR_NGINX->url($url);
    }
    my $http = HTTP::Tiny->new(
        keep_alive   => 0,
        timeout      => $o{timeout} // tmo(5),
        max_redirect => 0,
        agent        => 'ngx-gateway-test/1',
    );
    my %opt = (headers => { %{ $o{headers} || {} } });
    if (exists $o{json}) {
        $opt{content} = json_encode($o{json});
        $opt{headers}{'content-type'} //= 'application/json';
    } elsif (defined $o{body}) {
        $opt{content} = $o{body};
    }
    my $res = $http->request($method, $url, \%opt);
    $res->{body} = $res->{content};
    return wantarray ? ($res->{status}, $res->{headers}, $res->{content}) : $res;
}

sub http_get { my ($url, %o) = @_; return http_request('GET', $url, %o) }

# http_raw(PORT, BYTES, timeout => s): sends the bytes as they are and returns
# all that comes back until the peer closes (or the timeout)
sub http_raw {
    my ($port, $bytes, %o) = @_;
    my $timeout = $o{timeout} // tmo(5);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout)
        or return undef;
    binmode $s;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($s, $bytes, length($bytes) - $off, $off);
        last unless $n;
        $off += $n;
    }
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $deadline = time + $timeout;
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    return $buf;
}

########################################################################
# Redis

# start_redis(port => P, args => [...]): a redis-server on 127.0.0.1 (and a
# unix socket) in the test dir, no persistence; becomes the default for
# redis_cmd/redis_cli/%%REDIS_PORT%%
sub start_redis {
    my (%o) = @_;
    my $r = GatewayTest::RedisServer->new(%o);
    $r->start;
    push @REDIS, $r;
    $CUR_REDIS = $r;
    return $r;
}

sub redis_port {
    die "no redis started\n" unless $CUR_REDIS;
    return $CUR_REDIS->port;
}

# a new connection: ->cmd(@args), ->send(@args), ->read_reply(timeout),
# ->pending(timeout) (for SUBSCRIBE), ->close
sub redis_connect {
    my (%o) = @_;
    my $port = $o{port} // redis_port();
    return GatewayTest::RedisConn->new(port => $port, %o);
}

# redis_cmd(@args): the parsed reply of one command on the default Redis:
# a string, an integer, undef (nil), an array ref (nested), or a
# GatewayTest::RedisError (true; stringifies to "ERR ..."; see redis_error)
sub redis_cmd {
    my (@args) = @_;
    my $port = redis_port();
    for my $try (1, 2) {
        my $c = $REDIS_CONN{$port} ||= redis_connect(port => $port);
        my $r = eval { $c->cmd(@args) };
        return $r unless $@;
        delete $REDIS_CONN{$port};
        die "redis_cmd(@args): $@" if $try == 2;
    }
}

# redis_calls(CMD): how often the default Redis ran CMD (lowercase, as
# INFO commandstats names it) since its start or CONFIG RESETSTAT
sub redis_calls {
    my ($cmd) = @_;
    my ($n) = redis_cmd('INFO', 'commandstats')
              =~ /^cmdstat_\Q$cmd\E:calls=(\d+)/m;
    return $n // 0;
}

# the error message when $reply is a Redis error reply, else undef
sub redis_error {
    my ($reply) = @_;
    return ref($reply) eq 'GatewayTest::RedisError' ? $reply->{message} : undef;
}

# redis_cli(@args) runs `redis-cli -p PORT @args`; redis_cli({stdin => TEXT,
# port => P}, @args) feeds TEXT on its standard input (doc recipes verbatim).
# Scalar context: the output; list context: (output, exit code).
sub redis_cli {
    my $opt = ref $_[0] eq 'HASH' ? shift : {};
    my $port = $opt->{port} // redis_port();
    my $stdin;
    if (defined $opt->{stdin}) {
        $stdin = File::Spec->catfile(test_dir(), "redis-cli-$$.in");
        _spit($stdin, $opt->{stdin});
    }
    my ($code, $out) = _run(cmd => [$REDIS_CLI, '-p', $port, @_],
                            stdin => $stdin, timeout => tmo(20));
    unlink $stdin if defined $stdin;
    return wantarray ? ($out, $code) : $out;
}

########################################################################
# nginx

# start_nginx(conf => HTTP_TEXT, main => TEXT, events => TEXT, js => 1,
#             workers => N, debug => 1, vars => {...}, module => 0,
#             env => {...}, may_fail => 1, wait_port => PORT)
sub start_nginx {
    my (%o) = @_;
    my $ng = GatewayTest::Nginx->new(%o);
    push @NGINX, $ng;
    $ng->start;
    $CUR_NGINX = $ng if $ng->running;
    return $ng;
}

# nginx_test_config(conf => ..., same options as start_nginx): runs
# `nginx -t` on it; returns (exit code, output)
sub nginx_test_config {
    my (%o) = @_;
    my $ng = GatewayTest::Nginx->new(%o, kind => 'test');
    return $ng->test_config;
}

# valgrind memcheck in valgrind mode; leak => 0 for `nginx -t`, which exits
# right after parsing without freeing its cycle (by design): only memory
# errors count there
sub _valgrind_cmd {
    my ($dir, %o) = @_;
    return () unless $VALGRIND;
    my @leak = ($o{leak} // 1)
        ? ('--leak-check=full', '--errors-for-leak-kinds=definite',
           '--show-leak-kinds=definite')
        : ('--leak-check=no');
    my @cmd = ('valgrind', '--tool=memcheck', '--trace-children=yes',
        '--error-exitcode=99', @leak,
        '--num-callers=40', '--track-origins=yes', '--vgdb=no',
        "--log-file=$dir/valgrind.%p.log");
    my $supp = "$ROOT/t/valgrind.supp";
    push @cmd, "--suppressions=$supp" if -f $supp;
    push @cmd, '--gen-suppressions=all' if $ENV{GATEWAY_TEST_VALGRIND_GENSUPP};
    return @cmd;
}

sub _check_error_log {
    my ($name, $file, $from) = @_;
    my $text = _slurp($file);
    $text = substr($text, $from) if $from && $from <= length $text;
    my @bad;
    for my $line (split /\n/, $text) {
        next unless $line =~ /\[(?:alert|crit|emerg)\]/;
        next if grep { $line =~ $_ } @LOG_ALLOW;
        push @bad, $line;
    }
    return unless @bad;
    my $n = @bad;
    splice @bad, 20 if @bad > 20;
    _problem("$name: $n unexpected [alert]/[crit]/[emerg] line(s) in $file:\n"
             . join("\n", map { "    $_" } @bad));
}

my %VG_CHECKED;

our @KILLED_HARD;     # processes a test SIGKILLed with kill_hard

sub _check_valgrind_logs {
    my ($dir) = @_;
    return unless $VALGRIND;
    # a worker that the test SIGKILLed on purpose (its "exited on signal 9"
    # [alert] must be allowed with expect_log_errors) leaves no summary
    my %killed = map { $_ => 1 }
        _slurp("$dir/error.log") =~ /process (\d+) exited on signal 9\b/g,
        @KILLED_HARD;
    for my $log (sort glob("$dir/valgrind.*.log")) {
        next if $VG_CHECKED{$log}++;
        my $text = _slurp($log);
        my ($errors) = $text =~ /ERROR SUMMARY: (\d+) errors/;
        my ($pid) = $log =~ /valgrind\.(\d+)\.log$/;
        next if !defined $errors && $killed{$pid};
        if (!defined $errors) {
            _problem("valgrind: $log has no ERROR SUMMARY"
                     . " (the process did not exit normally)");
            next;
        }
        my @ours;
        for my $block (split /\n==\d+==\s*\n/, $text) {
            push @ours, $block
                if $block =~ /definitely lost/ && $block =~ /ngx_(?:http_)?gateway/;
        }
        next if $errors == 0 && !@ours;
        my $show = join("\n", grep { /^==\d+==/ } split /\n/, $text);
        $show = substr($show, 0, 12000) . "\n    ..." if length $show > 12000;
        _problem("valgrind: $errors error(s)"
                 . (@ours ? ', definite leaks in ngx_gateway code' : '')
                 . " in $log:\n$show");
    }
}

########################################################################
# start_backend(SUB): a test backend in a child process on a free loopback
# port; SUB gets the listening socket and serves until it returns (or the
# child is killed when the test ends).  Returns the port.  With
# port => P it listens on that port again (a backend that comes back after
# stop_backend(P)); backend_pid(P) is its process.

my @BACKENDS;
my %BACKEND_PID;

sub backend_pid { $BACKEND_PID{$_[0]} }

# stop_backend(PORT): SIGKILLs that backend (by its pid) and reaps it
sub stop_backend {
    my ($port) = @_;
    my $pid = delete $BACKEND_PID{$port} or return;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    @BACKENDS = grep { $_ != $pid } @BACKENDS;
}

sub start_backend {
    my ($serve, %o) = @_;
    my $port = $o{port} // free_port();
    my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port, Listen => 128, ReuseAddr => 1, Proto => 'tcp')
        or die "backend listen: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(TERM INT);
        eval { $serve->($ls) };
        POSIX::_exit(0);
    }
    close $ls;
    push @BACKENDS, $pid;
    $BACKEND_PID{$port} = $pid;
    return $port;
}

# start_slow_backend(delay => S, body => TEXT, poll => S, on_accept => SUB,
# port => P): a backend that reads each request and answers it S seconds
# later with 200 and TEXT (default: its own port), "Connection: close",
# many connections at once; it looks at its sockets every poll seconds
# (default 0.01) and calls on_accept->() for each connection it accepts.
# Returns the port.
# connections a backend accepted, counted across its process: returns the
# on_accept callback for start_slow_backend() and a sub giving the count
sub accept_counter {
    my ($dir) = @_;
    my $file = "$dir/accepted";
    my $note = sub {
        open my $fh, '>>', $file or die "$file: $!";
        syswrite $fh, "x\n";
        close $fh;
    };
    my $count = sub {
        my $t = _slurp($file) // '';
        return scalar(() = $t =~ /x/g);
    };
    return ($note, $count);
}

sub start_slow_backend {
    my (%o) = @_;
    my $delay = $o{delay} // 1;
    my $poll = $o{poll} // 0.01;
    return start_backend(sub {
        my ($ls) = @_;
        my $body = $o{body} // $ls->sockport;
        my $head = "HTTP/1.1 200 OK\r\nContent-Length: " . length($body)
                   . "\r\nConnection: close\r\n\r\n";
        my $sel = IO::Select->new($ls);
        my (%buf, %due);
        while (1) {
            for my $s ($sel->can_read($poll)) {
                if ($s == $ls) {
                    my $c = $ls->accept or next;
                    $o{on_accept}->() if $o{on_accept};
                    $sel->add($c);
                    $buf{$c} = '';
                    next;
                }
                my $n = sysread($s, $buf{$s}, 4096, length $buf{$s});
                if (!$n) {
                    $sel->remove($s);
                    delete $buf{$s};
                    delete $due{$s};
                    close $s;
                    next;
                }
                $due{$s} //= [$s, time + $delay] if $buf{$s} =~ /\r\n\r\n/;
            }
            for my $k (keys %due) {
                my ($s, $t) = @{ $due{$k} };
                next if time < $t;
                syswrite($s, $head . $body);
                $sel->remove($s);
                delete $buf{$k};
                delete $due{$k};
                close $s;
            }
        }
    }, defined $o{port} ? (port => $o{port}) : ());
}

########################################################################
# start_collector(port => P): the OTLP/HTTP test collector of
# t/collector (node), which decodes every batch with OpenTelemetry's own
# protobufjs root; its npm packages are installed by `npm ci` from the
# committed lock file into build/collector once.  Returns an object:
# ->port, ->batches (every batch received: {protocol, resource, spans,
# conn}), ->errors (batches it could not decode), ->stats ({requests,
# connections}), ->stop, ->start (the same port), ->pause / ->resume
# (SIGSTOP / SIGCONT: a collector that hangs).

my @COLLECTORS;

sub collector_deps {
    my $src = "$ROOT/t/collector";
    my $dir = "$ROOT/build/collector";
    my $pkg = "$dir/node_modules/\@opentelemetry/otlp-transformer/package.json";
    my $lock = _slurp("$src/package-lock.json");
    return $dir if -f $pkg && _slurp("$dir/package-lock.json") eq $lock;
    make_path($dir);
    _spit("$dir/package.json", _slurp("$src/package.json"));
    _spit("$dir/package-lock.json", $lock);
    my ($code, $out) = run_cmd(cmd => ['npm', 'ci', '--no-audit', '--no-fund',
                                       '--ignore-scripts', '--prefix', $dir],
                               timeout => 300);
    die "npm ci for the test collector failed ($code):\n$out\n"
        if $code || !-f $pkg;
    return $dir;
}

sub start_collector {
    my (%o) = @_;
    my $c = GatewayTest::Collector->new(%o, modules => collector_deps());
    push @COLLECTORS, $c;
    $c->start;
    return $c;
}

########################################################################
# the end: stop everything we started, check logs, keep the dir on failure

END {
    if (defined $MAIN_PID && $$ == $MAIN_PID) {
        my $exit = $?;
        local $?;
        local $@;
        my $tb = Test::More->builder;
        for my $pid (@BACKENDS) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }
        $_->stop for @COLLECTORS;
        for my $ng (reverse @NGINX) {
            eval { $ng->stop; 1 } or Test::More::diag("stopping nginx: $@");
        }
        for my $r (reverse @REDIS) {
            eval { $r->stop; 1 } or Test::More::diag("stopping redis: $@");
        }
        _check_valgrind_logs($_) for _dirs_with_valgrind_logs();
        if ($exit || !$tb->is_passing || $EXIT_FAIL) {
            for my $ng (@NGINX) {
                my $log = $ng->error_log_path;
                next unless -s $log;
                Test::More::diag("--- last lines of $log:\n" . _tail($log, 40));
            }
            Test::More::diag("test dir kept: $TESTDIR") if defined $TESTDIR;
        } elsif (defined $TESTDIR && !$ENV{GATEWAY_TEST_KEEP}) {
            remove_tree($TESTDIR, { safe => 1 });
        } elsif (defined $TESTDIR) {
            Test::More::diag("test dir kept: $TESTDIR");
        }
    }
}

sub _dirs_with_valgrind_logs {
    return () unless defined $TESTDIR;
    my %d;
    for my $f (glob("$TESTDIR/valgrind.*.log"), glob("$TESTDIR/*/valgrind.*.log")) {
        $d{ dirname($f) } = 1;
    }
    return sort keys %d;
}

test2_add_callback_exit(sub {
    my ($ctx, $real, $new) = @_;
    return unless $$ == $MAIN_PID;
    $$new = 1 if $EXIT_FAIL && !$$new;
});

########################################################################

package GatewayTest::RedisError;

use overload '""' => sub { $_[0]{message} }, 'bool' => sub { 1 },
             fallback => 1;

sub new { my ($class, $msg) = @_; return bless { message => $msg }, $class }

########################################################################

package GatewayTest::RedisConn;

use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

sub new {
    my ($class, %o) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $o{port}, Proto => 'tcp',
        Timeout => GatewayTest::tmo(2))
        or die "redis connect 127.0.0.1:$o{port}: $!\n";
    binmode $sock;
    return bless { sock => $sock, buf => '', port => $o{port},
                   timeout => $o{timeout} // GatewayTest::tmo(5) }, $class;
}

sub send {
    my ($self, @args) = @_;
    my $msg = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        my $b = defined $a ? "$a" : '';
        utf8::encode($b) if utf8::is_utf8($b);
        $msg .= '$' . length($b) . "\r\n$b\r\n";
    }
    my $off = 0;
    while ($off < length $msg) {
        my $n = syswrite($self->{sock}, $msg, length($msg) - $off, $off);
        die "redis write: $!\n" unless defined $n && $n > 0;
        $off += $n;
    }
    return 1;
}

sub cmd {
    my ($self, @args) = @_;
    $self->send(@args);
    return $self->read_reply;
}

# true when a reply (or part of one) is there within $timeout seconds
sub pending {
    my ($self, $timeout) = @_;
    return 1 if length $self->{buf};
    return IO::Select->new($self->{sock})->can_read($timeout // 0) ? 1 : 0;
}

sub _fill {
    my ($self, $deadline) = @_;
    my $left = $deadline - time;
    die "redis read: timeout\n" if $left <= 0;
    IO::Select->new($self->{sock})->can_read($left)
        or die "redis read: timeout\n";
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    die "redis read: " . (defined $n ? 'connection closed' : $!) . "\n"
        unless $n;
}

sub _line {
    my ($self, $deadline) = @_;
    while (1) {
        my $i = index($self->{buf}, "\r\n");
        if ($i >= 0) {
            my $line = substr($self->{buf}, 0, $i);
            substr($self->{buf}, 0, $i + 2, '');
            return $line;
        }
        $self->_fill($deadline);
    }
}

sub _bytes {
    my ($self, $n, $deadline) = @_;
    $self->_fill($deadline) while length($self->{buf}) < $n;
    return substr($self->{buf}, 0, $n, '');
}

# one RESP2 reply: simple string, error, integer, bulk, arrays (nested)
sub read_reply {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    return $self->_reply($deadline);
}

sub _reply {
    my ($self, $deadline) = @_;
    my $line = $self->_line($deadline);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    if ($type eq '+') { return $rest }
    if ($type eq '-') { return GatewayTest::RedisError->new($rest) }
    if ($type eq ':') { return 0 + $rest }
    if ($type eq '$') {
        return undef if $rest < 0;
        my $data = $self->_bytes($rest + 2, $deadline);
        return substr($data, 0, $rest);
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { $self->_reply($deadline) } 1 .. $rest ];
    }
    die "redis: unexpected reply line: $line\n";
}

sub close {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    delete $self->{sock};
}

########################################################################

package GatewayTest::RedisServer;

use File::Path qw(make_path);
use Time::HiRes qw(sleep time);

sub new {
    my ($class, %o) = @_;
    my $port = $o{port} // GatewayTest::free_port();
    my $dir = GatewayTest::test_dir() . "/redis-$port";
    return bless { port => $port, dir => $dir, args => $o{args} || [] },
                 $class;
}

sub port   { $_[0]{port} }
sub dir    { $_[0]{dir} }
sub pid    { $_[0]{pid} }
sub unix_socket { "$_[0]{dir}/redis.sock" }
sub log_file    { "$_[0]{dir}/redis.log" }

sub start {
    my ($self) = @_;
    die "redis already running\n" if $self->{pid};
    make_path($self->{dir});
    chmod 0777, $self->{dir};
    my @cmd = ($REDIS_SERVER,
        '--port', $self->{port}, '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        '--dir', $self->{dir}, '--logfile', $self->log_file,
        '--unixsocket', $self->unix_socket, '--unixsocketperm', '777',
        @{ $self->{args} });
    $self->{pid} = GatewayTest::_spawn(cmd => \@cmd,
                                       out => "$self->{dir}/redis.out");
    my $ok = GatewayTest::wait_until(sub {
        my $st = waitpid($self->{pid}, POSIX::WNOHANG());
        if ($st == $self->{pid}) {
            delete $self->{pid};
            die "redis-server exited at start:\n"
                . GatewayTest::_tail($self->log_file, 20)
                . GatewayTest::_slurp("$self->{dir}/redis.out") . "\n";
        }
        my $c = eval { GatewayTest::RedisConn->new(port => $self->{port}) }
            or return 0;
        my $r = eval { $c->cmd('PING') };
        $c->close;
        return defined $r && !ref $r && $r eq 'PONG';
    }, timeout => 10);
    die "redis-server on port $self->{port} did not answer PING\n" unless $ok;
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    delete $REDIS_CONN{ $self->{port} };
    kill 'TERM', $pid;
    my $st = GatewayTest::_wait_pid($pid, GatewayTest::tmo(10));
    if (!defined $st) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        GatewayTest::_wait_pid($pid, 5);
    }
}

sub restart { my ($self) = @_; $self->stop; return $self->start }

# freeze / thaw the server (SIGSTOP / SIGCONT): "reachable but not answering"
sub pause  { kill 'STOP', $_[0]{pid} if $_[0]{pid} }
sub resume { kill 'CONT', $_[0]{pid} if $_[0]{pid} }

########################################################################

package GatewayTest::Nginx;

use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $N_NGINX = 0;

sub new {
    my ($class, %o) = @_;
    my $n = ++$N_NGINX;
    my $kind = $o{kind} // 'run';
    my $dir = GatewayTest::test_dir() . ($kind eq 'test' ? "/conf-$n" : "/nginx-$n");
    make_path($dir);
    chmod 0777, $dir;
    my $self = bless {
        %o,
        n       => $n,
        name    => ($kind eq 'test' ? "nginx -t #$n" : "nginx #$n"),
        dir     => $dir,
        vars    => { %{ $o{vars} || {} } },
        workers => $o{workers} // 2,
    }, $class;
    return $self;
}

sub dir            { $_[0]{dir} }
sub pid            { $_[0]{pid} }
sub running        { defined $_[0]{pid} }
sub error_log_path { "$_[0]{dir}/error.log" }
sub access_log_path { "$_[0]{dir}/access.log" }
sub conf_path      { "$_[0]{dir}/nginx.conf" }
sub error_log      { GatewayTest::_slurp($_[0]->error_log_path) }
sub exit_status    { $_[0]{exit_status} }

# a port placeholder's value: port() is %%PORT%%, port('PORT2') %%PORT2%%
sub port {
    my ($self, $name) = @_;
    $name //= 'PORT';
    return $self->{vars}{$name} //= GatewayTest::free_port();
}

sub url {
    my ($self, $path) = @_;
    return 'http://127.0.0.1:' . $self->port . ($path // '/');
}

sub get     { my ($self, $path, %o) = @_; return GatewayTest::http_request('GET', $self->url($path), %o) }
sub request { my ($self, $m, $path, %o) = @_; return GatewayTest::http_request($m, $self->url($path), %o) }

# n GETs of path: a hash of answers (the body of a 200, else "status N") to
# their counts
sub spread {
    my ($self, $path, $n, %o) = @_;
    my %c;
    for (1 .. $n) {
        my ($st, undef, $body) = $self->get($path, %o);
        $c{ $st == 200 ? $body : "status $st" }++;
    }
    return \%c;
}

sub _var {
    my ($self, $name) = @_;
    my $v = $self->{vars};
    return $v->{$name} if exists $v->{$name};
    return $v->{$name} = GatewayTest::free_port() if $name =~ /^PORT\d*$/;
    return GatewayTest::redis_port() if $name eq 'REDIS_PORT';
    return $CUR_REDIS->unix_socket if $name eq 'REDIS_SOCKET' && $CUR_REDIS;
    return GatewayTest::test_dir() if $name eq 'TESTDIR';
    return $self->{dir} if $name eq 'NGINX_DIR';
    return $ROOT if $name eq 'ROOT';
    die "unknown placeholder %%$name%% (pass vars => { $name => ... })\n";
}

sub _subst {
    my ($self, $text) = @_;
    return '' unless defined $text;
    $text =~ s/%%([A-Z][A-Z0-9_]*)%%/$self->_var($1)/ge;
    return $text;
}

sub _write_conf {
    my ($self) = @_;
    my $d = $self->{dir};
    my $level = ($self->{debug} || $ENV{GATEWAY_TEST_DEBUG}) ? 'debug' : 'info';
    my $conf = "# written by t/lib/GatewayTest.pm\n";
    $conf .= "load_module $MODULE;\n" unless defined $self->{module} && !$self->{module};
    $conf .= "load_module $JS_MODULE;\n" if $self->{js};
    $conf .= "daemon off;\nmaster_process on;\n"
          .  "worker_processes $self->{workers};\n"
          .  "pid $d/nginx.pid;\n"
          .  "error_log $d/error.log $level;\n"
          .  $self->_subst($self->{main}) . "\n"
          .  "events {\n    worker_connections 1024;\n"
          .  $self->_subst($self->{events}) . "\n}\n"
          .  "http {\n"
          .  "    client_body_temp_path $d/client_body_temp;\n"
          .  "    proxy_temp_path $d/proxy_temp;\n"
          .  "    fastcgi_temp_path $d/fastcgi_temp;\n"
          .  "    uwsgi_temp_path $d/uwsgi_temp;\n"
          .  "    scgi_temp_path $d/scgi_temp;\n"
          .  "    access_log $d/access.log;\n\n"
          .  $self->_subst($self->{conf}) . "\n}\n";
    GatewayTest::_spit($self->conf_path, $conf);
    return $conf;
}

sub _cmd {
    my ($self, @extra) = @_;
    my $d = $self->{dir};
    my $test = grep { $_ eq '-t' } @extra;
    return (GatewayTest::_valgrind_cmd($d, leak => !$test), $NGINX, '-p', "$d/",
            '-c', $self->conf_path, '-e', $self->error_log_path, @extra);
}

sub test_config {
    my ($self) = @_;
    $self->_write_conf;
    return GatewayTest::_run(cmd => [ $self->_cmd('-t') ], env => $self->{env},
                             timeout => GatewayTest::tmo(30));
}

sub _count {
    my ($self, $re, $from) = @_;
    my $text = $self->error_log;
    $text = substr($text, $from) if $from && $from <= length $text;
    my $n = () = $text =~ /$re/g;
    return $n;
}

sub start {
    my ($self) = @_;
    die "$self->{name} already running\n" if $self->{pid};
    my $conf = $self->_write_conf;
    # %%PORT%% (when the config uses it) must accept connections
    my $wait_port = $self->{wait_port} // $self->{vars}{PORT};
    my $log_from = -s $self->error_log_path || 0;
    $self->{pid} = GatewayTest::_spawn(cmd => [ $self->_cmd ],
        out => "$self->{dir}/stderr.log", env => $self->{env});
    my $died;
    my $ok = GatewayTest::wait_until(sub {
        my $r = waitpid($self->{pid}, WNOHANG);
        if ($r == $self->{pid}) {
            $self->{exit_status} = $?;
            delete $self->{pid};
            $died = 1;
            return 1;
        }
        return 0 if $self->_count(qr/start worker process \d+/, $log_from)
                    < $self->{workers};
        return 1 unless $wait_port;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $wait_port, Proto => 'tcp', Timeout => 1) or return 0;
        close $s;
        return 1;
    }, timeout => 10);
    if ($died) {
        my $why = "$self->{name} exited at start (status $self->{exit_status}):\n"
            . GatewayTest::_tail($self->error_log_path, 20) . "\n"
            . GatewayTest::_tail("$self->{dir}/stderr.log", 20);
        return $self if $self->{may_fail};
        die $why . "\n";
    }
    if ($ok) {
        $CUR_NGINX = $self;
        return $self;
    }
    {
        my $why = "$self->{name} did not get ready in time"
            . ($wait_port ? " (port $wait_port)" : '') . ":\n"
            . GatewayTest::_tail($self->error_log_path, 20);
        $self->stop;
        die $why . "\n";
    }
    return $self;
}

# worker process ids (children of the master), from /proc
sub worker_pids {
    my ($self) = @_;
    return () unless $self->{pid};
    my @pids;
    for my $stat (glob('/proc/[0-9]*/stat')) {
        my $s = GatewayTest::_slurp($stat) or next;
        my ($pid, $ppid) = $s =~ /^(\d+) \(.*\) \S+ (\d+)/s or next;
        push @pids, $pid if $ppid == $self->{pid};
    }
    @pids = sort { $a <=> $b } @pids;
    return @pids;      # a count in scalar context
}

# reload(conf => ..., main => ..., events => ..., wait_old => 1): rewrites
# nginx.conf when given new text (same placeholders), sends SIGHUP and waits
# until the new workers run (and, with wait_old, until the old ones exited).
# True on success, false when the master kept the old config.
sub reload {
    my ($self, %o) = @_;
    die "$self->{name} not running\n" unless $self->{pid};
    for my $k (qw(conf main events)) {
        $self->{$k} = $o{$k} if exists $o{$k};
    }
    $self->_write_conf;
    my $from = -s $self->error_log_path || 0;
    kill 'HUP', $self->{pid};
    my $res;
    GatewayTest::wait_until(sub {
        if ($self->_count(qr/start worker process \d+/, $from) >= $self->{workers}) {
            return $res = 1;
        }
        if ($self->_count(qr/\[emerg\]/, $from)) {
            $res = 0;
            return 1;
        }
        return 0;
    }, timeout => $o{timeout} // 10);
    return 0 unless $res;
    if ($o{wait_old}) {
        GatewayTest::wait_until(sub {
            scalar($self->worker_pids) <= $self->{workers}
        }, timeout => $o{timeout} // 10) or return 0;
    }
    return 1;
}

# waits for a line matching $re in the error log (after byte offset $from);
# the first match or undef
sub wait_log {
    my ($self, $re, %o) = @_;
    my $from = $o{from} // 0;
    my $found;
    GatewayTest::wait_until(sub {
        my $text = $self->error_log;
        $text = substr($text, $from) if $from <= length $text;
        return $found = $1 // $& if $text =~ /($re)/;
        return 0;
    }, timeout => $o{timeout} // 5);
    return $found;
}

sub log_size { -s $_[0]->error_log_path || 0 }

# the gateway dies: SIGKILL to the master and its workers, reaped; nothing
# runs at exit (no lease given back)
sub kill_hard {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    my @workers = $self->worker_pids_of($pid);
    # SIGKILLed on purpose: their valgrind logs end without a summary
    push @GatewayTest::KILLED_HARD, $pid, @workers;
    kill 'KILL', @workers;
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    GatewayTest::_wait_pid($pid, 5);
    $self->{log_checked} = $self->log_size;
    $CUR_NGINX = undef if $CUR_NGINX && $CUR_NGINX == $self;
}

# kill_workers(pids => [...], replaced => 1, timeout => 10): SIGKILLs
# those workers (default: all of them) and waits until they are gone and,
# unless replaced => 0 (old workers after a reload), the master runs as
# many workers as before; true when it came to that.  Their valgrind logs
# end without a summary on purpose; the test still has to allow the
# master's "exited on signal 9" [alert] with expect_log_errors.
sub kill_workers {
    my ($self, %o) = @_;
    my @all = $self->worker_pids;
    my @pids = @{ $o{pids} // \@all };
    my %gone = map { $_ => 1 } @pids;
    my $want = ($o{replaced} // 1) ? @all : @all - @pids;
    push @GatewayTest::KILLED_HARD, @pids;
    kill 'KILL', @pids;
    return GatewayTest::wait_until(sub {
        my @now = $self->worker_pids;
        return @now == $want && !grep { $gone{$_} } @now;
    }, timeout => $o{timeout} // 10);
}

sub worker_pids_of {
    my ($self, $pid) = @_;
    local $self->{pid} = $pid;
    return $self->worker_pids;
}

# graceful stop: SIGQUIT (workers finish, exit_process runs, valgrind does
# its leak check), then SIGTERM and SIGKILL to the process group after bounds
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid};
    return $self->{exit_status} unless $pid;
    kill 'QUIT', $pid;
    my $limit = GatewayTest::tmo(10);
    my $st = GatewayTest::_wait_pid($pid, $limit);
    if (!defined $st) {
        GatewayTest::_problem("$self->{name} (pid $pid) did not exit within"
                              . " ${limit}s after SIGQUIT");
        kill 'TERM', $pid;
        $st = GatewayTest::_wait_pid($pid, GatewayTest::tmo(5));
        if (!defined $st) {
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            $st = GatewayTest::_wait_pid($pid, 5);
        }
    }
    # stray workers of a master that did not wait for them
    kill 'KILL', -$pid if kill 0, -$pid;
    delete $self->{pid};
    $self->{exit_status} = $st;
    if (defined $st && $st > 0) {
        my $code = $st & 127 ? 'signal ' . ($st & 127) : 'code ' . ($st >> 8);
        GatewayTest::_problem("$self->{name} exited with $code after SIGQUIT"
                              . ($VALGRIND && ($st >> 8) == 99 ? ' (valgrind errors)' : ''));
    }
    GatewayTest::_check_error_log($self->{name}, $self->error_log_path,
                                  $self->{log_checked} // 0);
    $self->{log_checked} = $self->log_size;
    GatewayTest::_check_valgrind_logs($self->{dir});
    $CUR_NGINX = undef if $CUR_NGINX && $CUR_NGINX == $self;
    return $st;
}

1;

########################################################################

package GatewayTest::Collector;

use File::Path qw(make_path);
use Time::HiRes qw(sleep time);

sub new {
    my ($class, %o) = @_;
    my $dir = GatewayTest::test_dir() . '/collector-' . (++$CONF_N);
    make_path($dir);
    return bless { dir => $dir, modules => $o{modules},
                   port => $o{port} // GatewayTest::free_port() }, $class;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

sub start {
    my ($self) = @_;
    die "collector already running\n" if $self->{pid};
    my $pf = "$self->{dir}/port";
    unlink $pf;
    $self->{pid} = GatewayTest::_spawn(
        cmd => ['node', "$ROOT/t/collector/collector.js", $pf,
                $self->{port}],
        out => "$self->{dir}/collector.log",
        env => { NODE_PATH => "$self->{modules}/node_modules" });
    GatewayTest::wait_until(sub { -s $pf }, timeout => 20)
        or die "the collector did not start:\n"
               . GatewayTest::_slurp("$self->{dir}/collector.log") . "\n";
    $self->{port} = GatewayTest::_slurp($pf) + 0;
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'CONT', $pid;
    kill 'TERM', $pid;
    if (!defined GatewayTest::_wait_pid($pid, 5)) {
        kill 'KILL', $pid;
        GatewayTest::_wait_pid($pid, 5);
    }
}

sub pause  { kill 'STOP', $_[0]{pid} if $_[0]{pid} }
sub resume { kill 'CONT', $_[0]{pid} if $_[0]{pid} }

sub _get {
    my ($self, $path) = @_;
    my ($st, undef, $body) = GatewayTest::http_get(
        "http://127.0.0.1:$self->{port}$path");
    die "collector $path: $st $body\n" unless $st == 200;
    return GatewayTest::json_decode($body);
}

sub batches { $_[0]->_get('/batches')->{batches} }
sub errors  { $_[0]->_get('/batches')->{errors} }
sub stats   { $_[0]->_get('/stats') }

# every span received, in order
sub spans {
    my ($self) = @_;
    return [ map { @{ $_->{spans} } } @{ $self->batches } ];
}
