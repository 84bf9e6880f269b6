# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
DATA_DIR ?= ./default.kvstore
LISTEN ?= http://127.0.0.1:2379

.PHONY: serve test install install-test

serve: install
	$(PYTHON) -m kvstore serve --data-dir $(DATA_DIR) --listen-client-urls $(LISTEN) --advertise-client-urls $(LISTEN)

# The whole suite on kvstore's HTTP/2 transport with the compiled hot paths; again on grpcio
# (the tests of members on NATS JetStream do not depend on the transport: once is enough); then
# the in-process tests on their pure-Python twins (KVSTORE_NO_EXT=1).
test: install-test
	KVSTORE_TEST_TRANSPORT=h2 $(PYTHON) -m pytest -q
	KVSTORE_TEST_TRANSPORT=grpcio $(PYTHON) -m pytest -q -m "not jetstream"
	KVSTORE_NO_EXT=1 $(PYTHON) -m pytest -q -m inprocess

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m pip install -q -e '.[test]'
