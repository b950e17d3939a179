"""Captions (SRT and WebVTT) from the trace events a scene played, timed by the render.

While ``flashanim render`` renders a scene, a hook on ``Scene.play`` (see
:mod:`flashanim._scene_hooks`) records every animation's start and end time in the
video together with the trace events it played (tagged by
:meth:`~flashanim.visuals.player.TracePlayer.animation`), the scene's own caption
text and the sections. That record is a plain JSON file; this module turns it into
cues and writes them as ``.srt`` and ``.vtt``. The words come from the events, so
the captions stay true when the kernel changes.

Nothing here imports Manim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Cue",
    "describe_events",
    "cues_from_record",
    "load_record",
    "write_srt",
    "write_vtt",
    "format_timestamp",
]


@dataclass(frozen=True)
class Cue:
    """One caption: ``text`` shown from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    text: str


def _sub(i: int | None) -> str:
    return "" if i is None or i < 0 else f"_{i}"


def describe_events(events: Iterable[Mapping]) -> list[str]:
    """One line per event (dicts with ``program op tensor row col nbytes``).

    The current K/V block ``j`` of each program is tracked across events, so
    ``pv`` reads ``acc += P V_j``.
    """
    lines: list[str] = []
    j: dict[int, int] = {}
    for e in events:
        op, t, r, c, n = e["op"], e["tensor"], e["row"], e["col"], e["nbytes"]
        prog = e["program"]
        if op == "load" and t in ("K", "V"):
            j[prog] = r
        if op == "qk":
            j[prog] = c
        jj = j.get(prog)
        text = {
            "load": f"load {t} block {r} from HBM ({n} B)",
            "store": f"store {t} block {r} to HBM ({n} B)",
            "qk": f"S = Q{_sub(r)} K{_sub(c)}ᵀ",
            "mask": f"causal mask on S (block {r},{c})",
            "rowmax": f"m{_sub(r)} = max(m{_sub(r)}, rowmax(S))",
            "exp": f"P = exp(S − m{_sub(r)})",
            "alpha": f"alpha = exp(m_old − m{_sub(r)})",
            "rowsum": f"l{_sub(r)} = alpha · l{_sub(r)} + rowsum(P)",
            "rescale": f"acc = alpha · acc (row block {r})",
            "pv": f"acc += P V{_sub(jj)}",
            "normalize": f"O{_sub(r)} = acc / l{_sub(r)}",
            "lse": f"LSE{_sub(r)} = m{_sub(r)} + log l{_sub(r)}",
        }.get(op, f"{op} {t}[{r},{c}]" + (f" ({n} B)" if n else ""))
        lines.append(f"program {prog}: {text}")
    return lines


def load_record(path: str | Path) -> dict:
    """The JSON record written by the render hook."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def cues_from_record(record: Mapping) -> list[Cue]:
    """Cues from a render record: one per animation that played trace events or
    changed the scene's caption; a caption cue lasts until the next cue starts.

    Every cue is prefixed with its section's name in brackets the first time the
    section speaks (``[stream K-V] ...``).
    """
    plays: Sequence[Mapping] = record["plays"]
    sections: Sequence[Mapping] = record.get("sections", [])
    total = float(record.get("duration", plays[-1]["end"] if plays else 0.0))
    # described in one pass, so that each line knows the block j of its program
    lines = iter(describe_events(e for p in plays for e in p.get("events") or ()))
    raw: list[tuple[float, float, str, bool]] = []
    for p in plays:
        if p.get("events"):
            text = " · ".join(next(lines) for _ in p["events"])
            raw.append((p["start"], p["end"], text, False))
        elif p.get("caption"):
            raw.append((p["start"], p["end"], p["caption"], True))
    cues: list[Cue] = []
    said: set[str] = set()
    for k, (start, end, text, is_caption) in enumerate(raw):
        if is_caption:
            nxt = raw[k + 1][0] if k + 1 < len(raw) else total
            end = max(end, nxt)
        section = _section_at(sections, start)
        if section is not None and section not in said:
            said.add(section)
            text = f"[{section}] {text}"
        if end > start:
            cues.append(Cue(round(start, 3), round(end, 3), text))
    return cues


def _section_at(sections: Sequence[Mapping], t: float) -> str | None:
    name = None
    for s in sections:
        if s["start"] <= t + 1e-9:
            name = s["name"]
    return name


def format_timestamp(seconds: float, sep: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or, with ``sep="."``, ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def write_srt(cues: Sequence[Cue], path: str | Path) -> Path:
    """Write ``cues`` as SubRip (UTF-8)."""
    out = [
        f"{k}\n{format_timestamp(c.start)} --> {format_timestamp(c.end)}\n{c.text}\n"
        for k, c in enumerate(cues, 1)
    ]
    path = Path(path)
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def write_vtt(cues: Sequence[Cue], path: str | Path) -> Path:
    """Write ``cues`` as WebVTT."""
    out = ["WEBVTT\n"]
    out += [
        f"{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n"
        f"{c.text}\n"
        for c in cues
    ]
    path = Path(path)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
