"""Evaluation: one core shared by the training callback, ``python -m mte.evaluate``, the baselines and the report.

* ``ranking``    — the one ranking kernel (rank of the first relevant item, AP@K; exact, pessimistic ties, chunked)
* ``bootstrap``  — percentile intervals resampling clusters (albums), not reviews as if independent
* ``metrics``    — per-query values → ``{stage}/{direction}/{metric}`` aggregates, intervals and counts
* ``protocols``  — which reviews query, album pooling, the album/track/seed protocols, ``evaluate_embeddings``
* ``evaluation`` — a checkpoint and a processed (or other MARD) dir → an EvalSet → ``metrics.json`` / ``metrics.md``
* ``results``    — the ``metrics.json`` format (kind run | evaluation | baseline), the atomic writer, the summary table
* ``runs``, ``figures``, ``report`` — ``python -m mte.report``: read runs (evaluations under their run), plot, write

Imports go one way, ranking → bootstrap → metrics → protocols → evaluation; nothing here imports ``mte.train``.
"""
