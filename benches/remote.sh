#!/usr/bin/env bash
# Remote repositories against a local one, side by side on the same data: backup and restore
# throughput to the private sshd (SFTP) and SeaweedFS (S3) on loopback, and how closely
# --limit-upload holds its rate over a long upload to S3.
#
#   sudo CAIRN=target/release/cairn benches/remote.sh
#
#   CAIRN        cairn binary (default ${CARGO_TARGET_DIR:-target}/release/cairn)
#   BENCH_DATA   dataset (default /var/tmp/cairn-bench/data, built by compare.sh)
#   ROUNDS       interleaved rounds (default 3)
#   LIMIT_KIB    --limit-upload for the rate test (default 2000; 0 skips the test)
#   LIMIT_MB     incompressible data for the rate test (default 150, ~75 s at 2000 KiB/s)
#
# Starts both test servers (scripts/servers/), writes benches/results/remote-<ts>.{csv,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
CAIRN=${CAIRN:-${CARGO_TARGET_DIR:-target}/release/cairn}
DATA=${BENCH_DATA:-/var/tmp/cairn-bench/data}
ROUNDS=${ROUNDS:-3}
LIMIT_KIB=${LIMIT_KIB:-2000}
LIMIT_MB=${LIMIT_MB:-150}
WORK=${BENCH_DIR:-/var/tmp/cairn-bench/remote}
TS=$(date -u +%Y%m%dT%H%M%SZ)
CSV=benches/results/remote-$TS.csv
MD=benches/results/remote-$TS.md

[ -x "$CAIRN" ] || { echo "no cairn binary at $CAIRN (cargo build --release -p cairn)" >&2; exit 1; }
[ -d "$DATA" ] || { echo "no dataset at $DATA (run benches/compare.sh once to build it)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

bash scripts/servers/start-sshd.sh >/dev/null
bash scripts/servers/start-s3.sh >/dev/null
trap 'bash scripts/servers/stop-s3.sh >/dev/null 2>&1 || true' EXIT
# shellcheck source=/dev/null
. /srv/sftptest/env
# shellcheck source=/dev/null
. "${S3_DIR:-/var/tmp/cairn-s3}/env"
export AWS_ACCESS_KEY_ID=$CAIRN_TEST_S3_ADMIN_KEY AWS_SECRET_ACCESS_KEY=$CAIRN_TEST_S3_ADMIN_SECRET
export CAIRN_PASSWORD=bench
SFTP_OPTS=(-o "sftp.identity=$CAIRN_TEST_SFTP_IDENTITY" -o "sftp.known-hosts=$CAIRN_TEST_SFTP_KNOWN_HOSTS")

rm -rf "$WORK"; mkdir -p "$WORK" benches/results
echo "run,round,backend,step,wall_s,rss_kib,bytes" > "$CSV"
bytes_of() { du -sb "$1" | cut -f1; }
DATA_BYTES=$(bytes_of "$DATA")

repo_for() { # backend round -> location
  case $1 in
    local) echo "$WORK/local-r$2" ;;
    sftp) echo "$CAIRN_TEST_SFTP_URL/bench-$TS-r$2" ;;
    s3) echo "s3:$CAIRN_TEST_S3_ENDPOINT/$CAIRN_TEST_S3_BUCKET/bench-$TS-r$2" ;;
  esac
}

# Every step starts from a cold page cache with nothing dirty, as in compare.sh: otherwise a
# restore pays for the writeback and reclaim of the previous one's 2 GB, and the numbers
# swing by 4x from round to round.
drop_caches() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

measure() { # backend round step cmd... ; records wall time and peak RSS
  local b=$1 r=$2 step=$3; shift 3
  local err="$WORK/$b-r$r-$step.err"
  drop_caches
  if ! /usr/bin/time -f '%e %M' "$@" >/dev/null 2>"$err"; then
    echo "FAILED: $b round $r $step" >&2; cat "$err" >&2; exit 1
  fi
  local out; out=$(tail -1 "$err")
  echo "$TS,$r,$b,$step,${out% *},${out#* },$DATA_BYTES" >> "$CSV"
  echo "round $r $b $step: ${out% *} s"
}

for r in $(seq 1 "$ROUNDS"); do
  for b in local sftp s3; do
    repo=$(repo_for "$b" "$r")
    opts=(); [ "$b" = sftp ] && opts=("${SFTP_OPTS[@]}")
    export CAIRN_CACHE_DIR="$WORK/cache-$b-r$r"
    "$CAIRN" -r "$repo" "${opts[@]}" init --kdf-memory-mib 19 --kdf-iterations 1 >/dev/null
    sync
    measure "$b" "$r" backup "$CAIRN" -r "$repo" "${opts[@]}" backup -q --host bench "$DATA"
    target="$WORK/restore-$b-r$r"
    measure "$b" "$r" restore "$CAIRN" -r "$repo" "${opts[@]}" restore -q latest --target "$target"
    rm -rf "$target"
    sync
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -F, -v b="$1" -v s="$2" '$3==b && $4==s {print $5}' "$CSV" | median; }
{
  echo "# Remote repositories vs local: $TS"
  echo
  echo "cairn $("$CAIRN" --version | cut -d' ' -f2), $(nproc) cores, dataset $DATA ($((DATA_BYTES / 1000000)) MB),"
  echo "servers on 127.0.0.1 (OpenSSH $(ssh -V 2>&1 | cut -d, -f1 | cut -d_ -f2), SeaweedFS 4.48); page cache dropped before each step; medians of $ROUNDS interleaved rounds."
  echo
  echo "| step | local | sftp | s3 | sftp/local throughput | s3/local throughput |"
  echo "|---|---:|---:|---:|---:|---:|"
  for step in backup restore; do
    l=$(col local "$step"); f=$(col sftp "$step"); s=$(col s3 "$step")
    printf '| %s | %s s | %s s | %s s | %.2f | %.2f |\n' "$step" "$l" "$f" "$s" \
      "$(echo "$l / $f" | bc -l)" "$(echo "$l / $s" | bc -l)"
  done
} > "$MD"

if [ "$LIMIT_KIB" != 0 ]; then
  src="$WORK/limit-src"; mkdir -p "$src"
  head -c "$((LIMIT_MB << 20))" /dev/urandom > "$src/random.bin"
  repo=$(repo_for s3 limit)
  "$CAIRN" -r "$repo" init --kdf-memory-mib 19 --kdf-iterations 1 >/dev/null
  start=$(date +%s.%N)
  json=$("$CAIRN" -r "$repo" --json backup --limit-upload "$LIMIT_KIB" "$src" | tail -1)
  end=$(date +%s.%N)
  up=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["bytes_up"])')
  wall=$(echo "$end - $start" | bc -l)
  rate=$(echo "$up / 1024 / $wall" | bc -l)
  echo "$TS,1,s3,limit-$LIMIT_KIB,$wall,0,$up" >> "$CSV"
  {
    echo
    printf 'Upload limit: `--limit-upload %s` to S3, %s MiB of random data: %.0f KiB/s measured over %.1f s (%s bytes uploaded), %.1f%% of the limit.\n' \
      "$LIMIT_KIB" "$LIMIT_MB" "$rate" "$wall" "$up" "$(echo "100 * $rate / $LIMIT_KIB" | bc -l)"
  } >> "$MD"
fi
cat "$MD"
