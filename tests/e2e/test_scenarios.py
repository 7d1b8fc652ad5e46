"""The integration scenarios, collected again here to run against the real cluster of tests/e2e/conftest.py."""

from integration.test_domains_and_bundle import (  # noqa: F401
    test_a_full_bundle_leaves_a_new_tenant_out_until_there_is_room,
    test_consumer_deployment_rolls_once_per_bundle_change,
    test_deleting_an_idp_cascades_and_the_last_object_removes_the_bundle,
    test_dns_verification_pending_then_verified,
    test_domain_conflict_and_hand_over,
    test_domain_waits_for_its_idp,
)
from integration.test_identity_providers import (  # noqa: F401
    test_aggregate_needs_an_entity_id_and_selects_it,
    test_configmap_source_is_reread_when_the_configmap_changes,
    test_expired_certificate_is_not_ready,
    test_idp_down_keeps_last_good_config_then_recovers,
    test_oidc_discovery,
    test_rollover_metadata_keeps_both_signing_certificates,
    test_signed_metadata_fingerprint,
    test_sp_signing_key_is_issued_and_survives_recreate,
    test_url_refresh_uses_304_and_picks_up_changes,
)
from integration.test_quickstart import test_quickstart_converges_and_writes_the_bundle  # noqa: F401
from integration.test_scim_connections import (  # noqa: F401
    test_annotation_rotates_with_overlap_then_previous_expires,
    test_delete_and_recreate_adopts_the_existing_token,
    test_invalid_bindings_keep_the_previous_valid_ones,
    test_scheduled_rotation,
    test_scim_waits_for_its_idp_and_leaves_with_it,
    test_token_is_issued_hashed_and_shown_in_status,
    test_token_secret_deleted_by_hand_is_reissued_with_an_event,
)
