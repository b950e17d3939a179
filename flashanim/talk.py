"""The whole talk: the scenes in the order they are shown, rendered in parallel.

:data:`TALK` is the one ordered list of the explainer's scenes; ``make video`` and
``make preview`` follow it. Each scene renders in its own ``manim render`` process
(one scene per core), from the repository root so that Manim reads ``manim.cfg``,
forked from one server that imported Manim once (:mod:`flashanim.forkserver`);
the finished clips are then joined, without re-encoding, into one MP4 of the whole
talk under ``media/talk/``. With ``--with-cut`` the talk cut's clips
(:mod:`flashanim.cut`) render in the same jobs, longest first across both, and
the cut is joined too (``make video``, ``make preview``).

Run as ``python -m flashanim.talk [--quality low|medium|high|4k] [--jobs N]
[--only NAME ...] [--bench] [--with-cut]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "TALK",
    "QUALITIES",
    "TalkScene",
    "RenderResult",
    "Progress",
    "render_scenes",
    "join_videos",
    "main",
]


@dataclass(frozen=True)
class TalkScene:
    """One scene of the talk: its file under ``scenes/`` and its class."""

    name: str
    cls: str
    title: str
    #: Relative render cost (CPU seconds at 480p15 on a 2-core machine, traces
    #: recorded, measured 2026-12-02); only used to start the longest renders
    #: first.
    cost: float = 1.0
    #: CPU seconds at 1080p60 (``high``; ``make bench-render QUALITY=high``, end of
    #: session 7, 2026-12-02, on a machine ~1.6x slower than the one :attr:`cost`
    #: was measured on: only the order matters), where the cost follows the
    #: video's length more than its number of plays (a talk clip costs ~10x its
    #: 480p figure, a deep-dive scene ~5x); ``None``: :data:`QUALITY_FACTOR` times
    #: :attr:`cost`.
    cost_high: float | None = None

    def cost_at(self, quality: str) -> float:
        """Estimated render cost at ``quality``, in CPU seconds (``low``, ``high``;
        other qualities: :attr:`cost`, used only for the order of the renders)."""
        if quality == "high":
            if self.cost_high is not None:
                return self.cost_high
            return self.cost * QUALITY_FACTOR["high"]
        return self.cost

    @property
    def path(self) -> Path:
        return Path("scenes") / f"{self.name}.py"


#: The talk, in the order it is given. One place: everything else follows it.
TALK: tuple[TalkScene, ...] = (
    TalkScene("memory_hierarchy", "MemoryHierarchyScene", "The memory hierarchy", 9, 156),
    TalkScene("standard_attention", "StandardAttentionScene",
              "Standard attention: the N² round trips", 27, 240),
    TalkScene("tiling", "TilingScene", "Tiling: the FlashAttention-2 forward pass", 31, 226),
    TalkScene("online_softmax", "OnlineSoftmaxScene",
              "Online softmax, one row, real numbers", 17, 158),
    TalkScene("loop_order", "LoopOrderScene", "Loop order: FlashAttention-1 vs 2", 47, 293),
    TalkScene("causal", "CausalScene", "Causal masking: skipped and masked blocks", 15, 133),
    TalkScene("backward", "BackwardScene",
              "The backward pass: recompute, never store", 46, 374),
    TalkScene("gpu_schedule", "GpuScheduleScene", "Programs over SMs over time", 16, 141),
    TalkScene("decoding", "DecodingScene", "Decoding: split the K/V cache", 14, 114),
    TalkScene("io_complexity", "IOComplexityScene", "IO complexity, measured", 37, 96),
)  # fmt: skip

#: Quality name -> (Manim flag, the folder Manim writes into).
QUALITIES: dict[str, tuple[str, str]] = {
    "low": ("-ql", "480p15"),
    "medium": ("-qm", "720p30"),
    "high": ("-qh", "1080p60"),
    "4k": ("-qk", "2160p60"),
}


#: Render time relative to 480p15 (``low``), measured on the whole talk on a
#: 2-core machine, 2026-12-02 (``make preview`` 104 s, ``make video`` 434-450 s);
#: medium and 4k were not measured: their time left is known after a first scene.
#: Used for a scene without its own :attr:`TalkScene.cost_high`.
QUALITY_FACTOR: dict[str, float] = {"low": 1.0, "high": 4.2}


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Progress:
    """One line per scene started and finished: its share of the whole work (from
    :attr:`TalkScene.cost`, CPU seconds measured at 480p15) and the time left.

    The time left is the remaining cost at the pace measured so far (wall
    seconds per unit of finished cost); before a scene has finished it is the
    measured cost times :data:`QUALITY_FACTOR` (``low`` and ``high`` only) spread
    over the jobs.
    """

    def __init__(self, scenes, quality: str, say=print, jobs: int = 1,
                 cores: int | None = None) -> None:  # fmt: skip
        self.scenes = list(scenes)
        self.quality = quality
        self.total = sum(s.cost_at(quality) for s in self.scenes) or 1.0
        self.say = say
        self.parallel = max(1, min(jobs, cores or os.cpu_count() or 1, len(scenes)))
        self.factor = QUALITY_FACTOR.get(quality)
        self.t0 = time.perf_counter()
        self.finished: list[TalkScene] = []
        self.lock = threading.Lock()
        first = self.first_estimate()
        if first is not None:
            say(f"  estimated {_duration(first)} from the measured render costs "
                f"(updated as scenes finish)")  # fmt: skip

    def share(self, scene: TalkScene) -> float:
        return scene.cost_at(self.quality) / self.total

    def first_estimate(self) -> float | None:
        if self.factor is None:
            return None
        return self.total / self.parallel

    def left(self) -> float | None:
        done = sum(s.cost_at(self.quality) for s in self.finished)
        if done <= 0:
            first = self.first_estimate()
            if first is None:
                return None
            return max(0.0, first - (time.perf_counter() - self.t0))
        pace = (time.perf_counter() - self.t0) / done
        return (self.total - done) * pace

    def start(self, scene: TalkScene) -> None:
        self.say(f"  {scene.name}: started ({self.share(scene):.0%} of the work)")

    def done(self, scene: TalkScene, status: str = "done") -> str:
        with self.lock:
            self.finished.append(scene)
            n = len(self.finished)
            frac = sum(s.cost_at(self.quality) for s in self.finished) / self.total
            left = self.left()
        when = "time left unknown" if left is None else f"about {_duration(left)} left"
        if n == len(self.scenes):
            when = f"all done in {_duration(time.perf_counter() - self.t0)}"
        line = (f"[{n}/{len(self.scenes)}] {scene.name} {status} "
                f"({self.share(scene):.0%} of the work; {frac:.0%} done, {when})")  # fmt: skip
        self.say(line)
        return line


@dataclass(frozen=True)
class RenderResult:
    scene: TalkScene
    ok: bool
    seconds: float
    video: Path | None
    log: Path
    video_seconds: float = 0.0
    #: CPU seconds the render used (user + system, all its threads).
    cpu_seconds: float = 0.0


def video_duration(path: Path) -> float:
    """Duration of a video file in seconds (read with PyAV, which Manim ships)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6


