"""Typed, frozen configurations for every command, and the pipeline's profiles.

Each command parses its arguments into its dataclass (:mod:`.cli`) and hands it to library
functions, which save it as the run's ``config.json`` (:func:`eeg2image_tf.runs.prepare_run_dir`).
Defaults are the original code's hyper-parameters. What values a field may hold, and how a config
is recorded and compared, every class has from :class:`~.base.Config`; a class states here only what
is its own (fields that must agree, ``RESUMABLE_FIELDS``, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

from ..errors import ConfigError
from .base import Config, flag_of
from .rules import NOT_EMPTY, PRECISIONS, Rule, at_least, one_of

# Help of every --precision flag (the names are checked by .rules).
PRECISION_HELP = ("float32 (the original's arithmetic) | mixed_bfloat16 (fast on CPUs with "
                  "AVX512-BF16 or AMX, and on recent GPUs) | mixed_float16 (GPUs; losses scaled)")


def _precision_field(default: str = "float32", before: str = ""):
    """A ``precision`` field whose flag lists the choices (``add_config_arguments`` reads
    ``metadata["help"]``)."""
    return dataclasses.field(default=default, metadata={"help": before + PRECISION_HELP})


# How long a multi-worker collective waits for its peers (TensorFlow sees a dead peer sooner).
COLLECTIVE_TIMEOUT_S = 600.0
_STRATEGY_HELP = ("auto (the GPUs, else none) | mirrored (every local GPU, or CPU device) | multiworker "
                  "(processes or machines named by TF_CONFIG: README, More than one machine) | default")


def _strategy_field():
    return dataclasses.field(default="auto", metadata={"help": _STRATEGY_HELP})


def _latent_range_field():
    """Generation's ``latent_range``: the latents are U(-latent_range, latent_range); training's 1
    by default, below it the truncation trick (docs/realism-experiments.md, "How far outside the
    manifold, and the latents' range")."""
    return dataclasses.field(default=1.0, metadata={
        "help": "latents ~ U(-r, r); 1: training's range; below 1: the truncation trick "
                "(nearer the typical image, less variety)"})


def _collective_timeout_field():
    return dataclasses.field(default=COLLECTIVE_TIMEOUT_S, metadata={
        "help": "multiworker: seconds a collective waits for the other workers"})


# --------------------------------------------------------------------------------------------------
# Per-command configs
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PrepareDataConfig(Config):
    """``prepare_data``: ``mode`` is ``synthetic``, ``convert`` (pkl -> npz) or ``eegcvpr40`` (.pth -> set)."""

    mode: str
    out: str
    source: Optional[str] = None         # convert: the data.pkl; eegcvpr40: the dataset .pth
    splits_file: Optional[str] = None    # eegcvpr40 (--splits): block_splits_by_image_*.pth
    split_num: int = 0                   # eegcvpr40: which split of the file
    subject: int = 0                     # eegcvpr40: 0 = every subject, else that subject only
    window: tuple[int, int] = (20, 460)  # eegcvpr40: samples [start, end) of each trial
    images: Optional[str] = None         # eegcvpr40: ImageNet-style root of <wnid>/<name>.JPEG
    set_name: str = "char"               # synthetic: digit | char | cvpr40-synthetic
    seed: int = 45
    n_train: int = 2500
    n_test: int = 600
    images_per_class: int = 200          # training images per class
    test_images_per_class: int = 50

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()
    LOCATION_FIELDS: ClassVar[tuple[str, ...]] = ("out",)
    RULES = {"mode": one_of(("synthetic", "convert", "eegcvpr40")),
             "splits_file": NOT_EMPTY,
             "split_num": at_least(0), "subject": at_least(0),
             "window": Rule(lambda w: 0 <= w[0] < w[1], "START END with 0 <= START < END")}

    def check_together(self) -> None:
        if self.mode == "convert" and not self.source:
            raise ConfigError("prepare_data: --convert needs the data.pkl to read")
        if self.mode == "eegcvpr40" and not (self.source and self.splits_file):
            raise ConfigError("prepare_data: --eegcvpr40 needs the dataset .pth and --splits")


@dataclasses.dataclass(frozen=True)
class EncoderTrainConfig(Config):
    """``train_encoder``: two stacked LSTMs trained with the semi-hard triplet loss (docs/method.md section 3)."""

    data: str
    run: str
    epochs: int = 3000
    batch_size: int = 256
    learning_rate: float = 3e-4
    margin: float = 1.0
    seed: int = 45
    checkpoint_every: int = 10          # epochs
    max_to_keep: Optional[int] = None   # None keeps every checkpoint, as the original does
    feature_dim: int = 128
    hidden: int = 32
    # original (docs/method.md section 2) | zscore; None: the set's record, else original
    normalisation: Optional[str] = None
    n_clusters: Optional[int] = None    # None: the set's class count (runs record the values used)
    kmeans_random_state: int = 45
    jit: bool = False                   # same numbers; XLA's CPU sort makes the loss slower
    unroll: bool = True                 # LSTM steps written out (trials <= 64 samples): a little faster
    time_budget_s: Optional[float] = None  # stop (with a checkpoint) after this wall time
    strategy: str = _strategy_field()
    collective_timeout_s: float = _collective_timeout_field()

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("epochs", "time_budget_s", "max_to_keep", "jit",
                                                   "unroll", "strategy", "collective_timeout_s")
    OPEN_FIELDS: ClassVar[tuple[str, ...]] = ("normalisation", "n_clusters")


@dataclasses.dataclass(frozen=True)
class SelectEncoderConfig(Config):
    """``select_encoder``: k-means accuracy of every checkpoint's test features, t-SNE of the best."""

    run: str
    n_clusters: Optional[int] = None    # None: the encoder run's (recorded as used)
    random_state: int = 45
    tsne_perplexity: float = 40.0
    tsne_iterations: int = 700

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()


@dataclasses.dataclass(frozen=True)
class GanTrainConfig(Config):
    """``train_gan``: conditional DCGAN, hinge, DiffAugment, mode seeking (docs/method.md section 4)."""

    data: str
    images: str
    encoder: str
    run: str
    latent_dim: int = 128
    condition_dim: int = 128
    learning_rate: float = 3e-4
    # Not in the original, which trains both networks at one rate: the discriminator's own, to
    # hold it back or speed it up against the generator.
    discriminator_learning_rate: Optional[float] = dataclasses.field(default=None, metadata={
        "help": "the discriminator's Adam learning rate; None: --learning-rate, as the original"})
    beta_1: float = 0.2
    beta_2: float = 0.5
    batch_size: int = 128
    epochs: int = 300
    policy: str = "color,translation"
    mode_seeking_weight: float = 1.0
    seed: int = 45
    strategy: str = _strategy_field()
    collective_timeout_s: float = _collective_timeout_field()
    jit: bool = False                   # XLA is slower than oneDNN for these convolutions on CPU
    fast_discriminator: bool = True     # exact split of D's first conv (see models); same numbers
    fused_batch_norm: bool = True       # TF's fused BatchNorm kernel (models.layers); same numbers
    matmul_convs: Optional[bool] = dataclasses.field(default=None, metadata={  # models.matmul_conv
        "help": "small convolutions as exact matrix products; None: on unless a GPU is visible"})
    # float32 (the original's numbers) | mixed_bfloat16: bfloat16 arithmetic, float32 variables and
    # checkpoints; faster on CPUs with AVX512-BF16 or AMX (docs/performance.md) |
    # mixed_float16: the same for GPUs, with dynamic loss scaling (precision module).
    precision: str = _precision_field()
    checkpoint_every: int = 500         # steps
    sample_every: int = 500             # steps
    max_to_keep: int = 3
    max_steps: Optional[int] = None     # stop after this many steps in total (None: epochs decide)
    time_budget_s: Optional[float] = None
    normalisation: Optional[str] = None  # None: the encoder run's, else the set's (recorded as used)
    # class: the original's (a fixed random image of the trial's class) | stimulus: each trial's own
    # recorded stimulus (a set with image_train)
    pairing: str = "class"
    # Modes of the two networks in the G step. The defaults are what the authors' code ran
    # (docs/method.md section 7): their Generator.call and Discriminator.call are tf.functions
    # without a training argument, so the first trace of each (in the D step: G with
    # training=False, D with training=True) serves every later call. Running their code on TF 2.15
    # shows it: the G step calls the same traced functions, G's with BatchNorm is_training=False
    # and no spectral-norm update (their checkpoints agree: moving statistics still 0 and 1, sn_u
    # untouched), D's with is_training=True (batch statistics, moving statistics updated). The
    # modes their calls name (G with training=True, D with training=False in the G step) are
    # --generator-training --no-discriminator-training-in-g-step.
    generator_training: bool = False
    discriminator_training_in_g_step: bool = True
    # Not in the original: with the as-run generator, still run its spectral normalisation in its
    # step (BatchNorm stays on moving statistics). Nothing else bounds the as-run generator's
    # layers, whose gains grow until tanh saturates (docs/realism-experiments.md). Implied by
    # --generator-training.
    generator_spectral_norm: bool = False
    # > 0: also keep an exponential moving average of the generator's weights (not in the original),
    # ema = decay * ema + (1 - decay) * weights after every generator update; BatchNorm statistics
    # are copied. Samples, generate, evaluate, curve and export use it when a run has one (--no-ema:
    # the raw generator). 0.999 averages over about the last thousand iterations.
    ema_decay: float = 0.0

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = (
        "epochs", "max_steps", "time_budget_s", "checkpoint_every", "sample_every", "max_to_keep",
        "jit", "strategy", "collective_timeout_s", "fast_discriminator", "fused_batch_norm",
        "matmul_convs", "precision")
    OPEN_FIELDS: ClassVar[tuple[str, ...]] = ("normalisation",)
    # Runs recorded before a field existed ran with these values (not the field's current default).
    LEGACY_FIELD_VALUES: ClassVar[dict[str, Any]] = {"generator_training": True,
                                                     "discriminator_training_in_g_step": False,
                                                     "matmul_convs": False}


@dataclasses.dataclass(frozen=True)
class ImageClassifierConfig(Config):
    """``train_image_classifier``: a small CNN on the real images, for conditional accuracy."""

    images: str
    run: str
    epochs: int = 15
    batch_size: int = 32                # more, smaller steps: ~0.97 test accuracy after 6 epochs
    learning_rate: float = 2e-3         # peak of a cosine decay over the run
    seed: int = 45
    image_size: int = 64                # images are downscaled for speed; 128x128 inputs are resized
    strategy: str = _strategy_field()
    collective_timeout_s: float = _collective_timeout_field()

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("epochs", "strategy", "collective_timeout_s")


@dataclasses.dataclass(frozen=True)
class GenerateConfig(Config):
    """``generate``: batched per-class generation from test-set features (docs/method.md section 5).

    Either ``run`` (a GAN run directory: its config names data, images and encoder) or all of
    ``gan``, ``encoder`` and ``data`` (e.g. converted published checkpoints); an explicit path
    overrides the run's.
    """

    out: str
    run: Optional[str] = None
    gan: Optional[str] = None
    encoder: Optional[str] = None
    data: Optional[str] = None
    images: Optional[str] = None        # only for the class names; else the EEG set's
    per_class: int = 5000
    batch_size: int = 128               # images do not depend on it; the fastest measured end to end
    seed: int = 45
    jpeg_quality: int = 95
    writer_threads: int = 1             # one JPEG writer beside the generator is fastest on 2 cores
    # float32 (the original's numbers) | mixed_bfloat16 (faster with AVX512-BF16 or AMX; images equal
    # to bfloat16 rounding only: see the precision module) | mixed_float16 (for GPUs)
    precision: str = _precision_field()
    ema: bool = True                    # the run's weight-averaged generator when it has one
    latent_range: float = _latent_range_field()

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("batch_size", "writer_threads")
    # ``run`` names the GAN the images come from: two GANs must not share one output folder.
    LOCATION_FIELDS: ClassVar[tuple[str, ...]] = ("out",)

    def check_together(self) -> None:
        missing = [] if self.run else [flag_of(name) for name in ("gan", "encoder", "data")
                                       if name not in self.given("gan", "encoder", "data")]
        if missing:
            raise ConfigError(f"give --run, or all of --gan, --encoder and --data "
                              f"(missing {', '.join(missing)})")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Config):
    """``evaluate``: IS/FID, conditional accuracy, encoder probes and figures of a GAN run.

    Without ``images_dir``, ``per_class`` images per class are generated in memory (100 by default,
    for speed; the paper's protocol is 5000, written by ``generate``).
    """

    run: str
    images_dir: Optional[str] = None
    inception_graph: Optional[str] = None
    inception_weights: Optional[str] = None
    classifier: Optional[str] = None    # default: <run>/../image_classifier when it exists
    encoder_run: Optional[str] = None   # for tsne.png; default: the GAN run's encoder
    real_images: Optional[str] = None   # FID reference; default: the run's images/test
    split_order: str = "mixed"          # "class-sorted" reproduces the original's splits
    splits: int = 10
    per_class: int = 100
    batch_size: int = 32
    seed: int = 45
    jpeg_quality: int = 95              # in-memory images go through JPEG like generated files
    figures: bool = True
    precision: str = _precision_field()   # of the in-memory generation
    ema: bool = True                    # the run's weight-averaged generator when it has one
    latent_range: float = _latent_range_field()   # of the in-memory generation

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()


