#!/usr/bin/env bash
# Makes a local PostgreSQL server ready for datagrant's tests, on Debian 12 as root. Idempotent:
# installs Debian's `postgresql` package if missing, creates and starts a cluster, ensures the
# superuser role `datagrant_admin` can log in over TCP on 127.0.0.1 with a password (scram), and
# prints, as its last line on stdout:
#   DATAGRANT_TEST_PG_URL=postgres://datagrant_admin:<password>@127.0.0.1:<port>/postgres
# so that a runner can `eval "$(bash scripts/pg-setup.sh | tail -n 1)"`.
# The password is generated once and kept in $DATAGRANT_TEST_PG_PASSWORD_FILE (default
# /var/lib/datagrant-test/pg-admin-password, mode 0600); a test server only, never production.
# Progress goes to stderr so stdout stays one line.
set -euo pipefail

log() { printf 'pg-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, manages the cluster)"
  exit 1
fi

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y postgresql >&2
fi

# The newest installed major version.
VERSION="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
if [ -z "$VERSION" ]; then
  log "no PostgreSQL server binaries under /usr/lib/postgresql"
  exit 1
fi

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
  log "creating cluster $VERSION/main"
  pg_createcluster "$VERSION" main >&2
fi

PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" { print $3 }')"
STATUS="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" { print $4 }')"

# Password logins over TCP from 127.0.0.1 must use scram (Debian's default pg_hba.conf does).
HBA="/etc/postgresql/$VERSION/main/pg_hba.conf"
if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+scram-sha-256' "$HBA"; then
  log "allowing scram-sha-256 logins from 127.0.0.1 in $HBA"
  printf 'host    all             all             127.0.0.1/32            scram-sha-256\n' >>"$HBA"
  if [ "$STATUS" = "online" ]; then pg_ctlcluster "$VERSION" main reload >&2; fi
fi

if [ "$STATUS" != "online" ]; then
  log "starting cluster $VERSION/main on port $PORT"
  pg_ctlcluster "$VERSION" main start >&2
fi

# Wait until it accepts connections.
for _ in $(seq 1 60); do
  if runuser -u postgres -- psql -p "$PORT" -Atqc 'select 1' >/dev/null 2>&1; then break; fi
  sleep 0.5
done
runuser -u postgres -- psql -p "$PORT" -Atqc 'select 1' >/dev/null

PASSWORD_FILE="${DATAGRANT_TEST_PG_PASSWORD_FILE:-/var/lib/datagrant-test/pg-admin-password}"
if [ ! -s "$PASSWORD_FILE" ]; then
  mkdir -p "$(dirname "$PASSWORD_FILE")"
  (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$PASSWORD_FILE")
fi
chmod 600 "$PASSWORD_FILE"
PASSWORD="$(cat "$PASSWORD_FILE")"

# The password is set through psql's stdin with scram-sha-256 hashing on the server side.
runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -q -v pw="$PASSWORD" >&2 <<'SQL'
SET password_encryption = 'scram-sha-256';
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'datagrant_admin') AS missing \gset
\if :missing
  CREATE ROLE datagrant_admin;
\endif
ALTER ROLE datagrant_admin WITH SUPERUSER LOGIN CREATEROLE CREATEDB PASSWORD :'pw';
SQL

log "PostgreSQL $VERSION ready on 127.0.0.1:$PORT"
echo "DATAGRANT_TEST_PG_URL=postgres://datagrant_admin:${PASSWORD}@127.0.0.1:${PORT}/postgres"
