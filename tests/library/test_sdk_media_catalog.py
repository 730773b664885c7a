"""The vector-math, image, audio, video, vector-2d and procedural templates of the
offbit_reflow 0.2.9 catalog exist here with its ids, ports and config keys/defaults (read from
the catalog at test time, so none can drift)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reflow import template_list
from reflow.library import describe_template

FAMILIES = ("vector-math", "image", "audio", "video", "vector-2d", "procedural")


def _catalog_path() -> Path | None:
    env = os.environ.get("REFLOW_SDK_CATALOG")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "anchor-catalog" / "catalog.json" for p in here.parents]
    candidates += [p / "anchor-catalog" / "catalog.json" for p in here.parents]
    return next((p for p in candidates if p.is_file()), None)


_PATH = _catalog_path()
pytestmark = pytest.mark.skipif(_PATH is None, reason="shared/anchor-catalog not found")


def _entries() -> list[dict[str, Any]]:
    if _PATH is None:
        return []
    return [t for t in json.loads(_PATH.read_text()) if t["family"] in FAMILIES]


ENTRIES = _entries()


def test_counts() -> None:
    counts: dict[str, int] = {}
    for t in ENTRIES:
        counts[t["family"]] = counts.get(t["family"], 0) + 1
    assert counts == {
        "vector-math": 25,
        "audio": 22,
        "image": 8,
        "video": 3,
        "vector-2d": 6,
        "procedural": 6,
    }


def test_every_id_is_listed() -> None:
    listed = set(template_list())
    assert sorted(t["id"] for t in ENTRIES if t["id"] not in listed) == []


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda t: t["id"])
def test_ports_and_config_match_catalog(entry: dict[str, Any]) -> None:
    info = describe_template(entry["id"])
    assert info["component"] == entry["id"]
    for port in entry["inports"]:
        if port["name"].startswith("<"):
            # any name in the SDK; here ports are checked at build time (README table)
            assert {"background", "layer0", "layer7"} <= set(info["inports"])
            continue
        assert port["name"] in info["inports"], f"in-port {port['name']}"
    for port in entry["outports"]:
        assert port["name"] in info["outports"], f"out-port {port['name']}"
    config = info["config"]
    assert set(config) >= {c["name"] for c in entry["config"]}
    for c in entry["config"]:
        if c["default"] is not None:
            assert config[c["name"]]["default"] == c["default"], f"config {c['name']}"
    assert info["doc"], "documented"
    assert info["await_all_inports"] == entry["await_all_inports"]
