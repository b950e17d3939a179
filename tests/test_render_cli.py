"""``flashanim render`` / ``slides`` / ``list``: options, refusals, outputs, safety.

Fast tests check the mapping to Manim flags and the refusals without rendering.
Render-marked tests render the tiling scene tiny (N = 4, d = 2, 2x2 blocks, 128x72
at 4 frames/s, from a saved trace) once end to end (video, section clips, posters,
captions, slides deck), and twice to check that a render that fails mid-way or is
interrupted leaves earlier files as they were. GIFs, determinism, 4:3, alpha and
multi-scene decks: tests/test_outputs.py.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flashanim.captions import (
    Cue,
    cues_from_record,
    describe_events,
    format_timestamp,
    write_srt,
    write_vtt,
)
from flashanim.cli import main
from flashanim.render import (
    RenderError,
    RenderRequest,
    check_request,
    find_scenes,
    manim_args,
    scene_env,
)
from flashanim.talk import TALK

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "128x72", "--fps", "4"]


def _req(**kw) -> RenderRequest:
    return RenderRequest(scenes=find_scenes(["tiling"]), **kw)


# ------------------------------------------------------------ mapping (no render)


@pytest.mark.parametrize(
    ("kw", "expect", "absent"),
    [
        (
            {},
            ["-ql", "--format", "mp4", "--disable_caching", "--save_sections"],
            ["-t", "-r", "--fps"],
        ),
        ({"quality": "high"}, ["-qh"], ["-r"]),
        (
            {"quality": "4k", "fmt": "webm", "transparent": True},
            ["-qk", "--format", "webm", "-t"],
            [],
        ),
        ({"aspect": "4:3"}, ["-r", "640,480"], []),
        ({"aspect": "4:3", "quality": "high"}, ["-r", "1440,1080"], []),
        # GIFs: Manim renders the MP4, flashanim.gif converts it
        ({"fmt": "gif"}, ["--format", "mp4", "--fps", "10"], ["gif"]),
        ({"fmt": "png"}, ["--format", "png"], ["--save_sections"]),
        ({"resolution": (128, 72), "fps": 4.0}, ["-r", "128,72", "--fps", "4"], []),
    ],
)
def test_options_map_to_manim_flags(kw, expect, absent):
    args = manim_args(_req(**kw))
    joined = " ".join(args)
    for flag in expect:
        assert flag in args, (flag, args)
    assert " ".join(expect[:2]) in joined or len(expect) < 2
    for flag in absent:
        assert flag not in args, (flag, args)


def test_scene_parameters_become_env_vars():
    env = scene_env(_req(seq_len=8, block_m=2, causal=True, theme="light", seed=3))
    assert env["FLASHANIM_SEQ_LEN"] == "8"
    assert env["FLASHANIM_BLOCK_M"] == "2"
    assert env["FLASHANIM_BLOCK_N"] == "4"  # the scene default, set explicitly
    assert env["FLASHANIM_CAUSAL"] == "1"
    assert env["FLASHANIM_THEME"] == "light"
    assert env["FLASHANIM_SEED"] == "3"
    traced = scene_env(_req(trace=__file__))
    assert traced["FLASHANIM_TRACE"] == str(Path(__file__).resolve())
    assert "FLASHANIM_SEQ_LEN" not in traced


def test_find_scenes_follows_talk_order():
    assert find_scenes([], all_=True) == TALK
    assert [s.name for s in find_scenes(["tiling", "tiling"])] == ["tiling"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["render", "nope"], "known: " + ", ".join(s.name for s in TALK)),
        (["render"], "--all"),
        (["render", "tiling", "--all"], "not both"),
        (["render", "tiling", "--trace", __file__, "--seq-len", "8"], "--trace"),
        (["render", "tiling", "--format", "gif", "--quality", "4k"], "budget"),
        (["render", "tiling", "--format", "gif", "--quality", "high"], "budget"),
        (["render", "tiling", "--transparent"], "alpha"),
        (["render", "tiling", "--fps", "0"], "above 0"),
        (["render", "tiling", "--format", "gif", "--fps", "60"], "50 or less"),
        (["render", "tiling", "--transparent", "--format", "gif"], "alpha"),
        (
            ["render", "tiling", "--seq-len", "100"],
            "--seq-len: 100: must be between 1 and 64",
        ),
        (["render", "tiling", "--block-m", "3"], "power of two"),
        (["render", "tiling", "--seq-len", "4", "--block-n", "16"], "larger"),
        (["render", "tiling", "--trace", "missing.json"], "no such file"),
        (["render", "tiling", "--resolution", "12x5"], "even"),
        (["slides", "tiling", "--quality", "8k"], "invalid choice"),
    ],
)
def test_bad_combinations_refused_before_rendering(argv, words, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a render started")

    monkeypatch.setattr(subprocess, "Popen", boom)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("flashanim")
    assert words in err


def test_check_request_returns_validated_config():
    cfg = check_request(_req(seq_len=8, head_dim=2, block_m=2, block_n=2))
    assert (cfg.seq_len, cfg.block_m) == (8, 2)
    with pytest.raises(RenderError):
        check_request(_req(slides=True, fmt="gif"))


def test_list_prints_one_line_per_scene(capsys):
    from flashanim.cut import CUT

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in lines if ln.startswith("  ")]
    assert names == [c.name for c in CUT] + [s.name for s in TALK]
    assert [ln for ln in lines if not ln.startswith("  ")] == [
        "the talk cut (--cut talk):",
        "the deep dive (--all):",
    ]


def test_talk_clips_are_scenes_by_name_and_their_deck_has_the_cut_notes():
    from flashanim.cut import CUT, facts
    from flashanim.render import find_scenes
    from flashanim.slides import section_notes

    clip = CUT[1]
    assert find_scenes([clip.name]) == (clip.scene,)
    assert find_scenes([], all_=True) == TALK  # --all stays the deep dive
    record = {
        "sections": [{"name": "title", "start": 0.0}, {"name": "scores", "start": 4}],
        "plays": [{"start": 5.0, "caption": "One query row"}],
    }
    notes = section_notes(clip.name, record)
    assert notes == [clip.notes.format(**facts()), "One query row"]
    # a deep-dive scene keeps the captions as its notes
    assert section_notes("tiling", record) == ["title", "One query row"]


def test_slides_cut_talk_takes_the_cut_and_refuses_scenes():
    from flashanim.cli import CliError, _request, build_parser
    from flashanim.cut import CUT

    args = build_parser().parse_args(["slides", "--cut", "talk", "-o", "deck"])
    req = _request(args, slides=True)
    assert [s.name for s in req.scenes] == [c.name for c in CUT]
    bad = build_parser().parse_args(["slides", "--cut", "talk", "tiling"])
    with pytest.raises(CliError, match="give no SCENE"):
        _request(bad, slides=True)


# --------------------------------------------------------------- captions (no render)


def test_caption_words_and_formats(tmp_path):
    ev = [
        {"program": 0, "op": "load", "tensor": "K", "row": 2, "col": 0, "nbytes": 256},
        {"program": 0, "op": "qk", "tensor": "S", "row": 0, "col": 2, "nbytes": 0},
        {"program": 0, "op": "pv", "tensor": "acc", "row": 0, "col": 0, "nbytes": 0},
    ]
    assert describe_events(ev) == [
        "program 0: load K block 2 from HBM (256 B)",
        "program 0: S = Q_0 K_2ᵀ",
        "program 0: acc += P V_2",
    ]
    assert format_timestamp(3723.0456) == "01:02:03,046"
    assert format_timestamp(1.5, ".") == "00:00:01.500"
    cues = [Cue(0.0, 1.0, "a"), Cue(1.0, 2.5, "b")]
    srt = write_srt(cues, tmp_path / "x.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\na\n")
    vtt = write_vtt(cues, tmp_path / "x.vtt").read_text()
    assert vtt.startswith("WEBVTT\n") and "00:00:01.000 --> 00:00:02.500\nb" in vtt
    rec = {
        "duration": 5.0,
        "sections": [{"name": "s", "start": 0.0}],
        "plays": [
            {"start": 0, "end": 1, "events": [], "caption": "hello"},
            {"start": 1, "end": 2, "events": [], "caption": None},
            {"start": 2, "end": 3, "events": ev[:1], "caption": None},
        ],
    }
    got = cues_from_record(rec)
    assert got[0] == Cue(0, 2, "[s] hello")  # a caption lasts until the next cue
    assert got[1].text == "program 0: load K block 2 from HBM (256 B)"


# ----------------------------------------------------------------- real renders


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    import flashanim.kernels  # noqa: F401  (chooses the device first)

    from flashanim.trace import record, save_trace

    trace = record("fa2-fwd", seq_len=4, head_dim=2, block_m=2, block_n=2, values=True)
    return save_trace(trace, tmp_path_factory.mktemp("trace") / "t.json")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "logs" not in p.parts
    }


def _old_outputs(out: Path) -> dict[str, str]:
    """Files where a render of the tiling scene writes, standing for a good
    earlier render."""
    for rel in (
        "tiling/TilingScene.mp4",
        "tiling/TilingScene.srt",
        "tiling/TilingScene.png",
        "tiling/sections/01_setup.mp4",
    ):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"earlier good render of " + rel.encode())
    return _digest(out)


@pytest.fixture(scope="module")
def slides_out(trace_file, tmp_path_factory) -> Path:
    """One real render of the tiling scene as slides (and the HTML deck)."""
    out = tmp_path_factory.mktemp("slides") / "out"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flashanim.cli", "slides", "tiling", "--trace",
         str(trace_file), *TINY, "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"render + slides: {time.perf_counter() - t0:.1f} s")
    return out


@pytest.mark.render
def test_slides_render_end_to_end(trace_file, slides_out):
    """One real render through the render pipeline with slides: mp4, one clip and
    one poster per section, captions equal to the trace's events, an HTML deck
    with one slide per section."""
    from flashanim.trace import load_trace

    out = slides_out
    scene = out / "tiling"
    assert (scene / "TilingScene.mp4").stat().st_size > 0
    assert not list(out.glob(".flashanim-render-*"))

    # sections and posters: one clip and one PNG per section, last frames
    rec = json.loads((scene / "TilingScene.record.json").read_text())
    names = [s["name"] for s in rec["sections"]]
    assert names[:2] == ["setup", "load Q"]
    clips = sorted((scene / "sections").glob("*.mp4"))
    posters = sorted((scene / "sections").glob("*.png"))
    assert len(clips) == len(posters) == len(names)
    from PIL import Image

    with Image.open(scene / "TilingScene.png") as im:
        assert im.size == (128, 72)
    assert (scene / "TilingScene.png").read_bytes() == posters[-1].read_bytes()

    # captions: every event of the trace, in order, once, with rising times
    played = [e for p in rec["plays"] for e in p["events"]]
    trace = load_trace(trace_file)
    assert [e["index"] for e in played] == [e.index for e in trace.events]
    srt = (scene / "TilingScene.srt").read_text(encoding="utf-8")
    want = describe_events(played)
    said = [re.sub(r"^\[[^]]*\] ", "", ln) for ln in srt.splitlines()]
    # a grouped step (several events in one animation) is one cue, its events'
    # lines joined by " · "
    said = [part for ln in said if ln.startswith("program ")
            for part in re.split(r" · (?=program \d+: )", ln)]  # fmt: skip
    assert said == want
    assert "program 0: load Q block 0 from HBM (16 B)" in srt
    vtt = (scene / "TilingScene.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == srt.count(" --> ")
    starts = [p["start"] for p in rec["plays"]]
    assert starts == sorted(starts) and rec["duration"] >= starts[-1]

    # slides: one per section in manim-slides' file and in the HTML deck
    slides = json.loads((scene / "TilingScene.slides.json").read_text())["slides"]
    assert len(slides) == len(names)
    page = (out / "flashanim_slides.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<section\s+data-background-size", page)) == len(names)
    assert "data:video/mp4;base64," in page  # videos embedded: one file
    # reveal.js inlined from the vendored copy: nothing loaded from a CDN
    assert "cdn.jsdelivr" not in page and not re.search(r'(src|href)="https?:', page)
    # the presentation file points at clips that exist (not the staging folder)
    from manim_slides.config import PresentationConfig

    pres = PresentationConfig.from_file(scene / "TilingScene.slides.json")
    assert all(s.file.is_file() and out in s.file.parents for s in pres.slides)
    # speaker notes: each section's final caption
    from flashanim.slides import section_notes

    notes = section_notes("tiling", rec)
    assert [s.notes for s in pres.slides] == notes
    assert notes[-1].startswith("The kernel's O matches naive attention")
    manifest = json.loads((scene / "render.json").read_text())
    assert "TilingScene.slides.json" in manifest["files"]


def _chromium() -> tuple[str, str] | None:
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.render
@pytest.mark.skipif(
    _chromium() is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; make test installs them when run as root)",
)
def test_deck_runs_offline_in_headless_chromium(slides_out):
    """Open the deck in headless Chromium with every http(s) request blocked and
    step through all its slides: reveal.js runs (vendored, inline), each slide
    shows its section's video and its speaker notes, and no request left the
    machine."""
    pytest.importorskip("selenium", reason="needs the selenium package (dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from flashanim.slides import section_notes

    browser, driver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    rec = json.loads((slides_out / "tiling" / "TilingScene.record.json").read_text())
    notes = section_notes("tiling", rec)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        drv.execute_cdp_cmd("Network.enable", {})
        drv.execute_cdp_cmd(
            "Network.setBlockedURLs", {"urls": ["http://*", "https://*"]}
        )
        drv.get((slides_out / "flashanim_slides.html").as_uri())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if drv.execute_script("return !!(window.Reveal && Reveal.isReady())"):
                break
            time.sleep(0.2)
        assert drv.execute_script("return !!(window.Reveal && Reveal.isReady())")
        total = drv.execute_script("return Reveal.getTotalSlides()")
        assert total == len(notes)
        seen = []
        for k in range(total):
            state = drv.execute_script(
                "const s = Reveal.getCurrentSlide();"
                "return [Reveal.getState().indexh, Reveal.getSlideNotes(s) || '',"
                " s.getAttribute('data-background-video') || ''];"
            )
            seen.append(state[0])
            shown = html.unescape(re.sub(r"<[^>]+>", "", state[1])).strip()
            assert shown == notes[k], (k, state[1])  # markdown renders a <p>
            assert state[2].startswith("data:video/mp4;base64,")
            drv.execute_script("Reveal.next()")
        assert seen == list(range(total))
        requests = [
            json.loads(e["message"])["message"] for e in drv.get_log("performance")
        ]
        urls = [m["params"]["request"]["url"] for m in requests
                if m["method"] == "Network.requestWillBeSent"]  # fmt: skip
        assert not [u for u in urls if u.startswith(("http:", "https:"))], urls
    finally:
        drv.quit()


def _failing_root(tmp_path: Path) -> Path:
    """A copy of the repository's tiling scene (and manim.cfg) whose closing check
    raises: the render fails at its end, after every other animation."""
    root = tmp_path / "root"
    (root / "scenes").mkdir(parents=True)
    (root / "manim.cfg").write_bytes((ROOT / "manim.cfg").read_bytes())
    src = (ROOT / "scenes" / "tiling.py").read_text()
    assert "        self.check()\n" in src
    src = src.replace(
        "        self.check()\n",
        "        raise RuntimeError('deliberate failure before the check')\n",
    )
    (root / "scenes" / "tiling.py").write_text(src)
    return root


@pytest.mark.render
def test_failed_render_keeps_previous_output(trace_file, tmp_path, monkeypatch, capsys):
    root = _failing_root(tmp_path)
    monkeypatch.chdir(root)
    out = tmp_path / "out"
    before = _old_outputs(out)
    rc = main(["render", "tiling", "--trace", str(trace_file), *TINY, "-o", str(out)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    # the scene's own error, on one line, where the user looks (not only the log)
    assert len(err) == 1, err
    assert "tiling: RuntimeError: deliberate failure before the check" in err[0]
    assert "deliberate failure" in (out / "logs" / "tiling.log").read_text()
    assert _digest(out) == before
    assert not list(out.glob(".flashanim-render-*"))


@pytest.mark.render
def test_interrupted_render_keeps_previous_output(trace_file, tmp_path):
    out = tmp_path / "out"
    before = _old_outputs(out)
    cmd = [
        sys.executable,
        "-m",
        "flashanim.cli",
        "render",
        "tiling",
        "--trace",
        str(trace_file),
        *TINY,
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(out.glob(".flashanim-render-*/**/partial_movie_files/**/*.mp4"))
        if len(partial) >= 3:  # Manim is writing the scene
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    assert "interrupted" in text
    assert _digest(out) == before
    assert not list(out.glob(".flashanim-render-*"))
    time.sleep(0.5)  # the Manim child was killed with its process group
    assert not _processes_mentioning(str(out))


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = p.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_unknown_x264_preset_refused_before_rendering(monkeypatch):
    monkeypatch.setenv("FLASHANIM_X264_PRESET", "quick")
    with pytest.raises(RenderError, match="unknown x264 preset; choose one of"):
        check_request(_req())
