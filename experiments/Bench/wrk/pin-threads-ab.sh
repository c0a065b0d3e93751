#!/usr/bin/env bash
# A standalone adaptive-server at low load, with and without --pin-threads, in alternating rounds: each
# round starts the server, warms it up for 20 s, then measures 12 s with wrk at one connection and GAP ms
# (default 15) between requests (idle-infer.lua), as a replica idles between requests.
# Needs wrk (apt-get install wrk), curl, and the server built: dotnet build model-server -c Release.
# Usage: experiments/Bench/wrk/pin-threads-ab.sh MODEL.onnx [ROUNDS (3)] [INTRA_OP_THREADS (2)]
set -euo pipefail
model=${1:?usage: $0 MODEL.onnx [ROUNDS] [INTRA_OP_THREADS]}
rounds=${2:-3}
threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
server="$here/../../../model-server/bin/Release/net10.0/adaptive-server"
[ -x "$server" ] || { echo "$0: build the server first: dotnet build model-server -c Release" >&2; exit 2; }
command -v wrk > /dev/null || { echo "$0: wrk is missing: apt-get install wrk" >&2; exit 2; }
port=${PORT:-18080}
url="http://127.0.0.1:$port/v2/models/bench/infer"
for round in $(seq 1 "$rounds"); do
  for pinning in off on; do
    flags=()
    [ "$pinning" = on ] && flags=(--pin-threads)
    "$server" serve --host 127.0.0.1 --port "$port" --model "$model" --name bench --max-batch 1 \
      --intra-op-threads "$threads" --drain-delay-ms 0 "${flags[@]}" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null && break; sleep 0.2; done
    wrk -t1 -c1 -d20s -s "$here/idle-infer.lua" "$url" > /dev/null
    echo "round $round, pinning $pinning: $(wrk -t1 -c1 -d12s -s "$here/idle-infer.lua" "$url" | tail -1)"
    kill -TERM "$pid"
    wait "$pid" || true
  done
done
