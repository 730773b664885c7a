"""Read an OpenAPI 3.0/3.1 or Swagger 2.0 description — JSON or YAML, one file or a tree of
files — and resolve its ``$ref``s, within fixed bounds (issue 11, abi/HTTP_API.md).

What it promises:

- **Bounded.** A file over :attr:`LoadLimits.max_file_bytes`, a tree over ``max_files`` files
  or ``max_total_bytes``, nesting deeper than ``max_depth``, more than ``max_aliases`` YAML
  aliases (or one inside its own anchor), a ``$ref`` chain longer than ``max_ref_chain``: each
  is an :class:`~reflow.OpenApiError` naming the file and, where known, the JSON path, before
  a parser or a walker can recurse or loop on it. Only regular files are opened.
- **YAML as data.** PyYAML's C loader, with mapping keys kept as written (asana's unquoted
  ``200:`` stays the string ``"200"``), timestamps as strings, and no value JSON cannot hold.
- **References.** ``$ref``s are resolved with the ``referencing`` library against the file
  that holds them; a file outside the tree's folder (the root file's folder, or the one given
  as ``tree``) is refused; ``http(s)://`` and other remote references are never fetched, and
  they, like dangling ones, resolve to ``{}`` and are reported in :attr:`SpecTree.report`.
  Nothing here walks a document: callers ask for the references they meet, so a ``$ref`` key
  inside an ``example`` is never looked at.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit
from urllib.request import url2pathname

import yaml
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

from .._errors import OpenApiError
from .._jsonread import JSONDepthError
from .._jsonread import loads as json_loads

__all__ = ["LoadLimits", "SpecTree", "load_spec", "parse_document"]


@dataclass(frozen=True)
class LoadLimits:
    """How much a description may hold. The defaults are several times the largest real
    description seen (GitHub's full one is 13 MB; DigitalOcean's tree is 2,907 files)."""

    max_file_bytes: int = 48 << 20
    max_total_bytes: int = 256 << 20
    max_files: int = 20_000
    max_depth: int = 128
    max_aliases: int = 100_000
    max_yaml_nodes: int = 5_000_000
    max_ref_chain: int = 32


class _DataLoader(yaml.CSafeLoader):
    """The C loader, constructing only what JSON can hold: keys as their source text,
    timestamps and binary as strings, non-finite floats as strings, sets as mappings."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, "expected a mapping", node.start_mark
            )
        self.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                )
            out[key_node.value] = self.construct_object(value_node, deep=deep)
        return out

    def _as_text(self, node: Any) -> Any:
        return self.construct_scalar(node)

    def _float(self, node: Any) -> Any:
        value = self.construct_yaml_float(node)
        return value if value - value == 0 else self.construct_scalar(node)

    def _set(self, node: Any) -> Any:
        data: dict[str, Any] = {}
        yield data
        data.update(self.construct_mapping(node))


for _tag in ("timestamp", "binary"):
    _DataLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _DataLoader._as_text)
_DataLoader.add_constructor("tag:yaml.org,2002:float", _DataLoader._float)
_DataLoader.add_constructor("tag:yaml.org,2002:set", _DataLoader._set)


