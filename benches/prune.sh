#!/usr/bin/env bash
# Prune benchmarks (issue 7 acceptance). See docs/benchmarks.md, section "Prune".
#
#   sudo CAIRN=target/release/cairn benches/prune.sh
#
# Part A, "generations": five generations of a ~700 MB tree (real files from /usr/share and
#   /usr/lib, 10% of the files modified between generations), backed up by cairn and restic
#   to a local repository and to the SeaweedFS S3 server (through benches/s3proxy.py, which
#   counts requests and bytes), then `forget --keep-last 2` and a prune: cairn
#   `prune --dry-run` (its estimate) then `prune --instant`; restic `prune` (defaults).
#   Repository size before/after, transfer, requests, money at s3-standard list prices, wall
#   time; then `check --read-data` and a byte-for-byte restore of every remaining snapshot.
# Part B, "forget --keep-last 1 --prune": on copies of the same five-generation repositories
#   (local), cairn (--instant), restic and borg 1.2 (prune + compact), ROUNDS interleaved
#   rounds, each from the same repository state; wall time and peak RSS; `cairn snapshots` on
#   the same repository as the key-unlock (Argon2) baseline.
#
#   CAIRN       cairn binary (default ${CARGO_TARGET_DIR:-target}/release/cairn)
#   PRUNE_DIR   scratch space (default /var/tmp/cairn-bench/prune)
#   GEN_BYTES   size of the generation tree (default 700000000)
#   ROUNDS      rounds of part B (default 3)
#   PARTS       "A B" (default); BACKENDS "local s3" (default)
#   PROXY_PORT  port of the counting proxy (default 8334)
#   TOOLS_A     tools of part A (default "cairn restic")
#   CAIRN_PRUNE_FLAGS  extra flags for cairn's prune in part A, e.g. "--max-unused 5%"
#
# Writes benches/results/prune-<ts>.{csv,md}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CAIRN=$(realpath "${CAIRN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}")
W=${PRUNE_DIR:-/var/tmp/cairn-bench/prune}
GEN_BYTES=${GEN_BYTES:-700000000}
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS-"A B"}
BACKENDS=${BACKENDS-"local s3"}
PROXY_PORT=${PROXY_PORT:-8334}
TOOLS_A=${TOOLS_A:-"cairn restic"}
read -r -a CAIRN_PRUNE_FLAGS <<<"${CAIRN_PRUNE_FLAGS:-}"
TS=$(date -u +%Y%m%dT%H%M%SZ)
CSV=$HERE/results/prune-$TS.csv
MD=$HERE/results/prune-$TS.md

export CAIRN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password BORG_PASSPHRASE=bench-password
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

