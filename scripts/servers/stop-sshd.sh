#!/usr/bin/env bash
# Stops the sshd that start-sshd.sh started (by the pid in its own pid file, nothing else).
# Session children exit with their clients. Leaves keys and data in place.
set -euo pipefail
BASE=${SFTP_BASE:-/srv/sftptest}
PIDFILE="$BASE/sshd.pid"
[ -s "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
# Only signal it if it really is our sshd (the pid may have been reused since).
if kill -0 "$pid" 2>/dev/null && grep -q "$BASE/etc/sshd_config" "/proc/$pid/cmdline" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$PIDFILE"
