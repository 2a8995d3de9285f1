"""The campaign's decisions (search/policy/) on plain records: no database, no torch."""

from __future__ import annotations

from optuna.trial import TrialState

from search.campaign.roles import NOISE_OF, NOISE_SEED, PROMOTED_FROM_TRIAL
from search.policy.claims import Counts, claim_order, unclaimed
from search.policy.promotion import picks, ranked_distinct
from search.policy.records import Record
from search.policy.seeds import Band, band, noise_target, pending, reruns_due
from search.policy.stages import best_complete, stage_ended, stage_progress

C, R, W, P = TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED


def rec(number: int, state: TrialState = C, value: float | None = None, lr: float | None = None, **attrs: object) -> Record:
    return Record(number, state, value, {"lr": lr if lr is not None else 0.001 * (number + 1)}, dict(attrs))


def test_claim_order_full_first_then_retries_then_most_unclaimed_then_the_rest() -> None:
    four = ["baseline", "resnet_lite", "residual", "attention"]
    served = [(v, s) for v in four for s in ("quick", "full")]
    counts = {key: Counts(0, 0) for key in served}
    counts["baseline", "quick"] = Counts(0, 1)
    counts["resnet_lite", "quick"] = Counts(1, 0)  # a retry waits
    counts["residual", "quick"] = Counts(0, 3)
    counts["attention", "quick"] = Counts(0, 2)
    counts["residual", "full"] = Counts(1, 0)  # a promoted config waits
    assert claim_order(served, counts) == [
        ("residual", "full"), ("resnet_lite", "quick"), ("residual", "quick"), ("attention", "quick"),
        ("baseline", "quick"), ("baseline", "full"), ("resnet_lite", "full"), ("attention", "full")]


def test_unclaimed_counts_only_a_quick_budget() -> None:
    assert unclaimed("quick", 5, 3) == 2
    assert unclaimed("quick", 5, 7) == 0
    assert unclaimed("full", 5, 0) == 0
    assert unclaimed("quick", None, 0) == 0


def test_the_best_is_never_a_seed_rerun() -> None:
    trials = [rec(0, value=17.0), rec(1, value=16.0), rec(2, value=18.5, **{NOISE_OF: 0, NOISE_SEED: 1})]
    best = best_complete(trials)
    assert best is not None and best.number == 0
    assert best_complete([rec(0, P, 30.0), rec(1, R)]) is None


def test_a_quick_stage_ends_only_after_its_budget_and_its_seed_reruns() -> None:
    done = [rec(i, value=10.0 + i) for i in range(3)]
    assert not stage_ended(done, budget=4, noise_seeds=0, stage="quick")  # one not started
    assert stage_progress(done, 4).unclaimed == 1
    assert stage_ended(done, budget=3, noise_seeds=0, stage="quick")
    progress = stage_progress(done, 3, noise_seeds=2, stage="quick")
    assert progress.noise == 2 and progress.left == 2  # the re-runs are still to be queued
    reruns = [rec(3, value=12.1, lr=0.003, **{NOISE_OF: 2, NOISE_SEED: 1}),
              rec(4, R, lr=0.003, **{NOISE_OF: 2, NOISE_SEED: 2})]
    assert stage_progress(done + reruns, 3, 2, "quick").left == 1  # one re-run still runs
    reruns[1] = rec(4, value=11.7, lr=0.003, **{NOISE_OF: 2, NOISE_SEED: 2})
    assert stage_ended(done + reruns, 3, 2, "quick")


def test_a_full_stage_has_no_reruns_due_before_anything_is_promoted() -> None:
    assert pending([], 2, "full", others_left=0) == 0
    promoted = [rec(0, value=20.0, **{PROMOTED_FROM_TRIAL: 4})]
    assert pending(promoted, 2, "full", others_left=0) == 2
    assert pending(promoted, 0, "full", others_left=0) == 0


def test_reruns_are_due_once_the_stage_is_otherwise_done() -> None:
    trials = [rec(0, value=15.0), rec(1, value=16.5), rec(2, P, 9.0)]
    assert reruns_due(trials, 2, "quick", waiting=0, running=1, queued=0, unclaimed=0) == []
    assert reruns_due(trials, 2, "quick", waiting=0, running=0, queued=0, unclaimed=1) == []
    assert reruns_due(trials, 2, "quick", waiting=0, running=0, queued=2, unclaimed=0) == []
    due = reruns_due(trials, 2, "quick", waiting=0, running=0, queued=0, unclaimed=0)
    assert due == [({"lr": 0.002}, {NOISE_OF: 1, NOISE_SEED: 1}), ({"lr": 0.002}, {NOISE_OF: 1, NOISE_SEED: 2})]
    # In a full stage only promoted configs are re-run: the best promoted one.
    full = [rec(0, value=30.0), rec(1, value=20.0, **{PROMOTED_FROM_TRIAL: 3})]
    target = noise_target(full, "full")
    assert target is not None and target.number == 1


def test_the_band_is_the_spread_of_one_config_over_its_seeds() -> None:
    trials = [rec(0, value=17.0), rec(1, value=16.6, lr=0.001, **{NOISE_OF: 0, NOISE_SEED: 1}),
              rec(2, value=17.3, lr=0.001, **{NOISE_OF: 0, NOISE_SEED: 2}), rec(3, R, **{NOISE_OF: 0, NOISE_SEED: 3})]
    b = band(trials)
    assert b is not None and b.trial == 0 and b.values == [17.0, 16.6, 17.3]
    assert abs(b.spread - 0.7) < 1e-9
    assert band(trials[:1]) is None


def test_promotion_takes_top_k_distinct_then_widens_to_the_band() -> None:
    trials = [rec(0, value=20.0), rec(1, value=19.0), rec(2, value=18.9, lr=0.001),  # 2 repeats 0's params
              rec(3, value=18.6), rec(4, value=18.0), rec(5, value=17.0)]
    assert [t.number for t in ranked_distinct(trials)] == [0, 1, 3, 4, 5]
    assert [(t.number, w) for t, w in picks(trials, 2, 4, None)] == [(0, None), (1, None)]
    widened = picks(trials, 2, 4, Band(0, [20.0, 19.5]))  # spread 0.5: 18.6 lies within 19.0 - 0.5
    assert [(t.number, w) for t, w in widened] == [(0, None), (1, None), (3, 0.5)]
    assert len(picks(trials, 2, 3, Band(0, [20.0, 17.0]))) == 3  # max_k caps a wide band
