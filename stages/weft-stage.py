#!/usr/bin/env python3
"""weft-stage.py: a weft stage for Python tests (docs/stages.md). Imports
the modules it is told to once, then forks one child per test on request,
so each test starts with them already imported.

    python3 weft-stage.py --socket PATH [--path=DIR]... [--import=MODULE]...

The protocol is weft-stage.pl's: a {"t":"ready",...} line on stdout, then
per connection to PATH one spawn request, answered "spawned" and later
"exited" with the child's wait status. EOF on stdin ends the stage.
"""
import json
import os
import select
import signal
import socket
import sys
import time


def main():
    sock_path, paths, imports = None, [], []
    name = "stage"
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "--socket":
            sock_path = args.pop(0)
        elif a == "--name":
            name = args.pop(0)
        elif a.startswith("--path="):
            paths.append(a[len("--path="):])
        elif a.startswith("--import="):
            imports.append(a[len("--import="):])
        else:
            sys.exit(f"weft-stage.py: unknown argument {a}")
    if not sock_path:
        sys.exit("weft-stage.py: --socket PATH is needed")

    def say(**msg):
        sys.stdout.write(json.dumps(msg, sort_keys=True, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    # fds 3-9 stay taken: a child dup2()s the test's fds onto 0-3.
    reserved = [os.open(os.devnull, os.O_RDONLY) for _ in range(3, 10)]
    state = {}

    def become_stage(stage_name, path, extra_paths, modules):
        """Imports what this stage preloads, listens, says ready (or error,
        and exits). A stage forked from another does it again on top."""
        t0 = time.monotonic()
        sys.path[:0] = [os.path.abspath(p) for p in extra_paths]
        for mod in modules:
            try:
                __import__(mod)
            except BaseException as e:  # a module that cannot load: say why
                say(t="error", name=stage_name, message=f"cannot import {mod}: {e!r}")
                sys.exit(1)
        state["preloaded"] = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                                     if getattr(m, "__file__", None)})
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(path)
        lst.listen(64)
        state["listener"] = lst
        state["socket"] = path
        say(t="ready", name=stage_name, pid=os.getpid(), lang="python", socket=path,
            preloaded=state["preloaded"], load_ms=int((time.monotonic() - t0) * 1000))

    become_stage(name, sock_path, paths, imports)
    listener = state["listener"]
    preloaded = state["preloaded"]

    wake = list(os.pipe())
    os.set_blocking(wake[1], False)
    running = [True]
    signal.signal(signal.SIGCHLD, lambda *_: os.write(wake[1], b"c"))

    def stop(*_):
        running[0] = False
        os.write(wake[1], b"t")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # SIGUSR2: a reload replaces us. No new tests (our socket goes); the
    # ones running finish here, then we end.
    draining = [False]

    def drain(*_):
        draining[0] = True
        os.write(wake[1], b"d")
    signal.signal(signal.SIGUSR2, drain)

    conns = {}      # fd -> socket
    bufs = {}       # fd -> bytes
    child_of = {}   # fd -> pid
    conn_of = {}    # pid -> socket

    def spawn(conn, req):
        fds = []
        try:
            for i, path in enumerate(req.get("fds", [])):
                fds.append(os.open(path, os.O_RDONLY if i == 0 else os.O_WRONLY))
        except OSError as e:
            for fd in fds:
                os.close(fd)
            return f"cannot open {e.filename}: {e.strerror}"
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
                    signal.signal(s, signal.SIG_DFL)
                listener.close()
                for c in conns.values():
                    c.close()
                os.close(wake[0])
                os.close(wake[1])
                for fd in nested_w:
                    os.close(fd)
                for i, fd in enumerate(fds):
                    os.dup2(fd, i)  # (inheritable: the test's children get them)
                    os.close(fd)
                for fd in reserved:
                    if fd > 3:
                        os.close(fd)
                os.environ.clear()
                for kv in req.get("env", []):
                    k, _, v = kv.partition("=")
                    os.environ[k] = v
                os.environ["WEFT_STAGE"] = "python"
                if req.get("cwd"):
                    os.chdir(req["cwd"])
                argv = list(req["argv"])
                if argv and os.path.basename(argv[0]).startswith("python"):
                    argv.pop(0)
                while argv and argv[0].startswith("-") and argv[0] not in ("-", "--"):
                    argv.pop(0)
                if argv and argv[0] == "--":
                    argv.pop(0)
                sys.argv = argv
                sys.stdin = open(0, "r", closefd=False)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                sys.path[0:0] = [os.path.dirname(os.path.abspath(argv[0]))]
                import random
                random.seed()
                import runpy
                code = 0
                try:
                    runpy.run_path(argv[0], run_name="__main__")
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if not isinstance(e.code, int) and e.code is not None:
                        print(e.code, file=sys.stderr)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
                # The files the test imported beyond the stage's (weft
                # watch reruns a test when one of them changes).
                if os.environ.get("WEFT_EVENT_FD") == "3":
                    deps = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                                   if getattr(m, "__file__", None)} - set(preloaded))
                    try:
                        os.write(3, (json.dumps({"type": "deps", "files": deps},
                                                separators=(",", ":")) + "\n").encode())
                    except OSError:
                        pass
                os._exit(code)
            except BaseException:
                os._exit(127)
        for fd in fds:
            os.close(fd)
        return pid

    # Our lifeline: stdin (the runner), or for a stage forked from another,
    # a pipe from it. Only the first stage reads commands on stdin.
    lifeline = [sys.stdin.fileno()]
    commands = [b""]
    nested_w = []

    def fork_stage(req):
        """A stage built on this one; returns True in it."""
        lr, lw = os.pipe()
        pid = os.fork()
        if pid:
            os.close(lr)
            nested_w.append(lw)
            return False
        os.close(lw)
        for fd in nested_w:
            os.close(fd)
        nested_w.clear()
        state["listener"].close()
        for c in conns.values():
            c.close()
        conns.clear()
        bufs.clear()
        child_of.clear()
        conn_of.clear()
        os.close(wake[0])
        os.close(wake[1])
        wake[:] = list(os.pipe())
        os.set_blocking(wake[1], False)
        lifeline[0] = lr
        become_stage(req.get("name", "stage"), req["socket"], req.get("inc", []),
                     req.get("preload", []))
        preloaded[:] = state["preloaded"]
        return True

    while running[0]:
        if draining[0]:
            if state.get("listener") is not None:
                state["listener"].close()
                state["listener"] = None
                try:
                    os.unlink(state["socket"])
                except OSError:
                    pass
            if not conn_of:
                break
        listener = state["listener"]
        wake_r = wake[0]
        watch = [x for x in [listener, wake_r, lifeline[0]] if x is not None] + list(conns.values())
        try:
            ready, _, _ = select.select(watch, [], [])
        except InterruptedError:
            continue
        for r in ready:
            if r is listener:
                c, _ = listener.accept()
                conns[c.fileno()] = c
                bufs[c.fileno()] = b""
            elif r == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    c = conn_of.pop(pid, None)
                    if c is None:
                        continue
                    child_of.pop(c.fileno(), None)
                    try:
                        c.sendall((json.dumps({"t": "exited", "pid": pid, "status": status}, separators=(",", ":")) + "\n").encode())
                    except OSError:
                        pass
            elif r == lifeline[0]:
                data = os.read(r, 65536)
                if not data:
                    if draining[0]:
                        # (Draining, our tests finish first.)
                        lifeline[0] = None
                        continue
                    running[0] = False
                    continue
                commands[0] += data
                forked = False
                while b"\n" in commands[0]:
                    line, _, commands[0] = commands[0].partition(b"\n")
                    try:
                        req = json.loads(line)
                    except ValueError:
                        continue
                    if req.get("t") == "fork_stage" and fork_stage(req):
                        forked = True
                        break
                if forked:
                    break  # (we are that stage now: select again)
            else:
                fd = r.fileno()
                data = r.recv(65536)
                if not data:
                    pid = child_of.pop(fd, None)
                    if pid:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                        conn_of.pop(pid, None)
                    del conns[fd]
                    del bufs[fd]
                    r.close()
                    continue
                bufs[fd] += data
                if b"\n" in bufs[fd]:
                    line, _, bufs[fd] = bufs[fd].partition(b"\n")
                    try:
                        result = spawn(r, json.loads(line))
                    except Exception as e:
                        result = f"bad request: {e!r}"
                    if isinstance(result, int):
                        child_of[fd] = result
                        conn_of[result] = r
                        r.sendall((json.dumps({"t": "spawned", "pid": result}, separators=(",", ":")) + "\n").encode())
                    else:
                        r.sendall((json.dumps({"t": "error", "message": result}, separators=(",", ":")) + "\n").encode())
    for pid in list(conn_of):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for fd in nested_w:
        os.close(fd)
    try:
        os.unlink(state["socket"])
    except OSError:
        pass


if __name__ == "__main__":
    main()
