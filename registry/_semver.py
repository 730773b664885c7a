"""Semantic versions and the version ranges ``install`` accepts.

Ranges: ``1.2.3`` or ``=1.2.3`` (exact: that text, build metadata included), ``^1.2``
(compatible: same major, or same minor while the major is 0), ``~1.2`` (same minor),
comparisons ``>=1.0,<2.0`` (comma or space separated, all must hold), ``*`` or empty
(anything). Partial versions fill with zeros. Digits are ASCII ``0-9`` only.
Pre-releases and yanked versions are only chosen when pinned exactly: a range never
silently picks ``2.0.0-rc.1`` or a version its publisher withdrew.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import RegistryError
from ._names import is_valid_name

__all__ = [
    "RegistrySpecError",
    "Version",
    "VersionRange",
    "parse_spec",
    "pick_version",
    "precedence",
]


class RegistrySpecError(RegistryError, ValueError):
    """A pack spec (``namespace/name[@range]``), pack name or namespace the registry client
    cannot use. A :class:`~reflow._errors.ReflowError` (command lines print it as one line)
    and a ``ValueError`` (what it used to be)."""


# ASCII digits only: ``\d`` would also take U+0660 ARABIC-INDIC DIGIT ZERO (and every other
# Unicode decimal digit), which int() reads as 0, so "1.0.1" + U+0660 would be a second
# spelling of 1.0.10.
_VERSION = re.compile(
    r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})"
    r"(?:-([0-9A-Za-z.-]{1,64}))?(?:\+([0-9A-Za-z.-]{1,64}))?"
)
_PARTIAL = re.compile(
    r"(0|[1-9][0-9]{0,8})(?:\.(0|[1-9][0-9]{0,8}))?"
    r"(?:\.(0|[1-9][0-9]{0,8}))?(?:-([0-9A-Za-z.-]{1,64}))?"
)
# What versions looked like before the ASCII-only rule: only to compare new versions with
# rows an older registry may have stored (see :func:`precedence`).
_LEGACY_VERSION = re.compile(
    r"(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})"
    r"(?:-([0-9A-Za-z.-]{1,64}))?(?:\+([0-9A-Za-z.-]{1,64}))?"
)
_OPS = ("^", "~", ">=", "<=", ">", "<", "==", "=")


@dataclass(frozen=True, order=False)
class Version:
    """A parsed semantic version; compares by semver precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    pre: str = ""
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION.fullmatch(text)
        if m is None:
            raise ValueError(f"{text!r} is not a semantic version (e.g. 1.2.0)")
        return cls(int(m[1]), int(m[2]), int(m[3]), m[4] or "", text)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        return _VERSION.fullmatch(text) is not None

    def key(self) -> tuple[object, ...]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric.
        pre: tuple[tuple[int, int | str], ...] = (
            tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.pre.split("."))
            if self.pre
            else ()
        )
        return (self.major, self.minor, self.patch, not self.pre, pre)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Version) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Version) -> bool:
        return self.key() >= other.key()

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}" + (
            f"-{self.pre}" if self.pre else ""
        )


def precedence(text: str) -> tuple[object, ...] | None:
    """The semver precedence key of ``text`` (build metadata ignored), also for versions an
    older registry accepted with non-ASCII digits; None if it is no version at all. The
    registry refuses to publish a version whose precedence equals a published one's."""
    if Version.is_valid(text):
        return Version.parse(text).key()
    m = _LEGACY_VERSION.fullmatch(text)
    if m is None:
        return None
    try:
        return Version(int(m[1]), int(m[2]), int(m[3]), m[4] or "").key()
    except ValueError:
        return None


def _partial(text: str) -> tuple[Version, int]:
    """A possibly partial version (``1``, ``1.2``, ``1.2.3-rc.1``) and how many parts it had."""
    m = _PARTIAL.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a version")
    parts = sum(1 for g in (m[1], m[2], m[3]) if g is not None)
    return Version(int(m[1]), int(m[2] or 0), int(m[3] or 0), m[4] or ""), parts


