"""The shared log on NATS JetStream (log.py), and what the members of a cluster do through NATS
besides it (cluster.py)."""
