"""The trainer: LR schedule, clipping, NaN guard, checkpoints, exact resume, real data."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support.trained import model_from_checkpoint

from errors import CheckpointError, NonFiniteLossError
from training.checkpoint import checkpoint_bytes, load_checkpoint
from training.data import SplitData, load_data
from training.trainer import EpochResult, Run, lr_at, train


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 1e-4), (5, 5.5e-4), (9, 9.1e-4), (10, 1e-3), (11, 1e-3), (99, 1e-3)],
)
def test_linear_warmup_from_a_tenth_then_constant(step: int, expected: float) -> None:
    assert lr_at(step, 1e-3, warmup_steps=10, total_steps=100, schedule="constant") == pytest.approx(expected)


def test_cosine_after_warmup_and_no_warmup() -> None:
    assert lr_at(10, 1e-3, 10, 110, "cosine") == pytest.approx(1e-3)
    assert lr_at(60, 1e-3, 10, 110, "cosine") == pytest.approx(5e-4)
    assert lr_at(110, 1e-3, 10, 110, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_at(0, 1e-3, 0, 100, "constant") == 1e-3


def test_warmup_is_applied_per_step_in_a_real_run(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(epochs=3, warmup_epochs=2, lr=1e-3)
    run = Run(cfg, load_data(cfg.data, cfg.fraction))
    seen: list[float] = []
    step = run.optimizer.step

    def recording_step(*a, **kw):  # type: ignore[no-untyped-def]
        seen.append(run.optimizer.param_groups[0]["lr"])
        return step(*a, **kw)

    run.optimizer.step = recording_step  # type: ignore[method-assign]
    for _ in range(3):
        run.train_epoch(progress=False)
        run.epoch += 1
    n = run.steps
    assert n >= 2 and len(seen) == 3 * n
    assert seen[0] == pytest.approx(1e-4)
    assert seen[1] == pytest.approx(1e-4 + 9e-4 / (2 * n))  # rises within the first epoch
    assert seen[2 * n - 1] < 1e-3 and seen[2 * n:] == pytest.approx([1e-3] * n)


def _grad_norms(tiny_config, clip: float | None) -> list[float]:  # type: ignore[no-untyped-def]
    cfg = tiny_config(grad_clip=clip, lr=0.05, epochs=1)
    run = Run(cfg, load_data(cfg.data, cfg.fraction))
    norms: list[float] = []
    step = run.optimizer.step

    def measuring_step(*a, **kw):  # type: ignore[no-untyped-def]
        grads = [p.grad.flatten() for p in run.model.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))
        return step(*a, **kw)

    run.optimizer.step = measuring_step  # type: ignore[method-assign]
    run.train_epoch(progress=False)
    return norms


def test_clipping_bounds_the_gradient_norm(tiny_config) -> None:  # type: ignore[no-untyped-def]
    unclipped = _grad_norms(tiny_config, None)
    assert max(unclipped) > 0.05  # so the bound below actually bites
    clipped = _grad_norms(tiny_config, 0.05)
    assert max(clipped) <= 0.05 * (1 + 1e-4)
    assert _grad_norms(tiny_config, 0.0) == pytest.approx(unclipped)  # 0 means off


def test_non_finite_loss_names_epoch_and_step(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(epochs=2)
    data = load_data(cfg.data, cfg.fraction)
    poisoned = SplitData(np.full_like(data.train, np.nan), data.val, data.train_files, data.val_files, len(data.train))
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at epoch 1, step 0"):
        train(cfg, data=poisoned, progress=False)
    assert not (Path(cfg.out_dir) / "last.pt").exists()  # nothing half-trained is saved


def test_exploding_learning_rate_is_caught(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(lr=1e12, grad_clip=None, epochs=3, optimizer="adam")
    with pytest.raises(NonFiniteLossError, match="at epoch"):
        train(cfg, progress=False)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_continues_exactly_where_it_stopped(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    straight = tiny_config(epochs=2, warmup_epochs=1, schedule="cosine", out_dir=str(tmp_path / "a"))
    train(straight, progress=False)
    first = tiny_config(epochs=1, warmup_epochs=1, schedule="cosine", out_dir=str(tmp_path / "b"))
    train(first, progress=False)
    resumed = train(first.replace(epochs=2), resume=True, progress=False)
    assert resumed.start_epoch == 1 and [h.epoch for h in resumed.history] == [1, 2]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])


def test_resume_refuses_a_checkpoint_from_another_config(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(epochs=1)
    train(cfg, progress=False)
    with pytest.raises(CheckpointError, match="was made with lr=0.002, this run has lr=0.1"):
        train(cfg.replace(lr=0.1, epochs=2), resume=True, progress=False)


def test_same_seed_repeats_a_cpu_run(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r1 = train(tiny_config(out_dir=str(tmp_path / "1")), progress=False)
    r2 = train(tiny_config(out_dir=str(tmp_path / "2")), progress=False)
    r3 = train(tiny_config(out_dir=str(tmp_path / "3"), seed=1), progress=False)
    assert r1.best_psnr == r2.best_psnr and r1.best_psnr != r3.best_psnr


def test_checkpoints_load_with_weights_only_and_rebuild_the_model(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(epochs=2)
    seen: list[EpochResult] = []
    result = train(cfg, on_epoch_end=seen.append, progress=False)
    assert [e.epoch for e in seen] == [1, 2] and all(math.isfinite(e.val_psnr) for e in seen)
    for path in (result.best_path, result.last_path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["config"] == cfg.to_dict()
    best = torch.load(result.best_path, weights_only=True)
    assert best["metrics"]["val_psnr"] == pytest.approx(result.best_psnr)
    assert best["epoch"] == result.best_epoch and best["params"] == result.params
    model, rebuilt_cfg = model_from_checkpoint(result.best_path)
    assert rebuilt_cfg == cfg
    x = torch.from_numpy(load_data(cfg.data).val[:4])
    assert model(x).shape == x.shape
    assert not list(Path(cfg.out_dir).glob(".*.tmp"))


def test_corrupt_checkpoint_is_a_clear_error(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    result = train(cfg, progress=False)
    data = result.last_path.read_bytes()
    result.last_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {result.last_path}"):
        train(cfg.replace(epochs=2), resume=True, progress=False)


def test_unsafe_pickle_in_a_checkpoint_is_never_loaded(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (sentinel,))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_callback_exception_stops_the_run_after_the_checkpoint(tiny_config) -> None:  # type: ignore[no-untyped-def]
    class Stop(Exception):
        pass

    def stop(_: EpochResult) -> None:
        raise Stop

    cfg = tiny_config(epochs=3)
    with pytest.raises(Stop):
        train(cfg, on_epoch_end=stop, progress=False)
    assert load_checkpoint(Path(cfg.out_dir) / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("variant", ["resnet_lite", "attention"])
def test_trains_on_real_sentinel1_chips(tiny_config, s1: Path, variant: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(variant=variant, epochs=2, fraction=0.2, data={
        "root": str(s1), "include": ["*/Patch/*.tif"], "patch_size": 16, "val_max_patches": 128})
    result = train(cfg, progress=False)
    assert len(result.history) == 2 and result.history[-1].train_loss < result.history[0].train_loss * 1.5
    assert 5.0 < result.best_psnr < 60.0 and 0.0 < result.best_ssim <= 1.0


@pytest.mark.slow
def test_compiled_training_saves_plain_weights_and_resumes_eagerly(tiny_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch) -> None:
    from support.trained import model_from_checkpoint

    from training.data import cache_root

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    compiled = train(tiny_config(epochs=1, compile=True), progress=False)
    # The compiled kernels persist beside the patch cache (a volume in compose), not in /tmp.
    assert any((cache_root() / "inductor").rglob("*.py")), "no compiled code in the sarsweep cache"
    state = torch.load(compiled.last_path, weights_only=True)
    assert state["config"]["compile"] is True
    assert not [k for k in state["model"] if k.startswith("_orig_mod.")]  # torch.compile's wrapper prefix
    model, _ = model_from_checkpoint(compiled.best_path)  # a plain module loads them
    assert sum(p.numel() for p in model.parameters()) == compiled.params
    resumed = train(tiny_config(epochs=2, compile=False), resume=True, progress=False)
    assert resumed.start_epoch == 1 and len(resumed.history) == 2


def test_background_writer_keeps_order_and_hands_back_the_first_failure() -> None:
    from training.writer import BackgroundWriter

    done: list[int] = []
    writer = BackgroundWriter()
    for i in range(5):
        writer.submit(lambda i=i: done.append(i))
    writer.wait()
    assert done == [0, 1, 2, 3, 4]

    def fail() -> None:
        raise OSError("disk full")

    writer.submit(fail)
    writer.submit(lambda: done.append(99))  # after a failure nothing more is written
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [0, 1, 2, 3, 4]


def test_previews_and_uploads_exist_when_train_returns(tiny_config) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, bool]] = []
    result = train(tiny_config(epochs=2, preview_patches=2), progress=False,
                   on_epoch_written=lambda e: seen.append((e.epoch, e.preview is None or Path(e.preview).is_file())))
    assert seen == [(1, True), (2, True)]  # called in order, each after its files were written
    assert (result.best_path.parent / "last.pt").is_file()


def test_checkpoint_size_estimate_covers_the_files_a_run_writes(tiny_config) -> None:  # type: ignore[no-untyped-def]
    """The worker refuses a disk by this estimate, so it must cover what is written (best.pt and
    two last.pt during its rewrite) without overstating it much. Residual at base 32: 6M
    parameters, where a dropped optimizer moment would be a third of the total."""
    cfg = tiny_config(variant="residual", base_channels=32)
    result = train(cfg)
    best, last = (os.path.getsize(path) for path in (result.best_path, result.last_path))
    estimate = checkpoint_bytes(cfg.variant, cfg.model_kwargs)
    assert best + 2 * last <= estimate <= 1.01 * (best + 2 * last)
