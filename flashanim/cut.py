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

import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from .talk import (
    QUALITIES,
    TalkScene,
    render_parser,
    render_selected,
    video_duration,
)

__all__ = [
    "CUT",
    "Clip",
    "FADE_SECONDS",
    "clip",
    "facts",
    "speaker_notes",
    "join_with_crossfades",
    "finish",
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
    #: Render cost: CPU seconds at 480p15, forked from the render server, measured
    #: 2026-12-02 (the scale of :attr:`flashanim.talk.TalkScene.cost`: both cuts
    #: render in one set of jobs, longest first)
    cost: float = 1.0
    #: The same at 1080p60 (:attr:`flashanim.talk.TalkScene.cost_high`)
    cost_high: float | None = None

    @property
    def scene(self) -> TalkScene:
        return TalkScene(self.name, self.cls, self.title, self.cost, self.cost_high)


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
        3, 47,
    ),
    Clip(
        "talk_whole_row", "TalkWholeRow", "A softmax needs the whole row",
        "Every weight is divided by a sum over all the keys",
        "So why not just cut attention into tiles? One query row, from a recorded "
        "kernel run: each weight is an exponential divided by the sum over the whole "
        "row. A softmax of each block on its own gives weights that sum to "
        "{local_sum:.1f} instead of 1.",
        4, 48,
    ),
    Clip(
        "talk_online_softmax", "TalkOnlineSoftmax", "Online softmax: rescale as you go",
        "Keep a running max and sum; a new max shrinks the past",
        "The fix is to keep two numbers per row, the running max m and the running "
        "sum l. When a new block raises the max, everything so far is multiplied by "
        "alpha, the exponential of the old max minus the new: the bars shrink. At "
        "the end, dividing by l gives exactly the softmax of the whole row (largest "
        "difference {online_err:.0e}).",
        6, 88,
    ),
    Clip(
        "talk_tiling", "TalkTiling", "Tiling: one program, then all of them",
        "One Q block stays on chip while K and V stream past",
        "With the online softmax, one program owns one block of queries: it loads Q "
        "once, streams every K and V block through on-chip memory, and writes O once. "
        "On the GPU all {programs} programs run side by side, up to {lanes} per SM on "
        "the {sms} SMs of an {sched_gpu}, in {waves} waves; this is the recorded "
        "schedule, not a simulation.",
        15, 160,
    ),
    Clip(
        "talk_payoff", "TalkPayoff", "The payoff at a real size",
        "N = {n_k}k, d = {d}: less traffic, no N × N matrix in memory",
        "At sixteen thousand tokens and head dimension {d}, standard attention moves "
        "{traffic_std} through HBM and FlashAttention {traffic_flash}, "
        "{traffic_ratio:.0f} times less; the scores and probabilities alone would take {mem_std}. In "
        "the benchmark the standard version is {time_ratio:.0f} times slower at "
        "{time_n_k}k, the longest it was run.",
        3, 38,
    ),
    Clip(
        "talk_summary", "TalkSummary", "Summary",
        "Fuse the steps, tile the softmax, keep the scores on chip",
        "To sum up: attention is limited by memory, not arithmetic; the online "
        "softmax lets it be tiled exactly; every SM works on blocks of its own; and at "
        "real sizes that is {traffic_ratio:.0f} times less memory traffic.",
        5, 32,
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
                         preset: str | None = None) -> list[float]:  # fmt: skip
    """Join ``videos`` (H.264 clips of one size and frame rate, as Manim writes them)
    into ``out``, each clip's last ``fade`` seconds blended with the next clip's
    first; returns the start time of each clip in the joined video.

    Only the stretches around the joins are decoded and encoded again: from the
    last keyframe before a clip's fade to the first keyframe after the next clip's
    fade, with x264 set as Manim sets it for these clips (``preset``, or by default
    the options :func:`~flashanim.engine.fastrender.x264_options` gives their
    height; CRF 23),
    so that its parameter sets are the clips' own; the rest is copied as it is.
    Where the parameter sets differ (clips from another encoder) every frame is
    encoded again instead (slower, same picture). Written aside and moved into
    place only when finished.
    """

    if not videos:
        raise ValueError("no clips to join")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        clips = [_scan(Path(v)) for v in videos]
        first = clips[0]
        for c in clips[1:]:
            if (c.width, c.height, c.rate) != (first.width, first.height, first.rate):
                raise ValueError(
                    f"{c.path}: {c.width}x{c.height} at {c.rate} frames/s, not "
                    f"{first.width}x{first.height} at {first.rate} like {first.path}"
                )
        if preset is None:
            from .engine.fastrender import x264_options

            x264 = x264_options(first.height)
        else:
            x264 = {"preset": preset}
        n_fade = max(1, int(round(float(first.rate) * fade)))
        plan = _plan(clips, n_fade)
        if plan is None or not _same_parameter_sets(first, x264):
            starts = _join_reencode(clips, tmp, n_fade, x264)
        else:
            starts = _join_spliced(clips, plan, tmp, n_fade, x264)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return starts


