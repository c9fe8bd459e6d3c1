"""The echo benchmark's parts: a measurement harness, one module per design, stack checks
and the report. ``bench/bench_echo.py`` is the entry point that runs them."""
