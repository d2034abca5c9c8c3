"""The chart boots a cluster: charts/polaroid rendered with ci/boot-values.yaml, its pods
run as local processes exactly as rendered (cluster.py says how and what it cannot
show), with a real redis-server; then the SDK runs a pipeline and a batch job with the
token the chart generated, and a real Prometheus scrapes what the ServiceMonitor selects
and answers the PrometheusRule's rules and the dashboard's queries. A setting the chart
passes that the binary does not understand fails here: the settings file refuses unknown
keys, flags are parsed strictly, and every POLAROID_ variable the pods get is checked
against the binary below. ci/tls-values.yaml boots too.

Needs Helm (scripts/chart-tools.sh installs it: POLAROID_HELM, else
~/.cache/polaroid-chart-tools/helm3/helm), the polaroid binary (POLAROID_BIN, else
$CARGO_TARGET_DIR/debug/polaroid), redis-server (POLAROID_REDIS_SERVER, else PATH), and
prometheus and promtool (Debian's prometheus; scripts/chart-tools.sh installs it).
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from cluster import Cluster, Pod
from manifests import CHART, render

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMESPACE = "data"
RELEASE = "polaroid"
# A cluster with KEDA and the Prometheus Operator.
CRDS = ["--api-versions", "keda.sh/v1alpha1/ScaledObject", "--api-versions", "keda.sh/v1alpha1/TriggerAuthentication",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]


def tool(env: str, default: pathlib.Path | str | None) -> str:
    path = os.environ.get(env) or (str(default) if default else None)
    if not path or not (os.path.exists(path) or shutil.which(path)):
        pytest.fail(f"{env}: {default} not found (scripts/chart-tools.sh installs Helm; "
                    "cargo build makes polaroid; Debian's redis-server)")
    return shutil.which(path) or path


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return {
        "helm": tool("POLAROID_HELM", pathlib.Path.home() / ".cache/polaroid-chart-tools/helm3/helm"),
        "polaroid": tool("POLAROID_BIN", target / "debug" / "polaroid"),
        "redis-server": tool("POLAROID_REDIS_SERVER", shutil.which("redis-server") or "redis-server"),
    }


@pytest.fixture(scope="module")
def objects(tools: dict[str, str]) -> list[dict]:
    return render(tools["helm"], [CHART / "ci" / "boot-values.yaml"], release=RELEASE, namespace=NAMESPACE,
                  extra=CRDS)


@contextlib.contextmanager
def booted(objects: list[dict], tools: dict[str, str], extra: Callable[[Cluster], list[dict]] | None = None):
    """The rendered pods running; `extra` gives objects the operator would have made
    (Secrets the values name), once the pods' addresses are known."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="polaroid-chart-boot-"))
    running = Cluster(objects, root, namespace=NAMESPACE, binaries={
        "polaroid": tools["polaroid"], "redis-server": tools["redis-server"]})
    try:
        if extra:
            running.add(extra(running))
        # Everything starts at once, as pods would; Redis first only because the
        # harness does not restart a pod that exits (the kubelet would).
        redis = [p for p in running.pods if p.labels["app.kubernetes.io/component"] == "redis"]
        rest = [p for p in running.pods if p not in redis]
        for pod in redis:
            running.start(pod)
        running.wait(redis, "readinessProbe", 30)
        for pod in rest:
            running.start(pod)
        running.wait(rest, "startupProbe", 60)
        running.wait(rest, "readinessProbe", 60)
        yield running
    finally:
        running.cleanup()


@pytest.fixture(scope="module")
def cluster(objects: list[dict], tools: dict[str, str]):
    with booted(objects, tools) as running:
        yield running


def component(cluster: Cluster, name: str) -> list[Pod]:
    return [p for p in cluster.pods if p.labels["app.kubernetes.io/component"] == name]


def token(objects: list[dict]) -> str:
    from cluster import decoded
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == f"{RELEASE}-auth")
    return decoded(secret)["token"]


