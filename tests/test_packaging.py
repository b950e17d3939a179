"""The wheel ships every package of the source tree.

A subpackage missing from ``[tool.setuptools] packages`` is silently left out of a
non-editable ``pip install .`` (as ``flashanim.engine`` was), while editable installs
and the tests here keep working. This compares the list against the tree.
"""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = cfg.get("package-dir", {})
    found = set()
    for name, folder in dirs.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            if "__pycache__" in rel:
                continue
            found.add(".".join((name, *rel)))
    missing = sorted(found - listed)
    assert not missing, f"packages missing from pyproject.toml: {missing}"
    stale = sorted(listed - found)
    assert not stale, f"pyproject.toml lists packages that do not exist: {stale}"
