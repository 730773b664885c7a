"""``reflow-pack compat api-services``: offbit_reflow's ``reflow.pack.api_services`` ids over
operations generated from the shared OpenAPI descriptions; the bare ``api_*`` ids the loaded
pack adds; the SDK's credential variables; what is refused, and how."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sdk_tutorial import OPENAPI, needs

from reflow import Actor, Message, Network, template_actor
from reflow._core._catalog import register_template, template_owner, unregister_template
from reflow._errors import OpenApiError, UnknownComponentError
from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._sdk_ids import ALIASES, SDK_PACK
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, sign_manifest
from reflow.library import describe_template
from reflow.testing import spec_server
from reflow.tools._cli import main as pack_cli
from reflow.tools._openapi_sdk_alias import build_sdk_api_services_pack, sdk_service_tables

#: SDK in-ports the generated operations do not have, and why
NOT_HERE = {
    # the shared GitHub description predates these fields
    "api_github_create_issue": {"type_"},
    "api_github_create_pull_request": {"head_repo"},
    # Slack's token parameter carries the credential: the host fills it, never the graph
    "api_slack_create_admin_apps": {"token"},
    "api_slack_list_admin_apps_approved": {"token"},
    "api_slack_list_admin_apps_requests": {"token"},
    "api_slack_list_admin_apps_restricted": {"token"},
}
#: ids whose operation the shared description does not have (the build says so)
LEFT_OUT = {"api_github_list_security_advisories", "api_github_read_security_advisories"}


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrustStore, Any]:
    needs(OPENAPI)
    tmp = tmp_path_factory.mktemp("sdkpack")
    key = generate_key()
    store = TrustStore(tmp / "trust")
    store.add(key.public_key(), names=[SDK_PACK, "acme/*"])
    pack = build_sdk_api_services_pack(OPENAPI, out_dir=tmp / "dist", key=key)
    assert sorted(n.split(":")[0] for n in pack.report) == sorted(LEFT_OUT)
    return pack.path, store, key


@pytest.fixture
def loaded(
    signed: tuple[Path, TrustStore, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Any]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    pack = load_pack(signed[0], trust=signed[1])
    yield pack
    unload_pack(SDK_PACK)


@pytest.mark.parametrize("alias", [a for a in ALIASES if a.sdk_id not in LEFT_OUT], ids=str)
def test_every_sdk_id_resolves_bare_and_prefixed_with_the_sdk_ports(
    loaded: Any, alias: Any
) -> None:
    bare = describe_template(alias.sdk_id)
    full = describe_template(f"{SDK_PACK}/{alias.sdk_id}")
    assert bare == full
    assert (bare["method"], bare["path"]) == (alias.method, alias.path)
    assert set(alias.inports) - set(bare["inports"]) == NOT_HERE.get(alias.sdk_id, set())
    assert {"response", "error"} <= set(bare["outports"])
    assert template_owner(alias.sdk_id) == SDK_PACK


def test_unloading_the_pack_removes_the_bare_ids(signed: Any, tmp_path: Path) -> None:
    load_pack(signed[0], trust=signed[1], cache_dir=tmp_path / "c")
    assert template_owner("api_github_list_issues") == SDK_PACK
    assert unload_pack(SDK_PACK)
    with pytest.raises(UnknownComponentError, match="unknown component 'api_github_list_issues'"):
        template_actor("api_github_list_issues")


def test_a_bare_id_someone_else_owns_is_not_taken(
    signed: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Mine(Actor):
        inports = ["trigger"]

    register_template("api_slack_send_message", Mine(), owner="python")
    try:
        with caplog.at_level(logging.WARNING, logger="reflow.services"):
            load_pack(signed[0], trust=signed[1], cache_dir=tmp_path / "c")
        assert template_owner("api_slack_send_message") == "python"
        assert template_owner(f"{SDK_PACK}/api_slack_send_message") == SDK_PACK
        assert "python provides 'api_slack_send_message' already" in caplog.text
    finally:
        unload_pack(SDK_PACK)
        unregister_template("api_slack_send_message")


def _other_pack(tmp: Path, key: Any, name: str) -> Path:
    table = sdk_service_tables(OPENAPI)["github"]
    table = {
        **table,
        "operations": {"api_x_list_issues": table["operations"]["api_github_list_issues"]},
    }
    data = json.dumps(table).encode()
    path_in = f"artifacts/{PORTABLE_TRIPLE}/api.json"
    m = PackManifest(
        name=name,
        version="1.0.0",
        abi="1.0",
        templates=(
            TemplateSpec(
                f"{name}/api_x_list_issues", "api", ("trigger",), ("response",), engine="http-api"
            ),
        ),
        artifacts=(artifact_entry("api", PORTABLE_TRIPLE, "http-api", path_in, data),),
        capabilities={"http": ("api.github.com",)},
    )
    out = tmp / f"{name.replace('/', '-')}.rflpack"
    out.write_bytes(build_bundle(m, {path_in: data}, [sign_manifest(m.to_toml(), key)]))
    return out


def test_only_the_sdk_pack_name_gets_bare_ids(signed: Any, tmp_path: Path) -> None:
    path = _other_pack(tmp_path, signed[2], "acme/lookalike")
    load_pack(path, trust=signed[1], cache_dir=tmp_path / "c")
    try:
        assert template_owner("acme/lookalike/api_x_list_issues") == "acme/lookalike"
        assert template_owner("api_x_list_issues") is None
    finally:
        unload_pack("acme/lookalike")


def _run_list_issues(url_pack: Path, store: TrustStore, tmp: Path) -> tuple[Any, Any]:
    load_pack(url_pack, trust=store, cache_dir=tmp / "c")
    try:
        net = Network()
        net.register_actor("src", template_actor("api_github_list_issues"))
        net.add_node("n", "src", {"state": "open"})
        got = net.collect("n", "response")
        net.add_initial("n", "filter", Message.string("assigned"))
        summary = net.run(timeout=30)
        net.shutdown()
        return got, summary
    finally:
        unload_pack(SDK_PACK)


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"GITHUB_API_KEY": "ghp_local"}, "ok"),
        ({"REFLOW_SECRET_REFLOW_PACK_API_SERVICES_GITHUB_API_KEY": "ghp_local"}, "ok"),
        ({"GITHUB_API_KEY": "wrong"}, "(GET /issues) answered 401"),
        ({}, "no credential for security scheme"),
    ],
    ids=["sdk-variable", "reflow-variable", "wrong-key", "no-key"],
)
def test_credentials_come_from_the_sdk_variable(
    signed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], outcome: str
) -> None:
    for k in ("GITHUB_API_KEY", "REFLOW_SECRET_REFLOW_PACK_API_SERVICES_GITHUB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    tables = sdk_service_tables(OPENAPI)
    with spec_server(tables["github"], secrets={"GITHUB_API_KEY": "ghp_local"}) as gh:
        gh.answers["api_github_list_issues"] = [{"number": 1}]
        pack = build_sdk_api_services_pack(
            OPENAPI, out_dir=tmp_path / "d", key=signed[2], servers={"github": gh.url}
        )
        got, summary = _run_list_issues(pack.path, signed[1], tmp_path)
    if outcome == "ok":
        assert summary.ok, summary.failures
        (resp,) = got.values()
        assert resp["status"] == 200 and resp["body"] == [{"number": 1}]
        assert gh.log[0]["headers"]["authorization"] == "Bearer ghp_local"
        assert sorted(gh.log[0]["query"].split("&")) == ["filter=assigned", "state=open"]
    else:
        (failure,) = summary.failures
        assert outcome in failure.error
        assert "api_github_list_issues" in failure.error


def test_an_undeclared_inport_of_an_sdk_id_is_wired_and_fails_its_tick(loaded: Any) -> None:
    net = Network()
    net.register_actor("slack", template_actor("api_slack_send_message"))
    net.add_node("s", "slack", {"channel": "#ops"})
    net.add_initial("s", "routed", Message.object({"number": 1}))  # accepted, as in the SDK
    summary = net.run(timeout=10)
    net.shutdown()
    (failure,) = summary.failures
    assert "unknown key 'routed'" in failure.error and "channel" in failure.error


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--server", "nope=http://127.0.0.1:1"], 1, "--server names no service"),
        (["--server", "github"], 2, "--server takes SERVICE=URL"),
        (["--specs", "/nonexistent/specs"], 1, "not a folder of OpenAPI descriptions"),
        (["--list"], 0, "api_github_list_issues  GET /issues"),
    ],
    ids=["unknown-service", "bad-server", "no-specs", "list"],
)
def test_the_command(tmp_path: Path, args: list[str], code: int, fragment: str) -> None:
    needs(OPENAPI)
    base = ["compat", "api-services", "--specs", str(OPENAPI), "--out", str(tmp_path)]
    r = CliRunner().invoke(pack_cli, [*base, *args])
    assert r.exit_code == code, r.output
    assert fragment in r.output
    assert "Traceback" not in r.output


def test_the_command_builds_a_pack_that_names_what_it_left_out(tmp_path: Path) -> None:
    needs(OPENAPI)
    r = CliRunner().invoke(
        pack_cli, ["compat", "api-services", "--specs", str(OPENAPI), "--out", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    assert "reflow.pack.api_services-0.2.0.rflpack (19 templates, UNSIGNED)" in r.output
    assert "note: api_github_list_security_advisories" in r.output


def test_the_builder_refuses_an_unknown_server_name(tmp_path: Path) -> None:
    needs(OPENAPI)
    with pytest.raises(OpenApiError, match="names no service of the compat pack: jira"):
        build_sdk_api_services_pack(OPENAPI, out_dir=tmp_path, servers={"jira": "http://x"})
