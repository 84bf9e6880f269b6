# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
DATA_DIR ?= ./default.kvstore
LISTEN ?= http://127.0.0.1:2379

.PHONY: serve test install install-test

serve: install
	$(PYTHON) -m kvstore serve --data-dir $(DATA_DIR) --listen-client-urls $(LISTEN) --advertise-client-urls $(LISTEN)

# The whole suite on each server transport (kvstore's HTTP/2, then grpcio), with the compiled
# hot paths; then the in-process tests again on their pure-Python twins (KVSTORE_NO_EXT=1).
test: install-test
	KVSTORE_TEST_TRANSPORT=h2 $(PYTHON) -m pytest -q
	KVSTORE_TEST_TRANSPORT=grpcio $(PYTHON) -m pytest -q
	KVSTORE_NO_EXT=1 $(PYTHON) -m pytest -q tests/test_mvcc.py tests/test_store.py tests/test_ext_twins.py tests/test_hpack.py tests/test_frame_reader.py tests/test_watch_hub.py

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m pip install -q -e '.[test]'
