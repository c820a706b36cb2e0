"""LoRA domain training: datasets, the training job, its supervision and recovery, and GGUF export.

Heavy libraries (torch, transformers, peft) are imported inside functions, so importing this package
is cheap.
"""
