"""Our HTTP/2 server transport."""
