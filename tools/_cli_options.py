"""Options several ``reflow-pack`` commands share, declared once so their names, types and
help stay the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["out_dir_option", "sign_option"]

#: ``--out DIR`` for the commands that write packs (``out_dir``; default ``dist``).
out_dir_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Output directory.",
)


def sign_option(help: str = "Private key to sign the pack with.") -> Any:
    """``--sign KEY`` (``key_path``): the private key the written pack(s) are signed with."""
    return click.option(
        "--sign",
        "key_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help,
    )
