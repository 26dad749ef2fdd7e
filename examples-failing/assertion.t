#!/usr/bin/perl
# A failed assertion: Test::More prints what it got and what it expected.
use strict;
use warnings;
use Test::More tests => 3;

is(1 + 1, 2, 'one plus one');
is(2 + 2, 5, 'arithmetic is broken');
like('weft', qr/^we/, 'prefix matches');
