"""examples/train_ddp.py with timestamps: the workload of ``bench.run_loop`` and ``bench.hot``.

The benchmark copies this file into its workspace as ``train_ddp.py`` and bumps ``GEN`` (a
one-line edit) before every measured iteration. Each rank prints two ``BENCH`` lines with
``time.time()`` stamps (one machine, so one clock for every process):

- ``BENCH first``: the rank's first line (after ``init_process_group``), with ``start`` (script
  start, interpreter already up), ``import`` (torch imported) and ``init`` (process group ready);
- ``BENCH step``: the first DDP training step is done.

Under ``neo run --hot`` the script re-runs as ``__main__`` in the same process: the torch import
is cached and ``init_process_group`` returns the live group, so those phases cost ~0.
"""

from __future__ import annotations

import time

T_START = time.time()

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

T_IMPORT = time.time()
GEN = 0  # the benchmark's edit: bumped before every measured iteration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    t_init = time.time()
    print(
        f"BENCH first gen={GEN} rank={rank} pid={os.getpid()} start={T_START:.6f} "
        f"import={T_IMPORT:.6f} init={t_init:.6f}",
        flush=True,
    )

    torch.manual_seed(0)
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device),
        device_ids=[device.index] if cuda else None,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(1000 + rank)
    true_w = torch.arange(32, dtype=torch.float32) / 32
    for step in range(args.steps):
        x = torch.randn(args.batch, 32, generator=gen)
        y = (x @ true_w).unsqueeze(1)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step == 0:
            print(f"BENCH step gen={GEN} rank={rank} step={time.time():.6f}", flush=True)

    # Same teardown order as the example (gloo threads otherwise abort the interpreter at exit).
    del model, optimizer
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
