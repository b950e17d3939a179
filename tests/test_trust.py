"""Outputs a user can trust (issue #16): no stale files, errors where the user looks,
bad traces refused, computed verdicts, one parameter table.

Each test stands for a defect found by probing as a hostile tester; each failed
before its fix. Render-marked tests render the tiling scene tiny (N = 4, d = 2,
2x2 blocks, 128x72 at 4 frames/s) from a saved trace.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flashanim.cli import _render_or_fail, main
from flashanim.config import PARAMS, ConfigError, SceneConfig, params_markdown
from flashanim.render import (
    MANIFEST,
    RenderError,
    RenderInterrupted,
    RenderRequest,
    _child_env,
    check_request,
    clean_stale_staging,
    find_scenes,
    scene_env,
    write_captions,
)
from flashanim.talk import Progress, TalkScene
from flashanim.trace import TraceFormatError, load_trace
from flashanim.trace.check import (
    TraceKernelError,
    closing_check,
    read_verdicts,
    require_kernel,
)
from flashanim.trace.io import trace_from_dict, trace_to_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "128x72", "--fps", "4"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> dict[str, Path]:
    import flashanim.kernels  # noqa: F401  (chooses the device first)

    from flashanim.trace import record, save_trace

    d = tmp_path_factory.mktemp("traces")
    fwd = record("fa2-fwd", seq_len=4, head_dim=2, block_m=2, block_n=2, values=True)
    bwd = record("fa2-bwd", seq_len=4, head_dim=2, block_m=2, block_n=2, values=True)
    return {
        "fwd": save_trace(fwd, d / "fwd.json"),
        "bwd": save_trace(bwd, d / "bwd.json"),
    }


def _doc(path: Path) -> dict:
    return trace_to_dict(load_trace(path))


# ------------------------------------------------------------ trace semantics


def _refused(doc: dict, words: str) -> None:
    with pytest.raises(TraceFormatError, match=words):
        trace_from_dict(doc, where="probe.json")


def test_tile_outside_the_grid_is_refused(traces):
    doc = _doc(traces["fwd"])  # 4x4 grid of 2-row blocks: T_r = T_c = 2
    rows = doc["events"]["rows"]
    k = next(i for i, r in enumerate(rows) if r[2] == "load" and r[3] == "K")
    rows[k][4] = 3  # within N = 4 (the syntax check), outside T_c = 2
    _refused(doc, r"events.rows\[\d+\]\[4\] \(row\): tile row 3 of K is outside")


def test_block_size_the_kernels_do_not_accept_is_refused(traces):
    doc = _doc(traces["fwd"])
    doc["meta"]["block_m"] = 3
    _refused(doc, r"meta.block_m: 3 is not a block size the kernels accept")


def test_kernel_name_disagreeing_with_the_events_is_refused(traces):
    doc = _doc(traces["fwd"])
    doc["meta"]["kernel"] = "fa2-bwd"
    _refused(doc, r"launch 'fwd' is not one of the fa2-bwd kernel's")
    doc = _doc(traces["fwd"])
    doc["meta"]["kernel"] = "fa1-fwd"  # same launch name, other operations
    _refused(doc, r"the fa1-fwd kernel records no '\w+' events")


def test_non_finite_tensor_is_refused(traces):
    doc = _doc(traces["fwd"])
    doc["tensors"]["O"]["data"][0][0][3][1] = "nan"
    _refused(doc, r"tensors.O: 1 non-finite entry \(nan at \[0, 0, 3, 1\]\)")


def test_wrong_kernel_for_a_scene_is_one_line(traces):
    with pytest.raises(TraceKernelError) as info:
        require_kernel(load_trace(traces["bwd"]), "TilingScene", "fa2-fwd")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("TilingScene plays an fa2-fwd trace; this one is")
    with pytest.raises(TraceKernelError, match="plays a causal fa2-fwd trace"):
        require_kernel(load_trace(traces["fwd"]), "CausalScene", "fa2-fwd", True)


# ------------------------------------------------------------- verdicts


def test_closing_check_computes_its_verdict(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 1, 4, 2))
    env = {"FLASHANIM_RENDER_VERDICT": str(tmp_path / "v.json")}
    good = closing_check("O", (ref + 1e-7, ref), "float32", environ=env)
    assert good.ok
    assert good.headline() == (
        "The kernel's O matches naive attention: max error 1.0e-07 (float32)"
    )
    off = ref.copy()
    off[0, 0, 1, 1] += 5.0
    bad = closing_check("O", (off, ref), "float32", environ=env)
    assert not bad.ok and bad.max_error == pytest.approx(5.0)
    assert "DOES NOT MATCH naive attention: max error 5.0e+00 > tolerance" in (
        bad.headline()
    )
    off[0, 0, 0, 0] = np.nan
    nan = closing_check("O", (off, ref), "float32", environ=env)
    assert not nan.ok and "matches" not in nan.headline()
    grads = closing_check("dQ, dK, dV", [(ref, ref), (off, ref)], "float32",
                          "autograd of naive attention", environ=env)  # fmt: skip
    assert grads.headline(plural=True).startswith("dQ, dK, dV DO NOT MATCH")
    assert [v["ok"] for v in read_verdicts(tmp_path / "v.json")] == [
        True, False, False, False
    ]  # fmt: skip


@pytest.mark.render
def test_altered_output_renders_as_a_mismatch_and_fails(traces, tmp_path, capsys,
                                                        monkeypatch):  # fmt: skip
    doc = _doc(traces["fwd"])
    o = np.array(doc["tensors"]["O"]["data"])
    doc["tensors"]["O"]["data"] = (o + 5.0).tolist()
    bad = tmp_path / "altered.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    rc = main(["render", "tiling", "--trace", str(bad), *TINY, "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "closing check failed: The kernel's O DOES NOT MATCH naive attention" in err
    manifest = json.loads((out / "tiling" / MANIFEST).read_text())
    assert [v["ok"] for v in manifest["verdicts"]] == [False]
    srt = (out / "tiling" / "TilingScene.srt").read_text()
    assert "DOES NOT MATCH" in srt and "matches naive" not in srt


# ---------------------------------------------- errors where the user looks


def _manim(env: dict[str, str], cwd: Path = ROOT,
           scene: tuple[str, str] = ("tiling", "TilingScene"),
           ) -> subprocess.CompletedProcess:  # fmt: skip
    full = {k: v for k, v in os.environ.items() if not k.startswith("FLASHANIM_")}
    full.update(env, FLASHANIM_TRACE_CACHE="off")
    return subprocess.run(
        [sys.executable, "-m", "manim", "render", "-ql", "--dry_run",
         f"scenes/{scene[0]}.py", scene[1]],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"FLASHANIM_SEQ_LEN": "0"}, "FLASHANIM_SEQ_LEN='0': must be between 1 and 64"),
        ({"FLASHANIM_BLOCK_N": "3"}, "FLASHANIM_BLOCK_N='3': must be a power of two"),
        ({"FLASHANIM_THEME": "neon"}, "unknown theme"),
        ({"FLASHANIM_TRACE": "/nonexistent.json"}, "no such file"),
    ],
)
def test_manim_render_with_a_bad_value_prints_at_most_three_lines(env, words):
    proc = _manim(env)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) <= 3, lines
    assert "Traceback" not in proc.stderr
    assert any(words in ln for ln in lines), lines


def test_manim_render_with_a_bad_setting_found_by_the_scene_itself_is_short():
    """A setting only the scene can check (the row of a run of N = 16): the
    TraceScene reports it like the table's checks, not as a traceback."""
    proc = _manim({"FLASHANIM_ROW": "99"}, scene=("online_softmax",
                                                  "OnlineSoftmaxScene"))  # fmt: skip
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) <= 3, lines
    assert "Traceback" not in proc.stderr
    assert any("FLASHANIM_ROW=99: must be a query row in 0 .. 15" in ln
               for ln in lines), lines  # fmt: skip


