"""An experiment's answers in the app: the user's arm (split) or both arms' lists interleaved
into one; the assignment and the mixing are :mod:`recsys.experiments`'."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from recsys.experiments.assignment import arm_of
from recsys.experiments.interleaving import interleave_answers
from recsys.experiments.spec import Experiment
from recsys.recommend.batch import Ask, Served
from serving.schemas import ExperimentArm, RecommendRequest

Run = Callable[[Ask], Awaitable[Served]]


async def serve(
    run: Run, version: str, experiment: Experiment | None, body: RecommendRequest, request_id: str
) -> tuple[str, Served, ExperimentArm | None]:
    """The answer to ``body`` through ``run`` (the app's stages): the served version's, or,
    within an experiment, the user's arm's (split), both arms' lists interleaved, or the
    control's (shadow: the challenger's answer is the Ingress's to mirror).

    Returns:
        (the version that served it, the answer, the experiment's part of the answer).
    """
    request = body.request()
    if experiment is None:
        return version, await run(Ask(version, body.user_id, request)), None
    if experiment.mode == "shadow":  # the user gets the control's; the app mirrors it
        served = await run(Ask(version, body.user_id, request))
        return version, served, ExperimentArm(name=experiment.name, arm="control")
    if experiment.mode == "split":
        arm = arm_of(experiment.name, body.user_id, experiment.share)
        version = experiment.challenger if arm == "challenger" else version
        served = await run(Ask(version, body.user_id, request))
        return version, served, ExperimentArm(name=experiment.name, arm=arm)
    control, challenger = await asyncio.gather(
        run(Ask(version, body.user_id, request)),
        run(Ask(experiment.challenger, body.user_id, request)),
    )
    served, teams = interleave(experiment, body, request_id, control, challenger)
    return version, served, ExperimentArm(name=experiment.name, arm="interleaved", teams=teams)


def interleave(
    experiment: Experiment,
    body: RecommendRequest,
    request_id: str,
    control: Served,
    challenger: Served,
) -> tuple[Served, list[str]]:
    """One answer from both arms' (team draft, the coin seeded by experiment, user and
    request); the control's candidates and scores stand for it in the prediction log, and the
    stage timings are the two arms' together (both ran for this answer)."""
    answer, teams = interleave_answers(
        control.answer, challenger.answer, body.k, f"{experiment.name}|{body.user_id}|{request_id}"
    )
    timings = {
        stage: control.timings.get(stage, 0.0) + challenger.timings.get(stage, 0.0)
        for stage in {**control.timings, **challenger.timings}
    }
    return Served(answer, control.candidates, control.scores, control.features, timings), teams
