"""TARA Desktop: a local, private AI assistant."""

import os

__version__ = "0.1.0"

# llama.cpp's OpenMP worker threads spin while they wait by default; on a laptop that burns battery and,
# on a busy machine, slows decoding many times over. Must be set before llama_cpp is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
