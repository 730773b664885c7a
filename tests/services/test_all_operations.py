"""Issue #11, test 4: every operation of every shared spec, through its generated template,
against a spec server implementing the same table.

The 19 packs are generated once per session (signed, as ``reflow-pack openapi --all`` does);
each pack then gets one spec server, and one network with a node per operation fires each
operation once with minimal valid inputs (its required keys, from their schemas). Each answer
must be a 2xx valid against the operation's response schema."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key
from reflow.tools._openapi_pack import build_all, find_specs

sys.path.insert(0, str(Path(__file__).parent))
from allops import fire_all

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "openapi"
pytestmark = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared specs) not found"
)
#: Operations still failing, by pack (issue #11, named classes left open):
#: instances the generator cannot yet meet (a null branch inside nested allOf/anyOf, `not`,
#: minProperties, minItems with a pattern, an enum behind an unresolved ref), DigitalOcean's
#: presigned upload (no usable server), Discord's OAuth2 client-credentials tokenUrl on the
#: real host, and SendGrid answers whose schema says object where the spec server sends none.
KNOWN: dict[str, frozenset[str]] = {
    "asana": frozenset(
        {
            "create_attachment_for_object",
            "get_attachment",
        }
    ),
    "digitalocean": frozenset(
        {
            "agent_inference_create_chat_completion",
            "inference_create_chat_completion",
            "inference_upload_batch_file",
        }
    ),
    "discord": frozenset(
        {
            "bulk_delete_messages",
            "delete_application_user_role_connection",
            "get_application_user_role_connection",
            "get_current_user_application_entitlements",
            "get_my_guild_member",
            "update_application",
            "update_application_user_role_connection",
            "update_my_application",
        }
    ),
    "github": frozenset(
        {
            "activity_list_repos_starred_by_user",
            "activity_list_stargazers_for_repo",
        }
    ),
    "intercom": frozenset(
        {
            "lis_data_events",
        }
    ),
    "openai": frozenset(
        {
            "accept_realtime_call",
            "create_image_edit",
            "create_realtime_call",
            "create_realtime_transcription_session",
        }
    ),
    "sendgrid": frozenset(
        {
            "delete_access_settings_whitelist",
            "delete_access_settings_whitelist_rule_id",
            "delete_alerts_alert_id",
            "delete_asm_groups_group_id",
            "delete_asm_suppressions_global_email",
            "delete_contactdb_recipients_recipient_id",
            "delete_design",
            "delete_ips_pools_pool_name",
            "delete_ips_pools_pool_name_ips_ip",
            "delete_ips_warmup_ip_address",
            "delete_subusers_subuser_name",
            "delete_subusers_subuser_name_monitor",
            "delete_suppression_blocks",
            "delete_suppression_blocks_email",
            "delete_suppression_bounces_email",
            "delete_suppression_invalid_emails",
            "delete_suppression_invalid_emails_email",
            "delete_suppression_spam_reports",
            "delete_suppression_spam_reports_email",
            "delete_templates_template_id",
            "delete_user_webhooks_parse_settings_hostname",
            "delete_v3_senders_sender_id",
            "delete_v3_teammates_username",
            "delete_verified_senders_id",
            "delete_whitelabel_domains_domain_id",
            "delete_whitelabel_domains_subuser",
            "delete_whitelabel_ips_id",
            "delete_whitelabel_links_id",
            "delete_whitelabel_links_subuser",
            "get_messages",
            "get_v3_messages_msg_id",
            "patch_subusers_subuser_name",
            "post_campaigns_campaign_id_schedules_test",
            "post_v3_senders_sender_id_resend_verification",
            "post_verified_senders_resend_id",
        }
    ),
}
NAMES = [n for n, _ in find_specs(SHARED)] if (SHARED / "SOURCES.md").is_file() else []


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], TrustStore]:
    tmp = tmp_path_factory.mktemp("allops")
    key = generate_key()
    store = TrustStore(tmp / "trust")
    store.add(key.public_key())
    built = build_all(SHARED, namespace="acme", out_dir=tmp / "dist", key=key, auth=["bearer"])
    return {p.name.split("/", 1)[1]: p.path for p in built}, store


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_operation_answers_2xx_valid_against_its_schema(
    generated: tuple[dict[str, Path], TrustStore],
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    paths, store = generated
    outcome = fire_all(paths[name], store)
    new = {s: m for s, m in outcome.failed.items() if s not in KNOWN.get(name, frozenset())}
    shown = "\n".join(f"{s}: {m}" for s, m in sorted(new.items())[:10])
    assert not new, f"{len(new)} of {name}'s operations failed:\n{shown}"
    assert outcome.passed
