"""`sarsweep report --campaign FILE [-o report.md] [--html report.html]`.

The research group's end-of-phase table (variant, parameters, PSNR, SSIM, the chosen config), the
question every two-stage search raises (did the quick stage pick the configs that win at full
scale? Spearman's rank correlation between quick and full values), and what each stage cost.
Everything comes from the studies themselves: values, and the trials' user attrs.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from search.campaign import STAGES, CampaignConfig
from search.report_plots import plots
from search.status import STATES
from search.studies import best_complete, load_stage_study
from storage.trials import is_retry, original_number
from training.files import atomic_write, ensure_writable

MIN_PAIRS = 3
CONFIG_KEYS = ("lr", "warmup_epochs", "grad_clip", "base_channels", "optimizer", "weight_decay")


@dataclass
class Promoted:
    quick_trial: int
    quick_value: float
    full_trial: int
    state: str
    full_value: float | None = None
    full_psnr: float | None = None
    full_ssim: float | None = None


@dataclass
class VariantResult:
    variant: str
    quick_best: FrozenTrial | None
    full_best: FrozenTrial | None
    promoted: list[Promoted] = field(default_factory=list)

    @property
    def chosen(self) -> FrozenTrial | None:
        """The config to use: the best full run, else the best quick trial."""
        return self.full_best or self.quick_best


@dataclass
class Fidelity:
    variant: str
    pairs: list[tuple[float, float]]
    rho: float | None = None
    p_value: float | None = None
    same_winner: bool | None = None

    def sentence(self) -> str:
        if self.rho is None:
            return (f"{self.variant}: too little data to judge ({len(self.pairs)} finished promoted "
                    f"config(s); {MIN_PAIRS} needed).")
        verdict = "the quick winner also won at full scale" if self.same_winner else \
            "the quick winner did NOT win at full scale"
        return (f"{self.variant}: Spearman rho = {self.rho:.2f} (p = {self.p_value:.2g}) over "
                f"{len(self.pairs)} promoted configs; {verdict}.")


@dataclass
class StageCost:
    variant: str
    stage: str
    counts: dict[str, int]
    seconds: float
    lost_seconds: float
    devices: list[str]

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


def spearman(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    from scipy.stats import spearmanr

    result = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    return float(result.statistic), float(result.pvalue)


def fidelity_of(result: VariantResult) -> Fidelity:
    finished = [p for p in result.promoted if p.full_value is not None]
    pairs = [(p.quick_value, float(p.full_value)) for p in finished]  # type: ignore[arg-type]
    fid = Fidelity(result.variant, pairs)
    if len(pairs) >= MIN_PAIRS:
        fid.rho, fid.p_value = spearman(pairs)
        if math.isnan(fid.rho):  # constant values on one side: no ranking to compare
            fid.rho = fid.p_value = None
        quick_winner = max(finished, key=lambda p: p.quick_value)
        full_winner = max(finished, key=lambda p: float(p.full_value))  # type: ignore[arg-type]
        fid.same_winner = quick_winner is full_winner
    return fid


def cost_of(variant: str, stage: str, trials: list[FrozenTrial]) -> StageCost:
    counts = {s.name: sum(1 for t in trials if t.state == s) for s in STATES}
    seconds = sum(trial_seconds(t) for t in trials)
    lost = sum(trial_seconds(t) for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL))
    devices = sorted({e["device"] for t in trials for e in t.user_attrs.get("epochs", []) if "device" in e})
    return StageCost(variant, stage, counts, seconds, lost, devices)


def collect(storage: RDBStorage, campaign: CampaignConfig) -> Report:
    results, costs, studies = [], [], {}
    for variant in campaign.variants:
        trials = {}
        for stage in STAGES:
            studies[variant, stage] = load_stage_study(storage, campaign, variant, stage)
            trials[stage] = studies[variant, stage].get_trials(deepcopy=False)
            costs.append(cost_of(variant, stage, trials[stage]))
        result = VariantResult(variant, best_complete(trials["quick"]), best_complete(trials["full"]))
        for t in trials["full"]:
            if "promoted_from_trial" not in t.user_attrs or is_retry(t):
                continue  # retries are not new configs: _promoted follows them from the original
            result.promoted.append(_promoted(t, trials["full"]))
        results.append(result)
    return Report(campaign, results, [fidelity_of(r) for r in results], costs, studies)


def score_held_out(report: Report, artifacts: Path, data: str, include: list[str] | None = None) -> None:
    """Score each variant's chosen config (its best.pt) on the same held-out rasters, as `sarsweep
    evaluate` does. The validation split picked the configs and their best epochs, so their
    validation figures flatter them; data outside it is the fair comparison."""
    from models.errors import CheckpointError
    from search.export import trial_checkpoint
    from training.evaluate import evaluate

    scores = {}
    for r in report.results:
        if r.chosen is not None:
            stage = "full" if r.full_best else "quick"
            try:
                path = trial_checkpoint(report.campaign, r.variant, stage, r.chosen, artifacts)
                scores[r.variant] = evaluate(path, data=data, include=include)
            except CheckpointError as exc:  # one lost best.pt: the others still compare, and the cell says why
                report.not_held_out[r.variant] = str(exc)
    report.held_out = scores


def held_out_sentence(report: Report) -> str | None:
    missing = " ".join(f"Not scored: {variant}, {why}." for variant, why in report.not_held_out.items())
    if not report.held_out:
        return missing or None
    e = next(iter(report.held_out.values()))
    return (f"Held out: {e.data}, {e.patches:,} patches of {e.patch_size}x{e.patch_size} from {len(e.files)} "
            "file(s), scored with each chosen config's best.pt (sarsweep evaluate). The validation split "
            "picked the configs and their best epochs, so only rasters kept apart from the campaign's data "
            "compare them without flattering the winner." + (f" {missing}" if missing else ""))


def held_out_lines(report: Report) -> list[str]:
    """What `report` and `demo` print about the held-out scores: the sentence, a line per variant."""
    if not report.held_out and not report.not_held_out:
        return []
    return [held_out_sentence(report) or "", *(
        f"  {variant}: held-out PSNR {e.psnr:.2f} dB, SSIM {e.ssim:.4f} ({e.checkpoint})"
        for variant, e in report.held_out.items())]


def _promoted(t: FrozenTrial, full: list[FrozenTrial]) -> Promoted:
    # A promoted config that was retried finished in the retry: follow the chain to its outcome.
    final = t
    for other in full:
        if is_retry(other) and original_number(other) == t.number:
            final = other if other.number > final.number else final
    p = Promoted(int(t.user_attrs["promoted_from_trial"]), float(t.user_attrs["quick_value"]), final.number,
                 final.state.name)
    if final.state == TrialState.COMPLETE:
        p.full_value = float(final.value)  # type: ignore[arg-type]
        p.full_psnr = final.user_attrs.get("val_psnr")
        p.full_ssim = final.user_attrs.get("val_ssim")
    return p


# ---- rendering -----------------------------------------------------------------------------

def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _config(t: FrozenTrial | None) -> str:
    if t is None:
        return "-"
    p = t.params
    return ", ".join(f"{k}={_num(p[k], '.3g') if isinstance(p[k], float) else p[k]}" for k in CONFIG_KEYS if k in p)


def _psnr_ssim(t: FrozenTrial | None) -> str:
    if t is None:
        return "- / -"
    return f"{_num(t.user_attrs.get('val_psnr'))} / {_num(t.user_attrs.get('val_ssim'), '.4f')}"


def comparison_rows(report: Report) -> list[list[str]]:
    rows = []
    for r in report.results:
        q, f, chosen = r.quick_best, r.full_best, r.chosen
        stage = "full" if f else "quick"
        where = "-" if chosen is None else f"{report.campaign.study_name(r.variant, stage)} #{chosen.number}"
        rows.append([
            r.variant,
            _num(chosen.user_attrs.get("param_count") if chosen else None, ","),
            _psnr_ssim(q), _psnr_ssim(f),
            _config(chosen), where,
        ])
        if report.held_out is not None:
            e = report.held_out.get(r.variant)
            cell = "not scored" if r.variant in report.not_held_out else "- / -"
            rows[-1].insert(4, cell if e is None else f"{e.psnr:.2f} / {e.ssim:.4f}")
    return rows


def comparison_head(report: Report) -> list[str]:
    head = list(COMPARISON_HEAD)
    if report.held_out is not None:
        head.insert(4, "held-out PSNR / SSIM")
    return head


COMPARISON_HEAD = ["variant", "parameters", "best quick PSNR / SSIM", "best full PSNR / SSIM", "chosen config",
                   "trial"]
PROMOTED_HEAD = ["variant", "quick trial", "quick value", "full trial", "state", "full PSNR", "full SSIM"]
COST_HEAD = ["variant", "stage", "complete", "pruned", "failed", "running", "waiting", "train s",
             "lost to pruned/failed", "device"]


def promoted_rows(report: Report) -> list[list[str]]:
    return [[r.variant, f"#{p.quick_trial}", _num(p.quick_value, ".4f"), f"#{p.full_trial}", p.state.lower(),
             _num(p.full_psnr), _num(p.full_ssim, ".4f")] for r in report.results for p in r.promoted]


def cost_rows(report: Report) -> list[list[str]]:
    return [[c.variant, c.stage, *(str(c.counts[s.name]) for s in STATES), f"{c.seconds:.0f}",
             f"{100 * c.lost_share:.0f} %", ", ".join(c.devices) or "-"] for c in report.costs]


def summary_line(report: Report) -> str:
    """One line: trials, states, training time, share lost, the overall winner."""
    total = {s.name: sum(c.counts[s.name] for c in report.costs) for s in STATES}
    seconds = sum(c.seconds for c in report.costs)
    lost = sum(c.lost_seconds for c in report.costs)
    devices = sorted({d for c in report.costs for d in c.devices})
    chosen = [(r.chosen, r.variant, "full" if r.full_best else "quick") for r in report.results if r.chosen]
    best = max(chosen, key=lambda x: (x[2] == "full", float(x[0].value))) if chosen else None  # type: ignore[arg-type]
    head = (f"{report.campaign.name}: {sum(total.values())} trials ({total['COMPLETE']} complete, "
            f"{total['PRUNED']} pruned, {total['FAIL']} failed, {total['RUNNING']} running, "
            f"{total['WAITING']} waiting), {seconds:.0f} s training on {', '.join(devices) or '-'}, "
            f"{100 * lost / seconds if seconds else 0:.0f} % of it on pruned/failed trials")
    if best:
        head += f"; best: {best[1]} {best[2]} #{best[0].number} {best[0].value:.4g}"
    return head


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def to_markdown(report: Report, images: dict[str, str] | None = None) -> str:
    c = report.campaign
    parts = [
        f"# sarsweep report: campaign {c.name}", "",
        f"Objective: validation {c.objective.upper()}. Quick stage: {c.quick.fraction:g} of the training "
        f"split, {c.quick.epochs} epochs, {c.quick.trials} trials per variant. Full stage: {c.full.fraction:g}, "
        f"{c.full.epochs} epochs, top {c.full.top_k} promoted.", "",
        summary_line(report), "", "## Comparison", "", _md_table(comparison_head(report), comparison_rows(report)), "",
        *([held_out_sentence(report) or "", ""] if held_out_sentence(report) else []),
        "## Promoted configs", "", _md_table(PROMOTED_HEAD, promoted_rows(report)) if promoted_rows(report)
        else "No config has been promoted yet.", "",
        "## Fidelity: did the quick stage pick the full-scale winners?", "",
        *[f"- {f.sentence()}" for f in report.fidelity], "",
        "## Cost per stage", "", _md_table(COST_HEAD, cost_rows(report)), "",
    ]
    for title, path in (images or {}).items():
        parts += [f"![{title}]({path})", ""]
    return "\n".join(parts)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: Report, pngs: dict[str, bytes]) -> str:
    c = report.campaign
    images = "".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, b in pngs.items())
    fidelity = "".join(f"<li>{html.escape(f.sentence())}</li>" for f in report.fidelity)
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#eef}"
             "figure{display:inline-block;margin:1em}img{max-width:560px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sarsweep report: {html.escape(c.name)}</title>"
            f"<style>{style}</style></head><body><h1>sarsweep report: campaign {html.escape(c.name)}</h1>"
            f"<p>{html.escape(summary_line(report))}</p>"
            f"<h2>Comparison</h2>{_html_table(comparison_head(report), comparison_rows(report))}"
            + (f"<p>{html.escape(held_out_sentence(report) or '')}</p>" if held_out_sentence(report) else "") +
            f"<h2>Promoted configs</h2>{_html_table(PROMOTED_HEAD, promoted_rows(report))}"
            f"<h2>Fidelity</h2><ul>{fidelity}</ul>"
            f"<h2>Cost per stage</h2>{_html_table(COST_HEAD, cost_rows(report))}"
            f"<h2>Plots</h2>{images}</body></html>")


def write_report(storage: RDBStorage, campaign: CampaignConfig, markdown: Path, html_path: Path | None,
                 held_out: tuple[Path, str, list[str] | None] | None = None) -> Report:
    """held_out: (artifacts root, data folder, include globs) to score the chosen configs on.

    The output folders are checked first, so a wrong -o is one line before any work; every file
    is written whole or not at all (atomic_write)."""
    for folder in {markdown.parent, *([html_path.parent] if html_path else [])}:
        ensure_writable(folder)
    report = collect(storage, campaign)
    if held_out is not None:
        score_held_out(report, *held_out)
    pngs = plots(report)
    images = {}
    for title, data in pngs.items():
        image = markdown.with_name(f"{markdown.stem}-{title.split()[0]}-{len(images)}.png")
        atomic_write(image, lambda tmp, data=data: tmp.write_bytes(data))
        images[title] = image.name
    text = to_markdown(report, images)
    atomic_write(markdown, lambda tmp: tmp.write_text(text))
    if html_path is not None:
        page = to_html(report, pngs)
        atomic_write(html_path, lambda tmp: tmp.write_text(page))
    return report
