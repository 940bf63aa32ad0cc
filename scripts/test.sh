#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what the tests need when absent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v npm >/dev/null || need_apt+=(npm)
command -v prlimit >/dev/null || need_apt+=(util-linux)
# A real path-normalising origin for the front-door tests.
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx-light)
if ((${#need_apt[@]})); then
  echo "test.sh: installing ${need_apt[*]} (needed by the tests)"
  if ! { apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; } >/dev/null 2>&1; then
    echo "test.sh: could not install ${need_apt[*]}; install it and run again" >&2
    exit 1
  fi
fi

# axe-core, from the npm registry, which the browser test injects into the queue page.
AXE_VERSION=4.14.1
npm_dir="${CARGO_TARGET_DIR:-target}/npm"
if ! [[ -f "$npm_dir/node_modules/axe-core/axe.min.js" ]] ||
  ! grep -q "\"version\": \"$AXE_VERSION\"" "$npm_dir/node_modules/axe-core/package.json"; then
  echo "test.sh: installing axe-core@$AXE_VERSION from npm (needed by the browser test)"
  mkdir -p "$npm_dir"
  if ! npm install --prefix "$npm_dir" --no-audit --no-fund --silent "axe-core@$AXE_VERSION" >/dev/null; then
    echo "test.sh: could not install axe-core from the npm registry" >&2
    exit 1
  fi
fi

# One build from scratch: incremental caches only cost time here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check ($SECONDS s)"
cargo fmt --all -- --check
echo "== cargo clippy ($SECONDS s)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo build -p origin-stub, which the fault tests run as a process ($SECONDS s)"
cargo build -p origin-stub --quiet
echo "== cargo test ($SECONDS s)"
# One test at a time within each binary: the crowd tests measure rates and order in
# real time, and must not share the two cores with each other.
cargo test --workspace --quiet --no-fail-fast -- --test-threads=1
echo "== done ($SECONDS s)"
