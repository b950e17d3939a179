"""Per-row statistics of the online softmax: ``m_i``, ``l_i``, ``alpha``, ``LSE``.

Each is a one-column :class:`~flashanim.visuals.tiles.TileGrid` whose numbers are the
kernel's own values and update as events play.
"""

from __future__ import annotations

import numpy as np
from manim import Animation

from .theme import DARK, Theme
from .tiles import TileGrid

__all__ = ["StatColumn", "STAT_LABELS"]

#: On-screen names of the statistics (the kernel's variable names).
STAT_LABELS = {"m": "m_i", "l": "l_i", "alpha": "alpha", "LSE": "LSE_i", "D": "D_i"}


class StatColumn(TileGrid):
    """A column of per-row values (one per row of the Q block).

    Parameters
    ----------
    tensor
        ``"m"``, ``"l"``, ``"alpha"``, ``"LSE"`` or ``"D"``.
    rows
        Number of rows (``BLOCK_M``).
    values
        Initial values (``None``: blank until the first update).
    numbers
        Write the values.
    value_range
        Shading range.
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene
        from flashanim.visuals import StatColumn

        class M(Scene):
            def construct(self):
                m = StatColumn("m", 4)
                self.add(m)
                self.play(m.make_update_animation(np.array([0.1, 0.5, -0.2, 1.0])))
    """

    def __init__(
        self,
        tensor: str,
        rows: int,
        values: np.ndarray | None = None,
        *,
        numbers: bool = True,
        cell_width: float = 0.6,
        cell_height: float = 0.3,
        value_range: tuple[float, float] | None = None,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(
            tensor,
            None if values is None else np.asarray(values, dtype=float)[:, None],
            shape=(rows, 1),
            numbers=numbers,
            cell_width=cell_width,
            cell_height=cell_height,
            label=STAT_LABELS.get(tensor, tensor),
            value_range=value_range,
            shade_strength=0.55,
            theme=theme,
            **kwargs,
        )

    def make_update_animation(  # type: ignore[override]
        self, values: np.ndarray, r0: int = 0, c0: int = 0, **kwargs
    ) -> Animation:
        """Animate the column changing to ``values``."""
        values = np.asarray(values, dtype=float).reshape(-1, 1)
        return super().make_update_animation(values, r0, c0, **kwargs)
