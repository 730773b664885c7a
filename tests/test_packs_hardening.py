"""Issue #8, the pack loader: ``load_pack`` checks the file (or bytes) it is handed.

A tampered, truncated or extended copy of a pack whose good copy is cached — or loaded — is
refused, never answered with the cached one; a cache whose files were changed on disk is
repaired from a verified file or refused; names that cannot be cache directories are not
looked up. Real packs (built with zig), real signatures, real wasmtime.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reflow import template_list
from reflow._errors import (
    PackError,
    PackFormatError,
    PackIntegrityError,
    PackNotFoundError,
    PackSignatureError,
    ReflowError,
)
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import read_bundle, sha256_hex, write_bundle
from reflow.abi._signing import (
    generate_key,
    load_private_key,
    sign_manifest,
    signatures_to_toml,
    write_keypair,
)
from reflow.tools._pack_build import build_pack

PACKS = Path(__file__).resolve().parent.parent / "packs"
WASM = "artifacts/wasm32-unknown-unknown/math.wasm"


@dataclass
class Built:
    key: Any
    pub: Path
    path: Path
    data: bytes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("hardening")
    priv, pub, _ = write_keypair(root / "keys" / "publisher")
    key = load_private_key(priv)
    path = build_pack(PACKS / "math-wasm", out_dir=root / "dist", key=key)
    return Built(key, pub, path, path.read_bytes())


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built: Built) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    TrustStore().add(built.pub)
    yield
    for p in list_packs():
        unload_pack(p.name)


# -- bad copies of a good pack -----------------------------------------------------------------


def flip_artifact(b: Built) -> bytes:
    bundle = read_bundle(b.data)
    contents = dict(bundle.contents)
    wasm = bytearray(contents[WASM])
    wasm[len(wasm) // 2] ^= 0x01
    contents[WASM] = bytes(wasm)
    return write_bundle(bundle.manifest_bytes, contents, bundle.signature_bytes)


def flip_readme(b: Built) -> bytes:
    bundle = read_bundle(b.data)
    readme = bytearray(bundle.contents["README.md"])
    readme[-1] ^= 0x20
    contents = {**bundle.contents, "README.md": bytes(readme)}
    return write_bundle(bundle.manifest_bytes, contents, bundle.signature_bytes)


def cut(at: Callable[[int], int]) -> Callable[[Built], bytes]:
    return lambda b: b.data[: at(len(b.data))]


def flip_compressed(b: Built) -> bytes:
    data = bytearray(b.data)
    data[len(data) * 3 // 4] ^= 0xFF
    return bytes(data)


BAD: list[tuple[str, Callable[[Built], bytes], type[ReflowError], str]] = [
    ("artifact flipped", flip_artifact, PackIntegrityError, f"{WASM} does not match"),
    ("README flipped", flip_readme, PackIntegrityError, "README.md does not match"),
    ("compressed byte flipped", flip_compressed, PackError, ""),
    ("cut after the header", cut(lambda n: 40), PackFormatError, "truncated"),
    ("cut in the middle", cut(lambda n: n // 2), PackFormatError, "truncated"),
    ("cut in the checksum", cut(lambda n: n - 2), PackFormatError, "truncated"),
    ("one byte short", cut(lambda n: n - 1), PackFormatError, "truncated"),
    ("trailing bytes", lambda b: b.data + b"junk", PackFormatError, "trailing bytes"),
    ("a second frame", lambda b: b.data + b.data, PackFormatError, "a second zstd frame"),
    (
        "re-signed by another key",
        lambda b: resigned(b),
        PackSignatureError,
        "not in the trust store",
    ),
]


def resigned(b: Built) -> bytes:
    bundle = read_bundle(b.data)
    sig = signatures_to_toml([sign_manifest(bundle.manifest_bytes, generate_key())])
    return write_bundle(bundle.manifest_bytes, bundle.contents, sig)


@pytest.mark.parametrize("state", ["cached", "loaded"])
@pytest.mark.parametrize("given", ["path", "bytes"])
@pytest.mark.parametrize(
    ("make", "error", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_copy_is_refused_while_the_good_one_is_cached(
    built: Built,
    tmp_path: Path,
    state: str,
    given: str,
    make: Callable[[Built], bytes],
    error: type[ReflowError],
    fragment: str,
) -> None:
    good = load_pack(built.path)
    if state == "cached":
        unload_pack(good.name)
    bad = make(built)
    source: Any = bad
    if given == "path":
        source = tmp_path / built.path.name
        source.write_bytes(bad)
    with pytest.raises(error) as info:
        load_pack(source)
    assert fragment in str(info.value)
    assert [p.name for p in list_packs()] == ([] if state == "cached" else [good.name])
    # the good file still loads (and the cache was not spoilt by the bad one)
    assert load_pack(built.path).digest == good.digest


def test_a_pack_replaced_after_loading_is_checked_again(built: Built, tmp_path: Path) -> None:
    p = tmp_path / "math.rflpack"
    p.write_bytes(built.data)
    first = load_pack(p)
    p.write_bytes(flip_artifact(built))
    with pytest.raises(PackIntegrityError, match="does not match the manifest"):
        load_pack(p)
    p.write_bytes(built.data[:-10])
    with pytest.raises(PackFormatError, match="truncated"):
        load_pack(str(p))
    p.write_bytes(built.data)
    assert load_pack(p) is first


def test_bytes_given_directly(built: Built) -> None:
    pack = load_pack(built.data)
    assert pack.source == "<bytes>" and "reflow/math/add" in template_list()
    assert load_pack(bytearray(built.data)) is pack
    with pytest.raises(PackFormatError, match="<bytes>: truncated"):
        load_pack(built.data[:-1])


def test_a_verified_file_is_recorded_and_not_verified_twice(built: Built) -> None:
    pack = load_pack(built.path)
    record = json.loads((pack.directory / ".verified").read_text())
    assert set(record) == {sha256_hex(built.data)}
    entry = record[sha256_hex(built.data)]
    assert sorted(entry["members"]) == sorted(read_bundle(built.data).contents)
    assert len(entry["tag"]) == 64


@pytest.mark.parametrize("tag", ["copied", "missing", "zeros"])
def test_a_forged_record_does_not_vouch_for_a_tampered_file(
    built: Built, tmp_path: Path, tag: str
) -> None:
    """Whoever can write the cache cannot make load_pack take a bad file for the good one:
    record entries are authenticated with the user's secret key."""
    pack = load_pack(built.path)
    unload_pack(pack.name)
    bad = flip_artifact(built)
    rec_path = pack.directory / ".verified"
    record = json.loads(rec_path.read_text())
    good = record[sha256_hex(built.data)]
    forged = {
        "members": good["members"],
        "tag": {"copied": good["tag"], "missing": None, "zeros": "0" * 64}[tag],
    }
    record[sha256_hex(bad)] = forged
    rec_path.write_text(json.dumps(record))
    p = tmp_path / "bad.rflpack"
    p.write_bytes(bad)
    with pytest.raises(PackIntegrityError, match="does not match the manifest"):
        load_pack(p)


