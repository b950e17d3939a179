"""``flashanim render`` and ``flashanim slides``: parameters in, finished files out.

One :class:`RenderRequest` says which scenes to render and how; :func:`check_request`
refuses bad combinations before anything renders; :func:`manim_args` maps the request
to ``manim render`` flags (the same result as ``manim render`` with those flags);
:func:`render` runs one ``python -m manim render`` per scene on a generated two-line
module (:mod:`flashanim._scene_hooks`: the scene plus a recording hook, and
:class:`manim_slides.Slide` for slides), with the scene parameters as ``FLASHANIM_*``
environment variables.

What lands in ``-o DIR`` for a scene ``tiling`` (class ``TilingScene``)::

    DIR/tiling/TilingScene.mp4            the scene (or .gif/.webm/.mov)
    DIR/tiling/frames/TilingScene_00000.png  (--format png) every frame
    DIR/tiling/TilingScene.png            poster: the last frame
    DIR/tiling/TilingScene.srt, .vtt      captions from the trace events played
                                          (not written when the scene has none)
    DIR/tiling/render.json                manifest: settings, files, verdicts
    DIR/tiling/sections/01_setup.mp4      one clip per section (Manim --save_sections)
    DIR/tiling/sections/01_setup.png      its last frame
    DIR/flashanim_slides.html             (flashanim slides) the deck, one file

GIFs are not Manim's own (far too large): Manim renders the MP4 as usual, every
frame is also captured losslessly, and :func:`flashanim.gif.make_gif` converts the
capture (global palette, only changed regions, duplicate frames merged) at
:data:`GIF_FPS` frames per second. Budget: :data:`GIF_BUDGET_BYTES` for any scene of
the talk at 480p (``--quality low``) with the default settings; a GIF over budget is
kept, with a warning.

Everything renders into a staging folder inside ``DIR`` (caching off,
``.flashanim-render-<pid>-*``); a finished scene's complete folder is built there
and swapped for ``DIR/<scene>`` (two renames), so the folder holds exactly what the
new settings produce, never files of an earlier render. A render that fails or is
interrupted leaves the previous files as they were, except scenes that finished
(the message names them). Staging folders of a render that was killed (SIGKILL,
a closed terminal) are removed by the next render into ``DIR``.

Errors come from the scene itself: the child writes its one-line error as JSON
(:data:`flashanim.config.ERROR_ENV`), and the closing checks their verdicts
(:data:`flashanim.trace.check.VERDICT_ENV`); a mismatch makes ``flashanim render``
exit non-zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flashanim.config import ERROR_ENV, PARAMS, ConfigError, SceneConfig
from flashanim.talk import QUALITIES, TALK, Progress, TalkScene
from flashanim.trace._protocol import TraceFormatError
from flashanim.trace.check import VERDICT_ENV, read_verdicts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import numpy as np

__all__ = [
    "RenderRequest",
    "RenderError",
    "RenderInterrupted",
    "SceneFailed",
    "SceneOutput",
    "MANIFEST",
    "FORMATS",
    "ALPHA_FORMATS",
    "ASPECTS",
    "GIF_FPS",
    "GIF_BUDGET_BYTES",
    "GIF_QUALITIES",
    "find_scenes",
    "check_request",
    "scene_env",
    "unread_flags",
    "manim_args",
    "render",
    "write_captions",
    "clean_stale_staging",
    "last_frame",
    "decode_frames",
]

#: Output formats (Manim's ``--format``); ``png`` is a numbered frame sequence.
FORMATS: tuple[str, ...] = ("mp4", "gif", "webm", "mov", "png")
#: Formats that keep an alpha channel (``--transparent``).
ALPHA_FORMATS: tuple[str, ...] = ("webm", "mov", "png")
#: Pixel sizes per quality for each aspect ratio (``None``: Manim's own, 16:9).
#: At 4:3 Manim keeps the frame width and adds room above and below.
ASPECTS: dict[str, dict[str, tuple[int, int]] | None] = {
    "16:9": None,
    "4:3": {
        "low": (640, 480),
        "medium": (960, 720),
        "high": (1440, 1080),
        "4k": (2880, 2160),
    },
}
#: GIFs: frames per second, the qualities allowed, and the size budget: every scene
#: of the talk at 480p (``--quality low``), default settings, at most 8 MiB, for a
#: README or a post. Made by :func:`flashanim.gif.make_gif` from a lossless capture
#: of Manim's frames; a GIF over budget is kept, with a warning.
GIF_FPS = 10
GIF_QUALITIES: tuple[str, ...] = ("low", "medium")
GIF_BUDGET_BYTES = 8 * 1024 * 1024

_SHAPE_FLAGS = {
    "seq_len": "--seq-len",
    "head_dim": "--head-dim",
    "block_m": "--block-m",
    "block_n": "--block-n",
    "causal": "--causal",
}
_SHAPE_NAMES = (*_SHAPE_FLAGS, "seed")


#: The manifest written beside each scene's video.
MANIFEST = "render.json"
_STAGING = ".flashanim-render-"


class RenderError(ValueError):
    """A request that cannot be rendered (exit code 2, one line)."""


class SceneFailed(RuntimeError):
    """A scene's render failed; the message is the scene's own one-line error."""


class RenderInterrupted(KeyboardInterrupt):
    """Interrupted (Ctrl-C, SIGTERM, SIGHUP); ``kept`` lists the scenes whose new
    files were committed before the interruption."""

    def __init__(self, kept: list[str]) -> None:
        super().__init__()
        self.kept = kept


@dataclass(frozen=True)
class RenderRequest:
    """What to render and how. ``None`` scene parameters keep the scene defaults."""

    scenes: tuple[TalkScene, ...]
    out: Path = Path("media/flashanim")
    quality: str = "low"
    fmt: str = "mp4"
    transparent: bool = False
    aspect: str = "16:9"
    seq_len: int | None = None
    head_dim: int | None = None
    block_m: int | None = None
    block_n: int | None = None
    causal: bool | None = None
    theme: str | None = None
    seed: int | None = None
    trace: str | None = None
    resolution: tuple[int, int] | None = None  # overrides quality/aspect sizes
    fps: float | None = None
    sections: bool = True
    captions: bool = True
    posters: bool = True
    slides: bool = False
    jobs: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None
    row: int | None = None
    io_ns: tuple[int, ...] | None = None
    bench: str | None = None
    schedule_noncausal: str | None = None
    schedule_causal: str | None = None
    decode_nosplit: str | None = None
    decode_split: str | None = None
    #: The scenes were chosen with ``--all``.
    all_scenes: bool = False


@dataclass(frozen=True)
class SceneOutput:
    """One rendered scene: the files it wrote (final paths) and its log."""

    scene: TalkScene
    files: tuple[Path, ...]
    log: Path
    seconds: float
    slides_json: Path | None = None
    verdicts: tuple[dict, ...] = ()

    @property
    def failed_checks(self) -> list[dict]:
        """The closing checks whose verdict is a mismatch."""
        return [v for v in self.verdicts if not v.get("ok")]


def find_scenes(names: Sequence[str], all_: bool = False) -> tuple[TalkScene, ...]:
    """Scenes by name: the deep dive's (:data:`~flashanim.talk.TALK`) and the talk
    cut's clips (:data:`~flashanim.cut.CUT`); ``all_``: the whole deep dive, in
    order. Unknown names raise :class:`RenderError` listing the known ones."""
    from flashanim.cut import CUT

    every = (*TALK, *(c.scene for c in CUT))
    known = [s.name for s in every]
    if all_ and names:
        raise RenderError("give scene names or --all, not both")
    if all_:
        return TALK
    if not names:
        raise RenderError(
            f"name at least one scene or --all; scenes: {', '.join(known)}"
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RenderError(
            f"unknown scene(s): {', '.join(unknown)}; known: {', '.join(known)}"
        )
    by = {s.name: s for s in every}
    return tuple(by[n] for n in dict.fromkeys(names))


def _env_text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def scene_env(req: RenderRequest) -> dict[str, str]:
    """The ``FLASHANIM_*`` variables of the scenes, from :data:`PARAMS`: every
    scene parameter that has a default is set explicitly (the request's value or
    the default), so the environment of the caller cannot change the result;
    parameters without a default (the scenes choose) are set only when given.
    With a saved trace the sizes, mask and seed come from the trace."""
    env: dict[str, str] = {}
    for p in PARAMS:
        if p.machine or (req.trace is not None and p.name in _SHAPE_NAMES):
            continue
        value = getattr(req, p.name, None)
        if p.name == "causal":
            value = bool(value)
        if value is None:
            value = p.default
        if value is None:
            continue
        if p.kind in ("file", "path"):  # the child renders from the repository
            value = Path(value).resolve()
        env[p.env] = _env_text(value)
    return env


def _child_env(req: RenderRequest, env: dict[str, str]) -> dict[str, str]:
    """The render child's environment: the caller's without any ``FLASHANIM_*``
    variable except the machine ones (device, trace cache, encoder preset), plus
    exactly :func:`scene_env`'s."""
    machine = {p.env for p in PARAMS if p.machine}
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLASHANIM_") or k in machine
    }
    out.update(env)
    out.update(req.extra_env)
    return out


