"""offbit_reflow's API-service ids: the ``reflow.pack.api_services`` compat pack at run time.

offbit_reflow programs load that SDK's ``reflow.pack.api_services`` pack and then ask for
``template_actor("api_github_list_issues")``: a bare id, no pack prefix. Here a pack's
template ids always start with its (signed) name, so the compat pack built by
``reflow-pack compat api-services`` (:mod:`reflow.tools._openapi_sdk_alias`) holds
``reflow.pack.api_services/api_github_list_issues``; when a pack of exactly that name has
loaded, :class:`SdkAliasPlugin` also registers each of its ``api_*`` templates under the bare
id (owned by the pack, so ``unload_pack`` removes both, and no other owner's id is taken).

Credentials come, as in the SDK, from ``GITHUB_API_KEY`` / ``SLACK_API_KEY``: the compat
tables name their security scheme after that variable, and the plugin's ``reflow_secret``
answers for those schemes of that pack only (``REFLOW_SECRET_REFLOW_PACK_API_SERVICES_<VAR>``
works as well).

:data:`ALIASES` is the alias table: each SDK id with the operation it calls (method and path,
read from the SDK's generated ``reflow_api_services/src/api/<service>.rs``) and its in-ports.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from .._core._catalog import register_template, template_owner
from ..hookspecs import hookimpl

__all__ = ["ALIASES", "SDK_PACK", "SERVICES", "SdkAlias", "SdkAliasPlugin", "SdkService"]

log = logging.getLogger("reflow.services")

#: The SDK's pack name; only a pack of this name gets bare ``api_*`` ids.
SDK_PACK = "reflow.pack.api_services"
_BARE = re.compile(r"api_[a-z0-9]+(_[a-z0-9]+)+")


@dataclass(frozen=True)
class SdkService:
    """One service of the compat pack: its description under ``../shared/openapi``, the
    environment variable the SDK reads its credential from, and ``--auth`` for a description
    that declares no security scheme."""

    name: str
    spec: str
    env: str
    auth: tuple[str, ...] = ()


@dataclass(frozen=True)
class SdkAlias:
    """An SDK template id and the operation it calls; ``inports`` are the SDK's."""

    sdk_id: str
    service: str
    method: str
    path: str
    inports: tuple[str, ...]


SERVICES: dict[str, SdkService] = {
    "github": SdkService("github", "github/api.github.com.json", "GITHUB_API_KEY", ("bearer",)),
    "slack": SdkService("slack", "slack/slack_web_openapi_v2.json", "SLACK_API_KEY"),
}


def _a(sdk_id: str, method: str, path: str, *inports: str) -> SdkAlias:
    return SdkAlias(sdk_id, sdk_id.split("_")[1], method, path, inports or ("trigger",))


ALIASES: tuple[SdkAlias, ...] = (
    _a("api_github_list_repositories", "GET", "/user/repos"),
    _a(
        "api_github_create_issue",
        "POST",
        "/repos/{owner}/{repo}/issues",
        *("owner", "repo", "title", "body", "type_", "assignees", "labels", "assignee"),
        "milestone",
    ),
    _a(
        "api_github_create_pull_request",
        "POST",
        "/repos/{owner}/{repo}/pulls",
        *("owner", "repo", "title", "head", "base", "body", "head_repo"),
        *("maintainer_can_modify", "draft", "issue"),
    ),
    _a("api_github_list_meta", "GET", "/"),
    _a(
        "api_github_list_security_advisories",
        "GET",
        "/advisories",
        *("ghsa_id", "type_", "cve_id", "ecosystem", "severity", "cwes", "is_withdrawn"),
        *("affects", "published", "updated", "modified", "epss_percentage"),
        *("epss_percentile", "per_page", "sort"),
    ),
    _a("api_github_read_security_advisories", "GET", "/advisories/{ghsa_id}"),
    _a("api_github_delete_gists", "DELETE", "/gists/{gist_id}"),
    _a("api_github_read_gists", "GET", "/gists/{gist_id}"),
    _a("api_github_update_gists", "PATCH", "/gists/{gist_id}", "description", "files"),
    _a("api_github_list_gitignore", "GET", "/gitignore/templates"),
    _a("api_github_read_gitignore", "GET", "/gitignore/templates/{name}", "name"),
    _a(
        "api_github_list_issues",
        "GET",
        "/issues",
        *("filter", "state", "sort", "collab", "orgs", "owned", "pulls"),
    ),
    _a("api_github_list_licenses", "GET", "/licenses", "featured"),
    _a("api_github_read_licenses", "GET", "/licenses/{license}", "license"),
    _a("api_slack_send_message", "POST", "/chat.postMessage", "channel", "text", "attachments"),
    _a("api_slack_list_channels", "GET", "/conversations.list", "types", "limit"),
    _a("api_slack_upload_file", "POST", "/files.upload", "channels", "file"),
    _a(
        "api_slack_create_admin_apps",
        "POST",
        "/admin.apps.approve",
        *("token", "app_id", "request_id", "team_id"),
    ),
    _a(
        "api_slack_list_admin_apps_approved",
        "GET",
        "/admin.apps.approved.list",
        *("token", "limit", "cursor", "team_id", "enterprise_id"),
    ),
    _a(
        "api_slack_list_admin_apps_requests",
        "GET",
        "/admin.apps.requests.list",
        *("token", "limit", "cursor", "team_id"),
    ),
    _a(
        "api_slack_list_admin_apps_restricted",
        "GET",
        "/admin.apps.restricted.list",
        *("token", "limit", "cursor", "team_id", "enterprise_id"),
    ),
)

_ENV = frozenset(s.env for s in SERVICES.values())


class SdkAliasPlugin:
    """Bare SDK ids for the compat pack's templates, and the SDK's credential variables."""

    @hookimpl
    def reflow_after_pack_load(self, pack: Any) -> None:
        if getattr(pack, "name", None) != SDK_PACK:
            return
        prefix = SDK_PACK + "/"
        for tid, actor in list(pack.templates.items()):
            bare = tid[len(prefix) :] if tid.startswith(prefix) else ""
            if not _BARE.fullmatch(bare):
                continue
            owner = template_owner(bare)
            if owner is not None and owner != SDK_PACK:
                log.warning(
                    "%s: template %r stays %r only: %s provides %r already",
                    SDK_PACK,
                    tid,
                    tid,
                    owner,
                    bare,
                )
                continue
            # wired like the SDK's actors: a connection to an in-port it does not declare is
            # accepted, and the packet fails the tick naming the key (never dropped unseen)
            actor.accept_undeclared_inports = True
            register_template(bare, actor, owner=SDK_PACK)
            pack.templates[bare] = actor  # unload_pack removes the alias with the pack

    @hookimpl
    def reflow_secret(self, pack: str, scheme: str) -> str | None:
        if pack != SDK_PACK or scheme not in _ENV:
            return None
        return os.environ.get(scheme) or None
