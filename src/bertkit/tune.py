"""Hyperparameter search with Optuna: `bertkit tune CONFIG --trials N`.

CONFIG is a run config (as `bertkit train CONFIG` takes) with a `search` section:

    search:
      params:                       # dotted setting: its range
        train.lr: {low: 1.0e-5, high: 3.0e-4, log: true}
        train.weight_decay: {low: 0.0, high: 0.1}
        train.batch_size: {choices: [16, 32]}
        train.epochs: {low: 1, high: 3}          # whole numbers: an integer range
      metric: accuracy              # default: the task's primary metric (its direction too)
      pruner: median                # median (default) or none
      seed: 0                       # the sampler's seed (TPE)

Each trial is an ordinary run directory under OUT/trials/; its dev evaluations are reported to Optuna,
which prunes trials that fall behind the median of earlier ones at the same step. The study lives in
OUT/tune.db (SQLite), so an interrupted search resumes where it stopped: trials that were running are
marked failed and `--trials N` counts the finished ones. The best trial's full config is written to
OUT/best.yaml; `bertkit train OUT/best.yaml --out RUN` trains it again with the same result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bertkit.api import train, train_events
from bertkit.config import RunConfig, read_yaml_mapping, resolve_relative_paths
from bertkit.errors import ConfigError
from bertkit.io import atomic_write_text
from bertkit.run_dir import RunDir, dev_metrics
from bertkit.tasks.base import get_task
from bertkit.tasks.metrics import higher_is_better

__all__ = ["SearchSpace", "TuneResult", "load_search", "tune"]

log = logging.getLogger("bertkit")
STUDY = "bertkit-tune"


@dataclass
class SearchSpace:
    params: dict[str, dict[str, Any]]
    metric: str | None = None
    pruner: str = "median"
    seed: int = 0

    def suggest(self, trial: Any) -> dict[str, Any]:
        values = {}
        for name, spec in self.params.items():
            if "choices" in spec:
                values[name] = trial.suggest_categorical(name, list(spec["choices"]))
            elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not isinstance(spec["low"], bool):
                values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")),
                                                 step=int(spec.get("step", 1)))
            else:
                values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                                   log=bool(spec.get("log")))
        return values


@dataclass
class TuneResult:
    best_value: float
    best_params: dict[str, Any]
    best_run: str
    best_config: Path
    metric: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    baseline: float | None = None


def load_search(path: str | Path) -> tuple[RunConfig, SearchSpace]:
    """The base run config and the search space of a tune config file."""
    p = Path(path)
    raw = read_yaml_mapping(p)
    if not isinstance(raw.get("search"), dict):
        raise ConfigError(f"{p}: no 'search' section; add search.params with the settings to tune (see "
                          "`bertkit tune --help`)")
    search = raw.pop("search")
    base = resolve_relative_paths(RunConfig.from_dict(raw, source=str(p)), p.parent)
    params = search.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{p}: search.params must map settings (e.g. train.lr) to ranges")
    for name, spec in params.items():
        if isinstance(spec, dict) and "low" in spec and "high" in spec:
            spec["low"], spec["high"] = _number(spec["low"]), _number(spec["high"])  # YAML reads 1e-5 as text
        choices = isinstance(spec, dict) and isinstance(spec.get("choices"), list) and bool(spec["choices"])
        bounds = isinstance(spec, dict) and spec.get("low") is not None and spec.get("high") is not None
        ok = choices or (bounds and spec["low"] <= spec["high"])
        if not ok:
            raise ConfigError(f"{p}: search.params.{name} needs {{low, high[, log]}} with low <= high, or "
                              "{choices: [...]}")
        base.with_overrides({name: spec["choices"][0] if "choices" in spec else spec["low"]},
                            source=f"{p} search.params")  # an unknown setting fails here, before any trial
    unknown = set(search) - {"params", "metric", "pruner", "seed"}
    if unknown:
        raise ConfigError(f"{p}: unknown search keys {sorted(unknown)}; valid: params, metric, pruner, seed")
    if search.get("pruner", "median") not in ("median", "none"):
        raise ConfigError(f"{p}: search.pruner must be median or none")
    return base, SearchSpace(params, search.get("metric"), search.get("pruner", "median"), int(search.get("seed", 0)))


def tune(config_path: str | Path, out: str | Path, *, trials: int, baseline: bool = False) -> TuneResult:
    """Run the search until `trials` trials have finished (completed or pruned) in the study at `out`."""
    from optuna.trial import TrialState

    base, space = load_search(config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = _open_study(base, space, out)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0:
        study.optimize(lambda trial: _run_trial(trial, base, space, out), n_trials=remaining, catch=())
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"{out}: no trial completed; widen the search or set search.pruner: none")
    best = study.best_trial
    metric = space.metric or best.user_attrs.get("metric", "")
    best_cfg = base.with_overrides({**best.params, "out": None, "resume": False}, source="search")
    best_file = out / "best.yaml"
    atomic_write_text(best_file, f"# best of {len(complete)} completed trials: dev {metric} {best.value:.6f} "
                      f"(trial {best.number}, {best.user_attrs.get('run_dir')})\n"
                      + yaml.safe_dump(_without_out(best_cfg.to_dict()), sort_keys=False, allow_unicode=True))
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "run_dir": t.user_attrs.get("run_dir")} for t in study.get_trials(deepcopy=False)]
    atomic_write_text(out / "trials.json", json.dumps(rows, indent=2, default=str) + "\n")
    result = TuneResult(best.value, best.params, best.user_attrs.get("run_dir", ""), best_file, metric, rows)
    if baseline:
        result.baseline = _baseline(base, out, metric)
    return result


def _open_study(base: RunConfig, space: SearchSpace, out: Path) -> Any:
    """The Optuna study kept in OUT/tune.db (created, or resumed with its interrupted trials marked failed)."""
    import optuna
    from optuna.trial import TrialState

    # Without search.metric each trial is scored on its task's primary metric, known once the labels are
    # fitted (classification with problem auto); every task's primary metric has the task's direction.
    greater = higher_is_better(space.metric) if space.metric else get_task(base.task).greater_is_better
    direction = "maximize" if greater else "minimize"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if space.pruner == "median" \
        else optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported once, by bertkit
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{(out / 'tune.db').resolve()}",
                                direction=direction, load_if_exists=True, pruner=pruner)
    # Seeded by the trials so far: a resumed search goes on with new points instead of repeating the first ones.
    study.sampler = optuna.samplers.TPESampler(seed=space.seed + len(study.trials))
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # killed with the search
        study._storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)
        log.info("trial %d was interrupted; marked failed", stale.number)
    return study


def _run_trial(trial: Any, base: RunConfig, space: SearchSpace, out: Path) -> float:
    """One trial: a run directory trained with the trial's settings, its dev evaluations reported for pruning."""
    import optuna

    values = space.suggest(trial)
    run_dir = out / "trials" / f"trial-{trial.number:04d}"
    cfg = base.with_overrides({**values, "out": str(run_dir), "resume": False}, source="search")
    trial.set_user_attr("run_dir", str(run_dir))
    events = train_events(cfg, progress=False)
    metric = space.metric
    for event in events:
        if event["kind"] == "eval":
            if metric is None:
                metric = get_task(cfg.task, RunDir(run_dir).read_json("labels.json")).primary_metric
                trial.set_user_attr("metric", metric)
            scores = dev_metrics(event)
            if not scores:
                events.close()
                raise ConfigError("bertkit tune compares trials on a dev set, and this run has none (too few training "
                                  "examples to split one off); set data.dev to a labelled file of other examples")
            if metric not in scores:
                events.close()
                raise ConfigError(f"search.metric '{metric}' is not a dev metric of this task; choose one of "
                                  f"{', '.join(k for k in scores if k != 'loss')}")
            trial.report(scores[metric], event["step"])
            if trial.should_prune():
                events.close()
                RunDir(run_dir).set_status("pruned", step=event["step"])
                raise optuna.TrialPruned()
        elif event["kind"] == "finished":
            return float(event["result"].metrics[metric])
    raise RuntimeError("training ended without a result")


def _baseline(base: RunConfig, out: Path, metric: str) -> float:
    """The dev metric of the config without any searched setting (trained once, then read back)."""
    run = RunDir(out / "baseline")
    results = run.read_json("results.json", default={"none": True}) if run.exists() else {}
    if "dev" not in results:
        cfg = base.with_overrides({"out": str(run.path), "resume": run.exists()}, source="baseline")
        return float(train(cfg, progress=False).metrics[metric])
    return float(results["dev"][metric])


def _number(value: Any) -> int | float | None:
    """A range bound as a number: ints and floats as they are, numeric text (YAML's `1e-5`) as a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _without_out(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("out", "resume")}
