# cython: language_level=3
"""The write-ahead file's appends on a thread that never takes the GIL (pure twin:
kvstore/log/wal_writer.py).

An append is one pwrite and one fdatasync. Run on a Python thread, each of those system calls
gives the GIL back and takes it again on return, while the event loop's thread holds it for
most of the time: on one core every append then cost a few extra context switches and futex
calls (a profile of put at 16 clients: about a tenth of the server's CPU in the scheduler). Here
the thread is plain C: the event loop hands it one write at a time, and hears it is done
through an eventfd it watches like a socket.

The thread runs as SCHED_BATCH: when the disk wakes it (a sync has finished) it does not
preempt the event loop's thread, it runs when that one waits (for the network, or at the next
tick). Woken with the ordinary policy, it preempted the loop at every step of every sync: with
the server on one core, 19,000 involuntary context switches of the loop's thread in 40,000
puts at 16 clients, against 200 as SCHED_BATCH, and about a tenth more puts per CPU-second.

One write in flight at a time (the log takes one append at a time): ``submit`` while one is in
flight is a RuntimeError.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t*, const void*, void* (*)(void*) noexcept nogil, void*)
    int pthread_join(pthread_t, void**)
    int pthread_mutex_init(pthread_mutex_t*, const void*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)
    int pthread_cond_init(pthread_cond_t*, const void*)
    int pthread_cond_destroy(pthread_cond_t*)
    int pthread_cond_wait(pthread_cond_t*, pthread_mutex_t*)
    int pthread_cond_signal(pthread_cond_t*)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t*)
    int pthread_sigmask(int, const sigset_t*, sigset_t*)
    int SIG_SETMASK

cdef extern from "<sched.h>" nogil:
    struct sched_param:
        int sched_priority
    int sched_setscheduler(int, int, const sched_param*)
    int SCHED_BATCH

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int, int)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int, timespec*)
    int CLOCK_MONOTONIC

cdef extern from "<unistd.h>" nogil:
    ssize_t pwrite(int, const void*, size_t, long)
    ssize_t write(int, const void*, size_t)
    ssize_t read(int, void*, size_t)
    int fdatasync(int)
    int close(int)

# What failed, in a result: nothing; the write (nothing written, errno says why); the write cut
# short (what it wrote of the header is zeroed again); the sync (or the zeroing).
cdef enum:
    _OK = 0
    _WRITE_FAILED = 1
    _WRITE_SHORT = 2
    _SYNC_FAILED = 3
OK = _OK
WRITE_FAILED = _WRITE_FAILED
WRITE_SHORT = _WRITE_SHORT
SYNC_FAILED = _SYNC_FAILED
# Bytes zeroed at the start of a record cut short: its header (crc, length, index).
cdef Py_ssize_t HEADER_BYTES = 16


cdef struct Shared:
    pthread_mutex_t lock
    pthread_cond_t wake
    int event_fd
    bint stop
    bint has_job
    # the job
    int fd
    const char* data
    Py_ssize_t size
    int64_t offset
    # its result
    int outcome
    int err
    double seconds


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef ssize_t _pwrite(int fd, const char* data, Py_ssize_t size, int64_t offset) noexcept nogil:
    cdef ssize_t n
    while True:
        n = pwrite(fd, data, size, offset)
        if n >= 0 or errno != EINTR:
            return n


cdef void _run_job(Shared* s) noexcept nogil:
    cdef char zeros[16]
    cdef ssize_t n
    cdef double began = _now()
    s.outcome = _OK
    s.err = 0
    n = _pwrite(s.fd, s.data, s.size, s.offset)
    if n < 0:
        s.outcome = _WRITE_FAILED
        s.err = errno
    elif n != s.size:
        s.outcome = _WRITE_SHORT
        memset(zeros, 0, HEADER_BYTES)
        if _pwrite(s.fd, zeros, n if n < HEADER_BYTES else HEADER_BYTES, s.offset) < 0:
            s.outcome = _SYNC_FAILED
            s.err = errno
    else:
        while fdatasync(s.fd) != 0:
            if errno != EINTR:
                s.outcome = _SYNC_FAILED
                s.err = errno
                break
    s.seconds = _now() - began


cdef void* _thread(void* arg) noexcept nogil:
    cdef Shared* s = <Shared*>arg
    cdef sigset_t all_signals
    cdef uint64_t one = 1
    cdef sched_param param
    sigfillset(&all_signals)  # signals go to Python's threads, never interrupt a write here
    pthread_sigmask(SIG_SETMASK, &all_signals, NULL)
    param.sched_priority = 0
    sched_setscheduler(0, SCHED_BATCH, &param)  # see the module's docstring; a refusal is harmless
    pthread_mutex_lock(&s.lock)
    while True:
        while not s.has_job and not s.stop:
            pthread_cond_wait(&s.wake, &s.lock)
        if not s.has_job:
            break
        pthread_mutex_unlock(&s.lock)
        _run_job(s)
        pthread_mutex_lock(&s.lock)
        s.has_job = False
        while write(s.event_fd, &one, 8) < 0 and errno == EINTR:
            pass
    pthread_mutex_unlock(&s.lock)
    return NULL


cdef class WalWriter:
    """Writes and syncs one buffer at a time on its own thread (no GIL)."""
    cdef Shared* _s
    cdef pthread_t _thread
    cdef bint _inited  # the lock and condition exist
    cdef bint _started  # the thread runs
    cdef bint _in_flight
    cdef object _data  # the buffer being written: kept alive until its result is taken

    def __cinit__(self):
        cdef int rc
        self._s = <Shared*>calloc(1, sizeof(Shared))
        if self._s == NULL:
            raise MemoryError()
        self._s.event_fd = -1
        pthread_mutex_init(&self._s.lock, NULL)
        pthread_cond_init(&self._s.wake, NULL)
        self._inited = True
        self._s.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._s.event_fd < 0:
            raise OSError(errno, "eventfd")
        rc = pthread_create(&self._thread, NULL, _thread, self._s)
        if rc != 0:
            raise OSError(rc, "pthread_create")
        self._started = True

    def fileno(self) -> int:
        """Readable when a write's result is ready (an eventfd)."""
        return self._s.event_fd

    def submit(self, int fd, bytes data, long long offset) -> None:
        """Writes ``data`` at ``offset`` of ``fd`` and syncs it, on the thread."""
        if not self._started:
            raise RuntimeError("wal writer closed")
        if self._in_flight:
            raise RuntimeError("a write is in flight")
        self._data = data
        self._in_flight = True
        pthread_mutex_lock(&self._s.lock)
        self._s.fd = fd
        self._s.data = PyBytes_AS_STRING(data)
        self._s.size = PyBytes_GET_SIZE(data)
        self._s.offset = offset
        self._s.has_job = True
        pthread_cond_signal(&self._s.wake)
        pthread_mutex_unlock(&self._s.lock)

    def take(self):
        """The finished write's (outcome, errno, seconds), or None if it is not finished."""
        cdef uint64_t count
        cdef ssize_t n
        if not self._in_flight:
            return None
        n = read(self._s.event_fd, &count, 8)
        if n < 0:
            if errno == EAGAIN or errno == EINTR:
                return None
            raise OSError(errno, "eventfd read")
        pthread_mutex_lock(&self._s.lock)
        result = (self._s.outcome, self._s.err, self._s.seconds)
        pthread_mutex_unlock(&self._s.lock)
        self._in_flight = False
        self._data = None
        return result

    def close(self) -> None:
        """Finishes the write in flight, then stops the thread."""
        self._stop()

    cdef void _stop(self) noexcept:
        if self._started:
            with nogil:
                pthread_mutex_lock(&self._s.lock)
                self._s.stop = True
                pthread_cond_signal(&self._s.wake)
                pthread_mutex_unlock(&self._s.lock)
                pthread_join(self._thread, NULL)
            self._started = False
        if self._s.event_fd >= 0:
            close(self._s.event_fd)
            self._s.event_fd = -1

    def __dealloc__(self):
        if self._s == NULL:
            return
        self._stop()  # the buffer in flight (self._data) is released only after this
        if self._inited:
            pthread_cond_destroy(&self._s.wake)
            pthread_mutex_destroy(&self._s.lock)
        free(self._s)
        self._s = NULL
