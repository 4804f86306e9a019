"""Analysis: evaluation tables, area change, figures, report."""
