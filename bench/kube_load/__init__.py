"""The parts of bench/kube_profile.py, a Kubernetes-shaped mixed load (see its docstring).

workload     the three streams: keys, rates at x1, the sustained criterion
wire         the requests' protobuf, hand-encoded, and its check against protobuf's own
h2client     the generator's own HTTP/2 gRPC client
aioclient    the same interface over grpc.aio (--client grpc)
clients      what both clients offer: Pool, call_once
generator    one generator process: the streams on their open-loop schedule
generator_procs  the generator processes, as the coordinator commands them
procfs       /proc readers: a process's own CPU, its children, a worker's --name
servers      the server processes and the builds they run
setups       the four setups (a)-(d)
stats        per-stream and per-step figures from the generators' tallies
coordinator  one setup run: start, prepare, the steps
report       the Markdown tables and the summary

The modules import etcd_side_by_side and kvstore as top-level modules: bench/kube_profile.py
puts bench/ and the repository on sys.path (and spawned generator processes inherit it).
"""
