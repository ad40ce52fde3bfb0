# shellcheck shell=bash
# kinesalite: a fast local Kinesis Data Streams, for volume (benches) only.
# Sourced by scripts/services; needs SECLAKE_SERVICES_HOME, SVC_RUN, SVC_LOGS.
# No UpdateShardCount, ChildShards, ShardFilter or ListShards paging, and
# MillisBehindLatest is always 0 (see shared/SERVICES.md): behaviour is
# tested on kinesis-local (kinesis.sh). Without --path it keeps everything
# in memory (memdown; leveldown is never loaded). It binds every interface
# and has no listen-address option: loopback.cjs (next to this file) is
# preloaded to force 127.0.0.1.

KINESALITE_VERSION="3.3.3"
KINESALITE_HOST="127.0.0.1"
KINESALITE_PORT="4569"
# kinesalite refuses CreateStream beyond this many shards in all (default 10).
KINESALITE_SHARD_LIMIT="100"
KINESALITE_PRELOAD="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/loopback.cjs"

svc_kinesalite_install() {
  local dir="$SECLAKE_SERVICES_HOME/kinesalite"
  local pkg="$dir/node_modules/kinesalite"
  local marker="$dir/installed-version"
  local want="kinesalite@$KINESALITE_VERSION"
  if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -f "$pkg/cli.js" ]]; then
    return 0
  fi
  mkdir -p "$dir"
  rm -f "$marker"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "$want" >/dev/null
  [[ -f "$pkg/cli.js" ]]
  printf '%s\n' "$want" >"$marker"
}

svc_kinesalite_start() {
  local pkg="$SECLAKE_SERVICES_HOME/kinesalite/node_modules/kinesalite"
  # No --path: the streams live in memory and go with the process.
  svc_launch kinesalite "$pkg" \
    node -r "$KINESALITE_PRELOAD" "$pkg/cli.js" \
    --port "$KINESALITE_PORT" --shardLimit "$KINESALITE_SHARD_LIMIT"
}

svc_kinesalite_healthy() {
  # kinesis.sh's check (a real ListStreams call, which kinesalite answers
  # the same way), pointed at this server; scripts/services sources both.
  KINESIS_HOST="$KINESALITE_HOST" KINESIS_PORT="$KINESALITE_PORT" svc_kinesis_healthy
}

svc_kinesalite_endpoint() {
  echo "http://$KINESALITE_HOST:$KINESALITE_PORT"
}
