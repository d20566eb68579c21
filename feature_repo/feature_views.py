"""Feature views: user profile and activity, item profile and sliding-window statistics."""

from datetime import timedelta

from data_sources import (
    item_profile_source,
    item_stats_source,
    user_activity_push,
    user_profile_source,
    user_state_push,
)
from entities import item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Int64, String

# ttl=0: a row stays valid until a newer one replaces it (profiles and running aggregates
# do not expire; the windowed counts carry their own decay rows).
FOREVER = timedelta(0)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=FOREVER,
    schema=[
        Field(name="age_bucket", dtype=Int64, description="0..6 over edges 18,25,35,45,50,56"),
        Field(name="gender", dtype=String),
        Field(name="occupation", dtype=String),
    ],
    source=user_profile_source,
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=FOREVER,
    schema=[
        Field(name="user_interactions", dtype=Int64),
        Field(name="user_ratings", dtype=Int64),
        Field(name="user_mean_rating", dtype=Float32),
        Field(name="genre_affinity", dtype=Array(Float32), description="share per genre"),
    ],
    source=user_activity_push,
)

# The user's state, one row per user (not per event): what recommendation reads online.
user_state = FeatureView(
    name="user_state",
    entities=[user],
    ttl=FOREVER,
    schema=[
        Field(name="seen_items", dtype=Array(String), description="every item, each once"),
        Field(name="recent_items", dtype=Array(String), description="latest first, window N"),
    ],
    source=user_state_push,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=FOREVER,
    schema=[
        Field(name="genres", dtype=Array(String)),
        Field(name="release_year", dtype=Int64),
    ],
    source=item_profile_source,
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=FOREVER,
    schema=[
        Field(name="item_interactions", dtype=Int64),
        Field(name="item_mean_rating", dtype=Float32),
        Field(name="popularity_7d", dtype=Int64, description="interactions in the last 7 days"),
        Field(name="popularity_30d", dtype=Int64),
    ],
    source=item_stats_source,
)
