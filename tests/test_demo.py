"""``reflow-demo`` runs end to end: Python, async, library and sandboxed actors."""

from __future__ import annotations

import pytest

from reflow import _demo


def test_demo_prints_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    _demo.main([])
    out = capsys.readouterr().out
    assert "square #5: {'value': 16, 'even': True}" in out
    assert "0 failures" in out
    for total in (4, 7, 10):  # n * 3 in the wasm guest, + 1 in tpl_math_add
        assert f"(tpl_math_add) = {total}" in out
    assert "packets through 2 sync actors" in out
