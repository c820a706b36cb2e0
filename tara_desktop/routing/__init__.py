"""Domain routing: which domain, model, adapter, system prompt and voice a message gets."""
