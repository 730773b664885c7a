"""The guest ABI version this host speaks, and the rule that decides what it can load.

A guest (or pack) records the ABI version it was built for as ``major.minor``. The host loads
it when the majors are equal and the guest's minor is not newer than the host's: a minor
version only ever *adds* optional exports, imports or frame fields, so a host that knows 1.3
runs a guest built for 1.0..1.3. Anything else is refused with an error that names both
versions and says what to do.
"""

from __future__ import annotations

from .._errors import ABIVersionError

__all__ = [
    "ABI_VERSION",
    "check_abi_compatible",
    "pack_abi_version",
    "pack_abi_word",
    "parse_abi_version",
    "unpack_abi_word",
]

#: The guest ABI version implemented by this host: (major, minor).
#: 1.1 added the optional ``reflow_tick_batch`` export (several ticks per guest call).
ABI_VERSION: tuple[int, int] = (1, 1)


def pack_abi_version() -> str:
    """The host's ABI version as ``"major.minor"`` (``"1.1"``)."""
    return f"{ABI_VERSION[0]}.{ABI_VERSION[1]}"


def parse_abi_version(text: str) -> tuple[int, int]:
    """Parse ``"major.minor"``; raises :class:`~reflow.ABIVersionError` for anything else."""
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise ABIVersionError(
            f"ABI version {text!r} is not of the form 'major.minor' (e.g. {pack_abi_version()!r})",
            guest=(-1, -1),
            host=ABI_VERSION,
        )
    return int(parts[0]), int(parts[1])


def pack_abi_word(version: tuple[int, int]) -> int:
    """The 32-bit form a guest's ``reflow_abi_version`` export returns: major<<16 | minor."""
    major, minor = version
    return ((major & 0xFFFF) << 16) | (minor & 0xFFFF)


def unpack_abi_word(word: int) -> tuple[int, int]:
    """Inverse of :func:`pack_abi_word` (``word`` may arrive as a signed i32)."""
    word &= 0xFFFFFFFF
    return word >> 16, word & 0xFFFF


def check_abi_compatible(
    guest: tuple[int, int] | str,
    host: tuple[int, int] = ABI_VERSION,
    *,
    what: str = "guest",
) -> tuple[int, int]:
    """Return ``guest`` as a tuple if ``host`` can load it, else raise ABIVersionError.

    Compatible means: same major, and guest minor <= host minor. ``what`` names the thing
    being checked in the message (``"pack 'acme/tools'"``, ``"module doubler.wasm"``).
    """
    g = parse_abi_version(guest) if isinstance(guest, str) else (int(guest[0]), int(guest[1]))
    gs, hs = f"{g[0]}.{g[1]}", f"{host[0]}.{host[1]}"
    if g[0] != host[0]:
        if g[0] > host[0]:
            todo = f"upgrade reflow to a release that speaks guest ABI {g[0]}.x"
        else:
            todo = (
                f"rebuild it against the current guest SDK (ABI {hs}) or use an older "
                f"reflow release that speaks ABI {g[0]}.x"
            )
        raise ABIVersionError(
            f"{what} was built for guest ABI {gs} but this host speaks ABI {hs}: the major "
            f"versions differ, so it cannot be loaded; {todo}",
            guest=g,
            host=host,
        )
    if g[1] > host[1]:
        raise ABIVersionError(
            f"{what} was built for guest ABI {gs}, newer than this host's ABI {hs}: upgrade "
            f"reflow to a release that speaks ABI {gs} or later, or rebuild the guest "
            f"against guest SDK {hs}",
            guest=g,
            host=host,
        )
    return g
