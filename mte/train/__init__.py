"""Training: ``python -m mte.train`` — run orchestration, config checks, the DataModule and samplers, callbacks,
baselines and loggers."""

# model.name values that are closed-form baselines (mte/train/baselines.py): no network, loss, sampler or trainer.
# Here, not in baselines.py, so that the config checks can tell without importing torch.
BASELINES = ("random", "cca")
