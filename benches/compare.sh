#!/usr/bin/env bash
# Whole-process comparison of cairn against restic, borg and bupstash. See docs/benchmarks.md.
#
# Environment:
#   CAIRN=path        cairn binary (default: target/release/cairn; skipped with a message if missing)
#   TOOLS="cairn restic borg bupstash"   which tools to run, in this order within each round
#                     (bupstash 0.12: `cargo install bupstash --locked`; skipped if missing)
#   BENCH_DATA=dir    dataset (default /var/tmp/cairn-bench/data, or .../data-small); built once
#   BENCH_SIZE=full|small       ~2 GB (default) or ~200 MB dataset
#   BENCH_DIR=dir     scratch space for repositories, restores, logs (default /var/tmp/cairn-bench/run)
#   ROUNDS=N          rounds (default 3); tools are interleaved within each round
#   DROP_CACHES=auto|1|0        drop the page cache before every measured step (auto: if possible)
#   CEILING=1|0       measure single-core zstd -3 and BLAKE3 throughput over the dataset (default 1)
#   INSTALL=1|0       apt-get install missing tools (default 1)
#   RESULTS=dir       where the CSV goes (default benches/results next to this script)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

BENCH_SIZE=${BENCH_SIZE:-full}
case $BENCH_SIZE in
  full) TARGET_BYTES=$((2000 * 1000 * 1000)); DEFAULT_DATA=/var/tmp/cairn-bench/data ;;
  small) TARGET_BYTES=$((200 * 1000 * 1000)); DEFAULT_DATA=/var/tmp/cairn-bench/data-small ;;
  *) echo "BENCH_SIZE must be full or small" >&2; exit 2 ;;
esac
BENCH_DATA=${BENCH_DATA:-$DEFAULT_DATA}
BENCH_DIR=${BENCH_DIR:-/var/tmp/cairn-bench/run}
ROUNDS=${ROUNDS:-3}
TOOLS=${TOOLS:-"cairn restic borg bupstash"}
DROP_CACHES=${DROP_CACHES:-auto}
CEILING=${CEILING:-1}
INSTALL=${INSTALL:-1}
RESULTS=${RESULTS:-$HERE/results}
CAIRN=${CAIRN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn}

export CAIRN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password BORG_PASSPHRASE=bench-password
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO
# The change-detection snapshot must be found by host, whatever the machine is called.
HOST_TAG=bench

