"""What serves a trained student: the featuriser, the network, the student directory (load,
predict, shrink, export, model card) and the predictors that need no torch.

Nothing here imports training, teacher, evaluation, stage or CLI code, nor yaml, transformers,
datasets or scikit-learn (scikit-learn only for a vocabulary with a non-default token pattern):
a service that predicts ships this package alone. `tests/test_layers.py` checks both.
"""
