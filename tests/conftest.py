"""Suite-wide test set-up: keep the user's real configuration out of every test run."""

from __future__ import annotations

import os
import tempfile

# The wasm engine keeps the key that authenticates its compiled-module cache under
# $REFLOW_CONFIG_DIR (else ~/.config/reflow): point it at a throwaway folder, set before
# any test module imports reflow.
os.environ.setdefault("REFLOW_CONFIG_DIR", tempfile.mkdtemp(prefix="reflow-test-config-"))
