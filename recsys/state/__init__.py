"""The user's state, below the models and the feature store: what is known of a user (the
seen set, the recent window, the activity counts) and of the items, folded from events by one
function each, offline (from the training interactions) and online (the event path) alike.

``user`` (:class:`~recsys.state.user.UserState`, the state table, the fold of one event),
``activity`` (the user's counts and genre shares), ``items`` (the items' counts), ``offline``
(states and the items' context from interactions). Nothing here imports Feast.
"""
