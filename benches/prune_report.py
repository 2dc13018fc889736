#!/usr/bin/env python3
"""Markdown report of a benches/prune.sh run: prune_report.py CSV HEADER PREFIX.

PREFIX-<backend>-cairn-{dry-run,prune}.json are cairn's --json outputs of the run.
Money is at s3-standard list prices (docs/cost-model.md) for every backend, WITHOUT the
100 GB/month free egress, so that the two tools' transfers are priced alike:
GET/HEAD $0.0004/1000, PUT/POST/LIST $0.005/1000, DELETE free, egress $0.09/GB,
storage $0.023/GB-month (for the payback: cost / storage saved per month).
"""
import csv
import json
import os
import statistics
import sys

path, header, prefix = sys.argv[1:4]
rows = list(csv.DictReader(open(path)))
GET, PUT, EGRESS, STORE = 0.0004 / 1000, 0.005 / 1000, 0.09 / 1e9, 0.023 / 1e9


def money(down, reqs):
    c = down * EGRESS
    for k, v in reqs.items():
        if k in ("get", "head"):
            c += v * GET
        elif k in ("put", "list", "post"):
            c += v * PUT
    return c


def payback(cost, freed):
    if freed <= 0:
        return "never"
    return f"{cost / (freed * STORE) * 30:.1f} d"


def detail(s):
    if s in ("", "-"):
        return {}
    return {k: int(v) for k, v in (x.split("=") for x in s.split(";"))}


def row(part, b, tool, step, r="1"):
    for x in rows:
        if x["part"] == part and x["backend"] == b and x["tool"] == tool and x["step"] == step and x["round"] == r:
            return x
    return None


