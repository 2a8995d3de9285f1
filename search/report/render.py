"""The report as Markdown and HTML (search/report/collect.py says what is in it): tables, sentences, plots.

Every figure stands beside what it must be compared with: a PSNR beside the trivial reference on
the same patches, a difference beside the stage's noise band, a rank correlation beside its n
and an exact p.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from search.campaign.config import CampaignConfig
from search.policy.verdicts import below_trivial, beside_noise
from search.report.collect import (
    Promoted,
    Report,
    VariantResult,
    collect,
    held_out_sentence,
    score_held_out,
    summary_line,
)
from search.report.plots import plots
from search.report.status import COUNTED, value_text
from training.files import atomic_write, ensure_writable

CONFIG_KEYS = ("lr", "warmup_epochs", "grad_clip", "base_channels", "optimizer", "weight_decay")


NONE_FINISHED = "no trial finished"
"""What a cell says where its stage has no COMPLETE trial yet (a report never shows a bare "-")."""


def _num(value: Any, fmt: str = ".2f", missing: str = "not recorded") -> str:
    return missing if value is None else format(value, fmt)


def _config(t: FrozenTrial | None) -> str:
    if t is None:
        return NONE_FINISHED
    p = t.params
    return ", ".join(f"{k}={_num(p[k], '.3g') if isinstance(p[k], float) else p[k]}" for k in CONFIG_KEYS if k in p)


def _psnr_ssim(t: FrozenTrial | None) -> str:
    if t is None:
        return NONE_FINISHED
    return f"{_num(t.user_attrs.get('val_psnr'))} / {_num(t.user_attrs.get('val_ssim'), '.4f')}"


def _digits(report: Report) -> int:
    return 2 if report.campaign.objective == "psnr" else 4


def vs_trivial(t: FrozenTrial | None) -> str:
    """'+2.31 dB (trivial 18.10)': the chosen trial's val PSNR over each patch's mean as the
    reconstruction, on the same validation patches."""
    if t is None:
        return NONE_FINISHED
    if "trivial_psnr" not in t.user_attrs:
        return "not recorded by the worker that ran it"
    trivial = float(t.user_attrs["trivial_psnr"])
    mark = " BELOW" if below_trivial(t.user_attrs) else ""
    return f"{float(t.user_attrs['val_psnr']) - trivial:+.2f} dB{mark} (trivial {trivial:.2f})"


def vs_runner_up(r: VariantResult, digits: int) -> str:
    """The winner's margin over the next config, at full scale when two promoted configs finished."""
    finished = sorted((p for p in r.promoted if p.full_value is not None), key=lambda p: -float(p.full_value or 0))
    if len(finished) >= 2:
        band = r.full_band.spread if r.full_band else None
        diff = float(finished[0].full_value or 0) - float(finished[1].full_value or 0)
        return f"full: {beside_noise(diff, band, digits)}"
    if r.quick_best is not None and r.quick_runner_up is not None:
        band = r.quick_band.spread if r.quick_band else None
        diff = float(r.quick_best.value or 0) - float(r.quick_runner_up.value or 0)
        return f"quick: {beside_noise(diff, band, digits)}"
    return NONE_FINISHED if r.quick_best is None else "no runner-up: one config finished"


def vs_references(r: VariantResult, digits: int) -> str:
    """The quick winner against each reference config in the quick stage (and at full scale where
    the reference was promoted and ran)."""
    if not r.references:
        return "no reference configs (campaign reference:)"
    if r.quick_best is None:
        return NONE_FINISHED
    cells = []
    for ref in r.references:
        if ref.trial == r.quick_best.number:
            cells.append(f"{ref.name}: is the quick winner")
            continue
        if ref.value is None:
            cells.append(f"{ref.name}: {ref.state.lower()}")
            continue
        band = r.quick_band.spread if r.quick_band else None
        text = f"{ref.name}: quick {beside_noise(float(r.quick_best.value or 0) - ref.value, band, digits)}"
        if ref.full_value is not None and r.full_best is not None:
            full_band = r.full_band.spread if r.full_band else None
            text += f"; full {beside_noise(float(r.full_best.value or 0) - ref.full_value, full_band, digits)}"
        cells.append(text)
    return "; ".join(cells)


COMPARISON_HEAD = ["variant", "parameters", "best quick PSNR / SSIM", "best full PSNR / SSIM", "chosen config",
                   "trial", "chosen vs trivial", "winner vs runner-up", "quick winner vs references"]
PROMOTED_HEAD = ["variant", "quick trial", "quick value", "full trial", "state", "full PSNR", "full SSIM", "why"]
NOISE_HEAD = ["variant", "stage", "config re-run", "values over its seeds", "noise band"]
COST_HEAD = ["variant", "stage", "complete", "pruned", "failed", "interrupted", "running", "waiting", "train s",
             "lost to pruned/failed/redone", "device"]


