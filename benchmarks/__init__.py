"""Benchmarks of eeg2image-tf against the authors' code on the same machine (``make bench``)."""
