"""Training: ``python -m mte.train`` — run orchestration, config checks, the DataModule and samplers, callbacks,
baselines and loggers."""
