"""HyperDrive's pure parts: expressions, samplers, policy decisions, config validation, replay.

No runner, no store: these are functions of their inputs (the sweep loop in
``simml_local.sweep`` and ``tests/test_hyperdrive_runs.py`` exercise them end to end). No backend
either, so neither ``contract`` nor ``local_only`` (docs/testing.md).
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap

import pytest

from simml.exceptions import UserErrorException
from simml.train.hyperdrive import (
    BanditPolicy,
    BayesianParameterSampling,
    GridParameterSampling,
    HyperDriveConfig,
    HyperDriveConfigException,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    PrimaryMetricGoal,
    RandomParameterSampling,
    TruncationSelectionPolicy,
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)
from simml.train.hyperdrive import policy as pol
from simml.train.hyperdrive.parameter_expressions import sample
from simml.train.hyperdrive.replay import TrialRecord, replay
from simml.train.hyperdrive.runconfig import child_arguments
from simml.train.hyperdrive.sampling import FinishedTrial, TrialSampler, grid_points

# --- expressions ---------------------------------------------------------------------------------


def test_expressions_serialise_as_azure_does() -> None:
    assert choice(1, 2, 3) == ["choice", [[1, 2, 3]]] == choice([1, 2, 3])
    assert choice("linear", "rbf") == ["choice", [["linear", "rbf"]]]
    assert randint(5) == ["randint", [5]]
    assert uniform(0, 1) == ["uniform", [0, 1]]
    assert quniform(10, 250, 1) == ["quniform", [10, 250, 1]]
    assert loguniform(-3, 0) == ["loguniform", [-3, 0]]
    assert qloguniform(0, 3, 2) == ["qloguniform", [0, 3, 2]]
    assert normal(0, 1) == ["normal", [0, 1]]
    assert qnormal(0, 1, 0.5) == ["qnormal", [0, 1, 0.5]]
    assert lognormal(0, 1) == ["lognormal", [0, 1]]
    assert qlognormal(0, 1, 1) == ["qlognormal", [0, 1, 1]]


@pytest.mark.parametrize("build", [
    lambda: choice(), lambda: choice(1, "a"), lambda: choice([1, [2]]), lambda: choice(True),
    lambda: choice(float("nan")), lambda: randint(0), lambda: randint(2.5),
    lambda: uniform(1, 1), lambda: uniform(2, 1), lambda: uniform(0, float("inf")),
    lambda: quniform(0, 1, 0), lambda: normal(0, 0), lambda: lognormal(0, -1),
    lambda: qnormal(0, 1, -1), lambda: loguniform("a", 1),
])
def test_bad_expressions_raise_a_typed_error(build) -> None:
    with pytest.raises(HyperDriveConfigException) as info:
        build()
    assert isinstance(info.value, (UserErrorException, ValueError))


def test_sample_follows_each_expressions_semantics() -> None:
    rng = random.Random(1)
    for _ in range(200):
        assert sample(choice("a", "b"), rng) in ("a", "b")
        assert 0 <= sample(randint(4), rng) < 4
        assert 2 <= sample(uniform(2, 3), rng) <= 3
        value = sample(quniform(10, 250, 5), rng)
        assert value % 5 == 0 and 10 <= value <= 250
        assert math.exp(-3) <= sample(loguniform(-3, 0), rng) <= 1
        assert sample(qloguniform(0, 3, 2), rng) % 2 == 0
        assert sample(lognormal(0, 1), rng) > 0
        assert sample(qnormal(0, 4, 0.5), rng) % 0.5 == 0


# --- samplers ------------------------------------------------------------------------------------


def test_grid_takes_only_choice_with_azures_message() -> None:
    with pytest.raises(HyperDriveConfigException) as info:
        GridParameterSampling({"--kernel": choice("linear", "rbf"), "--penalty": uniform(0, 1)})
    assert "expects only the following distributions: [choice]" in info.value.message
    assert "--penalty" in info.value.message


@pytest.mark.parametrize("expression", [randint(3), loguniform(0, 1), normal(0, 1),
                                        qnormal(0, 1, 1), lognormal(0, 1), qloguniform(0, 1, 1),
                                        qlognormal(0, 1, 1)])
def test_bayesian_refuses_unsupported_expressions(expression) -> None:
    with pytest.raises(HyperDriveConfigException, match="choice, uniform, quniform"):
        BayesianParameterSampling({"x": expression})


def test_sampling_validates_the_space_and_seed() -> None:
    with pytest.raises(HyperDriveConfigException):
        RandomParameterSampling({})
    with pytest.raises(HyperDriveConfigException):
        RandomParameterSampling({"--x": [1, 2]})  # not an expression
    with pytest.raises(HyperDriveConfigException):
        RandomParameterSampling({"--x": uniform(0, 1)}, properties={"rngSeed": "7"})
    doc = RandomParameterSampling({"--x": uniform(0, 1)}, properties={"rngSeed": 7}).to_json()
    assert doc == {"name": "RANDOM", "parameter_space": {"--x": ["uniform", [0, 1]]},
                   "properties": {"rngSeed": 7}}


def test_grid_enumerates_every_point_once_in_order_and_stops_when_exhausted() -> None:
    grid = GridParameterSampling({"--kernel": choice("linear", "rbf"),
                                  "--penalty": choice(0.5, 1.0, 2.0)})
    sampler = TrialSampler(grid.to_json())
    assert sampler.total(100) == 6 and sampler.total(4) == 4
    points = [sampler.parameters(n) for n in range(6)]
    assert points == grid_points(grid.parameter_space)
    assert points[0] == {"--kernel": "linear", "--penalty": 0.5}
    assert points[3] == {"--kernel": "rbf", "--penalty": 0.5}  # the first parameter is slowest


def test_random_trial_n_depends_only_on_seed_and_n() -> None:
    space = {"--lr": loguniform(-6, -1), "--layers": choice(1, 2, 3), "--drop": uniform(0, 0.5)}
    a = TrialSampler(RandomParameterSampling(space, {"rngSeed": 11}).to_json())
    b = TrialSampler(RandomParameterSampling(space, {"rngSeed": 11}).to_json())
    forward = [a.parameters(n) for n in range(10)]
    backward = [b.parameters(n) for n in reversed(range(10))][::-1]  # any order of asking
    assert forward == backward
    other = TrialSampler(RandomParameterSampling(space, {"rngSeed": 12}).to_json())
    assert [other.parameters(n) for n in range(10)] != forward
    assert len({repr(p) for p in forward}) == 10


def test_bayesian_batches_depend_only_on_earlier_batches() -> None:
    pytest.importorskip("optuna")
    space = BayesianParameterSampling({"x": uniform(-2, 2), "k": choice("a", "b"),
                                       "q": quniform(0, 10, 2)}, {"rngSeed": 5})
    sampler = TrialSampler(space.to_json())
    assert sampler.batch_size == 4 and list(sampler.depends_on(3)) == []
    assert list(sampler.depends_on(5)) == [0, 1, 2, 3]
    first = [sampler.parameters(n) for n in range(4)]
    assert all(p["q"] % 2 == 0 and -2 <= p["x"] <= 2 for p in first)
    with pytest.raises(HyperDriveConfigException, match="needs the results"):
        TrialSampler(space.to_json()).parameters(4)
    finished = [FinishedTrial(n, first[n], -first[n]["x"] ** 2) for n in range(4)]
    shuffled = list(reversed(finished)) + [FinishedTrial(9, first[0], 5.0)]  # extra: ignored
    again = TrialSampler(space.to_json())
    assert [again.parameters(n) for n in range(4)] == first
    second = [again.parameters(n, finished) for n in range(4, 8)]
    fresh = TrialSampler(space.to_json())
    assert [fresh.parameters(n, shuffled) for n in range(4, 8)] == second


def test_importing_hyperdrive_does_not_import_optuna() -> None:
    code = ("import sys, simml.train.hyperdrive as hd\n"
            "hd.BayesianParameterSampling({'x': hd.uniform(0, 1)})\n"
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- policies ------------------------------------------------------------------------------------


def test_policies_serialise_as_azure_does() -> None:
    assert BanditPolicy(slack_factor=0.1, evaluation_interval=2, delay_evaluation=5).to_json() == {
        "name": "Bandit", "properties": {"evaluation_interval": 2, "delay_evaluation": 5,
                                         "slack_factor": 0.1}}
    assert MedianStoppingPolicy().to_json()["name"] == "MedianStopping"
    assert TruncationSelectionPolicy(20).to_json()["properties"]["truncation_percentage"] == 20
    assert NoTerminationPolicy().to_json() == {"name": "Default"}
    for policy in (BanditPolicy(slack_amount=0.2), MedianStoppingPolicy(3, 1),
                   TruncationSelectionPolicy(30, 2), NoTerminationPolicy()):
        assert pol.from_json(policy.to_json()) == policy


@pytest.mark.parametrize("build", [
    lambda: BanditPolicy(), lambda: BanditPolicy(slack_factor=0.1, slack_amount=0.1),
    lambda: BanditPolicy(slack_factor=-1), lambda: BanditPolicy(0, slack_factor=0.1),
    lambda: BanditPolicy(slack_factor=0.1, delay_evaluation=-1),
    lambda: MedianStoppingPolicy(evaluation_interval=1.5), lambda: TruncationSelectionPolicy(0),
    lambda: TruncationSelectionPolicy(100),
])
def test_bad_policies_raise(build) -> None:
    with pytest.raises(HyperDriveConfigException):
        build()


def test_bandit_exactly_one_slack_message() -> None:
    with pytest.raises(HyperDriveConfigException, match="exactly one of slack factor or slack"):
        BanditPolicy(slack_factor=0.1, slack_amount=0.2)


def test_evaluation_points_follow_interval_and_delay() -> None:
    policy = BanditPolicy(evaluation_interval=2, slack_factor=0.1, delay_evaluation=5)
    assert [k for k in range(1, 13) if policy.is_evaluation_point(k)] == [6, 8, 10, 12]
    assert not any(NoTerminationPolicy().is_evaluation_point(k) for k in range(1, 10))


def H(n, values, final=False):  # noqa: N802 - a tiny helper
    return pol.TrialHistory(n, tuple(values), final)


def test_bandit_slack_factor_and_amount_both_goals() -> None:
    factor = BanditPolicy(slack_factor=0.1)
    earlier = [H(0, [0.8])]
    assert pol.decide(factor, True, 1, 1, [0.75], earlier).action == pol.CONTINUE  # 0.8/1.1=.727
    stop = pol.decide(factor, True, 1, 1, [0.7], earlier)
    assert stop.action == pol.STOP and "BanditPolicy" in stop.reason and "trial 0" in stop.reason
    assert pol.decide(factor, False, 1, 1, [0.21], [H(0, [0.2])]).action == pol.CONTINUE
    assert pol.decide(factor, False, 1, 1, [0.23], [H(0, [0.2])]).action == pol.STOP
    amount = BanditPolicy(slack_amount=0.1)
    assert pol.decide(amount, True, 1, 1, [0.71], earlier).action == pol.CONTINUE
    assert pol.decide(amount, True, 1, 1, [0.69], earlier).action == pol.STOP
    assert pol.decide(amount, False, 1, 1, [0.35], [H(0, [0.2])]).action == pol.STOP


def test_decisions_see_only_lower_numbered_trials_and_wait_for_them() -> None:
    bandit = BanditPolicy(slack_factor=0.1)
    # trial 1 is judged against trial 0 only, even though trial 2 is far better
    assert pol.decide(bandit, True, 1, 1, [0.7], [H(0, [0.7]), H(2, [0.99])]).action \
        == pol.CONTINUE
    # trial 0 still running below interval 2: wait for it; once it ended short, it is ignored
    waiting = pol.decide(bandit, True, 1, 2, [0.5, 0.5], [H(0, [0.9])])
    assert waiting.action == pol.WAIT and waiting.waiting_for == (0,)
    assert pol.decide(bandit, True, 1, 2, [0.5, 0.5], [H(0, [0.9], final=True)]).action \
        == pol.CONTINUE
    # trial 0 is ahead: its values past interval k are not looked at
    assert pol.decide(bandit, True, 1, 1, [0.5], [H(0, [0.5, 0.99, 0.99])]).action \
        == pol.CONTINUE
    # non-evaluation points never wait or stop; the first trial has nobody to lose against
    late = BanditPolicy(slack_factor=0.1, delay_evaluation=3)
    assert pol.decide(late, True, 1, 2, [0.0, 0.0], [H(0, [0.9])]).action == pol.CONTINUE
    assert pol.decide(bandit, True, 0, 1, [0.0], []).action == pol.CONTINUE


def test_median_stopping_uses_running_averages_of_earlier_trials() -> None:
    median = MedianStoppingPolicy()
    earlier = [H(0, [0.5, 0.7]), H(1, [0.6, 0.8]), H(2, [0.1, 0.2])]  # averages .6, .7, .15
    assert pol.decide(median, True, 3, 2, [0.5, 0.55], earlier).action == pol.STOP
    assert pol.decide(median, True, 3, 2, [0.5, 0.61], earlier).action == pol.CONTINUE
    assert pol.decide(median, False, 3, 2, [0.65, 0.7], earlier).action == pol.STOP
    assert pol.decide(median, False, 3, 2, [0.5, 0.7], earlier).action == pol.CONTINUE


def test_truncation_stops_the_lowest_percentage_ties_favour_the_trial() -> None:
    truncation = TruncationSelectionPolicy(25)
    earlier = [H(0, [0.9]), H(1, [0.8]), H(2, [0.7])]  # 4 values with ours: cut the lowest 1
    assert pol.decide(truncation, True, 3, 1, [0.6], earlier).action == pol.STOP
    assert pol.decide(truncation, True, 3, 1, [0.7], earlier).action == pol.CONTINUE  # a tie
    assert pol.decide(truncation, True, 3, 1, [0.75], earlier).action == pol.CONTINUE
    assert pol.decide(truncation, True, 1, 1, [0.1], earlier[:1]).action == pol.CONTINUE  # 2 runs


def test_non_numeric_values_are_ignored() -> None:
    assert pol.numeric([1, 0.5, "x", float("nan"), True, None]) == (1.0, 0.5, None, None, None,
                                                                     None)
    bandit = BanditPolicy(slack_factor=0.1)
    assert pol.decide(bandit, True, 1, 1, [None], [H(0, [0.9])]).action == pol.CONTINUE


# --- what-if replay ------------------------------------------------------------------------------


def test_replay_cuts_stopped_histories_and_reports_savings() -> None:
    records = [
        TrialRecord(0, "r0", (0.5, 0.6, 0.7, 0.8), (0.0, 1.0, 2.0, 3.0)),
        TrialRecord(1, "r1", (0.1, 0.2, 0.3, 0.95), (0.0, 1.0, 2.0, 3.0)),
        TrialRecord(2, "r2", (0.45, 0.55, 0.65, 0.75), (0.0, 1.0, 2.0, 3.0)),
    ]
    report = replay(records, BanditPolicy(slack_factor=0.2), maximize=True)
    assert [t.number for t in report.stopped] == [1]
    stopped = report.stopped[0]
    assert stopped.stop_at == 1 and stopped.saved_intervals == 3 and stopped.saved_seconds == 3.0
    assert report.saved_intervals == 3 and report.total_intervals == 12
    assert report.best_trial_before == 1 and report.best_trial_after == 0
    assert "1 of 3 trials" in report.summary()
    assert replay(records, NoTerminationPolicy(), True).stopped == ()


def test_replay_is_the_same_decision_as_the_sweep_loop_uses() -> None:
    rng = random.Random(3)
    records = [TrialRecord(n, f"r{n}", tuple(rng.random() for _ in range(6))) for n in range(8)]
    policy = MedianStoppingPolicy(evaluation_interval=2)
    report = replay(records, policy, True)
    # re-derive with decide() directly: trial by trial, earlier histories cut where stopped
    cut = []
    for record in records:
        stop_at = None
        for k in range(1, 7):
            if pol.decide(policy, True, record.number, k, record.values, cut).action == pol.STOP:
                stop_at = k
                break
        assert report.trials[record.number].stop_at == stop_at
        cut.append(pol.TrialHistory(record.number, record.values[:stop_at or 6], True))


# --- HyperDriveConfig ----------------------------------------------------------------------------


@pytest.fixture
def script_config(tmp_path):
    from simml.core import ScriptRunConfig
    (tmp_path / "train.py").write_text("print('hi')\n")
    return ScriptRunConfig(str(tmp_path), "train.py", arguments=["--kernel", "linear"])


def _config(script_config, **overrides):
    arguments = dict(hyperparameter_sampling=GridParameterSampling({"--kernel": choice("a", "b")}),
                     primary_metric_name="acc", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
                     max_total_runs=4, run_config=script_config)
    arguments.update(overrides)
    return HyperDriveConfig(**arguments)


def test_config_defaults_and_properties(script_config) -> None:
    config = _config(script_config)
    assert config.max_concurrent_runs == 4  # defaults to max_total_runs
    assert config.max_duration_minutes == 10080
    assert isinstance(config.policy, NoTerminationPolicy)
    assert config.primary_metric_goal is PrimaryMetricGoal.MAXIMIZE
    random_config = _config(script_config, hyperparameter_sampling=RandomParameterSampling(
        {"--x": uniform(0, 1)}))
    assert isinstance(random_config._generator["properties"]["rngSeed"], int)  # recorded
    capped = _config(script_config, max_duration_minutes=20000)
    assert capped.max_duration_minutes == 10080


@pytest.mark.parametrize("overrides, message", [
    ({"max_concurrent_runs": 0}, "max_concurrent_runs"),
    ({"max_concurrent_runs": -2}, "max_concurrent_runs"),
    ({"max_total_runs": 0}, "max_total_runs"),
    ({"primary_metric_name": ""}, "primary_metric_name"),
    ({"primary_metric_goal": "upwards"}, "primary_metric_goal"),
    ({"max_duration_minutes": 0}, "max_duration_minutes"),
    ({"hyperparameter_sampling": {"--x": choice(1)}}, "hyperparameter_sampling"),
    ({"policy": "bandit"}, "policy"),
    ({"run_config": None}, "Exactly one of estimator, run_config"),
    ({"estimator": object()}, "Exactly one of estimator, run_config"),
    ({"resume_from": ["HD_x"]}, "resume_from"),
])
def test_config_validation(script_config, overrides, message) -> None:
    with pytest.raises(HyperDriveConfigException, match=message):
        _config(script_config, **overrides)


def test_bayesian_with_a_policy_is_refused(script_config) -> None:
    bayesian = BayesianParameterSampling({"--x": uniform(0, 1)})
    with pytest.raises(HyperDriveConfigException, match="not supported with Bayesian"):
        _config(script_config, hyperparameter_sampling=bayesian,
                policy=BanditPolicy(slack_factor=0.1))
    assert _config(script_config, hyperparameter_sampling=bayesian,
                   policy=NoTerminationPolicy()).policy.is_active is False


def test_child_arguments_override_script_params_and_prefix_bare_keys() -> None:
    base = ["--kernel", "linear", "--penalty", 1.0, "--data", {"dataReference": {"name": "d"}}]
    args = child_arguments(base, {"--kernel": "rbf", "C": 0.5, "--iters": 65.0},
                           {"--kernel": choice("rbf"), "C": uniform(0, 1),
                            "--iters": quniform(10, 250, 1)})
    assert args == ["--kernel", "rbf", "--penalty", 1.0, "--data",
                    {"dataReference": {"name": "d"}}, "--C", 0.5, "--iters", 65]


def test_config_module_imports_stay_light() -> None:
    code = textwrap.dedent("""
        import sys
        import simml.train.hyperdrive
        heavy = [m for m in ("optuna", "sklearn", "numpy", "rich") if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