def test_manim_render_with_a_trace_of_the_wrong_kernel_is_short(traces):
    proc = _manim({"FLASHANIM_TRACE": str(traces["bwd"])})
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) <= 3, lines
    assert any("TilingScene plays an fa2-fwd trace" in ln for ln in lines), lines


@pytest.mark.render
def test_flashanim_render_prints_the_scenes_own_error(traces, tmp_path, capsys,
                                                      monkeypatch):  # fmt: skip
    monkeypatch.chdir(ROOT)
    rc = main(["render", "causal", "--trace", str(traces["fwd"]), *TINY,
               "-o", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert (
        "causal: CausalScene plays a causal fa2-fwd trace; this one is non-causal"
        in err[0]
    )


def test_truncated_trace_refused_before_rendering(traces, tmp_path, capsys,
                                                  monkeypatch):  # fmt: skip
    trunc = tmp_path / "trunc.json"
    trunc.write_text(traces["fwd"].read_text()[:500])
    monkeypatch.setattr(subprocess, "Popen", None)  # nothing may start
    assert main(["render", "tiling", "--trace", str(trunc), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated JSON" in err[0], err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["gpu_schedule", "--trace", "X"], "gpu_schedule does not read --trace"),
        (["io_complexity", "--seq-len", "8"], "io_complexity does not read --seq-len"),
        (["causal", "--gpu", "h100"], "causal does not read --gpu"),
        (["gpu_schedule", "memory_hierarchy", "--causal"], "do not read --causal"),
    ],
)
def test_flags_a_named_scene_does_not_read_are_refused(argv, words, capsys,
                                                       monkeypatch, tmp_path):  # fmt: skip
    monkeypatch.setattr(subprocess, "Popen", None)
    argv = [a if a != "X" else str(tmp_path / "x.json") for a in argv]
    (tmp_path / "x.json").write_text("{}")
    assert main(["render", *argv, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_flags_some_named_scenes_do_not_read_are_explained(monkeypatch):
    req = RenderRequest(scenes=find_scenes(["memory_hierarchy", "tiling"]), seq_len=8)
    check_request(req)  # tiling reads it
    from flashanim.render import unread_flags

    assert unread_flags(req) == [
        "memory_hierarchy does not read --seq-len (read by: standard_attention, "
        "tiling, online_softmax, loop_order, causal, backward)"
    ]


def test_interrupt_message_says_what_was_kept(capsys, tmp_path):
    def job():
        raise RenderInterrupted(["tiling"])

    assert _render_or_fail(job, tmp_path) == 130
    err = capsys.readouterr().err
    assert "the new files of tiling were kept" in err
    assert "unchanged" not in err

    def nothing():
        raise RenderInterrupted([])

    assert _render_or_fail(nothing, tmp_path) == 130
    assert "no new files were kept" in capsys.readouterr().err


# ------------------------------------------------------ complete, consistent sets


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.render
def test_rerender_leaves_no_stale_files(traces, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    argv = ["render", "tiling", "--trace", str(traces["fwd"]), *TINY, "-o", str(out)]
    assert main(argv) == 0
    scene = out / "tiling"
    first = _files(scene)
    assert {"TilingScene.srt", "TilingScene.vtt", MANIFEST} <= first
    assert any(f.startswith("sections/") for f in first)
    assert main([*argv, "--theme", "light", "--no-captions", "--no-sections"]) == 0
    second = _files(scene)
    manifest = json.loads((scene / MANIFEST).read_text())
    assert set(manifest["files"]) == second  # exactly what this render wrote
    assert not any(f.startswith("sections/") for f in second)
    assert "TilingScene.srt" not in second and "TilingScene.vtt" not in second
    assert manifest["settings"]["theme"] == "light"
    assert manifest["output"]["captions"] is False
    assert not list(out.glob(".flashanim-render-*"))


def test_no_empty_caption_files(tmp_path):
    rec = tmp_path / "record.json"
    rec.write_text(json.dumps({"plays": [{"start": 0, "end": 1, "events": [],
                                          "caption": None}],
                               "sections": [], "duration": 1.0}))  # fmt: skip
    said = []
    files = write_captions(rec, tmp_path, Path("x"), "X", said.append)
    assert [p.name for p in files] == ["X.record.json"]
    assert not list(tmp_path.glob("*.srt")) and "no captions" in said[0]


def test_staging_of_a_killed_render_is_removed(tmp_path):
    dead = tmp_path / ".flashanim-render-999999999-abc"
    (dead / "tiling").mkdir(parents=True)
    (dead / "tiling" / "x.mp4").write_bytes(b"0" * 1000)
    mine = tmp_path / f".flashanim-render-{os.getpid()}-abc"
    mine.mkdir()
    said = []
    assert clean_stale_staging(tmp_path, said.append) == [dead]
    assert not dead.exists() and mine.exists()
    assert "left by an interrupted render" in said[0]


@pytest.mark.render
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killed_or_hung_up_render_leaves_nothing_behind(sig, traces, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flashanim.cli", "render", "tiling", "--trace",
           str(traces["fwd"]), *TINY, "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list(out.glob(".flashanim-render-*/**/partial_movie_files/**/*.mp4")):
            break
        time.sleep(0.2)
    assert proc.poll() is None
    if sig == signal.SIGKILL:  # the render and its Manim child, as a closed session
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)
    text = proc.communicate(timeout=60)[0]
    if sig == signal.SIGHUP:
        assert proc.returncode == 130 and "no new files were kept" in text, text
        assert not list(out.glob(".flashanim-render-*"))
        return
    assert list(out.glob(".flashanim-render-*"))  # SIGKILL cannot clean up...
    said = []
    clean_stale_staging(out, said.append)  # ...the next render does
    assert not list(out.glob(".flashanim-render-*")) and said


# ------------------------------------------------------------ one parameter table


def test_child_gets_exactly_the_tables_variables(monkeypatch):
    monkeypatch.setenv("FLASHANIM_ROW", "5")  # a scene parameter of the caller
    monkeypatch.setenv("FLASHANIM_IO_NS", "16,32")
    monkeypatch.setenv("FLASHANIM_SOMETHING_ELSE", "1")
    monkeypatch.setenv("FLASHANIM_TRACE_CACHE", "off")  # a machine setting
    req = RenderRequest(scenes=find_scenes(["tiling"]), seq_len=8)
    env = _child_env(req, scene_env(req))
    flash = {k for k in env if k.startswith("FLASHANIM_")}
    table = {p.env for p in PARAMS}
    assert flash <= table
    assert "FLASHANIM_ROW" not in env  # the scene chooses its row
    assert env["FLASHANIM_IO_NS"] == "64,128,256,512,1024"  # the table's default
    assert env["FLASHANIM_TRACE_CACHE"] == "off"
    assert env["FLASHANIM_SEQ_LEN"] == "8" and env["FLASHANIM_THEME"] == "dark"


def test_readme_parameter_table_matches_the_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert params_markdown() in readme


def test_help_gives_each_flags_range(capsys):
    with pytest.raises(SystemExit):
        from flashanim.cli import build_parser

        build_parser().parse_args(["render", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for p in PARAMS:
        if p.flag and p.kind != "bool":
            assert f"accepted: {' '.join(p.range.split())}" in text, p.flag


def test_one_rule_one_message_for_env_and_flags(capsys, monkeypatch):
    with pytest.raises(ConfigError) as info:
        SceneConfig.from_env({"FLASHANIM_BLOCK_N": "3"})
    assert str(info.value).startswith("FLASHANIM_BLOCK_N='3': must be a power of two")
    assert info.value.cli.startswith("--block-n 3: must be a power of two")
    monkeypatch.setattr(subprocess, "Popen", None)
    assert main(["render", "tiling", "--block-n", "3"]) == 2
    assert "argument --block-n: 3: must be a power of two" in capsys.readouterr().err
    with pytest.raises(RenderError, match="--block-n 16: larger than the sequence"):
        check_request(RenderRequest(scenes=find_scenes(["tiling"]), seq_len=4,
                                    block_n=16))  # fmt: skip


def test_progress_line_has_share_and_time_left(monkeypatch):
    scenes = [TalkScene("a", "A", "a", 30.0), TalkScene("b", "B", "b", 10.0)]
    clock = iter([0.0, 20.0, 20.0, 30.0, 30.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    said = []
    p = Progress(scenes, "low", said.append, jobs=1, cores=1)
    assert (
        said[0]
        == "  estimated 40 s from the measured render costs (updated as scenes finish)"
    )
    line = p.done(scenes[0], "done in 20.0 s")
    # 30 of 40 units done in 20 s -> the last 10 units take about 7 s
    assert line == "[1/2] a done in 20.0 s (75% of the work; 75% done, about 7 s left)"
    line = p.done(scenes[1], "done")
    assert line.startswith("[2/2] b done (25% of the work; 100% done, all done in")


def test_dumps_of_a_semantically_broken_trace_fail(traces):
    t = load_trace(traces["fwd"])
    bad = copy.deepcopy(t.tensors)
    bad["Q"][0, 0, 0, 0] = np.inf
    from dataclasses import replace

    from flashanim.trace import dumps_trace

    with pytest.raises(TraceFormatError, match="tensors.Q"):
        dumps_trace(replace(t, tensors=bad))


# ------------------------------------------------------- long recordings


def test_long_recording_is_refused_with_its_estimate(capsys, tmp_path):
    out = tmp_path / "t.json"
    argv = ["trace", "--kernel", "fa2-fwd", "--seq-len", "1000", "--values",
            "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "62500 block steps" in err and "--max-minutes 0" in err
    assert not out.exists()


def test_recording_estimate_follows_the_measured_model():
    from flashanim.trace.record import STEP_SECONDS, estimate_recording

    secs, steps = estimate_recording("fa2-fwd", seq_len=256, values=True)
    assert steps == 64 * 64 and secs == pytest.approx(4096 * STEP_SECONDS["fa2-fwd"][1])
    _, causal = estimate_recording("fa2-fwd", seq_len=16, causal=True)
    assert causal == 1 + 2 + 3 + 4  # blocks on and below the diagonal
    _, bwd = estimate_recording("fa2-bwd", seq_len=16, batch=2, heads=3)
    assert bwd == 2 * 3 * 16


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_recording_writes_nothing(tmp_path):
    out = tmp_path / "t.json"
    out.write_text("earlier file")
    env = dict(os.environ, FLASHANIM_TRACE_CACHE="off", FLASHANIM_DEVICE="cpu")
    cmd = [sys.executable, "-m", "flashanim.cli", "trace", "--kernel", "fa2-fwd",
           "--seq-len", "128", "--values", "-o", str(out)]  # fmt: skip
    # Ctrl-C as a terminal delivers it: a test run started in the background of a
    # non-interactive shell has SIGINT ignored, and a child would inherit that
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_sigint_default)  # fmt: skip
    first = proc.stdout.readline()
    assert first.startswith("recording fa2-fwd in Triton's CPU interpreter: about")
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, first + rest
    assert "interrupted; nothing was written" in rest and "Traceback" not in rest
    assert out.read_text() == "earlier file"
