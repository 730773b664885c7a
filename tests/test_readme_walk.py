"""What a new user walking the README tries next: the obvious variations and mistakes
around each documented call, each answered by a clear ``ReflowError`` naming the thing."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from reflow import Actor, Message, Network, NetworkStateError


class Doubler(Actor):
    component = "doubler"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] * 2)})


def _net() -> Network:
    net = Network()
    net.register_actor("tpl_doubler", Doubler())
    net.add_node("a", "tpl_doubler")
    net.add_initial("a", "in", Message.integer(21))
    return net


BAD_SECONDS = [
    pytest.param(-1, "timeout=-1", id="negative"),
    pytest.param("10", "timeout='10'", id="text"),
    pytest.param(math.nan, "timeout=nan", id="nan"),
    pytest.param(math.inf, "timeout=inf", id="inf"),
    pytest.param(True, "timeout=True", id="bool"),
    pytest.param([1], "timeout=[1]", id="list"),
]


@pytest.mark.parametrize(("timeout", "fragment"), BAD_SECONDS)
def test_run_timeout_is_checked_before_running(timeout: Any, fragment: str) -> None:
    net = _net()
    out = net.collect("a", "out")
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        net.run(timeout=timeout)
    assert fragment in str(info.value)
    assert net.run(timeout=10).ticks == 1  # nothing ran, and the network still works
    assert out.values() == [42]
    net.shutdown()


@pytest.mark.parametrize(("timeout", "fragment"), BAD_SECONDS)
def test_arun_timeout_is_checked_before_running(timeout: Any, fragment: str) -> None:
    net = _net()
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        asyncio.run(net.arun(timeout=timeout))
    assert fragment in str(info.value)
    net.shutdown()


@pytest.mark.parametrize(("wait", "fragment"), [(-1, "wait=-1"), ("5", "wait='5'")])
def test_shutdown_wait_is_checked(wait: Any, fragment: str) -> None:
    net = _net()
    net.start()
    with pytest.raises(NetworkStateError, match="finite number of seconds") as info:
        net.shutdown(wait=wait)
    assert fragment in str(info.value)
    net.shutdown()


@pytest.mark.parametrize("timeout", [None, 0.5, 10, 2.5])
def test_run_timeout_accepts_seconds(timeout: Any) -> None:
    net = _net()
    out = net.collect("a", "out")
    net.run(timeout=timeout)
    assert out.values() == [42]
    net.shutdown()
