#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, unit/integration/e2e tests,
# and a bounded fuzz smoke run. Installs what it needs (run as root on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

# cairn-benches is excluded: it pulls in criterion, which CI does not build.
step "lints"
cargo clippy --locked --workspace --exclude cairn-benches --all-targets --features cairn-core/test-util -- -D warnings

step "build the cairn binary (the e2e tests run it)"
cargo build --locked -p cairn

step "restic 0.14 (tests/e2e/forget.rs checks forget's policy against it)"
if ! command -v restic >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends restic >/dev/null
fi
restic version

step "FUSE (tests/e2e/mount.rs mounts repositories) and script(1) (tests/e2e/terminal.rs)"
if ! command -v fusermount3 >/dev/null || ! command -v script >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 bsdutils >/dev/null
fi
# A container may have the fuse module loaded but no device node: make it (char 10:229).
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
ls -l /dev/fuse || echo "no /dev/fuse: the mount tests will fail"

step "test servers: private sshd (SFTP) and SeaweedFS (S3) on 127.0.0.1 (scripts/servers/)"
trap 'bash scripts/servers/stop-sshd.sh >/dev/null 2>&1 || true; bash scripts/servers/stop-s3.sh >/dev/null 2>&1 || true' EXIT
bash scripts/servers/start-sshd.sh
bash scripts/servers/start-s3.sh
# shellcheck source=/dev/null
. "${SFTP_BASE:-/srv/sftptest}/env"
# shellcheck source=/dev/null
. "${S3_DIR:-/var/tmp/cairn-s3}/env"

step "unit, integration and end-to-end tests"
log=$(mktemp)
trap 'rm -f "$log"; bash scripts/servers/stop-sshd.sh >/dev/null 2>&1 || true; bash scripts/servers/stop-s3.sh >/dev/null 2>&1 || true' EXIT
cargo test --locked --workspace --exclude cairn-benches --features cairn-core/test-util 2>&1 | tee "$log"
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz smoke run (stable toolchain, no sanitizer, bounded time)"
  cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
  FUZZ_SECONDS="${FUZZ_SECONDS:-15}" fuzz/run-smoke.sh
fi

# One closing line for the whole suite (the last cargo line is a doc-test run of 0 tests).
echo "tests: $passed passed, $failed failed"