@dataclasses.dataclass(frozen=True)
class CurveConfig(Config):
    """``curve``: conditional accuracy and separability of every kept checkpoint of a GAN run.

    ``per_class`` images per class are generated in memory from each checkpoint with the same
    conditions and latents (``seed``), so the points differ only by the weights. ``every`` takes
    every k-th checkpoint (the newest always). Points already in ``<run>/curve.json`` made with the
    same settings are kept, so a rerun after more training adds only the new checkpoints.
    ``conditions="train"`` conditions the images on the training trials instead of the test trials.
    """

    run: str
    classifier: Optional[str] = None    # default: <run>/../image_classifier
    per_class: int = 50
    every: int = 1
    # > 1: each point's generator is the weight average of this many kept checkpoints ending at it
    # (Polyak averaging; curve_avg<k>.json beside curve.json)
    average: int = 1
    batch_size: int = 32
    seed: int = 45
    jpeg_quality: int = 95
    precision: str = _precision_field()   # of the generation
    ema: bool = True                    # each checkpoint's weight-averaged generator if it has one
    latent_range: float = _latent_range_field()
    # the EEG trials that condition the images: "test", or "train" to choose a checkpoint without
    # the test set (curve_train.json beside curve.json)
    conditions: str = "test"

    # Settings that do not change a point's numbers' meaning (precision does, slightly: it is kept).
    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("every", "batch_size")