def _given(req: RenderRequest) -> list:
    """The scene parameters the request sets (``--causal`` only when on)."""
    return [
        p
        for p in PARAMS
        if not p.machine
        and getattr(req, p.name, None) not in (None, False)
        and p.scenes is not None
    ]


def unread_flags(req: RenderRequest) -> list[str]:
    """One line per given flag that some of the scenes do not read."""
    lines = []
    for p in _given(req):
        skip = [s.name for s in req.scenes if s.name not in p.scenes]
        if skip:
            lines.append(
                f"{', '.join(skip)} {'does' if len(skip) == 1 else 'do'} not read "
                f"{p.flag} (read by: {', '.join(p.scenes)})"
            )
    return lines


def check_request(req: RenderRequest) -> SceneConfig:
    """Refuse bad combinations (:class:`RenderError`, one line) before rendering;
    return the validated scene configuration."""
    if req.quality not in QUALITIES:
        raise RenderError(
            f"unknown quality {req.quality!r}; choose {', '.join(QUALITIES)}"
        )
    if req.fmt not in FORMATS:
        raise RenderError(f"unknown format {req.fmt!r}; choose {', '.join(FORMATS)}")
    if req.aspect not in ASPECTS:
        raise RenderError(f"unknown aspect {req.aspect!r}; choose {', '.join(ASPECTS)}")
    if req.trace is not None:
        given = [
            flag
            for name, flag in _SHAPE_FLAGS.items()
            if getattr(req, name) not in (None, False)
        ]
        if given:
            raise RenderError(
                f"--trace sets the shapes and the mask; drop {', '.join(given)} "
                f"(or drop --trace to record a new trace)"
            )
    if req.transparent and req.fmt not in ALPHA_FORMATS:
        raise RenderError(
            f"--transparent needs an alpha channel, which {req.fmt} has not; "
            f"use --format {' or '.join(ALPHA_FORMATS)}"
        )
    if req.fmt == "gif" and req.quality not in GIF_QUALITIES:
        raise RenderError(
            f"a GIF at {req.quality} quality would be far over the "
            f"{GIF_BUDGET_BYTES >> 20} MB budget; use --quality "
            f"{' or '.join(GIF_QUALITIES)}, or mp4/webm for {req.quality}"
        )
    if req.fps is not None and not 0 < req.fps <= 240:
        raise RenderError(f"--fps must be above 0 and at most 240, got {req.fps:g}")
    if req.fmt == "gif" and req.fps is not None and req.fps > 50:
        raise RenderError(
            f"--fps {req.fps:g} is too fast for a GIF (browsers slow down frames "
            f"shorter than 1/50 s); use --fps 50 or less (default {GIF_FPS})"
        )
    if req.slides and req.fmt != "mp4":
        raise RenderError("slides are built from mp4 clips; drop --format")
    if req.jobs < 1:
        raise RenderError(f"--jobs must be at least 1, got {req.jobs}")
    for p in _given(req):  # a flag no requested scene reads is a mistake
        if not any(s.name in p.scenes for s in req.scenes):
            names = ", ".join(s.name for s in req.scenes)
            raise RenderError(
                f"{names} {'does' if len(req.scenes) == 1 else 'do'} not read "
                f"{p.flag} (read by: {', '.join(p.scenes)}); drop the flag"
            )
    try:
        machine = {p.env: os.environ[p.env] for p in PARAMS
                   if p.machine and p.env in os.environ}  # fmt: skip
        # every parameter checked once, by the table (a saved trace is loaded)
        return SceneConfig.from_env({**scene_env(req), **machine})
    except ConfigError as exc:
        raise RenderError(exc.cli) from None
    except TraceFormatError as exc:
        raise RenderError(str(exc)) from None


