"""One feature service per model that reads features, named after the model."""

from feast import FeatureService
from feature_views import item_profile, item_stats, user_activity, user_profile, user_state

two_tower_v1 = FeatureService(
    name="two_tower_v1",
    features=[user_profile, user_activity[["user_interactions"]], item_profile],
    description="User and item tower inputs.",
)

user_state_v1 = FeatureService(
    name="user_state_v1",
    features=[user_state],
    description="The user's seen set and recent window: read online by every recommendation.",
)

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[user_profile, user_activity, item_profile, item_stats],
    description="Everything the ranker and the serving path read for a user and candidates.",
)
