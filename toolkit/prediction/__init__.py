"""Predicting a board's costs: hardware embeddings, the predictor, its evaluation, calibration and the device model."""
