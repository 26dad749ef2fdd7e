#!/usr/bin/env python3
# Python 3 with no modules beyond the standard library: TAP by hand through a helper.
import sys

count = 0


def check(cond, desc, directive=""):
    global count
    count += 1
    line = ("ok" if cond else "not ok") + " %d - %s" % (count, desc)
    if directive:
        line += " # " + directive
    print(line, flush=True)


print("1..4")
check("weft".upper() == "WEFT", "upper() capitalises")
check(" a b ".split() == ["a", "b"], "split() drops surrounding blanks")
check(True, "fetch a remote string", "SKIP no network")
check("\u00e9".encode("utf-8") == b"\xc3\xa9", "UTF-8 encoding of e-acute")
sys.exit(0)
