"""Scoring frames against a text with CLIP: the math (selection.py) and the model files (clip_scorer.py)."""