log() { printf '[compare] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------- tools
install_tools() {
  local missing=()
  command -v restic >/dev/null || missing+=(restic)
  command -v borg >/dev/null || missing+=(borgbackup)
  command -v hyperfine >/dev/null || missing+=(hyperfine)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v b3sum >/dev/null || missing+=(b3sum)
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    [[ $INSTALL == 1 ]] || die "missing: ${missing[*]} (INSTALL=0)"
    log "installing ${missing[*]}"
    apt-get update -qq
    # b3sum is not in every release; install the rest even if it is absent.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]/b3sum/}" >/dev/null
  fi
  # restic needs repository v2 and --compression: 0.14 or later.
  local rv
  rv=$(restic version | awk '{print $2}')
  python3 - "$rv" <<'EOF' || die "restic $rv is older than 0.14 (no --compression / repo v2)"
import sys
v = tuple(int(x) for x in sys.argv[1].split('.')[:2])
sys.exit(0 if v >= (0, 14) else 1)
EOF
}

tool_versions() {
  local c="absent"
  [[ -x $CAIRN ]] && c=$("$CAIRN" --version 2>/dev/null | head -1)
  echo "cairn: $c ($CAIRN)"
  echo "restic: $(restic version | head -1)"
  echo "borg: $(borg --version)"
  if command -v bupstash >/dev/null; then echo "bupstash: $(bupstash --version)"; fi
  echo "zstd: $(zstd --version)"
  if command -v b3sum >/dev/null; then echo "b3sum: $(b3sum --version)"; fi
}

machine_info() {
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---------------------------------------------------------------------------- dataset
# Deterministic selection: walk the candidate roots in C-locale sorted order, copy every entry
# that still fits the remaining budget, descend into directories that do not fit. The same
# machine image therefore always yields the same dataset.
fill() { # fill DIR  (uses/updates global REMAIN)
  local dir=$1 entry size
  while IFS= read -r entry; do
    ((REMAIN > 1000000)) || return 0
    [[ -L $entry || -f $entry || -d $entry ]] || continue
    size=$(du -sb -- "$entry" 2>/dev/null | cut -f1) || continue
    if ((size <= REMAIN)); then
      # Not `cp --parents`: coreutils 9.1 (bookworm) fails on the parents' attributes with -a.
      mkdir -p "$BENCH_DATA${entry%/*}"
      cp -a -- "$entry" "$BENCH_DATA${entry%/*}/" || { log "could not copy $entry; skipped"; continue; }
      REMAIN=$((REMAIN - size))
    elif [[ -d $entry && ! -L $entry ]]; then
      fill "$entry"
    fi
  done < <(find "$dir" -mindepth 1 -maxdepth 1 -print0 | LC_ALL=C sort -z | tr '\0' '\n')
}

prepare_data() {
  if [[ -f $BENCH_DATA/.cairn-bench-complete ]]; then
    log "dataset present: $BENCH_DATA ($(cat "$BENCH_DATA/.cairn-bench-complete"))"
    return
  fi
  rm -rf "$BENCH_DATA"
  mkdir -p "$BENCH_DATA"
  REMAIN=$TARGET_BYTES
  log "building dataset in $BENCH_DATA (target $((TARGET_BYTES / 1000000)) MB from /usr/share then /usr/lib)"
  local root
  for root in /usr/share /usr/lib; do
    fill "$root"
  done
  local bytes files
  bytes=$(data_bytes "$BENCH_DATA")
  files=$(find "$BENCH_DATA" -type f | wc -l)
  # The marker (a few bytes) is part of the dataset; the change step leaves it alone.
  echo "$bytes bytes in $files files" >"$BENCH_DATA/.cairn-bench-complete"
  log "dataset: $bytes bytes in $files regular files"
  du -sb "$BENCH_DATA"/usr/* | sed 's/^/[compare]   /' >&2
}

data_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
data_files() { find "$1" -type f | wc -l; }

# The "small change": every 20th regular file (sorted) gets 4 KiB overwritten in its middle
# (even) or 4 KiB appended (odd), and new files worth ~1% of the dataset are added (half
# pseudo-random, half compressible text). Fully deterministic (fixed seed); `revert` undoes
# it byte-for-byte, including mtimes, so the next tool sees the same dataset.
change() { # change apply|revert
  python3 - "$1" "$BENCH_DATA" "$BENCH_DIR/change-journal" <<'EOF'
import json, os, random, shutil, sys
mode, data, journal = sys.argv[1:4]
newdir = os.path.join(data, "zz-cairn-bench-new")
if mode == "revert":
    if not os.path.exists(journal):
        sys.exit(0)
    with open(journal) as f:
        j = json.load(f)
    for e in j["files"]:
        with open(e["path"], "r+b") as f:
            if e["kind"] == "append":
                f.truncate(e["size"])
            else:
                f.seek(e["off"]); f.write(bytes.fromhex(e["orig"]))
        os.utime(e["path"], ns=(e["atime"], e["mtime"]))
    shutil.rmtree(newdir, ignore_errors=True)
    os.utime(data, ns=(j["dir_atime"], j["dir_mtime"]))
    os.remove(journal)
    sys.exit(0)
if os.path.exists(journal):
    sys.exit("change already applied (journal exists): revert first")
rng = random.Random(20240601)
files = []
for d, dirs, names in os.walk(data):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p) and not n.startswith(".cairn-bench"):
            files.append(p)
files.sort()
st_data = os.stat(data)
j = {"files": [], "dir_atime": st_data.st_atime_ns, "dir_mtime": st_data.st_mtime_ns}
total = 0
changed = 0
for i, p in enumerate(files[::20]):
    st = os.stat(p)
    total += st.st_size
    e = {"path": p, "size": st.st_size, "atime": st.st_atime_ns, "mtime": st.st_mtime_ns}
    patch = rng.randbytes(4096)
    with open(p, "r+b") as f:
        if i % 2 == 0 and st.st_size >= 8192:
            off = st.st_size // 2
            f.seek(off); e["orig"] = f.read(4096).hex()
            f.seek(off); f.write(patch)
            e.update(kind="modify", off=off)
        else:
            f.seek(0, 2); f.write(patch)
            e["kind"] = "append"
    changed += 4096
    j["files"].append(e)
# Journal first: a crash below still reverts cleanly.
with open(journal, "w") as f:
    json.dump(j, f)
all_bytes = sum(os.path.getsize(p) for p in files)
new_bytes = all_bytes // 100
os.makedirs(newdir)
words = [rng.randbytes(rng.randint(2, 8)).hex() for _ in range(2000)]
n = 0
while n * 256 * 1024 < new_bytes:
    path = os.path.join(newdir, f"new-{n:05d}")
    with open(path, "wb") as f:
        if n % 2 == 0:
            f.write(rng.randbytes(256 * 1024))
        else:
            s = " ".join(rng.choice(words) for _ in range(40000)).encode()
            f.write(s[: 256 * 1024])
    n += 1
print(f"changed {len(j['files'])} of {len(files)} files "
      f"(their size {total} B, {changed} B rewritten/appended), added {n} new files "
      f"({n * 256 * 1024} B)", file=sys.stderr)
EOF
}

# ---------------------------------------------------------------------------- measurement
CAN_DROP=0
setup_drop() {
  case $DROP_CACHES in
    0) CAN_DROP=0 ;;
    *)
      if sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        CAN_DROP=1
      else
        [[ $DROP_CACHES == 1 ]] && die "DROP_CACHES=1 but /proc/sys/vm/drop_caches is not writable"
        CAN_DROP=0
      fi
      ;;
  esac
  if ((CAN_DROP)); then
    CACHE_MODE=cold
    log "page cache is dropped before every measured step (cold cache)"
  else
    CACHE_MODE=warm
    log "cannot drop caches: running WARM cache (dataset read once beforehand)"
    tar cf - -C "$BENCH_DATA" . | cat >/dev/null
  fi
}
drop() { if ((CAN_DROP)); then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

# measure ROUND TOOL STEP REPO -- cmd...   (appends one CSV row; tool output goes to a log)
measure() {
  local round=$1 tool=$2 step=$3 repo=$4; shift 5
  local tf="$BENCH_DIR/time.out" logf="$BENCH_DIR/logs/$tool-r$round-$step.log" rc=0
  drop
  /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$logf" 2>&1 || rc=$?
  local wall rss size
  read -r wall rss < <(tail -1 "$tf")
  size=$(du -sb "$repo" 2>/dev/null | cut -f1 || echo 0)
  echo "$RUN_ID,$round,$tool,$step,$wall,$rss,$size,$rc,$CACHE_MODE" >>"$CSV"
  log "  $tool $step: ${wall}s, peak RSS $((rss / 1024)) MiB, repo $((size / 1000000)) MB, rc=$rc"
  if ((rc != 0)); then
    log "  $tool $step FAILED, see $logf:"
    tail -5 "$logf" | sed 's/^/[compare]     /' >&2
    return 1
  fi
}

# Each restore goes into a fresh ext4 file system (a loop-mounted image on the same disk),
# when root can make one: ext4 skips inodes deleted within the last minutes when it
# allocates, scanning past each, so restoring right after the previous tool's restore
# (90k files) was removed spent half of a fast tool's restore in that scan (perf:
# recently_deleted under ext4_create), and a tool that reached its restore later paid
# less. Otherwise each restore starts at least 65 s after the last mass removal.
RESTORE_FS=${RESTORE_FS:-auto}
LAST_RM=0
removed() { sync; LAST_RM=$(date +%s); }
restore_fs_up() { # DIR: make DIR a fresh file system, or wait out recent deletions
  if [[ $RESTORE_FS != 0 ]] && command -v mkfs.ext4 >/dev/null && [[ $(id -u) == 0 ]]; then
    # Sparse, 8x the dataset: a restore target with room to spare, as a real disk has.
    # At 2x, the restore filled half of it while nearly all it wrote was still dirty in
    # memory, and ext4 gives up delayed allocation when free space nears the dirty data
    # (ext4_nonda_switch): cairn's restore took 5.2-5.4 s instead of 3.7 s there, and
    # restic's, which writes at a third of the rate, the same 10 s. Inode tables and
    # journal are written now, not by ext4lazyinit during the measured restore.
    truncate -s $((TARGET_BYTES * 8)) "$BENCH_DIR/restore.img" &&
      mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$BENCH_DIR/restore.img" &&
      mkdir -p "$1" && mount -o loop "$BENCH_DIR/restore.img" "$1" && return 0
    [[ $RESTORE_FS == 1 ]] && die "RESTORE_FS=1 but the loop file system could not be made"
  fi
  local wait=$((LAST_RM + 65 - $(date +%s)))
  if ((wait > 0)); then log "  waiting ${wait}s for ext4 to release the inodes removed last"; sleep "$wait"; fi
}
restore_fs_down() { # DIR
  if mountpoint -q "$1"; then umount "$1"; fi
  rm -f "$BENCH_DIR/restore.img"
}

# Restored files must match the dataset in count and total size (cheap sanity check).
verify_restore() { # TOOL RESTORE_ROOT
  local got
  got=$(find "$2" -type d -path "*${BENCH_DATA}" -print -quit)
  if [[ -z $got ]]; then
    log "  $1 restore: $BENCH_DATA not found under $2"
    return 1
  fi
  local want_b want_f got_b got_f
  want_b=$(data_bytes "$BENCH_DATA"); want_f=$(data_files "$BENCH_DATA")
  got_b=$(data_bytes "$got"); got_f=$(data_files "$got")
  if [[ $want_b != "$got_b" || $want_f != "$got_f" ]]; then
    log "  $1 restore MISMATCH: $got_f files / $got_b B, want $want_f / $want_b"
    return 1
  fi
}

# Tool adapters: each implements init, backup, restore with a private repository and cache.
run_tool() { # TOOL ROUND
  local tool=$1 r=$2 base="$BENCH_DIR/$1"
  local repo="$base/repo" out="$base/restore" ok=1
  rm -rf "$base"; removed; mkdir -p "$base/cache" "$out"
  log "round $r: $tool"
  case $tool in
    cairn)
      export CAIRN_CACHE_DIR="$base/cache"
      measure "$r" cairn init "$repo" -- "$CAIRN" init -r "$repo" "${CAIRN_INIT_FLAGS[@]}" || ok=0
      ((ok)) && { measure "$r" cairn backup-initial "$repo" -- "$CAIRN" -r "$repo" backup --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && { measure "$r" cairn backup-unchanged "$repo" -- "$CAIRN" -r "$repo" backup --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && change apply
      ((ok)) && { measure "$r" cairn backup-changed "$repo" -- "$CAIRN" -r "$repo" backup --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && restore_fs_up "$out"
      ((ok)) && { measure "$r" cairn restore "$repo" -- "$CAIRN" -r "$repo" restore latest --target "$out" || ok=0; }
      ;;
    restic)
      local rs=(restic -r "$repo" --cache-dir "$base/cache")
      measure "$r" restic init "$repo" -- "${rs[@]}" init --repository-version 2 || ok=0
      ((ok)) && { measure "$r" restic backup-initial "$repo" -- "${rs[@]}" backup --compression auto --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && { measure "$r" restic backup-unchanged "$repo" -- "${rs[@]}" backup --compression auto --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && change apply
      ((ok)) && { measure "$r" restic backup-changed "$repo" -- "${rs[@]}" backup --compression auto --host $HOST_TAG "$BENCH_DATA" || ok=0; }
      ((ok)) && restore_fs_up "$out"
      ((ok)) && { measure "$r" restic restore "$repo" -- "${rs[@]}" restore latest --target "$out" || ok=0; }
      ;;
    borg)
      export BORG_BASE_DIR="$base/cache"
      measure "$r" borg init "$repo" -- borg init -e repokey-blake2 "$repo" || ok=0
      ((ok)) && { measure "$r" borg backup-initial "$repo" -- borg create --compression "$BORG_COMPRESSION" "$repo::b1" "$BENCH_DATA" || ok=0; }
      ((ok)) && { measure "$r" borg backup-unchanged "$repo" -- borg create --compression "$BORG_COMPRESSION" "$repo::b2" "$BENCH_DATA" || ok=0; }
      ((ok)) && change apply
      ((ok)) && { measure "$r" borg backup-changed "$repo" -- borg create --compression "$BORG_COMPRESSION" "$repo::b3" "$BENCH_DATA" || ok=0; }
      # borg extracts into the current directory.
      ((ok)) && restore_fs_up "$out"
      ((ok)) && { measure "$r" borg restore "$repo" -- bash -c 'cd "$1" && borg extract "$2"' _ "$out" "$repo::b3" || ok=0; }
      ;;
    bupstash)
      # The send log is bupstash's change detection (its "parent"); its query cache is
      # private to the run like the others' caches.
      export BUPSTASH_REPOSITORY="$repo" BUPSTASH_KEY="$base/key" BUPSTASH_QUERY_CACHE="$base/cache/query"
      local bp=(bupstash put -q --send-log "$base/cache/send-log")
      measure "$r" bupstash init "$repo" -- bash -c 'bupstash init && bupstash new-key -o "$1"' _ "$base/key" || ok=0
      ((ok)) && { measure "$r" bupstash backup-initial "$repo" -- "${bp[@]}" gen=1 "$BENCH_DATA" || ok=0; }
      ((ok)) && { measure "$r" bupstash backup-unchanged "$repo" -- "${bp[@]}" gen=2 "$BENCH_DATA" || ok=0; }
      ((ok)) && change apply
      ((ok)) && { measure "$r" bupstash backup-changed "$repo" -- "${bp[@]}" gen=3 "$BENCH_DATA" || ok=0; }
      ((ok)) && restore_fs_up "$out"
      # bupstash restores the put's root (the dataset directory) into the target itself.
      mkdir -p "$out$BENCH_DATA"
      ((ok)) && { measure "$r" bupstash restore "$repo" -- bupstash restore --into "$out$BENCH_DATA" gen=3 || ok=0; }
      unset BUPSTASH_REPOSITORY BUPSTASH_KEY BUPSTASH_QUERY_CACHE
      ;;
  esac
  ((ok)) && { verify_restore "$tool" "$out" || echo "$RUN_ID,$r,$tool,restore-verify,0,0,0,1,$CACHE_MODE" >>"$CSV"; }
  restore_fs_down "$out"
  change revert
  rm -rf "$base"; removed
}

# ---------------------------------------------------------------------------- ceiling
ceiling() {
  local bytes=$1 t
  log "ceiling: single-core throughput over the dataset as a tar stream"
  if ((CAN_DROP)); then
    drop
    t=$( { /usr/bin/time -f '%e' bash -c 'tar cf - -C "$1" . | cat >/dev/null' _ "$BENCH_DATA"; } 2>&1 | tail -1)
    echo "$RUN_ID,0,ceiling,tar-read-cold,$t,0,$bytes,0,cold" >>"$CSV"
  fi
  tar cf - -C "$BENCH_DATA" . | cat >/dev/null # warm for the rest
  t=$( { /usr/bin/time -f '%e' bash -c 'tar cf - -C "$1" . | cat >/dev/null' _ "$BENCH_DATA"; } 2>&1 | tail -1)
  CEIL_TAR=$t
  t=$( { /usr/bin/time -f '%e' bash -c 'tar cf - -C "$1" . | zstd -3 -T1 -q -c >/dev/null' _ "$BENCH_DATA"; } 2>&1 | tail -1)
  CEIL_ZSTD=$t
  if command -v b3sum >/dev/null; then
    CEIL_HASH_NAME="b3sum --num-threads 1"
    t=$( { /usr/bin/time -f '%e' bash -c 'tar cf - -C "$1" . | b3sum --num-threads 1 >/dev/null' _ "$BENCH_DATA"; } 2>&1 | tail -1)
  else
    CEIL_HASH_NAME="python hashlib.blake2b (stand-in: b3sum not available)"
    t=$( { /usr/bin/time -f '%e' bash -c 'tar cf - -C "$1" . | python3 -c "
import hashlib,sys
h=hashlib.blake2b()
for b in iter(lambda: sys.stdin.buffer.read(1<<20), b\"\"): h.update(b)"' _ "$BENCH_DATA"; } 2>&1 | tail -1)
  fi
  CEIL_HASH=$t
  echo "$RUN_ID,0,ceiling,tar-read,$CEIL_TAR,0,$bytes,0,warm" >>"$CSV"
  echo "$RUN_ID,0,ceiling,zstd-3-1core,$CEIL_ZSTD,0,$bytes,0,warm" >>"$CSV"
  echo "$RUN_ID,0,ceiling,blake3-1core,$CEIL_HASH,0,$bytes,0,warm" >>"$CSV"
}

# ---------------------------------------------------------------------------- report
report() {
  python3 - "$CSV" "$RUN_ID" "$DATA_BYTES" "$DATA_FILES" "${CEIL_HASH_NAME:-}" <<'EOF'
import csv, statistics, sys
path, run, data_bytes, data_files, hash_name = sys.argv[1:6]
data_bytes = int(data_bytes)
rows = [r for r in csv.DictReader(open(path)) if r["run"] == run]
steps = ["init", "backup-initial", "backup-unchanged", "backup-changed", "restore"]
tools = [t for t in ("cairn", "restic", "borg", "bupstash") if any(r["tool"] == t for r in rows)]
peers = [t for t in tools if t != "cairn"]
def med(tool, step, col):
    v = [float(r[col]) for r in rows if r["tool"] == tool and r["step"] == step and r["rc"] == "0"]
    return statistics.median(v) if v else None
def fmt(v, scale=1.0, nd=2):
    return "–" if v is None else f"{v / scale:.{nd}f}"
def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}"
n = max((int(r["round"]) for r in rows if r["tool"] in tools), default=0)
mb = data_bytes / 1e6
print(f"\n### Results: {mb:.0f} MB, {data_files} files, median of {n} round(s), cache {rows[0]['cache'] if rows else '?'}\n")
for title, col, scale, nd, unit in [("Wall time", "wall_s", 1, 2, "s"),
                                    ("Peak RSS", "rss_kib", 1024, 0, "MiB"),
                                    ("Repository size after step", "repo_bytes", 1e6, 1, "MB")]:
    print(f"**{title} ({unit})**\n")
    # Ratios against restic (the tool users come from) and against the best peer of each
    # step (the lowest median among restic, borg and bupstash): below 1 means cairn leads.
    extra = ["cairn/restic"] if "cairn" in tools and "restic" in tools else []
    extra += ["best peer", "cairn/best"] if "cairn" in tools and peers else []
    print("| step | " + " | ".join(tools + extra) + " |")
    print("|---|" + "---:|" * (len(tools) + len(extra)))
    for s in steps:
        vals = [med(t, s, col) for t in tools]
        line = f"| {s} | " + " | ".join(fmt(v, scale, nd) for v in vals) + " |"
        if "cairn/restic" in extra:
            line += f" {ratio(med('cairn', s, col), med('restic', s, col))} |"
        if "best peer" in extra:
            pv = [(med(t, s, col), t) for t in peers if med(t, s, col) is not None]
            if pv:
                v, t = min(pv)
                line += f" {t} | {ratio(med('cairn', s, col), v)} |"
            else:
                line += " – | – |"
        print(line)
    print()
if "cairn" in tools and peers:
    print("**Every round: cairn's restore wall time over restic's (target ≤ 0.50)**\n")
    def by_round(tool, step):
        return {r["round"]: float(r["wall_s"]) for r in rows
                if r["tool"] == tool and r["step"] == step and r["rc"] == "0"}
    c, rs = by_round("cairn", "restore"), by_round("restic", "restore")
    print(", ".join(f"round {k}: {c[k] / rs[k]:.2f}" for k in sorted(c) if k in rs and rs[k]) or "–")
    print()
print("**Throughput of the initial backup and restore (MB/s of dataset)**\n")
print("| step | " + " | ".join(tools) + " |")
print("|---|" + "---:|" * len(tools))
for s in ("backup-initial", "restore"):
    print(f"| {s} | " + " | ".join(fmt(None if med(t, s, 'wall_s') in (None, 0) else mb / med(t, s, "wall_s"), 1, 0) for t in tools) + " |")
fails = [r for r in rows if r["rc"] != "0"]
if fails:
    print("\n**Failures:** " + ", ".join(f"{r['tool']} {r['step']} round {r['round']}" for r in fails))
ceil = {r["step"]: float(r["wall_s"]) for r in rows if r["tool"] == "ceiling"}
if ceil:
    print("\n**Ceiling (one core, warm cache unless noted, dataset as a tar stream)**\n")
    print("| stage | s | MB/s |")
    print("|---|---:|---:|")
    for k, name in [("tar-read-cold", "tar → cat, COLD cache (read only)"),
                    ("tar-read", "tar → cat (read only)"), ("zstd-3-1core", "tar → zstd -3 -T1"),
                    ("blake3-1core", "tar → " + (hash_name or "b3sum"))]:
        if k in ceil:
            print(f"| {name} | {ceil[k]:.2f} | {mb / ceil[k]:.0f} |" if ceil[k] > 0 else f"| {name} | {ceil[k]} | – |")
    if "zstd-3-1core" in ceil and "blake3-1core" in ceil:
        best = (ceil["zstd-3-1core"] + ceil["blake3-1core"]) / 2
        print(f"\nzstd-3 + BLAKE3 spread over 2 cores: ≈ {best:.2f} s for the initial backup "
              f"(≈ {mb / best:.0f} MB/s), ignoring chunking, AES-GCM and I/O; "
              f"compare with backup-initial above.")
EOF
}

# ---------------------------------------------------------------------------- main
main() {
  install_tools
  mkdir -p "$BENCH_DIR/logs" "$RESULTS"
  change revert # a previous interrupted run may have left the change applied

  # Disk: dataset + one tool's repository (<= dataset) + one restore (= dataset), plus margin.
  local need=$((TARGET_BYTES * 3 + 1000000000)) avail
  avail=$(df -B1 --output=avail "$(dirname "$BENCH_DATA")" 2>/dev/null | tail -1 || echo 0)
  ((avail > need)) || die "need ~$((need / 1000000000)) GB free under $(dirname "$BENCH_DATA"), have $((avail / 1000000000)) GB"

  prepare_data
  DATA_BYTES=$(data_bytes "$BENCH_DATA"); DATA_FILES=$(data_files "$BENCH_DATA")

  BORG_COMPRESSION=${BORG_COMPRESSION:-zstd,3}
  CAIRN_INIT_FLAGS=()
  local tools=()
  for t in $TOOLS; do
    if [[ $t == bupstash ]] && ! command -v bupstash >/dev/null; then
      log "SKIPPING bupstash: not installed (cargo install bupstash --locked)"
      continue
    fi
    if [[ $t == cairn ]]; then
      if [[ ! -x $CAIRN ]]; then
        log "SKIPPING cairn: no binary at $CAIRN (build with: cargo build --release -p cairn, or set CAIRN=)"
        continue
      fi
      # Cheap KDF if the CLI offers it: the KDF is not what we measure.
      if "$CAIRN" init --help 2>/dev/null | grep -q -- --kdf-memory-mib; then
        CAIRN_INIT_FLAGS=(--kdf-memory-mib 19 --kdf-iterations 1)
      fi
    fi
    tools+=("$t")
  done
  ((${#tools[@]})) || die "no tool to run"

  RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
  CSV="$RESULTS/$RUN_ID.csv"
  echo "run,round,tool,step,wall_s,rss_kib,repo_bytes,rc,cache" >"$CSV"
  setup_drop

  local r t
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${tools[@]}"; do run_tool "$t" "$r"; done
  done
  [[ $CEILING == 1 ]] && ceiling "$DATA_BYTES"

  {
    echo "## cairn benchmark $RUN_ID"
    echo
    echo '```'
    machine_info
    tool_versions
    echo "dataset: $BENCH_DATA ($BENCH_SIZE)"
    echo "borg compression: $BORG_COMPRESSION; restic: --compression auto, repo v2; cairn: defaults (zstd 3); bupstash: defaults (zstd)"
    echo "cache: $CACHE_MODE; rounds: $ROUNDS; tools interleaved per round: ${tools[*]}"
    echo '```'
    report
  } | tee "$RESULTS/$RUN_ID.md"
  log "raw results: $CSV"
}

main "$@"
