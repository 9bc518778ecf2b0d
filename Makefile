# The two newcomer commands (see README): `make demo` and `make test`.
.PHONY: setup demo test lint docs bench bench-scale bench-shards bench-translate bench-write bench-formats train-default

setup: .venv/.ragline-installed

# everything (every extra, Ray, the test and benchmark tools, Chromium); it holds the demo's too
.venv/.ragline-installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@ .venv/.ragline-demo

# what the demo needs only: ragline[demo]
.venv/.ragline-demo: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh demo
	touch $@

demo: .venv/.ragline-demo
	rm -rf .ragline-demo
	.venv/bin/ragline index examples/docs --index .ragline-demo
	.venv/bin/ragline ask .ragline-demo "When was the Eiffel Tower completed?"
	.venv/bin/ragline ask .ragline-demo "今天看到的长城大部分是哪个朝代修建的？"

test: setup
	.venv/bin/python -m pytest
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/mypy src
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

# the documentation site (docs/, mkdocs-material) into .site/; the reference pages are made from
# the code by scripts/docs_reference.py (tests/test_docs.py fails when they are stale)
docs: setup
	.venv/bin/python scripts/docs_reference.py
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

lint: setup
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/mypy src

bench: setup
	.venv/bin/python bench/run.py
	.venv/bin/python bench/retrieval.py --only bm25

# one machine, a million passages: ingestion vs the bare encoder, a 1M index, search and updates
bench-scale: setup
	.venv/bin/python bench/scale.py

# beyond one machine: ingestion on Ray, search in 1/2/4 shards at 100k and 1M (≈ 40 min)
bench-shards: setup
	.venv/bin/python bench/shards.py --keep

# retrieval-augmented translation vs none, from Debian's git/coreutils catalogs (≈ 25 min)
bench-translate: setup
	.venv/bin/python bench/translate.py

# grounded writing: Jeopardy-style question generation on SQuAD, write's faithfulness
bench-write: setup
	.venv/bin/python bench/write.py

# every file type: OCR engines, scanned PDFs, PDF tables, a mixed folder, peak memory on large
# files, /usr/share/doc (≈ 45 min; tesseract is compared when installed)
bench-formats: setup
	.venv/bin/python bench/formats.py

# fine-tune the default RAG model (LoRA, SQuAD + CMRC part A); resumable, hours on 2 CPU cores
train-default: setup
	.venv/bin/python bench/train_default.py --ship
