#!/usr/bin/env bash
# Makes a private MariaDB server ready for datagrant's tests, on Debian 12 as root. Idempotent:
# installs Debian's `mariadb-server` package if missing, then starts (or finds already running) a
# mariadbd of its own — its own data directory, socket and a free loopback port, never the system
# service nor a fixed port — creates the admin account `datagrant_admin` with a generated password,
# and prints, as its last line on stdout:
#   DATAGRANT_TEST_MYSQL_URL=mysql://datagrant_admin:<password>@127.0.0.1:<port>
# so that a runner can `export "$(bash scripts/mysql-setup.sh | tail -n 1)"`.
# The server lives in $DATAGRANT_TEST_MYSQL_DIR (default /var/lib/datagrant-test/mariadb) and keeps
# running for later runs; `bash scripts/mysql-setup.sh --stop` stops it. A test server only.
# Progress goes to stderr so stdout stays one line.
set -euo pipefail

log() { printf 'mysql-setup: %s\n' "$*" >&2; }

# Not below /tmp: this runs as root, and anyone may make a path there first (a symlink where the
# lock, the run directory or the data is expected would have root write or chown through it).
DIR="${DATAGRANT_TEST_MYSQL_DIR:-/var/lib/datagrant-test/mariadb}"
DATA="$DIR/data"
# What mariadbd writes (as the mysql user): socket, pid file, error log.
RUN="$DIR/run"
SOCKET="$RUN/mariadbd.sock"
PIDFILE="$RUN/mariadbd.pid"
PORTFILE="$DIR/port"
PASSWORD_FILE="$DIR/admin-password"

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, starts mariadbd as the mysql user)"
  exit 1
fi

client() { mariadb --protocol=socket --socket="$SOCKET" -uroot "$@"; }
# Alive and answering on its socket: a pid file left by a server that died (its pid reused since)
# does not count.
running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && [ -S "$SOCKET" ] && client -e 'SELECT 1' >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
  if running; then
    pid="$(cat "$PIDFILE")"
    log "stopping mariadbd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  exit 0
fi

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  log "installing MariaDB from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  # The package's own service is not wanted: policy-rc.d keeps it from being started on install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update >&2
  apt-get install -y --no-install-recommends mariadb-server mariadb-client >&2
fi
MARIADBD="$(command -v mariadbd || echo /usr/sbin/mariadbd)"

mkdir -p "$DIR"
if [ -L "$DIR" ] || [ "$(stat -c %u "$DIR")" != 0 ]; then
  log "refusing $DIR: it is a symlink or not root's (this script runs as root and writes there)"
  exit 1
fi
mkdir -p "$RUN"
chmod 711 "$DIR"
chown mysql:mysql "$RUN"
# Several checkouts (worktrees) may run this at once: one of them starts the server.
exec 9>"$DIR/lock"
flock 9


if ! running; then
  if [ ! -d "$DATA/mysql" ]; then
    log "initialising a data directory in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    chown mysql:mysql "$DATA"
    # root@localhost logs in through the socket as the OS root only (unix_socket), never by password.
    mariadb-install-db --user=mysql --datadir="$DATA" --auth-root-authentication-method=socket --skip-test-db >"$DIR/install.log" 2>&1 ||
      { cat "$DIR/install.log" >&2; exit 1; }
  fi
  # A free port, chosen by the kernel; another process may take it before mariadbd binds it, so a
  # failed start is tried again with another.
  for attempt in 1 2 3 4 5; do
    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    log "starting mariadbd on 127.0.0.1:$PORT (attempt $attempt)"
    rm -f "$PIDFILE" "$SOCKET"
    "$MARIADBD" --no-defaults --user=mysql --datadir="$DATA" --socket="$SOCKET" --pid-file="$PIDFILE" \
      --port="$PORT" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$RUN/error.log" \
      --max-connections=500 --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
      --skip-log-bin --performance-schema=OFF >/dev/null 2>&1 9>&- &
    for _ in $(seq 1 150); do
      if client -e 'SELECT 1' >/dev/null 2>&1; then break; fi
      if ! kill -0 $! 2>/dev/null; then break; fi
      sleep 0.1
    done
    if client -e 'SELECT 1' >/dev/null 2>&1; then
      echo "$PORT" >"$PORTFILE"
      break
    fi
    log "mariadbd did not start; the end of its log:"
    tail -n 5 "$RUN/error.log" >&2 || true
    if [ "$attempt" = 5 ]; then exit 1; fi
  done
fi
PORT="$(cat "$PORTFILE")"

if [ ! -s "$PASSWORD_FILE" ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$PASSWORD_FILE")
fi
chmod 600 "$PASSWORD_FILE"
PASSWORD="$(cat "$PASSWORD_FILE")"

# What datagrant needs: to create and drop accounts and roles, grant what it hands out (WITH GRANT
# OPTION), read the account tables (its ownership marker), and end sessions. Tests also create
# and drop databases with it. The password goes through stdin, never the command line.
client -v >/dev/null <<SQL
CREATE USER IF NOT EXISTS 'datagrant_admin'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}';
ALTER USER 'datagrant_admin'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}';
GRANT ALL PRIVILEGES ON *.* TO 'datagrant_admin'@'127.0.0.1' WITH GRANT OPTION;
SQL

log "MariaDB $("$MARIADBD" --version | awk '{print $3}') ready on 127.0.0.1:$PORT"
echo "DATAGRANT_TEST_MYSQL_URL=mysql://datagrant_admin:${PASSWORD}@127.0.0.1:${PORT}"
