"""Measuring frames: distances and the paper's sequence metrics (metrics.py), and scoring frames against a text
with CLIP: the math (selection.py) and the model files (clip_scorer.py)."""
