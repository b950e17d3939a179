"""The faster Manim internals return exactly what Manim's own code returns."""

from __future__ import annotations

import random

from manim import Mobject, Square, Text, VGroup

from flashanim.visuals import _speedups


def _random_tree(rng: random.Random, n: int, shared: bool) -> Mobject:
    nodes = [Mobject() for _ in range(n)]
    for k in range(1, n):
        parent = nodes[rng.randrange(k)]
        parent.submobjects.append(nodes[k])
        if shared and rng.random() < 0.2:  # the same mobject under two parents
            other = nodes[rng.randrange(k)]
            if other is not parent:
                other.submobjects.append(nodes[k])
    return nodes[0]


def test_get_family_equals_manims_on_random_trees():
    rng = random.Random(0)
    for trial in range(300):
        root = _random_tree(rng, rng.randint(1, 60), shared=trial % 2 == 1)
        for m in [root, *root.submobjects]:
            ours = _speedups.get_family(m)
            theirs = _speedups.MANIM_GET_FAMILY(m)
            assert [id(x) for x in ours] == [id(x) for x in theirs]


def test_get_family_equals_manims_on_real_mobjects():
    sq = Square()
    g = VGroup(Text("flash"), VGroup(sq, Square()), sq)  # sq twice
    ours = _speedups.get_family(g)
    theirs = _speedups.MANIM_GET_FAMILY(g)
    assert [id(x) for x in ours] == [id(x) for x in theirs]
    assert len(ours) == len({id(x) for x in ours})


def test_installed_with_the_renderer():
    import flashanim.visuals.fastrender  # noqa: F401

    assert Mobject.get_family is _speedups.get_family
