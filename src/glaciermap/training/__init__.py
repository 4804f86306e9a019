"""Training: the Lightning task, losses, and the fold x sensor set x model runner."""