class _Server:
    """The render server of one :func:`render_scenes` call, started by the first
    render that asks for it (:class:`~flashanim.forkserver.Forker`)."""

    def __init__(self, root: Path, on: bool) -> None:
        self.root, self.on = root, on
        self.forker = None
        self.lock = threading.Lock()

    def get(self):
        from .forkserver import Forker

        with self.lock:
            if self.forker is None and self.on and Forker.available():
                self.forker = Forker(self.root)
            return self.forker


def _render_one(
    scene: TalkScene,
    quality: str,
    root: Path,
    extra: list[str],
    server: _Server | None = None,
) -> RenderResult:
    """``manim render`` of one scene: forked from ``server``'s process (Manim
    already imported: :mod:`flashanim.forkserver`) or as a process of its own; its
    exit status and CPU seconds (user + system, all threads)."""
    forker = server.get() if server is not None else None
    flag, folder = QUALITIES[quality]
    logs = root / "media" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{scene.name}.log"
    argv = ["render", flag, *extra, str(scene.path), scene.cls]
    t0 = time.perf_counter()
    try:
        if forker is None:
            raise RuntimeError("no render server")
        returncode, cpu = forker.run(argv, log)
    except RuntimeError:  # (no server, or it ended): a process of its own
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "manim", *argv], cwd=root,
                                    stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
            # os.wait4 gives this child's own CPU time (user + system, all threads)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
    seconds = time.perf_counter() - t0
    video = root / "media" / "videos" / scene.name / folder / f"{scene.cls}.mp4"
    ok = returncode == 0 and video.exists()
    dur = video_duration(video) if ok else 0.0
    return RenderResult(scene, ok, seconds, video if ok else None, log, dur, cpu)


