"""The render server forks ``manim ARGS`` as ``python -m manim ARGS`` would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flashanim.forkserver import Forker

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_forked_runs_match_their_own_processes(tmp_path):
    forker = Forker(ROOT)
    try:
        runs = [
            (["--version"], tmp_path / "version.log"),
            (["render", "no_such_scene_file.py"], tmp_path / "missing.log"),
            (["no-such-command"], tmp_path / "bad.log"),
        ]
        # side by side, as the talk's jobs call it
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda r: forker.run(*r), runs))
    finally:
        server_cpu = forker.close()
    for (argv, log), (rc, cpu) in zip(runs, got, strict=True):
        own = subprocess.run([sys.executable, "-m", "manim", *argv], cwd=ROOT,
                             capture_output=True, text=True)  # fmt: skip
        assert rc == own.returncode, (argv, log.read_text())
        assert cpu >= 0
        text = log.read_text()
        assert "RuntimeWarning" not in text
        # the same last message (the log holds standard output and error; a
        # traceback's frames above it differ by runpy's)
        last = [ln for ln in (own.stdout + own.stderr).splitlines() if ln.strip()]
        assert last[-1].strip() in text, (argv, last[-1])
    assert got[0][0] == 0 and got[1][0] != 0 and got[2][0] != 0
    assert "Manim Community" in (tmp_path / "version.log").read_text()
    assert server_cpu >= sum(cpu for _, cpu in got)  # its total holds its children's


def test_a_closed_server_is_reported_not_waited_for(tmp_path):
    forker = Forker(ROOT)
    forker.close()
    with pytest.raises(RuntimeError, match="render server ended"):
        forker.run(["--version"], tmp_path / "x.log")


def test_talk_renders_fall_back_to_own_processes(monkeypatch, tmp_path):
    import flashanim.talk as talk

    class Dead:
        def run(self, argv, log):
            raise RuntimeError("the render server ended")

    class Server:
        forker = None

        def get(self):
            return Dead()

    started = []

    class Proc:
        pid = 4242

    def popen(cmd, cwd, stdout, stderr):
        started.append(cmd)
        return Proc()

    monkeypatch.setattr(talk.subprocess, "Popen", popen)
    monkeypatch.setattr(talk.os, "wait4", lambda pid, opt: (pid, 0, _Usage()))
    r = talk._render_one(talk.TALK[0], "low", tmp_path, [], server=Server())
    assert started and started[0][1:4] == ["-m", "manim", "render"]
    assert not r.ok  # (no video was written under tmp_path)


class _Usage:
    ru_utime = 1.0
    ru_stime = 0.5
