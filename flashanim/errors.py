"""The configuration error every layer raises, in a module that imports nothing.

:mod:`flashanim.config` (the parameter table), :mod:`flashanim.hardware` (the GPU
presets) and :mod:`flashanim.trace.check` all raise :class:`ConfigError`; defining
it here, not in :mod:`flashanim.config`, keeps those modules free of import circles
(``config`` reads the presets of ``hardware`` to validate ``--gpu``).
:mod:`flashanim.config` re-exports it.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration that cannot be rendered; the message says what to change.

    ``cli`` is the same message in command-line words (``--seq-len 100`` instead
    of ``FLASHANIM_SEQ_LEN=100``), when it differs.
    """

    def __init__(self, message: str, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli or message
