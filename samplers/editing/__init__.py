"""Editing a real image: inversion of the image into noise and the hold of its attention while frames travel."""
