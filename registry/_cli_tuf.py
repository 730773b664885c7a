"""``reflow-registry tuf``: the registry's signed metadata (see ``registry/API.md``, "Signed
metadata").

``init`` makes the keys and version 1 of every role: the root and targets keys go to
``--keys DIR`` (move it offline; the server never needs it), the snapshot and timestamp keys
to ``<data>/tuf-online-keys`` (the server signs with them), and ``DIR/root.json`` is what
clients pin (``reflow-pack registry add URL --root root.json``). ``delegate`` re-signs the
namespace delegations after ``key add`` / ``key remove`` (publisher key rotation and
revocation); ``rotate-root`` makes root N+1 signed by the old and the new root keys. Each
change reaches clients at their next refresh.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..tools._term import echo, echo_json
from ._storage import BLOBS_ENV, INDEX_ENV
from ._storage_open import open_storage
from ._tuf_repo import ONLINE_DIR, RepositoryRefusal, TufPolicy, TufRepository, load_signer, new_key

__all__ = ["tuf"]

_keys = click.option(
    "--keys",
    "keys",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the offline keys (root.pem, targets.pem).",
)
_data = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="REFLOW_REGISTRY_DATA",
    default=Path("registry-data"),
    help="The registry's data directory.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON (errors too).")


@contextmanager
def _repo(data: Path, policy: TufPolicy | None = None) -> Iterator[TufRepository]:
    """The repository of the registry in ``data``, which must exist, closed afterwards.
    Refusals are :class:`RepositoryRefusal`; ``reflow-registry`` shows them as one ``error:``
    line."""
    repo = _open(data, policy)
    try:
        yield repo
    finally:
        repo.storage.close()


def _open(data: Path, policy: TufPolicy | None) -> TufRepository:
    index, blobs = os.environ.get(INDEX_ENV) or None, os.environ.get(BLOBS_ENV) or None
    if index is not None:  # the index on PostgreSQL: the online keys stay under data
        return TufRepository(open_storage(data, index, blobs), data / ONLINE_DIR, policy)
    if not (data / "index.sqlite3").is_file():
        raise RepositoryRefusal(
            404,
            "not_a_registry",
            f"{data} is not a registry data directory ('reflow-registry init --data {data}' "
            "makes it one)",
        )
    return TufRepository(open_storage(data, None, blobs), data / ONLINE_DIR, policy)


@click.group()
def tuf() -> None:
    """Signed metadata (TUF): keys, delegations, root rotation."""


@tuf.command("init")
@_data
@_keys
@click.option(
    "--root-expiry", default=365 * 86400, type=click.FloatRange(min=60), show_default=True
)
@_json
def tuf_init(data: Path, keys: Path, root_expiry: float, as_json: bool) -> None:
    """Start signing this registry's metadata; write the offline keys to --keys."""
    with _repo(data, TufPolicy(root=root_expiry, targets=root_expiry)) as repo:
        root = repo.init(keys)
    (keys / "root.json").write_bytes(root)
    if as_json:
        echo_json({"root": str(keys / "root.json"), "keys": str(keys)})
        return
    echo(
        f"signed metadata ready; clients pin {keys / 'root.json'} ('reflow-pack registry add URL "
        f"--root root.json'); keep {keys} (root.pem, targets.pem) offline"
    )


@tuf.command("delegate")
@_data
@_keys
@_json
def tuf_delegate(data: Path, keys: Path, as_json: bool) -> None:
    """Re-sign the namespace delegations to the publisher keys registered now (after 'key
    add' or 'key remove': rotation and revocation)."""
    with _repo(data) as repo:
        version = repo.delegate(load_signer(keys / "targets.pem"))
    if as_json:
        echo_json({"targets_version": version})
        return
    echo(f"targets metadata version {version} signed: delegations follow the registered keys")


@tuf.command("rotate-root")
@_data
@_keys
@click.option(
    "--new-keys",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the new root key (created; its root.pem must not exist).",
)
@_json
def tuf_rotate_root(data: Path, keys: Path, new_keys: Path, as_json: bool) -> None:
    """Replace the root key: root N+1, signed by the old and the new key."""
    with _repo(data) as repo:
        old = load_signer(keys / "root.pem")
        new_keys.mkdir(parents=True, exist_ok=True)
        try:
            fresh = new_key(new_keys / "root.pem")
        except FileExistsError as exc:
            raise RepositoryRefusal(409, "key_exists", f"{new_keys}/root.pem exists") from exc
        root = repo.rotate_root([old], [fresh])
    (new_keys / "root.json").write_bytes(root)
    if as_json:
        echo_json({"root": str(new_keys / "root.json")})
        return
    echo(f"root rotated; new root key in {new_keys} (clients follow at their next refresh)")
