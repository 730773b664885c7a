"""reflow.abi — the contracts between the host and the code it loads.

The guest ABI version and its compatibility rule, the v1 wire codec (messages and frames)
described in ``ABI.md`` next to this file with its test vectors under ``vectors/``, and the
``.rflpack`` format of ``PACK_FORMAT.md``: manifest, bundle container, ed25519 signatures.
No runtime state; importable without wasmtime.
"""

from __future__ import annotations

from pathlib import Path

from ._bundle import (
    Bundle,
    BundleLimits,
    add_signatures,
    build_bundle,
    read_bundle,
    strip_bundle,
)
from ._codec import (
    KIND_CODES,
    TickResult,
    decode_message,
    decode_open,
    decode_outputs,
    decode_result,
    decode_tick_input,
    encode_message,
    encode_open,
    encode_outputs,
    encode_result_done,
    encode_result_fail,
    encode_tick_input,
)
from ._manifest import (
    KNOWN_TRIPLES,
    PORTABLE_TRIPLE,
    Artifact,
    PackFile,
    PackManifest,
    TemplateSpec,
    host_triples,
    parse_manifest,
)
from ._signing import (
    Signature,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    sign_manifest,
    verify_manifest,
    write_keypair,
)
from ._version import (
    ABI_VERSION,
    check_abi_compatible,
    pack_abi_version,
    pack_abi_word,
    parse_abi_version,
    unpack_abi_word,
)

__all__ = [
    "ABI_VERSION",
    "KIND_CODES",
    "KNOWN_TRIPLES",
    "PORTABLE_TRIPLE",
    "VECTORS_DIR",
    "Artifact",
    "Bundle",
    "BundleLimits",
    "PackFile",
    "PackManifest",
    "Signature",
    "TemplateSpec",
    "TickResult",
    "add_signatures",
    "build_bundle",
    "check_abi_compatible",
    "decode_message",
    "decode_open",
    "decode_outputs",
    "decode_result",
    "decode_tick_input",
    "encode_message",
    "encode_open",
    "encode_outputs",
    "encode_result_done",
    "encode_result_fail",
    "encode_tick_input",
    "generate_key",
    "host_triples",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pack_abi_version",
    "pack_abi_word",
    "parse_abi_version",
    "parse_manifest",
    "read_bundle",
    "sign_manifest",
    "strip_bundle",
    "unpack_abi_word",
    "verify_manifest",
    "write_keypair",
]

#: Folder of the ABI test vectors (``messages.json``, ``frames.json``, ``invalid.json``).
VECTORS_DIR = Path(__file__).parent / "vectors"
