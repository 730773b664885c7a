"""The registry app's publishing endpoints: ``PUT`` a version, and yank / unyank it.

A publish streams the body into a temp blob, counting bytes against the upload limit (413
``too_large``), then, in a worker thread, verifies the pack exactly as ``load_pack`` would —
container and member hashes, manifest name and version against the URL, ABI version, the
signature against the namespace's registered keys — builds the slim per-triple variants,
commits every blob (fsync, rename) and only then commits the index row. Checking and
re-packing stream from the temp file (``scan_bundle``, ``stream_bundle``), so a publish holds
about one zstd context and a few chunks in memory whatever the pack's size.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    ABIVersionError,
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    UntrustedKeyError,
)
from ..abi._bundle import BundleScan, scan_bundle, stream_bundle
from ..abi._signing import key_id as key_id_of
from ..abi._signing import load_public_key, verify_manifest
from ..abi._version import ABI_VERSION, check_abi_compatible
from ._app_state import (
    DRAIN_LIMIT,
    APIError,
    RegistryState,
    json_body,
    names_of,
    registry_of,
    require,
    version_doc,
    version_or_404,
)
from ._semver import precedence
from ._storage import (
    BlobUpload,
    Storage,
    StorageConflict,
    StorageFull,
    VariantRecord,
    VersionConflict,
    VersionRecord,
)
from ._variants import variant_members

_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


async def publish(request: Request) -> Response:
    ns, name, ver = names_of(request, version=True)
    reg = registry_of(request)
    who = require(request, "publish", ns)
    if reg.storage.get_namespace(ns) is None:
        raise APIError(404, "namespace_not_found", f"no namespace {ns!r}")
    existing = reg.storage.get_version(ns, name, ver)
    if existing is None:
        _refuse_same_precedence(reg, ns, name, ver)
    limit = reg.config.max_upload
    declared = _declared_length(request)
    if existing is not None and declared is not None and declared != existing.size:
        raise _version_exists(ns, name, ver)  # cannot be the same file: no need to read it
    if declared is not None and declared > limit:
        await _drain(request, declared)
        raise APIError(
            413,
            "too_large",
            f"the pack is {declared} bytes; this registry accepts at most {limit}",
            limit=limit,
        )
    if reg.uploads >= reg.config.max_uploads:
        raise APIError(
            503,
            "too_many_uploads",
            f"this registry takes {reg.config.max_uploads} uploads at once and is "
            f"busy; retry in {reg.config.retry_after} s",
            retry_after=reg.config.retry_after,
        )
    reg.uploads += 1
    try:
        if existing is not None:
            return await _republish(request, reg, existing)
        return await _publish_new(request, reg, ns, name, ver, who)
    finally:
        reg.uploads -= 1


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if _CONTENT_LENGTH.fullmatch(declared.strip()) is None:
        raise APIError(400, "bad_request", "Content-Length is not a number")
    return int(declared.strip())


def _version_exists(ns: str, name: str, ver: str) -> APIError:
    return APIError(
        409,
        "version_exists",
        f"{ns}/{name} {ver} is already published with different bytes; versions "
        "are immutable, publish a new version",
    )


def _no_room(ns: str, name: str, ver: str, exc: StorageFull) -> APIError:
    return APIError(
        507,
        "insufficient_storage",
        f"the registry has no room to store {ns}/{name} {ver} ({exc}); nothing "
        "was published, try again once its disk has space",
    )


async def _receive(
    request: Request,
    limit: int,
    write: Callable[[bytes], None],
    drop: Callable[[], None],
    label: tuple[str, str, str],
) -> int:
    """Feed the body to ``write``; the byte count. Over ``limit`` (413) or no room (507):
    ``drop`` what was kept, read what the client still sends (bounded), then raise."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                drop()
                await _drain(request, None)
                raise APIError(
                    413,
                    "too_large",
                    f"the upload is over this registry's limit of {limit} bytes",
                    limit=limit,
                )
            try:
                write(chunk)
            except StorageFull as exc:
                drop()
                await _drain(request, None)
                raise _no_room(*label, exc) from exc
    except ClientDisconnect as exc:
        raise APIError(400, "incomplete_upload", "the client went away mid-upload") from exc
    if size == 0:
        raise APIError(400, "empty_body", "the body must be the .rflpack file")
    return size


