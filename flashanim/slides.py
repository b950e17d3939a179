"""``flashanim slides``: the talk as a slide deck, one slide per section.

The scenes are rendered by :func:`flashanim.render.render` with
:class:`manim_slides.Slide` mixed in at render time (``class TilingScene(Slide,
TilingScene)``; manim-slides 5.7 makes ``next_section`` an alias of ``next_slide``),
so every section boundary starts a slide and the scene files stay as they are. The
slides of all scenes are then converted, in talk order, into one self-contained
reveal.js HTML file (``manim-slides convert --to html --one-file``: the videos are
embedded as data URIs) and reveal.js, its CSS and its notes plugin are inlined from
the copy vendored in ``flashanim/assets/reveal`` (reveal.js 6.0.1, MIT, the version
manim-slides 5.7 asks its CDN for): the deck runs offline, in a conference room.

Each slide's speaker notes come from :func:`section_notes` (the one place notes are
read): a scene's own notes where :data:`NOTES` has them, else the section's final
caption. Each scene's manim-slides presentation is kept as
``DIR/<scene>/<Scene>.slides.json`` with its clips beside it under
``DIR/<scene>/slides/`` (``manim-slides present`` can play it).

Needs the ``slides`` extra: ``pip install -e ".[slides]"`` (manim-slides 5.7).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flashanim.render import SceneOutput

__all__ = [
    "DECK_NAME",
    "NOTES",
    "REVEAL_DIR",
    "slide_count",
    "section_notes",
    "inline_reveal",
    "build_deck",
    "require_manim_slides",
]

DECK_NAME = "flashanim_slides.html"
#: The vendored reveal.js: the files of its ``dist`` folder that the deck uses
#: (kept flat: ``dist/theme/black.css`` is ``black.css``) and its licence.
REVEAL_DIR = Path(__file__).parent / "assets" / "reveal"
#: Speaker notes written for a scene: ``{scene name: {section name: note}}``.
#: Sections without one get their final caption (:func:`section_notes`).
NOTES: dict[str, dict[str, str]] = {}
#: What the deck's reveal.js URLs start with before they are inlined.
_MARK = "flashanim-vendored-reveal"


def require_manim_slides() -> None:
    """Raise :class:`RuntimeError` naming the extra when manim-slides is missing."""
    try:
        import manim_slides  # noqa: F401
    except ImportError:
        raise RuntimeError(
            'slides need manim-slides: pip install -e ".[slides]"'
        ) from None


def slide_count(slides_json: Path) -> int:
    """Number of slides in a manim-slides presentation file."""
    return len(json.loads(Path(slides_json).read_text())["slides"])


def section_notes(scene: str, record: dict) -> list[str]:
    """The speaker notes of each section of a render record, in order: the note
    :data:`NOTES` has for it, else the section's final caption (the frame the
    section ends on), else its name."""
    sections = record.get("sections", [])
    plays = record.get("plays", [])
    written = dict(NOTES.get(scene, {}))
    clip = _cut_notes(scene)
    if clip and sections:  # a talk-cut clip: its speaker notes on its title card
        written.setdefault(sections[0]["name"], clip)
    notes = []
    for k, sec in enumerate(sections):
        end = sections[k + 1]["start"] if k + 1 < len(sections) else math.inf
        caps = [p["caption"] for p in plays
                if p.get("caption") and sec["start"] <= p["start"] < end]  # fmt: skip
        notes.append(written.get(sec["name"]) or (caps[-1] if caps else sec["name"]))
    return notes


def _cut_notes(scene: str) -> str | None:
    """The talk cut's speaker notes for clip ``scene`` (``None``: not a clip)."""
    from flashanim.cut import CUT, facts

    for c in CUT:
        if c.name == scene:
            return c.notes.format(**facts())
    return None