@dataclass
class _ClipInfo:
    path: Path
    width: int
    height: int
    rate: object  # fractions.Fraction
    time_base: object
    frame_ticks: int  # stream ticks per frame
    n: int  # frames
    keyframes: list[int]  # frame indices (presentation order) of keyframes
    extradata: bytes | None
    #: whether frames come out of order (B-frames): then a copied stretch must
    #: end at a keyframe; without, it can end at any frame
    reordered: bool = True


def _scan(path: Path) -> _ClipInfo:
    """Frames and keyframes of a clip, from its packets (nothing decoded)."""
    import av

    with av.open(str(path)) as src:
        s = src.streams.video[0]
        pts, keys = [], []
        for pkt in src.demux(s):
            if pkt.pts is None:
                continue
            pts.append(pkt.pts)
            if pkt.is_keyframe:
                keys.append(pkt.pts)
        reordered = any(b < a for a, b in zip(pts, pts[1:], strict=False))
        if not pts:
            raise ValueError(f"{path}: no video frames")
        pts.sort()
        ticks = (pts[1] - pts[0]) if len(pts) > 1 else 1
        if any(b - a != ticks for a, b in zip(pts, pts[1:], strict=False)):
            ticks = 0  # irregular timestamps: frame indices cannot be read off pts
        index = {p: i for i, p in enumerate(pts)}
        cc = s.codec_context
        return _ClipInfo(path, s.width, s.height, s.average_rate, s.time_base, ticks,
                         len(pts), sorted(index[k] for k in keys),
                         bytes(cc.extradata) if cc.extradata else None,
                         reordered)  # fmt: skip


def _plan(clips: list[_ClipInfo], n_fade: int) -> list[tuple[int, int]] | None:
    """For each clip, the frames ``[a, b)`` copied as they are: ``a`` the first
    keyframe at or after the fade in (0 for the first clip), ``b`` the last
    keyframe at or before the fade out (the end for the last clip), or the fade
    out's first frame itself when the clips have no B-frames (a stretch that
    starts at a keyframe then decodes alone wherever it ends). ``None`` where a
    clip has no such stretch (then everything is encoded again)."""
    out = []
    any_order = not any(c.reordered for c in clips)
    for k, c in enumerate(clips):
        if not c.frame_ticks or c.n <= 2 * n_fade:
            return None
        a = 0 if k == 0 else next((f for f in c.keyframes if f >= n_fade), None)
        if k == len(clips) - 1:
            b = c.n
        elif any_order:
            b = c.n - n_fade
        else:
            b = next((f for f in reversed(c.keyframes) if f <= c.n - n_fade), None)
        if a is None or b is None or b <= a:
            return None
        out.append((a, b))
    return out


def _encoder(container, clip: _ClipInfo, x264: dict[str, str]):
    """An x264 stream set as Manim sets its partial movies' (CRF 23, yuv420p, the
    ``x264`` options; without B-frames where the clip has none)."""
    s = container.add_stream("libx264", rate=clip.rate)
    s.width, s.height, s.pix_fmt = clip.width, clip.height, "yuv420p"
    options = {"crf": "23", **x264}
    options.pop("bf", None)
    if not clip.reordered:
        options["bf"] = "0"
    s.options = options
    return s


