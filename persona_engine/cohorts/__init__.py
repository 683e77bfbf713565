"""Cohorts: groups of respondents who answer alike, and what sets them apart.

``kmeans``      :class:`CohortFinder`: k-means cohorts in the embedding space,
                k chosen by stability (the paper: k-means, k = 6 by the elbow)
``space``       where cohorts are found: the embedding space or the answers
``stability``   do the same cohorts come back on other seeds and resamples?
``profiles``    who is in each cohort, its distinctive and consensus answers, names
``selections``  any group of respondents picked on the map against everyone
"""