def comparison_rows(report: Report) -> list[list[str]]:
    rows = []
    digits = _digits(report)
    for r in report.results:
        q, f, chosen = r.quick_best, r.full_best, r.chosen
        stage = "full" if f else "quick"
        where = NONE_FINISHED if chosen is None else f"{report.campaign.study_name(r.variant, stage)} #{chosen.number}"
        rows.append([
            r.variant,
            _num(chosen.user_attrs.get("param_count"), ",") if chosen else NONE_FINISHED,
            _psnr_ssim(q), _psnr_ssim(f),
            _config(chosen), where, vs_trivial(chosen), vs_runner_up(r, digits), vs_references(r, digits),
        ])
        if report.held_out is not None:
            e = report.held_out.get(r.variant)
            cell = "not scored" if r.variant in report.not_held_out else "no chosen config"
            rows[-1].insert(4, cell if e is None else f"{e.psnr:.2f} / {e.ssim:.4f}")
            over = cell if e is None else f"{e.psnr - e.trivial_psnr:+.2f} dB (trivial {e.trivial_psnr:.2f})"
            rows[-1].insert(5, over)
    return rows


def comparison_head(report: Report) -> list[str]:
    head = list(COMPARISON_HEAD)
    if report.held_out is not None:
        head[4:4] = ["held-out PSNR / SSIM", "held-out vs trivial"]
    return head


def promoted_rows(report: Report) -> list[list[str]]:
    rows = []
    for r in report.results:
        for p in r.promoted:
            why = "top_k" if p.within_noise is None else f"within the quick noise band {p.within_noise:.2f}"
            rows.append([r.variant, f"#{p.quick_trial}", _num(p.quick_value, ".4f"), f"#{p.full_trial}",
                         p.state.lower(), _num(p.full_psnr, missing=unfinished(p)),
                         _num(p.full_ssim, ".4f", missing=unfinished(p)),
                         why + (f" (reference {p.reference})" if p.reference else "")
                         + (f"; {p.stopped}" if p.stopped else "") + (f"; {p.below}" if p.below else "")])
    return rows


def unfinished(p: Promoted) -> str:
    """Why a promoted config has no full value: its run has not ended, or ended without one."""
    return {"WAITING": "not started", "RUNNING": "running", "PRUNED": "stopped", "FAIL": "failed"}.get(
        p.state, "not recorded")


def noise_rows(report: Report) -> list[list[str]]:
    rows = []
    for r in report.results:
        for stage, band in (("quick", r.quick_band), ("full", r.full_band)):
            if band is not None:
                values = ", ".join(f"{v:.{_digits(report)}f}" for v in band.values)
                rows.append([r.variant, stage, f"#{band.trial}", values, f"{band.spread:.{_digits(report)}f}"])
    return rows


def cost_rows(report: Report) -> list[list[str]]:
    return [[c.variant, c.stage, *(str(c.counts[name]) for name in COUNTED), f"{c.seconds:.0f}",
             f"{100 * c.lost_share:.0f} %", ", ".join(c.devices) or "no epoch ran"] for c in report.costs]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def stages_sentence(c: CampaignConfig) -> str:
    refs = f", plus {len(c.reference)} reference config(s) ({', '.join(c.reference)})" if c.reference else ""
    noise = (f" Seed noise: each stage's best config re-run with {c.noise_seeds} other seed(s); a difference "
             "within a stage's noise band (the spread of those values) does not tell two configs apart."
             if c.noise_seeds else " Seed noise: not measured (noise_seeds: 0).")
    quick, full = c.quick, c.full
    def share(f: float) -> str:
        return "all" if f >= 1 else f"{f:g}"

    return (f"Objective: validation {c.objective.upper()}. Quick stage: {share(quick.fraction)} of the training "
            f"split, {quick.epochs} epochs, {quick.trials} trials per variant{refs}. Full stage: "
            f"{share(full.fraction)} of the training split, {full.epochs} epochs, top {full.top_k} promoted (and "
            f"those within the quick noise band of the one ranked {full.top_k}, up to {full.most}).{noise} The "
            "trivial reference is each "
            "patch's mean taken as its reconstruction, scored on the same patches.")


