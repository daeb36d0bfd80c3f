#!/usr/bin/env bash
# The main job on a local default: installs what is missing, starts moto with IAM enforcement,
# applies examples/seed.yaml and proves what the issued key can and cannot do.
set -euo pipefail
cd "$(dirname "$0")/.."
# Node 22+ (Node 24 from the npm registry when the machine's is older).
source scripts/ensure-node.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/ensure-moto.sh
npm run --silent build
exec node --import tsx scripts/demo.ts "$@"
