"""torch optimizers the lecture writes by hand, as ``torch.optim.Optimizer`` subclasses.

The lecture's gradient descent and SGD update the parameters themselves (cells 48 and 59):

    with torch.no_grad():
        for p in model.parameters():
            p -= lr / (i + 1) * p.grad

`LectureSGD` is that update behind torch's optimizer interface, so that `parity.fit.train` runs
every fit as one ``zero_grad / backward / step`` loop. Why not ``torch.optim.SGD`` with a
``LambdaLR(lambda i: 1 / (i + 1))`` scheduler: SGD updates with ``p.add_(g, alpha=-lr)``, which
rounds differently from the lecture's ``p -= (lr / (i + 1)) * g`` (measured: one float32 ulp,
2.4e-7 on the lecture's linear fit, and 8.9e-16 in float64 on its quadratic one), and the
lecture's printed numbers come from the lecture's arithmetic.
"""

from __future__ import annotations

import torch


class LectureSGD(torch.optim.Optimizer):
    """``p -= lr / (k + 1) * p.grad`` at optimizer step s, with k = s // steps_per_epoch.

    Args:
      params: the parameters, e.g. ``module.parameters()``.
      lr: the base learning rate, > 0.
      steps_per_epoch: 1 for the lecture's gradient descent (k is the step); the number of
        batches per epoch for its SGD (k is the epoch).
    """

    def __init__(self, params, lr: float, steps_per_epoch: int = 1):
        super().__init__(params, {"lr": lr})
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        k = self.steps // self.steps_per_epoch
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] / (k + 1) * p.grad  # the lecture's arithmetic, as written
        self.steps += 1
        return loss


__all__ = ["LectureSGD"]