def test_every_polaroid_variable_is_a_setting_the_binary_knows(objects, tools, tmp_path):
    """Unknown POLAROID_ variables are ignored by the binary, so each one the pods get is
    written into a settings file, which refuses unknown keys."""
    checked = 0
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        container = workload["spec"]["template"]["spec"]["containers"][0]
        if container.get("command"):
            continue  # not polaroid (Redis)
        role = container["args"][0]
        for var in container.get("env", []):
            name = var["name"]
            if not name.startswith("POLAROID_") or name == "POLAROID_LOG":  # the log filter
                continue
            key = name.removeprefix("POLAROID_").lower()
            table, _, inner = key.partition("_")
            line = f'[{table}]\n{inner} = "x"\n' if table in ("auth", "tls", "quotas") else f'{key} = "x"\n'
            probe = tmp_path / f"{role}-{key}.toml"
            probe.write_text(line)
            # Settings are read before anything binds; an address no interface has stops
            # the process right after.
            result = subprocess.run(
                [tools["polaroid"], role, "--config", str(probe), "--bind", "203.0.113.1:1",
                 "--http-address", "203.0.113.1:2"],
                capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"], "RUST_BACKTRACE": "0"})
            assert "unknown setting" not in result.stderr, f"{role}: {name} is not a setting: {result.stderr}"
            assert "binding" in result.stderr, result.stderr
            checked += 1
    assert checked >= 2, "the pods get POLAROID_REDIS_URL"


def test_every_setting_the_schema_offers_is_one_the_binary_reads(tools, tmp_path):
    """values.schema.json lists `coordinator.config` and `worker.config` keys from the
    settings structs (scripts/chart-schema.py): the binary reads each, with its type."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    samples = {"integer": "1", "number": "1.5", "boolean": "true", "array": '["x"]'}
    for role in ("coordinator", "worker"):
        keys = schema["properties"][role]["properties"]["config"]["properties"]
        lines = []
        for key, spec in sorted(keys.items()):
            if "type" not in spec:
                continue  # set by the chart
            value = f'"{spec["enum"][-1]}"' if "enum" in spec else samples.get(spec["type"], '"x"')
            lines.append(f"{key} = {value}")
        assert len(lines) >= 10
        probe = tmp_path / f"{role}.toml"
        probe.write_text("\n".join(lines) + "\n")
        result = subprocess.run(
            [tools["polaroid"], role, "--config", str(probe), "--bind", "203.0.113.1:1",
             "--http-address", "203.0.113.1:2"],
            capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"], "RUST_BACKTRACE": "0"})
        assert "binding" in result.stderr, f"{role}: {result.stderr}"


def test_pods_run_as_the_binary_expects_beyond_loopback(cluster):
    """Pods listen on 0.0.0.0, where the binary refuses to start without tokens and a
    cluster credential; here they run on loopback addresses, so check the files exist."""
    for pod in component(cluster, "coordinator") + component(cluster, "worker"):
        config = next(a for a in pod.command if a.endswith(".toml"))
        text = pathlib.Path(config).read_text()
        assert pod.ip in text and "0.0.0.0" not in text
        tokens = pathlib.Path(pod.dir / "volumes" / "auth" / "tokens").read_text()
        assert tokens.startswith("sha256:") and " default admin " in tokens
        assert len(pathlib.Path(pod.dir / "volumes" / "auth" / "cluster-secret").read_text()) >= 16


def test_workers_are_named_by_their_pods(cluster, objects):
    from polaroid.v1 import cluster_pb2, cluster_pb2_grpc

    coordinator = cluster.address(f"{RELEASE}-coordinator", "grpc")
    expected = [(p.name, f"{p.ip}:50051") for p in component(cluster, "worker")]
    # A coordinator is ready with one worker; the others join as their registrations
    # reach it (through Redis, for the coordinator this Service picks): wait for them.
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(coordinator) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        while True:
            reply = stub.ListWorkers(cluster_pb2.ListWorkersRequest(),
                                     metadata=[("authorization", f"Bearer {token(objects)}")], timeout=10)
            workers = sorted((w.worker_id, w.address) for w in reply.workers)
            if len(workers) >= len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    headless = f"{RELEASE}-worker-headless.{NAMESPACE}.svc.cluster.local"
    assert workers == expected, (
        f"worker ids are pod names, addresses their {headless} names (mapped to pod addresses here)")


def test_both_coordinators_see_the_workers_through_redis(cluster):
    """Workers register through the internal Service (one coordinator here); the other
    is ready only if it reads membership from Redis."""
    coordinators = component(cluster, "coordinator")
    assert len(coordinators) == 2
    internal = cluster.hosts[f"{RELEASE}-coordinator-internal.{NAMESPACE}.svc.cluster.local"]
    client = cluster.hosts[f"{RELEASE}-coordinator.{NAMESPACE}.svc.cluster.local"]
    assert internal != client
    for pod in coordinators:
        assert cluster.probe(pod, "readinessProbe")


def test_a_pipeline_and_a_job_with_the_generated_token(cluster, objects):
    import polaroid as pr
    from polaroid import errors

    target = "http://" + cluster.address(f"{RELEASE}-coordinator", "grpc")
    with pr.connect(target, token=token(objects)):
        df = pr.from_dict({"region": ["eu", "us", "eu", "ap"], "amount": [10, 20, 30, 40]})
        totals = (df.filter(pr.col("amount") > 15).group_by("region")
                  .agg(pr.col("amount").sum().alias("total")).sort("region").collect())
        assert totals.to_dict(as_series=False) == {"region": ["ap", "eu", "us"], "total": [40, 30, 20]}
        job = pr.jobs.submit(df.filter(pr.col("region") == "eu"), keep_handle=True)
        kept = job.result().collect()
        assert kept["amount"].to_list() == [10, 30]
    with pr.connect(target) as anonymous, pytest.raises(errors.UnauthenticatedError):
        pr.from_dict({"a": [1]}, connection=anonymous).collect()


def test_the_scaled_object_names_the_job_streams_and_their_group(cluster, objects, tools):
    """KEDA reads the lag of the streams and consumer group its triggers name: they must
    be the ones the job queue made in the chart's Redis (with the password KEDA is given)."""
    from cluster import decoded

    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    assert "replicas" not in cluster.by_kind["StatefulSet"][f"{RELEASE}-worker"]["spec"], "KEDA owns the count"
    assert len(component(cluster, "worker")) == scaled["spec"]["minReplicaCount"]
    auth = cluster.by_kind["TriggerAuthentication"][scaled["spec"]["triggers"][0]["authenticationRef"]["name"]]
    ref = auth["spec"]["secretTargetRef"][0]
    password = decoded(cluster.by_kind["Secret"][ref["name"]])[ref["key"]]
    redis_cli = shutil.which("redis-cli") or str(pathlib.Path(tools["redis-server"]).with_name("redis-cli"))
    streams = [t["metadata"] for t in scaled["spec"]["triggers"] if t["type"] == "redis-streams"]
    assert len(streams) == 3
    for trigger in streams:
        host, port = trigger["address"].rsplit(":", 1)
        answer = subprocess.run(
            [redis_cli, "-h", cluster.hosts[host], "-p", port, "--no-auth-warning", "-a", password,
             "XINFO", "GROUPS", trigger["stream"]], capture_output=True, text=True, check=True).stdout
        assert trigger["consumerGroup"] in answer.split(), f"{trigger['stream']}: {answer}"
        assert isinstance(trigger["lagCount"], str)


def monitor_targets(cluster: Cluster, objects: list[dict]) -> tuple[dict, list[tuple[Pod, dict]]]:
    """The ServiceMonitor's endpoint and the (pod, Service) pairs the Prometheus Operator
    would make targets of: Services its selector matches that have the port it names."""
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    expressions = monitor["spec"]["selector"]["matchExpressions"]
    targets = []
    for service in cluster.by_kind["Service"].values():
        labels = service["metadata"]["labels"]
        if not all(labels.get(e["key"]) in e["values"] for e in expressions):
            continue
        if not any(p["name"] == endpoint["port"] for p in service["spec"]["ports"]):
            continue
        targets += [(pod, service) for pod in cluster.selected(service["spec"]["selector"])]
    return endpoint, targets


def test_the_service_monitor_scrapes_every_coordinator_and_worker(cluster, objects):
    """The Services the ServiceMonitor selects, through their port it names, reach each
    coordinator and worker once, and each answers /metrics with Polaroid's metrics."""
    endpoint, targets = monitor_targets(cluster, objects)
    pods = sorted(pod.name for pod, _ in targets)
    assert pods == sorted(p.name for p in component(cluster, "coordinator") + component(cluster, "worker"))
    for pod, _ in targets:
        url = f"{endpoint['scheme']}://{pod.ip}:{pod.port(endpoint['port'])}{endpoint['path']}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain"), url
            text = answer.read().decode()
        # Prometheus' text format (a worker that has served nothing yet may have no series),
        # every metric with its help and type, as promtool's linter wants them.
        assert all(line.startswith(("#", "polaroid_")) for line in text.splitlines() if line), url
        promtool = shutil.which("promtool")
        assert promtool, "promtool not found (scripts/chart-tools.sh installs Debian's prometheus)"
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, f"{url}: {lint.stdout}{lint.stderr}"
        if pod.labels["app.kubernetes.io/component"] == "coordinator":
            assert "polaroid_coordinator_workers_live 2" in text, url
    # The alert rules select series by namespace and job, which the Prometheus Operator
    # sets to the Service a target was found through.
    import re

    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    services = {service["metadata"]["name"] for _, service in targets}
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            jobs = set(re.findall(r'job="([^"]+)"', alert["expr"]))
            assert jobs and jobs <= services, (alert["alert"], jobs, services)
            assert f'namespace="{NAMESPACE}"' in alert["expr"], alert["alert"]


