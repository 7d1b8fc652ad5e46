"""The operator's metrics computed from state (edge cases the integration test does not reach), the watch
restart counter on Kopf's own logger, and the observe layer's in-memory refresh bookkeeping."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from keyplane_op_helpers import (
    NOW,
    domain_snap,
    idp_snap,
    make_cert,
    ready_observation,
    saml_spec,
    scim_snap,
    settings,
    snapshot,
)
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keyplane.metrics import OperatorMetrics, OperatorState
from keyplane.metrics.watch import KOPF_WATCHING_LOGGER
from keyplane.reconcile.scimtoken import TokenState


def scrape(state: OperatorState) -> dict[str, list[Any]]:
    metrics = OperatorMetrics()
    metrics.observe_state(lambda: state)
    text = generate_latest(metrics.registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def conditions(ready: str, stalled: str = "False") -> dict[str, Any]:
    return {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": ready},
                                                    {"type": "Stalled", "status": stalled}]}


def test_rollover_certificates_rotation_disabled_overlap_and_states() -> None:
    old, new = make_cert("old", not_after=NOW + timedelta(days=5)), make_cert("new", key_index=2)
    okta = idp_snap("okta", status=conditions("True"))
    observation = ready_observation(okta, idp_metadata_certs(old, new), succeeded_at=NOW,
                                    fetches={"ok": 1, "not_modified": 4, "MetadataTimeout": 2})
    stalled = domain_snap("acme", ["acme.com", "acme.io"], status={
        **conditions("False", "True"), "domains": [{"name": "acme.com", "verified": True},
                                                   {"name": "acme.io", "verified": False}]})
    no_rotation = scim_snap("manual", spec={"token": {"rotationInterval": "0s"}}, status=conditions("True"))
    overlapping = scim_snap("okta", status=conditions("True"))
    outdated = idp_snap("edited", generation=2, status=conditions("True"))  # Ready for generation 1 only
    gone = idp_snap("gone", deleting=True, status=conditions("True"))
    token = TokenState("aa" * 32, NOW, "bb" * 32, NOW + timedelta(hours=24))
    families = scrape(OperatorState(
        [okta, stalled, no_rotation, overlapping, outdated, gone],
        {("team-a", "okta"): observation},
        {("team-a", "manual"): token, ("team-a", "okta"): token},
    ))

    certs = {s.labels["sha256"]: s.value for s in
             families["keyplane_identityprovider_certificate_not_after_timestamp_seconds"]}
    assert len(certs) == 2 and int((NOW + timedelta(days=5)).timestamp()) in certs.values()
    assert all(len(prefix) == 16 and prefix == prefix.lower() for prefix in certs)
    fetches = {s.labels["result"]: s.value for s in families["keyplane_identityprovider_metadata_fetches"]
               if s.name.endswith("_total")}
    assert fetches == {"ok": 1, "not_modified": 4, "MetadataTimeout": 2}
    assert [s.value for s in families["keyplane_identityprovider_metadata_refresh_interval_seconds"]
            if s.labels["name"] == "okta"] == [3600]  # the default refresh of a URL
    rotation = {s.labels["name"]: s.value for s in families["keyplane_scimconnection_token_rotation_timestamp_seconds"]}
    assert rotation == {"okta": int((NOW + timedelta(hours=2160)).timestamp())}  # 0s disables rotation
    overlap = families["keyplane_scimconnection_previous_token_expiry_timestamp_seconds"]
    assert {s.labels["name"] for s in overlap} == {"manual", "okta"}
    domains = {s.labels["verified"]: s.value for s in families["keyplane_ssodomain_domains"]}
    assert domains == {"true": 1, "false": 1}

    ready = {(s.labels["kind"], s.labels["name"]): s.value for s in families["keyplane_object_ready"]}
    assert ready == {("IdentityProvider", "okta"): 1, ("SSODomain", "acme"): 0, ("ScimConnection", "manual"): 1,
                     ("ScimConnection", "okta"): 1, ("IdentityProvider", "edited"): 0}
    by_state = {(s.labels["kind"], s.labels["state"]): s.value for s in families["keyplane_objects"]}
    assert by_state[("IdentityProvider", "Ready")] == 1 and by_state[("IdentityProvider", "Reconciling")] == 1
    assert by_state[("SSODomain", "Stalled")] == 1 and by_state[("ScimConnection", "Ready")] == 2


def idp_metadata_certs(*certs: Any) -> Any:
    from keyplane.saml.metadata import manual_idp_metadata

    return manual_idp_metadata("http://idp", "https://idp.example/sso", "HTTP-Redirect", None,
                               [c.cert_pem for c in certs])


def test_a_wrongly_shaped_object_exports_what_it_can() -> None:
    broken = snapshot("IdentityProvider", "broken", {"protocol": 7, "saml": "nope"}, status={"conditions": "x"})
    scim = snapshot("ScimConnection", "s", {"token": {"rotationInterval": "forever"}})
    families = scrape(OperatorState([broken, scim], {}, {("team-a", "s"): TokenState("aa", NOW, None, None)}))
    assert [s.value for s in families["keyplane_object_ready"]] == [0, 0]
    assert not families["keyplane_scimconnection_token_rotation_timestamp_seconds"]
    assert [s.value for s in families["keyplane_scimconnection_token_issued_timestamp_seconds"]] == [NOW.timestamp()]


def test_watch_restarts_are_counted_from_kopfs_own_log_records() -> None:
    import kopf._cogs.clients.watching as watching

    source = inspect.getsource(watching)  # a Kopf upgrade that rewords these breaks the counter: fail here
    assert "Restarting the watch-stream" in source and "is inactive, reconnecting" in source
    logger = logging.getLogger(KOPF_WATCHING_LOGGER)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    metrics = OperatorMetrics()
    try:
        metrics.count_watch_restarts()
        logger.debug("Restarting the watch-stream for identityproviders.v1alpha1.keyplane.dev cluster-wide.")
        logger.debug("Watch-stream for secrets.v1 in 'a' is inactive, reconnecting.")
        logger.debug("Stopping the watch-stream for x cluster-wide.")
        logger.warning("Ignoring an unsupported event type: {}")
        metrics.close()
        assert logger.level == logging.INFO  # restored
        logger.debug("Restarting the watch-stream for y cluster-wide.")  # no longer counted
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    counts = {s.labels["reason"]: s.value for s in metrics.registry.collect() if s.name == "keyplane_watch_restarts"
              for s in s.samples if s.name.endswith("_total")}
    assert counts == {"gone": 1, "inactive": 1}
    # The debug records were counted, not logged: the logger's output is what it was before.
    assert [r.levelname for r in seen] == ["WARNING"]


async def test_a_restart_serves_the_bundle_and_spreads_the_first_refresh() -> None:
    """After a restart an IdP that resolved for its generation is restored from the bundle without a fetch
    (cache=None would fail one) and re-read within its first interval; status.metadata keeps its values and
    drops the fields of earlier versions (attempt times, ETag), which never come back."""
    from keyplane.observe.identityprovider import observe_identity_provider
    from keyplane.reconcile.identityprovider import reconcile_identity_provider

    snap = idp_snap("okta", spec=saml_spec(signAuthnRequests=False))
    good = reconcile_identity_provider(snap, ready_observation(snap, signing=None), None, settings(), NOW)
    status = {**good.status, "metadata": {"sha256": "ab" * 32, "lastChangeTime": "2026-05-01T00:00:00Z",
                                          "lastAttemptTime": "2026-06-01T11:00:00Z", "etag": '"x"'}}
    restarted = replace(snap, status=status)
    obs = await observe_identity_provider(restarted, NoObjects(), None, None, settings(), NOW,
                                          seed_entry=good.entry)
    assert obs.problem is None and obs.saml is not None
    assert obs.metadata == {"sha256": "ab" * 32, "lastChangeTime": "2026-05-01T00:00:00Z"}
    assert obs.succeeded_at == NOW and not obs.fetches
    assert obs.attempted_at is not None and NOW - timedelta(hours=1) < obs.attempted_at <= NOW
    again = reconcile_identity_provider(restarted, obs, good.entry, settings(), NOW)
    assert again.entry == good.entry
    assert again.status["metadata"] == obs.metadata


class NoObjects:
    async def get(self, *_: Any) -> None:
        return None


def test_a_counter_left_installed_does_not_hide_restarts_from_the_next_operator() -> None:
    """An operator whose cleanup never ran (cancelled, or a failed start) must not stop the next one counting."""
    logger = logging.getLogger(KOPF_WATCHING_LOGGER)
    level = logger.level
    leaked, current = OperatorMetrics(), OperatorMetrics()
    try:
        leaked.count_watch_restarts()
        current.count_watch_restarts()
        logger.debug("Restarting the watch-stream for x cluster-wide.")
        current.close()
        leaked.close()
    finally:
        logger.setLevel(level)
    for metrics in (leaked, current):
        counts = [s.value for m in metrics.registry.collect() if m.name == "keyplane_watch_restarts"
                  for s in m.samples if s.name.endswith("_total")]
        assert counts == [1]
    assert not logger.filters and logger.level == level
