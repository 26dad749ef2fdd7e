#!/bin/sh
# The smallest TAP producer: a plan, a few test points and a comment, by hand.
echo "1..3"
echo "ok 1 - the shell can echo"
echo "# comments start with a hash and are shown, not counted"
[ "$(printf '%s' abc | wc -c)" -eq 3 ] && echo "ok 2 - wc counts three bytes" || echo "not ok 2 - wc counts three bytes"
[ -d / ] && echo "ok 3 - the root directory exists" || echo "not ok 3 - the root directory exists"
