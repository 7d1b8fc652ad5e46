"""The Argo CD health checks, run the way Argo CD runs them (a Lua 5.1 VM, `obj` global, `health_test.yaml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from keyplane.health import KINDS, argocd_cm_entries, health_scripts

lupa = pytest.importorskip("lupa.lua51", reason="lupa with Lua 5.1 (the dialect of Argo CD's gopher-lua)")

TESTDATA = Path(__file__).parent / "testdata"


def to_lua(lua: Any, value: Any) -> Any:
    """JSON-like Python value -> Lua value, as Argo CD converts the live object (arrays 1-indexed)."""
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Execute the kind's script against obj in a VM with only the libraries Argo CD opens."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    # Argo CD opens base, table, string, math (and a few safe os functions); no io, no require of files.
    for unsafe in ("io", "os", "require", "dofile", "loadfile", "package", "debug"):
        lua.globals()[unsafe] = None
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(health_scripts()[kind])
    assert result is not None, "a health script must return a table"
    return {"status": result["status"], "message": result["message"]}


def health_cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((TESTDATA / kind / "health_test.yaml").read_text())
        for test in spec["tests"]:
            path = TESTDATA / Path(test["inputPath"]).relative_to("testdata")
            cases.append(pytest.param(kind, path, test["healthStatus"], id=f"{kind}-{path.stem}"))
    return cases


@pytest.mark.parametrize(("kind", "path", "expected"), health_cases())
def test_health_test_yaml(kind: str, path: Path, expected: dict[str, str]) -> None:
    obj = yaml.safe_load(path.read_text())
    assert obj["kind"] == kind
    assert run_health(kind, obj) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_every_outcome_is_covered(kind: str) -> None:
    spec = yaml.safe_load((TESTDATA / kind / "health_test.yaml").read_text())
    assert {t["healthStatus"]["status"] for t in spec["tests"]} == {"Healthy", "Progressing", "Degraded"}


def test_argocd_cm_keys() -> None:
    entries = argocd_cm_entries()
    assert sorted(entries) == sorted(f"resource.customizations.health.keyplane.dev_{k}" for k in KINDS)
    for script in entries.values():
        assert "return hs" in script


def test_health_scripts_ship_as_package_data() -> None:
    import keyplane.health

    folder = Path(keyplane.health.__file__).parent
    assert sorted(p.name for p in folder.glob("*.lua")) == ["health.lua"]
