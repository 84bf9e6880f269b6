#!/usr/bin/env bash
# py-spy profile of a kvstore server under one of etcd's benchmark workloads, summarized as text.
#
#   bench/profile_server.sh [options]
#     --transport T     kvstore serve --transport (h2 | grpcio; default h2)
#     --workload W      put | range | txn-put | watch (default put); watch: 1,000 watchers on 10
#                       streams, 10 on each of 100 keys, while --clients put those keys (as
#                       etcd_side_by_side.py's --watch-streams 10 --watch-per-stream 100
#                       --watch-keys 100); raise --warmup past the watchers' creation
#     --clients N       benchmark --clients (default 64); --conns is N/4 as in etcd_side_by_side.py
#     --total N         requests the load generator sends (default 300000; it is stopped once the
#                       profile is taken, so make it long enough to outlast warmup + duration)
#     --duration S      py-spy record -d S (default 8)
#     --warmup S        seconds of load before sampling starts (default 2)
#     --rate HZ         py-spy samples per second (default 100)
#     --top N           frames per summary list (default 15)
#     --out DIR         keep the raw profile, speedscope file and summary here (default: a temp dir)
#     --benchmark-bin P etcd benchmark binary (default: ../shared/tools/build-etcd-benchmark.sh)
#     --no-pin          do not pin (default: server on CPU 0, load generator and py-spy on CPU 1)
#
# Starts `kvstore serve --log-backend lmdb` on a free 127.0.0.1 port with a fresh data dir, waits
# until it serves, seeds the range key if the workload is range, starts the load, waits --warmup
# seconds, then runs `py-spy record -p PID -d DURATION -f raw --nonblocking --threads` (folded
# stacks, one line per distinct stack with its sample count). Prints the top self-time and
# inclusive-time functions and lines (percent of all samples py-spy took of non-idle threads),
# the share of each thread, and the server CPU-seconds during the sampling window. Everything it
# started is stopped on exit (by pid). All traffic is on 127.0.0.1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
transport=h2 workload=put clients=64 total=300000 duration=8 warmup=2 rate=100 top=15
out="" bench_bin="" pin=1
while [ $# -gt 0 ]; do
  case $1 in
    --transport) transport=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --total) total=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --benchmark-bin) bench_bin=$2; shift 2 ;;
    --no-pin) pin=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
case $workload in put|range|txn-put|watch) ;; *) echo "--workload: put, range, txn-put or watch" >&2; exit 2 ;; esac
command -v py-spy >/dev/null || { echo "py-spy not found" >&2; exit 1; }
if [ -z "$bench_bin" ]; then
  bench_bin=$(bash "$repo/../shared/tools/build-etcd-benchmark.sh" | tail -n1)
fi
[ -x "$bench_bin" ] || { echo "no benchmark binary: $bench_bin" >&2; exit 1; }

work=$(mktemp -d /tmp/kvstore-profile-XXXXXX)
[ -n "$out" ] || out=$work/out
mkdir -p "$out"
on0=() on1=()
if [ "$pin" = 1 ]; then on0=(taskset -c 0); on1=(taskset -c 1); fi
for v in http_proxy https_proxy all_proxy grpc_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY GRPC_PROXY; do
  unset "$v"
done
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost GRPC_GO_LOG_SEVERITY_LEVEL=error

server_pid="" load_pid=""
cleanup() {
  # only the processes started here, by pid (each leads its own process group)
  [ -n "$load_pid" ] && kill -KILL -- "-$load_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work/data"
  [ "$out" = "$work/out" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
server_cmd=("${on0[@]}" python3 -m kvstore serve --name bench --data-dir "$work/data"
            --listen-client-urls "$url" --advertise-client-urls "$url" --log-backend lmdb
            --transport "$transport")
echo "server: ${server_cmd[*]}" >&2
(cd "$repo" && PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec setsid "${server_cmd[@]}" \
   >"$out/server.log" 2>&1 </dev/null) &
server_pid=$!

bench() {  # bench CLIENTS CONNS SUBCOMMAND... (bounded)
  local c=$1 n=$2; shift 2
  timeout 120 "${on1[@]}" "$bench_bin" --endpoints="127.0.0.1:$port" --conns="$n" --clients="$c" \
    --precise "$@"
}
ready=0
for _ in $(seq 150); do
  kill -0 "$server_pid" 2>/dev/null || { echo "server exited:" >&2; tail -n 30 "$out/server.log" >&2; exit 1; }
  if bench 1 1 range bench-ready-probe --total=1 >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ "$ready" = 1 ] || { echo "server not serving after 30s" >&2; tail -n 30 "$out/server.log" >&2; exit 1; }
echo "server pid $server_pid serving on 127.0.0.1:$port" >&2

conns=$(( clients / 4 > 0 ? clients / 4 : 1 ))
case $workload in
  put) sub=(put --key-size=8 --val-size=256 --total="$total" --sequential-keys=false --key-space-size=100000) ;;
  txn-put) sub=(txn-put --total="$total" --key-size=8 --val-size=256 --key-space-size=100000) ;;
  range)
    bench 16 4 put --key-size=1 --val-size=256 --sequential-keys --key-space-size=64 --total=64 >/dev/null 2>&1
    bench 16 4 put --key-size=8 --val-size=256 --sequential-keys --key-space-size=10000 --total=10000 >/dev/null 2>&1
    sub=(range r --total="$total" --consistency=s) ;;
  watch) sub=(watch --streams=10 --watch-per-stream=100 --watched-key-total=100 --sequential-keys
              --key-space-size=100 --put-total="$total" --put-rate=1000000000) ;;