def render_scenes(
    scenes: tuple[TalkScene, ...] | list[TalkScene],
    quality: str = "low",
    jobs: int = 2,
    root: Path | None = None,
    extra: list[str] | None = None,
    fork: bool = True,
) -> list[RenderResult]:
    """Render ``scenes`` with ``jobs`` Manim processes at once; print progress lines.

    With ``fork`` (and :func:`os.fork`; ``FLASHANIM_FORK=0`` turns it off) each
    render is forked from one server that imported Manim once
    (:mod:`flashanim.forkserver`): the same ``manim render``, ~1.5-4 CPU s less
    each; otherwise each is a ``python -m manim`` process of its own.

    The most costly scenes at ``quality`` (:meth:`TalkScene.cost_at`) start
    first, so that no core is left idle at the end with a long render still
    running on the other; the results are returned in talk order. While the
    renders fill every core, x264 runs one thread in each
    (:func:`~flashanim.engine.fastrender.x264_threads`).
    """
    if quality not in QUALITIES:
        raise ValueError(
            f"unknown quality {quality!r}; choose one of {', '.join(QUALITIES)}"
        )
    root = Path(root or Path.cwd())
    for s in scenes:
        if not (root / s.path).exists():
            raise FileNotFoundError(f"scene file {s.path} not found under {root}")
    results: dict[str, RenderResult] = {}
    total = len(scenes)
    say = lambda line: print(line, flush=True)  # noqa: E731
    say(f"rendering {total} scene(s) at {quality} quality with {jobs} job(s)")
    progress = Progress(scenes, quality, say, jobs=jobs)

    # with every core running a render, x264's own frame threads only add work
    # (flashanim.engine.fastrender.x264_threads); the renders inherit this
    from .engine.fastrender import THREADS_ENV

    own_threads = THREADS_ENV not in os.environ and jobs >= (os.cpu_count() or 1)
    if own_threads:
        os.environ[THREADS_ENV] = "1"
    server = _Server(root, fork)

    def one(s: TalkScene) -> RenderResult:
        progress.start(s)
        return _render_one(s, quality, root, list(extra or []), server=server)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {
                pool.submit(one, s): s
                for s in sorted(scenes, key=lambda s: -s.cost_at(quality))
            }
            for fut in as_completed(futures):
                r = fut.result()
                results[r.scene.name] = r
                status = (
                    f"done in {r.seconds:.1f} s -> {r.video.relative_to(root)}"
                    if r.ok
                    else f"FAILED (see {r.log})"
                )
                progress.done(r.scene, status)
    finally:
        if own_threads:
            os.environ.pop(THREADS_ENV, None)
        forker = server.forker
        if forker is not None:
            # the server's own CPU time: its imports, once (its total holds the
            # renders it forked, counted above)
            total = forker.close()
            SERVER_CPU.append(max(0.0, total - sum(r.cpu_seconds
                                                   for r in results.values())))  # fmt: skip
    return [results[s.name] for s in scenes]


#: CPU seconds of each render server (imports once) ended in this process.
SERVER_CPU: list[float] = []


def join_videos(videos: list[Path], out: Path) -> Path:
    """Join MP4 clips of one quality into ``out`` without re-encoding (PyAV remux).

    Written to a temporary file first and moved into place, so a failed join never
    leaves a half-written file where a good one was.
    """
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        with av.open(str(tmp), "w") as dst:
            with av.open(str(videos[0])) as first:
                stream = dst.add_stream_from_template(first.streams.video[0])
            offset = 0
            for path in videos:
                with av.open(str(path)) as src:
                    vin = src.streams.video[0]
                    last = 0
                    for packet in src.demux(vin):
                        if packet.dts is None:
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        last = max(last, packet.pts + (packet.duration or 0))
                        packet.stream = stream
                        dst.mux(packet)
                    offset = last
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def print_bench(
    results: list[RenderResult], wall: float, jobs: int, server_cpu: float = 0.0
) -> None:
    """Per scene: video seconds, wall-clock and CPU seconds, and speed (the render
    server's own CPU seconds, ``server_cpu``: its imports, counted in the total).

    ``x real time`` is video seconds per wall-clock second of that scene's render
    (which shares the machine with the other jobs); ``video s / CPU s`` does not
    depend on what else ran, and times the number of cores it is the most the
    whole talk could reach.
    """
    print(f"\n{'scene':<20} {'video s':>8} {'render s':>9} {'x real time':>12} "
          f"{'CPU s':>7} {'video s / CPU s':>16}")  # fmt: skip
    for r in results:
        speed = r.video_seconds / r.seconds if r.seconds else 0.0
        per_cpu = r.video_seconds / r.cpu_seconds if r.cpu_seconds else 0.0
        print(f"{r.scene.name:<20} {r.video_seconds:8.1f} {r.seconds:9.1f} "
              f"{speed:12.2f} {r.cpu_seconds:7.1f} {per_cpu:16.2f}")  # fmt: skip
    total_video = sum(r.video_seconds for r in results)
    total_cpu = sum(r.cpu_seconds for r in results)
    if server_cpu:
        print(f"{'(render server)':<20} {'':>8} {'':>9} {'':>12} {server_cpu:7.1f}")
        total_cpu += server_cpu
    print(f"{'whole talk':<20} {total_video:8.1f} {wall:9.1f} "
          f"{total_video / wall if wall else 0:12.2f} {total_cpu:7.1f} "
          f"{total_video / total_cpu if total_cpu else 0:16.2f}  "
          f"({jobs} jobs, {os.cpu_count()} cores)")  # fmt: skip


