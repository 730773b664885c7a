"""The tick runner of a node with policies: one tick through cache, plugins, retry, breaker,
rate limit and timeout, in that order (outermost first).

A node with policies is run as an ``async`` node whose ``run`` is :meth:`PolicyRunner.run`:
its waits (backoff, tokens, a timeout) are ``await``-ed on the scheduler's event loop and
never block the scheduler thread. Each attempt runs the actor's own ``run`` with a context that
keeps ``done``/``emit`` packets until the tick's outcome is known, so a failed attempt's packets
are discarded and a cached tick's outputs are known; ``send`` still delivers at once, and marks
the tick as never to be retried or cached. Where an attempt runs:

* ``async`` actors: on the event loop; a timeout cancels the attempt.
* ``inline`` actors: on the event loop, as before — or, with ``timeout_s``, on a thread of the
  node's own (the scheduler thread cannot interrupt Python code it runs itself).
* ``worker`` actors: on the worker pool — with ``timeout_s``, on the node's own thread.

A sync attempt (inline or worker) cannot be interrupted: at ``timeout_s`` its tick fails with
:class:`~reflow.TickTimeoutError` (a ``TickTimedOut`` event), whatever it returns later is
discarded (its late ``send`` calls raise), and the node runs no other attempt until the stuck
call returns. A node without policies never sees any of this: it is not wrapped at all.

Policy state (breaker, tokens, cache) is reachable from :meth:`PolicyRunner.snapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._errors import ActorError, CircuitOpenError, PolicyError, TickStateError, TickTimeoutError
from ._actor import ActorContext, BufferedContext
from ._messages import Message
from ._nodes import _NO_QUEUE, _Node
from ._policies import PolicySpec
from ._policies_base import Proceed, TickCall, TickOutcome
from ._policies_state import (
    CircuitBreaker,
    MemoryCache,
    SQLiteCache,
    TokenBucket,
    cache_key,
    cacheable_outputs,
)

__all__ = ["DeadLetter", "PolicyHost", "PolicyRunner", "attach_policies"]

DEAD_LETTERS_KEPT = 10_000
_MATCHED_CHARS = 512  # of an error's text, for retry.match: a bounded search


@dataclass
class DeadLetter:
    """A packet whose tick failed for good (retries exhausted, or a breaker open)."""

    node: str
    inputs: dict[str, Message]
    error: str
    attempts: int


class PolicyHost:
    """What a network's policy nodes share: rate-limit buckets by key, dead letters, runners."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[TokenBucket, float, float]] = {}
        self.dead_letters: list[DeadLetter] = []
        self.dead_letters_dropped = 0
        self.runners: dict[str, PolicyRunner] = {}

    def bucket(
        self, node: str, rate: float, burst: float, key: str | None, clock: Any
    ) -> TokenBucket:
        if key is None:
            return TokenBucket(rate, burst, clock)
        found = self.buckets.get(key)
        if found is None:
            bucket = TokenBucket(rate, burst, clock)
            self.buckets[key] = (bucket, rate, burst)
            return bucket
        bucket, r, b = found
        if (r, b) != (rate, burst):
            raise PolicyError(
                f"policy 'rate_limit.key' of node {node!r}: key {key!r} is shared with another "
                f"node at rate {r:g}, burst {b:g}; expected the same rate and burst, got "
                f"rate {rate:g}, burst {burst:g}",
                node=node,
                key="rate_limit.key",
            )
        return bucket

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


class _Attempt(BufferedContext):
    """The context of one attempt: ``done``/``emit`` are kept (BufferedContext), ``send`` is
    delivered at once and marks the tick sent. On the event loop ``send`` is the inline one;
    on a thread it goes through the scheduler thread. A timed-out attempt's sends raise."""

    __slots__ = ("_abandoned", "_on_thread", "_sent")

    def __init__(self, sched: Any, node: Any, on_thread: bool) -> None:
        super().__init__(sched, node)
        self._on_thread = on_thread
        self._sent = False
        self._abandoned = False

    def _check_send(self) -> None:
        if self._abandoned:
            raise TickStateError(
                f"node {self._node.id!r} sent after its tick timed out; the packets are discarded",
                node=self._node.id,
                component=self._node.component,
            )
        self._sent = True

    def send(self, messages: dict[str, Any]) -> None:
        self._check_send()
        if self._on_thread:
            BufferedContext.send(self, messages)
        else:
            ActorContext.send(self, messages)

    async def asend(self, messages: dict[str, Any]) -> None:
        self._check_send()
        await ActorContext.asend(self, messages)


