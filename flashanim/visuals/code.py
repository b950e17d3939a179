"""A code panel showing the real kernel's source, current line highlighted.

The lines are read from the kernel file itself (``kernels/fa2.py``); nothing is
rewritten. :func:`kernel_source_lines` finds the lines that perform each traced
operation by pattern (:data:`OP_PATTERNS`), inside the kernel's functions
(``_attn_fwd_inner`` first, then ``_attn_fwd``), skipping the trace
instrumentation. :class:`CodePanel` shows those lines (with their line numbers, and
``⋮`` where lines are skipped) and moves a highlight bar to the line of each event.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from manim import (
    LEFT,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    Rectangle,
    Text,
    Transform,
    VGroup,
)

from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "OP_PATTERNS",
    "SourceLine",
    "KernelSource",
    "kernel_path",
    "kernel_source_lines",
    "CodePanel",
]

#: ``(op, tensor)`` -> regular expressions that find the source line doing it, tried
#: in order. ``(op, None)`` matches any tensor.
OP_PATTERNS: Mapping[tuple[str, str | None], tuple[str, ...]] = {
    ("load", "Q"): (r"^\s*q\s*=.*load",),
    ("load", "K"): (r"^\s*k\s*=.*load",),
    ("load", "V"): (r"^\s*v\s*=.*load",),
    ("qk", None): (r"tl\.dot\(\s*q\s*,", r"^\s*qk\s*="),
    ("mask", None): (r"^\s*qk\s*=\s*tl\.where", r"tl\.where\(.*(-inf|-1\.0e6|float)"),
    ("rowmax", None): (r"^\s*m_ij\s*=.*tl\.max", r"tl\.max\("),
    ("exp", None): (r"^\s*p\s*=\s*tl\.(math\.)?exp",),
    ("alpha", None): (r"^\s*alpha\s*=\s*tl\.(math\.)?exp",),
    ("rowsum", None): (r"^\s*l_i\s*=\s*l_i\s*\*\s*alpha", r"tl\.sum\(\s*p"),
    ("rescale", None): (r"^\s*acc\s*=\s*acc\s*\*\s*alpha",),
    ("pv", None): (r"tl\.dot\(\s*p",),
    ("normalize", None): (r"acc\s*/\s*l_i", r"/\s*l_i\["),
    ("lse", None): (r"m_i\s*\+\s*tl\.(math\.)?log",),
    ("store", "O"): (
        r"^\s*_store_tile\(\s*O\b",
        r"tl\.store\(\s*(o_ptrs|O\b|O_|o_|out)",
        r"tl\.store\(.*acc",
    ),
    ("store", "LSE"): (r"tl\.store\(\s*(lse|LSE|m_ptrs|M_)",),
}

#: Functions searched, in order.
FWD_FUNCTIONS: tuple[str, ...] = ("_attn_fwd_inner", "_attn_fwd")


@dataclass(frozen=True)
class SourceLine:
    """One line of the kernel file."""

    number: int  # 1-based line number in the file
    text: str
    function: str


def kernel_path(module: str = "fa2") -> Path:
    """Path of ``kernels/<module>.py`` (found without importing Triton)."""
    spec = importlib.util.find_spec("flashanim.kernels")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("flashanim.kernels is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{module}.py"
    if not path.exists():
        raise FileNotFoundError(f"no kernel source at {path}")
    return path


def _is_code(text: str) -> bool:
    s = text.strip()
    return bool(s) and not s.startswith("#") and "trace_" not in s and "TRACE" not in s


class KernelSource:
    """The lines of some functions of a kernel file, and the op -> line map.

    Parameters
    ----------
    source
        The file's text.
    functions
        Function names to search, in order.
    patterns
        ``OP_PATTERNS``-style map.
    """

    def __init__(
        self,
        source: str,
        functions: Sequence[str] = FWD_FUNCTIONS,
        patterns: Mapping[tuple[str, str | None], Sequence[str]] = OP_PATTERNS,
    ) -> None:
        self.source = source
        self.functions = tuple(functions)
        self.patterns = patterns
        file_lines = source.splitlines()
        tree = ast.parse(source)
        spans: dict[str, tuple[int, int]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in self.functions:
                spans[node.name] = (node.body[0].lineno, node.end_lineno or 0)
        missing = [f for f in self.functions if f not in spans]
        if len(missing) == len(self.functions):
            raise ValueError(f"none of {self.functions} found in the kernel source")
        self.lines: dict[str, list[SourceLine]] = {}
        for f in self.functions:
            if f in spans:
                a, b = spans[f]
                self.lines[f] = [
                    SourceLine(n, file_lines[n - 1], f) for n in range(a, b + 1)
                ]
        self._cache: dict[tuple[str, str], SourceLine | None] = {}

    @classmethod
    def from_kernel(cls, module: str = "fa2", **kwargs) -> KernelSource:
        """Read ``kernels/<module>.py``."""
        return cls(kernel_path(module).read_text(), **kwargs)

    def line_for(self, op: str, tensor: str) -> SourceLine | None:
        """The source line that performs ``op`` on ``tensor``, or ``None``."""
        key = (op, tensor)
        if key in self._cache:
            return self._cache[key]
        pats = self.patterns.get(key) or self.patterns.get((op, None)) or ()
        found = None
        for pat in pats:
            rx = re.compile(pat)
            for f in self.functions:
                for line in self.lines.get(f, ()):
                    if _is_code(line.text) and rx.search(line.text):
                        found = line
                        break
                if found:
                    break
            if found:
                break
        self._cache[key] = found
        return found

    def loop_header(self) -> SourceLine | None:
        """The ``for start_n in ...`` line of the inner loop, if any."""
        for f in self.functions:
            for line in self.lines.get(f, ()):
                if re.search(r"^\s*for\s+start_n\s+in", line.text):
                    return line
        return None

    def selection(self, ops: Iterable[tuple[str, str]]) -> list[SourceLine]:
        """The lines of ``ops`` plus the loop header, in file order, no repeats."""
        chosen = {ln.number: ln for ln in (self.line_for(o, t) for o, t in ops) if ln}
        hdr = self.loop_header()
        if hdr is not None:
            chosen[hdr.number] = hdr
        return [chosen[n] for n in sorted(chosen)]


def kernel_source_lines(
    ops: Iterable[tuple[str, str]], module: str = "fa2"
) -> list[SourceLine]:
    """The real lines of ``kernels/<module>.py`` that perform ``ops``.

    Examples
    --------
    >>> lines = kernel_source_lines([("qk", "S"), ("pv", "acc")])  # doctest: +SKIP
    """
    return KernelSource.from_kernel(module).selection(ops)


class CodePanel(VGroup):
    """Selected real source lines with line numbers and a moving highlight.

    Parameters
    ----------
    source
        Where the lines come from.
    ops
        The ``(op, tensor)`` pairs to show (e.g. those of a trace).
    title
        Heading (e.g. ``"kernels/fa2.py"``).
    max_width
        Lines are scaled to fit this width.
    line_height
        Vertical distance between lines.
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import CodePanel, KernelSource

        class Code(Scene):
            def construct(self):
                src = KernelSource.from_kernel("fa2")
                panel = CodePanel(src, [("qk", "S"), ("exp", "P")])
                self.add(panel)
                self.play(panel.make_highlight_animation("exp", "P"))
    """

    def __init__(
        self,
        source: KernelSource,
        ops: Iterable[tuple[str, str]],
        *,
        title: str = "kernels/fa2.py",
        max_width: float = 9.0,
        line_height: float = 0.27,
        font_size: float | None = None,
        window: int | None = None,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.theme = theme
        self.line_height = line_height
        self.selected = source.selection(list(ops))
        fs = font_size or theme.small_size + 1
        self.heading = Text(title, font=theme.mono_font, font_size=theme.small_size + 1,
                            color=theme.muted)  # fmt: skip
        self.add(self.heading)
        probe = Text("0" * 20, font=theme.mono_font, font_size=fs)
        char_w = probe.width / 20
        indent0 = min(
            (len(s.text) - len(s.text.lstrip()) for s in self.selected), default=0
        )
        self.rows = VGroup()
        self._row_of: dict[int, int] = {}
        prev = None
        y = self.heading.get_bottom()[1] - 0.08 - line_height / 2
        x0 = self.heading.get_left()[0]
        num_w = 4 * char_w
        for ln in self.selected:
            if prev is not None and ln.number > prev + 1:
                gap = Text("⋮", font=theme.mono_font, font_size=fs, color=theme.muted)
                gap.move_to([x0 + num_w + 0.3, y, 0])
                self.rows.add(VGroup(gap))
                y -= line_height * 0.8
            prev = ln.number
            num = Text(f"{ln.number:>3}", font=theme.mono_font, font_size=fs,
                       color=theme.muted)  # fmt: skip
            num.move_to([x0, y, 0], aligned_edge=LEFT)
            code = ln.text.rstrip()
            indent = len(code) - len(code.lstrip()) - indent0
            txt = Text(code.strip(), font=theme.mono_font, font_size=fs,
                       color=theme.foreground)  # fmt: skip
            txt.move_to([x0 + num_w + 0.15 + indent * char_w, y, 0],
                        aligned_edge=LEFT)  # fmt: skip
            row = VGroup(num, txt)
            self._row_of[ln.number] = len(self.rows)
            self.rows.add(row)
            y -= line_height
        avail = max_width
        if self.rows.width > avail:
            self.rows.scale(
                avail / self.rows.width, about_point=[x0, self.rows.get_top()[1], 0]
            )
        self.highlight = Rectangle(width=max_width + 0.1, height=line_height * 0.95,
                                   stroke_width=0)  # fmt: skip
        self.highlight.set_fill(theme.highlight, opacity=0.0)
        self.highlight.move_to(self.rows[0] if len(self.rows) else self.heading)
        self.highlight.align_to(self.heading, LEFT).shift(0.05 * LEFT)
        self.window = window if window and window < len(self.rows) else None
        self._start = 0
        if self.window is not None:
            self._show(self.rows, 0)
        self.add(self.highlight, self.rows)

    def _show(self, rows: VGroup, start: int) -> None:
        """Scroll ``rows`` (the rows or a copy) so that row ``start`` is on top."""
        top_y = self.heading.get_bottom()[1] - 0.08 - self.line_height / 2
        rows.shift((top_y - rows[start].get_center()[1]) * UP)
        for k, row in enumerate(rows):
            visible = 1.0 if start <= k < start + self.window else 0.0
            for m in row.family_members_with_points():
                m.set_fill(opacity=visible, family=False)

    def row(self, op: str, tensor: str) -> VGroup | None:
        """The displayed row of ``op`` on ``tensor`` (``None`` if not shown)."""
        ln = self.source.line_for(op, tensor)
        if ln is None or ln.number not in self._row_of:
            return None
        return self.rows[self._row_of[ln.number]]

    def make_highlight_animation(self, op: str, tensor: str) -> Animation:
        """Move the highlight bar to the line of ``op`` on ``tensor``."""
        row = self.row(op, tensor)
        target = self.highlight.copy()
        anims = []
        if row is not None and self.window is not None:
            k = self._row_of[self.source.line_for(op, tensor).number]
            if not self._start <= k < self._start + self.window:
                start = max(0, min(k - self.window // 3, len(self.rows) - self.window))
                # scroll at once (a jump, like an editor), then move the highlight
                self._show(self.rows, start)
                self._start = start
                row = self.rows[k]
        if row is None:
            target.set_fill(opacity=0)
        else:
            target.set_fill(self.theme.highlight, opacity=0.28)
            target.move_to([target.get_center()[0], row.get_center()[1], 0])
        return AnimationGroup(Transform(self.highlight, target), *anims)


_ = (RIGHT, UP)
