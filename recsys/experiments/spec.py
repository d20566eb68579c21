"""An experiment as it crosses a boundary (CLI, the Serve app's ``user_config``, the registry):
a name, the control and challenger versions, a mode and the challenger's share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import Strict

MODES = ("split", "interleave", "shadow")
ARMS = ("control", "challenger")


class Experiment(Strict):
    """One experiment between two model versions.

    - ``split``: a user sees one arm's lists, the challenger's with probability ``share``.
    - ``interleave``: every answer interleaves both arms' lists (team draft); ``share`` is not
      used (every user is in both arms).
    - ``shadow``: the control answers; the challenger answers ``share`` of the requests in the
      background, logged, never returned.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    control: str = Field(min_length=1)
    challenger: str = Field(min_length=1)
    mode: Literal["split", "interleave", "shadow"] = "split"
    share: float = Field(0.5, gt=0.0, le=1.0)
    metric: Literal["ctr", "ndcg_at_10", "hit_at_10"] = "ctr"
    min_users: int = Field(200, ge=2, description="per arm, before any decision")
    alpha: float = Field(0.05, gt=0.0, lt=0.5)

    @model_validator(mode="after")
    def _two_versions(self) -> Experiment:
        if self.control == self.challenger:
            raise ValueError(
                f"control and challenger are both {self.control!r}: an experiment compares two "
                "versions"
            )
        if self.mode == "split" and self.share == 1.0:
            raise ValueError("share=1.0 leaves the control no users: use a share below 1")
        return self

    def serves_challenger(self) -> bool:
        """Whether users get the challenger's items (a split or interleaving); a shadow's
        answers are only logged."""
        return self.mode != "shadow"

    def expected_shares(self) -> dict[str, float]:
        """Each arm's expected share of users (what the sample-ratio check tests against)."""
        if self.mode == "split":
            return {"control": 1.0 - self.share, "challenger": self.share}
        return {"control": 0.5, "challenger": 0.5}
