"""One feature service per model that reads features, named after the model."""

from feast import FeatureService
from feature_views import item_profile, item_stats, user_activity, user_profile

two_tower_v1 = FeatureService(
    name="two_tower_v1",
    features=[
        user_profile,
        user_activity[["last_items", "user_interactions"]],
        item_profile,
    ],
    description="User and item tower inputs.",
)

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[user_profile, user_activity, item_profile, item_stats],
    description="Everything the ranker and the serving path read for a user and candidates.",
)
