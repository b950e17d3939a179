"""One process that imports Manim once and forks a ``manim render`` per scene.

``make video`` and ``make preview`` run sixteen Manim renders; each fresh
``python -m manim`` process spent ~1.2 CPU s importing Manim (SciPy, NetworkX,
...), ~1.5 s importing PyTorch (the trace recorder's), more importing the
package's own modules, and ~1 s tearing itself down at exit: about half of a
short clip's render (talk_payoff at 480p15: 7.8 CPU s as its own process, 3.6 s
forked from here; the same MP4, byte for byte). :func:`serve` imports those
modules once, then forks one child per request; the child runs exactly what
``python -m manim ARGS`` runs (``manim/__main__.py`` as ``__main__``), with its
standard output and error in the request's log file and its standard input
empty, and ends with the same exit status.

Protocol (one JSON object a line): a request ``{"id", "argv", "log"}`` on the
server's standard input; when that child has ended, ``{"id", "rc", "cpu"}`` on
its standard output (``cpu``: the child's user + system seconds, all its threads
and the processes it waited for, as :func:`os.wait4` reports them). The server
ends when its standard input closes and every child has ended. Only where
:func:`os.fork` exists (:class:`Forker` says so; the talk then starts plain
processes).

Run as ``python -m flashanim.forkserver`` (by :class:`Forker`).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import selectors
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

__all__ = ["PRELOAD", "Forker", "serve"]

#: Imported once by the server (each only if it imports): what every render
#: imports. Not the kernels: importing them picks the device and imports Triton,
#: which a render does itself, as before.
PRELOAD = (
    "numpy",
    "av",
    "cv2",
    "cairo",
    "manim",
    "torch",
    "flashanim.scene",
    "flashanim.visuals",
    "flashanim.talkkit",
)


def _child(argv: list[str], log: str) -> None:
    """In the forked child: ``python -m manim *argv`` with its output in ``log``;
    never returns."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        import runpy

        text = sys.modules.get("flashanim.engine.text")
        if text is not None:
            text._TEXT_DIR = None  # (this render's own SVG folder, not a shared one)
        sys.argv = ["manim", *argv]
        try:
            runpy.run_module("manim", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            c = exit_.code
            if c is None or isinstance(c, int):
                code = c or 0
            else:  # a message, as Python prints it
                print(c, file=sys.stderr)
                code = 1
        atexit._run_exitfuncs()  # (what the render registered: its text folder)
    except BaseException:  # noqa: BLE001  (reported in the log, as Python would)
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(inp=None, out=None) -> None:
    """The server's loop (see the module's docstring)."""
    inp = inp or sys.stdin.buffer
    out = out or sys.stdout
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112  (the child imports it, or fails, itself)
            continue
    import gc

    gc.collect()
    running: dict[int, object] = {}  # pid -> request id
    sel = selectors.DefaultSelector()
    sel.register(inp, selectors.EVENT_READ)
    buf, open_ = b"", True

    def reap(block: bool) -> None:
        while running:
            pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
            if pid == 0:
                return
            rid = running.pop(pid, None)
            if rid is None:
                continue
            rc = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            out.write(json.dumps({"id": rid, "rc": rc, "cpu": cpu}) + "\n")
            out.flush()
            if block:
                return

    while open_ or running:
        if open_ and sel.select(timeout=0.05):
            chunk = os.read(inp.fileno(), 65536)
            if not chunk:
                open_ = False
                sel.unregister(inp)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                req = json.loads(line)
                out.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(list(req["argv"]), str(req["log"]))
                running[pid] = req["id"]
        reap(block=not open_)


class Forker:
    """The client: starts the server in ``root`` and runs renders through it.

    :meth:`run` may be called from several threads at once; each call blocks
    until its render has ended and returns its exit status and CPU seconds.
    """

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flashanim.forkserver"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._waiting: dict[int, Future] = {}
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @staticmethod
    def available() -> bool:
        return hasattr(os, "fork") and os.environ.get("FLASHANIM_FORK", "1") != "0"

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                fut = self._waiting.pop(msg["id"], None)
            if fut is not None:
                fut.set_result((int(msg["rc"]), float(msg["cpu"])))
        # the server ended: whatever still waits failed
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            fut.set_exception(RuntimeError("the render server ended"))

    def run(self, argv: list[str], log: Path) -> tuple[int, float]:
        """``python -m manim *argv`` forked from the server, output in ``log``;
        returns its exit status and CPU seconds."""
        fut: Future = Future()
        with self._lock:
            rid = self._next
            self._next += 1
            self._waiting[rid] = fut
            req = json.dumps({"id": rid, "argv": argv, "log": str(log)}) + "\n"
            try:
                self.proc.stdin.write(req.encode())
                self.proc.stdin.flush()
            except (OSError, ValueError) as err:  # (the server has ended)
                self._waiting.pop(rid, None)
                raise RuntimeError(f"the render server ended ({err})") from err
        return fut.result()

    def close(self) -> float:
        """End the server (after its children); returns its own CPU seconds."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        self._reader.join(timeout=5)
        return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    serve()
