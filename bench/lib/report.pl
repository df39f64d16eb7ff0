#!/usr/bin/perl
# ngx_gateway bench: writes docs/performance.md from bench/results/*.csv,
# *.meta and *.problems.  Text between "<!-- notes:begin -->" and
# "<!-- notes:end -->" in the existing document is kept (hand-written
# findings survive a regeneration).
#
#   perl bench/lib/report.pl RESULTS_DIR OUT.md

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use Text::ParseWords qw(parse_line);

my ($res, $out) = @ARGV;
die "usage: report.pl RESULTS_DIR OUT.md\n" unless $res && $out;

sub rel {   # path of a results file relative to the document
    my $f = shift;
    return File::Spec->abs2rel(File::Spec->rel2abs("$res/$f"),
                               File::Spec->rel2abs(dirname($out)));
}

sub csv {   # [header, rows...] or undef
    my $f = "$res/$_[0]";
    open my $fh, '<', $f or return undef;
    my @rows;
    while (my $l = <$fh>) {
        chomp $l;
        next if $l eq '';
        push @rows, [parse_line(',', 0, $l)];
    }
    return \@rows;
}

sub meta {
    my %m;
    open my $fh, '<', "$res/$_[0].meta" or return \%m;
    while (my $l = <$fh>) { chomp $l; my ($k, $v) = split /=/, $l, 2; $m{$k} = $v }
    return \%m;
}

sub problems {
    open my $fh, '<', "$res/$_[0].problems" or return ();
    my @p = <$fh>;
    chomp @p;
    return @p;
}

