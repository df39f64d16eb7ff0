#!/usr/bin/perl
# The C unit tests (cmocka, t/unit): builds them with `make -C t/unit` and
# runs every t/unit/build/test_* binary with TAP output, one subtest per
# binary, one test per cmocka test (prefixed with its group's name).  In
# valgrind mode each binary runs under valgrind memcheck.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GatewayTest;

my $root = repo_root();

my ($code, $out) = run_cmd(cmd => ['make', '--no-print-directory', '-C', "$root/t/unit"],
                           timeout => 300);
is($code, 0, 'make -C t/unit') or diag($out);

my @bins = grep { -f && -x && !m{/[^/]*\.[A-Za-z0-9]+$} }
           sort glob("$root/t/unit/build/test_*");
ok(scalar @bins, 'unit test binaries exist in t/unit/build/')
    or diag('no t/unit/build/test_* after make -C t/unit');

for my $bin (@bins) {
    my ($name) = $bin =~ m{([^/]+)$};
    subtest $name => sub { run_unit($bin) };
}

done_testing();

sub run_unit {
    my ($bin) = @_;
    my @cmd = ($bin);
    # a binary built with AddressSanitizer checks itself (and cannot run
    # under valgrind)
    my $asan = index(slurp($bin), 'libasan.so') >= 0;
    if (valgrind_mode() && $asan) {
        note("$bin is built with ASan: runs without valgrind");
    } elsif (valgrind_mode()) {
        unshift @cmd, 'valgrind', '--tool=memcheck', '--error-exitcode=99',
            '--leak-check=full', '--errors-for-leak-kinds=definite',
            '--show-leak-kinds=definite', '--num-callers=30', '-q';
    }

    my ($rc, $text) = run_cmd(cmd => \@cmd, timeout => 120,
                              env => { CMOCKA_MESSAGE_OUTPUT => 'TAP' });

    # cmocka prints a "1..N" plan per group and numbers each group from 1,
    # then "# ok - GROUP" / "# not ok - GROUP": collect a group's results and
    # report them when its name is known
    my (@pending, $ran);
    my @other;
    my $flush = sub {
        my ($group) = @_;
        for my $t (@pending) {
            my $label = defined $group ? "$group: $t->{name}" : $t->{name};
            $ran++;
            if ($t->{skip}) {
              SKIP: { skip($label, 1) }
                next;
            }
            ok($t->{ok}, $label) or diag(join("\n", @{ $t->{diag} }));
        }
        @pending = ();
    };
    for my $line (split /\n/, $text) {
        if ($line =~ /^(not )?ok \d+(?: - (.*?))?\s*(?:#\s*SKIP\s*(.*))?$/i) {
            my ($not, $n, $skip) = ($1, $2, $3);
            push @pending, {
                ok => !$not, skip => defined $skip,
                name => $n // $skip // '(unnamed)', diag => [],
            };
        } elsif ($line =~ /^# (?:not )?ok - (.+)$/) {
            $flush->($1);
        } elsif ($line =~ /^1\.\.\d+$/) {
            # a group's plan
        } elsif ($line =~ /^#\s?(.*)$/ && @pending) {
            push @{ $pending[-1]{diag} }, $1;
        } else {
            push @other, $line;
        }
    }
    $flush->(undef);

    ok($ran, 'ran at least one test') or diag($text);
    is($rc, 0, 'exit code 0'
               . (valgrind_mode() && !$asan ? ' (valgrind: 99 = memcheck errors)' : ''))
        or diag(join("\n", @other));
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return scalar <$fh>;
}
