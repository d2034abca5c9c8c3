"""Runs a rendered chart as local processes, the way the kubelet would run its pods.

No Kubernetes API server can run on this project's machines, so this plays the part of
one for the objects the chart renders:

- every Deployment and StatefulSet becomes its replicas' pods, each with its own loopback
  address (127.X.Y.n) standing for its pod IP; a pod's `0.0.0.0` is that address;
- Service DNS names (`<svc>.<namespace>.svc[.<domain>]`) and a headless Service's pod names
  (`<pod>.<svc>.…`) map to pod addresses, as cluster DNS would (a ClusterIP Service picks
  one of its pods; its port must equal the target port, which holds for this chart);
- Secrets, ConfigMaps and projected volumes are written as files where the pods mount
  them, emptyDirs and claims are directories (one directory per claim, shared by every pod
  that mounts it: the ReadWriteMany store);
- environment comes from `env` (values, `fieldRef` metadata.name and status.podIP,
  `secretKeyRef`, `configMapKeyRef`) and `envFrom`; `$(VAR)` in args is expanded as the
  kubelet does;
- container paths in args, environment and mounted files are rewritten to those
  directories, and cluster names to addresses, in one pass (nothing is rewritten twice);
- the image's entrypoint is the `polaroid` binary under test (POLAROID_BIN); a container
  whose command is `redis-server` runs the local redis-server;
- probes are polled like the kubelet's: startup first, then readiness.

What it cannot show: admission, scheduling, the security context (read-only root
filesystem, user ids), resource limits, NetworkPolicies, Services' load balancing and
the pods' own network namespaces (a pod's address here is a loopback address, so the
binary's checks that apply only beyond loopback are asserted from the rendered settings
instead, in the test).
"""

from __future__ import annotations

import base64
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import ssl
import string
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


