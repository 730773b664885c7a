"""``load_pack("ns/name@range")`` while a pack of that name is loaded: the loaded version is
returned only when it satisfies the range; otherwise a PackError names both (it used to be
returned whatever the range said)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _signed_pack_support import isolated_pack_env, signed_math_pack, trusting

from reflow._errors import PackError, ReflowError
from reflow._loader._packs import list_packs, load_pack


@pytest.fixture(scope="module")
def math_pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return signed_math_pack(tmp_path_factory.mktemp("range"))


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from isolated_pack_env(tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "spec",
    [
        "reflow/math",
        "reflow/math@0.1.0",
        "reflow/math@^0.1",
        "reflow/math@~0.1",
        "reflow/math@*",
        "reflow/math@>=0.1,<0.2",
        "reflow/math@=0.1.0",
    ],
)
def test_loaded_version_in_range_is_returned(math_pack: tuple[Path, Path], spec: str) -> None:
    path, pub = math_pack
    store = trusting(pub)
    loaded = load_pack(path, trust=store)
    assert load_pack(spec, trust=store) is loaded


@pytest.mark.parametrize(
    ("spec", "error", "fragment"),
    [
        ("reflow/math@0.2.0", PackError, r"0\.1\.0 is loaded .* does not satisfy '0\.2\.0'"),
        ("reflow/math@^1", PackError, r"does not satisfy '\^1'.*unload_pack\('reflow/math'\)"),
        ("reflow/math@>=0.2", PackError, r"does not satisfy '>=0\.2'"),
        ("reflow/math@<0.1", PackError, r"does not satisfy '<0\.1'"),
        ("reflow/math@0.1.0-rc.1", PackError, r"does not satisfy '0\.1\.0-rc\.1'"),
        ("reflow/math@not a range!", ReflowError, r"is not a version range"),
        ("reflow/math@1..2", ReflowError, r"is not a version range"),
    ],
)
def test_loaded_version_out_of_range_is_refused(
    math_pack: tuple[Path, Path], spec: str, error: type[Exception], fragment: str
) -> None:
    path, pub = math_pack
    store = trusting(pub)
    load_pack(path, trust=store)
    with pytest.raises(error, match=fragment):
        load_pack(spec, trust=store)
    # the refusal changed nothing: the loaded pack is still the one returned by name
    assert [p.version for p in list_packs()] == ["0.1.0"]


def test_registry_given_does_not_bypass_the_range(math_pack: tuple[Path, Path]) -> None:
    path, pub = math_pack
    store = trusting(pub)
    load_pack(path, trust=store)
    # refused before any connection is tried: nothing listens on this port
    with pytest.raises(PackError, match=r"does not satisfy '\^2'"):
        load_pack("reflow/math@^2", trust=store, registry="http://127.0.0.1:9")