def render_parser(prog: str, description: str, quality: str,
                  unit: str) -> argparse.ArgumentParser:  # fmt: skip
    """The command line of ``python -m flashanim.talk`` and ``python -m
    flashanim.cut``: quality, jobs, ``--only``, ``--bench``, ``--no-join``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quality", default=quality, choices=list(QUALITIES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help=f"render only these {unit}s (no join)")  # fmt: skip
    parser.add_argument("--bench", action="store_true",
                        help=f"print render speed (video seconds per wall-clock "
                        f"second) per {unit}")  # fmt: skip
    parser.add_argument("--no-join", action="store_true", help="skip the joined MP4")
    return parser


def render_selected(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    scenes: Sequence[TalkScene], unit: str, whole: str,
                    ) -> tuple[list[RenderResult], float, int]:  # fmt: skip
    """Render ``scenes`` (or those ``--only`` names; an unknown name is the
    parser's error), print the bench table with ``--bench`` and each failure with
    its log; return the results, the wall-clock seconds and the exit code (1 when
    a render failed)."""
    names = [s.name for s in scenes]
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown {unit}(s) {', '.join(unknown)}; {whole} has: "
                         f"{', '.join(names)}")  # fmt: skip
        scenes = [s for s in scenes if s.name in args.only]
    t0 = time.perf_counter()
    before = len(SERVER_CPU)
    results = render_scenes(list(scenes), args.quality, args.jobs)
    wall = time.perf_counter() - t0
    if args.bench:
        print_bench(results, wall, args.jobs, sum(SERVER_CPU[before:]))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"flashanim: error: {r.scene.name} failed; log: {r.log}",
              file=sys.stderr)  # fmt: skip
    return results, wall, 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = render_parser("python -m flashanim.talk",
                           "Render the whole talk in order.", "low", "scene")  # fmt: skip
    parser.add_argument(
        "--with-cut",
        action="store_true",
        help="also render the talk cut's clips (flashanim.cut) in the same jobs, "
        "longest first across both, and join both cuts (make video, make preview)",
    )
    args = parser.parse_args(argv)
    scenes = list(TALK)
    notes = None
    if args.with_cut:
        from .cut import CUT

        scenes += [c.scene for c in CUT]
        if not (args.no_join or args.only):
            # the speaker notes' numbers (a trace and the GPU schedule: ~5 CPU s)
            # read while the scenes render, not after them
            notes = threading.Thread(target=_prefetch_facts, daemon=True)
            notes.start()
    results, wall, code = render_selected(parser, args, scenes, "scene",
                                          "the talk")  # fmt: skip
    if notes is not None:
        notes.join()
    if code:
        return code
    if args.no_join or args.only:
        return 0
    t0 = time.perf_counter()
    cpu0 = _self_cpu()
    deep = [r for r in results if r.scene in TALK]
    if len(deep) > 1:
        out = (
            Path("media") / "talk" / f"flashanim_talk_{QUALITIES[args.quality][1]}.mp4"
        )
        join_videos([r.video for r in deep if r.video], out)
        print(f"whole talk -> {out}")
    if args.with_cut:
        from .cut import finish

        finish([r for r in results if r.scene not in TALK], args.quality, wall)
    if args.bench:
        joins = time.perf_counter() - t0
        video = sum(r.video_seconds for r in results)
        print(f"joins and speaker notes: {joins:.1f} s, {_self_cpu() - cpu0:.1f} "
              f"CPU s; renders and joins: {video:.1f} s of video in "
              f"{wall + joins:.1f} s ({video / (wall + joins):.2f}x real time)")  # fmt: skip
    return 0


def _prefetch_facts() -> None:
    """Compute the cut's :func:`~flashanim.cut.facts` (cached) ahead of its join; a
    failure is left for the join to report."""
    from .cut import facts

    try:
        facts()
    except Exception:  # noqa: BLE001, S110  (raised again, and reported, by finish)
        pass


def _self_cpu() -> float:
    """CPU seconds of this process so far (user + system, all its threads)."""
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


if __name__ == "__main__":
    sys.exit(main())
