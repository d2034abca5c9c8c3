#!/usr/bin/env bash
# Checks charts/polaroid with real tools (docs/kubernetes.md, "What CI checks"):
# - helm lint --strict on every ci/*-values.yaml, with Helm 3 and Helm 4;
# - every ci/must-fail/*.yaml render fails, with the message its `# expect:` line names;
# - every ci/*-values.yaml render for Kubernetes 1.27, 1.30 and 1.33 passes
#   kubernetes-validate --strict (offline schemas), its custom resources (KEDA, Prometheus
#   Operator) their CRD schemas (npm @kubernetes-models), and Helm 3 and Helm 4 render the
#   same objects (generated secrets masked).
# - the PrometheusRule passes promtool check rules and its unit tests, and names only
#   metrics the binaries export; the dashboard type-checks (tsc, @grafana/schema) and
#   names only exported metrics;
# The chart booting as local processes is tests/chart/test_chart_boots.py (pytest).
# Usage: scripts/chart-check.sh [VENV]
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${POLAROID_VENV:-$HOME/.cache/polaroid-venv}}"
tools="${POLAROID_CHART_TOOLS:-$HOME/.cache/polaroid-chart-tools}"
chart=charts/polaroid
kube_versions=(1.27.0 1.30.0 1.33.0)
# The CRDs a cluster with KEDA and the Prometheus Operator has; must-fail cases render
# without them unless they name some (`# api-versions:` lines).
crds=(--api-versions keda.sh/v1alpha1/ScaledObject --api-versions keda.sh/v1alpha1/TriggerAuthentication
  --api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule)
failed=0
fail() { printf 'FAIL: %s\n' "$*"; failed=$((failed + 1)); }

scripts/chart-tools.sh "$venv" || exit 1
helm3="$tools/helm3/helm"
helm4="$tools/helm4/helm"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
passed=0
crs=0

for values in "$chart"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  for helm in "$helm3" "$helm4"; do
    if "$helm" lint --strict "$chart" -f "$values" >"$out/lint" 2>&1; then
      passed=$((passed + 1))
    else
      cat "$out/lint"; fail "helm lint --strict ($helm) with $values"
    fi
  done
  for kube in "${kube_versions[@]}"; do
    for major in 3 4; do
      helm="$tools/helm$major/helm"
      if ! "$helm" template polaroid "$chart" --namespace data --kube-version "$kube" "${crds[@]}" -f "$values" \
          >"$out/$name-$kube-$major.yaml" 2>"$out/err"; then
        cat "$out/err"; fail "helm $major template $values for $kube"; continue
      fi
    done
    # Custom resources have no schema there (warned about): their CRDs are checked below.
    if "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube" "$out/$name-$kube-3.yaml" 2>&1 \
        | grep -Ev "Couldn't find schema for kind [A-Za-z]+ with api version (keda.sh|monitoring.coreos.com)/"; \
       [ "${PIPESTATUS[0]}" -eq 0 ]; then
      passed=$((passed + 1))
    else
      fail "kubernetes-validate --strict -k $kube on $values"
    fi
    "$venv/bin/python" -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], open(sys.argv[2], "w"))' \
      "$out/$name-$kube-3.yaml" "$out/objects.json"
    if node tests/chart/validate-crds.cjs "$tools/node/node_modules" "$out/objects.json" >"$out/crds"; then
      crs=$((crs + $(sed -n 's/ custom resources valid//p' "$out/crds")))
      passed=$((passed + 1))
    else
      cat "$out/crds"; fail "CRD schemas on $values for $kube"
    fi
    if "$venv/bin/python" tests/chart/manifests.py "$out/$name-$kube-3.yaml" "$out/$name-$kube-4.yaml"; then
      passed=$((passed + 1))
    else
      fail "Helm 3 and Helm 4 render $values for $kube differently"
    fi
  done
done

