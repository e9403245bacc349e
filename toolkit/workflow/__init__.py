"""The jobs a user runs: profiling, exporting, training, validating a new board, verified selection."""
