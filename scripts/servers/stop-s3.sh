#!/usr/bin/env bash
# stop-s3.sh: stops the SeaweedFS server that start-s3.sh started (by its recorded pid only).
set -euo pipefail
S3_DIR=${S3_DIR:-/var/tmp/cairn-s3}
pidfile="$S3_DIR/weed.pid"
[ -f "$pidfile" ] || { echo "no $pidfile: nothing to stop"; exit 0; }
pid=$(cat "$pidfile")
# Only signal it if it still is our weed process (pids are reused).
if kill -0 "$pid" 2>/dev/null && grep -q weed "/proc/$pid/cmdline" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  echo "stopped seaweedfs pid $pid"
fi
rm -f "$pidfile"