def decoded(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


@dataclass
class Pod:
    name: str
    ip: str
    labels: dict[str, str]
    spec: dict
    workload: dict
    dir: pathlib.Path
    claims: dict[str, pathlib.Path] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def container(self) -> dict:
        containers = self.spec["containers"]
        assert len(containers) == 1, f"{self.name}: one container per pod expected"
        return containers[0]

    def port(self, name_or_number: str | int) -> int:
        if isinstance(name_or_number, int):
            return name_or_number
        for port in self.container.get("ports", []):
            if port["name"] == name_or_number:
                return port["containerPort"]
        raise AssertionError(f"{self.name} has no port {name_or_number!r}")

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for stream in ("stdout", "stderr"):
            path = self.dir / f"{stream}.log"
            if path.exists():
                text += f"--- {self.name} {stream}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


class Cluster:
    def __init__(self, objects: list[dict], root: pathlib.Path, *, namespace: str,
                 domain: str = "cluster.local", binaries: dict[str, str]) -> None:
        self.objects = objects
        self.root = root
        self.namespace = namespace
        self.domain = domain
        self.binaries = binaries
        self.by_kind: dict[str, dict[str, dict]] = {}
        for obj in objects:
            self.by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
        # A /16 of loopback of its own, so that runs side by side do not meet.
        self.net = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        self.pods: list[Pod] = []
        self.claim_dirs: dict[str, pathlib.Path] = {}
        self._make_pods()
        self.hosts = self._dns()

    def add(self, objects: list[dict]) -> None:
        """Objects the chart does not render but the operator made (Secrets the values name)."""
        for obj in objects:
            self.by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj

    # -- objects -> pods ------------------------------------------------------------
    def _make_pods(self) -> None:
        n = 1
        for kind in ("StatefulSet", "Deployment"):
            for workload in self.by_kind.get(kind, {}).values():
                replicas = workload["spec"].get("replicas")
                if replicas is None:
                    replicas = self._autoscaled(workload)
                template = workload["spec"]["template"]
                for i in range(replicas):
                    if kind == "StatefulSet":
                        name = f"{workload['metadata']['name']}-{i}"
                    else:
                        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                        name = f"{workload['metadata']['name']}-6d4b9c7f8-{suffix}"
                    pod_dir = self.root / "pods" / name
                    pod_dir.mkdir(parents=True)
                    pod = Pod(name, f"{self.net}.{n}", template["metadata"].get("labels", {}),
                              template["spec"], workload, pod_dir)
                    n += 1
                    for claim in workload["spec"].get("volumeClaimTemplates", []):
                        pod.claims[claim["metadata"]["name"]] = self._claim_dir(
                            f"{claim['metadata']['name']}-{name}")
                    self.pods.append(pod)

    def _autoscaled(self, workload: dict) -> int:
        """Replicas of a workload without `spec.replicas`: what its HPA or KEDA
        ScaledObject starts it with (their minimum), else Kubernetes' default, 1."""
        for kind, key in (("HorizontalPodAutoscaler", "minReplicas"), ("ScaledObject", "minReplicaCount")):
            for scaler in self.by_kind.get(kind, {}).values():
                target = scaler["spec"]["scaleTargetRef"]
                if target["name"] == workload["metadata"]["name"] and target.get("kind", "Deployment") == workload["kind"]:
                    return scaler["spec"].get(key, 1)
        return 1

    def _claim_dir(self, claim: str) -> pathlib.Path:
        if claim not in self.claim_dirs:
            path = self.root / "claims" / claim
            path.mkdir(parents=True)
            self.claim_dirs[claim] = path
        return self.claim_dirs[claim]

    def selected(self, selector: dict[str, str]) -> list[Pod]:
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in selector.items())]

    def _dns(self) -> dict[str, str]:
        """Names cluster DNS would answer, to pod addresses."""
        hosts: dict[str, str] = {}
        ns, domain = self.namespace, self.domain

        def names(base: str) -> list[str]:
            return [f"{base}.{ns}.svc.{domain}", f"{base}.{ns}.svc", f"{base}.{ns}"]

        for service in self.by_kind.get("Service", {}).values():
            pods = self.selected(service["spec"].get("selector", {}))
            if not pods:
                continue
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert pods[0].port(target) == port["port"], (
                    f"Service {service['metadata']['name']}: port {port['port']} differs from its "
                    "target port; this harness cannot translate ports")
            if service["spec"].get("clusterIP") == "None":
                for pod in pods:
                    for name in names(f"{pod.name}.{service['metadata']['name']}"):
                        hosts[name] = pod.ip
            # A ClusterIP Service answers with one of its pods: the last, so that a
            # client Service and an internal one over the same pods reach different ones.
            for name in names(service["metadata"]["name"]):
                hosts[name] = pods[-1].ip if service["spec"].get("publishNotReadyAddresses") else pods[0].ip
        return hosts

    def address(self, service: str, port: str) -> str:
        """host:port of a Service's port, as a client in the cluster dials it."""
        svc = self.by_kind["Service"][service]
        number = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == port)
        return f"{self.hosts[f'{service}.{self.namespace}.svc.{self.domain}']}:{number}"

    # -- volumes, environment, command ----------------------------------------------
    def _write_items(self, target: pathlib.Path, data: dict[str, str], items: list[dict] | None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        chosen = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, path in chosen:
            assert key in data, f"key {key!r} missing from a mounted Secret or ConfigMap"
            out = target / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(data[key])

    def _source(self, kind: str, name: str) -> dict[str, str]:
        obj = self.by_kind.get(kind, {}).get(name)
        assert obj is not None, f"{kind} {name} is not rendered by the chart"
        return decoded(obj) if kind == "Secret" else dict(obj.get("data") or {})

    def _volumes(self, pod: Pod) -> dict[str, pathlib.Path]:
        """Each volume's directory, its files written (raw: rewritten once mounts are known)."""
        dirs: dict[str, pathlib.Path] = {}
        for volume in pod.spec.get("volumes", []):
            name = volume["name"]
            path = pod.dir / "volumes" / name
            if "configMap" in volume:
                self._write_items(path, self._source("ConfigMap", volume["configMap"]["name"]), volume["configMap"].get("items"))
            elif "secret" in volume:
                self._write_items(path, self._source("Secret", volume["secret"]["secretName"]), volume["secret"].get("items"))
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    kind, ref = ("Secret", source["secret"]) if "secret" in source else ("ConfigMap", source["configMap"])
                    self._write_items(path, self._source(kind, ref["name"]), ref.get("items"))
            elif "emptyDir" in volume:
                path.mkdir(parents=True)
            elif "persistentVolumeClaim" in volume:
                path = self._claim_dir(volume["persistentVolumeClaim"]["claimName"])
            else:
                raise AssertionError(f"{pod.name}: volume {name} of a kind this harness does not know")
            dirs[name] = path
        dirs.update(pod.claims)
        return dirs

    def _env(self, pod: Pod) -> dict[str, str]:
        env: dict[str, str] = {}
        container = pod.container
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(self._source("Secret", source["secretRef"]["name"]))
            else:
                env.update(self._source("ConfigMap", source["configMapRef"]["name"]))
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = expand(str(var["value"]), env)
                continue
            ref = var["valueFrom"]
            if "fieldRef" in ref:
                env[var["name"]] = {"metadata.name": pod.name, "status.podIP": pod.ip,
                                    "metadata.namespace": self.namespace}[ref["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in ref:
                env[var["name"]] = self._source("Secret", ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                env[var["name"]] = self._source("ConfigMap", ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
            else:
                raise AssertionError(f"{pod.name}: env {var['name']} from a source this harness does not know")
        return env

    def _rewriter(self, pod: Pod, mounts: dict[str, pathlib.Path]):
        """One pass over a string: container paths, cluster names, the wildcard address."""
        table: dict[str, str] = {"0.0.0.0": pod.ip, **self.hosts}
        table.update({path: str(host) for path, host in mounts.items()})
        keys = sorted(table, key=len, reverse=True)
        # Paths and names only where they start a token: /data but not /var/data, a
        # name after `//` or `@` but not inside a longer name.
        pattern = re.compile("|".join(
            (rf"(?<![\w./-]){re.escape(k)}" if k.startswith("/") else rf"(?<![\w.-]){re.escape(k)}")
            + r"(?![\w-])" for k in keys))

        def rewrite(text: str) -> str:
            return pattern.sub(lambda m: table[m.group(0)], text)

        return rewrite

    def prepare(self, pod: Pod) -> None:
        volumes = self._volumes(pod)
        mounts: dict[str, pathlib.Path] = {}
        for mount in pod.container.get("volumeMounts", []):
            assert "subPath" not in mount, "subPath mounts do not see Secret updates; the chart avoids them"
            mounts[mount["mountPath"]] = volumes[mount["name"]]
        rewrite = self._rewriter(pod, mounts)
        for name, path in volumes.items():
            if name in pod.claims or path.parent.name == "claims":
                continue
            for file in path.rglob("*"):
                if file.is_file():
                    file.write_text(rewrite(file.read_text()))
        env = {k: rewrite(v) for k, v in self._env(pod).items()}
        container = pod.container
        image = container["image"]
        if container.get("command"):
            command = [expand(c, env) for c in container["command"]]
            executable = self.binaries.get(command[0])
            assert executable, f"{pod.name}: no local program for command {command[0]!r}"
            command[0] = executable
        else:
            command = [self.binaries["polaroid"]]
        command += [expand(a, env) for a in container.get("args", [])]
        pod.command = [command[0], *(rewrite(c) for c in command[1:])]
        pod.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pod.dir), **env}
        _ = image

    # -- running ----------------------------------------------------------------------
    def start(self, pod: Pod) -> None:
        self.prepare(pod)
        workdir = pod.dir / "workdir"
        workdir.mkdir(exist_ok=True)
        pod.process = subprocess.Popen(
            pod.command, env=pod.env, cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=open(pod.dir / "stdout.log", "w"), stderr=open(pod.dir / "stderr.log", "w"),
        )

    def probe(self, pod: Pod, kind: str) -> bool:
        spec = pod.container.get(kind)
        if spec is None:
            return True
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://{pod.ip}:{pod.port(get['port'])}{get.get('path', '/')}"
            context = ssl._create_unverified_context() if scheme == "https" else None  # the kubelet does not verify
            try:
                with urllib.request.urlopen(url, timeout=spec.get("timeoutSeconds", 1), context=context) as answer:
                    return 200 <= answer.status < 400
            except (urllib.error.URLError, OSError):
                return False
        if "tcpSocket" in spec:
            try:
                with socket.create_connection((pod.ip, pod.port(spec["tcpSocket"]["port"])), timeout=1):
                    return True
            except OSError:
                return False
        raise AssertionError(f"{pod.name}: {kind} of a kind this harness does not know")

    def wait(self, pods: list[Pod], kind: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(pods)
        while waiting:
            for pod in list(waiting):
                assert pod.process is not None and pod.process.poll() is None, (
                    f"{pod.name} exited ({pod.process.returncode if pod.process else '?'}) before its "
                    f"{kind} passed:\n{' '.join(pod.command)}\n{pod.log_tail()}")
                if self.probe(pod, kind):
                    waiting.remove(pod)
            if waiting:
                assert time.monotonic() < deadline, (
                    f"{kind} of {[p.name for p in waiting]} did not pass in {timeout} s\n"
                    + "".join(p.log_tail() for p in waiting))
                time.sleep(0.2)

    def stop(self, pod: Pod, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` (the pod's grace period, capped)."""
        if pod.process is None:
            return None
        if pod.process.poll() is None:
            pod.process.send_signal(signal.SIGTERM)
            try:
                pod.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()
        return pod.process.returncode

    def cleanup(self) -> None:
        for pod in self.pods:
            if pod.process is not None and pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: defined variables are replaced, `$$` is `$`,
    anything else stays as written."""
    def one(match: re.Match) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$(" if m.group(0) == "$$(" else one(m), text)
