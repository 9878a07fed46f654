"""Subject models: the embedded SmolLM2 loader and adapters over TransformerLens and nnsight."""
