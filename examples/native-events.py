#!/usr/bin/env python3
# Native weft events from Python: JSON lines on the fd in WEFT_EVENT_FD.
import json, os, time

fd = int(os.environ.get("WEFT_EVENT_FD", "-1"))
out = os.fdopen(fd, "w", buffering=1) if fd >= 0 else None

def emit(type_, **fields):
    if out:  # "type" must come first; the auditor adds run, job, seq, ts
        out.write(json.dumps({"type": type_, **fields}) + "\n")

emit("plan", count=2)
emit("assert", ok=sorted([3, 1, 2]) == [1, 2, 3], description="sorted() sorts")
t0 = time.perf_counter()
words = "a b c".split()
emit("timing", name="split", us=int((time.perf_counter() - t0) * 1e6))
ok = words == ["a", "b", "c"]
emit("assert", ok=ok, description="split() on spaces")
if not ok:
    emit("diag", message=f"got {words!r}")
