"""API-service packs: the ``http-api`` engine that runs operation tables (abi/HTTP_API.md).

One job per module, imports running downward (``_engine`` → ``_paginate`` →
``_outputs``/``_client`` → ``_auth``/``_request`` → ``_validate`` → ``_table``):

* ``_table`` — reading and checking a table (bounded, lazy per operation); below it
  ``_table_servers`` (servers, hosts, security schemes), ``_table_reader`` (typed field access)
  and ``_table_shared`` (format 2's shared sections);
* ``_validate`` — JSON Schema validation of a request's keys, one cached validator per operation;
* ``_request`` — keys → URL, headers, cookies and body per style/explode and media type;
* ``_auth`` — credentials: providers, the transport that adds them, OAuth2 tokens;
* ``_client`` — the shared async client, retries, rate limits, reading responses;
* ``_paginate`` — opt-in pagination; ``_outputs`` — results onto out-ports;
* ``_engine`` — the engine plugin and the template actors;
* ``_spec_server`` / ``_instances`` — a local server implementing any table (tests).
"""

from __future__ import annotations

from ._engine import HttpApiEngine, HttpApiGrants
from ._table import ApiTable, load_table

__all__ = ["ApiTable", "HttpApiEngine", "HttpApiGrants", "load_table"]
