"""Driving denoising: coefficient schedules, noise, the batched sequence sampler, coefficient selection."""
