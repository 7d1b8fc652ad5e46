"""`make image-test`: the built operator image, run the way the chart runs it.

Every container gets the chart's securityContext (helm/keyplane/values.yaml): uid/gid 65532, a read-only
root filesystem with only `/tmp` writable (the chart's emptyDir), every capability dropped, no privilege
escalation. Checks, each against this checkout run on the host:

- `keyplane --version` names the package version;
- `keyplane crds` prints the same CustomResourceDefinitions;
- `keyplane render -f` on examples/quickstart (mounted read-only) renders the same objects and keys;
- `keyplane demo` and `keyplane app-demo` print the one-line hint naming their extra and exit 2
  (the image ships the operator only);
- `keyplane run`, with a read-only kubeconfig, against an emulated API server on 127.0.0.1 (the same
  `keyplane.testing` cluster as `keyplane demo`, with the CRDs and examples/quickstart applied):
  every quickstart object becomes Ready, each namespace gets its bundle Secret, the liveness endpoint
  answers, and the operator stops on SIGTERM.

Everything it starts (emulator, containers, temporary files) is stopped and removed, also on failure.
Not part of `make test` (it needs a built image): `python tests/image/check_image.py --builder podman`.
Extra `run` options for an unusual host go in $IMAGE_RUN_FLAGS (e.g. `--runtime runc`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
CHART_VALUES = REPO / "helm" / "keyplane" / "values.yaml"
READY_TIMEOUT = 240.0  # a bound for a stuck operator on a loaded 2-core machine, not a speed goal
_ORDER = {"Namespace": 0, "ConfigMap": 1, "Secret": 1, "IdentityProvider": 2, "SSODomain": 3, "ScimConnection": 4}


class CheckFailed(Exception):
    pass


def runner_for(builder: str) -> str:
    """The command that runs what `builder` built: buildah builds but does not run containers."""
    if builder != "buildah":
        return builder
    if shutil.which("podman"):
        return "podman"  # same containers-storage as buildah
    raise CheckFailed("buildah cannot run containers with the chart's securityContext: install podman")


def chart_user() -> int:
    values = yaml.safe_load(CHART_VALUES.read_text())
    context = values["securityContext"]
    assert context["readOnlyRootFilesystem"] and context["capabilities"]["drop"] == ["ALL"], context
    return int(context["runAsUser"])


def _pid_max() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return None


def ulimit_options() -> list[str]:
    """This shell's open-file and process limits, for the container.

    The engines' defaults (often far higher) cannot be set on a sandboxed host, nor can a process limit
    above the kernel's pid_max there; such a limit could never be reached anyway.
    """
    options = []
    for limit_name, kind, cap in (("nofile", resource.RLIMIT_NOFILE, None),
                                  ("nproc", resource.RLIMIT_NPROC, _pid_max())):
        values = []
        for value in resource.getrlimit(kind):
            if cap is not None and (value == resource.RLIM_INFINITY or value > cap):
                value = cap
            values.append("-1" if value == resource.RLIM_INFINITY else str(value))
        options += ["--ulimit", f"{limit_name}={values[0]}:{values[1]}"]
    return options


def run_options(runner: str, *, mounts: Sequence[tuple[Path, str]] = (), env: dict[str, str] | None = None,
                name: str | None = None, entrypoint: str | None = None) -> list[str]:
    """`run` options for the chart's securityContext, plus the host network (the emulator is on 127.0.0.1)."""
    uid = chart_user()
    options = ["run", "--rm", "--user", f"{uid}:{uid}", "--read-only", "--cap-drop=ALL",
               "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,mode=1777,size=64m",
               "--network=host"]
    if runner == "podman":
        options.append("--read-only-tmpfs=false")  # podman would also make /run and /var/tmp writable
    options += ulimit_options()
    options += shlex.split(os.environ.get("IMAGE_RUN_FLAGS", ""))
    for source, target in mounts:
        options += ["--volume", f"{source}:{target}:ro"]
    for key, value in (env or {}).items():
        options += ["--env", f"{key}={value}"]
    if name:
        options += ["--name", name]
    if entrypoint:
        options += ["--entrypoint", entrypoint]
    return options


