"""`keyplane demo` / `keyplane app-demo` without their optional dependencies: a one-line hint, exit 2.

The operator image installs `keyplane` without extras. Uninstalling packages from the test venv is not
an option, so these tests hide distributions from `importlib.metadata` (what the CLI checks); the image
itself is checked for the same hint by `make image-test` (tests/image/check_image.py).
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import keyplane.demo
from keyplane.cli import main, missing_extra

REPO = Path(__file__).resolve().parents[3]
_real_distribution = importlib.metadata.distribution


def hide(monkeypatch: pytest.MonkeyPatch, hidden: Callable[[str], bool]) -> None:
    """Make `importlib.metadata.distribution` report the distributions `hidden` selects as not installed."""

    def distribution(name: str) -> Any:
        if hidden(name):
            raise importlib.metadata.PackageNotFoundError(name)
        return _real_distribution(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def names(requirements: Iterable[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower() for r in requirements}


def extra_of_pyproject(extra: str) -> set[str]:
    return names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra])


def test_extras_are_read_from_the_installed_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, lambda name: name != "keyplane")
    assert names(missing_extra("demo")) == extra_of_pyproject("demo")
    assert names(missing_extra("app")) == extra_of_pyproject("app")
    assert missing_extra("no-such-extra") == []


def test_nothing_missing_in_the_dev_venv() -> None:
    assert missing_extra("demo") == []
    assert missing_extra("app") == []


def test_demo_without_kmock_prints_the_extra_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def must_not_start(*args: object, **kwargs: object) -> int:
        raise AssertionError("the demo started without its dependencies")

    monkeypatch.setattr(keyplane.demo, "run_demo", must_not_start)
    hide(monkeypatch, lambda name: name == "kmock")
    assert main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "not installed: kmock" in err
    assert "pip install 'keyplane[demo]'" in err


def test_app_demo_without_the_app_extra_prints_the_extra_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, lambda name: name in {"starlette", "uvicorn"})
    assert main(["app-demo", "--bundle", "/nonexistent/identity.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not installed: starlette, uvicorn" in err
    assert "pip install 'keyplane[app]'" in err
