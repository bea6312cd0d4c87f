"""``oracle-sidecar alert``: rules over the sidecars' snapshots, Telegram delivery, alert state.

- :mod:`sidecar.alerter.rules`: what is wrong now (findings), from one snapshot per target.
- :mod:`sidecar.alerter.decisions`: what to send, given the findings, the state and the cooldown.
- :mod:`sidecar.alerter.state`: the state format and where it lives (a ConfigMap or a JSON file).
- :mod:`sidecar.alerter.messages`: the Telegram HTML text of each notice, alone or grouped.
- :mod:`sidecar.alerter.grouping`: one message per severity per run.
- :mod:`sidecar.alerter.telegram`: the Bot API client (retries, 429, deadline, token hygiene).
- :mod:`sidecar.alerter.run`: the command line and one evaluation from start to end.

The dashboard reads the alert state with :func:`load_state_file` or
:func:`load_state_config_map`.
"""

from sidecar.alerter.state import load_state_config_map, load_state_file

__all__ = ["load_state_config_map", "load_state_file"]
