"""The campaign's decisions (search/policy/) on plain records: no database, no torch."""

from __future__ import annotations

from optuna.trial import TrialState

from search.campaign.roles import NOISE_OF, NOISE_SEED, PROMOTED_FROM_TRIAL, QUICK_NOISE_SD
from search.policy.best import best_complete
from search.policy.claims import Counts, claim_order, unclaimed
from search.policy.promotion import picks, ranked_distinct
from search.policy.records import Record
from search.policy.seeds import FIXED, RACE, Band, band, beaten, noise_target, pending, pooled_sd, race, reruns_due
from search.policy.stages import stage_ended, stage_progress
from search.policy.stopping import stage_noise_sd, stop_reason

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


def full_run(number: int, value: float | None, state: TrialState = C, origin: int | None = None,
             seed: int = 0, curve: dict[int, float] | None = None) -> Record:
    """A full-stage run: promoted (origin None) or a seed re-run of trial `origin`."""
    attrs: dict[str, object] = {PROMOTED_FROM_TRIAL: 10 + number} if origin is None else {NOISE_OF: origin,
                                                                                          NOISE_SEED: seed}
    lr = 0.001 * ((origin if origin is not None else number) + 1)
    return Record(number, state, value, {"lr": lr}, attrs, intermediate_values=curve or {})


def test_pooled_sd_weighs_each_config_by_its_degrees_of_freedom() -> None:
    sd, dof = pooled_sd([[1.0, 3.0], [10.0], [5.0, 5.0, 8.0]])
    assert dof == 3 and abs(sd - ((2.0 + 6.0) / 3) ** 0.5) < 1e-12
    assert pooled_sd([[1.0], [2.0]]) == (0.0, 0)


def test_beaten_needs_noise_measured_and_a_gap_beyond_it() -> None:
    assert not beaten([20.0], [10.0], 0.0, 0)  # no dof: nothing is known of noise
    assert beaten([20.0, 20.2], [19.0, 19.1], 0.1, 2)
    assert not beaten([20.0, 20.2], [19.9, 20.1], 0.1, 2)


def test_racing_reruns_the_leader_early_then_only_undecided_configs() -> None:
    # One promoted run finished, two still run: an idle worker re-runs the leader now.
    runs = [full_run(0, 20.0), full_run(1, None, R), full_run(2, None, R)]
    assert race(runs, 2) == [({"lr": 0.001}, {NOISE_OF: 0, NOISE_SEED: 1})]
    assert reruns_due(runs, 2, "full", 0, 2, 0, 0, RACE) == race(runs, 2)
    assert reruns_due(runs, 2, "full", 0, 2, 0, 0, FIXED) == []  # fixed waits for the stage to end
    assert reruns_due(runs, 2, "full", 1, 2, 0, 0, RACE) == []  # something waits: no worker idles
    # Noise measured (sd 0.1 over 2 dof): config 1 is beaten beyond it, config 2 is not.
    runs = [full_run(0, 20.0), full_run(1, 18.0), full_run(2, 19.95), full_run(3, 20.1, origin=0, seed=1),
            full_run(4, 19.9, origin=0, seed=2), full_run(5, 19.8, origin=2, seed=1)]
    due = race(runs, 2)
    assert due == [({"lr": 0.003}, {NOISE_OF: 2, NOISE_SEED: 2})]  # the leader is out of seeds; 1 gets none
    assert pending(runs, 2, "full", 0, RACE) == 1 and not stage_ended(runs, None, 2, "full", RACE)
    runs.append(full_run(6, 19.85, origin=2, seed=2))
    assert race(runs, 2) == [] and stage_ended(runs, None, 2, "full", RACE)


def test_racing_stops_when_every_comparison_is_decided() -> None:
    runs = [full_run(0, 20.0), full_run(1, 17.0), full_run(2, 20.05, origin=0, seed=1),
            full_run(3, 16.95, origin=1, seed=1)]
    assert race(runs, 5) == []  # 1 is beaten beyond a pooled sd of ~0.04: no seed decides anything


def test_a_full_run_stops_when_it_trails_the_best_at_the_same_epoch_beyond_noise() -> None:
    leader = full_run(0, None, R, curve={1: 15.0, 2: 17.0, 3: 18.0})
    slow = full_run(1, None, R, curve={1: 14.9, 2: 16.0})
    close = full_run(2, None, R, curve={1: 14.95, 2: 16.9})
    quick_sd = {QUICK_NOISE_SD: 0.2}
    for r in (leader, slow, close):
        r.user_attrs.update(quick_sd)
    trials = [leader, slow, close]
    assert stage_noise_sd(trials) == 0.2  # no full-stage re-run yet: the quick stage's noise
    reason = stop_reason(slow, trials, 2, margin=3.0)
    assert reason is not None and "epoch 2" in reason and "trial 0" in reason and "1.00" in reason
    assert stop_reason(close, trials, 2, margin=3.0) is None  # 0.10 behind: inside 3 x 0.2
    assert stop_reason(slow, trials, 1, margin=3.0) is None
    for r in trials:
        del r.user_attrs[QUICK_NOISE_SD]
    assert stop_reason(slow, trials, 2, margin=3.0) is None  # no noise measured: never stopped
