"""Serving: the SavedModel module and its signatures (:mod:`.module`), and its export from a GAN run
or the published checkpoints (:mod:`.export`)."""
