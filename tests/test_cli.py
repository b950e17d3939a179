"""The ``flashanim`` command line: trace, check, and one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flashanim.cli import COMMANDS, main
from flashanim.trace import KERNELS, closed_form_traffic, hbm_traffic, load_trace

SMALL = ["--seq-len", "5", "--head-dim", "3", "--block-m", "2", "--block-n", "4"]


def test_trace_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "t.json.gz"
    args = [
        "trace",
        "--kernel",
        "fa2-fwd",
        *SMALL,
        "--seq-len-k",
        "7",
        "--causal",
        "--values",
        "--heads",
        "2",
        "--seed",
        "5",
        "--device",
        "cpu",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    tr = load_trace(out)
    m = tr.meta
    assert (m.kernel, m.seq_len_q, m.seq_len_k, m.head_dim) == ("fa2-fwd", 5, 7, 3)
    assert (m.block_m, m.block_n, m.heads, m.causal, m.seed) == (2, 4, 2, True, 5)
    assert m.values and any(e.value is not None for e in tr.events)
    assert hbm_traffic(tr) == closed_form_traffic(m)
    said = capsys.readouterr().out
    assert f"{len(tr.events)} events" in said and str(out) in said


def _check_lines(text: str) -> dict[str, tuple[float, float, str]]:
    rows = re.findall(r"^\s+(\w+)\s+max\|err\| (\S+)\s+bound (\S+)\s+(.+)$", text, re.M)
    return {
        name: (float(err), float(bound), verdict) for name, err, bound, verdict in rows
    }


@pytest.mark.parametrize(
    "kernel, extra",
    [
        ("fa2-fwd", ["--causal"]),
        ("fa1-fwd", ["--dtype", "float16", "--seq-len-k", "9"]),
        ("standard", ["--batch", "2"]),
    ],
)
def test_check_prints_errors_within_the_rule(kernel, extra, capsys):
    assert main(["check", "--kernel", kernel, *SMALL, *extra]) == 0
    out = capsys.readouterr().out
    rows = _check_lines(out)
    want = {"O", "dQ", "dK", "dV"} if kernel == "fa2-fwd" else {"O"}
    assert set(rows) == want
    for err, bound, verdict in rows.values():
        assert err <= bound and verdict == "ok"
    assert "all within flash-attn's rule" in out


def test_check_fails_outside_the_rule(monkeypatch, capsys):
    """A kernel whose output is off is caught (exit code 1)."""
    import flashanim.kernels.reference as reference

    def strict(out, out_pt, ref, factor=2.0, atol=1e-5):
        ok, err, bound = real(out, out_pt, ref, factor, atol)
        return False, err, 0.0

    real = reference.within_rule
    monkeypatch.setattr(reference, "within_rule", strict)
    assert main(["check", "--kernel", "standard", *SMALL]) == 1
    assert "OUTSIDE THE RULE" in capsys.readouterr().out


BAD = {
    "unknown-kernel": (["trace", "--kernel", "fa3", "-o", "x.json"], "fa2-fwd"),
    "dtype": (["check", "--kernel", "fa2-fwd", "--dtype", "float64"], "float16"),
    "zero": (["check", "--kernel", "fa2-fwd", "--seq-len", "0"], ">= 1"),
    "not-int": (["check", "--kernel", "fa2-fwd", "--head-dim", "two"], ">= 1"),
    "no-output": (["trace", "--kernel", "fa2-fwd"], "-o/--output"),
    "no-command": ([], "COMMAND"),
    "unknown-command": (["paint"], "trace"),
    "device": (["check", "--kernel", "fa2-fwd", "--device", "tpu"], "cpu"),
    "seed": (["check", "--kernel", "fa2-fwd", "--seed", "-3"], ">= 0"),
    "block": (
        ["check", "--kernel", "fa2-fwd", *SMALL, "--block-m", "3"],
        "power of two",
    ),
    "bf16-cpu": (
        ["check", "--kernel", "fa1-fwd", *SMALL, "--dtype", "bfloat16"],
        "bfloat16",
    ),
    "bad-path": (
        ["trace", "--kernel", "fa2-fwd", *SMALL, "-o", "/nonexistent/t.json"],
        "/nonexistent",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_give_one_line_and_exit_2(name, capsys):
    argv, accepted = BAD[name]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flashanim") and "error:" in lines[0]
    assert accepted in lines[0]
    assert "Traceback" not in err


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has CUDA"
)
def test_device_cuda_without_cuda_is_a_clear_error(capsys):
    assert main(["check", "--kernel", "fa2-fwd", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--device cpu" in err


def test_commands_table_and_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c.name in out for c in COMMANDS)
    assert main(["trace", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(k in out for k in KERNELS)


def test_console_script(tmp_path):
    exe = shutil.which("flashanim", path=str(Path(sys.executable).parent))
    assert exe, "the flashanim console script is not installed"
    env = {**os.environ, "FLASHANIM_DEVICE": "auto"}
    out = tmp_path / "s.json"
    r = subprocess.run(
        [
            exe,
            "trace",
            "--kernel",
            "standard",
            *SMALL,
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert load_trace(out).meta.kernel == "standard"
    r = subprocess.run(
        [exe, "trace", "--kernel", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "fa2-fwd" in r.stderr


def test_trace_into_a_missing_folder_is_one_line_before_recording(tmp_path, capsys):
    out = tmp_path / "no" / "t.json"
    code = main(["trace", "--kernel", "fa2-fwd", *SMALL, "--device", "cpu",
                 "-o", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"no such folder {out.parent}" in err[0]
    assert not out.parent.exists()
