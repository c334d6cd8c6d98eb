#!/usr/bin/env bash
# Debian packages the full test suite uses: Chromium (end-to-end browser tests) and PostgreSQL (the
# study database's second backend). Installs only what is missing, and only when it can (root + apt).
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${need[*]} missing and cannot be installed here (not root or no apt); the tests that need them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "note: apt-get install ${need[*]} failed; the tests that need them will skip" >&2
exit 0
