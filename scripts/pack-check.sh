#!/usr/bin/env bash
# The package people install: `npm pack` the CLI, install the tarball into an empty directory,
# and run it from there (`--version`, and `validate` on the seed example).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball=$(npm pack --silent --pack-destination "$tmp" | tail -n 1)
mkdir "$tmp/app"
cd "$tmp/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$tmp/$tarball" >/dev/null
version=$(npx --no-install datagrant --version)
[ "$version" = "$(node -p "require('$root/package.json').version")" ] || { echo "pack-check: datagrant --version printed '$version'" >&2; exit 1; }
cp "$root/examples/seed.yaml" datagrant.yaml
npx --no-install datagrant validate
echo "pack-check: $tarball installs and runs (datagrant $version)"

# The release flow: changesets must be able to version the workspace packages. An internal
# dependency it cannot read as a version range makes `changeset version` silently do nothing.
cd "$root"
status=$(npx --no-install changeset status 2>&1 || true)
if grep -q 'must depend' <<<"$status"; then
  echo "pack-check: changesets cannot version the packages:" >&2
  echo "$status" >&2
  exit 1
fi
echo "pack-check: changesets can version the workspace packages"
