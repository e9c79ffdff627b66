"""Test and demo machinery: the ComfyUI host, random-weight models, workflow conversion, headless runs."""
