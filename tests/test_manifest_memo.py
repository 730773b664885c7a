"""Parsed manifests remembered in the pack cache (reflow._loader._manifest_memo): a warm
``load_pack`` skips the TOML scan and ``tomllib``; a tampered, misplaced or foreign entry is
never believed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _signed_pack_support import isolated_pack_env, signed_math_pack, trusting

import reflow.abi._bounded as bounded
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow.abi._manifest import parse_manifest, use_manifest_memo


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signed_math_pack(tmp_path_factory.mktemp("memo"))


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from isolated_pack_env(tmp_path, monkeypatch, config=True)


@pytest.fixture
def toml_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = bounded.tomllib.loads

    def counting(text: str) -> object:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(bounded.tomllib, "loads", counting)
    return calls


def _manifest_calls(calls: list[int], size: int) -> int:
    return sum(1 for n in calls if n == size)


def _entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "packs" / ".manifests").rglob("*.json"))


def _load(pack: Path, pub: Path) -> None:
    load_pack(pack, trust=trusting(pub))


def _manifest_size(pack: Path) -> int:
    from reflow.abi._bundle import read_bundle

    return len(read_bundle(pack, head_only=True).manifest_bytes.decode())


def test_a_warm_load_does_not_parse_the_manifest_toml_again(
    signed: tuple[Path, Path], tmp_path: Path, toml_calls: list[int]
) -> None:
    pack, pub = signed
    size = _manifest_size(pack)
    toml_calls.clear()
    _load(pack, pub)
    first = _manifest_calls(toml_calls, size)
    assert first >= 1 and len(_entries(tmp_path)) == 1
    unload_pack("reflow/math")
    toml_calls.clear()
    _load(pack, pub)
    assert _manifest_calls(toml_calls, size) == 0, "the remembered document was used"
    assert {t for t in (p.name for p in list_packs())} == {"reflow/math"}


def _tamper_doc(entry: Path) -> None:
    tag, _, body = entry.read_bytes().partition(b"\n")
    doc = json.loads(body)
    doc["description"] = "swapped by someone who can write the cache"
    entry.write_bytes(tag + b"\n" + json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


def _retag_with_wrong_key(entry: Path) -> None:
    _, _, body = entry.read_bytes().partition(b"\n")
    entry.write_bytes(b"0" * 64 + b"\n" + body)


def _garbage(entry: Path) -> None:
    entry.write_bytes(b"\x00\xff not json")


def _huge(entry: Path) -> None:
    entry.write_bytes(b"x" * (5 << 20))


def _symlink(entry: Path) -> None:
    target = entry.with_name("elsewhere.json")
    target.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(target)


@pytest.mark.parametrize("damage", [_tamper_doc, _retag_with_wrong_key, _garbage, _huge, _symlink])
def test_a_damaged_entry_is_never_believed(
    signed: tuple[Path, Path], tmp_path: Path, toml_calls: list[int], damage: object
) -> None:
    pack, pub = signed
    size = _manifest_size(pack)
    _load(pack, pub)
    unload_pack("reflow/math")
    [entry] = _entries(tmp_path)
    damage(entry)  # type: ignore[operator]
    toml_calls.clear()
    _load(pack, pub)
    assert _manifest_calls(toml_calls, size) >= 1, "the bytes were parsed again"
    [loaded] = list_packs()
    assert loaded.manifest.description != "swapped by someone who can write the cache"
    unload_pack("reflow/math")
    toml_calls.clear()
    _load(pack, pub)  # the entry was rewritten: believed again
    assert _manifest_calls(toml_calls, size) == 0


def test_an_entry_copied_to_another_digest_is_not_believed(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    pack, pub = signed
    _load(pack, pub)
    [entry] = _entries(tmp_path)
    from reflow._loader._manifest_memo import CachedManifests

    memo = CachedManifests(tmp_path / "cache" / "packs")
    good = entry.stem
    other = "f" * 64
    dest = entry.parent.parent / other[:2] / f"{other}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(entry.read_bytes())
    assert memo.get(good) is not None
    assert memo.get(other) is None
    assert memo.get("../../etc/passwd") is None


def test_outside_load_pack_nothing_is_remembered(signed: tuple[Path, Path], tmp_path: Path) -> None:
    pack, _ = signed
    from reflow.abi._bundle import read_bundle

    parse_manifest(read_bundle(pack, head_only=True).manifest_bytes)
    assert _entries(tmp_path) == []
    with use_manifest_memo(None):
        parse_manifest(read_bundle(pack, head_only=True).manifest_bytes)
    assert _entries(tmp_path) == []
