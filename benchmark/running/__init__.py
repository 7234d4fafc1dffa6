"""Running: what a sweep runs, where, and what it keeps. Everything that produces a result lives here.

``spec`` (the sweep spec) -> ``cells`` (each cell expanded and hashed once) -> ``sweep`` (the pretraining stage,
then the pending cells through an ``executors`` entry: inline, worker processes, Slurm) -> ``cell_runner`` (one
cell's data, plan and training) -> ``rows`` + ``tilestats`` into the ``store``, all under a ``rundir``.
``provenance`` (code fingerprint, hashes, environment), ``preemption`` (SIGTERM), ``verify`` (is a store whole),
``progress`` (the plan and the live display), ``splits`` (label subsets), ``pretrain`` + ``pretrain_stage``
(the pretraining runner and the sweep's first stage).

May import ``tasks``, ``rsdatasets``, ``backbones`` and ``rsbench``; never ``benchmark.analysis`` or the CLI:
a sweep hands its rows to whatever summary its caller passes in. Only ``spec``, ``cells``, ``cell_runner``,
``rows`` and ``splits`` decide what a row stores (``provenance.RESULT_CODE``: a change there makes stored cells
stale).
"""