def run_in_image(runner: str, image: str, args: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([runner, *run_options(runner, **options), image, *args],
                          capture_output=True, text=True, timeout=300)


def host_keyplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyplane", *args], capture_output=True, text=True, timeout=300)


def expect(condition: bool, message: str, result: subprocess.CompletedProcess[str] | None = None) -> None:
    if not condition:
        detail = f"\n--- stdout:\n{result.stdout[-3000:]}\n--- stderr:\n{result.stderr[-3000:]}" if result else ""
        raise CheckFailed(message + detail)


def check_version(runner: str, image: str) -> str:
    from keyplane import __version__

    result = run_in_image(runner, image, ["--version"])
    expect(result.returncode == 0 and result.stdout.strip() == f"keyplane {__version__}",
           f"--version should print keyplane {__version__}", result)
    return result.stdout.strip()


def check_crds(runner: str, image: str) -> str:
    from keyplane.api.crds import all_crds, dump_crd

    result = run_in_image(runner, image, ["crds"])
    expect(result.returncode == 0, "keyplane crds failed", result)
    expect(result.stdout == "---\n".join(dump_crd(c) for c in all_crds()), "the image's CRDs differ from crds/")
    return f"{result.stdout.count('kind: CustomResourceDefinition')} CRDs, identical to this checkout"


def _summary(stream: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Kind, namespace, name and data keys of each rendered object (keys and tokens differ run to run)."""
    return sorted((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"],
                   tuple(sorted(d.get("data") or {}))) for d in yaml.safe_load_all(stream) if d)


def check_render(runner: str, image: str) -> str:
    result = run_in_image(runner, image, ["render", "-f", "/examples/quickstart"],
                          mounts=[(QUICKSTART, "/examples/quickstart")])
    host = host_keyplane("render", "-f", str(QUICKSTART))
    expect(result.returncode == host.returncode == 0, "keyplane render -f examples/quickstart failed", result)
    expect(_summary(result.stdout) == _summary(host.stdout), "the image renders other objects than the host", result)
    return f"{len(_summary(result.stdout))} objects, as on the host"


_CONTENTS = """
import importlib.util, json, pathlib, sys, sysconfig
import kopf, lxml.etree, xmlsec, keyplane.cli, keyplane.handlers
def found(module):  # find_spec of "a.b" raises when "a" itself is absent
    return all(importlib.util.find_spec(".".join(module.split(".")[:i + 1])) for i in range(module.count(".") + 1))
if found("kubernetes"):  # not a run-time dependency; only there if a constraint brings it back
    import kubernetes, kubernetes.client, kubernetes.config
site = pathlib.Path(sysconfig.get_path("purelib"))
print(json.dumps({
    "present": [m for m in ("pip", "setuptools", "kubernetes.aio") if found(m)],
    "uncompiled": [str(p) for p in site.rglob("*.py")
                   if not pathlib.Path(importlib.util.cache_from_source(str(p))).exists()],
    "dont_write_bytecode": sys.flags.dont_write_bytecode,
}))
"""


def check_contents(runner: str, image: str) -> str:
    """Trimmed at build time (no pip, setuptools, kubernetes.aio); every module precompiled, nothing to write."""
    result = run_in_image(runner, image, ["-c", _CONTENTS], entrypoint="python3")
    expect(result.returncode == 0, "the image's packages do not import", result)
    found = json.loads(result.stdout)
    expect(found["present"] == [], f"still in the image: {found['present']}")
    expect(found["uncompiled"] == [], f"modules without bytecode, compiled at every start: {found['uncompiled'][:5]}")
    expect(found["dont_write_bytecode"] == 1, "PYTHONDONTWRITEBYTECODE should be set in the image")
    return "no pip, setuptools or kubernetes.aio; every module precompiled"


def check_extra_hints(runner: str, image: str) -> str:
    for args, extra in ((["demo"], "demo"), (["app-demo", "--bundle", "/tmp/identity.json"], "app")):
        result = run_in_image(runner, image, args)
        expect(result.returncode == 2 and f"pip install 'keyplane[{extra}]'" in result.stderr
               and "Traceback" not in result.stderr, f"keyplane {args[0]} should name the {extra} extra", result)
    return "demo and app-demo name their extra, exit 2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _converged(cluster: Any, docs: list[dict[str, Any]], bundle_secret: str) -> bool:
    from keyplane.api.kinds import API_GROUP_VERSION
    from keyplane.reconcile.conditions import READY, condition

    namespaces = {d["metadata"].get("namespace", "default") for d in docs}
    for doc in docs:
        obj = await cluster.get(API_GROUP_VERSION, doc["kind"], doc["metadata"].get("namespace", "default"),
                                doc["metadata"]["name"])
        if obj is None or (condition(obj.get("status"), READY) or {}).get("status") != "True":
            return False
    return all([await cluster.get("v1", "Secret", ns, bundle_secret) for ns in namespaces])


async def check_run(runner: str, image: str, workdir: Path) -> str:
    from keyplane.api.crds import all_crds
    from keyplane.api.kinds import API_GROUP_VERSION
    from keyplane.render import read_documents
    from keyplane.settings import Settings
    from keyplane.testing import emulated_cluster

    documents = sorted(read_documents([str(QUICKSTART)]), key=lambda d: _ORDER.get(str(d.get("kind")), 5))
    keyplane_docs = [d for d in documents if d.get("apiVersion") == API_GROUP_VERSION]
    async with emulated_cluster(all_crds()) as cluster:
        for doc in documents:
            await cluster.apply(doc)
        kubeconfig = workdir / "kubeconfig"
        shutil.copyfile(cluster.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o644)  # readable by uid 65532, as a mounted Secret would be
        port, name = free_port(), f"keyplane-image-test-{uuid.uuid4().hex[:8]}"
        options = run_options(runner, name=name, mounts=[(kubeconfig, "/etc/keyplane/kubeconfig")], env={
            "KUBECONFIG": "/etc/keyplane/kubeconfig",
            "KEYPLANE_LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz"})
        log_path = workdir / "operator.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(runner, *options, image, "run", stdout=log, stderr=log)
            try:
                started = time.monotonic()
                while not await _converged(cluster, keyplane_docs, Settings().bundle_secret_name):
                    if process.returncode is not None or time.monotonic() - started > READY_TIMEOUT:
                        raise CheckFailed("the operator in the image did not make examples/quickstart Ready:\n"
                                          + log_path.read_text(errors="replace")[-4000:])
                    await asyncio.sleep(0.5)
                elapsed = time.monotonic() - started
                async with httpx.AsyncClient() as client:
                    health = await client.get(f"http://127.0.0.1:{port}/healthz")
                expect(health.status_code == 200, f"liveness endpoint answered {health.status_code}")
                # SIGTERM, as the kubelet sends it; the emulator keeps answering while the operator stops
                stop = await asyncio.create_subprocess_exec(runner, "stop", "--time", "10", name,
                                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                code = await asyncio.wait_for(process.wait(), timeout=60)
                await stop.wait()
                log_text = log_path.read_text(errors="replace")
                expect(code == 0, f"the operator should exit 0 on SIGTERM, got {code}:\n{log_text[-2000:]}")
                expect("Read-only file system" not in log_text,
                       f"the operator tried to write outside /tmp:\n{log_text[-2000:]}")
            finally:
                if process.returncode is None:
                    subprocess.run([runner, "rm", "--force", name], capture_output=True, timeout=60)
                    await process.wait()
    return (f"{len(keyplane_docs)} objects Ready and bundles written in {elapsed:.0f}s; "
            "liveness 200; clean exit on SIGTERM")


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="keyplane-image-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--builder", required=True, help="docker, podman or buildah (what built --image)")
    parser.add_argument("--image", default="keyplane:dev")
    args = parser.parse_args(argv)
    try:
        runner = runner_for(args.builder)
        checks = [("version", check_version), ("crds", check_crds), ("render", check_render),
                  ("extras", check_extra_hints), ("contents", check_contents)]
        for label, check in checks:
            print(f"image-test {label}: {check(runner, args.image)}", flush=True)
        with workspace() as workdir:
            print(f"image-test run: {asyncio.run(check_run(runner, args.image, workdir))}", flush=True)
    except CheckFailed as failure:
        print(f"image-test FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"image-test: {args.image} passed, run by {runner} as the chart runs it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
