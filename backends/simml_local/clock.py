"""The persisted workspace clock of the local backend (table ``workspace_settings``).

Every process (clients, runners, jobs' ingesters) reads the same setting, so simulated time agrees
across processes. Switching kinds keeps simulated time continuous: the new clock starts from the
old clock's current simulated time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from simml.clock import ClockSetting, clock_now
from simml.entities import ClockState, WorkspaceInfo
from simml.exceptions import InvalidValueException, UserErrorException
from simml.plugins import hookimpl
from simml_local.store import write_transaction

SYSTEM = ClockState("system")


def _encode(state: ClockState) -> str:
    return json.dumps({
        "kind": state.kind, "factor": state.factor,
        **{k: getattr(state, k).isoformat() for k in ("manual_now", "anchor_real", "anchor_sim")
           if getattr(state, k) is not None}})


def _decode(text: str) -> ClockState:
    data = json.loads(text)
    times = {k: datetime.fromisoformat(data[k]) for k in ("manual_now", "anchor_real", "anchor_sim")
             if k in data}
    return ClockState(data["kind"], data.get("factor", 1.0), **times)


class LocalClock:
    """Mixin of ``LocalBackend``: the clock hooks."""

    store: Any  # provided by LocalBackend

    def _read_clock(self, con: Any) -> ClockState:
        row = con.execute("SELECT value FROM workspace_settings WHERE key = 'clock'").fetchone()
        if not row:
            return SYSTEM
        # Read many times a second by a runner; the row rarely changes, so decode each text once.
        decoded = self.__dict__.setdefault("_decoded_clocks", {})
        state = decoded.get(row[0])
        if state is None:
            if len(decoded) > 64:  # a manual clock advanced many times: keep the cache small
                decoded.clear()
            state = decoded[row[0]] = _decode(row[0])
        return state

    @hookimpl
    def simml_clock_get(self, workspace: WorkspaceInfo) -> ClockState:
        return self._read_clock(self.store(workspace).connection())

    @hookimpl
    def simml_clock_set(self, workspace: WorkspaceInfo, setting: str) -> ClockState:
        parsed = ClockSetting.parse(setting)
        real_now = datetime.now(timezone.utc)
        con = self.store(workspace).connection()
        with write_transaction(con):
            sim_now = clock_now(self._read_clock(con), real_now)
            if parsed.kind == "system":
                state = SYSTEM
            elif parsed.kind == "manual":
                state = ClockState("manual", manual_now=parsed.start or sim_now)
            else:
                state = ClockState("scaled", parsed.factor, anchor_real=real_now, anchor_sim=sim_now)
            con.execute("INSERT OR REPLACE INTO workspace_settings VALUES ('clock', ?)",
                        (_encode(state),))
        return state

    @hookimpl
    def simml_clock_advance(self, workspace: WorkspaceInfo, seconds: float) -> ClockState:
        if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
            raise InvalidValueException(f"Clock advance must be a number >= 0, not {seconds!r}.")
        con = self.store(workspace).connection()
        with write_transaction(con):
            state = self._read_clock(con)
            if state.kind != "manual":
                raise UserErrorException(
                    f"The workspace clock is {state.kind!r}; only a manual clock can be advanced "
                    "(set it with ws.set_clock('manual') or `simml clock set manual`).")
            state = ClockState("manual", manual_now=state.manual_now + timedelta(seconds=seconds))
            con.execute("INSERT OR REPLACE INTO workspace_settings VALUES ('clock', ?)",
                        (_encode(state),))
        return state
