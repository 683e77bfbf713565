"""Data-driven personas: one vector per respondent by collaborative filtering of their answers.

``factorization``  the matrix factorizations: :class:`PaperFactorization` (Li et
                   al.'s MSE on answers scaled to [0, 1]) and
                   :class:`SoftmaxFactorization` (the default: one logit per option)
``fitting``        how they are fitted (Adam on the observed answers), the
                   regularisation choice, and fold-in: :func:`fold_in` places new
                   respondents with the question vectors frozen
"""