@pytest.fixture(scope="module")
def prometheus(cluster, objects, tmp_path_factory):
    """A real Prometheus (Debian's) scraping what the ServiceMonitor selects, with the
    labels the Prometheus Operator gives targets (job: the Service; namespace, pod), and
    evaluating the PrometheusRule's rules every second."""
    binary = os.environ.get("POLAROID_PROMETHEUS") or shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found (scripts/chart-tools.sh installs Debian's prometheus)")
    import json
    import time
    import yaml

    directory = tmp_path_factory.mktemp("prometheus")
    endpoint, targets = monitor_targets(cluster, objects)
    jobs: dict[str, list[dict]] = {}
    for pod, service in targets:
        jobs.setdefault(service["metadata"]["name"], []).append({
            "targets": [f"{pod.ip}:{pod.port(endpoint['port'])}"],
            "labels": {"namespace": NAMESPACE, "pod": pod.name,
                       "component": pod.labels["app.kubernetes.io/component"]}})
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    (directory / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    (directory / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": job, "metrics_path": endpoint["path"], "scheme": endpoint["scheme"],
                            "static_configs": configs} for job, configs in jobs.items()],
    }))
    address = f"{cluster.net}.250:9090"
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL, stderr=open(directory / "prometheus.log", "w"))

    def query(expr: str) -> list:
        url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def api(path: str) -> dict:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as answer:
            return json.load(answer)["data"]

    # Targets are discovered and scraped within seconds: poll for every one up, and
    # scraped three times (rate() needs two samples in its window).
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (directory / "prometheus.log").read_text()[-2000:]
        try:
            if len(query("up == 1")) == len(targets) and len(query("count_over_time(up[1m]) >= 3")) == len(targets):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, (directory / "prometheus.log").read_text()[-2000:]
        time.sleep(0.5)
    try:
        yield query, api, len(targets)
    finally:
        process.terminate()
        process.wait(timeout=30)


