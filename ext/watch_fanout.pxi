# A watcher, and the live delivery of one change to the watchers of its key (included by
# mvcc_core.pyx, after kv_wire.pxi). Twin: kvstore/mvcc/watch_fanout.py, whose docstrings say
# what they do.


cdef class Watcher:
    cdef public long long id
    cdef public bytes key
    cdef public object end
    cdef public long long min_rev
    cdef public bint no_put, no_delete, prev_kv
    cdef public object sink
    cdef public bint synced, removed, sent
    cdef public object data

    def __init__(self, long long watch_id, bytes key, end, long long start_rev, sink,
                 bint no_put=False, bint no_delete=False, bint prev_kv=False):
        self.id = watch_id
        self.key = key
        self.end = end
        self.min_rev = start_rev
        self.no_put = no_put
        self.no_delete = no_delete
        self.prev_kv = prev_kv
        self.sink = sink
        self.synced = False
        self.removed = False
        self.sent = False
        self.data = None

    def covers(self, bytes key):
        end = self.end
        if end is None:
            return key == self.key
        return key >= self.key and (end == b"" or key < end)

    def wants(self, KeyValue kv):
        return not (self.no_delete if kv.version == 0 else self.no_put)


cdef bytes _one_event_response(bytes header, long long watch_id, bytes ev):
    """WatchResponse{header, watch_id, events: [ev]}: watch_response with one event."""
    cdef Py_ssize_t hn = len(header), en = len(ev)
    cdef bytes out = PyBytes_FromStringAndSize(
        NULL, _len_field_size(hn) + _int_field_size(watch_id) + _len_field_size(en))
    cdef char* p = PyBytes_AS_STRING(out)
    p = _put_message_field(p, 0x0A, PyBytes_AS_STRING(header), hn)
    p = _put_int_field(p, 0x10, watch_id)
    _put_message_field(p, 0x5A, PyBytes_AS_STRING(ev), en)
    return out


def deliver_change(watchers, long long rev, KeyValue kv, prev, bytes header,
                   Py_ssize_t max_queued):
    cdef bint deleted = kv.version == 0
    cdef bytes plain = None, with_prev = None, ev
    cdef list behind = None
    cdef object sink, queue
    cdef Watcher w
    for w in watchers:
        if (w.no_delete if deleted else w.no_put) or rev < w.min_rev:
            continue
        sink = w.sink
        if sink.closed:
            w.min_rev = rev + 1  # a closed stream drops everything
            continue
        queue = sink.queue
        if len(queue) >= max_queued:
            if behind is None:
                behind = []
            behind.append(w)
            continue
        if w.prev_kv and prev is not None:
            if with_prev is None:
                with_prev = event(kv, prev)
            ev = with_prev
        else:
            if plain is None:
                plain = event(kv, None)
            ev = plain
        queue.append(_one_event_response(header, w.id, ev))
        w.min_rev = rev + 1
        w.sent = True
        if not sink.woken:
            sink.wake()
    return behind
