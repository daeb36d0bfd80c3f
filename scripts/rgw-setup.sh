#!/usr/bin/env bash
# Makes a single-node Ceph cluster with one RADOS gateway ready for datagrant's tests, on Debian 12
# as root: installs Debian's ceph-mon, ceph-osd and radosgw if missing, and runs one monitor, one
# OSD on memstore (data in memory) and one radosgw, all bound to free loopback ports, with their
# files in a private directory ($DATAGRANT_TEST_RGW_DIR, default /var/lib/datagrant-test/rgw).
# A cluster whose daemons still run is reused as it is (the fast local loop); otherwise a fresh one
# is made. Tests share one cluster and keep apart by their own user prefixes and bucket names.
#
# Prints, as its last three lines on stdout (so that a runner can export them):
#   DATAGRANT_TEST_RGW_URL=http://127.0.0.1:<port>
#   DATAGRANT_TEST_RGW_ACCESS_KEY_ID=<the admin user's key id>
#   DATAGRANT_TEST_RGW_SECRET_ACCESS_KEY=<its secret>
# The admin user has the caps datagrant's rgw backend needs: users=*;user-policy=*;buckets=*;
# metadata=read. A test server only, never production (no authentication between the daemons).
# Progress goes to stderr.
set -euo pipefail

log() { printf 'rgw-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages, runs the Ceph daemons)"
  exit 1
fi

if ! command -v ceph-mon >/dev/null 2>&1 || ! command -v ceph-osd >/dev/null 2>&1 || ! command -v radosgw >/dev/null 2>&1; then
  log "installing ceph-mon, ceph-osd and radosgw from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common >&2
fi

DIR="${DATAGRANT_TEST_RGW_DIR:-/var/lib/datagrant-test/rgw}"
mkdir -p "$DIR"
chmod 700 "$DIR"
CONF="$DIR/ceph.conf"
ENV_FILE="$DIR/env"

# One setup at a time: tests started in parallel share the cluster the first one makes.
exec 9>"$DIR/.lock"
flock 9

alive() { [ -s "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

# Whether the gateway at http://127.0.0.1:PORT answers a request with 200 (bash alone: a fresh
# machine may have neither curl nor wget).
answers() {
  local port="${1##*:}" status
  status=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && head -n 1 <&3' "$port" 2>/dev/null) || return 1
  [[ "$status" == "HTTP/1."?" 200"* ]]
}

if [ -s "$ENV_FILE" ] && alive mon.a && alive osd.0 && alive client.rgw.a; then
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  if answers "$DATAGRANT_TEST_RGW_URL"; then
    log "reusing the running cluster in $DIR ($DATAGRANT_TEST_RGW_URL)"
    cat "$ENV_FILE"
    exit 0
  fi
fi

# The daemons below are started with the lock's descriptor closed, so that they do not hold it.
# Fresh: stop what a previous cluster of this directory left running (only its own daemons, by the
# ids in its pid files), and start from nothing.
for d in client.rgw.a osd.0 mon.a; do
  if alive "$d"; then
    pid="$(cat "$DIR/run/$d.pid")"
    log "stopping $d (pid $pid) of the previous cluster"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
done
rm -rf "$DIR/mon" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR/rgw" "$DIR/monmap" "$ENV_FILE" "$CONF"
mkdir -p "$DIR/mon" "$DIR/osd/ceph-0" "$DIR/run" "$DIR/log" "$DIR/rgw"

# A loopback port nothing listens on, from the range the kernel does not hand out on its own.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}
MON_PORT="$(free_port)"
RGW_PORT="$(free_port)"
while [ "$RGW_PORT" = "$MON_PORT" ]; do RGW_PORT="$(free_port)"; done
FSID="$(cat /proc/sys/kernel/random/uuid)"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$cluster-\$id
osd data = $DIR/osd/\$cluster-\$id
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
mon data avail warn = 2
mon data avail crit = 1
mon allow pool size one = true
# Each pool radosgw makes at its first start is one map change; the monitor's default of one
# proposal a second would make that start take ten seconds.
paxos propose interval = 0.01
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 1073741824
[client.admin]
admin socket =
log file = $DIR/log/admin.log
[client.rgw.a]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
EOF

started=$(date +%s%N)
monmaptool --create --clobber --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >&2
ceph-mon -c "$CONF" -i a >&2 9>&-

OSD_UUID="$(cat /proc/sys/kernel/random/uuid)"
OSD_ID="$(ceph -c "$CONF" --connect-timeout 20 osd new "$OSD_UUID")"
if [ "$OSD_ID" != 0 ]; then
  log "the new cluster gave the OSD id $OSD_ID, expected 0"
  exit 1
fi
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >/dev/null 2>&1
ceph-osd -c "$CONF" -i 0 >/dev/null 2>&1 9>&-
radosgw -c "$CONF" -n client.rgw.a >&2 9>&-

URL="http://127.0.0.1:$RGW_PORT"
for _ in $(seq 1 600); do
  if answers "$URL"; then break; fi
  sleep 0.1
done
if ! answers "$URL"; then
  log "radosgw did not answer on $URL; its log is $DIR/log/client.rgw.a.log"
  exit 1
fi

# The admin user datagrant's backend runs as: its key is made here, kept only in $ENV_FILE (0600).
# (head closing the pipe early is no failure, whatever pipefail says)
KEY_ID="DGADMIN$(set +o pipefail; tr -dc 'A-Z0-9' </dev/urandom | head -c 13)"
SECRET="$(set +o pipefail; tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40)"
radosgw-admin -c "$CONF" user create --uid=datagrant-test-admin --display-name="datagrant test admin" \
  --caps="users=*;user-policy=*;buckets=*;metadata=read" --access-key="$KEY_ID" --secret="$SECRET" >/dev/null

(
  umask 077
  {
    echo "DATAGRANT_TEST_RGW_URL=$URL"
    echo "DATAGRANT_TEST_RGW_ACCESS_KEY_ID=$KEY_ID"
    echo "DATAGRANT_TEST_RGW_SECRET_ACCESS_KEY=$SECRET"
  } >"$ENV_FILE"
)
log "Ceph $(ceph-mon --version | awk '{print $3}') with radosgw ready on $URL in $(( ($(date +%s%N) - started) / 1000000 )) ms (files in $DIR)"
cat "$ENV_FILE"
