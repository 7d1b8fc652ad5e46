"""Types shared by the three kinds: references, durations, conditions, the schema extensions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Go-style durations ("1h", "90m", "2160h", "1h30m", "0"), as kubectl users write them everywhere else.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

MAX_DURATION = timedelta(days=36500)  # a century: longer is a typo, and timedelta overflows soon after
DNS_LABEL_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_NAME)]


def parse_duration(value: str) -> timedelta:
    """Parse a Go-style duration ("24h", "1h30m", "0"); raise ValueError on anything else."""
    text = value.strip()
    if text == "0":
        return timedelta(0)
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 1h, 2160h)")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {value!r} is longer than {int(MAX_DURATION.total_seconds() // 3600)}h")
    return timedelta(seconds=seconds)


def _valid_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN), AfterValidator(_valid_duration)]


def cel(rule: str, message: str) -> dict[str, Any]:
    """One x-kubernetes-validations entry (a CEL rule the API server enforces on apply)."""
    return {"rule": rule, "message": message}


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """Schema extra carrying CEL rules (for a Field's json_schema_extra)."""
    return {"x-kubernetes-validations": list(rules)}


SPEC_CONFIG = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def spec_config(*rules: dict[str, Any]) -> ConfigDict:
    """The spec models' config, with CEL rules that land on the object's schema."""
    return ConfigDict(**SPEC_CONFIG, json_schema_extra=validations(*rules))  # type: ignore[typeddict-item]


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields are errors (the API server would silently prune them)."""

    model_config = SPEC_CONFIG


class StatusModel(BaseModel):
    """Base of every status model: tolerant on read, so an older operator reads a newer status."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LocalObjectReference(SpecModel):
    """A reference to another object of the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object in the same namespace.")


class ConfigMapKeyReference(SpecModel):
    """A key of a ConfigMap in the same namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap in the same namespace.")
    key: str = Field(default="metadata.xml", min_length=1, max_length=253, description="Key in the ConfigMap's data.")


class SecretKeyReference(SpecModel):
    """A key of a Secret in the same namespace."""

    name: ObjectName = Field(description="Name of the Secret in the same namespace.")
    key: str = Field(min_length=1, max_length=253, description="Key in the Secret's data.")


class SecretReference(StatusModel):
    """Where an owned Secret is (status): its name and the key that matters."""

    name: str = Field(description="Name of the Secret in the object's namespace.")
    key: str | None = Field(default=None, description="Key in the Secret's data.")


class Condition(StatusModel):
    """A metav1.Condition: kstatus, kubectl wait, Argo CD and Flux read these."""

    type: str = Field(description="Condition type: Ready, Reconciling, Stalled or a kind-specific one.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail: what happened and what to do.")
    lastTransitionTime: str = Field(description="When the status last changed (RFC 3339).")
    observedGeneration: int = Field(default=0, description="The metadata.generation this condition is about.")


CONDITIONS_DESCRIPTION = (
    "Current state: Ready, Reconciling, Stalled (kstatus) and kind-specific conditions, keyed by type."
)


# Conditions are a map keyed by type, so server-side apply merges them correctly.
CONDITIONS_LIST_EXTRA: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
