#!/usr/bin/env bash
# Type-checks a Grafana dashboard JSON against @grafana/schema's `Dashboard` with tsc
# (`satisfies`: wrong field types and unknown keys are errors). scripts/chart-tools.sh
# installs both packages. Usage: check-dashboard.sh NODE_DIR DASHBOARD.json
set -euo pipefail
node_dir="$1"
dashboard="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo 'import type { Dashboard } from "@grafana/schema";'
  printf 'export const dashboard = %s satisfies Dashboard;\n' "$(cat "$dashboard")"
} >"$work/dashboard.ts"
ln -s "$node_dir/node_modules" "$work/node_modules"
cat >"$work/tsconfig.json" <<JSON
{"compilerOptions": {"strict": true, "noEmit": true, "module": "esnext", "moduleResolution": "bundler",
  "target": "es2022", "skipLibCheck": true, "types": []}, "files": ["dashboard.ts"]}
JSON
"$node_dir/node_modules/.bin/tsc" -p "$work/tsconfig.json"
