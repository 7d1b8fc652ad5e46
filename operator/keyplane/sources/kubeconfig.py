"""Where the operator's API credentials come from: $KUBECONFIG, the pod's ServiceAccount, ~/.kube/config.

The order is controller-runtime's: an explicit $KUBECONFIG wins, then the in-cluster ServiceAccount
(KUBERNETES_SERVICE_HOST/PORT and the projected token), then ~/.kube/config. Every loader takes its
paths and environment as arguments, so tests lay them out in a temporary folder.

Supported kubeconfig users: client certificates (file or data), `token`, `tokenFile` and `exec` plugins.
`auth-provider` (removed from kubectl) and basic auth (removed from Kubernetes) are refused with a
message saying what to use instead.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .credentials import (
    EXEC_API_VERSIONS,
    TLS,
    Clock,
    ClusterCredentials,
    CredentialsError,
    ExecPlugin,
    StaticToken,
    TokenFile,
    TokenSource,
    utcnow,
)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_KUBECONFIG = "~/.kube/config"


def load_cluster_credentials(
    environ: Mapping[str, str] | None = None, *, service_account_dir: str = SERVICE_ACCOUNT_DIR, clock: Clock = utcnow
) -> ClusterCredentials:
    """The credentials the operator runs with (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if environ.get("KUBECONFIG"):
        return load_kubeconfig(environ["KUBECONFIG"].split(os.pathsep), clock=clock)
    if environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(os.path.join(service_account_dir, "token")):
        return load_incluster(environ, service_account_dir, clock=clock)
    home_config = os.path.expanduser(DEFAULT_KUBECONFIG)
    if os.path.exists(home_config):
        return load_kubeconfig([home_config], clock=clock)
    raise CredentialsError("no Kubernetes API credentials: set KUBECONFIG, or run in a pod with a ServiceAccount"
                           f" token ({service_account_dir}/token and KUBERNETES_SERVICE_HOST)")


def load_incluster(
    environ: Mapping[str, str], directory: str = SERVICE_ACCOUNT_DIR, *, clock: Clock = utcnow
) -> ClusterCredentials:
    """The pod's ServiceAccount: the projected token (re-read as the kubelet rotates it), CA and namespace."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise CredentialsError("in-cluster credentials need KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ca_file = os.path.join(directory, "ca.crt")
    namespace = None
    namespace_file = os.path.join(directory, "namespace")
    if os.path.exists(namespace_file):
        with open(namespace_file, encoding="utf-8") as f:
            namespace = f.read().strip() or None
    return ClusterCredentials(
        f"https://{host}:{port}",
        tls=TLS(ca_file=ca_file if os.path.exists(ca_file) else None),
        token_source=TokenFile(os.path.join(directory, "token")),
        default_namespace=namespace,
        origin=f"in-cluster ServiceAccount ({directory})",
        clock=clock,
    )


class _Merged:
    """Named entries of one or more kubeconfig files, the first file naming an entry winning (as kubectl)."""

    def __init__(self) -> None:
        self.current_context: str | None = None
        self.entries: dict[str, dict[str, tuple[dict[str, Any], str]]] = {"contexts": {}, "clusters": {}, "users": {}}

    def add(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                config = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise CredentialsError(f"the kubeconfig {path} is not valid YAML: {exc}") from exc
        if not isinstance(config, dict):
            raise CredentialsError(f"the kubeconfig {path} is not a kubeconfig (a YAML mapping)")
        self.current_context = self.current_context or config.get("current-context")
        base = os.path.dirname(os.path.abspath(path))
        for section, entries in self.entries.items():
            singular = section[:-1]
            for item in config.get(section) or []:
                if isinstance(item, dict) and item.get("name") and item["name"] not in entries:
                    entries[item["name"]] = (item.get(singular) or {}, base)

    def get(self, section: str, name: str, what: str) -> tuple[dict[str, Any], str]:
        try:
            return self.entries[section][name]
        except KeyError:
            raise CredentialsError(f"the kubeconfig names {what} {name!r}, which it does not define") from None


def load_kubeconfig(paths: Sequence[str], context: str | None = None, *, clock: Clock = utcnow) -> ClusterCredentials:
    """The current context (or `context`) of the kubeconfig files `paths` (as $KUBECONFIG lists them)."""
    merged = _Merged()
    found = [os.path.expanduser(p) for p in paths if p and os.path.exists(os.path.expanduser(p))]
    if not found:
        raise CredentialsError(f"no kubeconfig found at {os.pathsep.join(paths)} (check KUBECONFIG)")
    for path in found:
        merged.add(path)
    name = context or merged.current_context
    if not name:
        raise CredentialsError(f"the kubeconfig {os.pathsep.join(found)} has no current-context")
    ctx, _ = merged.get("contexts", name, "the context")
    cluster, cluster_base = merged.get("clusters", str(ctx.get("cluster")), "the cluster")
    user, user_base = merged.get("users", str(ctx.get("user")), "the user") if ctx.get("user") else ({}, "")
    if not cluster.get("server"):
        raise CredentialsError(f"the kubeconfig cluster {ctx.get('cluster')!r} has no server")
    tls = TLS(
        ca_file=_path(cluster.get("certificate-authority"), cluster_base),
        ca_data=_data(cluster, "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=_path(user.get("client-certificate"), user_base),
        key_file=_path(user.get("client-key"), user_base),
        cert_data=_data(user, "client-certificate-data"),
        key_data=_data(user, "client-key-data"),
    )
    return ClusterCredentials(
        cluster["server"],
        tls=tls,
        token_source=_token_source(user, user_base, cluster, str(ctx.get("user"))),
        default_namespace=ctx.get("namespace"),
        origin=f"kubeconfig {os.pathsep.join(found)}, context {name}",
        clock=clock,
    )


def _token_source(user: dict[str, Any], base: str, cluster: dict[str, Any], name: str) -> TokenSource | None:
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name")
        raise CredentialsError(f"the kubeconfig user {name!r} uses auth-provider {provider!r}, which Keyplane does not"
                               " support: use an exec credential plugin (e.g. kubelogin) instead")
    if user.get("username") or user.get("password"):
        raise CredentialsError(f"the kubeconfig user {name!r} uses basic auth, which Kubernetes no longer accepts:"
                               " use a token, a client certificate or an exec plugin")
    if user.get("tokenFile"):
        return TokenFile(_path(user["tokenFile"], base) or "")
    if user.get("token"):
        return StaticToken(str(user["token"]))
    if user.get("exec"):
        return _exec_plugin(user["exec"], base, cluster, name)
    return None


def _exec_plugin(spec: dict[str, Any], base: str, cluster: dict[str, Any], name: str) -> ExecPlugin:
    api_version = spec.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise CredentialsError(f"the exec plugin of kubeconfig user {name!r} has apiVersion {api_version!r};"
                               f" supported: {', '.join(EXEC_API_VERSIONS)}")
    if spec.get("interactiveMode") == "Always":
        raise CredentialsError(f"the exec plugin of kubeconfig user {name!r} needs a terminal"
                               " (interactiveMode: Always); the operator has none")
    command = str(spec.get("command") or "")
    if not command:
        raise CredentialsError(f"the exec plugin of kubeconfig user {name!r} has no command")
    if os.sep in command and not os.path.isabs(command):  # relative to the kubeconfig, as in client-go
        command = os.path.join(base, command)
    env = tuple((str(e["name"]), str(e.get("value", ""))) for e in spec.get("env") or [] if e.get("name"))
    cluster_info = None
    if spec.get("provideClusterInfo"):
        cluster_info = {k: v for k, v in {
            "server": cluster.get("server"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "insecure-skip-tls-verify": cluster.get("insecure-skip-tls-verify"),
        }.items() if v is not None}
    return ExecPlugin(command, tuple(str(a) for a in spec.get("args") or []), env, str(api_version), cluster_info)


def _path(value: Any, base: str) -> str | None:
    if not value:
        return None
    path = os.path.expanduser(str(value))
    return path if os.path.isabs(path) else os.path.join(base, path)


def _data(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError(f"the kubeconfig field {key} is not base64-encoded PEM") from None