async def _republish(request: Request, reg: RegistryState, existing: VersionRecord) -> Response:
    """The version exists: the same bytes again are a success that changes nothing (200,
    ``unchanged``); anything else is 409. Only hashed, never written to disk."""
    digest = hashlib.sha256()
    ns, name, ver = existing.namespace, existing.name, existing.version
    size = await _receive(
        request, reg.config.max_upload, digest.update, lambda: None, (ns, name, ver)
    )
    if size != existing.size or digest.hexdigest() != existing.sha256:
        raise _version_exists(ns, name, ver)
    return JSONResponse({**version_doc(request, existing), "unchanged": True})


async def _publish_new(
    request: Request, reg: RegistryState, ns: str, name: str, ver: str, who: str
) -> Response:
    try:
        upload = reg.storage.new_upload()
    except StorageFull as exc:
        raise _no_room(ns, name, ver, exc) from exc
    try:
        await _receive(
            request, reg.config.max_upload, upload.write, upload.discard, (ns, name, ver)
        )
        try:
            upload.finish()
            rec, unchanged = await anyio.to_thread.run_sync(
                _verify_and_store, reg, upload, ns, name, ver, who
            )
        except StorageFull as exc:
            raise _no_room(ns, name, ver, exc) from exc
    finally:
        upload.discard()  # a no-op once committed (the file was renamed to its blob)
    return JSONResponse(
        {**version_doc(request, rec), "unchanged": unchanged}, status_code=200 if unchanged else 201
    )


async def _drain(request: Request, declared: int | None) -> None:
    """Read and drop what the client still sends (at most ``DRAIN_LIMIT`` bytes), so an
    HTTP/1.1 client that writes its whole body before reading gets the error response."""
    if declared is not None and declared > DRAIN_LIMIT:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT:
                return
    except (ClientDisconnect, APIError):  # gone, or too slow (408): answer anyway
        return


def _write_blob(storage: Storage, chunks: Iterable[bytes]) -> BlobUpload:
    part = storage.new_upload()
    try:
        for chunk in chunks:
            part.write(chunk)
        part.finish()
    except BaseException:
        part.discard()
        raise
    return part


def _verify_and_store(
    reg: RegistryState, upload: BlobUpload, ns: str, name: str, ver: str, who: str
) -> tuple[VersionRecord, bool]:
    """Verify the uploaded pack, write its variants, commit every blob, then the index row
    (worker thread). Returns the row and whether it was there already, with these bytes
    (a racing publish of the identical file won)."""
    scan, signer = _verify(reg, upload.path, ns, name, ver)
    _refuse_published_elsewhere(reg, scan, ns)
    m = scan.manifest
    parts: list[tuple[str, BlobUpload]] = []
    try:
        with reg.builds:
            for triple, keep in variant_members(scan):
                parts.append(
                    (triple, _write_blob(reg.storage, stream_bundle(upload.path, scan, keep)))
                )
        variants = tuple(VariantRecord(t, reg.storage.commit_blob(p), p.size) for t, p in parts)
    finally:
        for _, p in parts:
            p.discard()  # a no-op for those committed
    size = upload.size
    sha = reg.storage.commit_blob(upload)
    rec = VersionRecord(
        namespace=ns,
        name=name,
        version=ver,
        sha256=sha,
        size=size,
        manifest=scan.manifest_bytes,
        signature=scan.signature_bytes or b"",
        key_id=signer,
        abi=m.abi,
        description=m.description,
        templates=tuple(t.id for t in m.templates),
        triples=m.triples(),
        published_at=time.time(),
        published_by=who,
        variants=variants,
    )
    with reg.publish_lock:
        _refuse_published_elsewhere(reg, scan, ns)
        try:
            reg.storage.add_version(rec)
        except VersionConflict as exc:
            raise _version_conflict(ns, name, ver, exc.existing) from exc
        except StorageConflict as exc:
            won = reg.storage.get_version(ns, name, ver)
            if won is not None and (won.sha256, won.size) == (sha, size):
                return won, True
            raise _version_exists(ns, name, ver) from exc
    return rec, False


def _version_conflict(ns: str, name: str, ver: str, existing: str) -> APIError:
    return APIError(
        409,
        "version_conflict",
        f"{ns}/{name} {existing} is already published and {ver} has the same "
        "version precedence (build metadata does not count), so a range could "
        "not tell them apart; publish a higher version",
        existing=existing,
    )


