"""Runner metrics: the per-runner stores, what runners write into them, and the metric events."""
