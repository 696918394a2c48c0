"""A real DDP training script: small MLP, synthetic data, gloo on CPU or NCCL on GPUs.

Works unchanged under ``neo run`` (local backend: gloo on CPU) and on real GPU nodes
(NCCL, one GPU per rank):

    neo run --gpus 4 --nodes 2 examples/train_ddp.py --steps 20 --lr 0.05
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--fail-rank", type=int, default=-1, help="this rank raises (to see failure handling)"
    )
    args = parser.parse_args()

    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    t_init = time.perf_counter()

    torch.manual_seed(0)  # same initial weights on every rank
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device),
        device_ids=[device.index] if cuda else None,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard of synthetic data
    true_w = torch.arange(32, dtype=torch.float32) / 32

    loss = torch.tensor(0.0)
    for step in range(args.steps):
        x = torch.randn(args.batch, 32, generator=gen)
        y = (x @ true_w).unsqueeze(1)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if step == 0:
            t_first = time.perf_counter()
            print(
                f"first step done: init_process_group {t_init - t_start:.3f}s, "
                f"first step {t_first - t_init:.3f}s",
                flush=True,
            )
        if args.fail_rank == rank and step == args.steps // 2:
            raise RuntimeError(f"rank {rank} failed on purpose at step {step}")

    # Every rank must hold identical weights after DDP: all-reduce a checksum to prove it.
    checksum = sum(p.detach().sum() for p in model.parameters()).reshape(1).to(device)
    gathered = checksum.clone()
    dist.all_reduce(gathered)
    agree = torch.allclose(gathered / world, checksum)
    print(
        f"rank {rank}/{world} lr={args.lr} final loss {loss.item():.4f} checksum {checksum.item():.6f} "
        f"ranks agree: {agree}",
        flush=True,
    )

    # Tear down in this order: gloo threads otherwise abort the interpreter at exit (SIGABRT).
    del model, optimizer
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
