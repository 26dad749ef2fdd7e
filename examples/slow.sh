#!/bin/sh
# A test that takes about a second, to show durations and the live display.
echo "1..2"
echo "ok 1 - started"
sleep 1
echo "ok 2 - still here after a second"
