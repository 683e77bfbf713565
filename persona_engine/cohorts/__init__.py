"""Cohorts: groups of respondents who answer alike, and what sets them apart.

``kmeans``      :class:`CohortFinder`: k-means cohorts in the embedding space,
                k chosen by stability (the paper: k-means, k = 6 by the elbow)
``partition``   a partition's centroids, small-cohort merging, inertia and BIC
``space``       where cohorts are found: the embedding space or the answers
``stability``   do the same cohorts come back on other seeds and resamples?
``profiles``    who is in each cohort and how it answers (sizes, answer shares, metadata)
``distinctive`` what sets each cohort apart, and what every cohort agrees on (Polis)
``naming``      each cohort's name and one-sentence summary
``statistics``  survey weights, answer tallies, Wilson intervals and Polis's z-tests
``selections``  any group of respondents picked on the map against everyone
"""
