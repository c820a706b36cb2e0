"""TARA Desktop: a local, private AI assistant."""

import os

__version__ = "0.1.0"

# llama.cpp's OpenMP worker threads wait for each other many times per token. GNU OpenMP's default spins
# for ~300,000 iterations first: on a busy machine that steals the core the awaited thread needs (6.6 tok/s
# instead of 38 with one core taken, bundled model, 2 threads). Never spinning (OMP_WAIT_POLICY=PASSIVE)
# pays a sleep and a wake-up each time instead (26 tok/s on an idle machine, 44 ms of CPU per token). A
# short spin is the best of both: 69-72 tok/s idle at 27 ms CPU per token, 30 tok/s with one or both
# cores taken by other work. Must be set before llama_cpp is first imported.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
