"""Helpers of the chart tests: find helm, render the chart with values, split the stream."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import missing

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "keyplane"
RELEASE, NAMESPACE = "kp", "keyplane-system"


def find_helm() -> str | None:
    """helm from PATH, else the copy `make tools` puts in .tools/bin."""
    found = shutil.which("helm")
    if found:
        return found
    local = REPO / ".tools" / "bin" / "helm"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        missing("helm not found on PATH nor in .tools/bin (run `make tools`)")
    return path


Render = Callable[..., list[dict[str, Any]]]


def helm_template(helm: str, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
    if values is not None:
        assert tmp is not None
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"values-{abs(hash(yaml.safe_dump(values)))}.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """render(values=None, *extra_args) -> the rendered objects (cached per values)."""
    cache: dict[str, list[dict[str, Any]]] = {}
    tmp = tmp_path_factory.mktemp("values")

    def run(values: dict[str, Any] | None = None, *args: str) -> list[dict[str, Any]]:
        key = yaml.safe_dump([values, args])
        if key not in cache:
            out = helm_template(helm, *args, values=values or {}, tmp=tmp).stdout
            cache[key] = [d for d in yaml.safe_load_all(out) if d]
        return cache[key]

    return run


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]
    return found


def container_env(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
