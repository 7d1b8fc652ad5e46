"""`keyplane render`: quickstart renders Ready, outputs complete, re-rendering adopts state, exit codes."""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from keyplane_op_helpers import QUICKSTART

from keyplane.api.crds import all_crds
from keyplane.reconcile.conditions import READY, is_true
from keyplane.render import EXIT_NOT_READY, EXIT_READY, EXIT_UNREADABLE, read_documents, run_render
from keyplane.render import render as render_documents
from keyplane.settings import Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # the quickstart certificates are valid from 2026-11-01
SETTINGS = Settings()
STATUS_SCHEMAS = {
    c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for c in all_crds()
}


def render(*paths: Path | str, now: datetime = NOW) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_render([str(p) for p in paths], SETTINGS, now, out, err, offline=True)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first() -> tuple[int, str, str]:
    return render(QUICKSTART)


def documents(stream: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(stream) if d is not None]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def decoded(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def test_quickstart_renders_ready_with_every_output(first: tuple[int, str, str]) -> None:
    code, out, err = first
    assert code == EXIT_READY, err
    assert err == ""
    docs = documents(out)
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    outputs = [
        ("Secret", "okta-scim-token"),
        ("Secret", "okta-sp-signing"),
        ("Secret", "keyplane-identity"),
        ("ConfigMap", "keycloak-sp-metadata"),
        ("ConfigMap", "okta-sp-metadata"),
    ]
    inputs = [
        ("IdentityProvider", "okta"),
        ("IdentityProvider", "keycloak"),
        ("SSODomain", "acme"),
        ("SSODomain", "contractors"),
        ("ScimConnection", "okta"),
    ]
    assert kinds == outputs + inputs  # outputs first, then the inputs with their status

    token = named(docs, "Secret", "okta-scim-token")
    assert len(decoded(token, "token")) >= 43
    assert token["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "keyplane"
    signing = named(docs, "Secret", "okta-sp-signing")
    assert "BEGIN CERTIFICATE" in decoded(signing, "tls.crt") and "PRIVATE KEY" in decoded(signing, "tls.key")
    bundle_secret = named(docs, "Secret", "keyplane-identity")
    bundle = json.loads(decoded(bundle_secret, "identity.json"))
    assert set(bundle["identityProviders"]) == {"okta", "keycloak"}
    assert set(bundle["domains"]) == {"acme.com", "acme.io", "contractors.example"}
    assert bundle["scim"]["okta"]["groupBindings"] == {
        "platform-admins": "Admin",
        "data-engineering": "Member",
    }
    assert (
        bundle["scim"]["okta"]["tokenHashes"][0]["sha256"]
        == hashlib.sha256(decoded(token, "token").encode()).hexdigest()
    )
    okta_md = named(docs, "ConfigMap", "okta-sp-metadata")["data"]["metadata.xml"]
    assert "https://platform.example.com/sso/saml/okta/acs" in okta_md

    for kind, name in inputs:
        status = named(docs, kind, name)["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", (kind, name, ready)
        assert status["observedGeneration"] == 1
    idp = named(docs, "IdentityProvider", "okta")["status"]
    assert idp["serviceProvider"]["acsURL"] == "https://platform.example.com/sso/saml/okta/acs"
    assert (
        named(docs, "ScimConnection", "okta")["status"]["endpointURL"]
        == "https://platform.example.com/scim/v2/okta"
    )


def _undeclared(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    if isinstance(value, dict) and "properties" in schema:
        return [f"{path}.{k}" for k in value if k not in schema["properties"]] + [
            p
            for k, v in value.items()
            if k in schema["properties"]
            for p in _undeclared(schema["properties"][k], v, f"{path}.{k}")
        ]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, v in enumerate(value) for p in _undeclared(schema["items"], v, f"{path}[{i}]")]
    return []


def test_rendered_objects_validate_against_their_crd_without_pruning(first: tuple[int, str, str]) -> None:
    for doc in documents(first[1]):
        if doc["kind"] in STATUS_SCHEMAS:
            schema = STATUS_SCHEMAS[doc["kind"]]
            jsonschema.Draft7Validator(schema).validate(doc)
            assert _undeclared(schema, doc, "") == [], "the API server would prune these status fields"


def test_no_secret_value_appears_in_any_status(first: tuple[int, str, str]) -> None:
    docs = documents(first[1])
    token = decoded(named(docs, "Secret", "okta-scim-token"), "token")
    key_pem = decoded(named(docs, "Secret", "okta-sp-signing"), "tls.key")
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    statuses = json.dumps([d.get("status") for d in docs if "status" in d])
    assert token not in statuses
    assert key_pem.strip().splitlines()[1] not in statuses and key_body[:64] not in statuses
    # The deployment's bundle never holds the token itself, only its hash.
    assert token not in decoded(named(docs, "Secret", "keyplane-identity"), "identity.json")


def test_rendering_again_with_the_secrets_fed_back_is_byte_identical(
    first: tuple[int, str, str], tmp_path: Path
) -> None:
    code, out, _ = first
    secrets = [d for d in documents(out) if d["kind"] == "Secret"]
    state = tmp_path / "state.yaml"
    state.write_text(yaml.safe_dump_all(secrets, sort_keys=True))
    again = render(QUICKSTART, state)
    assert again[0] == code
    assert again[1] == out  # token and SP key adopted, same bundle, same statuses


def test_rendering_without_state_issues_new_token_and_key(first: tuple[int, str, str]) -> None:
    fresh = documents(render(QUICKSTART)[1])
    old = documents(first[1])
    assert decoded(named(fresh, "Secret", "okta-scim-token"), "token") != decoded(
        named(old, "Secret", "okta-scim-token"), "token"
    )


def test_render_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """run_render collects less often while it runs (a batch job), then restores the thresholds: callers
    in the same process (the tests, the demo) keep theirs, whether the render worked or not, and nothing
    is left frozen out of their collections."""
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert render(QUICKSTART)[0] == EXIT_READY
    assert render(tmp_path / "nope")[0] == EXIT_UNREADABLE
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


@pytest.mark.parametrize(("scope", "second_owns"), [("Namespace", True), ("Cluster", False)])
def test_a_domain_claimed_in_two_namespaces_has_one_owner_per_scope(scope: str, second_owns: bool) -> None:
    """The reconcile weighs an SSODomain's claims against its own scope's (Runtime.claim_book(scope))."""
    docs = [d for d in read_documents([str(QUICKSTART)]) if d["kind"] in ("IdentityProvider", "SSODomain")]
    both = []
    for namespace, created in (("team-a", "2026-01-01T00:00:00Z"), ("team-b", "2026-02-01T00:00:00Z")):
        for doc in copy.deepcopy(docs):
            doc["metadata"].update(namespace=namespace, creationTimestamp=created)
            both.append(doc)
    settings = Settings(domain_scope=scope)  # type: ignore[arg-type]
    result = asyncio.run(render_documents(both, settings, NOW, offline=True))
    ready = {(d["metadata"]["namespace"], d["metadata"]["name"]): is_true(d["status"], READY)
             for d in result.inputs if d["kind"] == "SSODomain"}
    assert ready[("team-a", "acme")] is True
    assert ready[("team-b", "acme")] is second_owns


def test_unknown_role_exits_1_with_the_reason_on_stderr(tmp_path: Path) -> None:
    folder = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, folder)
    scim = folder / "30-scimconnection-okta.yaml"
    scim.write_text(scim.read_text().replace("role: Member}", "role: Owner}"))
    code, out, err = render(folder)
    assert code == EXIT_NOT_READY
    assert "ScimConnection keyplane-demo/okta is not Ready: UnknownRole" in err
    assert "'data-engineering' -> role 'Owner'" in err
    assert err.count("is not Ready") == 1
    status = named(documents(out), "ScimConnection", "okta")["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Stalled")["status"] == "True"


def test_an_idp_not_ready_exits_1(tmp_path: Path) -> None:
    # Rendered before the quickstart certificates are valid: the IdPs and their dependants are not Ready.
    code, _out, err = render(QUICKSTART, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert code == EXIT_NOT_READY
    assert "IdentityProvider keyplane-demo/okta is not Ready: NotYetValid" in err


def test_unreadable_yaml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: [unclosed\n")
    code, out, err = render(bad)
    assert code == EXIT_UNREADABLE
    assert out == ""
    assert err.startswith("keyplane render: ") and "bad.yaml" in err


def test_a_document_that_is_not_an_object_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- just\n- a list\n")
    assert render(bad)[0] == EXIT_UNREADABLE


def test_a_missing_path_exits_2(tmp_path: Path) -> None:
    code, _out, err = render(tmp_path / "nope")
    assert code == EXIT_UNREADABLE
    assert "no such file or directory" in err


@pytest.mark.parametrize(
    "code",
    [
        "import keyplane.render",
        # A whole render, through the CLI as CI runs it.
        "import io, contextlib\n"
        "from keyplane.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['render', '--offline', '--now', '2026-12-01T00:00:00Z', '-f', {str(QUICKSTART)!r}]) == 0\n",
        # Not offline: the quickstart's metadata is inline, so nothing is fetched and no HTTP client made.
        "import io, contextlib\n"
        "from keyplane.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['render', '--now', '2026-12-01T00:00:00Z', '-f', {str(QUICKSTART)!r}]) == 0\n",
    ],
)
def test_render_does_not_import_kopf_nor_http_or_dns_clients(code: str) -> None:
    """`keyplane render` runs in CI with no cluster: importing Kopf would register the operator's handlers.
    httpx (the API and metadata clients) and dnspython are imported only when a URL is fetched or DNS
    asked, which a render of inline metadata never does, and prometheus-client only by the operator's
    metrics: a PR check does not pay their start-up."""
    check = code + (
        "\nimport sys\n"
        "unwanted = {'kopf', 'httpx', 'httpcore', 'dns', 'prometheus_client'}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & unwanted)\n"
        "assert not loaded, f'imported: {loaded}'\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


KEYPLANE_PROGRAMS = [[sys.executable, "-m", "keyplane"], [str(Path(sys.executable).with_name("keyplane"))]]


@pytest.mark.parametrize("program", KEYPLANE_PROGRAMS)
def test_the_keyplane_program_prints_the_whole_render_and_exits_with_its_code(
    program: list[str], first: tuple[int, str, str], tmp_path: Path
) -> None:
    """`python -m keyplane` and the console script (cli.run: gc.freeze() before exiting): the same bytes as
    run_render in process, and its exit codes."""
    secrets = [d for d in documents(first[1]) if d["kind"] == "Secret"]
    state = tmp_path / "state.yaml"
    state.write_text(yaml.safe_dump_all(secrets, sort_keys=True))
    args = ["render", "--offline", "--now", "2026-12-01T00:00:00Z", "-f", str(QUICKSTART), "-f", str(state)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as usual
    done = subprocess.run([*program, *args], capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stdout, done.stderr) == first
    late = subprocess.run([*program, *args[:3], "2026-01-01T00:00:00Z", *args[4:]], capture_output=True,
                          text=True, timeout=120, env=env)
    assert late.returncode == EXIT_NOT_READY and "is not Ready: NotYetValid" in late.stderr
    assert late.stdout.startswith("---\n") and late.stdout.count("\n---\n") == 9


def test_idp_metadata_past_its_valid_until_is_refused(tmp_path: Path) -> None:
    """validUntil is read (SAML metadata §2.3): an expired document does not configure logins."""
    folder = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, folder)
    idp = folder / "10-identityprovider-okta.yaml"
    expiring = '<md:EntityDescriptor validUntil="2026-12-15T00:00:00Z" '
    idp.write_text(idp.read_text().replace("<md:EntityDescriptor ", expiring))
    code, _out, err = render(folder, now=datetime(2026, 12, 14, 23, 59, tzinfo=UTC))
    assert code == EXIT_READY, err
    code, out, err = render(folder, now=datetime(2026, 12, 15, 0, 0, 1, tzinfo=UTC))
    assert code == EXIT_NOT_READY
    assert "IdentityProvider keyplane-demo/okta is not Ready: MetadataExpired" in err
    status = named(documents(out), "IdentityProvider", "okta")["status"]
    resolved = next(c for c in status["conditions"] if c["type"] == "MetadataResolved")
    assert resolved["status"] == "False" and resolved["reason"] == "MetadataExpired"
    assert "2026-12-15T00:00:00Z" in resolved["message"]