class _Lane:
    """One daemon thread of a node's own, for sync attempts under a timeout: a call stuck
    past its timeout holds this thread, never a worker of the pool (whose close joins)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)


def _streams_in(pairs: Any) -> bool:
    return any(isinstance(m, dict) and m.get("type") == "Stream" for _, m in pairs)


def _error_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


class PolicyRunner:
    """Runs one node's ticks under its policies (see the module docstring)."""

    def __init__(self, spec: PolicySpec, node: _Node, sched: Any, host: PolicyHost) -> None:
        self.spec = spec
        self.node = node
        self.sched = sched
        self.host = host
        self.inner_run = node.run
        self.inner_mode = node.mode
        self.on_thread = node.mode == "worker" or (node.mode == "inline" and bool(spec.timeout_s))
        self._lane: _Lane | None = None
        self._stuck: threading.Event | None = None  # set when a timed-out sync call returns
        self.timed_out = 0
        self.tick_seq = -1  # ctx.seq of the tick running (durable runs), given to each attempt
        self.retries = 0
        self.cache_hits = 0
        hub = sched.hub
        self.breaker = None
        if spec.breaker is not None:
            b = spec.breaker

            def changed(old: str, new: str) -> None:
                if hub.active:
                    hub.publish("CircuitStateChanged", node.id, old, new)

            self.breaker = CircuitBreaker(b.failures, b.window_s, b.cooldown_s, b.clock, changed)
        self.bucket = None
        if spec.rate is not None:
            r = spec.rate
            self.bucket = host.bucket(node.id, r.rate, r.burst, r.key, r.clock)
        self.cache: MemoryCache | SQLiteCache | None = None
        if spec.cache is not None:
            c = spec.cache
            if c.path is not None:
                try:
                    self.cache = SQLiteCache(c.path, c.ttl_s, c.max_entries, c.clock)
                except PolicyError as exc:
                    raise PolicyError(
                        f"node {node.id!r}: {exc}", node=node.id, key="cache.path"
                    ) from exc
            else:
                self.cache = MemoryCache(c.ttl_s, c.max_entries, c.clock)
        self._chain = self._build_chain()

    # -- installing ---------------------------------------------------------------------------
    def install(self) -> None:
        """Make the node run its ticks through this runner (an async node from now on)."""
        node = self.node
        node.run = self.run
        node.run_batch = None
        node.mode = "async"
        port = self.spec.dead_letter_port
        if port is not None:
            node.routes[port] = _NO_QUEUE  # a new out-port, connected like any other
        self.host.runners[node.id] = self

    def close(self) -> None:
        if isinstance(self.cache, SQLiteCache):
            self.cache.close()

    def snapshot(self) -> dict[str, Any]:
        """The node's policy state, JSON-able (cache entries as codec bytes)."""
        out: dict[str, Any] = {}
        if self.breaker is not None:
            out["circuit_breaker"] = self.breaker.snapshot()
        if self.bucket is not None:
            out["rate_limit"] = self.bucket.snapshot()
        if self.cache is not None:
            out["cache"] = self.cache.snapshot()
        for key, policy in self.spec.plugins:
            out[key] = policy.snapshot()
        return out

    def restore(self, state: dict[str, Any]) -> None:
        if self.breaker is not None and "circuit_breaker" in state:
            self.breaker.restore(state["circuit_breaker"])
        if self.bucket is not None and "rate_limit" in state:
            self.bucket.restore(state["rate_limit"])
        if self.cache is not None and "cache" in state:
            self.cache.restore(state["cache"])
        for key, policy in self.spec.plugins:
            if key in state:
                policy.restore(state[key])

    # -- the chain ----------------------------------------------------------------------------
    def _build_chain(self) -> Proceed:
        spec = self.spec
        step: Proceed = self._attempt
        if self.bucket is not None:
            step = self._wrap(self._limited, step)
        if self.breaker is not None:
            step = self._wrap(self._guarded, step)
        if spec.retry is not None:
            step = self._wrap(self._retried, step)
        for key, policy in reversed(spec.plugins):
            step = self._wrap(self._plugin_layer(key, policy), step)
        if self.cache is not None:
            step = self._wrap(self._cached, step)
        return step

    @staticmethod
    def _wrap(
        layer: Callable[[TickCall, Proceed], Awaitable[TickOutcome]], inner: Proceed
    ) -> Proceed:
        async def step(call: TickCall) -> TickOutcome:
            return await layer(call, inner)

        return step

    def _plugin_layer(
        self, key: str, policy: Any
    ) -> Callable[[TickCall, Proceed], Awaitable[TickOutcome]]:
        node = self.node

        async def layer(call: TickCall, proceed: Proceed) -> TickOutcome:
            outcome = await policy.around(call, proceed)
            if not isinstance(outcome, TickOutcome):
                raise PolicyError(
                    f"policy {key!r} of node {node.id!r}: around() returned a "
                    f"{type(outcome).__name__}, expected a TickOutcome",
                    node=node.id,
                    key=key,
                )
            return outcome

        return layer

    async def run(self, ctx: ActorContext) -> None:
        """The node's ``run`` while it has policies: one tick, all policies applied."""
        node = self.node
        self.tick_seq = getattr(ctx, "_seq", -1)
        call = TickCall(node.id, node.component, ctx.inputs, node.config)
        outcome = await self._chain(call)
        if outcome.ok:
            for port, msg in outcome.pairs:
                ctx.emit(port, msg)
            ctx.done()
            return
        if self.spec.dead_letter or self.spec.retry is not None:
            self._dead_letter(call, outcome)
        if outcome.pairs:  # done() came before the error: its packets go out, as without policies
            self.sched._deliver(node, outcome.pairs)
        if outcome.fail_message is not None:
            ctx.fail(outcome.fail_message)
            return
        assert outcome.error is not None
        raise outcome.error

    # -- each layer ---------------------------------------------------------------------------
    def _publish(self, kind: str, *fields: Any) -> None:
        hub = self.sched.hub
        if hub.active:
            hub.publish(kind, self.node.id, *fields)

    async def _cached(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        assert self.cache is not None and self.spec.cache is not None
        key = cache_key(f"{call.component}\x00{self.spec.cache.version}", call.config, call.inputs)
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                self._publish("CacheHit")
                return TickOutcome(pairs=list(hit), cached=True)
        outcome = await proceed(call)
        if key is not None and outcome.ok and not outcome.sent and cacheable_outputs(outcome.pairs):
            self.cache.put(key, list(outcome.pairs))
        return outcome

    def _retryable(self, outcome: TickOutcome) -> bool:
        retry = self.spec.retry
        assert retry is not None and outcome.error is not None
        if outcome.sent:
            return False
        exc = outcome.error
        names = _error_names(exc)
        if retry.on:
            if not names & set(retry.on):
                return False
        elif isinstance(exc, (CircuitOpenError, PolicyError)):
            return False  # failing fast is the point of an open breaker
        if retry.match is not None:
            text = outcome.fail_message if outcome.fail_message is not None else str(exc)
            if retry.match.search(text[:_MATCHED_CHARS]) is None:
                return False
        return True

    async def _retried(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        retry = self.spec.retry
        assert retry is not None
        attempt = 1
        while True:
            call.attempt = attempt
            outcome = await proceed(call)
            outcome.attempts = attempt
            if outcome.ok or attempt >= retry.attempts or not self._retryable(outcome):
                return outcome
            cap = min(retry.max_delay_s, retry.backoff_s * 2 ** (attempt - 1))
            delay = random.uniform(0.0, cap)  # full jitter; not a secret
            self.retries += 1
            self._publish("PolicyRetry", attempt, delay, _describe(outcome))
            if delay > 0:
                await asyncio.sleep(delay)
            attempt += 1

    async def _guarded(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        breaker = self.breaker
        assert breaker is not None
        wait = breaker.admit()
        if wait > 0:
            node = self.node
            return TickOutcome(
                error=CircuitOpenError(
                    f"node {node.id!r} ({node.component}): circuit breaker is open after "
                    f"{breaker.threshold} failures within {breaker.window_s:g} s; next probe "
                    f"in {wait:.3g} s",
                    node=node.id,
                    component=node.component,
                    retry_after_s=wait,
                )
            )
        try:
            outcome = await proceed(call)
        except BaseException:
            breaker.probing = False
            raise
        if outcome.ok:
            breaker.succeeded()
        else:
            breaker.failed()
        return outcome

    async def _limited(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        assert self.bucket is not None
        wait = self.bucket.reserve()
        if wait > 0:
            self._publish("RateLimited", wait)
            await asyncio.sleep(wait)
        return await proceed(call)

    # -- one attempt --------------------------------------------------------------------------
    async def _attempt(self, call: TickCall) -> TickOutcome:
        node = self.node
        if self._stuck is not None:  # a timed-out sync call still runs: wait for it to return
            stuck = self._stuck
            delay = 0.001
            while not stuck.is_set():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            self._stuck = None
        actx = _Attempt(self.sched, node, self.on_thread)
        actx._seq = self.tick_seq
        actx.inputs = call.inputs
        limit = self.spec.timeout_s
        exc: BaseException | None
        if self.on_thread:
            exc, timed_out = await self._on_thread(actx, limit)
        elif self.inner_mode == "async":
            exc, timed_out = await self._async(actx, limit)
        else:
            timed_out = False
            try:
                self.inner_run(actx)
                exc = None
            except Exception as e:
                exc = e
        if timed_out:
            actx._abandoned = True
            self.timed_out += 1
            self._publish("TickTimedOut", limit)
            return TickOutcome(
                error=TickTimeoutError(
                    f"node {node.id!r} ({node.component}): tick ran past its timeout of "
                    f"{limit:g} s",
                    node=node.id,
                    component=node.component,
                    limit_s=limit or 0.0,
                ),
                sent=actx._sent,
            )
        pairs = list(actx.output_pairs()) if actx._state == 1 else []
        sent = actx._sent or _streams_in(pairs)
        if exc is not None:
            return TickOutcome(pairs=pairs, error=exc, sent=sent)
        if actx._state == 1:
            return TickOutcome(pairs=pairs, sent=sent)
        if actx._state == 2:
            message = actx._error or "failed"
            return TickOutcome(
                error=ActorError(message, node=node.id, component=node.component),
                fail_message=message,
                sent=sent,
            )
        message = (
            "run() returned without calling ctx.done() or ctx.fail(); "
            "each tick must end with exactly one of them"
        )
        return TickOutcome(
            error=ActorError(message, node=node.id, component=node.component),
            fail_message=message,
            sent=sent,
        )

    async def _async(
        self, actx: _Attempt, limit: float | None
    ) -> tuple[BaseException | None, bool]:
        coro = self.inner_run(actx)
        if limit is None:
            try:
                await coro
            except Exception as e:
                return e, False
            return None, False
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return None, True
        try:
            exc = task.exception()
        except asyncio.CancelledError as e:
            exc = e
        return exc, False

    async def _on_thread(
        self, actx: _Attempt, limit: float | None
    ) -> tuple[BaseException | None, bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BaseException | None] = loop.create_future()
        finished = threading.Event()
        run = self.inner_run

        def settle(exc: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(exc)

        def job() -> None:
            exc: BaseException | None = None
            try:
                run(actx)
            except Exception as e:
                exc = e
            finished.set()
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, exc)

        if limit is None:
            self.sched._pool().submit(job)
            return await fut, False
        if self._lane is None:
            self._lane = _Lane(f"reflow-policy-{self.node.id}"[:60])
        self._lane.submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit), False
        except TimeoutError:
            if fut.done():  # finished just as the limit passed
                return fut.result(), False
            self._stuck = finished
            return None, True

    def _dead_letter(self, call: TickCall, outcome: TickOutcome) -> None:
        host = self.host
        error = _describe(outcome)
        letter = DeadLetter(call.node, dict(call.inputs), error, outcome.attempts)
        if len(host.dead_letters) < DEAD_LETTERS_KEPT:
            host.dead_letters.append(letter)
        else:
            host.dead_letters_dropped += 1
        self._publish("DeadLetter", error)
        port = self.spec.dead_letter_port
        if port is not None:
            self.sched._deliver(self.node, [(port, _letter_message(letter))])


def _describe(outcome: TickOutcome) -> str:
    if outcome.fail_message is not None:
        return outcome.fail_message
    exc = outcome.error
    return f"{type(exc).__name__}: {exc}"


def _letter_message(letter: DeadLetter) -> Message:
    inputs: dict[str, Any] = {}
    for port, msg in letter.inputs.items():
        try:
            inputs[port] = Message.from_json(msg.as_json()).as_json()
        except Exception:  # a payload with no JSON form is named, not carried
            inputs[port] = {"type": msg.get("type", "Any"), "data": repr(msg.get("data"))[:200]}
    return Message.object(
        {"node": letter.node, "error": letter.error, "attempts": letter.attempts, "inputs": inputs}
    )


def attach_policies(net: Any, node: _Node, declared: Any) -> None:
    """Check ``declared`` and, when it declares any policy, run ``node`` through it."""
    from ._policies import parse_policies

    spec = parse_policies(node.id, declared, list(node.routes))
    if spec is None:
        return
    host = net._policy_host
    if host is None:
        host = net._policy_host = PolicyHost()
    PolicyRunner(spec, node, net._sched, host).install()