@dataclasses.dataclass(frozen=True)
class AverageConfig(Config):
    """``average_checkpoints``: a run in ``out`` whose generator averages ``last`` kept checkpoints
    of ``run``, ending at the one of step ``step`` (default: the newest); ``last=1`` takes that
    checkpoint alone (e.g. the best step of ``curve --conditions train``)."""

    run: str
    out: str
    last: int = 5
    step: Optional[int] = None          # the newest checkpoint averaged (None: the run's newest)
    force: bool = False                 # replace an averaged run already in ``out``

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()


@dataclasses.dataclass(frozen=True)
class ExportConfig(Config):
    """``export``: SavedModel with raw EEG in and images out.

    Either ``run`` (a GAN run directory; its latest checkpoint, its encoder, data and normalisation)
    or both ``original_encoder`` and ``original_gan`` (the authors' checkpoint format). The data file
    (``data``, else the run's) gives the trial shape and class names; without one, the published
    checkpoints use ``num_channels`` x ``num_samples`` (14 x 32) and ``class_set``'s names. Values
    given explicitly must agree with the run and the data.
    """

    out: str
    run: Optional[str] = None
    original_encoder: Optional[str] = None
    original_gan: Optional[str] = None
    data: Optional[str] = None
    class_set: Optional[str] = None     # digit | char | image
    num_channels: Optional[int] = None
    num_samples: Optional[int] = None
    normalisation: Optional[str] = None     # the run's (must agree); published checkpoints: the set's
    ema: bool = True                    # the run's weight-averaged generator when it has one
    force: bool = False                 # replace the export of another run in ``out``

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def check_together(self) -> None:
        originals = self.given("original_encoder", "original_gan")
        if self.run and originals:
            raise ConfigError("export: give --run, or --original-encoder with --original-gan, "
                              "not both")
        if not self.run and len(originals) < 2:
            raise ConfigError("export: give --run DIR, or both --original-encoder PATH and "
                              "--original-gan PATH")


