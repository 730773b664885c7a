"""Issue #8 row 10: ``reflow-pack build`` of a namespaced pack (``acme/my-pack``), the naming the
README recommends, down to a module named like the pack — built with the real zig toolchain,
loaded and run. A module name that cannot be a file name is refused before anything compiles.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reflow import Message, Network, template_actor
from reflow._errors import GuestBuildError, PackFormatError
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import read_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, host_triples
from reflow.abi._signing import write_keypair
from reflow.tools._cli import main
from reflow.tools._guest_build import artifact_name, build_guest
from reflow.tools._pack_build import build_pack, new_project, read_project

HOST = host_triples()[0] if host_triples() else None


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    yield
    for p in list_packs():
        unload_pack(p.name)


def namespaced_project(root: Path, module: str, targets: list[str]) -> Path:
    proj = new_project(root, name="acme/my-pack", targets=targets)
    toml = proj / "pack.toml"
    toml.write_text(toml.read_text().replace('name = "acme_my_pack"', f'name = "{module}"'))
    return proj


@pytest.mark.slow
def test_namespaced_pack_and_module_build_load_and_run(tmp_path: Path) -> None:
    targets = [PORTABLE_TRIPLE, *([HOST] if HOST else [])]
    proj = namespaced_project(tmp_path / "proj", "acme/my-pack", targets)
    priv, pub, _ = write_keypair(tmp_path / "keys" / "me")
    result = CliRunner().invoke(
        main, ["build", str(proj), "--out", str(tmp_path / "dist"), "--sign", str(priv)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "dist" / "acme-my-pack-0.1.0.rflpack"
    assert out.is_file()
    b = read_bundle(out)
    assert b.manifest.entries() == ("acme-my-pack",)
    paths = sorted(b.contents)
    assert f"artifacts/{PORTABLE_TRIPLE}/acme-my-pack.wasm" in paths
    if HOST:
        assert f"artifacts/{HOST}/libacme-my-pack.so" in paths
    assert [t.id for t in b.manifest.templates] == ["acme/my-pack/add"]
    TrustStore().add(pub)
    for prefer in ("native", "wasm"):
        pack = load_pack(out, prefer=prefer)
        net = Network()
        net.register_actor("add", template_actor("acme/my-pack/add"))
        net.add_node("n", "add", {"add": 2})
        got = net.collect("n", "out")
        net.add_initial("n", "in", Message.integer(40))
        net.run(timeout=20)
        net.shutdown()
        assert [m.data() for m in got.messages] == [42]
        unload_pack(pack.name)
    # the same sources give the same bytes, the pack name's '/' never became a directory
    again = build_pack(proj, out_dir=tmp_path / "again", key=None)
    assert again.name == out.name and not (tmp_path / "dist" / "acme").exists()


@pytest.mark.slow
def test_namespaced_pack_with_the_default_module_builds(tmp_path: Path) -> None:
    proj = namespaced_project(tmp_path / "proj", "acme_my_pack", [PORTABLE_TRIPLE])
    path = build_pack(proj, out_dir=tmp_path / "dist")
    assert path.name == "acme-my-pack-0.1.0.rflpack"
    assert read_bundle(path).manifest.name == "acme/my-pack"


BAD_MODULES = [
    ("traversal", "../evil", "is not a module name"),
    ("two slashes", "a/b/c", "is not a module name"),
    ("backslash", "a\\\\b", "is not a module name"),
    ("absolute", "/abs", "is not a module name"),
    ("hidden", ".x", "is not a module name"),
    ("empty", "", "is not a module name"),
    ("too long", "x" * 65, "is not a module name"),
    ("NUL", "a\\u0000b", "is not a module name"),
]


@pytest.mark.parametrize(
    ("module", "fragment"), [b[1:] for b in BAD_MODULES], ids=[b[0] for b in BAD_MODULES]
)
def test_bad_module_names_are_refused_before_compiling(
    tmp_path: Path, module: str, fragment: str
) -> None:
    proj = namespaced_project(tmp_path / "proj", module, [PORTABLE_TRIPLE])
    t0 = time.perf_counter()
    with pytest.raises(PackFormatError, match=fragment) as info:
        build_pack(proj, out_dir=tmp_path / "dist")
    assert time.perf_counter() - t0 < 5  # refused up front: no compiler ran
    assert "modules[0].name" in str(info.value)
    assert not (tmp_path / "dist").exists()


def test_two_modules_with_one_entry(tmp_path: Path) -> None:
    proj = namespaced_project(tmp_path / "proj", "acme/x", [PORTABLE_TRIPLE])
    toml = proj / "pack.toml"
    toml.write_text(
        toml.read_text() + '\n[[modules]]\nname = "acme-x"\nlanguage = "c"\n'
        'sources = ["src/acme_my_pack.c"]\n'
    )
    with pytest.raises(PackFormatError, match="gives entry 'acme-x', as modules\\[0\\] does"):
        read_project(proj)


@pytest.mark.parametrize(
    ("readme", "fragment"),
    [
        ('"../../etc/passwd"', "is not a safe relative path"),
        ('"missing.md"', "cannot read 'missing.md'"),
        ("3", "must be a path"),
    ],
)
def test_bad_readme_paths(tmp_path: Path, readme: str, fragment: str) -> None:
    proj = namespaced_project(tmp_path / "proj", "m", [PORTABLE_TRIPLE])
    toml = proj / "pack.toml"
    toml.write_text(toml.read_text().replace('readme = "README.md"', f"readme = {readme}"))
    with pytest.raises(PackFormatError, match=fragment):
        build_pack(proj, out_dir=tmp_path / "dist")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[pack]\nx = " + "[" * 100_000, "nests deeper than 64"),
        ("[pack]\nx = " + "9" * 5000, "more than 100 digits"),
        ("#" * ((1 << 20) + 1), "over its limit"),
    ],
)
def test_pack_toml_bombs(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "pack.toml").write_text(text)
    with pytest.raises(PackFormatError, match=fragment) as info:
        read_project(tmp_path)
    assert info.value.member.endswith("pack.toml")


def test_guest_build_output_names() -> None:
    assert artifact_name("acme/my-pack", "wasm32") == "acme-my-pack.wasm"
    assert artifact_name("acme/my-pack", "x86_64-linux-gnu") == "libacme-my-pack.so"
    assert artifact_name("acme/my-pack", "aarch64-macos") == "libacme-my-pack.dylib"
    assert artifact_name("acme/my-pack", "x86_64-windows") == "acme-my-pack.dll"
    with pytest.raises(GuestBuildError, match="is not a file name stem"):
        build_guest([__file__], "/tmp", name="../escape")
