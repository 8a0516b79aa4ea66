"""Training: one run skeleton (:mod:`.run`, built from :mod:`.common`) and the three loops that run
in it: the EEG encoder (:mod:`.encoder`, selection in :mod:`.selection`), the GAN (:mod:`.gan`, with
:mod:`.gan_steps`, :mod:`.gan_state`, :mod:`.gan_data`, :mod:`.samples`) and the image classifier
(:mod:`.image_classifier`); their losses (:mod:`.losses`), DiffAugment (:mod:`.augment`) and the
fused Adam (:mod:`.fused_adam`)."""
