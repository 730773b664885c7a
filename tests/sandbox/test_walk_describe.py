"""``describe_template`` of a guest template (README "Built-in actors", "Load a pack"): the
description and config keys the guest itself declares, not the engine's class docstring."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow import default_engine
from reflow._core._catalog import register_template, unregister_template
from reflow.library import describe_template
from reflow.tools import build_guest

SOURCE = r"""
#include "reflow.h"

static int add_tick(reflow_ctx *ctx) {
    reflow_msg in;
    if (!reflow_input(ctx, "in", &in) || in.kind != REFLOW_INTEGER)
        return reflow_fail(ctx, "expected an Integer on 'in'");
    reflow_output(ctx, "out", reflow_integer(in.i + reflow_config_int(ctx, "add", 1)));
    return reflow_done(ctx);
}

REFLOW_TEMPLATES(
    {.id = "walk/add", .description = "Adds config.add to an Integer.",
     .inports = "in", .outports = "out",
     .config_schema = "{\"type\":\"object\",\"properties\":{\"add\":{\"type\":\"integer\"}}}",
     .tick = add_tick},
    {.id = "walk/bare", .inports = "in", .outports = "out", .tick = add_tick},
)
"""


@pytest.fixture(scope="module")
def module_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("walk-src") / "walk.c"
    src.write_text(SOURCE)
    return build_guest([src], src.parent / "build", name="walk", targets=["wasm32"])["wasm32"]


@pytest.mark.parametrize(
    ("template", "doc", "config"),
    [
        ("walk/add", "Adds config.add to an Integer.", {"add": {"type": "integer"}}),
        ("walk/bare", None, {}),  # no description: the actor's own docstring
    ],
)
def test_guest_template_describes_itself(
    module_wasm: Path, template: str, doc: str | None, config: dict[str, object]
) -> None:
    module = default_engine().load(module_wasm)
    actor = module.actor(template)
    register_template(template, actor)
    try:
        info = describe_template(template)
    finally:
        unregister_template(template)
    assert info["inports"] == ["in"] and info["outports"] == ["out"]
    assert info["config"] == config
    if doc is not None:
        assert info["doc"] == doc
    else:
        assert info["doc"]  # something, never empty
