"""Benchmarks (``make bench``): speed, memory and model-quality figures, never in the tests.

Each ``benchmarks/bench_<name>.py`` module defines ``main(out_dir: pathlib.Path) -> dict`` that
measures ours against a baseline in the same run (ratios, because machines are shared and noisy),
writes ``out_dir/<name>.json`` (and a ``.md`` table where useful) and returns the figures.
"""
