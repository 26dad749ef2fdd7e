#!/usr/bin/perl
# Perl's Test::More: assertions, a skip, a todo, a subtest and diagnostics on stderr.
use strict;
use warnings;
use Test::More tests => 7;

ok(1 + 1 == 2, 'addition');
is(6 * 7, 42, 'multiplication');
is(int(7 / 2), 3, 'integer division truncates');

SKIP: {
    skip 'only meaningful on Windows', 1 unless $^O eq 'MSWin32';
    ok(-d 'C:/', 'drive C: exists');
}

TODO: {
    local $TODO = 'floating point is not exact';
    ok(0.1 + 0.2 == 0.3, 'tenths add up exactly');
}

subtest 'modulo' => sub {
    plan tests => 2;
    is(7 % 3, 1, 'positive');
    is(-7 % 3, 2, 'negative follows the divisor in Perl');
};

diag('diag() writes to stderr; the harness keeps it beside the test');
cmp_ok(2**10, '==', 1024, 'powers of two');
