#!/usr/bin/env bash
# Three kvstore members on one NATS JetStream stream (R3 on a local 3-node NATS cluster), all on
# this machine's loopback: a replicated kvstore to try, test or benchmark.
#
#   scripts/local-cluster.sh [start] [DIR]   start NATS (scripts/nats-cluster.sh) and 3 members
#   scripts/local-cluster.sh stop [DIR]      stop the members, then NATS
#
# Members m1..m3 serve clients on 127.0.0.1:2379, 22379 and 32379, with data dirs DIR/m1..m3
# and logs DIR/m1.log..; NATS keeps its data in DIR/nats (DIR defaults to ./cluster-data).
# Then: etcdctl --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list
set -euo pipefail

cmd=start
case "${1:-}" in start|stop) cmd=$1; shift ;; esac
dir=$(realpath -m "${1:-./cluster-data}")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
PYTHON=${PYTHON:-python3}
ports=(2379 22379 32379)
# member i prefers NATS server i (its "own", as on real machines), the others as fallbacks
nats_urls=(nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
           nats://127.0.0.1:4223,nats://127.0.0.1:4224,nats://127.0.0.1:4222
           nats://127.0.0.1:4224,nats://127.0.0.1:4222,nats://127.0.0.1:4223)

stop() {
  for i in 1 2 3; do
    f="$dir/m$i.pid"
    if [ -f "$f" ] && pid=$(cat "$f") && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"; echo "stopping member m$i (pid $pid)"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
  done
  "$here/nats-cluster.sh" stop "$dir/nats"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

mkdir -p "$dir"
"$here/nats-cluster.sh" start "$dir/nats"
for i in 1 2 3; do
  url=http://127.0.0.1:${ports[$((i - 1))]}
  (cd "$repo" && exec nohup "$PYTHON" -m kvstore serve --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --log-backend jetstream --nats-url "${nats_urls[$((i - 1))]}" --cluster-name local \
      >"$dir/m$i.log" 2>&1 </dev/null) &
  echo $! >"$dir/m$i.pid"
done
for i in 1 2 3; do
  port=${ports[$((i - 1))]}
  for _ in $(seq 300); do
    if grep -q "ready to serve" "$dir/m$i.log" 2>/dev/null; then break; fi
    if ! kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null; then
      echo "member m$i exited; its log:" >&2; tail -20 "$dir/m$i.log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "member m$i serving on 127.0.0.1:$port"
done
echo "etcdctl --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list"
