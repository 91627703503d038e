"""Waveforms: what the four stages do (collect, prepare, train, generate), one module per concern."""
