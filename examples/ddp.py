"""Data-parallel training (DDP, gloo, CPU) recorded into one run file by rank 0.

    torchrun --nproc_per_node 2 examples/ddp.py      # writes runs/ddp.h5
    python examples/ddp.py                           # the same as a one-process group
    dyntrace plot runs/ddp.h5

Every rank builds the same Recorder; rank 0 alone creates the file. Activation statistics
cover the global batch (every rank's shard, reduced on record steps), gradients and weights
are rank 0's (DDP makes them equal on every rank), the loss is the mean over the ranks.
After training, the ranks split the grid of a loss-landscape plane and rank 0 stores it.
"""

import argparse
import os
import socket

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import dyntrace
from dyntrace.landscape import distributed as landscape

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("-o", "--out", default="runs/ddp.h5")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch", type=int, default=128, help="global batch, split over the ranks")
parser.add_argument("--mode", default="reduce", choices=["reduce", "rank0", "per_rank"])
parser.add_argument("--resolution", type=int, default=21, help="landscape grid points per axis")
args = parser.parse_args()

if "RANK" not in os.environ:  # plain `python examples/ddp.py`: a group of one process
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
if args.batch % world:
    raise SystemExit(f"--batch {args.batch} does not split evenly over {world} ranks")

torch.manual_seed(0)  # the same data order and initial weights on every rank
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
x_train, y_train, x_val, y_val = x[:1500], y[:1500], x[1500:], y[1500:]

model = nn.Sequential(
    nn.Linear(64, 64),
    nn.Tanh(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.Sigmoid(),
    nn.Linear(64, 10),
)
ddp = DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

if rank == 0:
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
config = {
    "example": "ddp",
    "world_size": world,
    "global_batch": args.batch,
    "epochs": args.epochs,
    "mode": args.mode,
}
shard = args.batch // world
with dyntrace.Recorder(ddp, optimizer, args.out, every=10, config=config, distributed=args.mode) as rec:
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
        for batch in order.split(args.batch):
            if len(batch) < args.batch:
                break  # equal shards on every rank: the mean of the ranks' losses is the global one
            mine = batch[rank * shard : (rank + 1) * shard]  # this rank's slice of the global batch
            optimizer.zero_grad()
            loss = loss_fn(ddp(x_train[mine]), y_train[mine])
            loss.backward()
            optimizer.step()
            rec.log(loss=loss, reduce="mean")
        if rank == 0:  # the weights are the same on every rank: rank 0 validates on all of it
            with torch.no_grad():
                logits = model(x_val)  # the inner module: DDP's forward is collective
            rec.log(val_loss=loss_fn(logits, y_val), val_accuracy=(logits.argmax(1) == y_val).float().mean())

# The file is closed; every rank evaluates its share of the grid, rank 0 adds the plane.
plane = landscape.plane(
    model,
    loss_fn,
    (x_train[:512], y_train[:512]),
    resolution=(args.resolution, args.resolution),
    method="sequential",
    path=args.out,
    name="plane",
)
if rank == 0:
    print(
        f"wrote {args.out}: {rec.step} steps on {world} rank(s), landscape {plane.loss.shape} "
        f"in {plane.meta['seconds']:.1f} s; now run: dyntrace plot {args.out}"
    )
dist.destroy_process_group()