log() { printf '[prune] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN (cargo build --release -p cairn)"
for t in restic borg rsync /usr/bin/time python3; do
  command -v "$t" >/dev/null || die "missing $t (apt-get install -y restic borgbackup rsync time)"
done
mkdir -p "$W" "$HERE/results"
echo "run,part,backend,round,tool,step,wall_s,rss_kib,repo_bytes,down_bytes,up_bytes,requests,req_detail,rc" >"$CSV"

drop() { sync; if [[ -w /proc/sys/vm/drop_caches ]]; then echo 3 >/proc/sys/vm/drop_caches; fi; }
CACHE_MODE=warm; [[ -w /proc/sys/vm/drop_caches ]] && CACHE_MODE=cold

# ---------------------------------------------------------------------------- dataset
# Same deterministic selection as compare.sh: C-sorted walk, copy what fits, descend otherwise.
fill() {
  local dir=$1 entry size
  while IFS= read -r entry; do
    ((REMAIN > 1000000)) || return 0
    [[ -L $entry || -f $entry || -d $entry ]] || continue
    size=$(du -sb -- "$entry" 2>/dev/null | cut -f1) || continue
    if ((size <= REMAIN)); then
      mkdir -p "$BASE${entry%/*}"
      cp -a -- "$entry" "$BASE${entry%/*}/" || { log "could not copy $entry; skipped"; continue; }
      REMAIN=$((REMAIN - size))
    elif [[ -d $entry && ! -L $entry ]]; then
      fill "$entry"
    fi
  done < <(find "$dir" -mindepth 1 -maxdepth 1 -print0 | LC_ALL=C sort -z | tr '\0' '\n')
}

# Generation k+1 = generation k with 10% of the regular files (a fixed-seed sample) modified:
# 256 random bytes overwritten every 256 KiB (at least once), so every chunk of a modified
# file changes while the file stays about as compressible as before. mtimes are set to a
# fixed per-generation value so that rsync and the backup tools see the change.
churn() { # DIR SEED
  python3 - "$1" "$2" <<'EOF'
import os, random, sys
d, seed = sys.argv[1], int(sys.argv[2])
files = []
for root, dirs, names in os.walk(d):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(root, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
rng = random.Random(seed)
pick = rng.sample(files, len(files) // 10)
t = 1767225600 + seed * 86400  # 2026-01-01 + seed days
total = 0
for p in pick:
    size = os.path.getsize(p)
    if size == 0:
        continue
    with open(p, "r+b") as f:
        off = rng.randrange(0, max(1, min(size, 262144)))
        while off < size:
            n = min(256, size - off)
            f.seek(off); f.write(rng.randbytes(n))
            off += 262144
    os.utime(p, (t, t))
    total += size
print(f"generation seed {seed}: modified {len(pick)} of {len(files)} files ({total} bytes)", file=sys.stderr)
EOF
}

prepare_gens() {
  if [[ -f $W/gens/.complete ]]; then log "generations present: $(cat "$W/gens/.complete")"; return; fi
  rm -rf "$W/gens"; mkdir -p "$W/gens"
  BASE=$W/gens/g1; mkdir -p "$BASE"; REMAIN=$GEN_BYTES
  log "building generation 1 (~$((GEN_BYTES / 1000000)) MB from /usr/share then /usr/lib)"
  local root; for root in /usr/share /usr/lib; do fill "$root"; done
  local k
  for k in 2 3 4 5; do
    cp -a "$W/gens/g$((k - 1))" "$W/gens/g$k"
    churn "$W/gens/g$k" "$k"
  done
  echo "$(du -sb "$W/gens/g1" | cut -f1) bytes, $(find "$W/gens/g1" -type f | wc -l) files per generation" >"$W/gens/.complete"
  log "generations: $(cat "$W/gens/.complete")"
}

# Every tool backs up the same path, $W/data, which holds generation k when backup k runs.
load_gen() { rsync -a --delete "$W/gens/g$1/" "$W/data/"; }

# ---------------------------------------------------------------------------- S3
s3_setup() {
  bash "$ROOT/scripts/servers/start-s3.sh" >/dev/null
  # shellcheck source=/dev/null
  . /var/tmp/cairn-s3/env
  export AWS_ACCESS_KEY_ID=$CAIRN_TEST_S3_ADMIN_KEY AWS_SECRET_ACCESS_KEY=$CAIRN_TEST_S3_ADMIN_SECRET
  python3 "$HERE/s3proxy.py" "$PROXY_PORT" "${CAIRN_TEST_S3_ENDPOINT#http://}" &
  PROXY_PID=$!
  trap 'kill $PROXY_PID 2>/dev/null || true' EXIT
  local i
  for i in $(seq 50); do
    curl -sf "http://127.0.0.1:$PROXY_PORT/__proxy_stats" >/dev/null && return 0
    sleep 0.1
  done
  die "proxy did not start"
}
proxy_stats() { curl -sf "http://127.0.0.1:$PROXY_PORT/__proxy_stats${1:+?reset=1}"; }
s3_prefix_bytes() { # PREFIX -> total size of its objects (listed directly, not through the proxy)
  python3 - "$CAIRN_TEST_S3_ENDPOINT" "$CAIRN_TEST_S3_BUCKET" "$1" <<'EOF'
import sys, boto3
ep, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
tot = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    tot += sum(o["Size"] for o in page.get("Contents", []))
print(tot)
EOF
}

# ---------------------------------------------------------------------------- measurement
# measure PART BACKEND ROUND TOOL STEP -- cmd...  (one CSV row; output in $W/logs)
measure() {
  local part=$1 b=$2 r=$3 tool=$4 step=$5; shift 6
  local logf="$W/logs/$part-$b-r$r-$tool-$step.log" tf="$W/time.out" rc=0
  drop
  if [[ $b == s3 ]]; then proxy_stats reset >/dev/null; fi
  /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$logf" 2>"$logf.err" || rc=$?
  local wall rss down=0 up=0 reqs=0 detail=""
  read -r wall rss < <(tail -n1 "$tf")
  if [[ $b == s3 ]]; then
    read -r down up reqs detail < <(proxy_stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["bytes_down"], s["bytes_up"], s["requests_total"],
      ";".join(f"{k}={v}" for k, v in sorted(s["requests"].items())) or "-")')
  fi
  echo "$TS,$part,$b,$r,$tool,$step,$wall,$rss,$(repo_bytes "$b" "$tool"),$down,$up,$reqs,$detail,$rc" >>"$CSV"
  local extra=""; if [[ $b == s3 ]]; then extra=", $reqs requests ($detail), down $down up $up"; fi
  log "  $part $b r$r $tool $step: ${wall}s, RSS $((rss / 1024)) MiB$extra, rc=$rc"
  # A failure is recorded (rc column, "Failures" in the report) and the run goes on.
  if ((rc != 0)); then tail -n5 "$logf.err" | sed 's/^/[prune]     /' >&2; fi
  return 0
}

repo_loc() { # BACKEND TOOL
  case $1 in
    local) echo "$W/A-$2/repo" ;;
    s3) echo "s3:http://127.0.0.1:$PROXY_PORT/$CAIRN_TEST_S3_BUCKET/prune-$TS-$2" ;;
  esac
}
REPO_BYTES_OVERRIDE=""
repo_bytes() { # BACKEND TOOL
  if [[ -n $REPO_BYTES_OVERRIDE ]]; then du -sb "$REPO_BYTES_OVERRIDE" | cut -f1; return; fi
  case $1 in
    local) du -sb "$(repo_loc local "$2")" 2>/dev/null | cut -f1 || echo 0 ;;
    s3) s3_prefix_bytes "prune-$TS-$2" ;;
  esac
}

