"""Which credentials the operator loads, and the messages that say what to fix when it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from keyplane.sources.credentials import CredentialsError, ExecPlugin, StaticToken, TokenFile
from keyplane.sources.kubeconfig import load_cluster_credentials, load_kubeconfig


def kubeconfig(path: Path, user: dict[str, Any], *, server: str = "https://api.example:6443",
               context: str = "main", extra_users: dict[str, Any] | None = None) -> Path:
    users = {"me": user, **(extra_users or {})}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": name, "user": u} for name, u in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": name}} for name in users]
        + [{"name": "main", "context": {"cluster": "c", "user": "me"}}],
    }))
    return path


def test_kubeconfig_wins_over_the_pod_service_account(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    config = kubeconfig(tmp_path / "config", {"token": "t"})
    environ = {"KUBECONFIG": str(config), "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    loaded = load_cluster_credentials(environ, service_account_dir=str(sa))
    assert loaded.server == "https://api.example:6443" and loaded.token_source == StaticToken("t")
    in_pod = load_cluster_credentials({k: v for k, v in environ.items() if k != "KUBECONFIG"},
                                      service_account_dir=str(sa))
    assert in_pod.server == "https://10.0.0.1:443" and in_pod.token_source == TokenFile(str(sa / "token"))


def test_in_cluster_ipv6_service_host(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("x")
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_cluster_credentials(environ, service_account_dir=str(tmp_path)).server == "https://[fd00::1]:443"


def test_nothing_to_load_names_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CredentialsError, match=r"set KUBECONFIG.*KUBERNETES_SERVICE_HOST"):
        load_cluster_credentials({}, service_account_dir=str(tmp_path / "none"))


def test_several_kubeconfig_files_first_one_wins(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "from-a"})
    second = kubeconfig(tmp_path / "b", {"token": "from-b"}, server="https://other:6443")
    loaded = load_cluster_credentials({"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"})
    assert loaded.token_source == StaticToken("from-a") and loaded.server == "https://api.example:6443"


def test_token_file_of_a_kubeconfig_is_relative_to_it(tmp_path: Path) -> None:
    loaded = load_kubeconfig([str(kubeconfig(tmp_path / "config", {"tokenFile": "secrets/token", "token": "t"}))])
    assert loaded.token_source == TokenFile(str(tmp_path / "secrets" / "token"))


def test_exec_plugin_settings(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws", "args": ["eks", "x"],
                     "env": [{"name": "AWS_PROFILE", "value": "ops"}], "provideClusterInfo": True}}
    plugin = load_kubeconfig([str(kubeconfig(tmp_path / "config", user))]).token_source
    assert isinstance(plugin, ExecPlugin)
    assert (plugin.command, plugin.args, plugin.env) == ("aws", ("eks", "x"), (("AWS_PROFILE", "ops"),))
    assert plugin.cluster == {"server": "https://api.example:6443"}


@pytest.mark.parametrize(("user", "message"), [
    ({"auth-provider": {"name": "oidc"}}, r"auth-provider 'oidc'.*use an exec credential plugin"),
    ({"username": "admin", "password": "pw"}, "basic auth"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, "apiVersion"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x", "interactiveMode": "Always"}},
     "interactiveMode: Always"),
    ({"client-certificate-data": "not base64!"}, "client-certificate-data is not base64"),
])
def test_unsupported_users_are_refused_with_what_to_do(tmp_path: Path, user: dict[str, Any], message: str) -> None:
    with pytest.raises(CredentialsError, match=message) as caught:
        load_kubeconfig([str(kubeconfig(tmp_path / "config", user))])
    assert "pw" not in str(caught.value)


def test_unknown_context_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="context 'nope'"):
        load_kubeconfig([str(kubeconfig(tmp_path / "config", {"token": "t"}, context="nope"))])
    with pytest.raises(CredentialsError, match="check KUBECONFIG"):
        load_kubeconfig([str(tmp_path / "absent")])
    (tmp_path / "broken").write_text("clusters: [")
    with pytest.raises(CredentialsError, match="not valid YAML"):
        load_kubeconfig([str(tmp_path / "broken")])
