"""Your answers to the exercises of learning_guide.md §9 that ask for new code.

`python exercises/check.py N` imports this file and checks what you wrote. A function that still
raises NotImplementedError counts as "not attempted yet". Every other exercise is done in the
notebooks themselves (train_model.ipynb regenerates mdlm_model.py, which the checker imports).
"""

import torch


def gumbel_step(logits, z, t, s, *, mask_id, dtype, generator):
    """Exercise 8: one ancestral step from t to s, the way MDLM's original code draws it.

    logits (B, L, V) float32, x_theta's logits at z_t; z (B, L) long, mask_id where masked.
    For every masked position, one categorical draw over V + 1 outcomes: token v with
    probability (alpha_s - alpha_t) / (1 - alpha_t) * x_theta(v), staying masked with
    probability (1 - alpha_s) / (1 - alpha_t); drawn by the Gumbel-max trick, with the
    probabilities and the uniform noise (from `generator`, on the CPU) in `dtype`:
    float32 or float64 (a torch dtype). Visible positions keep their token. Returns z_s (B, L).
    """
    raise NotImplementedError


def conditional_bound(model, windows, *, start, end, num_times=8, seed=0) -> torch.Tensor:
    """Exercise 9: the NELBO of positions start..end - 1 of each window given all the others.

    windows (W, L) long, held-out tokens. Only the middle is ever masked; the given tokens stay
    visible at every t. A time-conditioned network is told the fraction of the window actually
    masked, t * (end - start) / L. Returns (W,) nats per middle token: the weighted masked
    cross-entropy averaged over num_times times, divided by the number of middle positions
    (not by L).
    """
    raise NotImplementedError
