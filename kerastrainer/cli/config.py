"""``kt.cli.CLI``: fit / validate / test / predict from YAML config files and typed options, in the
shape of Lightning's ``LightningCLI``, built on jsonargparse (the ``cli`` extra)."""

from __future__ import annotations

import os
import random
import sys
from typing import Any, List, Optional, Union

SUBCOMMANDS = {
    "fit": "train a module (resume with --ckpt_path last|best|PATH)",
    "validate": "run one validation pass",
    "test": "run one test pass",
    "predict": "predict on the data's predict split",
}
SECTIONS = ("trainer", "model", "data", "seed_everything", "ckpt_path")


def require_jsonargparse():
    """Imports jsonargparse, or says which extra installs it.

    Raises:
        ModuleNotFoundError: jsonargparse is missing (``pip install kerastrainer[cli]``).
    """
    try:
        import jsonargparse
    except ImportError as error:
        raise ModuleNotFoundError(
            "kerastrainer's config-file CLI (kerastrainer fit|validate|test|predict, kt.cli.CLI) "
            "needs jsonargparse. Install it with `pip install kerastrainer[cli]`.") from error
    return jsonargparse


class CLI:
    """Parses a command line (and the config files it names), builds the Trainer, the module and
    the DataModule, seeds, and runs the subcommand.

    The sections are ``trainer`` (every Trainer flag; ``callbacks`` and ``logger`` take
    ``class_path``/``init_args``), ``model`` and ``data`` (the ``__init__`` arguments of the module
    and DataModule class, or ``class_path``/``init_args`` when no class is given),
    ``seed_everything`` (``true``: a random seed, recorded in the saved config; an integer; ``false``:
    no seeding) and ``ckpt_path``. Options are typed from type hints and documented from
    docstrings: ``--trainer.max_epochs 2``, ``--model.units 8``. Sources apply in order: defaults,
    each ``--config`` file, then each option, the later winning. ``--print_config`` prints the
    resolved YAML and exits; a fit saves it as ``config.yaml`` in the run folder.

    Args:
        module_class: the `TrainModule` subclass to build; ``None``: any, named by
            ``model.class_path``.
        datamodule_class: the DataModule subclass; ``None``: any, named by ``data.class_path``.
        args: the arguments (default ``sys.argv[1:]``), a list or a dict of the sections.
        run: run the subcommand (else only build: ``cli.trainer``, ``cli.model``, ...).
        save_config: write the resolved config into the run folder.

    Raises:
        ModuleNotFoundError: jsonargparse is missing (``pip install kerastrainer[cli]``).
        SystemExit: a bad option or value (the message names it), ``--help``, ``--print_config``.

    Examples:
        >>> # main.py
        >>> if __name__ == "__main__":  # doctest: +SKIP
        ...     kt.cli.CLI(DigitModule, DigitData)  # python main.py fit --config cfg.yaml
    """

    def __init__(self, module_class: Any = None, datamodule_class: Any = None, *,
                 args: Any = None, run: bool = True, save_config: bool = True) -> None:
        self.jsonargparse = require_jsonargparse()
        self.module_class, self.datamodule_class = module_class, datamodule_class
        self.subparsers: dict[str, Any] = {}
        self.parser = self._build_parser()
        self.config = self.parser.parse_args(args)
        self.subcommand: str = self.config["subcommand"]
        section = self.config[self.subcommand]
        if section["seed_everything"] is True:
            section["seed_everything"] = random.randint(0, 2**32 - 1)  # recorded: the run repeats
        if section["seed_everything"] is not False:
            from kerastrainer.seed import seed_everything

            seed_everything(int(section["seed_everything"]))
        built = self._instantiate(section)
        self.trainer = built["trainer"]
        self.model = built["model"]
        self.datamodule = built.get("data")
        if save_config:
            from kerastrainer.cli.save_config import SaveConfig

            text = self.subparsers[self.subcommand].dump(section)  # every key, null ones too
            self.trainer.callbacks.append(SaveConfig(text))
        self.result = self.run() if run else None

    def run(self) -> Any:
        """Runs the subcommand: ``trainer.fit(model, datamodule=data, ckpt_path=...)`` (or
        ``validate``/``test``/``predict``); returns what it returned. ``predict`` also writes the
        predictions to ``<log_dir>/predictions.npy`` (``.npz`` for several outputs)."""
        if self.datamodule is None:
            self.parser.error(f"{self.subcommand} needs data: add a `data:` section to the config "
                              "(class_path and init_args of a DataModule), or --data.class_path.")
        ckpt_path = self.config[self.subcommand]["ckpt_path"]
        result = getattr(self.trainer, self.subcommand)(self.model, datamodule=self.datamodule,
                                                        ckpt_path=ckpt_path)
        if self.subcommand == "predict" and self.trainer.is_global_zero:
            print(f"Predictions: {save_predictions(result, self.trainer.log_dir)}")
        return result

    # ------------------------------------------------------------------ building
    def _build_parser(self):
        parser = self.jsonargparse.ArgumentParser(
            prog="kerastrainer", description="Train, validate, test or predict from config files.")
        commands = parser.add_subcommands(required=True, dest="subcommand")
        for name, summary in SUBCOMMANDS.items():
            sub = self.jsonargparse.ArgumentParser(description=summary)
            self._add_arguments(sub)
            self.subparsers[name] = sub
            commands.add_subcommand(name, sub, help=summary)
        return parser

    def _add_arguments(self, parser) -> None:
        import keras

        from kerastrainer.callbacks.base import Callback
        from kerastrainer.data.datamodule import DataModule
        from kerastrainer.flags import TrainerFlags
        from kerastrainer.loggers.base import Logger
        from kerastrainer.module import TrainModule

        parser.add_argument("-c", "--config", action=self.jsonargparse.ActionConfigFile,
                            help="a YAML config file; give several to apply them in order")
        # The flags' own class: its field types resolve (the Trainer's private annotations do not);
        # the Trainer is made from them in _instantiate.
        parser.add_class_arguments(TrainerFlags, "trainer", skip={"callbacks", "logger"},
                                   fail_untyped=False, instantiate=False)
        parser.add_argument("--trainer.callbacks", default=None,
                            type=Optional[List[Union[Callback, keras.callbacks.Callback]]],
                            help="callbacks (class_path/init_args), kerastrainer's or Keras's")
        parser.add_argument("--trainer.logger", type=Union[bool, Logger, List[Logger]], default=True,
                            help="true: CSV (and TensorBoard when installed); false; or loggers")
        if self.module_class is not None:
            parser.add_class_arguments(self.module_class, "model", fail_untyped=False)
        else:
            parser.add_subclass_arguments(TrainModule, "model", required=True, fail_untyped=False)
        if self.datamodule_class is not None:
            parser.add_class_arguments(self.datamodule_class, "data", fail_untyped=False)
        else:
            parser.add_subclass_arguments(DataModule, "data", required=False, fail_untyped=False)
        parser.add_argument("--seed_everything", type=Union[bool, int], default=True,
                            help="true: a random seed (saved in the config); an integer; false")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="a checkpoint to resume or evaluate: last, best or a path")

    def _instantiate(self, section) -> Any:
        """The section's objects; a refusal of a value (a Trainer flag out of range, a module
        argument) ends the command with its message, as a bad option does."""
        from kerastrainer.trainer import Trainer

        parser = self.subparsers[self.subcommand]
        build = getattr(parser, "instantiate", None) or parser.instantiate_classes  # 4.49 renamed it
        try:
            built = build(section)
            built["trainer"] = Trainer(**built["trainer"].as_dict() if hasattr(built["trainer"], "as_dict")
                                       else dict(built["trainer"]))
        except (ValueError, TypeError) as error:
            parser.error(str(error))
        return built


def save_predictions(predictions: Any, folder: str) -> str:
    """Writes ``predictions`` (an array, or a dict / list of them) into ``folder`` atomically;
    returns the file's path."""
    import io

    import numpy as np

    from kerastrainer.checkpoint_io import atomic_write_bytes

    buffer = io.BytesIO()
    if isinstance(predictions, dict):
        arrays: dict[str, Any] = {str(key): np.asarray(value) for key, value in predictions.items()}
        np.savez(buffer, **arrays)
        name = "predictions.npz"
    elif isinstance(predictions, (list, tuple)):
        np.savez(buffer, *[np.asarray(value) for value in predictions])
        name = "predictions.npz"
    else:
        np.save(buffer, np.asarray(predictions))
        name = "predictions.npy"
    path = os.path.join(folder, name)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def add_working_directory() -> None:
    """Lets ``class_path: mymodule.MyModule`` name a module in the working directory, as
    ``python -m`` does (a console script's ``sys.path`` starts with its own folder)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
