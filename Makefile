.PHONY: demo test bench lint

demo:  ## set up and run the console with a simulated incident
	./scripts/demo.sh

test:  ## set up and run the whole suite (embedded default, then PostgreSQL + Redis)
	./scripts/test.sh

bench:  ## measure the frame path against a real daphne
	./scripts/bench.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