# -- a cache changed on disk -------------------------------------------------------------------


def _artifact(d: Path) -> Path:
    return d / WASM


CACHE_EDITS: list[tuple[str, Callable[[Path], None], type[ReflowError] | None, str]] = [
    (
        "artifact modified",
        lambda d: _artifact(d).write_bytes(bytes(b ^ 1 for b in _artifact(d).read_bytes())),
        PackIntegrityError,
        "modified after extraction",
    ),
    (
        "artifact is a link",
        lambda d: (_artifact(d).rename(d / "elsewhere"), _artifact(d).symlink_to(d / "elsewhere")),
        PackIntegrityError,
        "missing or not a plain file",
    ),
    (
        "artifact replaced by a directory",
        lambda d: (_artifact(d).unlink(), _artifact(d).mkdir()),
        PackIntegrityError,
        "missing or not a plain file",
    ),
    ("artifact deleted", lambda d: _artifact(d).unlink(), None, ""),
    (
        "artifact directory deleted",
        lambda d: __import__("shutil").rmtree(d / "artifacts"),
        None,
        "",
    ),
    (
        "manifest modified",
        lambda d: (d / "manifest.toml").write_bytes(
            (d / "manifest.toml").read_bytes() + b"\n# x\n"
        ),
        None,
        "",
    ),
    ("signature modified", lambda d: (d / "signature.toml").write_bytes(b"junk = ["), None, ""),
    ("signature deleted", lambda d: (d / "signature.toml").unlink(), None, ""),
    ("complete marker deleted", lambda d: (d / ".complete").unlink(), None, ""),
    ("record garbage", lambda d: (d / ".verified").write_bytes(b"[" * 100_000), None, ""),
    ("record not a table", lambda d: (d / ".verified").write_text("[1, 2]"), None, ""),
    (
        "record lists a missing member",
        lambda d: (d / ".verified").write_text(
            json.dumps(
                {
                    k: {**v, "members": [*v["members"], "nope.txt"]}
                    for k, v in json.loads((d / ".verified").read_text()).items()
                }
            )
        ),
        None,
        "",
    ),
]


