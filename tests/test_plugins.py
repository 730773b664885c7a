"""reflow._loader._plugins / reflow.hookspecs: the hook machinery, tested below load_pack too."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from reflow import Actor, Message, Network, template_actor, template_list
from reflow._core._catalog import register_template, unregister_template
from reflow._errors import PackError, TemplateConflictError
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._plugins import (
    NativeEnginePlugin,
    WasmEnginePlugin,
    engine_for,
    forward_network_events,
    load_plugin_templates,
    plugin_manager,
    register_plugin,
    template_owner,
    unregister_plugin,
)
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, sign_manifest
from reflow.hookspecs import ArtifactEngine, hookimpl


class Upper(Actor):
    component = "upper"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.string(ctx.inputs["in"]["data"].upper())})


class PyEngine:
    """A third-party engine for a new artifact kind: the artifact names Python actors."""

    kind = "pyactor"

    def __init__(self) -> None:
        self.loaded: list[Path] = []

    @hookimpl
    def reflow_pack_engine(self, kind: str) -> ArtifactEngine | None:
        return self if kind == self.kind else None

    def load_artifact(
        self,
        path: Path,
        *,
        artifact: Any,
        templates: Sequence[TemplateSpec],
        manifest: PackManifest,
        grants: Any,
    ) -> Mapping[str, Actor]:
        self.loaded.append(path)
        assert path.read_bytes() == b"upper"
        return {t.id: Upper() for t in templates}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrustStore]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    store = TrustStore(tmp_path / "trust")
    yield store
    for p in list_packs():
        unload_pack(p.name)


def py_pack(tmp_path: Path, store: TrustStore) -> Path:
    key = generate_key()
    store.add(key.public_key())
    art = artifact_entry("up", PORTABLE_TRIPLE, "pyactor", "artifacts/up.py", b"upper")
    m = PackManifest(
        name="acme/upper",
        version="1.0.0",
        abi="1.0",
        templates=(TemplateSpec("acme/upper", "up", ("in",), ("out",)),),
        artifacts=(art,),
    )
    path = tmp_path / "upper.rflpack"
    path.write_bytes(
        build_bundle(m, {"artifacts/up.py": b"upper"}, [sign_manifest(m.to_toml(), key)])
    )
    return path


def test_builtin_engines_are_plugins() -> None:
    pm = plugin_manager()
    assert isinstance(pm.get_plugin("reflow.engine.wasm"), WasmEnginePlugin)
    assert isinstance(pm.get_plugin("reflow.engine.native"), NativeEnginePlugin)
    assert engine_for("wasm").kind == "wasm" and engine_for("native").kind == "native"
    assert isinstance(engine_for("wasm"), ArtifactEngine)
    assert engine_for("extism").kind == "extism"
    with pytest.raises(
        PackError,
        match="no engine for artifacts of kind 'jvm'; engines: extism, http-api, native, wasm",
    ):
        engine_for("jvm")


def test_plugin_engine_loads_a_new_artifact_kind(tmp_path: Path, env: TrustStore) -> None:
    path = py_pack(tmp_path, env)
    with pytest.raises(PackError, match="no engine for artifacts of kind 'pyactor'"):
        load_pack(path, trust=env)
    assert "acme/upper" not in template_list()
    engine = PyEngine()
    name = register_plugin(engine)
    try:
        pack = load_pack(path, trust=env)
        assert engine.loaded == [pack.directory / "artifacts" / "up.py"]
        net = Network()
        net.register_actor("u", template_actor("acme/upper"))
        net.add_node("u", "u")
        coll = net.collect("u", "out")
        net.add_initial("u", "in", Message.string("abc"))
        net.run(timeout=5)
        net.shutdown()
        assert coll.messages == [Message.string("ABC")]
        assert template_owner("acme/upper") == "acme/upper"
    finally:
        unregister_plugin(name)


def test_newest_engine_plugin_wins() -> None:
    class Replacement:
        kind = "wasm"

        @hookimpl
        def reflow_pack_engine(self, kind: str) -> Any:
            return self if kind == "wasm" else None

    r = Replacement()
    register_plugin(r, name="replacement")
    try:
        assert engine_for("wasm") is r
    finally:
        unregister_plugin("replacement")
    assert isinstance(engine_for("wasm"), WasmEnginePlugin)


def test_reflow_templates_hook_and_conflicts() -> None:
    class Lib:
        @hookimpl
        def reflow_templates(self) -> dict[str, Actor]:
            return {"lib/upper": Upper()}

    register_plugin(Lib(), name="lib")
    try:
        assert "lib/upper" in load_plugin_templates()
        assert "lib/upper" in template_list()
        assert template_owner("lib/upper") == "plugin:lib"
        assert "lib/upper" in load_plugin_templates()  # idempotent
        unregister_template("lib/upper")
        register_template("lib/upper", Upper(), owner="somebody")
        with pytest.raises(TemplateConflictError, match="already provided by somebody"):
            load_plugin_templates()
    finally:
        unregister_plugin("lib")
        unregister_template("lib/upper")


def test_templates_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import reflow._loader._plugins as plugins

    ep = EntryPoint(name="demo", value="tests_demo_templates:TEMPLATES", group="reflow.templates")
    module = type(__import__("sys"))("tests_demo_templates")
    module.TEMPLATES = {"demo/upper": Upper()}  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "tests_demo_templates", module)
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [ep] if group == "reflow.templates" else []
    )
    try:
        assert "demo/upper" in load_plugin_templates()
        assert template_owner("demo/upper") == "reflow.templates:demo"
    finally:
        unregister_template("demo/upper")


def test_network_events_reach_observers() -> None:
    events: list[str] = []

    class Observer:
        @hookimpl
        def reflow_network_event(self, event: dict[str, Any]) -> None:
            events.append(event["_type"])

    net = Network()
    net.register_actor("u", Upper())
    net.add_node("u", "u")
    assert forward_network_events(net.events()) is None  # nobody listens: nothing runs
    register_plugin(Observer(), name="observer")
    try:
        thread = forward_network_events(net.events())
        assert thread is not None
        net.add_initial("u", "in", Message.string("x"))
        net.run(timeout=5)
        net.shutdown()
        thread.join(timeout=5)
        deadline = time.monotonic() + 2
        while "NetworkShutdown" not in events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "ActorCompleted" in events and "NetworkShutdown" in events
    finally:
        unregister_plugin("observer")
