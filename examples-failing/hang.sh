#!/bin/sh
# A test that never finishes; stop it with --timeout.
echo "1..2"
echo "ok 1 - before the hang"
sleep 600
echo "ok 2 - never reached"
