"""A SpeechBrain model folder, loaded once through SpeechBrain's own inference classes.

The ASR and emotion engines (:class:`tara_desktop.voice.asr_engines.SpeechBrainAsr`,
:class:`tara_desktop.voice.emotion.SpeechBrainEmotion`) are both a :class:`SpeechBrainModel`: a folder, the
interface class that reads it (given, written in the folder's marker by a download, or guessed from its
files) and a lazily loaded, cached model. SpeechBrain (and torch) are imported only when a model loads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tara_desktop.errors import TaraError

if TYPE_CHECKING:
    from speechbrain.inference.interfaces import Pretrained


class SpeechBrainError(TaraError):
    """A SpeechBrain model folder is missing, incomplete or names an interface SpeechBrain does not have."""


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_offline_lock = threading.Lock()
# SpeechBrain's HuggingFace lobe (1.1 / 1.0 module paths).
_HF_LOBE_LOGGERS = ("speechbrain.integrations.huggingface.huggingface",
                    "speechbrain.lobes.models.huggingface_transformers.huggingface")


def _no_transfer_warnings(record: logging.LogRecord) -> bool:
    """A downloaded model's encoder folder holds a link to its SpeechBrain checkpoint: the lobe first reads it
    with its own key mapping, matches none of the keys and warns once per key with the whole model printed;
    the Pretrainer then loads that checkpoint properly. Those warnings are noise."""
    return not str(record.msg).startswith("During parameter transfer")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The model hub switched off for a load: a downloaded folder has everything it needs (the download
    fetched the encoder's config too), so a load that would reach the network fails instead of doing so.

    Sets HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE and huggingface_hub's constant (read once at its import) for
    the duration, then restores them; also drops the lobe's parameter-transfer warnings (see
    :func:`_no_transfer_warnings`)."""
    with _offline_lock:
        saved = {k: os.environ.get(k) for k in _OFFLINE_VARS}
        for k in _OFFLINE_VARS:
            os.environ[k] = "1"
        import huggingface_hub.constants as hub_constants

        was = hub_constants.HF_HUB_OFFLINE
        hub_constants.HF_HUB_OFFLINE = True
        lobe_loggers = [logging.getLogger(name) for name in _HF_LOBE_LOGGERS]
        for lg in lobe_loggers:
            lg.addFilter(_no_transfer_warnings)
        try:
            yield
        finally:
            for lg in lobe_loggers:
                lg.removeFilter(_no_transfer_warnings)
            hub_constants.HF_HUB_OFFLINE = was
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def load_speechbrain(model_cls: type[Pretrained], folder: Path) -> Pretrained:
    """Load a SpeechBrain pretrained interface from a local folder, with the model hub off (:func:`hub_offline`)."""
    folder = Path(folder)
    if not (folder / "hyperparams.yaml").is_file():
        raise SpeechBrainError(f"{folder}: no hyperparams.yaml; the model folder is missing or incomplete")
    from speechbrain.utils.fetching import LocalStrategy

    with hub_offline():
        model = model_cls.from_hparams(
            source=str(folder), savedir=str(folder), run_opts={"device": "cpu"},
            local_strategy=LocalStrategy.NO_LINK,
        )
    _quiet_label_encoders(model)
    return model


def load_speechbrain_foreign(folder: Path, module_file: str, class_name: str) -> Pretrained:
    """Load a SpeechBrain model that brings its own interface class (``custom_interface.py`` on the hub)
    through ``speechbrain.inference.interfaces.foreign_class``."""
    folder = Path(folder)
    if not (folder / "hyperparams.yaml").is_file() or not (folder / module_file).is_file():
        raise SpeechBrainError(f"{folder}: hyperparams.yaml or {module_file} is missing; download the model again")
    from speechbrain.inference.interfaces import foreign_class
    from speechbrain.utils.fetching import LocalStrategy

    with hub_offline():
        model: Pretrained = foreign_class(source=str(folder), savedir=str(folder), pymodule_file=module_file,
                                          classname=class_name, run_opts={"device": "cpu"},
                                          local_strategy=LocalStrategy.NO_LINK)
    _quiet_label_encoders(model)
    return model


def _quiet_label_encoders(model: Pretrained) -> None:
    for name in ("tokenizer", "label_encoder"):
        encoder = getattr(model.hparams, name, None)
        lab2ind = getattr(encoder, "lab2ind", None)
        if encoder is not None and lab2ind and hasattr(encoder, "expect_len"):
            encoder.expect_len(len(lab2ind))  # the loaded labels are the model's: say so, no warning


class SpeechBrainModel:
    """A SpeechBrain model folder and the interface that reads it; :meth:`load` loads it once (thread-safe)
    and returns the same object on every later call. Subclasses say how to guess the interface from the
    folder's files and how to load a given interface."""

    name = "speechbrain"

    def __init__(self, model_dir: Path, *, interface: str | None = None, model: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.model = model or self.model_dir.name
        self.interface = interface
        self._loaded: Pretrained | None = None
        self._lock = threading.Lock()

    def interface_name(self) -> str:
        """The interface given, else the one a download wrote into the folder's marker, else a guess."""
        if self.interface:
            return self.interface
        from tara_desktop.voice.models import read_marker

        return read_marker(self.model_dir).get("interface") or self._guess_interface()

    def _guess_interface(self) -> str:
        raise NotImplementedError

    def _load(self, interface: str) -> Pretrained:
        raise NotImplementedError

    def load(self) -> Pretrained:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load(self.interface_name())
            return self._loaded
