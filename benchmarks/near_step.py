"""Time one NeAR training step (forward + backward + Adam step) on this CPU.

Compares medrefine's :class:`~medrefine.networks.ImplicitRefiner` at its default sizes with a
re-implementation of the seed's (MultiNeAR) design: the same latent size and MLP widths, but the
feature pyramid built by trilinear upsampling + two 3x3x3 ConvNormAct (GroupNorm) per level, and the
point MLP run as 1x1x1 ``Conv3d`` + ``GroupNorm`` + ``LeakyReLU`` over 5D ``(B, C, D, H, W)`` tensors.

Usage::

    python benchmarks/near_step.py [--threads 2] [--repeats 2] [--classes 11] [--skip-seed]

The machine may be shared; numbers are the minimum over ``--repeats`` timed steps after one warm-up.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from medrefine.losses.near import NeARLoss
from medrefine.networks import ImplicitRefiner, jittered_grid_points, sample_volume


def _gn(c: int) -> nn.GroupNorm:
    g = min(8, c)
    while c % g:
        g -= 1
    return nn.GroupNorm(g, c)


class _ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__(nn.Conv3d(cin, cout, k, padding=k // 2), _gn(cout), nn.LeakyReLU(0.1, inplace=True))


class SeedStyleDecoder(nn.Module):
    """The seed's EmbeddingDecoder design (re-implemented here for timing only)."""

    def __init__(self, num_cases: int, out_channels: int, latent_dim: int = 256,
                 decoder_channels=(64, 48, 32, 16), hidden=(128, 128, 64)) -> None:  # fmt: skip
        super().__init__()
        self.latents = nn.Embedding(num_cases, latent_dim)
        levels, cin = [], latent_dim
        for c in decoder_channels:
            levels.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True),
                                        _ConvNormAct(cin, c), _ConvNormAct(c, c)))  # fmt: skip
            cin = c
        self.levels = nn.ModuleList(levels)
        layers, cin = [], 3 + sum(decoder_channels) + 1
        for h in hidden:
            layers += [nn.Conv3d(cin, h, 1), _gn(h), nn.LeakyReLU(0.1, inplace=True)]
            cin = h
        layers.append(nn.Conv3d(cin, out_channels, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, idx: torch.Tensor, grid: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """``grid`` (B, D, H, W, 3); ``appearance`` (B, 1, D, H, W) at the grid; -> (B, K, D, H, W)."""
        x = self.latents(idx)[..., None, None, None]
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(F.grid_sample(x, grid, mode="bilinear", align_corners=True))
        coords = grid.permute(0, 4, 1, 2, 3)
        return self.mlp(torch.cat([coords, *feats, appearance], dim=1))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_ours(
    batch: int, res: int, classes: int, repeats: int, volume: torch.Tensor, num_points: int | None = None
) -> float:
    torch.manual_seed(0)
    net = ImplicitRefiner(batch, classes)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    loss_fn = NeARLoss(classes, class_weights="inverse_frequency")
    idx = torch.arange(batch)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        pts = jittered_grid_points(batch, (res,) * 3, jitter=0.5, generator=gen, num_points=num_points)
        app = sample_volume(volume[:batch], pts)
        target = (sample_volume(volume[:batch], pts)[..., 0] * classes).long().clamp(0, classes - 1)
        opt.zero_grad(set_to_none=True)
        z = net.latents(idx)
        loss = loss_fn(net.decode_latent(z, pts, app), target, z)
        loss.backward()
        opt.step()

    return _time(step, repeats)


def bench_seed(batch: int, res: int, classes: int, repeats: int, volume: torch.Tensor) -> float:
    torch.manual_seed(0)
    net = SeedStyleDecoder(batch, classes)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    loss_fn = NeARLoss(classes, class_weights="inverse_frequency")
    idx = torch.arange(batch)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        grid = jittered_grid_points(batch, (res,) * 3, jitter=0.5, generator=gen).view(batch, res, res, res, 3)
        app = F.grid_sample(volume[:batch], grid, align_corners=True)
        target = (app[:, 0] * classes).long().clamp(0, classes - 1)
        opt.zero_grad(set_to_none=True)
        logits = net(idx, grid, app)
        loss = loss_fn(logits, target, net.latents(idx))
        loss.backward()
        opt.step()

    return _time(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--volume", type=int, default=128, help="edge of the sampled volume")
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--configs", default="8x32,2x64,8x64", help="BATCHxRES list; the seed skips 8x64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} on {platform.processor() or platform.machine()}, threads={args.threads}, "
          f"K={args.classes}, volume {args.volume}^3, min of {args.repeats} steps after 1 warm-up")  # fmt: skip
    volume = torch.rand(8, 1, args.volume, args.volume, args.volume)
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    print(f"{'points':>14} {'ours s/step':>12} {'seed s/step':>12} {'ratio':>7}")
    for batch, res in configs:
        label = f"{batch} x {res}^3"
        try:
            ours = bench_ours(batch, res, args.classes, args.repeats, volume)
        except RuntimeError as exc:  # out of memory
            print(f"{label:>14} ours failed: {exc}")
            continue
        if args.skip_seed or (batch, res) == (8, 64):
            print(f"{label:>14} {ours:12.3f} {'-':>12} {'-':>7}", flush=True)
            continue
        seed = bench_seed(batch, res, args.classes, args.repeats, volume)
        print(f"{label:>14} {ours:12.3f} {seed:12.3f} {seed / ours:6.1f}x", flush=True)
    # the lever for a time budget: a random subset of the 64^3 training grid per case and step
    for points in (4096, 16384):
        sub = bench_ours(8, 64, args.classes, args.repeats, volume, num_points=points)
        print(f"{f'8 x {points}':>14} {sub:12.3f} {'(random points of a 64^3 grid)':>20}", flush=True)


if __name__ == "__main__":
    main()
