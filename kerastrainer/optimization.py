"""Setting up what ``configure_optimizer()`` returned: checks, loss scaling, clipping, building."""

from __future__ import annotations

import keras

from kerastrainer.building import trainable_candidates
from kerastrainer.lr import Scheduler


def configure_optimization(module, *, build=None, clip_val=None, clip_algorithm: str = "norm",
                           loss_scaling: bool = False):
    """Calls ``module.configure_optimizer()`` and makes its optimizer ready to train (call it inside
    the strategy's scope): wrapped for loss scaling, clipping set, built eagerly so that no variable
    is created lazily inside a compiled step.

    ``build()`` builds the module in between: once ``module.optimizer`` is set (a custom step
    traced to build the module may apply it, which builds a manual optimization's optimizers) and
    before an automatic optimization's optimizer is built on every variable the module has then.

    Returns:
        ``(optimizer, scheduler)``: the optimizer (or dict of named optimizers) to set as
        ``module.optimizer``, and its `Scheduler` (one that does nothing
        when there is none).

    Raises:
        TypeError: ``configure_optimizer`` returned something else than an optimizer.
        ValueError: with manual optimization, an optimizer that was not built.
    """
    optimizer, scheduler = check_optimizer(module, module.configure_optimizer())
    if loss_scaling and isinstance(optimizer, keras.optimizers.Optimizer) and \
            not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients
    if build is not None:
        module.optimizer = optimizer  # what the step uses while it is traced
        build()
    if not isinstance(optimizer, dict):
        # Built on frozen variables too, so unfreezing later (fine-tuning) needs no rebuild.
        optimizer.build(trainable_candidates(module))
    else:
        unbuilt = [name for name, opt in optimizer.items() if not opt.built]
        if unbuilt:
            raise ValueError(
                f"{type(module).__name__}.configure_optimizer(): with manual optimization, each "
                f"optimizer is built when training_step first applies it; {unbuilt} were never "
                "applied there (or training_step is the default one). Apply them in training_step, "
                "or build them on their variables in configure_optimizer, e.g. "
                "`opt.build(self.generator.trainable_variables)`.")
    if clip_val is not None:
        for opt in optimizer.values() if isinstance(optimizer, dict) else [optimizer]:
            set_gradient_clipping(opt, clip_val, clip_algorithm)
    return optimizer, scheduler


def set_gradient_clipping(optimizer, value, algorithm) -> None:
    """Makes the optimizer clip (global norm or value) inside ``apply``, i.e. after loss-scale
    unscaling and after accumulation.

    Raises:
        ValueError: the optimizer already clips (``clipnorm``/``global_clipnorm``/``clipvalue``).
    """
    target = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer: its inner one
    if target.clipnorm or target.global_clipnorm or target.clipvalue:
        raise ValueError(
            "gradient_clip_val is set, but the optimizer already clips (clipnorm, global_clipnorm or "
            "clipvalue). Use one of the two. Received: "
            f"gradient_clip_val={value}, optimizer={type(target).__name__}")
    if algorithm == "norm":
        target.global_clipnorm = float(value)
    else:
        target.clipvalue = float(value)


def check_optimizer(module, optimizer):
    """Validates what ``configure_optimizer()`` returned; returns ``(optimizer, scheduler)``.

    Accepted: an optimizer; ``{"optimizer": opt, "lr_scheduler": ...}`` (Lightning's shape); or,
    with manual optimization, a dict of named optimizers.

    Raises:
        TypeError: not a Keras optimizer (or, with manual optimization, not a dict of them).
    """
    name = type(module).__name__
    if isinstance(optimizer, dict) and isinstance(optimizer.get("optimizer"),
                                                  keras.optimizers.Optimizer):
        extra = set(optimizer) - {"optimizer", "lr_scheduler"}
        if extra:
            raise ValueError(f"{name}.configure_optimizer() returned unknown keys {sorted(extra)}; "
                             "use 'optimizer' and 'lr_scheduler'.")
        scheduler = optimizer.get("lr_scheduler")
        return optimizer["optimizer"], (
            Scheduler.from_config(scheduler, f"{name}.configure_optimizer()") if scheduler
            else Scheduler())
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer, Scheduler()
    if isinstance(optimizer, dict) and optimizer and all(
        isinstance(o, keras.optimizers.Optimizer) for o in optimizer.values()
    ):
        if module.automatic_optimization:
            raise TypeError(
                f"{name}.configure_optimizer() returned a dict of optimizers {sorted(optimizer)}, which "
                "needs manual optimization: set `automatic_optimization = False` on the class and apply "
                "them in training_step."
            )
        return optimizer, Scheduler()
    raise TypeError(
        f"{name}.configure_optimizer() must return a keras.optimizers.Optimizer, e.g. "
        f"keras.optimizers.Adam(1e-3). Received: {optimizer!r} (type {type(optimizer).__name__})"
    )


def step_counter(module):
    """The optimizer's iteration counter, when it counts exactly the Trainer's optimizer steps.

    ``None`` with manual optimization (the step applies what it likes), with loss scaling (a step
    with non-finite gradients is skipped) and without trainable variables (nothing is applied).
    """
    optimizer = module.optimizer
    if (not module.automatic_optimization or not isinstance(optimizer, keras.optimizers.Optimizer)
            or isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            or not module.trainable_variables):
        return None
    return optimizer.iterations