tool_cmd() { # BACKEND TOOL -> sets CMD array
  local repo; repo=$(repo_loc "$1" "$2")
  case $2 in
    cairn) CMD=("$CAIRN" -r "$repo") ;;
    restic)
      CMD=(restic -r "$repo" --cache-dir "$W/A-$1-restic-cache")
      if [[ $1 == s3 ]]; then CMD+=(-o s3.region=us-east-1); fi
      ;;
  esac
}

# Restores every remaining snapshot and compares it byte for byte with its generation.
verify_restores() { # BACKEND TOOL
  local b=$1 t=$2 ids gen id out ok=1
  tool_cmd "$b" "$t"
  # Snapshots oldest first; after keep-last 2 they are generations 4 and 5.
  case $t in
    cairn) ids=$("${CMD[@]}" --json snapshots | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d.get("snapshots", d) if isinstance(d, dict) else d
for s in sorted(d, key=lambda s: s["time"]): print(s.get("id") or s.get("short_id"))') ;;
    restic) ids=$("${CMD[@]}" snapshots --json | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: s["time"]): print(s["id"])') ;;
  esac
  gen=$((6 - $(wc -w <<<"$ids")))
  for id in $ids; do
    out="$W/restore-$b-$t"; rm -rf "$out"
    case $t in
      cairn) "${CMD[@]}" restore -q "$id" --target "$out" >/dev/null ;;
      restic) "${CMD[@]}" restore "$id" --target "$out" >/dev/null ;;
    esac
    if diff -r --no-dereference "$out$W/data" "$W/gens/g$gen" >"$W/logs/diff-$b-$t-g$gen" 2>&1; then
      log "  $b $t: snapshot $id restores generation $gen byte for byte"
      echo "$TS,A,$b,1,$t,restore-g$gen-identical,0,0,0,0,0,0,-,0" >>"$CSV"
    else
      log "  $b $t: snapshot $id DIFFERS from generation $gen (see $W/logs/diff-$b-$t-g$gen)"
      echo "$TS,A,$b,1,$t,restore-g$gen-identical,0,0,0,0,0,0,-,1" >>"$CSV"
      ok=0
    fi
    rm -rf "$out"
    gen=$((gen + 1))
  done
  ((ok))
}