@dataclasses.dataclass(frozen=True)
class ImportOriginalConfig(Config):
    """``import_original``: convert one of the authors' checkpoints (``encoder`` or ``gan``) to ours."""

    out: str
    encoder: Optional[str] = None
    gan: Optional[str] = None
    force: bool = False                 # replace a conversion already in ``out``

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def check_together(self) -> None:
        if len(self.given("encoder", "gan")) != 1:
            raise ConfigError("import_original: give exactly one of --encoder or --gan")


# --------------------------------------------------------------------------------------------------
# The end-to-end pipeline and its profiles
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PipelineConfig(Config):
    """``pipeline``: data -> encoder -> selection -> classifier -> GAN -> generation -> evaluation -> export."""

    run: str
    set: str = "char"
    data_root: str = "data"
    profile: Optional[str] = dataclasses.field(default=None, metadata={
        "help": "paper | demo | quality | smoke | cvpr40; None: the set's own (cvpr40 for "
                "cvpr40-synthetic), else demo"})
    seed: int = 45
    inception_graph: Optional[str] = None
    inception_weights: Optional[str] = None
    # GAN training and generation: "profile" keeps the profile's choice (paper: float32; demo and
    # quality: mixed_bfloat16 where the CPU has native bfloat16, else float32), or float32 |
    # mixed_bfloat16 | mixed_float16 for every such stage.
    precision: str = _precision_field("profile", "profile (the profile's choice) | ")
    # Settings of single stages over the profile's, each "stage.field=value" (e.g.
    # "gan.batch_size=16", "encoder.epochs=100"); workflow.stages.stage_settings checks and
    # converts them.
    set_stage: tuple[str, ...] = dataclasses.field(default=(), metadata={
        "metavar": "STAGE.FIELD=VALUE",
        "help": "repeatable; a stage's setting over the profile's, e.g. gan.batch_size=16 "
                "(stages: data encoder select classifier gan generate evaluate curve)"})
    # The three training stages': with multiworker every worker runs them (the chief the others).
    strategy: str = _strategy_field()
    collective_timeout_s: float = _collective_timeout_field()

    RESUMABLE_FIELDS: ClassVar[tuple[str, ...]] = ("inception_graph", "inception_weights",
                                                   "strategy", "collective_timeout_s")
    RULES = {"precision": one_of(("profile",) + PRECISIONS)}

    def check_together(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}: use {', '.join(PROFILES)}")

    @property
    def chosen_profile(self) -> str:
        """The profile the stages run with: ``profile`` when given, else the set's own
        (:data:`SET_PROFILES`), else ``demo``."""
        return self.profile or SET_PROFILES.get(self.set, DEFAULT_PROFILE)