def inline_reveal(page: str) -> str:
    """Replace the deck's links to reveal.js files (``_MARK/dist/...``) by the
    vendored files' contents, inline; refuse any other remote asset."""

    def asset(path: str) -> str:
        f = REVEAL_DIR / Path(path).name  # dist/theme/black.css -> black.css
        if not f.is_file():
            raise RuntimeError(f"the deck needs reveal.js's {path}, not vendored")
        return f.read_text(encoding="utf-8")

    def style(m: re.Match) -> str:
        return f"<style>{asset(m.group(1))}</style>"

    def script(m: re.Match) -> str:
        return (
            "<script>"
            + asset(m.group(1)).replace("</script", "<\\/script")
            + ("</script>")
        )

    page = re.sub(rf'<link rel="stylesheet" href="{_MARK}/([^"]+)"\s*/?>', style, page)
    page = re.sub(rf'<script src="{_MARK}/([^"]+)"></script>', script, page)
    left = re.findall(rf'{_MARK}[^"]*', page) + re.findall(
        r'<(?:script|link)[^>]+(?:src|href)="https?://[^"]*"', page
    )
    if left:
        raise RuntimeError(f"the deck still loads remote assets: {left[:3]}")
    return page


def _with_notes(slides_json: Path, notes: list[str]) -> None:
    doc = json.loads(slides_json.read_text(encoding="utf-8"))
    for slide, note in zip(doc["slides"], notes, strict=False):
        slide["notes"] = html.escape(note, quote=False)
    slides_json.write_text(json.dumps(doc), encoding="utf-8")


def _keep_presentation(src: Path, out: Path, scene: str, cls: str) -> list[Path]:
    """Copy a presentation's clips to ``out/<scene>/slides/`` and its file to
    ``out/<scene>/<cls>.slides.json`` with paths that stay valid (relative to
    ``out``, as manim-slides reads them), never into the staging folder."""
    doc = json.loads(src.read_text(encoding="utf-8"))
    base = src.parent.parent  # manim-slides: paths relative to the folder above
    folder = out / scene / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for slide in doc["slides"]:
        for key in ("file", "rev_file"):
            f = slide.get(key)
            if not f:
                continue
            clip = base / f
            dest = folder / clip.name
            if not dest.exists():
                shutil.copyfile(clip, dest)
                done.append(dest)
            slide[key] = str(Path(scene) / "slides" / clip.name)
    dest = out / scene / f"{cls}.slides.json"
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, dest)
    return [*done, dest]


def build_deck(staging: Path, outputs: list[SceneOutput], out: Path) -> list[Path]:
    """Convert the scenes' slides, with speaker notes, into ``out/DECK_NAME`` (one
    file, reveal.js inlined; written atomically), and keep each presentation next
    to its scene (:func:`_keep_presentation`)."""
    jsons = [o.slides_json for o in outputs]
    if any(j is None for j in jsons):
        missing = [o.scene.name for o in outputs if o.slides_json is None]
        raise RuntimeError(f"no slides were written for: {', '.join(missing)}")
    for o, j in zip(outputs, jsons, strict=True):
        rec = out / o.scene.name / f"{o.scene.cls}.record.json"
        if rec.is_file():
            _with_notes(j, section_notes(o.scene.name, json.loads(rec.read_text())))
    folder = jsons[0].parent
    tmp = staging / DECK_NAME
    cmd = [sys.executable, "-m", "manim_slides", "convert", "--folder", str(folder),
           "--to", "html", "--one-file", "-c", f"cdn_url={_MARK}",
           "-v", "warning"]  # fmt: skip
    cmd += [o.scene.cls for o in outputs] + [str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"manim-slides convert failed: {' | '.join(tail)}")
    tmp.write_text(inline_reveal(tmp.read_text(encoding="utf-8")), encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for o, j in zip(outputs, jsons, strict=True):
        kept = _keep_presentation(j, out, o.scene.name, o.scene.cls)
        done += kept
        _add_to_manifest(out / o.scene.name, kept)
    dest = out / DECK_NAME
    os.replace(tmp, dest)
    done.append(dest)
    return done


def _add_to_manifest(scene_dir: Path, files: list[Path]) -> None:
    from flashanim.render import MANIFEST

    m = scene_dir / MANIFEST
    if not m.is_file():
        return
    doc = json.loads(m.read_text(encoding="utf-8"))
    doc["files"] = sorted(
        {*doc["files"], *(str(f.relative_to(scene_dir)) for f in files)}
    )
    m.write_text(json.dumps(doc, indent=1), encoding="utf-8")
