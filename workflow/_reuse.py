"""What a run reuses instead of computing: the previous attempt's results and failures (a
retry) and the result cache (``cache=True`` steps), looked up and stored by Merkle key.

:class:`Reuse` answers for one run; its lookups do blocking I/O (the cache is SQLite) and
are called off the event loop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from ._cache import MISS, ResultCache
from ._errors import WorkflowError, shown
from ._job import JobSpec
from ._run_hooks import PriorFailure
from ._types import strip

__all__ = ["Reuse"]


def _paths_exist(spec: JobSpec, value: Any) -> bool:
    """reflow-hpc's check of a cached ``Path``/``list[Path]`` result: every file exists (a
    value that is not a path is trusted)."""
    t = strip(spec.returns)
    try:
        if t is Path:
            return Path(value).exists()
        if get_origin(t) is list and [strip(a) for a in get_args(t)] == [Path]:
            return all(Path(p).exists() for p in value)
    except (TypeError, ValueError, OSError):
        return True
    return True


class Reuse:
    """``prior``: the retried attempt's values (or :class:`PriorFailure`) by key;
    ``retry_steps``: the steps whose prior failures run again (``None``: all); ``force``:
    the steps whose cached results are not looked up."""

    __slots__ = ("cache", "force", "prior", "retry_steps", "verify")

    def __init__(
        self,
        *,
        prior: Mapping[str, Any],
        retry_steps: set[str] | None,
        cache: ResultCache | None,
        force: set[str],
        verify: bool = False,
    ) -> None:
        self.prior = prior
        self.retry_steps = retry_steps
        self.cache = cache
        self.force = force
        self.verify = verify

    def wanted(self, spec: JobSpec) -> bool:
        """Whether any of ``spec``'s results could be found (else skip the lookups)."""
        return self.cache_for(spec) is not None or bool(self.prior)

    def cache_for(self, spec: JobSpec) -> ResultCache | None:
        """The cache ``spec``'s results are looked up in (``None``: not cached or forced)."""
        if self.cache is None or not spec.cache or spec.name in self.force:
            return None
        return self.cache

    def prior_hit(self, spec: JobSpec, key: str) -> Any:
        """What the run being retried left under ``key`` (a result or a failure kept), else
        :data:`MISS`."""
        hit = self.prior.get(key, MISS) if self.prior else MISS
        if isinstance(hit, PriorFailure) and (
            self.retry_steps is None or spec.name in self.retry_steps
        ):
            return MISS  # this step's failures run again
        return hit

    def lookup(self, spec: JobSpec, key: str) -> Any:
        hit = self.prior_hit(spec, key)
        if hit is MISS:
            cache = self.cache_for(spec)
            hit = MISS if cache is None else cache.get(key)
        return self.verified(spec, hit)

    def verified(self, spec: JobSpec, hit: Any) -> Any:
        """``hit``, or :data:`MISS` when a ``verify=True`` run finds it no longer valid
        (reflow-hpc's rule: the job's ``verify(value)``, else for a ``Path`` or ``list[Path]``
        result whether the files exist); a ``verify`` that raises fails the job with a
        :class:`WorkflowError` naming it."""
        if not self.verify or hit is MISS or isinstance(hit, PriorFailure):
            return hit
        try:
            ok = bool(spec.verify(hit)) if spec.verify is not None else _paths_exist(spec, hit)
        except Exception as exc:
            raise WorkflowError(
                f"job {spec.name!r}: verify({shown(hit)}) raised {type(exc).__name__}: "
                f"{shown(exc, 200)}",
                step=spec.name,
            ) from None
        return hit if ok else MISS

    def lookup_many(self, spec: JobSpec, keys: list[str]) -> list[Any]:
        """:meth:`lookup` of each key, the cache read in one statement."""
        hits = [self.prior_hit(spec, k) for k in keys]
        cache = self.cache_for(spec)
        if cache is not None:
            missing = [n for n, h in enumerate(hits) if h is MISS]
            for n, got in zip(missing, cache.get_many([keys[n] for n in missing]), strict=True):
                hits[n] = got
        return [self.verified(spec, h) for h in hits] if self.verify else hits

    def store_for(self, spec: JobSpec) -> ResultCache | None:
        """The cache ``spec``'s new results go to (forced steps' too), or ``None``."""
        return self.cache if spec.cache else None

    def store(self, spec: JobSpec, key: str, value: Any) -> list[str]:
        """Store a result; returns why it was not (``[]``: stored, or not a cached step)."""
        return self.store_many(spec, [(key, value)])

    def store_many(self, spec: JobSpec, items: list[tuple[str, Any]]) -> list[str]:
        """Store results; returns why each one not stored was not (its type, pickle's error)."""
        refused: list[str] = []
        cache = self.store_for(spec)
        if cache is not None:
            cache.put_many(items, refused=refused)
        return refused
