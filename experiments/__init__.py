"""The torch side: optimizers (experiments.optim), data, models and the training harness."""
