"""The runtime core: what runs a graph, with no sandbox and no packs in it.

Layers, lowest first (a module imports only those above it in this list, and
``reflow._errors`` / ``reflow._jsonread``):

* ``_gcdefer`` — holds the collector's full collections back while a graph is built.
* ``_messages`` — the typed :class:`~reflow.Message` and its JSON form.
* ``_actor`` — :class:`~reflow.Actor`, the contexts a tick sees.
* ``_catalog`` — the template registry (ids to actors) that graphs name.
* ``_streams``, ``_events``, ``_workers`` — streams between actors, the trace-event hub, the
  worker threads that run sandboxed ticks off the scheduler thread.
* ``_nodes`` — a node, its edges and their bounded queues (the scheduler's data).
* ``_sched_state`` — the scheduler's state and shared steps: delivery onto bounded edges,
  taking inputs, failure records, the hand-off from other threads.
* ``_sched_async``, ``_sched_workers``, ``_sched_wakes`` — async ticks on the loop, worker
  ticks on the thread pool, ``ctx.wake_after`` timers (each builds on ``_sched_state``).
* ``_scheduler`` — the run loop: who ticks next, backpressure, completion.
* ``_graph_values``, ``_graph_records``, ``_graph_reader`` — the values a graph document
  holds, its records (each written back in its own dialect), reading FBP JSON into them.
* ``_graph`` — :class:`~reflow.Graph`, the graph model.
* ``_graph_compose``, ``_graph_spec`` — composition of graphs; the flat view of a graph that
  a network is built from.
* ``_results`` — what a run gives back: :class:`~reflow.RunSummary`, collectors.
* ``_wiring`` — making and checking a network's nodes and edges (nothing that runs).
* ``_network`` — :class:`~reflow.Network` (wiring plus running it), the public face.
* ``_subgraph`` — a graph used as one actor inside another.
"""
