#!/usr/bin/perl
# The main job (`make run`) end to end, in its one-shot mode: Redis, the demo
# services and the gateway start, traffic is balanced, a new instance gets
# traffic, a deregistered one leaves, and everything is stopped again.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my ($code, $out) = run_cmd(cmd => ['bash', repo_root() . '/scripts/run.sh'],
                           env => { RUN_ONCE => 1 },
                           timeout => tmo(120));

is($code, 0, 'RUN_ONCE=1 scripts/run.sh exits 0') or diag($out);
like($out, qr/^DEMO OK$/m, 'the demonstration passed');
like($out, qr/users-4/, 'a newly registered instance took part');
unlike($out, qr/\[(?:alert|crit|emerg)\]/, 'no alert in what it printed');

done_testing();
