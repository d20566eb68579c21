"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008): the two arms take turns, the
arm that has placed fewer items picking next (a coin decides ties), each adding its best item
not yet placed. Each placed item remembers its team; a click credits that team, and a user
prefers the arm whose items they clicked more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recsys.experiments.assignment import unit_hash
from recsys.recommend.stages import Answer


@dataclass(frozen=True)
class Interleaved:
    items: list[str]
    teams: list[str]  # "control" or "challenger", one per item


def team_draft(
    control: Sequence[str], challenger: Sequence[str], k: int, coin_key: str
) -> Interleaved:
    """``k`` items from both lists (fewer where both run out). ``coin_key`` seeds the coin
    flips (e.g. experiment, user and request): the same key gives the same list."""
    lists = {"control": list(control), "challenger": list(challenger)}
    cursor = dict.fromkeys(lists, 0)
    placed = dict.fromkeys(lists, 0)
    out = Interleaved([], [])
    taken: set[str] = set()

    def next_item(team: str) -> str | None:
        ranked = lists[team]
        while cursor[team] < len(ranked) and ranked[cursor[team]] in taken:
            cursor[team] += 1
        return ranked[cursor[team]] if cursor[team] < len(ranked) else None

    while len(out.items) < k:
        if placed["control"] == placed["challenger"]:
            heads = unit_hash(coin_key, str(len(out.items))) < 0.5
            team = "control" if heads else "challenger"
        else:
            team = min(placed, key=placed.get)
        item = next_item(team)
        if item is None:  # this arm is spent: the other one fills the list
            team = "challenger" if team == "control" else "control"
            item = next_item(team)
            if item is None:
                break
        out.items.append(item)
        out.teams.append(team)
        taken.add(item)
        placed[team] += 1
    return out


def preference(teams: Sequence[str], clicked: Sequence[bool]) -> int:
    """+1 when the clicks credit the challenger more, -1 the control, 0 a tie or no click."""
    wins = {"control": 0, "challenger": 0}
    for team, click in zip(teams, clicked, strict=True):
        if click:
            wins[team] += 1
    return (wins["challenger"] > wins["control"]) - (wins["challenger"] < wins["control"])


def interleave_answers(
    control: Answer, challenger: Answer, k: int, coin_key: str
) -> tuple[Answer, list[str]]:
    """The team-draft mix of two arms' answers for one user: the items as their arm scored and
    explained them, ranked 1..k anew, and each item's team. Cold start only when both were."""
    mixed = team_draft(
        [r.item_id for r in control.items], [r.item_id for r in challenger.items], k, coin_key
    )
    by_arm = {
        "control": {r.item_id: r for r in control.items},
        "challenger": {r.item_id: r for r in challenger.items},
    }
    items = [
        by_arm[team][item].model_copy(update={"rank": n})
        for n, (item, team) in enumerate(zip(mixed.items, mixed.teams, strict=True), start=1)
    ]
    cold = control.cold_start and challenger.cold_start
    return Answer(control.user_id, items, cold, control.unknown_candidates), mixed.teams