def answer_lines(report: Report) -> list[str]:
    """The report's first lines: per variant the config to use, then which variant, and whether its
    lead over the next variant is beyond seed noise (the larger of the two chosen runs' bands)."""
    objective = report.campaign.objective
    lines = []
    chosen = [r for r in report.results if r.chosen is not None]
    for r in chosen:
        t = r.chosen
        stage = "full run" if r.full_best else "quick trial (nothing promoted has finished)"
        keys = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.params.items())
        trivial = t.user_attrs.get("trivial_psnr")
        beside = f" (trivial reference {trivial:.2f} dB)" if objective == "psnr" and trivial is not None else ""
        scored = {"val_psnr": t.value, **t.user_attrs} if objective == "psnr" else t.user_attrs
        mark = below_trivial(scored)
        below = f" - {mark}" if mark else ""
        unit = " dB" if objective == "psnr" else ""
        lines.append(f"- **{r.variant}**: {stage} #{t.number}, {value_text(float(t.value), objective)}{unit}{beside}"
                     f"{below}; {keys}")
    if len(chosen) >= 2:
        ranked = sorted(chosen, key=lambda r: (r.full_best is not None, float(r.chosen.value)), reverse=True)
        first, second = ranked[0], ranked[1]
        gap = float(first.chosen.value) - float(second.chosen.value)
        bands = [b.spread for b in (first.chosen_band, second.chosen_band) if b is not None]
        if not bands:
            verdict = "seed noise is not measured, so whether that lead is real cannot be said"
        elif gap > max(bands):
            verdict = f"beyond the seed noise band ({max(bands):.2f}): use {first.variant}"
        else:
            verdict = (f"within the seed noise band ({max(bands):.2f}): the two cannot be told apart on this data; "
                       "take either (the smaller one costs less)")
        lines.append(f"- **Use {first.variant}**: it leads {second.variant} by {gap:.2f}, {verdict}.")
    return lines


def to_markdown(report: Report, images: dict[str, str] | None = None) -> str:
    c = report.campaign
    held = held_out_sentence(report)
    answer = answer_lines(report)
    parts = [
        f"# sarsweep report: campaign {c.name}", "", *(["## The answer", "", *answer, ""] if answer else []),
        stages_sentence(c), "",
        summary_line(report), "", "## Comparison", "", _md_table(comparison_head(report), comparison_rows(report)), "",
        *([held, ""] if held else []),
        "## Promoted configs", "", _md_table(PROMOTED_HEAD, promoted_rows(report)) if promoted_rows(report)
        else "No config has been promoted yet.", "",
        "## Seed noise", "", _md_table(NOISE_HEAD, noise_rows(report)) if noise_rows(report)
        else ("Not measured: the campaign sets noise_seeds: 0, so no difference can be judged against seed noise."
              if not c.noise_seeds else "No stage has measured its seed noise yet."), "",
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
    held = held_out_sentence(report)
    answer = "".join(f"<li>{html.escape(line[2:].replace('**', ''))}</li>" for line in answer_lines(report))
    noise = _html_table(NOISE_HEAD, noise_rows(report)) if noise_rows(report) else \
        "<p>No stage has measured its seed noise yet.</p>"
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#eef}"
             "figure{display:inline-block;margin:1em}img{max-width:560px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sarsweep report: {html.escape(c.name)}</title>"
            f"<style>{style}</style></head><body><h1>sarsweep report: campaign {html.escape(c.name)}</h1>"
            + (f"<h2>The answer</h2><ul>{answer}</ul>" if answer else "") +
            f"<p>{html.escape(stages_sentence(c))}</p><p>{html.escape(summary_line(report))}</p>"
            f"<h2>Comparison</h2>{_html_table(comparison_head(report), comparison_rows(report))}"
            + (f"<p>{html.escape(held)}</p>" if held else "") +
            f"<h2>Promoted configs</h2>{_html_table(PROMOTED_HEAD, promoted_rows(report))}"
            f"<h2>Seed noise</h2>{noise}"
            f"<h2>Fidelity</h2><ul>{fidelity}</ul>"
            f"<h2>Cost per stage</h2>{_html_table(COST_HEAD, cost_rows(report))}"
            f"<h2>Plots</h2>{images}</body></html>")


def write_report(storage: RDBStorage, campaign: CampaignConfig, markdown: Path, html_path: Path | None,
                 held_out: tuple[Path, str, list[str] | None] | None = None,
                 held_out_label: str | None = None, say: Callable[[str], None] | None = None) -> Report:
    """held_out: (artifacts root, data folder, include globs) to score the chosen configs on, and
    `held_out_label`: how to name that folder (else its path). `say` hears what it is doing.

    The output folders are checked first, so a wrong -o is one line before any work; every file
    is written whole or not at all (atomic_write)."""
    for folder in {markdown.parent, *([html_path.parent] if html_path else [])}:
        ensure_writable(folder)
    report = collect(storage, campaign, say)
    if held_out is not None:
        score_held_out(report, *held_out, label=held_out_label, say=say)
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