def _yaml_precheck(data: bytes, file: str, limits: LoadLimits) -> None:
    """One pass over libyaml's events (its parser is iterative; its composer and PyYAML's
    constructor recurse): nesting depth, the number of aliases, how many nodes the document
    holds once every alias is expanded (a "billion laughs" document is tiny until a walker
    expands it), and aliases into their own anchor (a structure no walker could finish)."""
    sizes: dict[str, int] = {}
    counts: list[int] = [0]  # nodes under each open collection, the document at the bottom
    anchors: list[str | None] = []
    aliases = 0
    try:
        for ev in yaml.parse(data, Loader=yaml.CSafeLoader):
            if isinstance(ev, yaml.CollectionStartEvent):
                if len(anchors) >= limits.max_depth:
                    raise OpenApiError(
                        f"nests deeper than {limits.max_depth} levels "
                        f"(line {ev.start_mark.line + 1})",
                        file=file,
                    )
                anchors.append(ev.anchor)
                counts.append(1)
            elif isinstance(ev, yaml.CollectionEndEvent):
                size = counts.pop()
                anchor = anchors.pop()
                if anchor is not None:
                    sizes[anchor] = size
                counts[-1] += size
            elif isinstance(ev, yaml.ScalarEvent):
                counts[-1] += 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    raise OpenApiError(
                        f"uses more than {limits.max_aliases} YAML aliases", file=file
                    )
                if ev.anchor in anchors:
                    raise OpenApiError(
                        f"YAML alias *{ev.anchor} refers to its own enclosing anchor "
                        f"(line {ev.start_mark.line + 1}): a recursive structure",
                        file=file,
                    )
                counts[-1] += sizes.get(ev.anchor or "", 1)
            if counts[-1] > limits.max_yaml_nodes:
                raise OpenApiError(
                    f"holds more than {limits.max_yaml_nodes} values once its YAML aliases "
                    "are expanded",
                    file=file,
                )
    except yaml.YAMLError as exc:
        raise OpenApiError(f"is not valid YAML: {_one_line(exc)}", file=file) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def parse_document(data: bytes, file: str, limits: LoadLimits | None = None) -> Any:
    """The JSON value of one JSON or YAML document (JSON when it starts with ``{`` or ``[``).
    Any problem is an :class:`~reflow.OpenApiError` naming ``file``."""
    limits = limits or LoadLimits()
    if len(data) > limits.max_file_bytes:
        raise OpenApiError(
            f"is {len(data)} bytes, over the limit of {limits.max_file_bytes}", file=file
        )
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        try:
            text = data.decode("utf-8-sig")
            return json_loads(text, limit=limits.max_depth, what=file)
        except JSONDepthError as exc:
            raise OpenApiError(
                f"nests deeper than {limits.max_depth} levels ({exc.position or exc.path})",
                file=file,
            ) from exc
        except (ValueError, RecursionError) as exc:
            if file.endswith(".json"):
                raise OpenApiError(f"is not valid JSON: {_one_line(exc)}", file=file) from exc
            # not JSON after all: YAML flow style is a superset, try that
    _yaml_precheck(data, file, limits)
    try:
        return yaml.load(data, Loader=_DataLoader)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise OpenApiError(f"is not valid YAML: {_one_line(exc)}", file=file) from exc


