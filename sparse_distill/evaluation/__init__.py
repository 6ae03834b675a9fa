"""Measuring models: quality metrics, speed timing, the baselines the student is held against,
and the reports of `sdistill eval` and `sdistill benchmark`. Built on inference and training;
the stages call it."""
