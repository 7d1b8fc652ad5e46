"""The container image, read statically from the Dockerfile, and the Makefile's way of building it.

Building and running the image is `make image-test` (tests/image/check_image.py), not part of `make test`.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import stat
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions per stage (line continuations joined, comments dropped) and the global ARG defaults."""
    logical, buffer = [], ""
    for line in text.splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base, match.group(2)))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), value
    return parsed


def final_stage() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[1][-1]


def test_every_stage_is_on_the_base_image_build_argument() -> None:
    args, stages = parse_dockerfile(DOCKERFILE.read_text())
    # a normal machine pulls a Debian-based Python; an air-gapped one passes its own (make image-base)
    assert re.fullmatch(r"python:3\.1[1-9]-slim-bookworm", args["BASE_IMAGE"]), args
    assert len(stages) >= 2
    assert all(stage.base == args["BASE_IMAGE"] for stage in stages)
    assert "${BASE_IMAGE}" in DOCKERFILE.read_text()
    builder = stages[0]
    # the runtime stage takes the venv from the builder, not a second install
    copies = final_stage().all("COPY")
    assert any(c.startswith(f"--from={builder.name} /opt/keyplane") for c in copies)
    assert not [r for r in final_stage().all("RUN") if "pip install" in r]


def test_no_syntax_directive() -> None:
    """`# syntax=` makes BuildKit pull a frontend image: the build would fail without a registry."""
    head = DOCKERFILE.read_text().splitlines()[:5]
    assert not [line for line in head if re.match(r"#\s*syntax\s*=", line, flags=re.IGNORECASE)]


def test_commands_call_python3() -> None:
    """Debian's python3 has no `python` command unless python-is-python3 is installed."""
    for stage in parse_dockerfile(DOCKERFILE.read_text())[1]:
        for run in stage.all("RUN"):
            assert not re.search(r"(?<![\w./-])python(?=\s)", run), run


def test_builder_drops_pip_and_setuptools_from_the_venv() -> None:
    builder = parse_dockerfile(DOCKERFILE.read_text())[1][0]
    runs = builder.all("RUN")
    install = next(i for i, r in enumerate(runs) if "pip install" in r)
    trims = [r for r in runs[install + 1:] if re.search(r"pip uninstall\b.*\bpip\b", r)]
    assert trims and "setuptools" in trims[0]
    # what the operator imports is checked again after the deletions, in the same layer
    assert re.search(r"import .*\bkopf\b.*\bkeyplane\.handlers", trims[0]), trims[0]


def test_builder_installs_the_package_with_the_constraints() -> None:
    builder = parse_dockerfile(DOCKERFILE.read_text())[1][0]
    (install,) = [r for r in builder.all("RUN") if "pip install" in r]
    assert re.search(r"pip install\b.*-c constraints\.txt \.(\s|$)", install), install
    copied = " ".join(builder.all("COPY"))
    for needed in ("pyproject.toml", "constraints.txt", "operator/"):
        assert needed in copied


def test_entrypoint_is_the_console_script() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    (entrypoint,) = final_stage().all("ENTRYPOINT")
    (cmd,) = final_stage().all("CMD")
    assert exec_form(entrypoint) == ["keyplane"]
    assert "keyplane" in scripts
    module, _, function = scripts["keyplane"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    # `run` is a real subcommand of that script
    from keyplane.cli import build_parser

    assert build_parser().parse_args(exec_form(cmd)).command == "run"


def test_runs_as_a_numeric_non_root_user() -> None:
    users = final_stage().all("USER")
    assert users, "the runtime stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    # the chart runs the same uid, so runAsNonRoot can be verified by the kubelet
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == int(user)
    assert values["podSecurityContext"]["runAsUser"] == int(user)


def test_chart_default_command_matches_the_image() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (entrypoint,) = final_stage().all("ENTRYPOINT")
    (cmd,) = final_stage().all("CMD")
    assert values["image"]["command"] == exec_form(entrypoint)
    assert values["image"]["args"] == exec_form(cmd)
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == \
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_dockerignore_keeps_the_build_inputs_only() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)

    for kept in ("pyproject.toml", "constraints.txt", "README.md", "operator/keyplane/cli.py",
                 "operator/keyplane/health/health.lua"):
        assert not ignored(kept), kept
    for dropped in (".venv", ".git", ".tools", "tests", "helm", "examples", "hack"):
        assert ignored(dropped), dropped


def make_dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", "-s", "--no-print-directory", "image", *args], cwd=REPO,
                            capture_output=True, text=True, check=True)
    return result.stdout


def test_make_image_uses_the_builder_and_base_given() -> None:
    out = make_dry_run("BUILDER=buildah", "BASE_IMAGE=localhost/keyplane-base:bookworm", "IMAGE=kp:test")
    assert "buildah build --build-arg BASE_IMAGE=localhost/keyplane-base:bookworm -t kp:test ." in \
        " ".join(out.split())
    assert "hack/image-size.sh buildah kp:test" in out


def stand_in(folder: Path, name: str, exit_code: int) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("present", "expected"), [
    ({"docker": 0, "podman": 0, "buildah": 0}, "docker"),
    ({"docker": 1, "podman": 0, "buildah": 0}, "podman"),  # a docker CLI whose engine does not answer
    ({"buildah": 0}, "buildah"),
])
def test_builder_detection_order(tmp_path: Path, present: dict[str, int], expected: str) -> None:
    """Stand-in commands (exit codes only): which builders a machine has is not up to the test."""
    for name, code in present.items():
        stand_in(tmp_path, name, code)
    env = dict(os.environ, PATH=str(tmp_path))  # only the stand-ins: the script needs nothing else
    result = subprocess.run(["/bin/sh", str(REPO / "hack" / "detect-builder.sh")], env=env, capture_output=True,
                            text=True)
    assert result.stdout.strip() == expected


def test_builder_detection_fails_clearly_without_a_builder(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))
    result = subprocess.run(["/bin/sh", str(REPO / "hack" / "detect-builder.sh")], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "docker, podman or buildah" in result.stderr
