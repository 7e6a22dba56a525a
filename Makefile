# Everyday commands; each sets up .venv first when needed.
.PHONY: setup demo test test-slow lint bench contract

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

test-slow:
	bash scripts/test.sh -m slow

lint: setup
	.venv/bin/ruff check src tests benchmarks

bench: setup
	.venv/bin/python benchmarks/short_runs.py --task mrpc trec

contract: setup
	../shared/checks/cli-contract
