"""Text corpora, activation extraction and activation datasets."""