sub md_table {  # rows, [columns] (all when undef), {col => title}
    my ($rows, $cols, $titles) = @_;
    return "_no data_\n" unless $rows && @$rows > 1;
    my @h = @{$rows->[0]};
    my %i; @i{@h} = 0 .. $#h;
    my @c = $cols ? grep { exists $i{$_} } @$cols : @h;
    my $s = '| ' . join(' | ', map { $titles->{$_} // $_ } @c) . " |\n";
    $s .= '|' . join('|', map { '---' } @c) . "|\n";
    for my $r (@$rows[1 .. $#$rows]) {
        $s .= '| ' . join(' | ', map { $r->[$i{$_}] // '' } @c) . " |\n";
    }
    return $s;
}

sub get {   # value of column $col in the row whose first column is $key
    my ($rows, $key, $col) = @_;
    return undef unless $rows;
    my %i; @i{@{$rows->[0]}} = 0 .. $#{$rows->[0]};
    return undef unless exists $i{$col};
    for my $r (@$rows[1 .. $#$rows]) {
        return $r->[$i{$col}] if $r->[0] eq $key;
    }
    return undef;
}

sub median {
    my @a = sort { $a <=> $b } @_;
    return undef unless @a;
    return @a % 2 ? $a[$#a / 2] : ($a[@a / 2 - 1] + $a[@a / 2]) / 2;
}

sub commify { my $n = reverse shift; $n =~ s/(\d{3})(?=\d)/$1,/g; return scalar reverse $n }

sub verdict { defined $_[0] ? ($_[0] ? 'met' : '**not met**') : 'not measured' }

# keep the hand-written notes
my $notes = "_(none yet)_\n";
if (open my $fh, '<', $out) {
    local $/;
    my $old = <$fh>;
    $notes = $1 if $old =~ /<!-- notes:begin -->\n(.*?)<!-- notes:end -->/s;
}

my %meta;
my @SCEN = qw(throughput callgrind convergence scale scale1m gateways notice failover apply selection);
$meta{$_} = meta($_) for @SCEN;
my ($any) = grep { $meta{$_}{date} } @SCEN;
my $m = $any ? $meta{$any} : {};

my $tp    = csv('throughput.csv');
my $tpr   = csv('throughput_rounds.csv');
my $cg    = csv('callgrind.csv');
my $conv  = csv('convergence.csv');
my $scale = csv('scale.csv');
my $gws   = csv('gateways.csv');
my $gwr   = csv('gateways_recipe.csv');
my $ntc   = csv('notice.csv');
my $ntcf  = csv('notice_functions.csv');
my $s1m   = csv('scale1m.csv');
my $fo    = csv('failover.csv');
my $apply = csv('apply.csv');
my $sel   = csv('selection.csv');
my $selc  = csv('selection_ceiling.csv');
# tracing: the callgrind and throughput scenarios run with its variants
my $cgt   = csv('callgrind_trace.csv');
my $tpt   = csv('throughput_trace.csv');
$meta{$_} = meta($_) for qw(callgrind_trace throughput_trace);

# the largest 15 rows of callgrind_functions_V.csv of each variant measured
sub functions {
    my ($t, $variants, $against) = @_;
    my $d = '';
    for my $v (@$variants) {
        next unless defined get($t, $v, 'ir_per_request');
        my $cgf = csv("callgrind_functions_$v.csv") or next;
        my @rows = @$cgf[0 .. ($#$cgf < 15 ? $#$cgf : 15)];
        $d .= "\n$v vs $against:\n\n" . md_table(\@rows);
    }
    return $d;
}

# "Command: ..., date, commit" of one scenario's run
sub ran {
    my $mm = $meta{$_[0]};
    return '' unless $mm->{date};
    return "Command: `$mm->{command}`, $mm->{date}, commit $mm->{git}, module sha256 $mm->{module}"
         . ($mm->{load} ? "; load average $mm->{load}" : '') . ".\n\n";
}

# ---------------------------------------------------------------- targets --

my @targets;
{
    my $r = get($tp, 'gateway', 'ratio_to_stock');
    push @targets, ['throughput >= 0.95 x stock nginx (req/s)',
                    defined $r ? sprintf('%.2f x', $r) : 'n/a', verdict(defined $r ? $r >= 0.95 : undef)];
    my $c = get($tp, 'gateway', 'cpu_ratio_to_stock');
    push @targets, ['same, as proxy CPU per request (stock / gateway)',
                    $c ? sprintf('%.2f x', 1 / $c) : 'n/a', verdict($c ? 1 / $c >= 0.95 : undef)];

    # gateway / lua: median of per-round ratios
    my (%rps, %rounds);
    if ($tpr) {
        for my $row (@$tpr[1 .. $#$tpr]) { $rps{"$row->[0],$row->[1]"} = $row->[2]; $rounds{$row->[0]} = 1 }
    }
    my @ratios = map { $rps{"$_,lua"} ? $rps{"$_,gateway"} / $rps{"$_,lua"} : () }
                 grep { defined $rps{"$_,gateway"} } keys %rounds;
    my $gl = median(@ratios);
    push @targets, ['throughput >= 1.2 x Lua balancer (req/s)',
                    defined $gl ? sprintf('%.2f x', $gl) : 'n/a', verdict(defined $gl ? $gl >= 1.2 : undef)];
    my ($cg_, $cl_) = (get($tp, 'gateway', 'cpu_us_per_req'), get($tp, 'lua', 'cpu_us_per_req'));
    push @targets, ['same, as proxy CPU per request (Lua / gateway)',
                    ($cg_ && $cl_) ? sprintf('%.2f x', $cl_ / $cg_) : 'n/a',
                    verdict(($cg_ && $cl_) ? $cl_ / $cg_ >= 1.2 : undef)];

    # from the counts, not the CSV's ratio (rounded to 3 places: 1.0103
    # would read as 1.010 and pass a 1% target)
    my ($irg_, $irs_) = (get($cg, 'gateway', 'ir_per_request'), get($cg, 'stock', 'ir_per_request'));
    my $ir = ($irg_ && $irs_) ? $irg_ / $irs_ : get($cg, 'gateway', 'ratio_to_stock');
    push @targets, ['instructions/request within +5% of stock',
                    defined $ir ? sprintf('%+.1f%%', ($ir - 1) * 100) : 'n/a',
                    verdict(defined $ir ? $ir <= 1.05 : undef)];

    push @targets, ['round robin instructions/request within +1% of stock (peer-selection core)',
                    defined $ir ? sprintf('%+.2f%%', ($ir - 1) * 100) : 'n/a',
                    verdict(defined $ir ? $ir <= 1.01 : undef)];
    my ($irf, $irr) = (get($cg, 'gateway_failures', 'ir_per_request'), get($cg, 'gateway', 'ir_per_request'));
    push @targets, ['gateway_eject + gateway_retry_budget instructions/request within +3% of round robin alone',
                    ($irf && $irr) ? sprintf('%+.1f%%', ($irf / $irr - 1) * 100) : 'n/a',
                    verdict(($irf && $irr) ? $irf / $irr <= 1.03 : undef)];
    my $irlim = get($cg, 'gateway_limit', 'ir_per_request');
    push @targets, ['gateway_eject + gateway_retry_budget + gateway_max_requests instructions/request within +3% of round robin alone',
                    ($irlim && $irr) ? sprintf('%+.1f%%', ($irlim / $irr - 1) * 100) : 'n/a',
                    verdict(($irlim && $irr) ? $irlim / $irr <= 1.03 : undef)] if $irlim;
    my $irall = get($cg, 'gateway_all', 'ir_per_request');
    push @targets, ['same + gateway_health_check (all the failure handling at once), for reference',
                    ($irall && $irr) ? sprintf('%+.1f%%', ($irall / $irr - 1) * 100) : 'n/a',
                    'reference'] if $irall;
    my $irb = get($cg, 'gateway_before', 'ratio_to_stock');
    push @targets, ['round robin, the module before (gateway_before), vs stock, for reference',
                    sprintf('%+.1f%%', ($irb - 1) * 100), 'reference'] if defined $irb;

    my ($irg, $irl) = (get($cg, 'gateway', 'ir_per_request'), get($cg, 'lua', 'ir_per_request'));
    push @targets, ['instructions/request: Lua balancer / gateway >= 1.2 x',
                    ($irg && $irl) ? sprintf('%.2f x', $irl / $irg) : 'n/a',
                    verdict(($irg && $irl) ? $irl / $irg >= 1.2 : undef)];

    for my $s (['one_gateway', 'one gateway, 2 workers', 10], ['two_gateway', 'two gateways, 2 workers each', 10],
               ['four_gateway', 'one gateway, 4 workers', 1]) {
        my $p99 = get($conv, $s->[0], 'p99_ms');
        my $to  = get($conv, $s->[0], 'timeouts');
        push @targets, ["convergence p99 < $s->[2] ms ($s->[1], the gateways' lag stamps)",
                        defined $p99 ? "$p99 ms" . ($to ? " ($to timeouts)" : '') : 'n/a',
                        verdict(defined $p99 ? ($p99 ne 'nan' && $p99 < $s->[2] && !$to) : undef)];
    }

    my $sync = get($scale, 'full_sync_256m', 'value');
    push @targets, ['100,000 instances: full sync < 2 s',
                    defined $sync ? ($sync eq 'timeout' ? 'timeout' : "$sync s") : 'n/a',
                    verdict(defined $sync ? ($sync ne 'timeout' && $sync < 2) : undef)];
    my $shm = get($scale, 'shm_touched_256m_zone', 'value');
    my $fits = get($scale, 'fits_in_64m_zone', 'value');
    push @targets, ['100,000 instances: < 64 MiB shared memory',
                    defined $shm ? "$shm MiB touched; 64m zone enough: " . ($fits // 'n/a') : 'n/a',
                    verdict(defined $shm ? ($shm < 64 && ($fits // 'yes') eq 'yes') : undef)];

    my $idle = get($scale, 'idle_cpu_redis_amortized', 'value');
    push @targets, ['100,000 instances: Redis CPU per idle gateway <= 1 ms/s (tick + full comparison every 5 min)',
                    defined $idle ? "$idle ms/s" : 'n/a', verdict(defined $idle ? $idle <= 1 : undef)];
    my $s1 = get($s1m, 'full_sync', 'value');
    push @targets, ['1,000,000 instances: full sync < 6 s (`bench/run scale1m`)',
                    defined $s1 ? ($s1 eq 'timeout' ? 'timeout' : "$s1 s") : 'n/a',
                    verdict(defined $s1 ? ($s1 ne 'timeout' && $s1 < 6) : undef)];
    my $z1 = get($s1m, 'shm_touched', 'value');
    push @targets, ['1,000,000 instances: zone < 400 MiB',
                    defined $z1 ? "$z1 MiB" : 'n/a', verdict(defined $z1 ? $z1 < 400 : undef)];
    my ($i1m, $i1s) = (get($s1m, 'ir_per_request_scale1m_users', 'value'),
                       get($s1m, 'ir_per_request_scale_small', 'value'));
    push @targets, ['1,000,000 instances: Ir/request within +1% of a 3-instance registry (same 3-instance service)',
                    ($i1m && $i1s) ? sprintf('%+.1f%% (%d vs %d)', ($i1m / $i1s - 1) * 100, $i1m, $i1s) : 'n/a',
                    verdict(($i1m && $i1s) ? $i1m / $i1s <= 1.01 : undef)];
    my $core = get($gws, '100', 'changes_core_pct');
    push @targets, ['100 gateways, 100 changes/s: Redis below 50% of one core',
                    defined $core ? "$core%" : 'n/a', verdict(defined $core ? $core < 50 : undef)];
    my $gp99 = get($gws, '100', 'conv_p99_ms');
    my $gto = get($gws, '100', 'conv_timeouts');
    push @targets, ['100 gateways: convergence p99 to all of them < 10 ms (the largest of the 100 lag stamps per change)',
                    defined $gp99 ? "$gp99 ms" . ($gto ? " ($gto timeouts)" : '') : 'n/a',
                    verdict(defined $gp99 ? ($gp99 ne 'nan' && $gp99 < 10 && !$gto) : undef)];

    my ($s3, $b3) = (get($scale, 'ir_per_request_scale_small', 'value'), get($scale, 'ir_per_request_scale_big3', 'value'));
    push @targets, ['Ir/request independent of registry size (10,000 x 10 vs 1 x 3, same 3-instance service)',
                    ($s3 && $b3) ? sprintf('%+.1f%% (%s vs %s)', ($b3 / $s3 - 1) * 100, $b3, $s3) : 'n/a',
                    verdict(($s3 && $b3) ? $b3 / $s3 <= 1.01 : undef)];
    # the same for every other balancing method the run measured
    for my $row ($scale ? @$scale[1 .. $#$scale] : ()) {
        my ($b, $big) = $row->[0] =~ /^ir_per_request_(\w+)_scale_(big3|one3)$/ or next;
        my ($bs, $bb) = (get($scale, "ir_per_request_${b}_scale_small", 'value'), $row->[1]);
        push @targets, ["Ir/request independent of registry size, gateway_balance $b ("
                        . ($big eq 'big3' ? '10,000 x 10' : '10,000 x 1') . ' vs 1 x 3)',
                        ($bs && $bb) ? sprintf('%+.1f%% (%s vs %s)', ($bb / $bs - 1) * 100, $bb, $bs) : 'n/a',
                        verdict(($bs && $bb) ? $bb / $bs <= 1.01 : undef)];
    }

    my $added = get($apply, 'during', 'added_p99_ms');
    my $big = get($apply, 'during', 'bulk_instances');
    my $amax = get($apply, 'during', 'added_max_ms');
    push @targets, [sprintf('applying a %s-instance service: < 2 ms added p99 of an unrelated service',
                            defined $big ? commify($big) : '10,000'),
                    (defined $added && $added ne 'nan')
                        ? sprintf('%+.3f ms (max %+.3f ms)', $added, $amax) : 'n/a',
                    verdict(defined $added ? ($added ne 'nan' && $added < 2) : undef)];

    for my $t (['gateway_trace1', 1, 'tracing on, 1% sampled: <= +1% Ir/request vs off'],
               ['gateway_trace100', 5, 'tracing on, 100% sampled, protobuf: <= +5% Ir/request vs off'])
    {
        my $r = get($cgt, $t->[0], 'ratio_to_gateway');
        push @targets, [$t->[2], defined $r ? sprintf('%+.1f%%', ($r - 1) * 100) : 'n/a',
                        verdict(defined $r ? ($r - 1) * 100 <= $t->[1] : undef)];
    }
    {
        my $r = get($tpt, 'gateway_trace100', 'ratio_to_gateway');
        push @targets, ['tracing on, 100% sampled, protobuf: <= 5% less throughput (req/s) vs off',
                        defined $r ? sprintf('%.2f x', $r) : 'n/a',
                        verdict(defined $r ? $r >= 0.95 : undef)];
    }

    my ($lf, $mx) = (get($sel, 'lockfree', 'scaling_2w_over_1w'), get($sel, 'mutex', 'scaling_2w_over_1w'));
    push @targets, ['selection microbenchmark: >= 1.9 x selections/s from 1 to 2 processes (lock-free, round robin, one service)',
                    defined $lf ? sprintf('%.2f x (mutex design: %.2f x)', $lf, $mx // 0) : 'n/a',
                    verdict(defined $lf ? $lf >= 1.9 : undef)];
    # every balancer on one hot service, counters published once per pass
    # of K selections (the MODE_passK rows)
    my @modes = $sel ? map { $_->[0] } @$sel[1 .. $#$sel] : ();
    my ($split) = grep { /^lockfree_split_pass\d+$/ } @modes;
    my ($indep) = grep { /^lockfree_independent_pass\d+$/ } @modes;
    for my $mode (grep { /^lockfree(_random|_least_request|_p2c|_peak_ewma|_hash|_ketama|_maglev)?_pass\d+$|^lockfree_span$/ } @modes) {
        my $v = get($sel, $mode, 'scaling_2w_over_1w');
        push @targets, ["selection microbenchmark: >= 1.9 x from 1 to 2 processes, one service, $mode",
                        sprintf('%.2f x (per CPU time %.2f x; ceilings: a service per process %s, two nginx instances %s)', $v,
                                get($sel, $mode, 'cpu_scaling_2w_over_1w'),
                                $split ? sprintf('%.2f x', get($sel, $split, 'scaling_2w_over_1w')) : 'n/a',
                                $indep ? sprintf('%.2f x', get($sel, $indep, 'scaling_2w_over_1w')) : 'n/a'),
                        verdict($v >= 1.9)];
    }
}

# ------------------------------------------------------------------- write --

my $doc = '';
my $secs = join(', ', map { "$_ $meta{$_}{seconds} s" } grep { defined $meta{$_}{seconds} } @SCEN);
$m->{$_} //= 'n/a' for qw(date machine command git module);
# scenarios are re-run one by one: each one's date and commit
my $runs = join('; ', map { "$_ $meta{$_}{date} (commit $meta{$_}{git}, module $meta{$_}{module})" }
                      grep { $meta{$_}{date} } @SCEN);
my %mach = map { $meta{$_}{machine} => 1 } grep { $meta{$_}{machine} } @SCEN;
$m->{machine} = join('; ', sort keys %mach) if %mach;
$doc .= <<"EOF";
# ngx_gateway performance

Generated by `bench/run` from `bench/results/`; regenerate the
document alone with `bench/run report`.  Hand-written findings live in the
notes block below and survive regeneration.

- **Runs:** $runs
- **Machine:** $m->{machine}
- **Command:** `bench/run SCENARIO` from the repository root (durations: $secs; each section names its run's exact command)
- **Software:** Debian 12 nginx 1.22.1 (all nginx variants), lua-nginx-module + lua-resty-core from Debian, HAProxy 2.6, Redis 7.0, wrk 4.1, valgrind 3.19
- **Layout:** every proxy alone on CPU 0 with one worker; wrk (`-t1 -c50`), the backends (single-process nginx `return 200`) and Redis on CPU 1; every proxy (nginx variants and HAProxy) started with `GLIBC_TUNABLES=glibc.malloc.trim_threshold=4194304:glibc.malloc.mmap_threshold=4194304`
- **Caveat:** a shared, noisy 2-core VM (other jobs ran at the same time).  Absolute req/s swing 20-40% between runs; compare ratios measured in the same run (variants interleaved, medians of rounds).  Instruction counts (callgrind) are stable.

## Targets

| target | measured | verdict |
|---|---|---|
EOF
$doc .= "| $_->[0] | $_->[1] | $_->[2] |\n" for @targets;

my @allp;
for my $s (@SCEN) {
    push @allp, map { "$s: $_" } problems($s);
}
$doc .= "\n### Problems the run detected automatically\n\n";
$doc .= @allp ? join('', map { "- $_\n" } @allp) : "None (no alert/crit/emerg lines, no crash, no timeout, no client error).\n";

$doc .= "\n## Notes and findings\n\n<!-- notes:begin -->\n$notes<!-- notes:end -->\n";

$doc .= <<"EOF";

## Throughput

`bench/run throughput`: the same three backends for every variant; the
variants run interleaved (order rotated each round), each measurement of
wrk `-t1 -c50` preceded by a warm-up; medians over the rounds, ratio = median
of the per-round ratios to stock nginx.  Every nginx variant uses
`proxy_http_version 1.1`, `keepalive 32` and `proxy_next_upstream error timeout`.

EOF
if ($tp) {
    $doc .= "- `$_->[0]`: $_->[1]\n" for @$tp[1 .. $#$tp];
    my $n = get($tp, $tp->[1][0], 'rounds');
    $doc .= "\n$n rounds.\n\n" if $n;
}
$doc .= md_table($tp, [qw(variant median_rps ratio_to_stock max_rps best_ratio_to_stock p50_us p99_us cpu_us_per_req cpu_ratio_to_stock proxy_core_busy_pct load_core_busy_pct non2xx socket_errors)],
                 { median_rps => 'req/s (median)', p50_us => 'p50 (us)', p99_us => 'p99 (us)',
                   ratio_to_stock => 'req/s ratio to stock (median of rounds)', min_rps => 'min req/s', max_rps => 'best req/s',
                   best_ratio_to_stock => 'best/best ratio to stock',
                   socket_errors => 'socket errors', cpu_us_per_req => 'proxy CPU us/request',
                   cpu_ratio_to_stock => 'CPU/request ratio to stock',
                   proxy_core_busy_pct => 'proxy core busy %', load_core_busy_pct => 'load core busy %' });
$doc .= <<"EOF";

"proxy CPU us/request" is the user+system CPU time of the proxy's processes
during the measurement divided by the requests served; "busy %" is how busy
the proxy's core and the load core (wrk, backends, Redis) were.  When the
load core is at ~100% the load side, not the proxy, limits req/s and the req/s
ratios are squeezed towards 1; the CPU/request ratio then tells more about the
proxy's own cost.
EOF
$doc .= "\n![latency distributions](" . rel('throughput_latency.png') . ")\n" if -f "$res/throughput_latency.png";
$doc .= "\nPer-round numbers: [`throughput_rounds.csv`](" . rel('throughput_rounds.csv') . ").\n";

$doc .= <<"EOF";

## Instructions per request (callgrind)

`bench/run callgrind`: the variants of `BENCH_CG_VARIANTS` (by default
stock nginx, the gateway and the Lua balancer; the same configurations as
in the throughput scenario), each nginx as a single
process (`master_process off`) under `valgrind --tool=callgrind`; after 200
warm-up requests the counters
are zeroed (`callgrind_control -z`), 2000 requests are sent over one
keepalive connection, and the counts are dumped (`callgrind_control -d`).
`gateway_before` is the same gateway configuration with the module built
from another commit (`GATEWAY_MODULE_BEFORE`).  The other gateway
variants are in `bench/variants/`: one per balancing method, and the
failure handling: `gateway_failures` (`gateway_eject` +
`gateway_retry_budget`), `gateway_limit` (the same +
`gateway_max_requests 10000`), `gateway_max_requests` (the limit alone)
and `gateway_all` (all of them + `gateway_health_check interval=60s`,
so that no probe runs in the measured phase: what is measured is the
request path's filter).

EOF
$doc .= ran('callgrind');
$doc .= md_table($cg, [qw(variant requests runs ir_per_request min_ir_per_request max_ir_per_request ratio_to_stock module_ir_per_request)],
                 { ir_per_request => 'Ir/request (median of runs)', ratio_to_stock => 'ratio to stock',
                   min_ir_per_request => 'min', max_ir_per_request => 'max',
                   module_ir_per_request => 'Ir/request in ngx_http_gateway_* functions (self)' });
$doc .= functions($cg, [qw(gateway gateway_failures gateway_limit gateway_all gateway_before lua)],
                  'stock: where the difference comes from (self Ir per request by function, |difference| > 5, largest 15; static functions of the stripped binaries show as addresses)');

$doc .= <<"EOF";

## Tracing

The callgrind and throughput scenarios with tracing in four states
(`bench/variants/gateway_trace.sh`): off (the `gateway` variant, the
module loaded without `gateway_trace`), on with 1% of the traces sampled,
on with 100% sampled and exported in protobuf, and in JSON.  The spans go
over OTLP/HTTP to a separate nginx that answers 200: the gateway's
encoding and sending are measured, the collector's work is not.  The
ratios are against tracing off.  Part of the totals' difference is the
allocator's: `_int_malloc` and its helpers take about 690 fewer
instructions per request in the traced runs.  That is the heap's layout,
not tracing: the exporter's start-up allocations alone (a configuration
with `gateway_trace_exporter` and no `gateway_trace`, one callgrind run
at commit 67cb000: 20876 Ir/request against 21562 without the exporter)
give the same difference.  Against that reference tracing adds about 690
Ir per request more than the ratios below say; the module's own
instructions are the last column.

EOF
$doc .= ran('callgrind_trace');
$doc .= md_table($cgt, [qw(variant requests runs ir_per_request min_ir_per_request max_ir_per_request ratio_to_gateway module_ir_per_request)],
                 { ir_per_request => 'Ir/request (median of runs)', ratio_to_gateway => 'ratio to off',
                   min_ir_per_request => 'min', max_ir_per_request => 'max',
                   module_ir_per_request => 'Ir/request in the module (self)' });
$doc .= functions($cgt, [qw(gateway_trace1 gateway_trace100)],
                  'tracing off (self Ir per request by function, |difference| > 5, largest 15)');
if ($tpt) {
    $doc .= "\nThroughput of the same variants (one worker pinned, interleaved rounds, medians; short rounds on a shared machine, read the ratios with the load average):\n\n";
    $doc .= ran('throughput_trace');
    $doc .= md_table($tpt, [qw(variant median_rps p50_us p99_us ratio_to_gateway min_rps max_rps rounds cpu_us_per_req cpu_ratio_to_gateway)],
                     { median_rps => 'req/s (median)', ratio_to_gateway => 'ratio to off',
                       cpu_us_per_req => 'proxy CPU us/request', cpu_ratio_to_gateway => 'CPU ratio to off' });
}

$doc .= <<"EOF";

## Convergence

`bench/run convergence`: the C client (`bench/lib/convergence.c -m lag`)
changes the weight of one instance 200 times through the admin API of the
first gateway (its script publishes the change on `P feed` with Redis'
`TIME` of the write), and after each change asks every gateway for the
service (`GET /gateway/services/NAME`) until it reports the change's
revision, with `lag_ms`: the time from the write in Redis until that
gateway applied it (published in its zone: every worker routes with it
from then on), stamped by the gateway itself.  A setup's figure per change
is the largest lag of its gateways.  Setups: one gateway with 2 workers,
one with 4 workers, two gateways with 2 workers each.  `unknown`: a
gateway at the revision without a lag (it fetched the change).  The last
line is a cross-check by routing, as the scenario measured before: a fresh
service registered with the recipe (a change by hand, fetched), and the
4-worker gateway probed with a new connection per probe (`reuseport`,
`add_header X-Worker \$pid`) until every worker answered 200: an upper
bound (a probe takes about 0.2 ms), from the client's clock before the
write.

EOF
$doc .= md_table($conv, undef, { p50_ms => 'p50 (ms)', p95_ms => 'p95 (ms)', p99_ms => 'p99 (ms)', max_ms => 'max (ms)' });
$doc .= "\n![convergence histogram](" . rel('convergence.png') . ")\n" if -f "$res/convergence.png";

$doc .= <<"EOF";

## Scale: 10,000 services x 10 instances

`bench/run scale`: 100,000 instances (hash with address, weight, zone,
state, ttl, metadata) written to Redis with `redis-cli --pipe`, then a
gateway (one worker) is started on it.  Full sync = from starting nginx until
the worker logs `synced N services with M instances from redis in T ms`
(the bench reads the error log every 20 ms and asks the gateway nothing
meanwhile: polling `GET /gateway/services`, a dump of the whole registry,
cost the worker more than the sync itself at a million instances); one dump
then checks that every service is listed with all of its instances.  With
it, the CPU Redis (`INFO cpu`) and the worker (`/proc/PID/stat`) spent
meanwhile: on this shared 2-core machine these are the figures that do
not depend on the load, the wall time does.  Shared memory = resident pages of the zone mapping
(`/proc/PID/smaps` Rss, in a 256m zone), plus a second start with a 64m zone.
Throughput and Ir/request compare a request to one service of that registry
with a gateway whose registry is 1 service x 3 instances (callgrind with
`resync=1h`; the periodic resync's cost is the idle CPU line).  Idle Redis
CPU: `INFO cpu` over 20 s with the defaults (`resync=5s`: the O(1) tick;
`full_resync=5m`, not in the window), less Redis's own idle CPU with the
registry loaded; then, after a reload with `full_resync=2s`, the cost of one
full comparison (every service's revision, and the sweeper's check of
every instance key), amortized over the default 5 minutes.

EOF
$doc .= ran('scale');
$doc .= md_table($scale);

if ($s1m) {
    $doc .= <<"EOF";

## A million instances

`bench/run scale1m` (a separate command, not part of `bench/run`): 100,000
services x 10 instances written to Redis as data without the registry-wide
keys, a gateway (one worker, a 1024m zone) started on it: full sync time
(until the worker's log line, as above) and the CPU Redis and the worker
spent on it, zone pages
touched, the worker's resident memory, the idle tick's Redis CPU, and a
request routed from the registry.

EOF
    $doc .= ran('scale1m');
    $doc .= md_table($s1m);
}

$doc .= <<"EOF";

## Many gateways on one Redis

`bench/run gateways`: N gateways (nginx, one worker each) share one Redis
holding 1,000 services x 10 instances (written as data without the
registry-wide keys: every gateway adopts it).  For each N: Redis CPU
(`INFO cpu`, user + sys) while the gateways are idle, less Redis's own idle
CPU measured before they started, divided by N; then Redis CPU while 100
changes per second are written (one instance's weight, each of another
service: `PATCH` through the admin API of up to 8 of the gateways,
`bench/lib/changes_admin.pl`); the script publishes each change on
`P feed` with the changed instance, and every gateway applies it from
there without a fetch.  `evalsha_per_change` counts the sync's scripts
(fetches, ticks) per change from `INFO commandstats`; `evalsha`, `eval`
(the admin API's scripts) and `publish` `_ms_per_s` are what those
commands cost Redis per second of the run.  Meanwhile the convergence
client (`bench/lib/convergence.c -m lag`) changes one instance of service
`conv` 100 times (`conv_samples`) through the first gateway and reads
each gateway's own lag stamp for it: `conv_*` is the largest of the N
stamps per change (convergence to all N), `lag_*` the distribution over
every gateway and change; `conv_unknown`, gateway answers at the revision
without a stamp (fetched), `conv_timeouts`, gateways not at the revision
within 6 s; `cpu_busy_pct` and `steal_pct`, the machine's two CPUs
meanwhile (`/proc/stat`): busy, and taken by the hypervisor.

EOF
$doc .= ran('gateways');
$doc .= md_table($gws);
{
    # how the figures grow with N: a straight line through the smallest and
    # the largest N measured
    my @n = $gws ? sort { $a <=> $b } map { $_->[0] } @$gws[1 .. $#$gws] : ();
    if (@n >= 2) {
        my ($lo, $hi) = ($n[0], $n[-1]);
        my ($c0, $c1) = (get($gws, $lo, 'changes_ms_per_s'), get($gws, $hi, 'changes_ms_per_s'));
        my ($i0, $i1) = (get($gws, $lo, 'idle_ms_per_s'), get($gws, $hi, 'idle_ms_per_s'));
        my ($p0, $p1) = (get($gws, $lo, 'conv_p99_ms'), get($gws, $hi, 'conv_p99_ms'));
        if (defined $c0 && defined $c1 && $hi > $lo) {
            $doc .= sprintf("\nGrowth with N (from N = %d to N = %d): Redis CPU under %s changes/s "
                            . "%.1f -> %.1f ms/s, %.3f ms/s per added gateway; idle %.1f -> %.1f ms/s, "
                            . "%.4f ms/s per added gateway; convergence p99 to all %s -> %s ms.\n",
                            $lo, $hi, get($gws, $hi, 'changes_per_s') // '?', $c0, $c1,
                            ($c1 - $c0) / ($hi - $lo), $i0, $i1, ($i1 - $i0) / ($hi - $lo),
                            $p0 // '?', $p1 // '?');
        }
    }
}
if ($gwr) {
    $doc .= "\nThe same with the changes written by the recipe (`BENCH_GW_WRITER=recipe`, `bench/lib/changes.pl`, pipelined to Redis): a change by hand, not in the service's log, so every gateway fetches the whole service (10 instances):\n\n";
    $doc .= md_table($gwr);
}

$doc .= <<"EOF";

## One change notice at one gateway

`bench/run notice`: what one gateway spends on one change notice, the work
every gateway does for every change (100 gateways: 100 times).  Gateway A
takes 1,000 changes of one instance's weight (a 10-instance service,
`PATCH` through its admin API, 2 ms apart); gateway B, a single process
under callgrind, only listens: its counters are zeroed once it has the
service and dumped once it is at the last change's revision.  Ir per
notice is B's whole count over the run / 1,000: the read and parse of the
notice, the apply at the commit point (snapshot, balancer tables), the
lag stamp, and B's 100 ms tick (`error_log` at `warn`, as in the gateways
scenario).  Kernel time (the wake-up, the socket read) is not in it.

EOF
$doc .= ran('notice');
$doc .= md_table($ntc);
$doc .= "\nWhere they go (self Ir per notice, the 20 largest):\n\n" . md_table($ntcf) if $ntcf;

$doc .= <<"EOF";

## Failover

`bench/run failover`: wrk `-c50` for 12 s against three instances; at 4 s
one backend process is killed with SIGKILL (case `kill`: its connects are
refused), or killed and its port taken by a listener that never accepts
(case `blackhole`: SYNs go unanswered, each connect waits for
`proxy_connect_timeout`).  Client errors come from wrk and from the proxy's
access log (`\$msec \$status \$upstream_addr \$upstream_status
\$request_time`), which also shows every attempt on the failed instance;
for an ejecting proxy, when the last request that went to it began is the
time to ejection (in the black-holed case a few requests hang on
connections the listener's queue took and end, as 499, only when wrk
stops; a cached keepalive connection that the kill reset is not a failure
for the gateway, nginx retries it, while stock nginx counts it).  Every
proxy: `proxy_next_upstream error timeout`, `proxy_connect_timeout 1s`;
stock nginx's servers have `max_fails=1 fail_timeout=10s` (passive health,
per worker); `gateway` has no ejection, `gateway_eject` has `gateway_eject`
with its defaults (`failures=5`, shared by all workers; `time=30s`, so no
trial falls within the run).  Times are relative to the kill.

EOF
$doc .= md_table($fo, undef, {
    last_client_error_after_kill_ms => 'last client error after kill (ms)',
    attempts_to_dead_after_kill => 'attempts on dead instance after kill',
    dead_attempts_last_second => 'attempts on dead instance in the last second',
    last_attempt_to_dead_after_kill_ms => 'last attempt on dead instance ended (ms after kill)',
    last_request_to_dead_started_after_kill_ms => 'last request to dead instance began (ms after kill)',
    retried_requests => 'requests retried', rps_before => 'req/s before', rps_after => 'req/s after',
    p99_after_kill_ms => 'p99 request time after kill (ms)',
    aborted_by_client_499 => '499 (wrk stopping, not errors)' });
for my $v (qw(gateway gateway_eject stock gateway_eject_blackhole stock_blackhole)) {
    $doc .= "\n![failover $v](" . rel("failover_$v.png") . ")\n" if -f "$res/failover_$v.png";
}

my $am = $meta{apply};
$doc .= <<"EOF";

## Applying a large service

`bench/run apply`: does applying a large service stall requests to an
unrelated one?  A gateway with 2 workers (Redis mode, a short `resync=`,
the workers not pinned) serves `users` (3 instances on three backends)
under an open-loop load: `bench/lib/apply_load.c` sends requests at a fixed
rate over keepalive connections spread evenly over the two workers, and
counts each request's latency from the moment it was due, so a stall shows
in every request that waited for it (a closed-loop client such as wrk
records one slow request per connection and hides most of a stall).  Each
round has two phases of equal length: *baseline* (only `users`) and
*during* (plus a service `bulk` whose instances all point at one backend,
written with the registration recipe of [registry.md](registry.md) but
**without a revision key**, so that every resync fetches and applies it
again; taken out of `gateway:services` at the end of the round).  Figures
are medians over the rounds, except max (the largest); "added p99" is the
median of the rounds' during - baseline p99, "added max" the largest during
minus the largest baseline.  "sync worker" is the worker that keeps the
registry (it applies the snapshots; its CPU includes the requests it
serves), "other worker" the one that only routes; "zone changes" is how far
the zone's `generation` moved and "redis evals" how many scripts the
gateway ran in Redis (revisions + snapshots), summed over the rounds.  The
load client, the backends and Redis run on CPU 1.

EOF
$doc .= ran('apply');
if ($apply) {
    my ($c, $r) = (get($apply, 'during', 'conns'), get($apply, 'during', 'resync'));
    $doc .= "Settings: `resync=$r`, $c connections.\n" if defined $c && defined $r;
}
$doc .= "\n";
$doc .= md_table($apply, [qw(phase bulk_instances rounds seconds rate requests errors p50_ms p99_ms p99_9_ms max_ms added_p99_ms added_max_ms sync_worker_p99_ms other_worker_p99_ms sync_worker_cpu_pct zone_changes redis_evals)],
                 { bulk_instances => 'bulk instances', seconds => 's per round', rate => 'req/s',
                   p50_ms => 'p50 (ms)', p99_ms => 'p99 (ms)', p99_9_ms => 'p99.9 (ms)', max_ms => 'max (ms)',
                   added_p99_ms => 'added p99 (ms)', added_max_ms => 'added max (ms)',
                   sync_worker_p99_ms => 'p99 sync worker (ms)', other_worker_p99_ms => 'p99 other worker (ms)',
                   sync_worker_cpu_pct => 'sync worker CPU %', zone_changes => 'zone changes',
                   redis_evals => 'redis evals' });
$doc .= "\nPer-round numbers: [`apply_rounds.csv`](" . rel('apply_rounds.csv') . ").\n" if -f "$res/apply_rounds.csv";
if (my $ar = csv('apply_redis.csv')) {
    $doc .= "\nRedis' slow log in each phase (commands over 5 ms; Redis shares CPU 1 with the load client and the backends):\n\n";
    $doc .= md_table($ar, undef, { redis_commands_over_5ms => 'commands over 5 ms',
                                   redis_slowest_ms => 'slowest (ms)', redis_slow_total_ms => 'their total (ms)' });
}
$doc .= "\n![latency while a large service is applied](" . rel('apply.png') . ")\n" if -f "$res/apply.png";

$doc .= <<"EOF";

## Selection scaling (microbenchmark)

`bench/run selection`: how peer selection scales with worker processes on
one shared zone.  A bench-only nginx module (`bench/selection/`, built by
`bench/selection/build.sh` with nginx's configure into `build/selbench`,
never part of the product .so) is loaded after the gateway module and
runs selections in a loop for the length of a request's window
(`BENCH_SEL_MS`, 200 ms), as workers do per proxied request: *lockfree* calls the gateway's exported functions
(`ngx_http_gateway_snapshot_get()`, the balancer's `select`, the hold, the
`active` counter, the stats observer, `ngx_http_gateway_snapshot_put()`);
*mutex* does on the same zone what the design before snapshots (commit
5df22fa) did per request: zone mutex, rbtree lookup, SWRR over the
instances, counters, unlock, then lock, counters, unlock.
*lockfree* uses the upstream's round robin (one atomic ticket per
selection, no lock); *lockfree_nocounters* is the same without the
per-instance counters (`active`, the stats observer): what the ticket
alone costs; *lockfree_random* is the lock-free path with weighted random
(no shared write but the counters); *lockfree_split* is round robin with
each worker on a service of its own (one zone's ceiling in the same
run: nothing shared but the name index); *lockfree_independent* is round
robin in two nginx instances of one worker each, with zones of their
own, pinned to the two CPUs (the machine's ceiling: nothing shared at
all; its 1-worker row is one instance alone); *lockfree_least_request*,
*lockfree_p2c*, *lockfree_peak_ewma*, *lockfree_hash*, *lockfree_ketama*
and *lockfree_maglev* are those methods on the same path (hash keys on
`\$request_uri`, the same for all of a request's selections: the key's
evaluation, its CRC32 and the lookup).  The counters go to the
worker's cells: `active` is published once per pass of its event loop,
the others stay in the cell (readers add the cells): a
mode's plain row publishes after every selection (`pass=1`, a
worker that handles one request per pass: the worst case), its
*_passK* row every K selections (`BENCH_SEL_PASS`, what a busy worker
handles per pass), each attempt starting and ending in one pass (so
`active` cancels out); *lockfree_span* is round robin at K where each
attempt ends K selections after it started, in the next pass, as
proxied requests do: `active` changes in every pass.  nginx runs with 2
workers pinned one per CPU (`worker_cpu_affinity`);
`bench/selection/drive.pl` opens a keepalive connection to each worker
and sends each the long request with one start time T (20 ms ahead): a
worker waits for T and selects until T + the window, so two workers
select in the same window wherever their requests arrive.  The 1-worker
rows are one worker of that nginx alone, the other idle (the one on CPU 0
and the one on CPU 1 in turn): the same configuration and memory layout
as the 2-worker rows (a 1-worker nginx of its own ran round robin 17%
slower in every round of one run, which made the ratio a property of the
layout).  Per process = its selections / its loop's time; total = all
selections / (last end - first start); *per CPU time*: the workers'
selections per second of their own CPU time, summed, which a busy machine
does not skew (it takes wall time from the workers, not CPU time) while
waiting for a shared cache line still counts.  Modes and worker counts
interleaved, medians of rounds; the rounds are shared out between
`BENCH_SEL_STARTS` (3) starts of the nginx, whose layouts differ; nothing
else of the suite runs meanwhile, but the machine is shared (load average
below).

EOF
$doc .= ran('selection');
$doc .= md_table($sel, undef, { per_process_1w => 'sel/s, 1 worker', total_1w => 'total, 1 worker',
                                per_process_2w => 'sel/s per worker, 2 workers', total_2w => 'total, 2 workers',
                                scaling_2w_over_1w => 'scaling 2 / 1 workers',
                                cpu_scaling_2w_over_1w => 'same, per CPU time' });
if ($selc) {
    $doc .= "\nHold times (1 worker, one selection in 16 timed) and the on-paper ceiling for 64 workers (the mutex: hold time x acquisitions per request x request rate; round robin: the contended selection rate of one hot service, whose shared lines serialize it):\n\n";
    $doc .= md_table($selc);
}
$doc .= "\nPer-round numbers: [`selection_rounds.csv`](" . rel('selection_rounds.csv') . ").\n" if -f "$res/selection_rounds.csv";

$doc .= <<"EOF";

## Reproducing

```
bash scripts/deps.sh bench     # wrk haproxy libnginx-mod-http-lua lua-resty-core lua-nginx-redis gnuplot-nox
make build
bench/run                      # all scenarios (~9 min on 2 cores), or: bench/run throughput callgrind ...
bench/run -h                   # knobs: rounds, durations, variants, CPUs
```

Every process the suite starts is stopped by PID at exit; everything lives in
one `mktemp -d` directory and listens on 127.0.0.1 only.  To add a balancing
algorithm to the throughput comparison, add a variant next to
`bench/variants/gateway.sh` and list it in `BENCH_VARIANTS`.
EOF

open my $fh, '>', $out or die "$out: $!\n";
print $fh $doc;
close $fh;
print STDERR "wrote $out\n";