part_a() { # BACKEND
  local b=$1 t k
  for t in $TOOLS_A; do
    log "part A, $b, $t"
    rm -rf "$W/A-$t" "$W/A-$b-restic-cache" "$W/A-$b-cairn-cache"; mkdir -p "$W/A-$t"
    export CAIRN_CACHE_DIR="$W/A-$b-cairn-cache"
    tool_cmd "$b" "$t"
    case $t in
      cairn) measure A "$b" 1 cairn init -- "${CMD[@]}" init ;;
      restic) measure A "$b" 1 restic init -- "${CMD[@]}" init --repository-version 2 ;;
    esac
    for k in 1 2 3 4 5; do
      load_gen "$k"
      case $t in
        cairn) measure A "$b" 1 cairn "backup-g$k" -- "${CMD[@]}" backup -q --host bench "$W/data" ;;
        restic) measure A "$b" 1 restic "backup-g$k" -- "${CMD[@]}" backup -q --compression auto --host bench "$W/data" ;;
      esac
    done
    if [[ $b == local ]]; then
      # Part B starts from this state: five snapshots, nothing forgotten.
      rm -rf "$W/B-pristine-$t"; mkdir -p "$W/B-pristine-$t"
      cp -a "$W/A-$t/repo" "$W/B-pristine-$t/repo"
      if [[ $t == cairn ]]; then cp -a "$W/A-$b-cairn-cache" "$W/B-pristine-$t/cache"
      else cp -a "$W/A-$b-restic-cache" "$W/B-pristine-$t/cache"; fi
    fi
    measure A "$b" 1 "$t" forget-keep-last-2 -- "${CMD[@]}" forget --keep-last 2
    case $t in
      cairn)
        measure A "$b" 1 cairn prune-dry-run -- "${CMD[@]}" --json prune --dry-run "${CAIRN_PRUNE_FLAGS[@]}"
        cp "$W/logs/A-$b-r1-cairn-prune-dry-run.log" "$HERE/results/prune-$TS-$b-cairn-dry-run.json"
        measure A "$b" 1 cairn prune-instant -- "${CMD[@]}" --json prune --instant "${CAIRN_PRUNE_FLAGS[@]}"
        cp "$W/logs/A-$b-r1-cairn-prune-instant.log" "$HERE/results/prune-$TS-$b-cairn-prune.json"
        measure A "$b" 1 cairn check-read-data -- "${CMD[@]}" check --read-data
        ;;
      restic)
        measure A "$b" 1 restic prune -- "${CMD[@]}" prune
        cp "$W/logs/A-$b-r1-restic-prune.log" "$HERE/results/prune-$TS-$b-restic-prune.log"
        measure A "$b" 1 restic check-read-data -- "${CMD[@]}" check --read-data
        ;;
    esac
    verify_restores "$b" "$t" || true
    if [[ $b == local ]]; then rm -rf "$W/A-$t"; fi
  done
}

# ---------------------------------------------------------------------------- part B
borg_pristine() {
  [[ -d $W/B-pristine-borg/repo ]] && return
  log "part B: building the borg repository (five generations)"
  rm -rf "$W/B-pristine-borg"; mkdir -p "$W/B-pristine-borg"
  export BORG_BASE_DIR="$W/B-pristine-borg/cache"
  borg init -e repokey-blake2 "$W/B-pristine-borg/repo"
  local k
  for k in 1 2 3 4 5; do
    load_gen "$k"
    borg create --compression zstd,3 "$W/B-pristine-borg/repo::g$k" "$W/data"
  done
}