def _refuse_same_precedence(reg: RegistryState, ns: str, name: str, ver: str) -> None:
    """Fail fast, before the upload, on ``1.0.10+rebuild`` next to ``1.0.10`` (storage
    checks again in the transaction that commits the row)."""
    mine = precedence(ver)
    for r in reg.storage.list_versions(ns, name):
        if r.version != ver and precedence(r.version) == mine:
            raise _version_conflict(ns, name, ver, r.version)


def _refuse_published_elsewhere(reg: RegistryState, bundle: BundleScan, ns: str) -> None:
    """A manifest named without a namespace fits any namespace whose keys include its
    signer's; public keys are public, so refuse the same signed manifest in a second one."""
    m = bundle.manifest
    if "/" in m.name:
        return  # its name fixes its namespace: _verify already checked it
    for other in reg.storage.find_versions(m.name, m.version):
        if other.namespace != ns and other.manifest == bundle.manifest_bytes:
            raise APIError(
                409,
                "published_elsewhere",
                f"this signed manifest of {m.name} {m.version} is already "
                f"published as {other.full_name}; a pack named without a "
                "namespace is published in one namespace only (name it "
                f"'{ns}/{m.name}' to publish it here)",
                namespace=other.namespace,
            )


def _verify(reg: RegistryState, path: Path, ns: str, name: str, ver: str) -> tuple[BundleScan, str]:
    """The checked pack (streamed: its members are hashed, not kept) and the registered key
    that signed it; APIError if not."""
    label = f"{ns}/{name} {ver}"
    try:
        bundle = scan_bundle(path)
    except PackIntegrityError as exc:
        raise APIError(
            422,
            "integrity_mismatch",
            f"{label}: {exc}",
            file=exc.file,
            expected=exc.expected,
            actual=exc.actual,
        ) from exc
    except PackFormatError as exc:
        raise APIError(
            422,
            "invalid_pack",
            f"{label}: not a valid .rflpack: {str(exc).replace('<bytes>: ', '')}",
        ) from exc
    m = bundle.manifest
    # "acme/tools" publishes only as acme/tools; "tools" (no namespace) as any ns/tools.
    if m.name != f"{ns}/{name}" and m.name != name:
        raise APIError(
            400,
            "name_mismatch",
            f"the pack's manifest names {m.name!r}, but it is being published as {ns}/{name!s}",
        )
    if m.version != ver:
        raise APIError(
            400,
            "version_mismatch",
            f"the pack's manifest says version {m.version}, but it is being published as {ver}",
        )
    if bundle.is_stripped():
        raise APIError(
            422,
            "stripped_pack",
            f"{label} is stripped (it carries only "
            f"{', '.join(bundle.present_triples())}); publish "
            "the full pack, the registry makes the slim ones",
        )
    try:
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {label}")
    except ABIVersionError as exc:
        raise APIError(422, "abi_incompatible", str(exc)) from exc
    keys = {}
    for k in reg.storage.list_keys(ns):
        public = load_public_key(k.pem)
        keys[key_id_of(public)] = public
    try:
        signer = verify_manifest(bundle.manifest_bytes, bundle.signatures, keys, pack=label)
    except UntrustedKeyError as exc:
        raise APIError(
            422,
            "unregistered_key",
            f"{label} is signed by key {', '.join(s.key_id for s in bundle.signatures)}"
            f", which is not registered for namespace {ns!r} (registered: "
            f"{', '.join(sorted(keys)) or 'none'}); an admin adds it with "
            f"'reflow-registry key add --namespace {ns} KEY.pub'",
            key_id=exc.key_id,
        ) from exc
    except PackSignatureError as exc:
        code = "bad_signature" if bundle.signatures else "unsigned"
        raise APIError(422, code, str(exc), key_id=exc.key_id) from exc
    return bundle, signer


async def set_yank(request: Request) -> Response:
    ns, name, ver = names_of(request, version=True)
    require(request, "publish", ns)
    reg = registry_of(request)
    version_or_404(reg, ns, name, ver)
    if request.method == "DELETE":
        reg.storage.set_yanked(ns, name, ver, False)
    else:
        reason = str((await json_body(request)).get("reason", ""))[:1000]
        reg.storage.set_yanked(ns, name, ver, True, reason)
    return JSONResponse(version_doc(request, version_or_404(reg, ns, name, ver)))