# Overrides of each stage's config per profile. ``paper`` is the original everywhere. ``demo`` fits
# the whole pipeline into 15 minutes of a 2-core CPU; ``quality`` into under two hours. Where a profile
# departs from the paper, docs/results.md ("The profiles") says which field and why.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "encoder": {},
        "select": {},
        "classifier": {},
        "gan": {},
        "generate": {"per_class": 5000},
        "evaluate": {},
    },
    "demo": {
        "encoder": {"epochs": 60, "learning_rate": 1e-3, "checkpoint_every": 5,
                    "time_budget_s": 210.0},
        "select": {},
        "classifier": {"epochs": 6},
        # The GAN gets what is left of 15 minutes once the venv and the other stages are done: on
        # the Char-Font-like set the conditional accuracy passed 0.8 after 450-700 iterations of
        # batch 16 in the runs measured, and an iteration's cost differs twofold between the CPUs
        # of 2-core machines (docs/results.md, "The demo").
        "gan": {"batch_size": 16, "max_steps": 3000, "time_budget_s": 600.0,
                "checkpoint_every": 100, "sample_every": 100, "precision": "auto",
                "mode_seeking_weight": 0.1},
        "generate": {"per_class": 100, "precision": "auto"},
        "evaluate": {"precision": "auto"},
    },
    # Seconds, not minutes: every stage on a tiny set, for the pipeline's own tests.
    "smoke": {
        "data": {"n_train": 200, "n_test": 100, "images_per_class": 8, "test_images_per_class": 4},
        "encoder": {"epochs": 2, "batch_size": 64, "checkpoint_every": 1},
        "select": {"tsne_iterations": 250},
        "classifier": {"epochs": 1},
        "gan": {"batch_size": 2, "max_steps": 2, "checkpoint_every": 1, "sample_every": 1},
        "select_gan": {"per_class": 2, "batch_size": 8},
        "generate": {"per_class": 2, "batch_size": 8},
        "evaluate": {},
        "curve": {"per_class": 2, "batch_size": 8},
    },
    "quality": {
        "encoder": {"epochs": 150, "learning_rate": 1e-3, "checkpoint_every": 5,
                    "time_budget_s": 900.0},
        "select": {},
        "classifier": {"epochs": 15},
        # 80 minutes of GAN at batch 16 in bfloat16, the whole pipeline under 2 hours. The generator
        # trained with spectral normalisation and batch statistics (--generator-training), the
        # paper's mode-seeking weight and sampling from the generator's moving average: clean,
        # anti-aliased edges where the as-run mode saturates its output into ragged black and
        # white; each class is still drawn in one face (docs/realism-experiments.md). A checkpoint
        # every 300 iterations is kept (~170 MB each) for the curves.
        "gan": {"batch_size": 16, "max_steps": 20000, "time_budget_s": 4800.0,
                "checkpoint_every": 300, "sample_every": 300, "precision": "auto",
                "mode_seeking_weight": 1.0, "generator_training": True, "ema_decay": 0.99,
                "max_to_keep": 100},
        # Its accuracy swings between checkpoints late in the run: the later stages use the
        # checkpoint best on images conditioned on the training trials (docs/results.md).
        "select_gan": {"per_class": 50, "precision": "auto"},
        "generate": {"per_class": 500, "precision": "auto"},
        "evaluate": {"precision": "auto"},
        "curve": {"per_class": 50, "precision": "auto"},
    },
}
# The profile of a pipeline without --profile: the set's own where it has one.
DEFAULT_PROFILE = "demo"
SET_PROFILES = {"cvpr40-synthetic": "cvpr40"}
# EEGCVPR40's shape: demo's settings where they fit, by measurement (docs/datasets-results.md).
PROFILES["cvpr40"] = {**PROFILES["demo"], "classifier": {"epochs": 20},
                      "encoder": {"epochs": 20, "batch_size": 128, "learning_rate": 3e-3,
                                  "checkpoint_every": 5, "time_budget_s": 240.0},
                      "gan": {**PROFILES["demo"]["gan"], "pairing": "stimulus",
                              "time_budget_s": 420.0},
                      "generate": {"per_class": 25, "precision": "auto"}}
