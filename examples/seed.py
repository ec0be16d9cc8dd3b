"""The seed doc, "Train and register scikit-learn models at scale with Azure Machine Learning"
(SDK v1), end to end on simml's local backend. Only the import prefix differs from the doc
(``azureml.`` → ``simml.``), plus two simml additions: the workspace clock runs 60 times faster
than real time (``ws.set_clock``), and the iris data goes through the default datastore so the
script reads it from a mounted data reference.

    python3 examples/seed.py [--workdir seed-work] [--clock scaled:60] [--docker] [--keep-service]

Every run registers a new version of the model ``sklearn-iris``, deploys it as the local web
service ``sklearn-iris-svc`` (in the environment it was trained in), scores two rows and deletes
the service (``--keep-service`` leaves it running; ``simml service delete sklearn-iris-svc``). Works in ``--workdir`` (created
with a ``.gitignore`` of ``*``), writing ``.azureml/config.json`` there if it is absent; the
workspace itself lives under ``SIMML_HOME`` (default ``~/.simml``). See docs/seed.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO / "train_iris.py"
SCORE_SCRIPT = REPO / "examples" / "score_iris.py"
SERVICE_NAME = "sklearn-iris-svc"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def prepare_workdir(workdir: Path, clock: str) -> None:
    """The folder the doc's notebook runs in, with the workspace's config.json."""
    if not workdir.exists():
        workdir.mkdir(parents=True)
        (workdir / ".gitignore").write_text("# written by examples/seed.py\n*\n")
    config = workdir / ".azureml" / "config.json"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({
            "subscription_id": "00000000-0000-0000-0000-000000000000",
            "resource_group": "seed-rg",
            "workspace_name": "seed-ws",
            "clock": clock,  # read by this script (ws.set_clock), not by simml
        }, indent=4) + "\n")


def write_iris_csv(folder: Path) -> Path:
    """sklearn's iris as ``iris.csv`` (features, then the class); kept when already written."""
    path = folder / "iris.csv"
    if path.is_file():
        return path  # the data never changes: skip importing scikit-learn (seconds)
    from sklearn.datasets import load_iris
    iris = load_iris()
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*iris.feature_names, "class"])
        for features, target in zip(iris.data.tolist(), iris.target.tolist()):
            writer.writerow([*features, target])
    return path


