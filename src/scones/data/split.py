"""Stratified, seeded splits of ``.lst`` entries (validation out of train, test out of a pool)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from scones.data.errors import DataError
from scones.data.layout import LstEntry


def carve_count(class_size: int, fraction: float) -> int:
    """How many of one class to carve: the rounded share, but at least one and never all."""
    if class_size < 2:
        return 0
    wanted = math.floor(class_size * fraction + 0.5)
    return min(max(wanted, 1), class_size - 1)


def stratified_split(
    entries: Sequence[LstEntry],
    fraction: float,
    *,
    seed: int,
    class_names: Sequence[str],
    what: str,
) -> tuple[list[LstEntry], list[LstEntry]]:
    """Split ``entries`` into (kept, carved), carving ``fraction`` of every class.

    Each class is shuffled by its own generator seeded with (seed, label) over its entries
    sorted by path, so the split depends only on the seed and that class's members, not on
    the order of the source or on the other classes.
    """
    positions: dict[int, list[int]] = defaultdict(list)
    for position, entry in enumerate(entries):
        positions[entry.label].append(position)
    carved: set[int] = set()
    for label, name in enumerate(class_names):
        members = sorted(positions.get(label, []), key=lambda p: entries[p].path)
        if len(members) < 2:
            raise DataError(
                f"class {name!r} has {len(members)} image(s) to carve a {what} split from; "
                "it needs at least 2"
            )
        order = np.random.default_rng([seed, label]).permutation(len(members))
        count = carve_count(len(members), fraction)
        carved.update(members[int(i)] for i in order[:count])
    kept = [e for p, e in enumerate(entries) if p not in carved]
    taken = [e for p, e in enumerate(entries) if p in carved]
    return kept, taken
