"""kvstore's own etcd client over kvstore's HTTP/2 (kvstore.h2), no grpc: unary KV, Lease,
Cluster and Maintenance calls, Watch and LeaseKeepAlive streams, RangeStream (with a paged
Range fallback), and Channel.call, a callback API for load generation."""
from .client import Client, connect
from .connection import Channel, open_channel
from .credentials import Credentials, CredentialsError, credentials
from .lease_keep_alive import LeaseKeepAliveStream
from .status import GrpcError
from .stream import StreamingCall
from .tls import TLSConfig
from .watch import WatchStream

__all__ = ["Channel", "Client", "Credentials", "CredentialsError", "GrpcError",
           "LeaseKeepAliveStream", "StreamingCall", "TLSConfig", "WatchStream", "connect",
           "credentials", "open_channel"]
