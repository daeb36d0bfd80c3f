#!/usr/bin/env bash
# Sets up everything the tests need, then runs all of them: lint, type-check, unit, contract and
# end-to-end tests against moto (started per test file) and a real PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/ensure-moto.sh
# PostgreSQL: installed and started if missing; its last line is DATAGRANT_TEST_PG_URL=...
pg_line=$(bash scripts/pg-setup.sh | tail -n 1)
case "$pg_line" in DATAGRANT_TEST_PG_URL=*) export "${pg_line?}" ;; *) echo "error: scripts/pg-setup.sh did not print DATAGRANT_TEST_PG_URL" >&2; exit 1 ;; esac

npm run lint
npm run typecheck
npm run typecheck -w packages/pulumi
npm run build
npx vitest run "$@"
