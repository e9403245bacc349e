"""Data the toolkit reads: benchmark tables, image datasets, imported measurements, benchmark tasks, replay tables."""
