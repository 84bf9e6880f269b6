"""Transports: how request bytes reach the services. Only this package knows gRPC libraries."""
