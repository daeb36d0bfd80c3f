#!/usr/bin/env bash
# Sets up everything the tests need, then runs all of them: lint, type-check, unit, contract and
# end-to-end tests against moto (started per test file), a real PostgreSQL server, a real Ceph
# RADOS gateway and a private MariaDB server, and the HTML reports in Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
# Node 22+ (Node 24 from the npm registry when the machine's is older).
source scripts/ensure-node.sh

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/ensure-moto.sh
bash scripts/ensure-chromium.sh
# PostgreSQL: installed and started if missing; its last line is DATAGRANT_TEST_PG_URL=...
pg_line=$(bash scripts/pg-setup.sh | tail -n 1)
case "$pg_line" in DATAGRANT_TEST_PG_URL=*) export "${pg_line?}" ;; *) echo "error: scripts/pg-setup.sh did not print DATAGRANT_TEST_PG_URL" >&2; exit 1 ;; esac
# Ceph RGW: installed and started if missing (a running one is reused); its last three lines are
# DATAGRANT_TEST_RGW_URL=..., DATAGRANT_TEST_RGW_ACCESS_KEY_ID=... and DATAGRANT_TEST_RGW_SECRET_ACCESS_KEY=...
rgw_lines=$(bash scripts/rgw-setup.sh | tail -n 3)
case "$rgw_lines" in DATAGRANT_TEST_RGW_URL=*) while read -r line; do export "${line?}"; done <<<"$rgw_lines" ;; *) echo "error: scripts/rgw-setup.sh did not print DATAGRANT_TEST_RGW_URL" >&2; exit 1 ;; esac
# MariaDB: installed if missing, a private server started on a free port; last line DATAGRANT_TEST_MYSQL_URL=...
mysql_line=$(bash scripts/mysql-setup.sh | tail -n 1)
case "$mysql_line" in DATAGRANT_TEST_MYSQL_URL=*) export "${mysql_line?}" ;; *) echo "error: scripts/mysql-setup.sh did not print DATAGRANT_TEST_MYSQL_URL" >&2; exit 1 ;; esac

npm run lint
npm run typecheck
npm run typecheck -w packages/pulumi
npm run build
# The package a user installs: packed, installed into an empty directory, run from there.
bash scripts/pack-check.sh
mkdir -p .tmp
status=0
npx vitest run --reporter=default --reporter=json --outputFile=.tmp/vitest.json "$@" || status=$?
# A skipped or todo test is not a passed one: say so, and fail.
node -e '
  const r = JSON.parse(require("fs").readFileSync(".tmp/vitest.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  if (skipped > 0) { console.error("error: skipped tests do not count as passed"); process.exit(1); }
' || status=1
exit $status
