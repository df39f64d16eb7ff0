#!/usr/bin/perl
# The libFuzzer targets (t/fuzz): builds them with `make fuzz-build` and
# runs each one over its seed corpus and then for a few seconds of new
# inputs (FUZZ_SECONDS, default 10).  New inputs and crash files go to a
# temp dir, never into the repository.  A crash, a sanitizer report or a
# failed property fails the test.  Skipped only when clang is not
# installed (scripts/deps.sh installs it); longer runs: `make fuzz`.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $root = repo_root();
my $cc = $ENV{FUZZ_CC} || 'clang';
my $seconds = $ENV{FUZZ_SECONDS} || 10;

my ($found) = grep { -x "$_/$cc" } split /:/, $ENV{PATH};
plan skip_all => "$cc is not installed (scripts/deps.sh installs clang and "
               . "libclang-rt-14-dev)"
    unless $found || -x $cc;

my ($code, $out) = run_cmd(cmd => ['make', '--no-print-directory', '-f',
                                   "$root/Makefile", 'fuzz-build',
                                   "FUZZ_CC=$cc"],
                           timeout => 300);
is($code, 0, 'make fuzz-build') or diag($out);

for my $t (qw(json record trace feed)) {
    my $bin = "$root/build/fuzz/fuzz_$t";
    my @seeds = glob("$root/t/fuzz/corpus/$t/*");
    ok(@seeds >= 5, "fuzz_$t has a seed corpus (" . scalar(@seeds) . ' files)');

    my $dir = test_dir() . "/fuzz-$t";
    mkdir $dir;
    mkdir "$dir/corpus";
    my ($rc, $text) = run_cmd(
        cmd => [$bin, "-max_total_time=$seconds", '-timeout=10',
                "-dict=$root/t/fuzz/$t.dict", "-artifact_prefix=$dir/",
                '-print_final_stats=1', "$dir/corpus",
                "$root/t/fuzz/corpus/$t"],
        timeout => $seconds + 120);
    is($rc, 0, "fuzz_$t: no crash in ${seconds}s")
        or diag(join("\n", grep { /ERROR|property failed|SUMMARY|#0 |#1 |#2 |artifact/ }
                            split /\n/, $text));
    my ($runs) = $text =~ /stat::number_of_executed_units:\s*(\d+)/;
    ok(($runs // 0) > @seeds, "fuzz_$t ran " . ($runs // 0) . ' inputs');
    like($text, qr/INITED.*corp: (\d+)/, "fuzz_$t read its seeds");
}

done_testing();
