"""reflow.sdk_guest — the C guest SDK (``reflow.h``, ``reflow.c``, examples) as package data,
so ``reflow.tools.build_guest`` finds it in an editable and in a wheel install alike."""

from pathlib import Path

#: The folder holding ``reflow.h``, ``reflow.c`` and ``examples/``.
SDK_DIR = Path(__file__).resolve().parent
