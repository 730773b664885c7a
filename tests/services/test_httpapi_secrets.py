"""Credentials never leak, and 1,000 requests in flight need no 1,000 threads."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import pytest
from svctest import Packs, op, param, table

from reflow import Message, Network
from reflow._core._catalog import template_actor
from reflow.testing import spec_server

SECRET = "SEKRIT-7f3a9c-do-not-leak"


def keyed(where: str) -> dict[str, Any]:
    return table(
        {
            "get_thing": op(
                "GET",
                "/things/{id}",
                [param("id", "path", {"type": "integer", "maximum": 100})],
                security=[{"key": []}],
            )
        },
        schemes={"key": {"type": "apiKey", "in": where, "name": "api_key"}},
    )


def run_all(template: str, configs: list[dict[str, Any]]) -> tuple[list[Any], list[Any], str]:
    net = Network()
    net.register_actor("t", template_actor(template))
    events = net.events()
    colls = []
    for i, cfg in enumerate(configs):
        net.add_node(f"n{i}", "t", cfg)
        colls.append(net.collect(f"n{i}", "response"))
        net.add_initial(f"n{i}", "trigger", Message.flow())
    try:
        summary = net.run(timeout=60)
    finally:
        net.shutdown()
    seen = [repr(e) for e in events]
    texts = [repr(m) for c in colls for m in c.messages]
    fails = [f"{f!r} {f}" for f in summary.failures]
    return texts + fails, seen, "\n".join(fails)


@pytest.mark.parametrize("where", ["header", "query", "cookie"])
def test_secret_never_appears_anywhere(
    packs: Packs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_KEY", SECRET)
    t = keyed(where)
    with spec_server(t, secrets={"key": SECRET}) as srv:
        t["servers"] = [{"url": srv.url}]
        pack = packs.load(t, srv.url)
        tid = "acme/svc/get_thing"
        srv.fail_next(2, 503)
        outs, evs, _ = run_all(
            tid,
            [
                {"id": 1},  # success after 5xx retries
                {"id": 1000},  # validation failure
                {"id": 2, "_http": {"retries": 0, "timeout_s": 0.000001}},  # timeout
            ],
        )
        assert srv.log and any(SECRET in str(entry) for entry in srv.log)  # it was sent
        monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_KEY", SECRET + "x")
        outs2, evs2, fails = run_all(tid, [{"id": 3}])  # 401
        assert "answered 401" in fails
    blob = "\n".join([*outs, *evs, *outs2, *evs2, repr(pack), repr(pack.templates)])
    blob += "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    blob += "".join(traceback.format_exception(RuntimeError(fails)))
    assert SECRET not in blob


@pytest.mark.slow
def test_a_thousand_requests_in_flight_use_few_threads(packs: Packs) -> None:
    t = table({"get_thing": op("GET", "/things/{id}", [param("id", "path", {"type": "integer"})])})
    n = 1000
    with spec_server(t) as srv:
        t["servers"] = [{"url": srv.url}]
        packs.load(t, srv.url)
        srv.hold_until(n)  # nobody is answered until all 1,000 have arrived
        peak = [threading.active_count()]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], threading.active_count())
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        before = threading.active_count()
        outs, _, fails = run_all("acme/svc/get_thing", [{"id": i} for i in range(n)])
        stop.set()
        watcher.join()
    assert not fails, fails[:500]
    assert srv.total == n and len([o for o in outs if "200" in o]) == n
    assert peak[0] - before < 20, (before, peak[0])


def test_reflow_secret_plugin_comes_before_the_environment(
    packs: Packs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow._loader._plugins import register_plugin, unregister_plugin
    from reflow.hookspecs import hookimpl

    asked: list[tuple[str, str]] = []

    class Vault:
        @hookimpl
        def reflow_secret(self, pack: str, scheme: str) -> str | None:
            asked.append((pack, scheme))
            return SECRET

    monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_KEY", "env-value-loses")
    t = keyed("header")
    with spec_server(t, secrets={"key": SECRET}) as srv:
        t["servers"] = [{"url": srv.url}]
        packs.load(t, srv.url)
        name = register_plugin(Vault())
        try:
            _outs, _, fails = run_all("acme/svc/get_thing", [{"id": 1}])
        finally:
            unregister_plugin(name)
    assert not fails and asked == [("acme/svc", "key")]