@pytest.mark.parametrize(
    ("edit", "error", "fragment"), [c[1:] for c in CACHE_EDITS], ids=[c[0] for c in CACHE_EDITS]
)
def test_a_cache_changed_on_disk(
    built: Built, edit: Callable[[Path], None], error: type[ReflowError] | None, fragment: str
) -> None:
    pack = load_pack(built.path)
    unload_pack(pack.name)
    edit(pack.directory)
    if error is not None:
        with pytest.raises(error, match=fragment):
            load_pack(built.path)
        return
    again = load_pack(built.path)  # from the verified file: repaired
    assert again.digest == pack.digest
    unload_pack(pack.name)
    assert load_pack("reflow/math").digest == pack.digest  # and it verifies by name again


def test_a_cached_manifest_swapped_for_another_signed_one(built: Built) -> None:
    pack = load_pack(built.path)
    unload_pack(pack.name)
    b = read_bundle(built.data)
    other = b.manifest.with_(version="0.9.0").to_toml()
    (pack.directory / "manifest.toml").write_bytes(other)
    (pack.directory / "signature.toml").write_bytes(
        signatures_to_toml([sign_manifest(other, built.key)])
    )
    with pytest.raises(PackIntegrityError, match="not the one the directory was made for"):
        load_pack("reflow/math")


def test_a_cached_manifest_that_is_a_bomb(built: Built) -> None:
    pack = load_pack(built.path)
    unload_pack(pack.name)
    (pack.directory / "manifest.toml").write_bytes(b"x = " + b"[" * 200_000)
    with pytest.raises(PackFormatError, match="nests deeper than 64"):
        load_pack("reflow/math")
    load_pack(built.path)  # the file repairs it


NAMES = [
    "../../etc",
    "reflow/../../x",
    "/nonexistent/x",
    "a\0b",
    "x" * 5000,
    "reflow/math@../x",
    "reflow/math@" + "9" * 5000,
    "",
    "C:\\x",
    "reflow/math/extra",
]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:20] for n in NAMES])
def test_names_that_cannot_be_cache_directories(built: Built, name: str) -> None:
    load_pack(built.path)
    unload_pack("reflow/math")
    with pytest.raises(PackNotFoundError, match="no pack"):
        load_pack(name)


def test_a_missing_or_odd_file(tmp_path: Path) -> None:
    with pytest.raises(PackNotFoundError, match="no pack file"):
        load_pack(tmp_path / "nope.rflpack")
    with pytest.raises(PackFormatError, match="not a plain file"):
        load_pack(tmp_path)
    fifo = tmp_path / "fifo.rflpack"
    os.mkfifo(fifo)
    with pytest.raises(PackError, match="not a plain file"):
        load_pack(fifo)


@pytest.mark.parametrize(
    ("paths", "fragment"),
    [
        (("docs", "docs/x"), "'docs/x' needs 'docs' to be a directory"),
        (("docs/x", "docs"), "'docs' is a file but also a directory"),
        (("README.txt", "readme.txt"), "differs only in case"),
    ],
)
def test_a_signed_manifest_with_clashing_paths_is_refused_before_extraction(
    built: Built, tmp_path: Path, paths: tuple[str, ...], fragment: str
) -> None:
    """A trusted publisher gone rogue: the manifest is signed, its paths would make
    extraction fail (FileExistsError) or collide on a case-insensitive disk."""
    import tomli_w

    b = read_bundle(built.data)
    doc = b.manifest.to_dict()
    doc["files"] += [{"path": p, "sha256": sha256_hex(b"x"), "size": 1} for p in paths]
    m = tomli_w.dumps(doc).encode()
    contents = {**b.contents, **dict.fromkeys(paths, b"x")}
    p = tmp_path / "clash.rflpack"
    p.write_bytes(write_bundle(m, contents, signatures_to_toml([sign_manifest(m, built.key)])))
    with pytest.raises(PackFormatError, match=fragment):
        load_pack(p)
    assert not list((tmp_path / "cache").rglob("docs"))


def test_the_record_secret_is_created_only_by_a_full_verification(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking a record up (every load does, before verifying anything) writes nothing: a
    refused file leaves no trace outside the cache; the first file verified in full creates
    the per-user secret, private to the user."""
    from reflow._loader import _pack_cache

    monkeypatch.setenv("REFLOW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(_pack_cache, "_record_keys", {})
    secret = tmp_path / "config" / "cache.key"
    for _, make, error, _fragment in BAD:
        with pytest.raises(error):
            load_pack(make(built))
        assert not secret.exists(), "a refused file created the record secret"
    load_pack(built.path)
    assert secret.is_file() and (secret.stat().st_mode & 0o077) == 0
