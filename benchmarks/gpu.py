"""GPU benchmark (#19): the project's own code on an accelerator, in one run of a few minutes.

    python benchmarks/run.py --device cuda [--cubes DIR --folds FILE]   # writes results/gpu.json
    python benchmarks/gpu.py --device cpu --smoke                      # the same path, tiny, on a CPU

It measures, in one process:
- peak: the bf16 matrix product (8192^3 on a GPU), the ceiling every fraction below refers to;
- models: per architecture, inference (bf16 autocast, channels_last, eager and torch.compile) and
  training (forward + backward + AdamW step, bf16 autocast) patches/s, and their fraction of peak
  (training counted as 3x the forward FLOPs, as in the CPU benchmark);
- tile: `predict_cube` (infer's whole-cube path: host cube -> device strips -> gathered windows ->
  blended map back on the host) over a full 10,980 px tile against the model alone on the same
  number of windows (random inputs already on the device);
- lightning_train: `Trainer.fit` of the project's task with the real datamodule on real cubes
  (bf16-mixed, auto workers) against the raw training step on device-resident batches.

Results: {"device", "torch", "bf16_peak_tflops", "models": {name: {"gflop_per_patch",
"infer_patches_s", "infer_frac_of_peak", "train_patches_s", "train_frac_of_peak", ...}},
"tile": {"tile_px", "seconds", "km2_per_s", "model_only_km2_per_s", "ratio", ...},
"lightning_train": {"patches_s", "raw_step_patches_s", "ratio", ...}}.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

GROUPS = {"optical": ["B2", "B3", "B4", "B8", "B11", "B12"], "dem": ["dem", "slope", "hillshade"]}  # 9 channels
MODELS = {"unet": {"name": "unet", "encoder": "resnet34"}, "glavitu": {"name": "glavitu"},
          "deeplabv3plus": {"name": "deeplabv3plus", "encoder": "resnet34"},
          "segformer": {"name": "segformer", "encoder": "mit_b0"}}
COMPILED = ("unet", "glavitu")


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_seconds(fn, dev: torch.device, reps: int, warmup: int = 2) -> float:
    """Best wall time of `fn` over `reps` calls (synchronised), after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(dev)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def bf16_peak(dev: torch.device, n: int) -> float:
    """TFLOP/s of an n^3 bf16 matrix product (fp32 on a CPU: it has no fast bf16 path)."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, dev, reps=10) / 1e12


def build(name: str, dev: torch.device):
    from glaciermap.config.models import ModelConfig
    from glaciermap.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate(MODELS[name]), {g: len(b) for g, b in GROUPS.items()}).to(dev)


def bench_model(name: str, dev: torch.device, size: int, infer_batch: int, train_batch: int, peak: float,
                reps: int, compile_: bool) -> dict:
    """Inference and training patches/s of one architecture, with their fractions of `peak`."""
    from glaciermap.device import autocast, autocast_dtype
    from glaciermap.models.summary import forward_flops

    model = build(name, dev)
    gflop = forward_flops(model, size) / 1e9
    dtype = autocast_dtype(dev)
    cl = torch.channels_last
    c = model.in_channels
    out: dict = {"gflop_per_patch": gflop, "size": size, "infer_batch": infer_batch, "train_batch": train_batch}

    model.train().to(memory_format=cl)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(train_batch, c, size, size, device=dev).contiguous(memory_format=cl)
    y = (torch.rand(train_batch, 1, size, size, device=dev) > 0.5).float()
    loc = torch.zeros(train_batch, 2, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(dev, dtype):
            logits, aux = model.forward_with_aux(x, loc)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            for w, a in aux:
                loss = loss + w * torch.nn.functional.binary_cross_entropy_with_logits(a.float(), y)
        loss.backward()
        opt.step()

    out["train_patches_s"] = train_batch / best_seconds(step, dev, reps)
    out["train_frac_of_peak"] = 3 * gflop * out["train_patches_s"] / 1e3 / peak

    model.eval()
    xi = torch.randn(infer_batch, c, size, size, device=dev).contiguous(memory_format=cl)
    li = torch.zeros(infer_batch, 2, device=dev)
    variants = {"eager": model}
    if compile_:
        variants["compiled"] = torch.compile(model)
    for label, net in variants.items():
        def fwd(net=net):
            with torch.inference_mode(), autocast(dev, dtype):
                net(xi, li)
        t0 = time.perf_counter()
        pps = infer_batch / best_seconds(fwd, dev, reps, warmup=3)
        out[f"infer_{label}_patches_s"] = pps
        out[f"infer_{label}_frac_of_peak"] = gflop * pps / 1e3 / peak
        out[f"infer_{label}_wall_s"] = time.perf_counter() - t0
    best = max(variants, key=lambda v: out[f"infer_{v}_patches_s"])
    out.update(infer_patches_s=out[f"infer_{best}_patches_s"], infer_frac_of_peak=out[f"infer_{best}_frac_of_peak"],
               infer_variant=best)
    return out


def bench_tile(dev: torch.device, px: int, batches: list[int], compile_: bool, reps: int) -> dict:
    """predict_cube over a px x px tile (host cube, as infer holds it) vs the model alone."""
    from glaciermap.data.windows import PreparedCube, n_windows, predict_cube
    from glaciermap.device import autocast, autocast_dtype

    size, stride, res_m = 256, 192, 10.0
    rng = np.random.default_rng(0)
    c = sum(len(b) for b in GROUPS.values())
    image = rng.standard_normal((c, px, px), dtype=np.float32)
    image[6:, : px // 10, : px // 7] = np.nan  # a DEM void: the group is absent in a few windows
    cube = PreparedCube(image=image, target=np.zeros((px, px), np.uint8), glacier=np.zeros((px, px), np.uint8),
                        valid=np.ones((px, px), bool), location=np.array([10.8, 46.8], np.float32),
                        glacier_pixels=np.zeros((0, 2), np.int64))
    model = build("unet", dev).eval().to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile_ else model
    windows = n_windows(px, px, size, stride)
    km2 = px * px * res_m ** 2 / 1e6
    dtype = autocast_dtype(dev)
    rows = []
    for batch in batches:
        xi = torch.randn(batch, c, size, size, device=dev).contiguous(memory_format=torch.channels_last)
        li = torch.zeros(batch, 2, device=dev)
        present = torch.ones(batch, len(GROUPS), dtype=torch.bool, device=dev)

        def model_only():
            with torch.inference_mode(), autocast(dev, dtype):
                for _ in range(-(-windows // batch)):
                    torch.sigmoid(net(xi, li, present))

        t_model = best_seconds(model_only, dev, reps=reps, warmup=1)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t_tile = best_seconds(lambda: predict_cube(net, cube, GROUPS, size=size, stride=stride, batch_size=batch,
                                                   device=dev), dev, reps=reps, warmup=1)
        row = {"batch": batch, "seconds": t_tile, "km2_per_s": km2 / t_tile, "model_only_seconds": t_model,
               "model_only_km2_per_s": km2 / t_model, "ratio": t_model / t_tile,
               "gpu_peak_gib": torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None}
        log(f"  tile batch {batch}: {t_tile:.3f} s ({row['km2_per_s']:.0f} km2/s), model alone {t_model:.3f} s "
            f"-> ratio {row['ratio']:.2f}, GPU peak {row['gpu_peak_gib']} GiB")
        rows.append(row)
    best = max(rows, key=lambda r: r["km2_per_s"])
    return {"tile_px": px, "km2": km2, "windows": windows, "window": size, "stride": stride, "compiled": compile_,
            **{k: best[k] for k in ("batch", "seconds", "km2_per_s", "model_only_km2_per_s", "ratio", "gpu_peak_gib")},
            "host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "host_cube_gib": image.nbytes / 2 ** 30, "by_batch": rows}


def bench_lightning(dev: torch.device, cubes: Path, folds: Path, batch: int, samples: int, epochs: int,
                    reps: int) -> dict:
    """Trainer.fit with the real datamodule vs the raw training step, same task and batch size."""
    from glaciermap.config import PatchesConfig
    from glaciermap.data.datamodule import GlacierDataModule, to_model_dtypes
    from glaciermap.data.folds import read_folds
    from glaciermap.device import loader_workers
    from glaciermap.training.task import SegmentationTask

    fold = read_folds(folds)[0]
    channels = {g: len(b) for g, b in GROUPS.items()}
    out: dict = {"batch": batch, "samples_per_epoch": samples, "epochs": epochs, "train_cubes": len(fold.train),
                 "num_workers": loader_workers("auto"), "by_setting": {}}
    for setting in ("auto", "off"):  # compact batches (auto: on with CUDA) and full float32 batches
        cfg = PatchesConfig(size=256, batch_size=batch, samples_per_epoch=samples, val_samples=1,
                            num_workers="auto", compact_batches=setting)
        dm = GlacierDataModule(cubes, fold, GROUPS, cfg)
        out["by_setting"][setting] = fit_rate(dev, dm, channels, samples, epochs)
        log(f"  lightning compact_batches={setting}: {out['by_setting'][setting]['patches_s']:.0f} p/s")
    best = max(out["by_setting"], key=lambda k: out["by_setting"][k]["patches_s"])
    out.update(compact_batches=best, patches_s=out["by_setting"][best]["patches_s"],
               precision="bf16-mixed" if dev.type == "cuda" else "32-true")

    # the raw step: the task's own loss + backward + optimizer on one device-resident batch
    task = SegmentationTask(model=MODELS["unet"], groups=channels, max_epochs=epochs).to(dev).train()
    task.model.to(memory_format=torch.channels_last)
    batch_data = to_model_dtypes({k: v.to(dev) for k, v in next(iter(dm.train_dataloader())).items()})
    opt = task.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt

    def raw_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = task._loss(batch_data)[0]
        loss.backward()
        opt.step()

    out["raw_step_patches_s"] = batch / best_seconds(raw_step, dev, reps)
    out["ratio"] = out["patches_s"] / out["raw_step_patches_s"]
    return out


def fit_rate(dev: torch.device, dm, channels: dict[str, int], samples: int, epochs: int) -> dict:
    """Trainer.fit of the project's task on `dm`; patches/s of the fastest epoch after the first."""
    import lightning.pytorch as L

    from glaciermap.training.task import SegmentationTask

    class EpochTimer(L.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            sync(dev)
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            sync(dev)
            self.times.append(time.perf_counter() - self.t0)

    timer = EpochTimer()
    task = SegmentationTask(model=MODELS["unet"], groups=channels, max_epochs=epochs)
    task.model.to(memory_format=torch.channels_last)
    precision = "bf16-mixed" if dev.type == "cuda" else "32-true"
    trainer = L.Trainer(accelerator=dev.type, devices=1, max_epochs=epochs, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(task, datamodule=dm)
    steady = min(timer.times[1:] or timer.times)
    return {"patches_s": samples / steady, "epoch_seconds": timer.times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the path (CPU-friendly)")
    ap.add_argument("--cubes", type=Path, help="cubes folder for the Lightning benchmark (skipped if absent)")
    ap.add_argument("--folds", type=Path, help="folds.json for those cubes")
    ap.add_argument("--only", default="peak,models,tile,lightning")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    only = set(args.only.split(","))
    smoke = args.smoke
    t_all = time.perf_counter()
    result: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
                    "torch": torch.__version__, "smoke": smoke, "host_cpus": os.cpu_count()}
    def save() -> None:  # after every section: a run cut short keeps what it measured
        from glaciermap.io import write_json

        result["wall_s"] = time.perf_counter() - t_all
        write_json(args.out, result)

    result["bf16_peak_tflops"] = bf16_peak(dev, 512 if smoke else 8192)
    log(f"peak: {result['bf16_peak_tflops']:.1f} TFLOP/s")
    if "models" in only:
        result["models"] = {}
        for name in MODELS:
            t0 = time.perf_counter()
            r = bench_model(name, dev, 64 if smoke else 256, 2 if smoke else 64, 2 if smoke else 32,
                            result["bf16_peak_tflops"], reps=2 if smoke else 10,
                            compile_=name in COMPILED and not smoke)
            r["wall_s"] = time.perf_counter() - t0
            result["models"][name] = r
            save()
            log(f"{name}: infer {r['infer_patches_s']:.0f} p/s ({100 * r['infer_frac_of_peak']:.0f} %, "
                f"{r['infer_variant']}), train {r['train_patches_s']:.0f} p/s "
                f"({100 * r['train_frac_of_peak']:.0f} %) [{r['wall_s']:.0f} s]")
    if "tile" in only:
        t0 = time.perf_counter()
        result["tile"] = bench_tile(dev, 600 if smoke else 10980, [4] if smoke else [64, 128],
                                    compile_=not smoke, reps=1 if smoke else 2)
        result["tile"]["wall_s"] = time.perf_counter() - t0
        save()
    if "lightning" in only and args.cubes and args.folds:
        t0 = time.perf_counter()
        result["lightning_train"] = bench_lightning(dev, args.cubes, args.folds, 4 if smoke else 64,
                                                    8 if smoke else 4096, 2 if smoke else 3, 2 if smoke else 10)
        result["lightning_train"]["wall_s"] = time.perf_counter() - t0
        lt = result["lightning_train"]
        log(f"lightning: {lt['patches_s']:.0f} p/s vs raw step {lt['raw_step_patches_s']:.0f} "
            f"-> ratio {lt['ratio']:.2f} ({lt['num_workers']} workers)")
    save()
    log(f"-> {args.out} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
