"""Evaluation: protocols, album pooling, ranking, metrics, bootstrap, the results format and reports."""
