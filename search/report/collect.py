"""`sarsweep report --campaign FILE [-o report.md] [--html report.html]`: what the report says.

The research group's end-of-phase table (variant, parameters, PSNR, SSIM, the chosen config),
each figure beside what it must be compared with: the trivial reference (each patch's mean as the
reconstruction) and the stages' seed-noise bands (search/running/noise.py); the reference configs beside
the searched ones; the question every two-stage search raises (did the quick stage pick the
configs that win at full scale? rank agreement with an exact p, and the regret: what picking the
quick winner lost, search/policy/verdicts.py); and what each stage cost. Everything comes from the
studies themselves: values, and the trials' user attrs. search/report/render.py writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from search.campaign.config import STAGES, CampaignConfig
from search.campaign.roles import (
    PROMOTED_FROM_TRIAL,
    PROMOTED_WITHIN_NOISE,
    QUICK_VALUE,
    REFERENCE,
    STOPPED_BEATEN,
    is_noise,
    is_promoted,
)
from search.campaign.studies import load_stage_study
from search.policy.best import best_complete
from search.policy.seeds import Band, band
from search.policy.verdicts import Agreement, agreement, below_trivial
from search.report.status import COUNTED, state_counts, value_text
from storage.lineage import is_retry, original_number


@dataclass
class Promoted:
    quick_trial: int
    quick_value: float
    full_trial: int
    state: str
    full_value: float | None = None
    full_psnr: float | None = None
    full_ssim: float | None = None
    within_noise: float | None = None
    """Promoted beyond top_k: the quick noise band its value lay within of the k-th's."""
    reference: str | None = None
    stopped: str | None = None
    """Why the full run was stopped early (full.stop_margin), when it was."""
    below: str | None = None
    """Its full run scored below the trivial reference (search.policy.verdicts.below_trivial)."""


@dataclass
class Reference:
    """A reference config of the campaign (campaign `reference:`), as its quick trial ran."""

    name: str
    trial: int
    state: str
    value: float | None
    full_value: float | None = None
    """Its full run's value, when it was promoted and ran."""


@dataclass
class VariantResult:
    variant: str
    quick_best: FrozenTrial | None
    full_best: FrozenTrial | None
    promoted: list[Promoted] = field(default_factory=list)
    quick_runner_up: FrozenTrial | None = None
    """The best quick trial of another config than quick_best's."""
    quick_band: Band | None = None
    full_band: Band | None = None
    references: list[Reference] = field(default_factory=list)

    @property
    def chosen(self) -> FrozenTrial | None:
        """The config to use: the best full run, else the best quick trial."""
        return self.full_best or self.quick_best

    @property
    def chosen_band(self) -> Band | None:
        return self.full_band if self.full_best else self.quick_band


@dataclass
class Fidelity:
    variant: str
    pairs: list[tuple[float, float]]
    agreement: Agreement | None = None
    same_winner: bool | None = None
    regret: float | None = None
    """The full value lost by taking the quick winner instead of the best promoted config."""
    band: Band | None = None
    """The full stage's noise band, the unit regret is judged in."""

    @property
    def rho(self) -> float | None:
        return None if self.agreement is None else self.agreement.rho

    @property
    def p_value(self) -> float | None:
        return None if self.agreement is None else self.agreement.p

    def sentence(self) -> str:
        said = (self.agreement or agreement(self.pairs)).sentence()
        if self.same_winner is None:
            return f"{self.variant}: {said}."
        if self.same_winner:
            verdict = "the quick winner also won at full scale"
        else:
            verdict = f"the quick winner did NOT win at full scale: picking it lost {self.regret:.2f} at full scale"
            if self.band is not None and self.band.spread > 0:
                verdict += f", {self.regret / self.band.spread:.1f} full-stage noise bands of {self.band.spread:.2f}"
            elif self.band is None:
                verdict += " (noise not measured)"
        return f"{self.variant}: {said}; {verdict}."


@dataclass
class StageCost:
    variant: str
    stage: str
    counts: dict[str, int]
    seconds: float
    lost_seconds: float
    """Training lost: trials that ended PRUNED or FAIL, and epochs an interruption made train again."""
    devices: list[str]
    redone_seconds: float = 0.0
    """Of lost_seconds, the epochs an interruption made train again (after the last checkpoint)."""

    @property
    def lost_share(self) -> float:
        return self.lost_seconds / self.seconds if self.seconds else 0.0


@dataclass
class Report:
    campaign: CampaignConfig
    results: list[VariantResult]
    fidelity: list[Fidelity]
    costs: list[StageCost]
    studies: dict[tuple[str, str], optuna.Study]
    held_out: dict[str, Any] | None = None
    """Variant -> training.evaluate.Evaluation of its chosen config on held-out rasters (score_held_out)."""
    not_held_out: dict[str, str] = field(default_factory=dict)
    """Variant -> why its chosen config could not be scored there (its best.pt lost or unreadable)."""


