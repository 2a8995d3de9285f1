"""Seed re-runs queued on the storage, when the policy says they are due (search.policy.seeds).

`refill` is the hook storage.trials.claim calls under the study lock when a study has nothing left
to claim: it asks search.policy.seeds.reruns_due, and enqueues what it returns, once.
"""

from __future__ import annotations

import optuna

from search.campaign.config import CampaignConfig
from search.campaign.roles import NOISE_OF
from search.policy.claims import unclaimed
from search.policy.seeds import reruns_due
from storage.queries import StudyCounts
from storage.trials import Refill

TAG = NOISE_OF
"""The user attr the claim counts re-runs by (StudyCounts.tagged)."""


def refill(study: optuna.Study, campaign: CampaignConfig, stage: str) -> Refill:
    """For storage.trials.claim: when the study has nothing left to claim, queue the re-runs of
    its best config (once), and say whether it did. Runs under the study lock."""
    def fill(counts: StudyCounts) -> bool:
        if not campaign.noise_seeds:
            return False
        due = reruns_due(study.get_trials(deepcopy=False), campaign.noise_seeds, stage, counts.waiting,
                         counts.running, counts.tagged, unclaimed(stage, counts.budget, counts.originals),
                         campaign.noise_rule)
        for params, attrs in due:
            study.enqueue_trial(params, user_attrs=attrs)
        return bool(due)

    return fill
