"""The hooks a TrainModule may define: the Callback hooks, without the trainer and module arguments."""

from __future__ import annotations


class ModuleHooks:
    """No-op hooks a [`TrainModule`][kerastrainer.TrainModule] inherits; override any of them.

    They are the hooks of [`kerastrainer.Callback`][kerastrainer.Callback], called at the same points (after the
    plain callbacks, before the monitors), with ``self`` the module and ``self.trainer`` the Trainer.
    """

    def configure_callbacks(self):
        """Callbacks this module brings to every run of a Trainer (Lightning's hook): a callback
        or a list. One of the same type as a Trainer callback replaces it (``ModelCheckpoint``
        still runs last); Keras callbacks are added beside the Trainer's.

        Returns:
            ``[]`` unless overridden.

        Example:
            >>> def configure_callbacks(self):  # doctest: +SKIP
            ...     return [kt.callbacks.EarlyStopping(monitor="val_acc", mode="max")]
        """
        return []

    def setup(self, stage):
        """See [`kerastrainer.Callback.setup`][kerastrainer.Callback.setup]."""

    def teardown(self, stage):
        """See [`kerastrainer.Callback.teardown`][kerastrainer.Callback.teardown]."""

    def on_fit_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_fit_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_sanity_check_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_sanity_check_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_train_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_train_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_train_epoch_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_train_epoch_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_train_batch_start(self, batch_idx):
        """See [`kerastrainer.Callback`][kerastrainer.Callback]; the module's may return ``-1`` to
        end the training epoch before this batch (Lightning's rule: the epoch's end hooks and
        checkpoints still run, its end-of-epoch validation does not)."""
    def on_train_batch_end(self, outputs, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_epoch_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_epoch_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_batch_start(self, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_validation_batch_end(self, outputs, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_epoch_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_epoch_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_batch_start(self, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_test_batch_end(self, outputs, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_epoch_start(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_epoch_end(self): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_batch_start(self, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_predict_batch_end(self, outputs, batch_idx): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_after_backward(self, gradients, variables): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_before_optimizer_step(self, optimizer): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_save_checkpoint(self, checkpoint): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_load_checkpoint(self, checkpoint): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
    def on_exception(self, exception): """See [`kerastrainer.Callback`][kerastrainer.Callback]."""
