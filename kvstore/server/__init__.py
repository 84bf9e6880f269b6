"""The network server: etcd's gRPC services over a transport, and the `kvstore` command."""
