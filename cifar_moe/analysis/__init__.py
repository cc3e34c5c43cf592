"""What a trained network did: routing analytics, per-class metrics, evaluation and plots."""
