"""The errors of etcd's lock and election servers, as etcd 3.4 returns them.

Those servers call their own KV through an in-process etcd client, which turns the KV's gRPC
statuses into plain errors: what reaches the caller is code UNKNOWN with the KV's message
(``etcdserver: requested lease not found``), as for the recipes' own errors (``election: not
leader``).
"""
from __future__ import annotations

import functools

from ... import errors


class MissingLeaderKey(errors.EtcdError):
    message = '"leader" field must be provided'  # v3election.ErrMissingLeaderKey


def as_client_errors(method):
    @functools.wraps(method)
    async def call(self, request):
        try:
            return await method(self, request)
        except errors.EtcdError as e:
            if e.code == errors.EtcdError.code:
                raise
            raise errors.EtcdError(e.message) from e

    return call