def _same_parameter_sets(clip: _ClipInfo, x264: dict[str, str]) -> bool:
    """Whether x264 set up here writes the clip's own SPS/PPS (so that encoded
    stretches can sit between copied ones)."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as probe:
        s = _encoder(probe, clip, x264)
        f = av.VideoFrame.from_ndarray(
            np.zeros((clip.height, clip.width, 3), np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        f.pts = 0
        for pkt in s.encode(f):
            probe.mux(pkt)
        for pkt in s.encode():
            probe.mux(pkt)
        mine = bytes(s.codec_context.extradata or b"")
    theirs = _parameter_sets(clip.extradata or b"")
    return bool(theirs) and _parameter_sets(mine) == theirs


def _parameter_sets(extradata: bytes) -> tuple[bytes, ...]:
    """The SPS and PPS NAL units of H.264 extradata, in the MP4 (``avcC``) or the
    start-code (Annex B) layout."""
    b = bytes(extradata)
    if not b:
        return ()
    if b[0] == 1 and len(b) > 6:  # avcC
        out, i = [], 6
        for count_at_mask in (0x1F, 0xFF):
            if i > len(b):
                return ()
            n = b[i - 1] & count_at_mask
            for _ in range(n):
                size = int.from_bytes(b[i : i + 2], "big")
                out.append(b[i + 2 : i + 2 + size])
                i += 2 + size
            i += 1
        return tuple(out)
    units = [u.lstrip(b"\x00") for u in b.split(b"\x00\x00\x01")]
    return tuple(u.rstrip(b"\x00") for u in units if u)


def _frames(clip: _ClipInfo, a: int, b: int):
    """Decoded frames ``a .. b-1`` of ``clip`` (seeking to the keyframe at ``a``)."""
    import av

    with av.open(str(clip.path)) as src:
        s = src.streams.video[0]
        s.thread_type = "AUTO"
        t0 = None
        if a > 0:
            src.seek(a * clip.frame_ticks + _first_pts(clip), stream=s,
                     backward=True)  # fmt: skip
        for frame in src.decode(s):
            if t0 is None:
                t0 = _first_pts(clip)
            i = (frame.pts - t0) // clip.frame_ticks
            if i < a:
                continue
            if i >= b:
                break
            yield frame


@lru_cache(maxsize=64)
def _first_pts_of(path: str) -> int:
    import av

    with av.open(path) as src:
        s = src.streams.video[0]
        return min(p.pts for p in src.demux(s) if p.pts is not None)


def _first_pts(clip: _ClipInfo) -> int:
    return _first_pts_of(str(clip.path))


def _blend(a, b, w: float):
    """``(1 - w) a + w b`` of two frames, as an RGB array (float32, rounded half to
    even; the same operations in place, without the temporaries)."""
    import numpy as np

    x = a.to_ndarray(format="rgb24").astype(np.float32)
    y = b.to_ndarray(format="rgb24").astype(np.float32)
    x *= np.float32(1 - w)
    y *= np.float32(w)
    x += y
    np.rint(x, out=x)
    return x.astype(np.uint8)


def _transition(clip_a, clip_b, a_from: int, b_to: int, n_fade: int):
    """Frames of the stretch around one join: ``clip_a`` from ``a_from`` to its
    end, blended over its last ``n_fade`` frames with ``clip_b``'s first, then
    ``clip_b`` up to ``b_to``."""
    # clip_a decoded once, from a_from to its end: its last n_fade frames kept
    tail = []
    fade_at = clip_a.n - n_fade
    for i, fa in enumerate(_frames(clip_a, a_from, clip_a.n), start=a_from):
        if i < fade_at:
            yield fa
        else:
            tail.append(fa)
    head = _frames(clip_b, 0, b_to)
    for i, fb in enumerate(head):
        if i < len(tail):
            yield _blend(tail[i], fb, (i + 1) / (len(tail) + 1))
        else:
            yield fb


def _join_spliced(clips, plan, tmp: Path, n_fade: int, x264: dict) -> list[float]:
    import av

    first = clips[0]
    tpf = first.frame_ticks  # output ticks per frame (the first clip's time base)
    starts: list[float] = []
    with av.open(str(tmp), "w") as dst:
        with av.open(str(first.path)) as src:
            ost = dst.add_stream_from_template(src.streams.video[0])
        at = 0  # frames written so far

        def copy(clip: _ClipInfo, a: int, b: int) -> None:
            nonlocal at
            t0 = _first_pts(clip)
            lo, hi = t0 + a * clip.frame_ticks, t0 + b * clip.frame_ticks
            with av.open(str(clip.path)) as src:
                s = src.streams.video[0]
                if a > 0:
                    src.seek(lo, stream=s, backward=True)
                for pkt in src.demux(s):
                    if pkt.pts is None or pkt.dts is None:
                        continue
                    if pkt.pts >= hi and pkt.dts >= hi:
                        break
                    if not lo <= pkt.pts < hi:
                        continue
                    pkt.pts = (pkt.pts - lo) * tpf // clip.frame_ticks + at * tpf
                    pkt.dts = (pkt.dts - lo) * tpf // clip.frame_ticks + at * tpf
                    pkt.time_base = first.time_base
                    pkt.stream = ost
                    dst.mux(pkt)
            at += b - a

        def encode(frames) -> None:
            nonlocal at
            with av.open(os.devnull, "w", format="mp4") as scratch:
                enc = _encoder(scratch, first, x264)
                n = 0
                for img in frames:
                    f = _yuv_frame(img, n, first.rate)
                    n += 1
                    for pkt in enc.encode(f):
                        _mux_encoded(dst, ost, pkt, at, tpf, first.time_base)
                for pkt in enc.encode():
                    _mux_encoded(dst, ost, pkt, at, tpf, first.time_base)
            at += n

        starts.append(0.0)
        for k, (clip, (a, b)) in enumerate(zip(clips, plan, strict=True)):
            copy(clip, a, b)
            if k + 1 < len(clips):
                # the next clip's first frame is the first blended one
                starts.append((at + clip.n - n_fade - b) / float(first.rate))
                encode(_transition(clip, clips[k + 1], b, plan[k + 1][0], n_fade))
    return starts


def _yuv_frame(img, n: int, rate):
    """Frame ``n`` to encode: a decoded frame or an RGB array, as yuv420p."""
    import av

    if not isinstance(img, av.VideoFrame):
        img = av.VideoFrame.from_ndarray(img, format="rgb24")
    f = img.reformat(format="yuv420p")
    f.pts, f.time_base = n, 1 / Fraction(rate)
    return f


def _mux_encoded(dst, ost, pkt, at: int, tpf: int, time_base) -> None:
    """A packet of an encoded stretch (time base: one frame), placed at frame
    ``at`` of the output."""
    import av

    if pkt.pts is None or pkt.dts is None:
        return
    # x264 writes start codes; the MP4 track (the clips' avcC) wants 4-byte lengths
    units = [u for u in bytes(pkt).split(b"\x00\x00\x01") if u.strip(b"\x00")]
    data = b"".join(len(u.rstrip(b"\x00")).to_bytes(4, "big") + u.rstrip(b"\x00")
                    for u in units)  # fmt: skip
    out = av.Packet(data)
    out.pts = (pkt.pts + at) * tpf
    out.dts = (pkt.dts + at) * tpf
    out.is_keyframe = pkt.is_keyframe
    out.time_base = time_base
    out.stream = ost
    dst.mux(out)


def _join_reencode(clips, tmp: Path, n_fade: int, x264: dict) -> list[float]:
    """Every frame decoded, blended at the joins and encoded again."""
    import av

    first = clips[0]
    starts: list[float] = []
    with av.open(str(tmp), "w") as dst:
        ost = _encoder(dst, first, x264)
        n = 0

        def emit(img) -> None:
            nonlocal n
            f = _yuv_frame(img, n, first.rate)
            n += 1
            for pkt in ost.encode(f):
                dst.mux(pkt)

        for k, clip in enumerate(clips):
            if k == 0:
                starts.append(0.0)
                end = clip.n - (n_fade if len(clips) > 1 else 0)
                for f in _frames(clip, 0, end):
                    emit(f)
                continue
            prev = clips[k - 1]
            starts.append(n / float(first.rate))
            last = k == len(clips) - 1
            end = clip.n if last else clip.n - n_fade
            for img in _transition(prev, clip, prev.n - n_fade, end, n_fade):
                emit(img)
        for pkt in ost.encode():
            dst.mux(pkt)
    return starts


def finish(results, quality: str, wall: float) -> None:
    """Join the rendered clips (``results``: :class:`~flashanim.talk.RenderResult`
    of every clip of :data:`CUT`, in order) into the cut and write its speaker
    notes; print where they went."""
    folder = QUALITIES[quality][1]
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


def main(argv: list[str] | None = None) -> int:
    parser = render_parser("python -m flashanim.cut",
                           "Render the talk cut and join it with cross-fades.",
                           "high", "clip")  # fmt: skip
    args = parser.parse_args(argv)
    results, wall, code = render_selected(parser, args, [c.scene for c in CUT],
                                    "clip", "the cut")  # fmt: skip
    if code:
        return code
    if args.no_join or args.only:
        return 0
    finish(results, args.quality, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