def pixel_size(req: RenderRequest) -> tuple[int, int] | None:
    """Explicit pixel size for the request, or ``None`` for Manim's quality default."""
    if req.resolution is not None:
        return req.resolution
    sizes = ASPECTS[req.aspect]
    return None if sizes is None else sizes[req.quality]


def _fps(req: RenderRequest) -> float | None:
    """Frames per second asked for (GIFs: :data:`GIF_FPS`), or ``None``."""
    return req.fps if req.fps is not None else (GIF_FPS if req.fmt == "gif" else None)


def manim_args(req: RenderRequest, media_dir: Path | None = None) -> list[str]:
    """The ``manim render`` flags for ``req`` (without the file and scene name)."""
    args = [
        QUALITIES[req.quality][0],
        "--format",
        "mp4" if req.fmt == "gif" else req.fmt,  # GIFs: see flashanim.gif
        "--disable_caching",
        "--progress_bar",
        "none",
    ]
    size = pixel_size(req)
    if size is not None:
        args += ["-r", f"{size[0]},{size[1]}"]
    fps = _fps(req)
    if fps is not None:
        args += ["--fps", f"{fps:g}"]
    if req.transparent:
        args.append("-t")
    if req.sections and req.fmt != "png":
        args.append("--save_sections")
    if media_dir is not None:
        args += ["--media_dir", str(media_dir)]
    return args