@dataclass(frozen=True)
class VersionRange:
    """A parsed range; ``exact`` is set when it pins one version."""

    text: str
    clauses: tuple[tuple[str, Version], ...]
    exact: Version | None = None

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        text = text.strip()
        if text in ("", "*", "latest"):
            return cls(text or "*", ())
        if _VERSION.fullmatch(text.lstrip("=")) and not text.startswith(("=>", "==>")):
            v = Version.parse(text.lstrip("="))
            return cls(text, (("=", v),), exact=v)
        clauses: list[tuple[str, Version]] = []
        for raw in re.split(r"[,\s]+", text):
            if not raw:
                continue
            op = next((o for o in _OPS if raw.startswith(o)), "")
            body = raw[len(op) :]
            try:
                v, parts = _partial(body)
            except ValueError:
                raise ValueError(
                    f"{text!r} is not a version range (use 1.2.3, ^1.2, ~1.2, >=1.0,<2.0 or *)"
                ) from None
            clauses += _expand(op or "=", v, parts)
        return cls(text, tuple(clauses))

    def matches(self, v: Version) -> bool:
        if self.exact is not None:
            # An exact pin names one published text: "1.0.10" is not "1.0.10+rebuild"
            # (equal precedence, possibly different bytes).
            return str(v) == str(self.exact)
        if v.pre:
            return False
        for op, bound in self.clauses:
            k, b = v.key(), bound.key()
            ok = {"=": k == b, ">=": k >= b, "<=": k <= b, ">": k > b, "<": k < b}[op]
            if not ok:
                return False
        return True

    def __str__(self) -> str:
        return self.text


def _expand(op: str, v: Version, parts: int) -> list[tuple[str, Version]]:
    base = Version(v.major, v.minor, v.patch)
    if op == "^":
        if v.major > 0 or parts == 1:
            upper = Version(v.major + 1, 0, 0)
        elif v.minor > 0 or parts == 2:
            upper = Version(0, v.minor + 1, 0)
        else:
            upper = Version(0, 0, v.patch + 1)
        return [(">=", base), ("<", _pre0(upper))]
    if op == "~":
        upper = Version(v.major + 1, 0, 0) if parts == 1 else Version(v.major, v.minor + 1, 0)
        return [(">=", base), ("<", _pre0(upper))]
    if op in ("=", "==") and parts < 3:
        upper = Version(v.major + 1, 0, 0) if parts == 1 else Version(v.major, v.minor + 1, 0)
        return [(">=", base), ("<", _pre0(upper))]
    return [({"==": "="}.get(op, op), Version(v.major, v.minor, v.patch, v.pre))]


def _pre0(v: Version) -> Version:
    # "< 2.0.0" must also exclude 2.0.0-rc.1; the lowest pre-release of 2.0.0 is "-0".
    return Version(v.major, v.minor, v.patch, "0")


def parse_spec(spec: str) -> tuple[str, str, VersionRange]:
    """``"acme/tools@^1.2"`` -> ``("acme", "tools", VersionRange("^1.2"))``; a
    :class:`RegistrySpecError` for anything else."""
    name, _, rng = spec.partition("@")
    ns, sep, short = name.partition("/")
    if not sep or not ns or not short or "/" in short:
        hint = ""
        if not sep and is_valid_name(name):
            hint = f" (e.g. acme/{name}{'@' + rng if rng else ''}: name the namespace too)"
        raise RegistrySpecError(f"{spec!r} is not 'namespace/name[@range]'{hint}")
    for label, part in (("namespace", ns), ("pack name", short)):
        if not is_valid_name(part):
            raise RegistrySpecError(
                f"{spec!r} is not 'namespace/name[@range]': {part!r} is not a valid {label} "
                "(lowercase letters, digits and ._-, starting with a letter or digit)"
            )
    try:
        return ns, short, VersionRange.parse(rng)
    except ValueError as exc:
        raise RegistrySpecError(f"{spec!r}: {exc}") from None


def pick_version(
    rng: VersionRange, versions: Iterable[str], yanked: Iterable[str] = ()
) -> str | None:
    """The highest version in ``versions`` that ``rng`` accepts (yanked ones only when pinned
    exactly), or None."""
    withdrawn = set(yanked)
    best: Version | None = None
    for text in versions:
        try:
            v = Version.parse(text)
        except ValueError:
            continue
        if text in withdrawn and rng.exact is None:
            continue
        if rng.matches(v) and (best is None or v > best):
            best = v
    return best.text if best else None
