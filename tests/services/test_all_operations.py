"""Issue #11, test 4: every operation of every shared spec, through its generated template,
against a spec server implementing the same table.

The 19 packs are generated once per session (signed, as ``reflow-pack openapi --all`` does);
each pack then gets one spec server, and one network with a node per operation fires each
operation once with minimal valid inputs (its required keys, from their schemas). Each answer
must be a 2xx valid against the operation's response schema."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key
from reflow.tools._openapi_pack import build_all, find_specs

sys.path.insert(0, str(Path(__file__).parent))
from allops import fire_all

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "openapi"
pytestmark = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared specs) not found"
)
#: Operations still failing, by pack, each with the reason (the spec's own contradiction
#: where no valid request or answer exists). None left: every operation of the 19 packs
#: answers 2xx valid against its schema.
KNOWN: dict[str, dict[str, str]] = {}
NAMES = [n for n, _ in find_specs(SHARED)] if (SHARED / "SOURCES.md").is_file() else []


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], TrustStore]:
    tmp = tmp_path_factory.mktemp("allops")
    key = generate_key()
    store = TrustStore(tmp / "trust")
    store.add(key.public_key())
    built = build_all(SHARED, namespace="acme", out_dir=tmp / "dist", key=key, auth=["bearer"])
    return {p.name.split("/", 1)[1]: p.path for p in built}, store


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_operation_answers_2xx_valid_against_its_schema(
    generated: tuple[dict[str, Path], TrustStore],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    paths, store = generated
    outcome = fire_all(paths[name], store)
    new = {s: m for s, m in outcome.failed.items() if s not in KNOWN.get(name, {})}
    shown = "\n".join(f"{s}: {m}" for s, m in sorted(new.items())[:10])
    assert not new, f"{len(new)} of {name}'s operations failed:\n{shown}"
    assert outcome.passed
