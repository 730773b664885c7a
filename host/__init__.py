"""Reflow for Python: a flow-based actor runtime.

Write actors (``class Doubler(Actor)``), wire them into a :class:`Network` and ``run()`` it.
The public names below mirror the ``offbit_reflow`` SDK; everything in ``reflow._*`` modules
is private and may change.
"""

from __future__ import annotations

from ._actor import Actor, ActorCallContext, ActorContext
from ._catalog import register_template, template_actor, template_list
from ._errors import (
    ActorError,
    DuplicateNodeError,
    GraphError,
    GraphFormatError,
    MessageError,
    NetworkError,
    NetworkStateError,
    PortTypeError,
    ReflowError,
    RunTimeout,
    StreamError,
    TickStateError,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
)
from ._events import EventStream
from ._graph import Graph, compose_graphs
from ._messages import Message
from ._network import Collector, Network, RunSummary
from ._scheduler import ActorFailure
from ._streams import Stream, StreamReader
from ._subgraph import SubgraphActor, SubgraphBuilder

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorCallContext",
    "ActorContext",
    "ActorError",
    "ActorFailure",
    "Collector",
    "DuplicateNodeError",
    "EventStream",
    "Graph",
    "GraphError",
    "GraphFormatError",
    "Message",
    "MessageError",
    "Network",
    "NetworkError",
    "NetworkStateError",
    "PortTypeError",
    "ReflowError",
    "RunSummary",
    "RunTimeout",
    "Stream",
    "StreamError",
    "StreamReader",
    "SubgraphActor",
    "SubgraphBuilder",
    "TickStateError",
    "UnknownComponentError",
    "UnknownNodeError",
    "UnknownPortError",
    "__version__",
    "compose_graphs",
    "register_template",
    "template_actor",
    "template_list",
]