# ------------------------------------------------------------------------ rendering

_WRAPPER = """\
from flashanim._scene_hooks import wrap_scene
from flashanim.render import report_errors
{cls} = report_errors(wrap_scene({path!r}, {cls!r}, __name__, slides={slides!r}))
"""
_CAPTURE = """\
from flashanim.gif import capture_frames
capture_frames({capture!r})
"""


def report_errors(cls: type) -> type:
    """``cls`` whose ``render`` writes any error as one JSON line to
    ``$FLASHANIM_RENDER_ERROR`` (unless the scene already reported it there, see
    :func:`flashanim.config.fail`) before Manim prints its traceback to the log.
    Used in the render child, by the generated module."""

    def render(self, *args, **kwargs):
        try:
            return cls.render(self, *args, **kwargs)
        except Exception as exc:
            path = os.environ.get(ERROR_ENV)
            if path and not Path(path).exists():
                msg = " ".join(str(exc).split()) or "(no message)"
                doc = {"scene": cls.__name__, "kind": type(exc).__name__,
                       "message": f"{type(exc).__name__}: {msg}"}  # fmt: skip
                Path(path).write_text(json.dumps(doc), encoding="utf-8")
            raise

    ns = {"render": render, "__module__": cls.__module__,
          "__qualname__": cls.__qualname__}  # fmt: skip
    return type(cls.__name__, (cls,), ns)


