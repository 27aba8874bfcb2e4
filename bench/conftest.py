"""Keep pytest out of bench/: benchmarks are run by bench/run.py, never by the test suite."""

collect_ignore_glob = ["*"]
