# shellcheck shell=bash
# moto server: local AWS endpoint for S3, DynamoDB, Firehose, SES, SNS, IAM, WAFv2.
# Sourced by scripts/services; needs SECLAKE_SERVICES_HOME, SVC_RUN, SVC_LOGS.
# Do not use moto for Kinesis (see shared/SERVICES.md): kinesis.sh runs kinesis-local.

MOTO_VERSION="5.2.5"
MOTO_HOST="127.0.0.1"
MOTO_PORT="5000"

svc_moto_install() {
  local dir="$SECLAKE_SERVICES_HOME/moto"
  local venv="$dir/venv"
  local marker="$dir/installed-version"
  local want="moto[server]==$MOTO_VERSION"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/moto_server" ]]; then
    return 0
  fi
  mkdir -p "$dir"
  rm -rf "$venv" "$marker"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$want"
  printf '%s\n' "$want" >"$marker"
}

svc_moto_start() {
  local venv="$SECLAKE_SERVICES_HOME/moto/venv"
  svc_launch moto "$SECLAKE_SERVICES_HOME/moto" \
    "$venv/bin/moto_server" -H "$MOTO_HOST" -p "$MOTO_PORT"
}

svc_moto_healthy() {
  # /moto-api/config is moto-specific and cheap (unlike /moto-api/data.json,
  # which serialises every backend and can 500 right after an S3 UploadPart),
  # so another server on the port does not pass; then a real S3 ListBuckets.
  # Bodies are captured, not piped into grep -q (SIGPIPE + pipefail).
  local body
  body=$(curl -fsS --noproxy '*' --connect-timeout 1 --max-time 2 \
    "http://$MOTO_HOST:$MOTO_PORT/moto-api/config" 2>/dev/null) || return 1
  [[ $body == *'"batch"'* ]] || return 1
  body=$(curl -fsS --noproxy '*' --connect-timeout 1 --max-time 2 \
    "http://$MOTO_HOST:$MOTO_PORT/" 2>/dev/null) || return 1
  [[ $body == *ListAllMyBucketsResult* ]]
}

svc_moto_endpoint() {
  echo "http://$MOTO_HOST:$MOTO_PORT"
}
