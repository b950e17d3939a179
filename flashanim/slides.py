"""``flashanim slides``: the talk as a slide deck, one slide per section.

The scenes are rendered by :func:`flashanim.render.render` with
:class:`manim_slides.Slide` mixed in at render time (``class TilingScene(Slide,
TilingScene)``; manim-slides 5.7 makes ``next_section`` an alias of ``next_slide``),
so every section boundary starts a slide and the scene files stay as they are. The
slides of all scenes are then converted, in talk order, into one self-contained
reveal.js HTML file (``manim-slides convert --to html --one-file``: the videos are
embedded as data URIs; reveal.js itself is inlined too when manim-slides' asset cache
has it, else it is loaded from its CDN).

Needs the ``slides`` extra: ``pip install -e ".[slides]"`` (manim-slides 5.7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flashanim.render import SceneOutput

__all__ = ["DECK_NAME", "slide_count", "build_deck", "require_manim_slides"]

DECK_NAME = "flashanim_slides.html"


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


def _reveal_cached() -> bool:
    """Whether manim-slides' reveal.js asset cache is filled (then ``--offline``)."""
    try:
        from manim_slides.convert import RevealJS
        from platformdirs import user_cache_path
    except ImportError:
        return False
    version = RevealJS.model_fields["reveal_version"].default
    cache = user_cache_path("manim-slides") / f"revealjs{version}"
    return cache.is_dir() and any(cache.iterdir())


def build_deck(staging: Path, outputs: list[SceneOutput], out: Path) -> list[Path]:
    """Convert the scenes' slides into ``out/DECK_NAME`` (atomically) and copy each
    presentation file next to its scene as ``<Scene>.slides.json``."""
    jsons = [o.slides_json for o in outputs]
    if any(j is None for j in jsons):
        missing = [o.scene.name for o in outputs if o.slides_json is None]
        raise RuntimeError(f"no slides were written for: {', '.join(missing)}")
    folder = jsons[0].parent
    tmp = staging / DECK_NAME
    cmd = [sys.executable, "-m", "manim_slides", "convert", "--folder", str(folder),
           "--to", "html", "--one-file", "-v", "warning"]  # fmt: skip
    if _reveal_cached():
        cmd.append("--offline")
    cmd += [o.scene.cls for o in outputs] + [str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"manim-slides convert failed: {' | '.join(tail)}")
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for o, j in zip(outputs, jsons, strict=True):
        dest = out / o.scene.name / f"{o.scene.cls}.slides.json"
        os.replace(j, dest)
        done.append(dest)
    dest = out / DECK_NAME
    os.replace(tmp, dest)
    done.append(dest)
    return done
