"""What a run reuses instead of computing: the previous attempt's results and failures (a
retry) and the result cache (``cache=True`` steps), looked up and stored by Merkle key.

:class:`Reuse` answers for one run; its lookups do blocking I/O (the cache is SQLite) and
are called off the event loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._cache import MISS, ResultCache
from ._job import JobSpec
from ._run_hooks import PriorFailure

__all__ = ["Reuse"]


class Reuse:
    """``prior``: the retried attempt's values (or :class:`PriorFailure`) by key;
    ``retry_steps``: the steps whose prior failures run again (``None``: all); ``force``:
    the steps whose cached results are not looked up."""

    __slots__ = ("cache", "force", "prior", "retry_steps")

    def __init__(
        self,
        *,
        prior: Mapping[str, Any],
        retry_steps: set[str] | None,
        cache: ResultCache | None,
        force: set[str],
    ) -> None:
        self.prior = prior
        self.retry_steps = retry_steps
        self.cache = cache
        self.force = force

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
        if hit is not MISS:
            return hit
        cache = self.cache_for(spec)
        return MISS if cache is None else cache.get(key)

    def lookup_many(self, spec: JobSpec, keys: list[str]) -> list[Any]:
        """:meth:`lookup` of each key, the cache read in one statement."""
        hits = [self.prior_hit(spec, k) for k in keys]
        cache = self.cache_for(spec)
        if cache is None:
            return hits
        missing = [n for n, h in enumerate(hits) if h is MISS]
        for n, got in zip(missing, cache.get_many([keys[n] for n in missing]), strict=True):
            hits[n] = got
        return hits

    def store_for(self, spec: JobSpec) -> ResultCache | None:
        """The cache ``spec``'s new results go to (forced steps' too), or ``None``."""
        return self.cache if spec.cache else None

    def store(self, spec: JobSpec, key: str, value: Any) -> None:
        cache = self.store_for(spec)
        if cache is not None:
            cache.put(key, value)

    def store_many(self, spec: JobSpec, items: list[tuple[str, Any]]) -> None:
        cache = self.store_for(spec)
        if cache is not None:
            cache.put_many(items)
