"""Packs in, templates out: verifying and loading ``.rflpack`` files, and plugins.

* ``_trust`` — the trust store: which publisher keys vouch for which pack names.
* ``_packs`` — :func:`~reflow.load_pack`: verify a pack against its signed manifest, cache
  it, register its templates with the engine its artifacts need.
* ``_plugins`` — pluggy hooks: templates and engines from installed plugins, pack vetoes,
  network event observers.
"""
