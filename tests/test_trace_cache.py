"""The cache of interpreter traces: a hit is the recording it stands for."""

from __future__ import annotations

import gzip
from dataclasses import replace

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import pytest

from flashanim.trace import record
from flashanim.trace.record import CACHE_ENV, trace_cache_dir

pytestmark = pytest.mark.skipif(
    flashanim.kernels.BACKEND != "cpu", reason="the cache is for the interpreter"
)

ARGS = dict(seq_len=8, head_dim=4, block_m=4, block_n=4, values=True, seed=3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def _no_recorder(monkeypatch):
    def refuse(kernel):
        raise AssertionError(f"recorded {kernel} again instead of using the cache")

    monkeypatch.setattr(flashanim.kernels, "recorder", refuse)


def test_hit_is_identical_to_the_recording(cache, monkeypatch):
    first = record("fa2-fwd", **ARGS)
    files = list(cache.glob("fa2-fwd-*.json.gz"))
    assert len(files) == 1
    _no_recorder(monkeypatch)
    again = record("fa2-fwd", **ARGS)
    assert again.identical(first)
    assert again.tensors.keys() == first.tensors.keys() and again.tensors


def test_every_argument_is_in_the_key(cache):
    record("fa2-fwd", **ARGS)
    record("fa2-fwd", **{**ARGS, "seed": 4})
    record("fa2-fwd", **{**ARGS, "causal": True})
    record("fa1-fwd", **ARGS)
    assert len(list(cache.glob("*.json.gz"))) == 4
    a = record("fa2-fwd", **ARGS)
    b = record("fa2-fwd", **{**ARGS, "seed": 4})
    assert not a.identical(b)


def _same_run(a, b) -> bool:
    """Identical but for the time of recording."""
    return replace(a, meta=replace(a.meta, created=b.meta.created)).identical(b)


def test_a_damaged_file_is_recorded_again(cache, caplog, monkeypatch):
    first = record("standard", **ARGS)
    (path,) = cache.glob("standard-*.json.gz")
    path.write_bytes(gzip.compress(b'{"schema": "flashanim.trace/1", "meta": {}}'))
    again = record("standard", **ARGS)
    assert _same_run(again, first)
    assert "ignoring cached trace" in caplog.text
    _no_recorder(monkeypatch)
    assert record("standard", **ARGS).identical(again)  # and the file was mended


def test_off_and_cache_false_record_every_time(cache, monkeypatch):
    record("fa2-fwd", **ARGS, cache=False)
    assert not list(cache.iterdir())
    monkeypatch.setenv(CACHE_ENV, "off")
    record("fa2-fwd", **ARGS)
    assert not list(cache.iterdir())


def test_cache_dir_from_the_environment(tmp_path):
    assert trace_cache_dir({CACHE_ENV: "off"}) is None
    assert trace_cache_dir({CACHE_ENV: "0"}) is None
    assert trace_cache_dir({CACHE_ENV: str(tmp_path)}) == tmp_path
    assert trace_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "flashanim" / "traces"
    )


def test_the_key_covers_the_kernel_sources():
    import importlib
    import importlib.util
    from pathlib import Path

    rec = importlib.import_module("flashanim.trace.record")  # the module
    (folder,) = importlib.util.find_spec("flashanim.kernels").submodule_search_locations
    assert (Path(folder) / "fa2.py").is_file()
    rec._code_digest.cache_clear()
    before = rec._code_digest()
    real = Path.read_bytes

    def edited(path):
        data = real(path)
        return data + b"\n# edited" if path.name == "fa2.py" else data

    try:
        Path.read_bytes = edited
        rec._code_digest.cache_clear()
        assert rec._code_digest() != before
    finally:
        Path.read_bytes = real
        rec._code_digest.cache_clear()
    assert rec._code_digest() == before
