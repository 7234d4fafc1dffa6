"""The harness, in two packages with one job each and the command line on top.

* ``benchmark.running``: what a sweep runs and where (spec, cells, executors, the store, provenance, pre-emption,
  verify, the pretraining stage, progress). It produces every stored number.
* ``benchmark.analysis``: what the results say (intervals, comparisons, tables, plots, the report in Markdown,
  LaTeX and HTML), computed when a run directory is read.
* ``benchmark.cli``: ``rsbench``, which calls both.

Imports point down: cli -> analysis -> running (analysis reads only what a run directory holds); the layers
below are tasks, then rsdatasets and backbones, then rsbench (``tests/test_layers.py``).
"""
