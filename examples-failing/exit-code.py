#!/usr/bin/env python3
# Every assertion passes, but a non-zero exit status still fails the test.
import sys

print("1..2")
print("ok 1 - first")
print("ok 2 - second", flush=True)
sys.exit(3)
