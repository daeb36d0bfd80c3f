#!/usr/bin/env bash
# Makes sure moto's server (a local AWS emulator with IAM enforcement) is installed.
set -euo pipefail
if command -v moto_server >/dev/null 2>&1; then exit 0; fi
echo "moto_server not found; installing moto[server] with pip" >&2
if ! python3 -m pip install --quiet 'moto[server]>=5.2,<6'; then
  echo "error: could not install moto (pip install 'moto[server]'). The AWS tests and the demo need it." >&2
  exit 1
fi
command -v moto_server >/dev/null 2>&1 || { echo "error: moto installed, but moto_server is not on PATH ($PATH)" >&2; exit 1; }
