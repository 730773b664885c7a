"""Packs in, templates out: verifying and loading ``.rflpack`` files, and plugins.

* ``_trust`` — the trust store: which publisher keys vouch for which pack names.
* ``_packs`` — :func:`~reflow.load_pack`: verify a pack against its signed manifest, cache
  it, register its templates with the engine its artifacts need; over ``_pack_head``
  (finding, reading and verifying a pack's manifest and signature), ``_pack_cache`` (the
  extracted cache, its ``.verified`` records, re-hashing artifacts) and ``_pack_inspect``
  (choosing artifacts, :func:`~reflow.inspect_pack`).
* ``_plugins`` — pluggy hooks: templates and engines from installed plugins, pack vetoes,
  network event observers.
"""