def load(p):
    try:
        with open(p) as f:
            lines = [l for l in f.read().splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None


MB = 1e6
print(f"## Prune benchmark `{os.path.basename(prefix)}`\n")
print("```")
print(open(header).read().rstrip())
print("```\n")

backends = [b for b in ("local", "s3") if any(x["part"] == "A" and x["backend"] == b for x in rows)]
for b in backends:
    print(f"### Generations workload, {b} repository (one run)\n")
    dry = load(f"{prefix}-{b}-cairn-dry-run.json")
    pr = load(f"{prefix}-{b}-cairn-prune.json")
    print("| | cairn `prune --instant` | restic `prune` | cairn/restic |")
    print("|---|---:|---:|---:|")
    vals = {}
    for t, step in (("cairn", "prune-instant"), ("restic", "prune")):
        p = row("A", b, t, step)
        f = row("A", b, t, "forget-keep-last-2")
        if not p or not f or p["rc"] != "0" or f["rc"] != "0":
            continue  # failed: listed under "Failures"
        before, after = int(f["repo_bytes"]), int(p["repo_bytes"])
        d = detail(p["req_detail"])
        v = {"before": before, "after": after, "freed": before - after, "wall": float(p["wall_s"]),
             "rss": int(p["rss_kib"]), "rc": p["rc"]}
        if b == "s3":
            v.update(down=int(p["down_bytes"]), up=int(p["up_bytes"]), reqs=int(p["requests"]),
                     detail=d, cost=money(int(p["down_bytes"]), d))
        vals[t] = v

    def line(name, key, fmt, ratio=True):
        c, r = vals.get("cairn", {}).get(key), vals.get("restic", {}).get(key)
        cs = "–" if c is None else fmt(c)
        rs = "–" if r is None else fmt(r)
        q = f"{c / r:.2f}" if ratio and isinstance(c, (int, float)) and isinstance(r, (int, float)) and r else "–"
        print(f"| {name} | {cs} | {rs} | {q} |")

    line("repository before prune (after forget)", "before", lambda v: f"{v / MB:.1f} MB", False)
    line("repository after prune", "after", lambda v: f"{v / MB:.1f} MB", False)
    line("freed", "freed", lambda v: f"{v / MB:.1f} MB")
    if b == "s3":
        line("downloaded (proxy, whole process)", "down", lambda v: f"{v / MB:.1f} MB")
        line("uploaded (proxy, whole process)", "up", lambda v: f"{v / MB:.1f} MB")
        line("requests (proxy, whole process)", "reqs", str)
        line("requests by class", "detail", lambda d: ", ".join(f"{v} {k}" for k, v in sorted(d.items())), False)
        line("money at s3-standard, no free tier", "cost", lambda v: f"${v:.4f}")
        for t in ("cairn", "restic"):
            if t in vals:
                vals[t]["payback"] = payback(vals[t]["cost"], vals[t]["freed"])
        line("payback (cost / storage freed per month)", "payback", str, False)
    line("wall time", "wall", lambda v: f"{v:.1f} s")
    line("peak RSS", "rss", lambda v: f"{v / 1024:.0f} MiB")
    print()
    if dry and dry.get("estimate"):
        e = dry["estimate"]
        print(f"cairn `prune --dry-run` estimate ({dry.get('price_profile')} prices of {dry.get('price_as_of')}): "
              f"{e.get('packs_deleted')} packs deleted, {e.get('packs_repacked')} repacked, "
              f"{e.get('packs_kept')} kept with {e.get('bytes_unused_kept', 0) / MB:.1f} MB unused; "
              f"{e.get('bytes_down', 0) / MB:.1f} MB down, {e.get('bytes_up', 0) / MB:.1f} MB up, "
              f"requests {json.dumps(e.get('requests'))}; ${e.get('cost_now', 0):.4f} now, "
              f"saves ${e.get('saved_per_month', 0):.4f}/month, payback "
              f"{('%.1f' % e['payback_days']) if e.get('payback_days') is not None else '–'} days; "
              f"frees {e.get('bytes_freed', 0) / MB:.1f} MB.\n")
    if pr:
        m = pr.get("measured")
        if m:
            print(f"cairn's own `measured` (sweep only): {m['bytes_down'] / MB:.1f} MB down, "
                  f"{m['bytes_up'] / MB:.1f} MB up, requests {json.dumps({k: v for k, v in m['requests'].items() if v})}; "
                  f"`bytes_before` {pr.get('bytes_before', 0) / MB:.1f} MB, `bytes_after` "
                  f"{(pr.get('bytes_after') or 0) / MB:.1f} MB.\n")
    checks = [x for x in rows if x["part"] == "A" and x["backend"] == b and
              (x["step"].startswith("check") or x["step"].startswith("restore-g"))]
    if checks:
        print("Afterwards: " + "; ".join(f"{x['tool']} {x['step']} {'ok' if x['rc'] == '0' else 'FAILED'}"
                                       for x in checks) + ".\n")

bl = [x for x in rows if x["part"] == "B"]
if bl:
    n = max(int(x["round"]) for x in bl)
    print(f"### `forget --keep-last 1 --prune`, local, five generations (median of {n} interleaved rounds)\n")

    def med(tool, step, col):
        v = [float(x[col]) for x in bl if x["tool"] == tool and x["step"] == step and x["rc"] == "0"]
        return (statistics.median(v), len(v)) if v else (None, 0)

    tools = [t for t in ("cairn", "restic", "borg", "bupstash") if any(x["tool"] == t for x in bl)]
    print("| tool | wall s | peak RSS MiB | repository after MB | rounds ok |")
    print("|---|---:|---:|---:|---:|")
    res = {}
    for t in tools:
        w, k = med(t, "forget-keep-last-1-prune", "wall_s")
        r, _ = med(t, "forget-keep-last-1-prune", "rss_kib")
        s, _ = med(t, "forget-keep-last-1-prune", "repo_bytes")
        res[t] = (w, r)
        print(f"| {t} | {w:.2f} | {r / 1024:.0f} | {s / MB:.1f} | {k}/{n} |" if w is not None else f"| {t} | – | – | – | 0/{n} |")
    u, k = med("cairn", "unlock-snapshots", "wall_s")
    ur, _ = med("cairn", "unlock-snapshots", "rss_kib")
    if u is not None:
        print(f"| cairn `snapshots` (key unlock baseline) | {u:.2f} | {ur / 1024:.0f} | – | {k}/{n} |")
    print()
    peers = [t for t in tools if t != "cairn" and res[t][0] is not None]
    if "cairn" in res and res["cairn"][0] is not None and peers:
        bw = min(peers, key=lambda t: res[t][0])
        br = min(peers, key=lambda t: res[t][1])
        print(f"cairn / best peer: wall {res['cairn'][0] / res[bw][0]:.2f} (vs {bw}), "
              f"peak RSS {res['cairn'][1] / res[br][1]:.2f} (vs {br})" +
              (f"; without the unlock ({u:.2f} s): wall {(res['cairn'][0] - u) / res[bw][0]:.2f}" if u else "") + ".\n")
    for t in tools:
        ws = [f"{float(x['wall_s']):.2f}" for x in sorted(bl, key=lambda x: int(x["round"]))
              if x["tool"] == t and x["step"] == "forget-keep-last-1-prune"]
        print(f"- {t} rounds: {', '.join(ws)} s")
    if u is not None:
        us = ", ".join("%.2f" % float(x["wall_s"]) for x in bl if x["step"] == "unlock-snapshots")
        print(f"- cairn unlock rounds: {us} s")
    print()
fails = [x for x in rows if x["rc"] != "0"]
if fails:
    print("**Failures:** " + ", ".join(f"{x['part']} {x['backend']} {x['tool']} {x['step']} r{x['round']}" for x in fails))
