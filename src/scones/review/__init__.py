"""Human review of unsure predictions: a queue, labels, export for retraining, and the
champion/challenger comparison that decides whether a retrained model may be promoted.

- :mod:`scones.review.queue`: the review items and their label history (SQLite, in the
  executions database; images stay in their store and are referenced by key).
- :mod:`scones.review.sources`: items from threshold failures and from captured requests.
- :mod:`scones.review.export`: labelled items as a staged layout, or as extra training images.
- :mod:`scones.review.compare`: two models on the same split, with a paired test.
- :mod:`scones.review.api`: the JSON API and page that the dashboard mounts at ``/review``.
"""
