# shellcheck shell=bash
# kinesis-local (kinesis-mock compiled to JavaScript): local Kinesis Data Streams.
# Sourced by scripts/services; needs SECLAKE_SERVICES_HOME, SVC_RUN, SVC_LOGS.
# It binds every interface and has no listen-address option: loopback.cjs
# (next to this file) is preloaded to force 127.0.0.1.

KINESIS_VERSION="0.6.2"
KINESIS_HOST="127.0.0.1"
KINESIS_PORT="4567"      # plain HTTP (the endpoint we use)
KINESIS_TLS_PORT="4568"  # HTTPS, self-signed; unused but always opened
KINESIS_REGION="ap-northeast-2"
KINESIS_PRELOAD="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/loopback.cjs"

svc_kinesis_install() {
  local dir="$SECLAKE_SERVICES_HOME/kinesis-local"
  local pkg="$dir/node_modules/kinesis-local"
  local marker="$dir/installed-version"
  local want="kinesis-local@$KINESIS_VERSION"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" \
        && -f "$pkg/main.js" && -f "$pkg/server.json" ]]; then
    return 0
  fi
  mkdir -p "$dir"
  rm -f "$marker"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "$want" >/dev/null
  [[ -f "$pkg/main.js" && -f "$pkg/server.json" ]]
  printf '%s\n' "$want" >"$marker"
}

svc_kinesis_start() {
  local pkg="$SECLAKE_SERVICES_HOME/kinesis-local/node_modules/kinesis-local"
  # Started in the package directory, so relative paths (PERSIST_PATH
  # "data") never point into the caller's tree.
  svc_launch kinesis "$pkg" env \
    KINESIS_MOCK_CERT_PATH="$pkg/server.json" \
    KINESIS_MOCK_PLAIN_PORT="$KINESIS_PORT" \
    KINESIS_MOCK_TLS_PORT="$KINESIS_TLS_PORT" \
    AWS_REGION="$KINESIS_REGION" \
    SHOULD_PERSIST_DATA=false \
    LOAD_DATA_IF_EXISTS=false \
    node -r "$KINESIS_PRELOAD" "$pkg/main.js"
}

svc_kinesis_healthy() {
  # A real ListStreams call; kinesis-mock wants an Authorization header that
  # looks like SigV4 plus X-Amz-Date (the signature itself is not checked).
  local body
  body=$(curl -fsS --noproxy '*' --connect-timeout 1 --max-time 2 \
    -X POST "http://$KINESIS_HOST:$KINESIS_PORT/" \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
    -H 'X-Amz-Date: 20240101T000000Z' \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/$KINESIS_REGION/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000" \
    -d '{}' 2>/dev/null) || return 1
  [[ $body == *'"StreamNames"'* ]]
}

svc_kinesis_endpoint() {
  echo "http://$KINESIS_HOST:$KINESIS_PORT"
}
