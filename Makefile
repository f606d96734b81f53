# Developer commands. `make ci` runs what CI runs (.ci/run), in the same order.
.PHONY: ci check format-check lint typecheck format test snapshots docs

ci:  ## install, format check, lint, type check, tests: exactly .ci/run
	.ci/run

check: format-check lint typecheck  ## the code checks of CI, without installing or testing

format-check:
	ruff format --check .

lint:
	ruff check .

typecheck:
	mypy

format:  ## rewrite: format and apply ruff's safe fixes
	ruff format .
	ruff check --fix .

test:
	python -m pytest -n 2

snapshots:  ## regenerate the message snapshots in tests/snapshots/ (review the diff before committing)
	python -m pytest -q tests/test_messages.py --update-snapshots

docs:  ## regenerate docs/rules from the rule docstrings
	python -m tflint_grad.docs
