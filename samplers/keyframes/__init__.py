"""Keyframe travels K_0 -> K_1 -> ...: the timeline text, easing, the plan into batched runs, their sampling."""
