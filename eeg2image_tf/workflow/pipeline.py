"""The pipeline's driver (``python -m eeg2image_tf.pipeline``, which documents the stages): runs
the unfinished stages of :mod:`.stages` in order, on one process or on every worker of a cluster,
records each in ``pipeline.json``, and sums up the run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import SET_PROFILES, PipelineConfig
from ..errors import ConfigError
from ..io_utils import atomic_write_json, check_writable_dir, read_json
from ..runs import (CONFIG_FILE, PIPELINE_STAGES, PipelineRun, check_run_dir, lock_run,
                    prepare_run_dir)
from .stages import STAGES, check_stage_configs, data_to_prepare


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------

def load_state(run_dir: Path) -> dict[str, Any]:
    path = PipelineRun(Path(run_dir)).state
    state = read_json(path) if path.exists() else {}
    state.setdefault("stages", {})
    return state


def _unfinished(state: dict[str, Any], stages: Optional[Sequence[str]]) -> list[str]:
    """The stages to run, in order: those asked for (all by default) not done yet."""
    return [name for name, _ in STAGES if (stages is None or name in stages)
            and not state["stages"].get(name, {}).get("done")]


# With --strategy multiworker every worker runs these stages together (the data stage each for
# itself, under its lock); the chief alone runs the rest.
TRAINING_STAGES = ("encoder", "image_classifier", "gan")
EVERY_WORKER_STAGES = ("data",) + TRAINING_STAGES


class _Workers:
    """The cluster of a multi-worker pipeline (``--strategy multiworker``), else one process.

    The data stage runs on every worker (serialised by its lock where the data root is shared; an
    identical copy where it is not), the training stages on all of them together, the other stages
    on the chief alone. The others wait for a chief-only stage that a training stage needs
    (``select_encoder`` before the GAN) inside a collective, so at most ``collective_timeout_s``;
    after the last training stage they are done.
    """

    def __init__(self, config: PipelineConfig):
        self.strategy = self.role = None
        if config.strategy == "multiworker":
            # Imported here (module docstring). One strategy per process: the stages reuse it.
            from ..training.common import make_strategy
            from ..training.distributed import worker_role

            self.strategy = make_strategy("multiworker", config.collective_timeout_s)
            self.role = worker_role(self.strategy)
        self.distributed = self.role is not None and self.role.distributed
        self.chief = not self.distributed or self.role.is_chief
        self.timeout_s = config.collective_timeout_s

    @property
    def label(self) -> str:
        return self.role.prefix if self.distributed else ""

    def wait(self, what: str) -> None:
        """Every worker waits here until all have come (a collective)."""
        if not self.distributed:
            return
        from ..training.distributed import COLLECTIVE_ERRORS, WorkerLostError, wait_for_workers

        try:
            wait_for_workers(self.strategy, self.role)
        except COLLECTIVE_ERRORS as exc:
            detail = (str(getattr(exc, "message", exc)).strip().splitlines() or [""])[0][:160]
            raise WorkerLostError(
                f"{self.role.label}: the workers did not meet after {what} within "
                f"--collective-timeout-s {self.timeout_s:g} ({detail}); a worker failed or the "
                "chief's stage took longer: rerun the same command on every worker (finished stages "
                "are kept), with a larger timeout if needed") from None

    def agree(self, value: int, what: str) -> None:
        """Refuse (ConfigError) a start where the workers hold different ``value``s."""
        if not self.distributed:
            return
        from ..training.distributed import same_on_every_worker

        if not same_on_every_worker(self.strategy, self.role, value):
            raise ConfigError(f"{self.role.label}: the workers would run different stages ({what})")


def run_pipeline(config: PipelineConfig, force: bool = False,
                 stages: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run every unfinished stage in order; return the pipeline state (also in ``pipeline.json``).

    With ``config.strategy == "multiworker"`` run the same command on every worker (see
    :class:`_Workers`); the chief writes the run directory, which the others must see at the same
    path. Another worker's returned state has ``"worker"`` (its task) and the stages it ran.
    """
    config.validate()
    if config.profile is None:
        # Recorded as chosen (config.json, pipeline.json): a rerun naming it is the same run.
        config = dataclasses.replace(config, profile=config.chosen_profile)
        why = f"the '{config.set}' set's own" if config.set in SET_PROFILES else "the default"
        print(f"[pipeline] profile {config.profile} ({why}; --profile chooses another)")
    check_stage_configs(config)     # a wrong --set-stage fails before any stage runs
    workers = _Workers(config)
    paths = PipelineRun.from_config(config)
    if workers.chief:
        check_writable_dir(config.run, "--run")
        check_run_dir(config, config.run, force)
        if "data" in _unfinished(load_state(paths.dir), stages):
            data_to_prepare(config, paths)          # refused before the run is written
        # One writer of the pipeline's run at a time; its stages lock their own folders too.
        lock = lock_run(config.run)
        prepare_run_dir(config, config.run, force=force)
    workers.wait("the chief prepared the run directory")
    if not workers.chief and not (paths.dir / CONFIG_FILE).exists():
        raise ConfigError(f"{paths.dir}: {workers.role.label} cannot see the chief's run directory; a "
                          "multi-worker pipeline needs it on storage every worker sees at the same "
                          "path")
    state = load_state(paths.dir)
    state["profile"] = config.profile
    state_path = paths.state
    todo = _unfinished(state, stages)
    workers.agree(sum(1 << index for index, name in enumerate(PIPELINE_STAGES) if name in todo),
                  "--stages differs between them, or they read different pipeline.json files")
    ran: list[str] = []
    started = time.monotonic()
    for index, (name, stage) in enumerate(STAGES):
        if stages is not None and name not in stages:
            continue
        if name not in todo:
            print(f"[pipeline] {workers.label}{name}: done already, skipping")
            continue
        training_later = any(later in todo and later in TRAINING_STAGES
                             for later in PIPELINE_STAGES[index + 1:])
        if workers.chief or name in EVERY_WORKER_STAGES:
            print(f"[pipeline] {workers.label}{name}: starting")
            stage_start = time.monotonic()
            outputs = stage(config, paths, force)
            seconds = time.monotonic() - stage_start
            ran.append(name)
            if workers.chief:
                state["stages"][name] = {"done": True, "seconds": round(seconds, 1), **outputs}
                atomic_write_json(state_path, state)
            print(f"[pipeline] {workers.label}{name}: finished in {seconds:.0f} s")
        elif training_later:
            print(f"[pipeline] {workers.label}{name}: the chief runs it; waiting")
        if workers.distributed and name not in EVERY_WORKER_STAGES and training_later:
            workers.wait(name)
        if not workers.chief and not training_later:
            rest = [later for later in PIPELINE_STAGES[index + 1:] if later in todo]
            print(f"[pipeline] {workers.label}training stages done; the chief runs "
                  f"{', '.join(rest) or 'nothing more'} and writes the run")
            break
    if not workers.chief:
        return {"worker": workers.role.label, "ran": ran, "stages": {}}
    state["last_run_seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(state_path, state)
    lock.release()
    return state


def summary_lines(state: dict[str, Any], config: PipelineConfig) -> list[str]:
    if "worker" in state:       # not the chief of a multi-worker pipeline: the chief has the summary
        return ["", f"{state['worker']}: ran {', '.join(state['ran']) or 'no stage'}; the chief's "
                    f"summary has the results ({PipelineRun.from_config(config).state})"]
    stages = state.get("stages", {})
    paths = PipelineRun.from_config(config)

    def get(stage: str, key: str, default: Any = "n/a") -> Any:
        return stages.get(stage, {}).get(key, default)

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "",
        f"EEG2Image pipeline summary ({config.chosen_profile} profile, '{config.set}' set)",
        f"  encoder k-means accuracy (test) : {fmt(get('select_encoder', 'kmeans_accuracy'))}",
        f"  image classifier test accuracy  : {fmt(get('image_classifier', 'test_accuracy'))}",
        f"  GAN iterations                  : {get('gan', 'step')} at "
        f"{fmt(get('gan', 'ms_per_step'))} ms ({get('gan', 'precision')})",
        *([f"  checkpoint evaluated            : iteration {get('select_gan', 'step')} of "
           f"{get('select_gan', 'last_step')}, chosen on training conditions (conditional "
           f"accuracy {fmt(get('select_gan', 'train_conditional_accuracy'))} there)"]
          if "step" in stages.get("select_gan", {}) else []),
        f"  conditional accuracy            : {fmt(get('evaluate', 'conditional_accuracy'))}",
        f"  conditional separability        : {fmt(get('evaluate', 'conditional_separability'))}",
        f"  precision / recall / diversity  : {fmt(get('evaluate', 'precision'))} / "
        f"{fmt(get('evaluate', 'recall'))} / {fmt(get('evaluate', 'diversity_ratio'))} (real test "
        f"images {fmt(get('evaluate', 'real_test_precision'))} / "
        f"{fmt(get('evaluate', 'real_test_recall'))} / "
        f"{fmt(get('evaluate', 'real_test_diversity_ratio'))}; gradient histograms, k=3)",
        f"  manifold distances              : {fmt(get('evaluate', 'precision_distance'))} / "
        f"{fmt(get('evaluate', 'recall_distance'))} (medians in k-NN radii, 1 or less inside; "
        f"real test images {fmt(get('evaluate', 'real_test_precision_distance'))} / "
        f"{fmt(get('evaluate', 'real_test_recall_distance'))})",
        f"  Inception Score / FID           : {get('evaluate', 'inception', 'unavailable')}",
    ]
    if isinstance(get("evaluate", "inception_precision", None), float):
        lines.append(f"  ... in Inception's features    : "
                     f"{fmt(get('evaluate', 'inception_precision'))} / "
                     f"{fmt(get('evaluate', 'inception_recall'))} / "
                     f"{fmt(get('evaluate', 'inception_diversity_ratio'))}")
    if "best_conditional_accuracy" in stages.get("curve", {}):
        lines.append(f"  best conditional accuracy seen  : "
                     f"{fmt(get('curve', 'best_conditional_accuracy'))} at iteration "
                     f"{get('curve', 'best_step')} (curve: {get('curve', 'figure')})")
    lines += [
        f"  sample grid      : {get('gan', 'samples')}",
        f"  t-SNE            : {get('select_encoder', 'tsne')}",
        f"  metrics.json     : {get('evaluate', 'metrics')}",
        f"  figures          : {get('evaluate', 'figures')}",
        f"  SavedModel       : {get('export', 'saved_model')}",
        f"  TensorBoard      : tensorboard --logdir {paths.dir}",
    ]
    total = sum(float(s.get("seconds", 0.0)) for s in stages.values())
    lines.append(f"  stage time total : {total:.0f} s")
    return lines
