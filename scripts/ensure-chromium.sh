#!/usr/bin/env bash
# Makes sure Debian's chromium is installed: the HTML report tests open the reports in it
# (headless, through playwright-core). A test never skips for want of it.
set -euo pipefail
chromium=${DATAGRANT_CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then exit 0; fi
echo "chromium not found at $chromium; installing Debian's chromium with apt-get" >&2
if [ "$(id -u)" -eq 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
if ! { $apt_get install -y chromium >&2 || { $apt_get update >&2 && $apt_get install -y chromium >&2; }; }; then
  echo "error: could not install chromium (apt-get install chromium). The HTML report tests need it." >&2
  exit 1
fi
[ -x "$chromium" ] || { echo "error: chromium installed, but $chromium is missing (set DATAGRANT_CHROMIUM to its path)" >&2; exit 1; }