def simulated(start_sim: datetime, start_real: float, now_sim: datetime) -> str:
    seconds = (now_sim - start_sim).total_seconds()
    return (f"simulated +{int(seconds // 60)}m{seconds % 60:04.1f}s, "
            f"real {time.monotonic() - start_real:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="seed-work",
                        help="working folder (config.json, project and data folders)")
    parser.add_argument("--clock", default="scaled:60",
                        help="workspace clock written to a new config.json (default scaled:60)")
    parser.add_argument("--keep-service", action="store_true",
                        help=f"leave the web service {SERVICE_NAME} running at the end")
    parser.add_argument("--docker", action="store_true",
                        help="run the job in a Docker container (SKLearn(use_docker=True); needs "
                             "a Docker engine and `simml docker build-base`, see docs/docker.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")  # Azure's warning lines

    workdir = Path(args.workdir).resolve()
    prepare_workdir(workdir, args.clock)
    os.chdir(workdir)
    real_start = time.monotonic()

    # --- Set up the workspace and the experiment ------------------------------------------------
    from simml.core import Experiment, Workspace
    ws = Workspace.from_config()
    print("Workspace name: " + ws.name, "Azure region: " + ws.location,
          "Subscription id: " + ws.subscription_id, "Resource group: " + ws.resource_group,
          sep="\n")
    clock = json.loads(Path(".azureml/config.json").read_text()).get("clock")
    if clock:
        state = ws.clock.state()
        if (f"scaled:{state.factor:g}" if state.kind == "scaled" else state.kind) != clock:
            ws.set_clock(clock)  # simml addition: simulated time, 60x faster than real time
    sim_start = ws.clock.now()
    print(f"Workspace clock: {clock or 'system'} (simulated now {sim_start:%Y-%m-%d %H:%M:%S})")

    experiment = Experiment(workspace=ws, name="sklearn-iris")

    # --- Data: iris as a CSV in the default datastore ---------------------------------------------
    data_folder = write_iris_csv(Path("iris-data")).parent
    datastore = ws.get_default_datastore()
    datastore.upload(src_dir=str(data_folder), target_path="iris", overwrite=True,
                     show_progress=True)

    # --- The training script ----------------------------------------------------------------------
    project_folder = "./sklearn-iris"
    os.makedirs(project_folder, exist_ok=True)
    shutil.copy(TRAIN_SCRIPT, project_folder)

    # --- Compute: find or create the cluster ------------------------------------------------------
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute_target import ComputeTargetException
    cluster_name = "cpu-cluster"
    try:
        compute_target = ComputeTarget(workspace=ws, name=cluster_name)
        print("Found existing compute target")
    except ComputeTargetException:
        print("Creating a new compute target...")
        compute_config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2",
                                                               max_nodes=4)
        compute_target = ComputeTarget.create(ws, cluster_name, compute_config)
        compute_target.wait_for_completion(show_output=True, min_node_count=None,
                                           timeout_in_minutes=20)
    print(compute_target.get_status().serialize())
    print(f"[clock] cluster ready: {simulated(sim_start, real_start, ws.clock.now())}")

    # --- The SKLearn estimator --------------------------------------------------------------------
    from simml.train.sklearn import SKLearn
    script_params = {
        "--kernel": "linear",
        "--penalty": 1.0,
        "--data-folder": datastore.path("iris").as_mount(),
    }
    # --docker passes use_docker=True explicitly; the doc's implicit default runs a process.
    docker = {"use_docker": True} if args.docker else {}
    estimator = SKLearn(source_directory=project_folder, script_params=script_params,
                        compute_target=compute_target, entry_script="train_iris.py",
                        pip_packages=["joblib"], **docker)

    # --- Submit, stream, read the metrics ---------------------------------------------------------
    run = experiment.submit(estimator)
    run.wait_for_completion(show_output=True)
    details = run.get_details()
    print(f"Run {run.id}: {details['status']}, simulated start {details.get('startTimeUtc')}, "
          f"end {details.get('endTimeUtc')}")
    print(f"[clock] run finished: {simulated(sim_start, real_start, ws.clock.now())}")
    print(run.get_metrics())

    # --- Register the model -----------------------------------------------------------------------
    model = run.register_model(model_name="sklearn-iris", model_path="outputs/model.joblib")
    print(model.name, model.id, model.version, sep="\t")
    print(f"Registered model {model.name} version {model.version}")

    # --- Deploy the model as a local web service, score two rows --------------------------------
    from simml.core.model import InferenceConfig, Model
    from simml.core.webservice import LocalWebservice
    shutil.copy(SCORE_SCRIPT, os.path.join(project_folder, "score.py"))
    inference_config = InferenceConfig(entry_script="score.py", source_directory=project_folder,
                                       environment=run.get_environment())
    deployment_config = LocalWebservice.deploy_configuration(port=None)
    deploy_start = time.monotonic()
    service = Model.deploy(ws, SERVICE_NAME, [model], inference_config, deployment_config,
                           overwrite=True)
    service.wait_for_deployment(show_output=True)
    predictions = service.run(json.dumps({"data": IRIS_ROWS}))
    print(f"Scored {len(IRIS_ROWS)} rows at {service.scoring_uri}: {predictions} "
          f"(deploy to first score {time.monotonic() - deploy_start:.1f} s)")
    if args.keep_service:
        print(f"The service keeps running: `simml service list`; delete it with "
              f"`simml service delete {SERVICE_NAME}`")
    else:
        service.delete()
        print(f"Deleted service {SERVICE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
