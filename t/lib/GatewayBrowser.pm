package GatewayBrowser;

# Headless Chromium driven over the DevTools protocol on a pipe
# (--remote-debugging-pipe: JSON messages ended by NUL, commands on fd 3,
# answers and events on fd 4), so a test needs no WebSocket client.
#
#   my $b = GatewayBrowser->start(dir => $dir);
#   my $page = $b->open_page($url);             # a session id
#   my $v = $b->evaluate($page, 'document.title'); # the value, decoded
#   $b->screenshot($page, "$dir/shot.png");
#   $b->stop;

use strict;
use warnings;
use POSIX ();
use IO::Select;
use JSON::PP;
use MIME::Base64 ();
use Time::HiRes ();

our $CHROMIUM = $ENV{GATEWAY_CHROMIUM} || '/usr/bin/chromium';

my $JSON = JSON::PP->new->canonical;

sub available { -x $CHROMIUM }

sub start {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "GatewayBrowser: dir is required\n";
    mkdir "$dir/profile";

    pipe(my $cmd_r, my $cmd_w) or die "pipe: $!\n";
    pipe(my $ev_r, my $ev_w) or die "pipe: $!\n";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        # above 4 first, so that neither end is clobbered by the other
        my $r = POSIX::dup(fileno $cmd_r);
        my $w = POSIX::dup(fileno $ev_w);
        $r = POSIX::dup($r) while $r <= 4;
        $w = POSIX::dup($w) while $w <= 4;
        POSIX::dup2($r, 3);
        POSIX::dup2($w, 4);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/chromium.log";
        open STDERR, '>&', \*STDOUT;
        { exec $CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
             '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync',
             '--disable-dev-shm-usage', "--user-data-dir=$dir/profile",
             '--remote-debugging-pipe', 'about:blank' };
        POSIX::_exit(127);
    }

    close $cmd_r;
    close $ev_w;
    binmode $cmd_w;
    binmode $ev_r;

    my $self = bless { pid => $pid, owner => $$, w => $cmd_w, r => $ev_r,
                       id => 0,
                       buf => '', dir => $dir,
                       timeout => $o{timeout} || 30 }, $class;

    # the browser answers once it is up
    $self->cmd('Browser.getVersion');
    return $self;
}

sub _read_message {
    my ($self, $deadline) = @_;
    my $sel = IO::Select->new($self->{r});
    while (1) {
        my $i = index $self->{buf}, "\0";
        if ($i >= 0) {
            my $m = substr $self->{buf}, 0, $i;
            substr($self->{buf}, 0, $i + 1) = '';
            return $JSON->decode($m);
        }
        my $left = $deadline - Time::HiRes::time();
        die "GatewayBrowser: no answer from chromium in time\n" if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $self->{r}, my $chunk, 65536;
        die "GatewayBrowser: chromium closed its pipe (see "
            . "$self->{dir}/chromium.log)\n" unless $n;
        $self->{buf} .= $chunk;
    }
}

# a command and its result; dies on a protocol error
sub cmd {
    my ($self, $method, $params, $session) = @_;
    my $id = ++$self->{id};
    my %m = (id => $id, method => $method, params => $params || {});
    $m{sessionId} = $session if defined $session;
    my $text = $JSON->encode(\%m) . "\0";
    my $off = 0;
    while ($off < length $text) {
        my $n = syswrite $self->{w}, $text, length($text) - $off, $off;
        die "GatewayBrowser: write: $!\n" unless defined $n;
        $off += $n;
    }
    my $deadline = Time::HiRes::time() + $self->{timeout};
    while (1) {
        my $msg = $self->_read_message($deadline);
        next unless defined $msg->{id} && $msg->{id} == $id;
        die "GatewayBrowser: $method: " . $JSON->encode($msg->{error}) . "\n"
            if $msg->{error};
        return $msg->{result};
    }
}

sub open_page {
    my ($self, $url, %o) = @_;
    my $t = $self->cmd('Target.createTarget', { url => 'about:blank' });
    my $s = $self->cmd('Target.attachToTarget',
                       { targetId => $t->{targetId}, flatten => JSON::PP::true });
    my $session = $s->{sessionId};
    $self->cmd('Emulation.setDeviceMetricsOverride',
               { width => $o{width} || 1280, height => $o{height} || 800,
                 deviceScaleFactor => 1, mobile => JSON::PP::false }, $session);
    $self->cmd('Page.navigate', { url => $url }, $session);
    return $session;
}

# the value of a JavaScript expression in the page (promises awaited)
sub evaluate {
    my ($self, $session, $expr) = @_;
    my $r = $self->cmd('Runtime.evaluate',
                       { expression => $expr, returnByValue => JSON::PP::true,
                         awaitPromise => JSON::PP::true }, $session);
    die "GatewayBrowser: $expr: "
        . ($r->{exceptionDetails}{exception}{description}
           // $r->{exceptionDetails}{text} // 'exception') . "\n"
        if $r->{exceptionDetails};
    return $r->{result}{value};
}

sub screenshot {
    my ($self, $session, $file) = @_;
    my $r = $self->cmd('Page.captureScreenshot', { format => 'png' },
                       $session);
    open my $fh, '>', $file or die "$file: $!\n";
    binmode $fh;
    print $fh MIME::Base64::decode_base64($r->{data});
    close $fh;
    return -s $file;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    eval { local $self->{timeout} = 5; $self->cmd('Browser.close'); 1 };
    my $deadline = time + 5;
    while (time < $deadline) {
        last if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        Time::HiRes::sleep(0.1);
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
    delete $self->{pid};
}

sub DESTROY { $_[0]->stop }

1;
