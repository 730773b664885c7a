"""What happens to a config key that a built-in template never reads.

A graph switched over from ``offbit_reflow`` may carry keys of its own in a node's config
(labels, colours, notes for an editor); that SDK keeps them silently. A misspelt key, though, is
a bug that would otherwise pass unnoticed, as the template falls back to its default. So, per
network (``Network(config_check=...)``):

- ``"typos"`` (the default): a key within a small edit distance of a key the template reads
  (or equal to one but for case and ``_``/``-``) is refused with that key suggested; any other
  unknown key is kept in the node's config and reported once, as a :class:`ConfigKeyWarning`
  naming node, template and key.
- ``"strict"``: every unknown key is refused.
- ``"off"``: every key is kept silently, as ``offbit_reflow`` does.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from .._errors import ConfigKeyWarning, GraphError

__all__ = ["check_keys", "edit_distance", "likely_typo_of"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_KEY_LIMIT = 200  # longer keys are never typos of a template's key (and cost no quadratic time)


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    two neighbouring characters (``strat`` -> ``start``) each count one."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _folded(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def likely_typo_of(key: str, known: Iterable[str]) -> str | None:
    """The known key that ``key`` most likely misspells, or None. A key of three or more
    characters is a typo of a known key at distance 1 (2 for known keys over five characters);
    shorter keys only by case or separators (``x`` is no typo of ``y``)."""
    if len(key) > _KEY_LIMIT:
        return None
    best: tuple[int, str] | None = None
    for name in known:
        if _folded(key) == _folded(name):
            return name
        if len(key) < 3:
            continue
        limit = 1 if len(name) <= 5 else 2
        if abs(len(key) - len(name)) > limit:
            continue
        d = edit_distance(key.lower(), name.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, name)
    return None if best is None else best[1]


def check_keys(
    node: str, component: str, config: dict[str, Any], known: dict[str, Any], mode: str
) -> None:
    """Apply ``mode`` (``"typos"``, ``"strict"`` or ``"off"``) to the keys of ``config``
    missing from ``known``: raise :class:`~reflow.GraphError` for a refused one, warn for a
    kept one."""
    if mode == "off":
        return
    for key in config:
        if key in known:
            continue
        text = str(key)
        typo = likely_typo_of(text, known)
        if len(text) > _KEY_LIMIT:  # named, not echoed: a message stays a line long
            text = text[:60] + f"... ({len(text)} characters)"
        what = "reads no config" if not known else "has no config key"
        if typo is None and mode == "typos":
            warnings.warn(
                f"node {node!r}: template {component!r} {what} {text!r}; kept in the node's "
                f"config (Network(config_check='strict') refuses it)",
                ConfigKeyWarning,
                stacklevel=_caller_level(),
            )
            continue
        if typo is not None:
            hint = f"; did you mean {typo!r}?"
        elif known:
            hint = f"; it reads {', '.join(map(repr, sorted(known)))}"
        else:
            hint = ""
        raise GraphError(f"node {node!r}: template {component!r} {what} {text!r}{hint}")


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside reflow, so the warning points at the
    user's ``add_node`` (or ``from_graph``/``run``) call and is shown once per call site."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
