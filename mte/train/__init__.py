"""Training: ``python -m mte.train`` (run orchestration, callbacks, baselines, loggers, optimisers)."""
