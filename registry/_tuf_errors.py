"""The errors of the registry's signed metadata (TUF), under :class:`RegistryError`::

    RegistryError
    ├── MetadataError            signed metadata is missing, malformed, unsigned or too big
    │   ├── UntrustedRegistryError   no trusted root is pinned for this registry
    │   ├── RollbackError        metadata (or a pack list) older than what this client saw
    │   ├── FreezeError          the newest metadata the registry offers has expired
    │   └── KeyRevokedError      signed by a key the registry's delegation no longer lists
    └── RegistryIntegrityError
        └── TargetMismatchError  a pack's bytes are not the signed target (.path)

Each is raised by the client (``reflow.registry._tuf_client``), translated from python-tuf's
exceptions at that one boundary and chained with ``raise ... from exc``.
"""

from __future__ import annotations

from .._errors import RegistryError, RegistryIntegrityError

__all__ = [
    "FreezeError",
    "KeyRevokedError",
    "MetadataError",
    "RollbackError",
    "TargetMismatchError",
    "UntrustedRegistryError",
]


class MetadataError(RegistryError):
    """The registry's signed metadata cannot be trusted: malformed, over its size bound,
    signed by the wrong keys, or inconsistent with the rest. ``role`` names the metadata
    (``root``, ``timestamp``, ``snapshot``, ``targets`` or a namespace)."""

    def __init__(self, message: str, *, role: str = "", url: str = "") -> None:
        super().__init__(message, url=url)
        self.role = role


class UntrustedRegistryError(MetadataError):
    """No trusted root is pinned for the registry: ``reflow-pack registry add URL --root
    root.json`` pins one (the client never trusts a root fetched from the network)."""


class RollbackError(MetadataError):
    """The registry served metadata older than what this client has already verified
    (``seen`` and ``served`` versions): a rollback or a lagging mirror."""

    def __init__(
        self, message: str, *, role: str = "", seen: int = 0, served: int = 0, url: str = ""
    ) -> None:
        super().__init__(message, role=role, url=url)
        self.seen = seen
        self.served = served


class FreezeError(MetadataError):
    """The newest metadata the registry offers has expired: ``expired_at`` (a UNIX time) and
    ``stale_for`` (seconds)."""

    def __init__(
        self,
        message: str,
        *,
        role: str = "",
        expired_at: float = 0.0,
        stale_for: float = 0.0,
        url: str = "",
    ) -> None:
        super().__init__(message, role=role, url=url)
        self.expired_at = expired_at
        self.stale_for = stale_for


class KeyRevokedError(MetadataError):
    """A namespace's metadata is not signed by the keys the registry's (offline-signed)
    targets metadata delegates that namespace to: a removed or foreign publisher key."""


class TargetMismatchError(RegistryIntegrityError):
    """A pack file (or the metadata the JSON API gives for it) differs from the target the
    namespace's publishers signed: ``path`` is the target's path."""

    def __init__(
        self, message: str, *, path: str, what: str, expected: str, actual: str, url: str = ""
    ) -> None:
        super().__init__(message, what=what, expected=expected, actual=actual, url=url)
        self.path = path
