#!/usr/bin/env bash
# Memory against the number of files: 1,000 directories of 1,000 files of 0-2 KiB (half
# pseudo-random, half text), backed up, backed up again unchanged, and restored, by cairn
# and restic side by side, cold cache. Peak RSS is what matters here; times are
# indicative. See docs/benchmarks.md ("One million files").
#
# Environment:
#   CAIRN=path   cairn binary (default target/release/cairn)
#   TOOLS="cairn restic"   tools, interleaved per round
#   DIRS=1000 FILES=1000   shape of the tree
#   ROUNDS=1     rounds
#   WORK=dir     scratch space (default /var/tmp/cairn-bench/many)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CAIRN=${CAIRN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}
TOOLS=${TOOLS:-"cairn restic"}
DIRS=${DIRS:-1000}
FILES=${FILES:-1000}
ROUNDS=${ROUNDS:-1}
WORK=${WORK:-/var/tmp/cairn-bench/many}
DATA=$WORK/data-${DIRS}x${FILES}
export CAIRN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
log() { printf '[many] %s\n' "$*" >&2; }

if [[ ! -f $DATA/.complete ]]; then
  log "generating $DIRS x $FILES files in $DATA"
  rm -rf "$DATA"
  python3 - "$DATA" "$DIRS" "$FILES" <<'PY'
import os, random, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1_000_000)
words = [rng.randbytes(rng.randint(2, 6)).hex() for _ in range(5000)]
for d in range(dirs):
    p = os.path.join(root, f"d{d:04d}")
    os.makedirs(p)
    for f in range(files):
        n = rng.randint(0, 2048)
        if f % 2:
            data = rng.randbytes(n)
        else:
            data = " ".join(rng.choice(words) for _ in range(n // 6 + 1)).encode()[:n]
        with open(os.path.join(p, f"f{f:04d}"), "wb") as fh:
            fh.write(data)
PY
  touch "$DATA/.complete"
fi

CSV=$WORK/results.csv
[[ -f $CSV ]] || echo "run,round,tool,step,wall_s,rss_kib" >"$CSV"
RUN=$(date -u +%Y%m%dT%H%M%SZ)
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# Restores go into a fresh ext4 (loop image, one inode per 4 KiB): ext4 skips inodes
# deleted in the last minutes, so a restore right after the previous one was removed
# spent most of its time in that scan (139 s instead of 37 s for a million files).
fresh_fs() { # DIR
  umount "$1" 2>/dev/null || true
  rm -f "$WORK/restore.img"
  truncate -s 8G "$WORK/restore.img"
  # Inode tables and journal now, not by ext4lazyinit during the measured restore.
  mkfs.ext4 -q -F -i 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/restore.img"
  mkdir -p "$1" && mount -o loop "$WORK/restore.img" "$1"
}
measure() { # ROUND TOOL STEP cmd...
  local r=$1 t=$2 s=$3; shift 3
  drop
  /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >"$WORK/$t-$s.log" 2>&1 || { log "$t $s FAILED"; tail -3 "$WORK/$t-$s.log" >&2; return 1; }
  read -r wall rss <"$WORK/time.out"
  echo "$RUN,$r,$t,$s,$wall,$rss" >>"$CSV"
  log "$t $s: ${wall}s, peak RSS $((rss / 1024)) MiB"
}
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $TOOLS; do
    repo=$WORK/$t-repo out=$WORK/$t-out
    rm -rf "$repo" "$out" "$WORK/$t-cache"
    case $t in
      cairn)
        "$CAIRN" -r "$repo" init --kdf-memory-mib 19 --kdf-iterations 1 -q
        measure "$r" cairn backup-initial "$CAIRN" -r "$repo" backup -q "$DATA"
        measure "$r" cairn backup-unchanged "$CAIRN" -r "$repo" backup -q "$DATA"
        fresh_fs "$out"
        measure "$r" cairn restore "$CAIRN" -r "$repo" restore latest -q --target "$out"
        ;;
      restic)
        rs=(restic -r "$repo" --cache-dir "$WORK/$t-cache")
        "${rs[@]}" init -q --repository-version 2
        measure "$r" restic backup-initial "${rs[@]}" backup -q --compression auto "$DATA"
        measure "$r" restic backup-unchanged "${rs[@]}" backup -q --compression auto "$DATA"
        fresh_fs "$out"
        measure "$r" restic restore "${rs[@]}" restore latest -q --target "$out"
        ;;
    esac
    n=$(find "$out" -type f -name 'f*' | wc -l)
    [[ $n == $((DIRS * FILES)) ]] || log "$t restore: $n files, want $((DIRS * FILES))"
    umount "$out" 2>/dev/null || true
    rm -rf "$repo" "$out" "$WORK/$t-cache" "$WORK/restore.img"
  done
done
python3 - "$CSV" "$RUN" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["run"] == sys.argv[2]]
tools = sorted({r["tool"] for r in rows}, key=lambda t: t != "cairn")
print("| step | " + " | ".join(f"{t} wall (s) | {t} peak RSS (MiB)" for t in tools) + " |")
print("|---|" + "---:|---:|" * len(tools))
for s in ("backup-initial", "backup-unchanged", "restore"):
    cells = []
    for t in tools:
        v = [r for r in rows if r["tool"] == t and r["step"] == s]
        cells.append(f"{statistics.median(float(r['wall_s']) for r in v):.1f}" if v else "–")
        cells.append(f"{statistics.median(int(r['rss_kib']) for r in v) / 1024:.0f}" if v else "–")
    print(f"| {s} | " + " | ".join(cells) + " |")
PY
