"""Quickstart: a plain PyTorch loop on scikit-learn's digits, recorded with two added lines.

python examples/quickstart.py            # writes runs/quickstart.h5 (a progress bar in a terminal)
dyntrace plot runs/quickstart.h5         # writes runs/quickstart_plots/
"""

import argparse
import math
import os

import torch
from sklearn.datasets import load_digits
from torch import nn
from tqdm import tqdm

import dyntrace

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("-o", "--out", default="runs/quickstart.h5")
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
x_train, y_train, x_val, y_val = x[:1500], y[:1500], x[1500:], y[1500:]

# An MLP with three kinds of activation, so every activation panel has something to show.
model = nn.Sequential(
    nn.Linear(64, 64),
    nn.Tanh(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.Sigmoid(),
    nn.Linear(64, 10),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
batches = math.ceil(len(x_train) / 64)
# progress on stderr in a terminal, nothing when piped or logged (disable=None)
progress = tqdm(total=args.epochs * batches, unit="step", desc="training", disable=None)
with dyntrace.Recorder(model, optimizer, args.out, every=10) as rec:  # <- line 1
    for epoch in range(args.epochs):
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            rec.log(loss=loss)  # <- line 2
            progress.update()
        with torch.no_grad():
            logits = model(x_val)
            accuracy = (logits.argmax(1) == y_val).float().mean()
            rec.log(val_loss=loss_fn(logits, y_val), val_accuracy=accuracy)
        progress.set_postfix(val_accuracy=f"{accuracy.item():.3f}", refresh=False)
progress.close()

print(f"wrote {args.out}: {rec.step} steps; now run: dyntrace plot {args.out}")