def _read_file(path: Path, shown: str, limits: LoadLimits) -> bytes:
    try:
        st = path.stat()
    except OSError as exc:
        raise OpenApiError(f"cannot be read: {exc.strerror or exc}", file=shown) from exc
    if not stat.S_ISREG(st.st_mode):
        raise OpenApiError("is not a regular file", file=shown)
    if st.st_size > limits.max_file_bytes:
        raise OpenApiError(
            f"is {st.st_size} bytes, over the limit of {limits.max_file_bytes}", file=shown
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise OpenApiError(f"cannot be read: {exc.strerror or exc}", file=shown) from exc
    if len(data) > limits.max_file_bytes:
        raise OpenApiError(f"is over the limit of {limits.max_file_bytes} bytes", file=shown)
    return data


class _Refused(Exception):
    """Raised inside ``referencing``'s retrieve hook; carries our error out of it."""

    def __init__(self, error: OpenApiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class SpecTree:
    """A loaded description: the root document and every file it reached.

    ``report`` lists what could not be followed (remote and dangling references), one line
    each, in the order met."""

    root_file: Path
    tree: Path
    limits: LoadLimits
    root: Any = None
    report: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # uri -> bytes read
    _docs: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, tuple[Any, str] | None] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)
    _registry: Any = None

    @property
    def root_uri(self) -> str:
        return self.root_file.as_uri()

    def shown(self, uri: str) -> str:
        """A file URI as the path a user gave (relative to the tree's parent)."""
        doc = urldefrag(uri).url
        if not doc.startswith("file:"):
            return doc
        path = Path(url2pathname(unquote(urlsplit(doc).path)))
        try:
            return str(self.tree.name / path.relative_to(self.tree))
        except ValueError:
            return str(path)

    def relative(self, uri: str) -> str:
        """``uri``'s file relative to the tree (``""`` for the root file), plus its fragment."""
        doc, frag = urldefrag(uri)
        path = Path(url2pathname(unquote(urlsplit(doc).path)))
        rel = "" if path == self.root_file else path.relative_to(self.tree).as_posix()
        return f"{rel}#{frag}"

    def sha256(self) -> str:
        """One file: its SHA-256. A tree: the SHA-256 of every file's path and SHA-256."""
        if len(self.files) == 1:
            return hashlib.sha256(next(iter(self.files.values()))).hexdigest()
        lines = sorted(
            f"{self.relative(u).split('#')[0]}\0{hashlib.sha256(b).hexdigest()}\n"
            for u, b in self.files.items()
        )
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def _retrieve(self, uri: str) -> Resource[Any]:
        if uri in self._docs:
            return Resource.opaque(self._docs[uri])
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise LookupError(f"remote reference {uri} (never fetched)")
        path = Path(url2pathname(unquote(parts.path)))
        real = Path(os.path.realpath(path))
        if real != self.tree and self.tree not in real.parents:
            raise _Refused(
                OpenApiError(
                    f"reference to {path} leaves the description's folder {self.tree} "
                    "(refused; give the folder to use with --tree)",
                    file=self.shown(uri),
                )
            )
        if not real.exists():
            raise LookupError(f"dangling reference: no file {self.shown(uri)}")
        if len(self.files) >= self.limits.max_files:
            raise _Refused(
                OpenApiError(
                    f"the description reaches more than {self.limits.max_files} files",
                    file=self.shown(uri),
                )
            )
        data = _read_file(real, self.shown(uri), self.limits)
        total = sum(len(b) for b in self.files.values()) + len(data)
        if total > self.limits.max_total_bytes:
            raise _Refused(
                OpenApiError(
                    f"the description's files hold more than {self.limits.max_total_bytes} "
                    "bytes together",
                    file=self.shown(uri),
                )
            )
        self.files[uri] = data
        doc = parse_document(data, self.shown(uri), self.limits)
        self._docs[uri] = doc
        return Resource.opaque(doc)

    def lookup(self, ref: str, base: str, where: str) -> tuple[Any, str] | None:
        """The target of ``ref`` met in the file ``base`` (at JSON path ``where``) and the
        URI of the file holding it, or None (reported) when it cannot be resolved."""
        absolute = urljoin(base, ref) if not ref.startswith("#") else base + ref
        if absolute in self._cache:
            return self._cache[absolute]
        found: tuple[Any, str] | None
        try:
            resolved = self._registry.resolver(base_uri=base).lookup(ref)
            found = (resolved.contents, urldefrag(absolute).url)
        except Unresolvable as exc:
            cause: BaseException | None = exc.__cause__
            why = _one_line(exc)
            while cause is not None:
                if isinstance(cause, _Refused):
                    raise cause.error from None
                if isinstance(cause, OpenApiError):
                    raise cause from None
                why = _one_line(cause)
                cause = cause.__cause__
            found = None
            line = f"{self.shown(base)} {where}: $ref {ref!r} not resolved ({why}); used {{}}"
            if absolute not in self._reported:
                self._reported.add(absolute)
                self.report.append(line)
        except _Refused as exc:
            raise exc.error from None
        except RecursionError as exc:
            raise OpenApiError(f"$ref {ref!r} cannot be resolved", path=where) from exc
        self._cache[absolute] = found
        return found

    def deref(self, node: Any, base: str, where: str) -> tuple[Any, str]:
        """``node`` with ``$ref``s followed until it is not one (for structural objects:
        path items, parameters, bodies, responses). A chain longer than the limit, or one
        that comes back to itself, is an error; an unresolvable one gives ``{}``."""
        seen: list[str] = []
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            key = urljoin(base, ref) if not ref.startswith("#") else base + ref
            if key in seen:
                raise OpenApiError(
                    f"$ref cycle: {' -> '.join([*seen, key][-4:])}",
                    file=self.shown(base),
                    path=where,
                )
            seen.append(key)
            if len(seen) > self.limits.max_ref_chain:
                raise OpenApiError(
                    f"$ref chain longer than {self.limits.max_ref_chain} references",
                    file=self.shown(base),
                    path=where,
                )
            got = self.lookup(ref, base, where)
            if got is None:
                return {}, base
            node, base = got
        return node, base

    def walk_files(self) -> Iterator[str]:
        yield from sorted(self.files)


def load_spec(
    path: str | os.PathLike[str],
    *,
    tree: str | os.PathLike[str] | None = None,
    limits: LoadLimits | None = None,
) -> SpecTree:
    """Read the root description at ``path``. Files it references must lie under ``tree``
    (default: the root file's folder)."""
    root_file = Path(os.path.realpath(path))
    shown = str(path)
    tree_dir = Path(os.path.realpath(tree)) if tree is not None else root_file.parent
    if tree_dir != root_file.parent and tree_dir not in root_file.parents:
        raise OpenApiError(f"is not inside the folder {tree_dir}", file=shown)
    limits = limits or LoadLimits()
    spec = SpecTree(root_file=root_file, tree=tree_dir, limits=limits)
    data = _read_file(root_file, shown, limits)
    spec.files[spec.root_uri] = data
    spec.root = parse_document(data, shown, limits)
    spec._docs[spec.root_uri] = spec.root
    spec._registry = Registry(retrieve=spec._retrieve)  # type: ignore[call-arg]
    if not isinstance(spec.root, dict):
        raise OpenApiError(
            f"the root is {_kind(spec.root)}, expected a mapping (an OpenAPI document)",
            file=shown,
            path="$",
        )
    return spec


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def dumps_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
