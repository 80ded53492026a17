#!/usr/bin/env bash
# What the test suite needs from the machine beyond Python packages: Debian's Chromium (browser
# tests), npm's axe-core (the browser suite's accessibility check) and a PostgreSQL server on
# 127.0.0.1:5432 (the registry suite runs on it too), and npm's configurable-http-proxy (JupyterHub's
# proxy, for the hub tests).
# With --bench (make bench-deps) also nginx and wrk, which only the gateway benchmarks need (a static
# upstream and a load generator in C), so that `make test` does not install them.
# Idempotent; installs with apt-get only when something is missing and we may (root).
set -euo pipefail

bench=0
[ "${1:-}" = "--bench" ] && bench=1

need=()
if [ "$bench" = 1 ]; then
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1 || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system_deps: installing ${need[*]}"
    apt-get update -qq >/dev/null
    # RUNLEVEL=1: Debian's maintainer scripts then do not start nginx on port 80 (the benchmarks
    # start their own on a free loopback port).
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "system_deps: missing ${need[*]} and not root; the tests that need them will say they are skipped" >&2
  fi
fi

# axe-core: a JavaScript file the browser tests inject into the page (tests/browser/axekit.py looks
# in the same folder, and installs it there itself when this step could not run).
axe_dir="${BYOK_NB_AXE_DIR:-$HOME/.cache/byok_nb/axe}"
if [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$axe_dir"
  npm install --prefix "$axe_dir" axe-core@4 --no-audit --no-fund >/dev/null \
    || echo "system_deps: could not install axe-core with npm" >&2
fi

# configurable-http-proxy: JupyterHub's proxy, for the team-deployment tests (tests/hub).
if ! command -v configurable-http-proxy >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    npm install -g configurable-http-proxy@5.3.0 --no-audit --no-fund >/dev/null \
      || echo "system_deps: could not install configurable-http-proxy with npm" >&2
  else
    echo "system_deps: configurable-http-proxy missing and not root; the hub tests will say they are skipped" >&2
  fi
fi

# Start PostgreSQL (the machine image ships it stopped) and make the test role and database.
if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || echo "system_deps: could not start PostgreSQL" >&2
  fi
  if [ "$(id -u)" = 0 ]; then
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='byok_nb'\"" 2>/dev/null | grep -q 1 \
      || su postgres -c "psql -qc \"CREATE ROLE byok_nb LOGIN PASSWORD 'byok_nb' CREATEDB\"" >/dev/null
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='byok_nb_test'\"" 2>/dev/null | grep -q 1 \
      || su postgres -c "createdb -O byok_nb byok_nb_test" >/dev/null
  fi
fi