# A counter that appears only when what it counts first happens (a labelled counter starts
# at its first increment): the healthy cluster of this test has had no failover. Matchers
# on outcomes (code, outcome) are dropped before asking for data, for the same reason.
EVENT_ONLY = {"polaroid_coordinator_failovers_total", "polaroid_store_errors_total"}
OUTCOME_LABELS = ("code", "outcome")


def test_prometheus_evaluates_every_alert_rule_on_the_running_cluster(cluster, objects, prometheus):
    """Every rule evaluates without error on the real series, every metric selector in
    them that is not event-only returns data, and no alert fires on a healthy cluster."""
    import re
    import time

    query, api, targets = prometheus
    assert len(query('up{namespace="%s"} == 1' % NAMESPACE)) == targets
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    expressions = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    selectors = set()
    for expr in expressions:
        query(expr)  # parses and evaluates
        selectors |= set(re.findall(r"(polaroid_[a-z0-9_]+\{[^}]*\})", expr))
    for selector in sorted(selectors):
        name, matchers = selector.split("{", 1)
        if name in EVENT_ONLY:
            continue
        kept = [m.strip() for m in matchers.rstrip("}").split(",") if not m.strip().startswith(OUTCOME_LABELS)]
        series = name + "{" + ", ".join(kept) + "}"
        assert query(f"count({series})"), f"{series} (from the rules) returns no data from the running cluster"
    # Rules are evaluated every second: each has run, healthy, and none fires.
    deadline = time.monotonic() + 30
    while True:
        rules = [r for g in api("/api/v1/rules")["groups"] for r in g["rules"]]
        if len(rules) == len(expressions) and all(r.get("lastEvaluation", "").startswith("20") and r["health"] == "ok" for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    firing = [a for a in api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert not firing, firing


def test_every_dashboard_query_returns_data_from_the_running_cluster(cluster, objects, prometheus):
    """The dashboard's variables resolve to this release (namespace, the coordinators'
    and workers' Services), and with them every panel's query returns data."""
    import json

    query, _, _ = prometheus
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    dashboard = json.loads(config_map["data"]["polaroid.json"])
    chosen = {"namespace": NAMESPACE, "coordinator": f"{RELEASE}-coordinator", "worker": f"{RELEASE}-worker-headless"}

    def substitute(expr: str) -> str:
        for name, value in chosen.items():
            expr = expr.replace(f"${name}", value)
        # What Grafana puts for its own variables over a short range.
        return expr.replace("$__rate_interval", "1m").replace("$__range", "10m")

    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        # label_values(SELECTOR, LABEL): the values LABEL takes on SELECTOR's series.
        selector, label = substitute(variable["query"]["query"]).removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        values = {r["metric"].get(label.strip()) for r in query(f"count by ({label.strip()}) ({selector})")}
        assert chosen[variable["name"]] in values, (variable["name"], values)
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if not query(substitute(target["expr"])):
                empty.append(f'{panel["title"]}: {target["expr"]}')
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_pods_stop_cleanly_within_their_grace_period(cluster):
    """SIGTERM as the kubelet sends it: workers drain (leave the ring, finish calls) and
    every process exits 0 well within terminationGracePeriodSeconds."""
    for pod in component(cluster, "worker") + component(cluster, "coordinator"):
        grace = pod.spec.get("terminationGracePeriodSeconds", 30)
        assert cluster.stop(pod, timeout=min(grace, 30)) == 0, pod.log_tail()


def tls_secret(cluster: Cluster, directory: pathlib.Path) -> dict:
    """What cert-manager would make for ci/tls-values.yaml: a CA, and one certificate for
    every component naming its addresses (pod IPs here, where cluster DNS names map to
    them) and the values' serverName, usable to serve and to dial."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=polaroid test cluster CA",
                    "-keyout", ca_key, "-out", ca_crt], check=True, capture_output=True)
    key, csr, crt = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=polaroid", "-keyout", key, "-out", csr], check=True, capture_output=True)
    names = ",".join([f"IP:{p.ip}" for p in cluster.pods] + ["DNS:polaroid.internal"])
    ext = directory / "ext.cnf"
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)
    data = {name: base64.b64encode((directory / name).read_bytes()).decode() for name in ("tls.crt", "tls.key", "ca.crt")}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "polaroid-tls", "namespace": NAMESPACE}, "data": data}


def test_the_tls_values_boot_a_cluster(tools, tmp_path):
    """ci/tls-values.yaml: every port serves TLS (probes over HTTPS), workers dial the
    coordinator over https://, the coordinator dials workers over TLS checking
    serverName, components present certificates of the cluster CA; the SDK connects
    with the CA and the generated token."""
    import polaroid as pr

    objects = render(tools["helm"], [CHART / "ci" / "tls-values.yaml"], release=RELEASE, namespace=NAMESPACE)
    with booted(objects, tools, lambda c: [tls_secret(c, tmp_path)]) as running:
        worker = component(running, "worker")[0]
        assert worker.container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        settings = pathlib.Path(next(a for a in worker.command if a.endswith(".toml"))).read_text()
        assert "https://" in settings and "client_ca_file" in settings and 'server_name = "polaroid.internal"' in settings
        target = "https://" + running.address(f"{RELEASE}-coordinator", "grpc")
        with pr.connect(target, token=token(objects), ca_file=str(tmp_path / "ca.crt"),
                        server_name="polaroid.internal"):
            df = pr.from_dict({"a": [1, 2, 3, 4]})
            assert df.filter(pr.col("a") > 2).collect()["a"].to_list() == [3, 4]
        for pod in component(running, "worker") + component(running, "coordinator"):
            assert running.stop(pod, timeout=30) == 0, pod.log_tail()
