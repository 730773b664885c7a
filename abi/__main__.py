"""``python -m reflow.abi build-codec``: build the compiled tick codec ahead of first use."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build-codec"]:
        print("usage: python -m reflow.abi build-codec", file=sys.stderr)
        return 2
    from .._errors import SandboxError
    from . import _ccodec

    try:
        _ccodec.require()
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"compiled tick codec: {_ccodec.module_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