# bupstash (optional: `cargo install bupstash --locked`): one put per generation, tagged
# gen=k; "keep last 1" is `rm --allow-many gen=1 or ... gen=4` followed by `gc`.
bupstash_pristine() {
  [[ -d $W/B-pristine-bupstash/repo ]] && return
  log "part B: building the bupstash repository (five generations)"
  rm -rf "$W/B-pristine-bupstash"; mkdir -p "$W/B-pristine-bupstash"
  bupstash init -r "$W/B-pristine-bupstash/repo"
  bupstash new-key -o "$W/B-pristine-bupstash/key"
  local k
  for k in 1 2 3 4 5; do
    load_gen "$k"
    bupstash put -q -r "$W/B-pristine-bupstash/repo" -k "$W/B-pristine-bupstash/key" \
      --send-log "$W/B-pristine-bupstash/send-log" "gen=$k" "$W/data" >/dev/null
  done
}

part_b() {
  local r t repo tools=(cairn restic borg)
  borg_pristine
  if command -v bupstash >/dev/null; then bupstash_pristine; tools+=(bupstash)
  else log "part B: no bupstash binary; skipped"; fi
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${tools[@]}"; do
      rm -rf "$W/B-work"; cp -a "$W/B-pristine-$t" "$W/B-work"
      repo=$W/B-work/repo
      REPO_BYTES_OVERRIDE=$repo
      case $t in
        cairn)
          export CAIRN_CACHE_DIR=$W/B-work/cache
          measure B local "$r" cairn unlock-snapshots -- "$CAIRN" -r "$repo" snapshots
          measure B local "$r" cairn forget-keep-last-1-prune -- "$CAIRN" -r "$repo" forget --keep-last 1 --prune --instant
          ;;
        restic)
          measure B local "$r" restic forget-keep-last-1-prune -- restic -r "$repo" --cache-dir "$W/B-work/cache" forget --keep-last 1 --prune
          ;;
        borg)
          export BORG_BASE_DIR=$W/B-work/cache
          measure B local "$r" borg forget-keep-last-1-prune -- bash -c 'borg prune --keep-last 1 "$1" && borg compact "$1"' _ "$repo"
          ;;
        bupstash)
          measure B local "$r" bupstash forget-keep-last-1-prune -- env BUPSTASH_QUERY_CACHE="$W/B-work/qcache" bash -c 'bupstash rm -r "$1" -k "$2" --allow-many gen=1 or gen=2 or gen=3 or gen=4 && bupstash gc -r "$1"' _ "$repo" "$W/B-work/key"
          ;;
      esac
      REPO_BYTES_OVERRIDE=""
    done
  done
  rm -rf "$W/B-work"
}

# ---------------------------------------------------------------------------- main
mkdir -p "$W/logs"
prepare_gens
{
  echo "run $TS; $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); loadavg at start $(cut -d' ' -f1-3 /proc/loadavg); cache $CACHE_MODE"
  echo "cairn: $("$CAIRN" --version | head -n1); restic: $(restic version | head -n1); borg: $(borg --version)"
  echo "generations: $(cat "$W/gens/.complete")"
  echo "part A tools: $TOOLS_A; extra cairn prune flags: ${CAIRN_PRUNE_FLAGS[*]:-none}"
} >"$W/header.txt"
for p in $PARTS; do
  case $p in
    A)
      for b in $BACKENDS; do
        if [[ $b == s3 ]]; then s3_setup; fi
        part_a "$b"
      done
      ;;
    B) part_b ;;
  esac
done
python3 "$HERE/prune_report.py" "$CSV" "$W/header.txt" "$HERE/results/prune-$TS" | tee "$MD"
log "raw results: $CSV"