def _scene_error(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return str(doc["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "section"


def decode_frames(video: Path, alpha: bool = False) -> Iterator[np.ndarray]:
    """The frames of ``video`` as ``uint8`` arrays, RGB, or RGBA with ``alpha``.

    VP9 keeps its alpha plane beside the colour planes (WebM BlockAdditional), and
    only libvpx's decoder reads it: with ``alpha``, WebM is decoded by libvpx.
    """
    import av

    fmt = "rgba" if alpha else "rgb24"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        if alpha and stream.codec_context.name == "vp9":
            codec = av.CodecContext.create("libvpx-vp9", "r")
            for packet in container.demux(stream):  # ends with a flush packet
                for frame in codec.decode(packet):
                    yield frame.to_ndarray(format=fmt)
            return
        for frame in container.decode(stream):
            yield frame.to_ndarray(format=fmt)


def last_frame(video: Path, png: Path, alpha: bool = False) -> Path:
    """Save the last frame of ``video`` as ``png`` (RGBA with ``alpha``)."""
    from PIL import Image

    frame = None
    for frame in decode_frames(video, alpha):  # noqa: B007
        pass
    if frame is None:
        raise RuntimeError(f"{video} has no frames")
    Image.fromarray(frame).save(png)
    return png


class _Run:
    """Child processes of one :func:`render` call, to stop them on interrupt."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.stopped = False

    def kill_all(self) -> None:
        with self.lock:
            self.stopped = True
            for p in self.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _render_scene(
    scene: TalkScene,
    req: RenderRequest,
    root: Path,
    staging: Path,
    env: dict[str, str],
    run: _Run,
    say: Callable[[str], None],
    logs: Path,
) -> tuple[dict[Path, Path], Path, float, Path | None, tuple[dict, ...]]:
    """Render one scene into ``staging``; map final relative paths to staged
    files; also the log, the seconds, the slides file and the verdicts."""
    work = staging / scene.name
    media = work / "media"
    work.mkdir(parents=True)
    module = f"flashanim_{scene.name}"
    wrapper = work / f"{module}.py"
    text = _WRAPPER.format(
        cls=scene.cls, path=str(root / scene.path), slides=req.slides
    )
    capture = work / "frames.mkv"  # lossless frames for the GIF
    if req.fmt == "gif":
        text += _CAPTURE.format(capture=str(capture))
    wrapper.write_text(text)
    record = work / "record.json"
    error = work / "error.json"
    verdict = work / "verdicts.json"
    slides_dir = staging / "slides"
    child_env = _child_env(req, env)
    child_env["FLASHANIM_RENDER_RECORD"] = str(record)
    child_env["FLASHANIM_SLIDES_DIR"] = str(slides_dir)
    child_env[ERROR_ENV] = str(error)
    child_env[VERDICT_ENV] = str(verdict)
    cmd = [
        sys.executable,
        "-m",
        "manim",
        "render",
        *manim_args(req, media),
        str(wrapper),
        scene.cls,
    ]
    log = logs / f"{scene.name}.log"
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        with run.lock:
            if run.stopped:
                raise KeyboardInterrupt
            proc = subprocess.Popen(
                cmd,
                cwd=root,
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
            run.procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
        rc = proc.wait()
    seconds = time.perf_counter() - t0
    if rc != 0:
        if run.stopped:
            raise KeyboardInterrupt
        msg = _scene_error(error)
        if msg is None:
            msg = f"manim render failed (exit {rc})"
        raise SceneFailed(f"{scene.name}: {msg} (log: {log})")

    files: dict[Path, Path] = {}
    final = work / "final"
    final.mkdir()
    rel = Path(scene.name)
    ext = "mp4" if req.fmt == "gif" else req.fmt
    if req.fmt == "png":
        frames = sorted((media / "images").rglob(f"{scene.cls}*.png"))
        if not frames:
            raise RuntimeError(f"{scene.name}: Manim wrote no frames; log: {log}")
        for k, f in enumerate(frames):
            files[rel / "frames" / f"{scene.cls}_{k:05d}.png"] = f
        if req.posters:  # a copy: the last frame is also under frames/
            poster = final / f"{scene.cls}.png"
            files[rel / poster.name] = Path(shutil.copyfile(frames[-1], poster))
    else:
        movies = [
            p
            for p in (media / "videos").rglob(f"{scene.cls}*.{ext}")
            if "sections" not in p.parts
        ]
        if len(movies) != 1:
            raise RuntimeError(
                f"{scene.name}: expected one {ext} file, found "
                f"{len(movies)}; log: {log}"
            )
        movie = movies[0]
        if req.fmt == "gif":
            files[rel / f"{scene.cls}.gif"] = _gif(scene, capture, final, say, log)
        else:
            files[rel / f"{scene.cls}.{ext}"] = movie
        alpha = req.transparent
        index = sorted(movie.parent.glob(f"sections/{scene.cls}.json"))
        sections = json.loads(index[0].read_text()) if index else []
        last_clip = None
        for k, s in enumerate(sections, 1):
            clip = movie.parent / "sections" / s["video"]
            stem = f"{k:02d}_{_slug(s['name'])}"
            files[rel / "sections" / f"{stem}{clip.suffix}"] = clip
            if req.posters:
                png = final / f"{stem}.png"
                files[rel / "sections" / png.name] = last_frame(clip, png, alpha)
            last_clip = clip
        if req.posters:
            png = final / f"{scene.cls}.png"
            files[rel / png.name] = last_frame(last_clip or movie, png, alpha)
    if req.captions and record.exists():
        files.update(write_captions(record, final, rel, scene.cls, say))
    slides_json = slides_dir / f"{scene.cls}.json"
    verdicts = tuple(read_verdicts(verdict))
    return (
        files,
        log,
        seconds,
        slides_json if slides_json.exists() else None,
        verdicts,
    )


def write_captions(
    record: Path, final: Path, rel: Path, cls: str, say: Callable[[str], None]
) -> dict[Path, Path]:
    """Captions (``.srt``, ``.vtt``) from a render record, and the record itself;
    no caption files when the scene recorded no cues (never empty files)."""
    from flashanim.captions import cues_from_record, load_record, write_srt, write_vtt

    files: dict[Path, Path] = {}
    cues = cues_from_record(load_record(record))
    if cues:
        srt, vtt = final / f"{cls}.srt", final / f"{cls}.vtt"
        files[rel / srt.name] = write_srt(cues, srt)
        files[rel / vtt.name] = write_vtt(cues, vtt)
    else:
        say(f"  {rel}: no captions (the scene recorded no caption cues)")
    files[rel / f"{cls}.record.json"] = record
    return files


def _gif(
    scene: TalkScene, capture: Path, final: Path, say: Callable[[str], None], log: Path
) -> Path:
    """Convert the lossless capture of ``scene`` into ``final/<Scene>.gif``."""
    from flashanim.gif import make_gif

    if not capture.is_file():
        raise RuntimeError(
            f"{scene.name}: no frames were captured for the GIF; log: {log}"
        )
    say(f"  {scene.name}: writing the GIF")
    gif = final / f"{scene.cls}.gif"
    stats = make_gif(capture, gif)
    mb = stats.nbytes / 2**20
    say(
        f"  {scene.name}: GIF {mb:.1f} MB, {stats.kept} of {stats.frames} frames "
        f"kept at {stats.fps:g} frames/s"
    )
    if stats.nbytes > GIF_BUDGET_BYTES:
        say(
            f"  warning: {scene.name} GIF is {mb:.1f} MB, over the "
            f"{GIF_BUDGET_BYTES >> 20} MB budget: lower --fps, --quality or "
            f"--resolution, or use mp4/webm"
        )
    return gif


def _manifest(
    req: RenderRequest,
    scene: TalkScene,
    env: dict[str, str],
    files: list[str],
    verdicts: tuple[dict, ...],
) -> dict:
    """What ``render.json`` says: the settings the scene got, the closing checks'
    verdicts and the files (no times: the same parameters give the same bytes)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("flashanim")
    except PackageNotFoundError:  # pragma: no cover
        ver = "unknown"
    size = pixel_size(req)
    names = {p.env: p.name for p in PARAMS}
    reads = [p.env for p in PARAMS if p.scenes is None or scene.name in p.scenes]
    return {
        "scene": scene.name,
        "class": scene.cls,
        "flashanim": ver,
        "settings": {
            names[k]: _typed(names[k], v) for k, v in env.items() if k in reads
        },
        "output": {
            "quality": req.quality,
            "format": req.fmt,
            "size": list(size) if size else QUALITIES[req.quality][1],
            "fps": _fps(req),
            "aspect": req.aspect,
            "transparent": req.transparent,
            "sections": req.sections,
            "captions": req.captions,
            "posters": req.posters,
        },
        "verdicts": list(verdicts),
        "files": sorted(files),
    }


def _typed(name: str, text: str):
    from flashanim.config import PARAM

    value = PARAM[name].parse(text)
    return list(value) if isinstance(value, tuple) else value


def _commit(
    files: dict[Path, Path], out: Path, scene: TalkScene, work: Path, manifest: dict
) -> list[Path]:
    """Build the scene's complete new folder in ``work`` and swap it for
    ``out/<scene>``: afterwards the folder holds exactly the new files and
    ``render.json``, nothing of an earlier render."""
    tree = work / "tree"
    for rel, src in files.items():
        dest = tree / Path(rel).relative_to(scene.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    tree.mkdir(parents=True, exist_ok=True)
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    target = out / scene.name
    old = work / "old"
    if target.exists():
        os.replace(target, old)
    os.replace(tree, target)
    shutil.rmtree(old, ignore_errors=True)
    return [out / r for r in files] + [target / MANIFEST]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(out: Path, say: Callable[[str], None]) -> list[Path]:
    """Remove staging folders in ``out`` left by renders that were killed (their
    process is gone); return them."""
    removed = []
    for d in sorted(out.glob(f"{_STAGING}*")):
        m = re.match(rf"{re.escape(_STAGING)}(\d+)-", d.name)
        if m and _alive(int(m.group(1))):
            continue  # another render into the same folder, still running
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
        say(f"removed {d.name} ({size / 2**20:.1f} MB), left by an interrupted render")
    return removed


def render(
    req: RenderRequest,
    root: Path | None = None,
    say: Callable[[str], None] | None = None,
    after: Callable[[Path, list[SceneOutput]], list[Path]] | None = None,
) -> list[SceneOutput]:
    """Render every scene of ``req`` (``req.jobs`` at once) and swap each finished
    scene folder into ``req.out``; print progress with ``say`` (one line per
    scene started and finished, with its share of the whole and the time left).

    ``after(staging, outputs)`` runs once every scene succeeded, before the
    staging folder is removed (the slide deck is built there); it returns the
    extra files it moved into ``req.out``.

    Raises :class:`RenderError` for a bad request (before rendering),
    :class:`SceneFailed` when a scene fails (its own one-line error),
    :class:`RenderInterrupted` on Ctrl-C, SIGTERM or SIGHUP (every child is
    stopped; ``kept`` names the scenes already committed). In every case the
    staging folder is removed and the other scenes' files in ``req.out`` are as
    they were.
    """
    check_request(req)
    say = say or (lambda s: print(s, flush=True))
    root = Path(root or Path.cwd()).resolve()
    for s in req.scenes:
        if not (root / s.path).is_file():
            raise RenderError(f"scene file {s.path} not found under {root}")
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out, say)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    env = scene_env(req)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=out))
    run = _Run()
    outputs: dict[str, SceneOutput] = {}
    total = len(req.scenes)
    size = pixel_size(req)
    what = f"{size[0]}x{size[1]}" if size else QUALITIES[req.quality][1]
    if _fps(req) is not None:
        what = f"{what.split('p')[0]}p" if not size else what
        what += f" at {_fps(req):g} frames/s"
    say(f"rendering {total} scene(s) at {what} as {req.fmt} into {out}")
    for line in unread_flags(req):
        say(f"  note: {line}; it renders with its own data")
    custom = req.resolution is not None or req.fps is not None or req.fmt == "gif"
    progress = Progress(req.scenes, "custom" if custom else req.quality, say,
                        jobs=req.jobs)  # fmt: skip
    lock = threading.Lock()

    def one(scene: TalkScene) -> SceneOutput:
        progress.start(scene)
        files, log, secs, sj, verdicts = _render_scene(
            scene, req, root, staging, env, run, say, logs
        )
        rels = [str(Path(r).relative_to(scene.name)) for r in files]
        manifest = _manifest(req, scene, env, rels + [MANIFEST], verdicts)
        with lock:  # one swap at a time; never during an interrupt's clean-up
            if run.stopped:
                raise KeyboardInterrupt
            done = _commit(files, out, scene, staging / scene.name, manifest)
            o = SceneOutput(scene, tuple(done), log, secs, sj, verdicts)
            outputs[scene.name] = o
        progress.done(scene, f"done in {secs:.1f} s")
        for p in done:
            if p.suffix != ".json" or p.name == MANIFEST:
                say(f"    {p}")
        for v in o.failed_checks:
            say(f"  {scene.name}: closing check FAILED: {v['headline']}")
        return o

    prev = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum, frame):
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            prev[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
    try:
        with ThreadPoolExecutor(max_workers=min(req.jobs, total)) as pool:
            futures = [pool.submit(one, s) for s in req.scenes]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                with lock:
                    run.kill_all()
                for f in futures:
                    f.cancel()
                raise
        result = [outputs[s.name] for s in req.scenes]
        if after is not None:
            after(staging, result)
        return result
    except KeyboardInterrupt:
        raise RenderInterrupted(list(outputs)) from None
    finally:
        run.kill_all()
        shutil.rmtree(staging, ignore_errors=True)
        for sig, handler in prev.items():
            signal.signal(sig, handler)