def trial_seconds(t: FrozenTrial) -> float:
    """Training and validation seconds of a trial, from its per-epoch user attrs."""
    return float(sum(e.get("seconds", 0.0) for e in t.user_attrs.get("epochs", [])))


def fidelity_of(result: VariantResult) -> Fidelity:
    finished = [p for p in result.promoted if p.full_value is not None]
    pairs = [(p.quick_value, float(p.full_value)) for p in finished]  # type: ignore[arg-type]
    fid = Fidelity(result.variant, pairs, agreement(pairs), band=result.full_band)
    if fid.agreement is not None and fid.agreement.rho is not None:
        quick_winner = max(finished, key=lambda p: p.quick_value)
        full_winner = max(finished, key=lambda p: float(p.full_value))  # type: ignore[arg-type]
        fid.same_winner = quick_winner is full_winner
        fid.regret = float(full_winner.full_value) - float(quick_winner.full_value)  # type: ignore[arg-type]
    return fid


def cost_of(variant: str, stage: str, trials: list[FrozenTrial]) -> StageCost:
    """What a stage's trials cost, each epoch counted once: a retry that resumed an interrupted trial
    holds the epochs it resumed (from the checkpoint's history) beside its own. Lost: every epoch
    of a trial that ended PRUNED or FAIL, and an interrupted epoch that had to be trained again."""
    chains: dict[int, list[FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        chains.setdefault(original_number(t), []).append(t)
    seconds = lost = redone = 0.0
    for chain in chains.values():
        trained: dict[int, float] = {}  # epoch -> the seconds of its last training
        for t in chain:
            for e in t.user_attrs.get("epochs", []):
                epoch, took = int(e.get("epoch", 0)), round(float(e.get("seconds", 0.0)), 3)
                if trained.get(epoch) == took:
                    continue  # resumed from the checkpoint, not trained again
                if epoch in trained:
                    redone += trained[epoch]
                seconds += took
                trained[epoch] = took
        if chain[-1].state in (TrialState.PRUNED, TrialState.FAIL):
            lost += sum(trained.values())
    devices = sorted({e["device"] for t in trials for e in t.user_attrs.get("epochs", []) if "device" in e})
    return StageCost(variant, stage, state_counts(trials), seconds, lost + redone, devices, redone)


def collect(storage: RDBStorage, campaign: CampaignConfig, say: Callable[[str], None] | None = None) -> Report:
    """Everything the report says, read from the studies (`say` hears of each variant read)."""
    results, costs, studies = [], [], {}
    for i, variant in enumerate(campaign.variants, 1):
        if say is not None:
            say(f"reading {variant}'s studies ({i}/{len(campaign.variants)})")
        trials = {}
        for stage in STAGES:
            studies[variant, stage] = load_stage_study(storage, campaign, variant, stage)
            trials[stage] = studies[variant, stage].get_trials(deepcopy=False)
            costs.append(cost_of(variant, stage, trials[stage]))
        quick = trials["quick"]
        result = VariantResult(variant, best_complete(quick), best_complete(trials["full"]),
                               quick_band=band(quick), full_band=band(trials["full"]))
        result.quick_runner_up = runner_up(quick, result.quick_best)
        for t in trials["full"]:
            if not is_promoted(t) or is_retry(t) or is_noise(t):
                continue  # retries are not new configs: _promoted follows them from the original
            result.promoted.append(_promoted(t, trials["full"]))
        result.references = references_of(quick, result.promoted)
        results.append(result)
    return Report(campaign, results, [fidelity_of(r) for r in results], costs, studies)


def runner_up(trials: list[FrozenTrial], best: FrozenTrial | None) -> FrozenTrial | None:
    """The best trial (best_complete) of another config than `best`'s."""
    return None if best is None else best_complete([t for t in trials if t.params != best.params])


def references_of(quick: list[FrozenTrial], promoted: list[Promoted]) -> list[Reference]:
    """Each reference config's quick trial (its retry's outcome when it was retried), and its
    full value when it was promoted and ran."""
    by_name: dict[str, FrozenTrial] = {}
    for t in sorted(quick, key=lambda t: t.number):  # a retry comes later and carries the name on
        name = t.user_attrs.get(REFERENCE)
        if name is not None and not is_noise(t):
            by_name[name] = t
    full = {p.quick_trial: p for p in promoted}
    found = []
    for name, t in by_name.items():
        p = full.get(t.number)
        found.append(Reference(name, t.number, t.state.name, t.value if t.state == TrialState.COMPLETE else None,
                               None if p is None else p.full_value))
    return found


def score_held_out(report: Report, artifacts: Path, data: str, include: list[str] | None = None,
                   label: str | None = None, say: Callable[[str], None] | None = None) -> None:
    """Score each variant's chosen config (its best.pt) on the same held-out rasters, as `sarsweep
    evaluate` does. The validation split picked the configs and their best epochs, so their
    validation figures flatter them; data outside it is the fair comparison. `say` hears of each
    variant as its scoring starts and ends (a variant takes seconds to minutes)."""
    import time

    from errors import CheckpointError
    from search.campaign.export import trial_checkpoint
    from training.evaluate import evaluate

    scores = {}
    chosen = [r for r in report.results if r.chosen is not None]
    for i, r in enumerate(chosen, 1):
        if r.chosen is not None:
            stage = "full" if r.full_best else "quick"
            try:
                path = trial_checkpoint(report.campaign, r.variant, stage, r.chosen, artifacts)
                if say is not None:
                    say(f"held-out: scoring {r.variant} ({i}/{len(chosen)}), {stage} trial #{r.chosen.number}'s "
                        f"best.pt on {label or data}")
                started = time.perf_counter()
                scores[r.variant] = evaluate(path, data=data, include=include)
                if say is not None:
                    e = scores[r.variant]
                    say(f"held-out: {r.variant} scored: PSNR {e.psnr:.2f} dB on {e.patches:,} patches "
                        f"({time.perf_counter() - started:.0f} s)")
                if label is not None:  # a folder of sarsweep's own (the demo's generated scenes): said in words
                    scores[r.variant].data = label
            except CheckpointError as exc:  # one lost best.pt: the others still compare, and the cell says why
                report.not_held_out[r.variant] = str(exc)
    report.held_out = scores


def held_out_sentence(report: Report) -> str | None:
    missing = " ".join(f"Not scored: {variant}, {why}." for variant, why in report.not_held_out.items())
    if not report.held_out:
        return missing or None
    e = next(iter(report.held_out.values()))
    pixels = "" if not e.pixels_total else f" ({e.pixels:,} of their {e.pixels_total:,} pixels)"
    return (f"Held out: {e.data}, {e.patches:,} patches of {e.patch_size}x{e.patch_size} from {len(e.files)} "
            f"file(s){pixels}, scored with each chosen config's best.pt (sarsweep evaluate). The validation split "
            "picked the configs and their best epochs, so only rasters kept apart from the campaign's data "
            "compare them without flattering the winner." + (f" {missing}" if missing else ""))


def held_out_lines(report: Report) -> list[str]:
    """What `report` and `demo` print about the held-out scores: the sentence, a line per variant."""
    if not report.held_out and not report.not_held_out:
        return []
    return [held_out_sentence(report) or "", *(
        f"  {variant}: held-out PSNR {e.psnr:.2f} dB, SSIM {e.ssim:.4f} ({e.checkpoint}); the trivial reference "
        f"{e.trivial_psnr:.2f} dB, so {e.psnr - e.trivial_psnr:+.2f} dB over it"
        for variant, e in report.held_out.items())]


def _promoted(t: FrozenTrial, full: list[FrozenTrial]) -> Promoted:
    # A promoted config that was retried finished in the retry: follow the chain to its outcome.
    final = t
    for other in full:
        if is_retry(other) and original_number(other) == t.number:
            final = other if other.number > final.number else final
    p = Promoted(int(t.user_attrs[PROMOTED_FROM_TRIAL]), float(t.user_attrs[QUICK_VALUE]), final.number,
                 final.state.name, within_noise=t.user_attrs.get(PROMOTED_WITHIN_NOISE),
                 reference=t.user_attrs.get(REFERENCE), stopped=final.user_attrs.get(STOPPED_BEATEN))
    if final.state == TrialState.COMPLETE:
        p.full_value = float(final.value)  # type: ignore[arg-type]
        p.full_psnr = final.user_attrs.get("val_psnr")
        p.full_ssim = final.user_attrs.get("val_ssim")
        p.below = below_trivial(final.user_attrs)
    return p


def summary_line(report: Report) -> str:
    """One line: trials, states, training time, share lost, the overall winner."""
    total = {name: sum(c.counts[name] for c in report.costs) for name in COUNTED}
    seconds = sum(c.seconds for c in report.costs)
    lost = sum(c.lost_seconds for c in report.costs)
    devices = sorted({d for c in report.costs for d in c.devices})
    chosen = [(r.chosen, r.variant, "full" if r.full_best else "quick") for r in report.results if r.chosen]
    best = max(chosen, key=lambda x: (x[2] == "full", float(x[0].value))) if chosen else None  # type: ignore[arg-type]
    head = (f"{report.campaign.name}: {sum(total.values())} trials ({total['COMPLETE']} complete, "
            f"{total['PRUNED']} pruned, {total['FAIL']} failed, "
            + (f"{total['INTERRUPTED']} interrupted and resumed, " if total["INTERRUPTED"] else "")
            + f"{total['RUNNING']} running, "
            f"{total['WAITING']} waiting), {seconds:.0f} s training on {', '.join(devices) or '-'}, "
            f"{100 * lost / seconds if seconds else 0:.0f} % of it lost to pruned/failed trials"
            + (" and interrupted epochs" if any(c.redone_seconds for c in report.costs) else ""))
    if best:
        value = value_text(float(best[0].value), report.campaign.objective)  # type: ignore[arg-type]
        head += f"; best: {best[1]} {best[2]} #{best[0].number} {value}"
    return head
