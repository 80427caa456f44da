"""What each kind of activation is, known to both sides without torch: the one source for
the recording side (the activations probe's histogram ranges and saturation) and the reading
side (which figures a layer belongs to)."""

from __future__ import annotations

__all__ = ["BOUNDS", "BOUNDED_KINDS", "NON_NEGATIVE"]

#: Output range of bounded activations (their histogram range; saturation is within ε of it).
BOUNDS = {
    "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "hardtanh": (-1.0, 1.0),
    "lstm": (-1.0, 1.0),  # h = o ⊙ tanh(c)
    "gru": (-1.0, 1.0),  # a convex mix of tanh outputs (from h₀ = 0)
    "rnn": (-1.0, 1.0),  # nonlinearity="tanh"
}
#: The kinds whose outputs saturate: the saturation figure's layers.
BOUNDED_KINDS = tuple(BOUNDS)
#: Kinds whose outputs are never negative (histograms on [0, h]); a unit is dead when it is 0.
NON_NEGATIVE = frozenset({"relu", "relu6", "softplus", "binarystep", "threshold", "rnn_relu"})
