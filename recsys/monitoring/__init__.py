"""Monitoring: the prediction and feedback logs, Evidently reports and the retrain decision."""
