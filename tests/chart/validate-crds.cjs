// Validates the custom resources of rendered manifests against their CRD schemas, with
// the @kubernetes-models packages (scripts/chart-tools.sh installs them).
// Usage: node validate-crds.cjs NODE_MODULES_DIR OBJECTS.json
// Prints how many objects were checked; exits 1 on an invalid object or a custom
// resource of a group it has no schemas for.
const path = require("path");
const fs = require("fs");
const [modules, file] = process.argv.slice(2);
const packages = { "keda.sh": "keda", "monitoring.coreos.com": "prometheus-operator" };
let checked = 0;
let failed = 0;
for (const obj of JSON.parse(fs.readFileSync(file, "utf8"))) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  if (!group.includes(".") || group.endsWith(".k8s.io")) continue; // core and k8s.io: kubernetes-validate
  const pkg = packages[group];
  const where = `${obj.kind} ${obj.metadata && obj.metadata.name}`;
  if (!pkg) {
    console.log(`FAIL ${where}: no schemas for group ${group}`);
    failed++;
    continue;
  }
  try {
    const mod = require(path.join(modules, "@kubernetes-models", pkg, group, version, obj.kind));
    const Model = mod[obj.kind] || mod.default;
    new Model(obj).validate();
    checked++;
  } catch (e) {
    console.log(`FAIL ${where}: ${e.message}`);
    failed++;
  }
}
console.log(`${checked} custom resources valid`);
process.exit(failed ? 1 : 0);