for values in "$chart"/ci/must-fail/*.yaml; do
  expect="$(sed -n 's/^# expect: //p' "$values" | head -1)"
  [ -n "$expect" ] || { fail "$values has no '# expect:' line"; continue; }
  api=()
  for version in $(sed -n 's/^# api-versions: //p' "$values"); do api+=(--api-versions "$version"); done
  for helm in "$helm3" "$helm4"; do
    if "$helm" template polaroid "$chart" "${api[@]}" -f "$values" >/dev/null 2>"$out/err"; then
      fail "$values rendered with $helm, but must fail ($expect)"
    elif grep -Eiq -- "$expect" "$out/err"; then
      passed=$((passed + 1))
    else
      cat "$out/err"; fail "$values failed with $helm, but without /$expect/"
    fi
  done
done

# The tokens Secret is generated once: a render against an existing one keeps it
# (lookup sees no cluster here, so this only checks the generated line matches its token).
"$venv/bin/python" - "$helm3" <<'PY' && passed=$((passed + 1)) || fail "generated token and its tokens line disagree"
import base64, hashlib, subprocess, sys, yaml
out = subprocess.run([sys.argv[1], "template", "polaroid", "charts/polaroid"], check=True, capture_output=True, text=True).stdout
secret = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Secret" and d["metadata"]["name"].endswith("-auth"))
data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
token = data["token"]
assert token.startswith("pol_") and len(token) == 68, token
assert data["tokens"] == f"sha256:{hashlib.sha256(token.encode()).hexdigest()} default admin helm\n", data["tokens"]
assert len(data["cluster-secret"]) == 64
PY

# The CRD check must have seen the ScaledObject, TriggerAuthentication, ServiceMonitor and
# PrometheusRule.
[ "$crs" -ge 4 ] || fail "only $crs custom resources were checked against their CRDs"

# The alert rules: promtool checks them (expressions, annotation templates), its unit
# tests (tests/chart/alerts-test.yaml) make each alert fire and stay quiet, and every
# metric they name is one the binaries export (its name is in their sources).
mkdir -p "$out/alerts"
"$helm3" template polaroid "$chart" --namespace data "${crds[@]}" --set metrics.prometheusRule.enabled=true \
  --show-only templates/prometheusrule.yaml >"$out/alerts/rule.yaml" || fail "rendering the PrometheusRule"
"$venv/bin/python" - "$out/alerts" <<'PY' || fail "extracting the alert rules"
import pathlib, re, subprocess, sys, yaml
out = pathlib.Path(sys.argv[1])
rules = yaml.safe_load((out / "rule.yaml").read_text())["spec"]
(out / "full.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
names = set()
for group in rules["groups"]:
    for rule in group["rules"]:
        names |= set(re.findall(r"\b(polaroid_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", rule["expr"]))
        rule.pop("annotations", None)
(out / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
sources = subprocess.run(["grep", "-rhoE", "\"polaroid_[a-z0-9_]+\"", "crates"], capture_output=True, text=True).stdout
exported = {s.strip('"') for s in sources.split()}
missing = sorted(names - exported)
if missing:
    sys.exit(f"alert rules name metrics no binary exports: {missing}")
print(f"{len(names)} metrics named by the alert rules, all exported")
PY
cp tests/chart/alerts-test.yaml "$out/alerts/"
if promtool check rules "$out/alerts/full.yaml" >"$out/promtool" 2>&1; then
  passed=$((passed + 1))
else
  cat "$out/promtool"; fail "promtool check rules"
fi
if promtool test rules "$out/alerts/alerts-test.yaml" >"$out/promtool" 2>&1; then
  passed=$((passed + 1))
else
  cat "$out/promtool"; fail "promtool test rules (tests/chart/alerts-test.yaml)"
fi

# The Grafana dashboard: its JSON type-checks as @grafana/schema's Dashboard (tsc), it uses
# the datasource variable (never __inputs), and every metric it names is exported.
dashboard="$chart/dashboards/polaroid.json"
if tests/chart/check-dashboard.sh "$tools/node" "$dashboard" && "$venv/bin/python" - "$dashboard" <<'PY'
import json, re, subprocess, sys
text = open(sys.argv[1]).read()
dashboard = json.loads(text)
assert "__inputs" not in dashboard and "${DS_" not in text, "use the datasource variable, not __inputs"
assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
names = {n for e in exprs for n in re.findall(r"\b(polaroid_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", e)}
sources = subprocess.run(["grep", "-rhoE", "\"polaroid_[a-z0-9_]+\"", "crates"], capture_output=True, text=True).stdout
missing = sorted(names - {s.strip('"') for s in sources.split()})
assert not missing, f"the dashboard names metrics no binary exports: {missing}"
print(f"{len(exprs)} dashboard queries over {len(names)} metrics, all exported")
PY
then
  passed=$((passed + 1))
else
  fail "the Grafana dashboard ($dashboard)"
fi

if "$venv/bin/python" scripts/chart-schema.py --check; then
  passed=$((passed + 1))
else
  fail "values.schema.json does not list the binaries' settings as they are (scripts/chart-schema.py)"
fi

if "$venv/bin/python" scripts/chart-readme.py --check; then
  passed=$((passed + 1))
else
  fail "charts/polaroid/README.md does not list values.yaml as it is"
fi

printf '\nchart-check: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
