"""The vectorised training engine: many candidates trained as one stacked network.

Executors reach it only through the evaluator capability ``batch_trainer()``
(:mod:`nasforge.train.evaluator`); :mod:`nasforge.engine.population` is the entry point.
"""
