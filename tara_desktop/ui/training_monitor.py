"""Watching a training job: live loss curve (train + validation), numbers, progress, log and results.

It is fed the job's events (dicts with a ``type``: started, log, metrics, eval, checkpoint, samples,
done, cancelled), as the training worker sends them.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tara_desktop.ui import theme


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainingMonitor(QWidget):
    """The right-hand side of the Training tab."""

    STATS = (("step", "Step"), ("epoch", "Epoch"), ("lr", "Learning rate"), ("tokens_per_s", "Tokens/s"),
             ("elapsed", "Elapsed"), ("eta", "Remaining"), ("cpu_percent", "CPU"), ("rss_mb", "RAM"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        c = theme.current()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(background=c.base)
        self.plot.setAccessibleName("Loss curve")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.addLegend(offset=(-10, 10))
        self.train_curve = self.plot.plot([], [], pen=pg.mkPen(c.accent, width=2), name="training")
        self.val_curve = self.plot.plot([], [], pen=pg.mkPen("#e09a2d", width=2), symbol="o", symbolSize=6,
                                        symbolBrush="#e09a2d", name="validation")
        self.plot.setMinimumHeight(220)
        grid = QGridLayout()
        self.values: dict[str, QLabel] = {}
        for i, (key, label) in enumerate(self.STATS):
            name = QLabel(label + ":", self)
            name.setObjectName("Muted")
            value = QLabel("–", self)
            value.setAccessibleName(label)
            grid.addWidget(name, i // 4, (i % 4) * 2)
            grid.addWidget(value, i // 4, (i % 4) * 2 + 1)
            self.values[key] = value
        self.progress = QProgressBar(self)
        self.progress.setAccessibleName("Training progress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.result = QLabel("", self)
        self.result.setWordWrap(True)
        self.samples = QTableWidget(0, 3, self)
        self.samples.setHorizontalHeaderLabels(["Prompt", "Before", "After"])
        self.samples.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.samples.verticalHeader().setVisible(False)
        self.samples.setAccessibleName("Sample answers before and after")
        self.samples.setVisible(False)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setAccessibleName("Training log")
        self.log.setMaximumBlockCount(2000)
        layout.addWidget(self.plot, 3)
        layout.addLayout(grid)
        layout.addWidget(self.progress)
        layout.addWidget(self.result)
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.samples)
        split.addWidget(self.log)
        layout.addWidget(split, 2)
        self.reset()

    def reset(self) -> None:
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.val_steps: list[float] = []
        self.val_losses: list[float] = []
        self.total_steps = 0
        self.train_curve.setData([], [])
        self.val_curve.setData([], [])
        for v in self.values.values():
            v.setText("–")
        self.progress.setValue(0)
        self.result.setText("")
        self.samples.setRowCount(0)
        self.samples.setVisible(False)
        self.log.clear()

    def add_log(self, message: str) -> None:
        self.log.appendPlainText(message)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "started":
            self.total_steps = int(event.get("total_steps") or 0)
            resumed = event.get("resumed_from")
            self.add_log(f"training {event.get('train_samples')} samples, validating on "
                         f"{event.get('validation_samples')}, {self.total_steps} steps"
                         + (f", resumed from step {resumed}" if resumed else ""))
        elif kind == "log":
            self.add_log(str(event.get("message", "")))
        elif kind == "metrics":
            self._on_metrics(event)
        elif kind == "eval":
            loss = event.get("val_loss")
            if isinstance(loss, int | float):
                self._add_val(float(event.get("step", 0)), float(loss))
                ppl = event.get("perplexity")
                self.add_log(f"validation loss {event.get('when', '')}: {loss:.4f}"
                             + (f" (perplexity {ppl:.2f})" if isinstance(ppl, int | float) else ""))
        elif kind == "checkpoint":
            self.add_log(f"checkpoint saved at step {event.get('step')}")
        elif kind == "samples":
            self._show_samples(event.get("samples") or [])
        elif kind == "done":
            self._show_result(event.get("result") or {})
        elif kind == "cancelled":
            self.add_log(f"stopped at step {event.get('step')}; it can be resumed from its last checkpoint")

    def _on_metrics(self, m: dict[str, Any]) -> None:
        step = float(m.get("step", len(self.steps) + 1))
        if isinstance(m.get("loss"), int | float):
            self.steps.append(step)
            self.losses.append(float(m["loss"]))
            self.train_curve.setData(self.steps, self.losses)
        if isinstance(m.get("val_loss"), int | float):
            self._add_val(step, float(m["val_loss"]))
        total = int(m.get("total_steps") or self.total_steps or 0)
        self.total_steps = total
        self.values["step"].setText(f"{int(step)} / {total}" if total else str(int(step)))
        if isinstance(m.get("epoch"), int | float):
            self.values["epoch"].setText(f"{m['epoch']:.2f}")
        if isinstance(m.get("lr"), int | float):
            self.values["lr"].setText(f"{m['lr']:.2e}")
        if isinstance(m.get("tokens_per_s"), int | float):
            self.values["tokens_per_s"].setText(f"{m['tokens_per_s']:.0f}")
        self.values["elapsed"].setText(_duration(m.get("elapsed")))
        self.values["eta"].setText(_duration(m.get("eta")))
        if isinstance(m.get("cpu_percent"), int | float):
            self.values["cpu_percent"].setText(f"{m['cpu_percent']:.0f}%")
        if isinstance(m.get("rss_mb"), int | float):
            self.values["rss_mb"].setText(f"{m['rss_mb']:.0f} MB")
        if total:
            self.progress.setValue(int(1000 * step / total))

    def _add_val(self, step: float, loss: float) -> None:
        self.val_steps.append(step)
        self.val_losses.append(loss)
        self.val_curve.setData(self.val_steps, self.val_losses)

    def _show_samples(self, samples: list[dict[str, str]]) -> None:
        self.samples.setRowCount(0)
        for s in samples:
            r = self.samples.rowCount()
            self.samples.insertRow(r)
            for c, key in enumerate(("prompt", "before", "after")):
                self.samples.setItem(r, c, QTableWidgetItem(str(s.get(key, ""))))
        self.samples.setVisible(bool(samples))

    def _show_result(self, r: dict[str, Any]) -> None:
        def num(key: str) -> str:
            v = r.get(key)
            return f"{v:.3f}" if isinstance(v, int | float) else "–"

        self.progress.setValue(1000)
        self.result.setText(
            f"<b>Done.</b> Validation loss {num('val_loss_before')} → {num('val_loss_after')}, "
            f"perplexity {num('perplexity_before')} → {num('perplexity_after')}. "
            f"Adapter: {r.get('adapter_dir', '')}"
        )
