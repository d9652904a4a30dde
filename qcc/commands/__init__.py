"""The commands qcc's command line runs, one module each: compile.py (`qcc compile`), verify.py and
layer_verify.py (`qcc verify`, `--layers`), explain.py (`qcc explain`), inspection.py
(`qcc inspect`), bench.py (`qcc bench`), and support_table.py (the README's op table). They sit
above the pipeline and the backend; qcc.cli imports each when it runs."""
