"""The talk cut: six clips, one idea each, joined with cross-fades.

:data:`CUT` is the one ordered list of the talk cut: each clip's scene file and
class, its title, its one-idea line and its speaker notes. The scenes read their
title and idea from here; ``make talk`` (``python -m flashanim.cut``) renders the
clips in parallel (with :func:`flashanim.talk.render_scenes`, one Manim process per
core), joins them into ``media/talk/flashanim_talk_cut_<quality>.mp4`` with a
cross-fade between clips (:func:`join_with_crossfades`), and writes the speaker
notes beside it (``..._notes.txt``).

Ideas and notes may hold ``{fields}``: they are formatted from the same data as
the clips (:func:`facts`), so a number a speaker reads out is the number on screen.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .talk import QUALITIES, RenderResult, TalkScene, render_scenes, video_duration

__all__ = [
    "CUT",
    "Clip",
    "FADE_SECONDS",
    "clip",
    "facts",
    "speaker_notes",
    "join_with_crossfades",
    "main",
]

#: Length of each cross-fade between two clips.
FADE_SECONDS = 0.5


@dataclass(frozen=True)
class Clip:
    """One clip of the talk cut."""

    name: str  # scenes/<name>.py
    cls: str
    title: str
    idea: str  # the one idea, as the title card shows it ({fields}: from facts())
    notes: str  # what a speaker could say ({fields}: from facts())
    #: relative render cost (starts the longest renders first)
    cost: float = 1.0

    @property
    def scene(self) -> TalkScene:
        return TalkScene(self.name, self.cls, self.title, self.cost)


#: The talk cut, in the order it is given.
CUT: tuple[Clip, ...] = (
    Clip(
        "talk_bottleneck", "TalkBottleneck", "Attention is memory-bound",
        "{share:.0%} of its time goes to moving scores, not to arithmetic",
        "Standard attention, timed step by step on an {gpu}: the two matrix "
        "multiplies are the short grey blocks; scale, mask and softmax only read and "
        "write the N by N scores, and take {share:.0%} of the time ({dropout} more "
        "if dropout is on). One fused kernel does the same work in {fused} instead "
        "of {standard}: the scores never leave the chip.",
        3,
    ),
    Clip(
        "talk_whole_row", "TalkWholeRow", "A softmax needs the whole row",
        "Every weight is divided by a sum over all the keys",
        "So why not just cut attention into tiles? One query row, from a recorded "
        "kernel run: each weight is an exponential divided by the sum over the whole "
        "row. A softmax of each block on its own gives weights that sum to "
        "{local_sum:.1f} instead of 1.",
        2,
    ),
    Clip(
        "talk_online_softmax", "TalkOnlineSoftmax", "Online softmax: rescale as you go",
        "Keep a running max and sum; a new max shrinks the past",
        "The fix is to keep two numbers per row, the running max m and the running "
        "sum l. When a new block raises the max, everything so far is multiplied by "
        "alpha, the exponential of the old max minus the new: the bars shrink. At "
        "the end, dividing by l gives exactly the softmax of the whole row (largest "
        "difference {online_err:.0e}).",
        3,
    ),
    Clip(
        "talk_tiling", "TalkTiling", "Tiling: one program, then all of them",
        "One Q block stays on chip while K and V stream past",
        "With the online softmax, one program owns one block of queries: it loads Q "
        "once, streams every K and V block through on-chip memory, and writes O once. "
        "On the GPU all {programs} programs run side by side, up to {lanes} per SM on "
        "the {sms} SMs of an {sched_gpu}, in {waves} waves; this is the recorded "
        "schedule, not a simulation.",
        4,
    ),
    Clip(
        "talk_payoff", "TalkPayoff", "The payoff at a real size",
        "N = {n_k}k, d = {d}: less traffic, no N × N matrix in memory",
        "At sixteen thousand tokens and head dimension {d}, standard attention moves "
        "{traffic_std} through HBM and FlashAttention {traffic_flash}, "
        "{traffic_ratio:.0f} times less; the scores and probabilities alone would take {mem_std}. In "
        "the benchmark the standard version is {time_ratio:.0f} times slower at "
        "{time_n_k}k, the longest it was run.",
        2,
    ),
    Clip(
        "talk_summary", "TalkSummary", "Summary",
        "Fuse the steps, tile the softmax, keep the scores on chip",
        "To sum up: attention is limited by memory, not arithmetic; the online "
        "softmax lets it be tiled exactly; every SM works on blocks of its own; and at "
        "real sizes that is {traffic_ratio:.0f} times less memory traffic.",
        1,
    ),
)  # fmt: skip


def clip(name: str) -> Clip:
    """The clip of :data:`CUT` called ``name``."""
    for c in CUT:
        if c.name == name:
            return c
    raise KeyError(f"no clip {name!r} in the talk cut; it has: "
                   f"{', '.join(c.name for c in CUT)}")  # fmt: skip


@lru_cache(maxsize=1)
def _data_facts() -> dict:
    """Numbers from the benchmark JSONs alone (cheap: the title cards use them)."""
    from . import talkfacts as tf

    b = tf.breakdown()
    p = tf.payoff()
    return {
        "share": b.memory_bound_share,
        "gpu": b.gpu,
        "fused": tf.format_ms(b.fused_ms),
        "standard": tf.format_ms(b.standard_ms),
        "dropout": tf.format_ms(float(b.setting["ms"]["dropout"])),
        "n_k": p.n // 1024,
        "d": p.d,
        "traffic_std": tf.format_bytes(p.traffic_standard),
        "traffic_flash": tf.format_bytes(p.traffic_flash),
        "traffic_ratio": p.traffic_ratio,
        "mem_std": tf.format_bytes(p.memory_standard),
        "time_ratio": p.time_ratio,
        "time_n_k": p.time_n // 1024,
    }


@lru_cache(maxsize=1)
def facts() -> dict:
    """The numbers the ideas and notes are formatted with (from the same data as
    the clips: :mod:`flashanim.talkfacts`), traces included."""
    import numpy as np

    from . import talkfacts as tf
    from .config import SceneConfig

    sc = tf.schedule()
    rs = tf.row_softmax(SceneConfig.from_env().load_or_record())
    return {
        **_data_facts(),
        "local_sum": float(rs.block_local().sum()),
        "online_err": float(np.abs(rs.online() - rs.softmax).max()),
        "programs": sc.stats["n"],
        "lanes": sc.stats["lanes"],
        "sms": sc.stats["sms"],
        "waves": int(sc.stats["waves"]),
        "sched_gpu": sc.gpu,
    }


def idea(name: str) -> str:
    """The one-idea line of clip ``name``, formatted from :func:`facts`."""
    c = clip(name)
    return c.idea.format(**_data_facts()) if "{" in c.idea else c.idea


def speaker_notes(starts: list[float] | None = None) -> str:
    """The speaker notes of the cut, one paragraph per clip (with its start time in
    the joined video when ``starts`` is given)."""
    f = facts()
    out = []
    for k, c in enumerate(CUT):
        when = ""
        if starts is not None:
            m, s = divmod(int(round(starts[k])), 60)
            when = f" [{m}:{s:02d}]"
        out.append(f"{k + 1}. {c.title}{when}\n   Idea: {idea(c.name)}\n   "
                   f"{c.notes.format(**f)}\n")  # fmt: skip
    return "\n".join(out)


# -- joining with cross-fades ------------------------------------------------------------


def join_with_crossfades(videos: list[Path], out: Path, fade: float = FADE_SECONDS,
                         crf: int = 18, preset: str = "veryfast") -> list[float]:  # fmt: skip
    """Join ``videos`` (same size and frame rate) into ``out``, each clip's last
    ``fade`` seconds blended with the next clip's first (H.264, re-encoded once).

    Returns the start time of each clip in the joined video. Written aside and
    moved into place only when finished.
    """
    import av
    import numpy as np

    if not videos:
        raise ValueError("no clips to join")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    starts: list[float] = []
    try:
        with av.open(str(videos[0])) as first:
            vs = first.streams.video[0]
            rate, width, height = vs.average_rate, vs.width, vs.height
        n_fade = max(1, int(round(float(rate) * fade)))
        with av.open(str(tmp), "w") as dst:
            ost = dst.add_stream("libx264", rate=rate)
            ost.width, ost.height, ost.pix_fmt = width, height, "yuv420p"
            ost.options = {"crf": str(crf), "preset": preset}
            written = 0

            def emit(img) -> None:
                nonlocal written
                if isinstance(img, np.ndarray):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                else:
                    frame = img
                frame = frame.reformat(format="yuv420p")
                frame.pts = written
                frame.time_base = 1 / rate
                for packet in ost.encode(frame):
                    dst.mux(packet)
                written += 1

            tail: list = []  # the previous clip's last n_fade frames (rgb arrays)
            for k, path in enumerate(videos):
                with av.open(str(path)) as src:
                    s = src.streams.video[0]
                    if (s.width, s.height) != (width, height):
                        raise ValueError(
                            f"{path}: {s.width}x{s.height}, not "
                            f"{width}x{height} like the first clip"
                        )
                    s.thread_type = "AUTO"
                    starts.append(written / float(rate))
                    held: deque = deque()
                    last = k == len(videos) - 1
                    for i, frame in enumerate(src.decode(s)):
                        if i < len(tail):  # blend into the previous clip's tail
                            a = (i + 1) / (len(tail) + 1)
                            img = frame.to_ndarray(format="rgb24").astype(np.float32)
                            mix = (1 - a) * tail[i].astype(np.float32) + a * img
                            emit(mix.round().astype(np.uint8))
                            continue
                        if last:
                            emit(frame)
                            continue
                        held.append(frame)
                        if len(held) > n_fade:
                            emit(held.popleft())
                    if i + 1 < len(tail):  # a clip shorter than the fade
                        for t in tail[i + 1 :]:
                            emit(t)
                    tail = [f.to_ndarray(format="rgb24") for f in held]
            for packet in ost.encode():
                dst.mux(packet)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flashanim.cut",
        description="Render the talk cut and join it with cross-fades.",
    )
    parser.add_argument("--quality", default="high", choices=list(QUALITIES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="render only these clips (no join)")  # fmt: skip
    parser.add_argument("--no-join", action="store_true", help="skip the joined MP4")
    parser.add_argument("--bench", action="store_true",
                        help="print render speed per clip")  # fmt: skip
    args = parser.parse_args(argv)
    names = [c.name for c in CUT]
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            parser.error(f"unknown clip(s) {', '.join(unknown)}; the cut has: "
                         f"{', '.join(names)}")  # fmt: skip
    clips = [c for c in CUT if not args.only or c.name in args.only]
    t0 = time.perf_counter()
    results: list[RenderResult] = render_scenes([c.scene for c in clips],
                                                args.quality, args.jobs)  # fmt: skip
    wall = time.perf_counter() - t0
    if args.bench:
        from .talk import print_bench

        print_bench(results, wall, args.jobs)
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            print(f"flashanim: error: {r.scene.name} failed; log: {r.log}",
                  file=sys.stderr)  # fmt: skip
        return 1
    if args.no_join or args.only:
        return 0
    folder = QUALITIES[args.quality][1]
    out = Path("media") / "talk" / f"flashanim_talk_cut_{folder}.mp4"
    t1 = time.perf_counter()
    starts = join_with_crossfades([r.video for r in results if r.video], out)
    join_s = time.perf_counter() - t1
    notes = out.with_name(f"{out.stem}_notes.txt")
    tmp = notes.with_name(f".{notes.name}.partial")
    tmp.write_text(speaker_notes(starts))
    os.replace(tmp, notes)
    length = video_duration(out)
    print(f"talk cut -> {out} ({length:.1f} s; clips rendered in {wall:.1f} s, "
          f"joined in {join_s:.1f} s)\nspeaker notes -> {notes}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
