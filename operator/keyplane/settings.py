"""Operator settings: one place that maps flags, environment variables and Helm values to behaviour.

Every setting has an environment variable `KEYPLANE_<NAME>` (upper snake case) and a flag
`--<name>` (kebab case); flags win over the environment, which wins over the defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .api.common import parse_duration
from .sources.metadata_cache import FetchPolicy


class Settings(BaseModel):
    """Everything the operator's behaviour depends on besides the watched objects."""

    model_config = ConfigDict(frozen=True)

    namespaces: tuple[str, ...] = Field(default=(), description="Namespaces to watch; empty: all.")
    default_base_url: str = Field(
        default="https://platform.example.com",
        description="External base URL of the platform when an IdentityProvider does not set one.",
    )
    roles: tuple[str, ...] = Field(
        default=("Admin", "Member", "Viewer"), description="Known roles, most privileged first."
    )
    bundle_secret_name: str = Field(default="keyplane-identity", description="Name of the bundle Secret.")
    allow_private_networks: bool = Field(
        default=False, description="Allow metadata URLs that resolve to private, loopback or link-local addresses."
    )
    allow_insecure_http: bool = Field(default=False, description="Allow http:// metadata and discovery URLs.")
    metadata_max_bytes: int = Field(default=1 << 20, ge=1024, description="Size cap of a metadata document.")
    metadata_timeout: float = Field(default=15.0, gt=0, description="Overall timeout of one fetch, seconds.")
    metadata_connect_timeout: float = Field(default=5.0, gt=0, description="Connect timeout, seconds.")
    certificate_expiry_warning: timedelta = Field(
        default=timedelta(days=30), description="Warn this long before an IdP certificate expires."
    )
    sp_certificate_validity: timedelta = Field(default=timedelta(days=365), description="SP signing cert lifetime.")
    sp_certificate_renew_before: timedelta = Field(
        default=timedelta(days=30), description="Renew the SP signing cert this long before it expires."
    )
    domain_scope: Literal["Namespace", "Cluster"] = Field(
        default="Namespace", description="Whether a domain has one owner per namespace or per cluster."
    )
    bundle_debounce: float = Field(default=0.5, ge=0, description="Quiet time before a namespace's bundle is written.")
    bundle_max_delay: float = Field(default=3.0, ge=0, description="Longest a burst can delay a bundle write.")
    resync_interval: float = Field(
        default=300.0, gt=0, description="How often time-based state (expiry, overlap) is re-evaluated, seconds."
    )
    timer_interval: float = Field(
        default=60.0, gt=0, description="How often each object's periodic checks run (metadata refresh, token "
        "rotation, DNS re-check), seconds; their due times come from the specs.",
    )
    peering_name: str | None = Field(default=None, description="Kopf peering object name (HA mode); None: standalone.")
    priority: int = Field(default=0, description="Peering priority of this replica (distinct per replica).")
    liveness_endpoint: str | None = Field(
        default="http://0.0.0.0:8080/healthz", description="Kopf liveness endpoint; empty disables it."
    )
    metrics_endpoint: str | None = Field(
        default=None,
        description="Prometheus metrics endpoint, e.g. http://0.0.0.0:8081/metrics; empty disables it (the chart "
        "enables it).",
    )
    dns_nameservers: tuple[str, ...] = Field(default=(), description="Resolvers for DNS verification; empty: system.")

    @field_validator("metrics_endpoint")
    @classmethod
    def _metrics_endpoint_is_http(cls, endpoint: str | None) -> str | None:
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme != "http" or not parts.hostname or parts.port is None:
                raise ValueError(f"metrics_endpoint must look like http://0.0.0.0:8081/metrics, not {endpoint!r}")
        return endpoint or None

    @field_validator("roles")
    @classmethod
    def _roles_not_empty(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        if not roles or any(not r for r in roles):
            raise ValueError("roles must be a non-empty list of names")
        return roles


_LIST_FIELDS = {"namespaces", "roles", "dns_nameservers"}
_DURATION_FIELDS = {"certificate_expiry_warning", "sp_certificate_validity", "sp_certificate_renew_before"}


def fetch_policy(settings: Settings) -> FetchPolicy:
    """What the metadata fetcher may connect to, from the operator's settings."""
    return FetchPolicy(
        allow_http=settings.allow_insecure_http,
        allow_private_networks=settings.allow_private_networks,
        max_bytes=settings.metadata_max_bytes,
        connect_timeout=settings.metadata_connect_timeout,
        total_timeout=settings.metadata_timeout,
    )


def _coerce(name: str, raw: str) -> Any:
    if name in _LIST_FIELDS:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if name in _DURATION_FIELDS:
        return parse_duration(raw)
    if name in {"peering_name", "liveness_endpoint", "metrics_endpoint"} and raw == "":
        return None
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting to a parser (values stay strings; `load` coerces them)."""
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action="store_const", const="true", help=field.description)
        else:
            parser.add_argument(flag, dest=name, metavar="VALUE", help=field.description)


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by KEYPLANE_* environment variables, overridden by flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        env_value = environ.get("KEYPLANE_" + name.upper())
        flag_value = getattr(args, name, None) if args is not None else None
        raw = flag_value if flag_value is not None else env_value
        if raw is not None:
            values[name] = _coerce(name, raw)
    return Settings(**values)


def as_environment(settings: Settings, names: Sequence[str] | None = None) -> dict[str, str]:
    """The KEYPLANE_* variables that reproduce settings (used by docs and the chart tests)."""
    out = {}
    for name in names or list(Settings.model_fields):
        value = getattr(settings, name)
        if isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, timedelta):
            text = f"{int(value.total_seconds())}s"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = "" if value is None else str(value)
        out["KEYPLANE_" + name.upper()] = text
    return out
