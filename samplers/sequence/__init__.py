"""The batched two-endpoint sequence every feature stands on: schedules, seeds, noise, step noise,
conditioning, positive branches, frame sizes and guidance, prompt lengths, shares, the run wrapper and the sampler."""