esac
load_cmd=("${on1[@]}" "$bench_bin" --endpoints="127.0.0.1:$port" --conns="$conns" --clients="$clients" --precise "${sub[@]}")
echo "load: ${load_cmd[*]}" >&2
setsid "${load_cmd[@]}" >"$out/load.out" 2>"$out/load.err" </dev/null &
load_pid=$!

cpu_s() {  # utime+stime of the server process (all its threads), seconds
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / tck }' "/proc/$server_pid/stat"
}
sleep "$warmup"
kill -0 "$load_pid" 2>/dev/null || { echo "load generator ended during warmup (raise --total)" >&2; cat "$out/load.err" >&2; exit 1; }
cpu0=$(cpu_s); t0=$(date +%s.%N)
spy_cmd=("${on1[@]}" py-spy record -p "$server_pid" -d "$duration" -r "$rate" -f raw -o "$out/profile.raw" --nonblocking --threads)
echo "profile: ${spy_cmd[*]}" >&2
timeout $(( duration + 60 )) "${spy_cmd[@]}" >"$out/py-spy.log" 2>&1 || { cat "$out/py-spy.log" >&2; exit 1; }
cpu1=$(cpu_s); t1=$(date +%s.%N)
still_loaded=yes
kill -0 "$load_pid" 2>/dev/null || still_loaded="NO (the load ended before sampling did: raise --total)"
kill -KILL -- "-$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
grep -v '^INFO:' "$out/load.err" | grep -v '^\s*$' | head -n 20 >&2 || true

{
  echo "kvstore $transport, workload $workload, clients $clients (conns $conns), pin=$([ "$pin" = 1 ] && echo on || echo off)"
  echo "kvstore git: $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- kvstore 2>/dev/null || echo ' (kvstore/ modified)')"
  grep -h 'Samples:' "$out/py-spy.log" | sed 's/^py-spy> //'
  python3 - "$cpu0" "$cpu1" "$t0" "$t1" "$still_loaded" <<'EOF'
import sys
cpu0, cpu1, t0, t1 = map(float, sys.argv[1:5])
print(f"server CPU during sampling: {cpu1 - cpu0:.2f} s over {t1 - t0:.2f} s wall "
      f"({(cpu1 - cpu0) / (t1 - t0):.0%} of one core); load still running at the end: {sys.argv[5]}")
EOF
  python3 - "$out/profile.raw" "$top" <<'EOF'
import re, sys
from collections import Counter

path, top = sys.argv[1], int(sys.argv[2])
FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# entry frames on (nearly) every stack of their thread: left out of the inclusive list
ENTRY = {"<module> (kvstore/__main__.py)", "_run_module_as_main (<frozen runpy>)",
         "_run_code (<frozen runpy>)", "main (kvstore/server/cli.py)",
         "run (uvloop/__init__.py)", "run (asyncio/runners.py)",
         "Thread._bootstrap (threading.py)", "Thread._bootstrap_inner (threading.py)",
         "Thread.run (threading.py)", "_worker (concurrent/futures/thread.py)"}

def func(frame: str) -> str:  # "name (file:line)" -> "name (file)": aggregate by function
    m = FRAME.match(frame)
    return f"{m['fn']} ({m['file']})" if m else frame

self_t, incl, threads, lines_self = Counter(), Counter(), Counter(), Counter()
total = 0
with open(path) as f:
    for line in f:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = stack.split(";")
        thread, frames = (frames[0], frames[1:]) if frames[0].startswith("thread (") else ("?", frames)
        total += n
        threads[re.sub(r"^thread \(\d+\): ", "", thread)] += n
        if not frames:
            continue
        self_t[func(frames[-1])] += n
        lines_self[frames[-1]] += n
        for fn in set(map(func, frames)):
            incl[fn] += n

def show(title, counter):
    print(f"\n{title}")
    print(f"{'%':>6}  {'samples':>7}  frame")
    for fn, n in counter.most_common(top):
        print(f"{100 * n / total:5.1f}%  {n:7d}  {fn}")

print(f"\n{total} samples of non-idle threads (py-spy skips idle ones); percentages are of these")
print("threads: " + ", ".join(f"{t} {100 * n / total:.1f}%" for t, n in threads.most_common()))
show(f"top {top} by self time (function; the sampled leaf frame)", self_t)
show(f"top {top} by inclusive time (function anywhere on the stack, once per sample; entry "
     f"frames left out: {', '.join(sorted(f for f in ENTRY if f in incl))})",
     Counter({f: n for f, n in incl.items() if f not in ENTRY}))
show(f"top {top} by self time (line)", lines_self)
print("\nReading it: py-spy sees Python frames only. Self time on Runner.run (asyncio/runners.py) is "
      "the event loop's own native code (uvloop, in C: polling, socket reads and writes, callback "
      "dispatch) below run_until_complete. Time inside a C extension (LMDB, msgpack, the Cython "
      "modules) is self time of the Python function that called it. Coroutines stepped by the "
      "loop (asyncio tasks) have no Python caller, so their stacks start at the coroutine.")
EOF
} | tee "$out/summary.txt"
echo "raw profile: $out/profile.raw; summary: $out/summary.txt" >&2
