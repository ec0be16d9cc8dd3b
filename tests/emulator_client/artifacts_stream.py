"""Run by tests/test_emulator_artifacts.py with the REAL azureml-core client: stream a running
simml run's driver log with wait_for_completion(show_output=True). argv: run id, experiment, a
flag file to create once the first line has been printed (the job waits for it)."""
import json
import sys
from pathlib import Path

from azureml.core import Experiment, Workspace
from azureml.core.script_run import ScriptRun

from simml.emulator.client_auth import SimmlEmulatorAuthentication

run_id, experiment_name, flag = sys.argv[1], sys.argv[2], Path(sys.argv[3])


class Tee:
    """Collects what the client streams; creates the flag when the first line shows."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.flag_seen_first = False

    def write(self, text: str) -> int:
        self.parts.append(text)
        sys.__stdout__.write(text)
        seen = "".join(self.parts)
        if "first line" in seen and not flag.exists():
            self.flag_seen_first = "second line" not in seen
            flag.write_text("go")
        return len(text)

    def flush(self) -> None:
        sys.__stdout__.flush()


ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
run = ScriptRun(Experiment(ws, experiment_name), run_id)
tee = Tee()
sys.stdout = tee
try:
    details = run.wait_for_completion(show_output=True)
finally:
    sys.stdout = sys.__stdout__
names = run.get_file_names()
run.download_file("outputs/result.txt", str(flag.parent / "result.txt"))
print("RESULT " + json.dumps({"status": details["status"], "streamed": "".join(tee.parts),
                              "flag_seen_first": tee.flag_seen_first, "names": names,
                              "result": (flag.parent / "result.txt").read_text(),
                              "log_files": sorted(details["logFiles"])}))
