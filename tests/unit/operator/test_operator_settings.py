"""Settings: KEYPLANE_* variables, flags (which win), list and duration parsing, bad values refused."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest
from pydantic import ValidationError

from keyplane.cli import build_parser
from keyplane.settings import Settings, add_arguments, as_environment, load


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_without_environment_or_flags() -> None:
    settings = load(None, {})
    assert settings == Settings()
    assert settings.roles == ("Admin", "Member", "Viewer")
    assert settings.bundle_secret_name == "keyplane-identity"
    assert settings.domain_scope == "Namespace"
    assert settings.allow_private_networks is False


def test_environment_variables_are_read() -> None:
    settings = load(
        None,
        {
            "KEYPLANE_NAMESPACES": "team-a, team-b,,",
            "KEYPLANE_ROLES": "Owner,Editor",
            "KEYPLANE_DEFAULT_BASE_URL": "https://pipekit.example.com",
            "KEYPLANE_ALLOW_PRIVATE_NETWORKS": "true",
            "KEYPLANE_METADATA_MAX_BYTES": "2048",
            "KEYPLANE_METADATA_TIMEOUT": "2.5",
            "KEYPLANE_CERTIFICATE_EXPIRY_WARNING": "1h30m",
            "KEYPLANE_SP_CERTIFICATE_VALIDITY": "8760h",
            "KEYPLANE_DOMAIN_SCOPE": "Cluster",
            "KEYPLANE_PEERING_NAME": "",
            "KEYPLANE_LIVENESS_ENDPOINT": "",
            "UNRELATED": "x",
        },
    )
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.roles == ("Owner", "Editor")
    assert settings.default_base_url == "https://pipekit.example.com"
    assert settings.allow_private_networks is True
    assert settings.metadata_max_bytes == 2048
    assert settings.metadata_timeout == 2.5
    assert settings.certificate_expiry_warning == timedelta(hours=1, minutes=30)
    assert settings.sp_certificate_validity == timedelta(days=365)
    assert settings.domain_scope == "Cluster"
    assert settings.peering_name is None
    assert settings.liveness_endpoint is None


def test_flags_win_over_the_environment() -> None:
    environ = {
        "KEYPLANE_ROLES": "A,B",
        "KEYPLANE_BUNDLE_SECRET_NAME": "from-env",
        "KEYPLANE_CERTIFICATE_EXPIRY_WARNING": "24h",
    }
    settings = load(
        flags("--roles", "X, Y ,Z", "--certificate-expiry-warning", "48h", "--allow-insecure-http"), environ
    )
    assert settings.roles == ("X", "Y", "Z")
    assert settings.certificate_expiry_warning == timedelta(hours=48)
    assert settings.bundle_secret_name == "from-env"  # no flag: the environment stays
    assert settings.allow_insecure_http is True


def test_cli_subcommands_accept_every_setting_flag() -> None:
    args = build_parser().parse_args(
        [
            "render",
            "-f",
            "x.yaml",
            "--default-base-url",
            "https://a.example",
            "--domain-scope",
            "Cluster",
            "--offline",
        ]
    )
    settings = load(args, {"KEYPLANE_DEFAULT_BASE_URL": "https://env.example"})
    assert settings.default_base_url == "https://a.example"
    assert settings.domain_scope == "Cluster"
    run_args = build_parser().parse_args(["run", "--namespaces", "a,b", "--priority", "10"])
    run_settings = load(run_args, {})
    assert run_settings.namespaces == ("a", "b") and run_settings.priority == 10


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("KEYPLANE_METADATA_MAX_BYTES", "12", "metadata_max_bytes"),
        ("KEYPLANE_METADATA_MAX_BYTES", "lots", "metadata_max_bytes"),
        ("KEYPLANE_METADATA_TIMEOUT", "0", "metadata_timeout"),
        ("KEYPLANE_DOMAIN_SCOPE", "Galaxy", "domain_scope"),
        ("KEYPLANE_ALLOW_PRIVATE_NETWORKS", "perhaps", "allow_private_networks"),
        ("KEYPLANE_ROLES", " , ", "roles"),
        ("KEYPLANE_CERTIFICATE_EXPIRY_WARNING", "soon", "duration"),
        ("KEYPLANE_SP_CERTIFICATE_RENEW_BEFORE", "30d", "duration"),
        ("KEYPLANE_METRICS_ENDPOINT", "0.0.0.0:8081", "metrics_endpoint"),
        ("KEYPLANE_METRICS_ENDPOINT", "https://0.0.0.0:8081/metrics", "metrics_endpoint"),
    ],
)
def test_bad_values_raise(name: str, value: str, fragment: str) -> None:
    with pytest.raises((ValidationError, ValueError)) as caught:
        load(None, {name: value})
    assert fragment in str(caught.value)


def test_settings_are_immutable() -> None:
    with pytest.raises(ValidationError):
        Settings().roles = ("x",)  # type: ignore[misc]


def test_as_environment_round_trips() -> None:
    original = load(
        None,
        {
            "KEYPLANE_NAMESPACES": "a,b",
            "KEYPLANE_CERTIFICATE_EXPIRY_WARNING": "72h",
            "KEYPLANE_ALLOW_PRIVATE_NETWORKS": "true",
            "KEYPLANE_PEERING_NAME": "keyplane",
            "KEYPLANE_PRIORITY": "5",
        },
    )
    environment = as_environment(original)
    assert environment["KEYPLANE_NAMESPACES"] == "a,b"
    assert environment["KEYPLANE_ALLOW_PRIVATE_NETWORKS"] == "true"
    assert load(None, environment) == original
    assert load(None, as_environment(Settings())) == Settings()
