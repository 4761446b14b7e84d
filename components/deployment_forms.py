"""Adding a deployment to an endpoint: from an `az ml` deployment YAML (a path on the machine
that runs the dashboard, or uploaded), or "a new version like this one" (an existing
deployment's settings with another model, code folder or instance count).

The form is checked as it is filled in (rollout/deploy.py; parsing a YAML reads only local
files), and Deploy… opens a dialog with before → after. The deployment starts at 0% live
traffic; its provisioning is followed in the dialog, and when it fails the reason and the
deployment's logs are shown there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from components import loading
from components.change_flow import flash, run_change
from rollout import computes, deploy
from rollout.changes import Operation
from rollout.deploy import LocalModel, ModelChoice, NewDeployment, RegisteredModel
from rollout.endpoints import DeploymentView, EndpointView
from rollout.errors import RolloutError
from rollout.workspace import Workspace

_PENDING = "deployment_create_pending"
_FROM_YAML, _LIKE = "yaml", "like"
_PATH, _UPLOAD = "path", "upload"
_KEEP, _REGISTERED, _FOLDER = "keep", "registered", "folder"
_LOG_LINES = 100
_RESET = "new_deployment_reset"
_FIELDS = (
    "new_deployment_yaml_path",
    "new_deployment_yaml_name",
    "new_deployment_like_name",
    "new_deployment_like_mpath",
    "new_deployment_like_code",
)


@dataclass(frozen=True)
class PendingDeployment:
    """A new deployment waiting for confirmation: parsed from a YAML (`new`), or like
    `source` with the choices made."""

    endpoint: str
    name: str
    new: NewDeployment | None = None
    source: str | None = None
    model: ModelChoice | None = None
    code: Path | None = None
    instance_count: int | None = None
    instance_type: str | None = None  # on a Kubernetes endpoint: one its compute defines


def _clear_pending() -> None:
    st.session_state.pop(_PENDING, None)


def _problems(messages: list[str]) -> None:
    st.error("\n".join(f"- {m}" for m in messages), icon=":material/block:")


def _deploy_button(key: str, blocker: str | None, pending: PendingDeployment | None) -> None:
    if st.button(
        "Deploy…",
        key=key,
        icon=":material/rocket_launch:",
        type="primary",
        disabled=blocker is not None or pending is None,
        help=blocker,
    ):
        st.session_state[_PENDING] = pending


def add_deployment_form(ws: Workspace, endpoint: EndpointView, read_only: str | None) -> None:
    if st.session_state.pop(_RESET, False):
        # Emptied once the deployment was created (before the fields are drawn, so it shows).
        for key in _FIELDS:
            st.session_state[key] = ""
    st.caption(
        f"A new deployment of **{endpoint.name}** starts with 0% live traffic: test it alone "
        "(Test), mirror to it and move traffic to it (Traffic) when it is ready."
    )
    start = st.radio(
        "Start from",
        [_FROM_YAML, _LIKE],
        format_func=lambda s: "A deployment YAML" if s == _FROM_YAML else "Like an existing one",
        key="new_deployment_from",
        horizontal=True,
    )
    if read_only:
        st.caption(":material/lock: Read-only mode: disabled.")
    if start == _FROM_YAML:
        _from_yaml(ws, endpoint, read_only)
    elif endpoint.deployments:
        _like(ws, endpoint, read_only)
    else:
        st.info(f"'{endpoint.name}' has no deployment to copy yet: start from a YAML.")


# --- from a YAML ----------------------------------------------------------------------------


def _from_yaml(ws: Workspace, endpoint: EndpointView, read_only: str | None) -> None:
    how = st.radio(
        "YAML",
        [_PATH, _UPLOAD],
        format_func=lambda h: "Path on the dashboard's machine" if h == _PATH else "Upload",
        key="new_deployment_yaml_how",
        horizontal=True,
    )
    source: Path | str | None = None
    base: Path | None = None
    if how == _PATH:
        typed = st.text_input(
            "Path of the YAML",
            key="new_deployment_yaml_path",
            placeholder="examples/green-deployment.yml",
            help=f"On the machine that runs the dashboard; relative to {Path.cwd()}. Its model "
            "and code paths are relative to the YAML's folder, as for `az ml`.",
        ).strip()
        source = Path(typed).expanduser() if typed else None
    else:
        upload = st.file_uploader("Deployment YAML", type=["yml", "yaml"], key="new_deployment_up")
        folder = st.text_input(
            "Folder its relative paths are in",
            value=str(Path.cwd()),
            key="new_deployment_yaml_base",
            help="An uploaded file has no folder: its model and code paths are resolved here, "
            "on the machine that runs the dashboard.",
        ).strip()
        base = Path(folder).expanduser()
        if upload is not None:
            source = upload.getvalue().decode("utf-8", errors="replace")
    name = st.text_input(
        "Deployment name",
        key="new_deployment_yaml_name",
        placeholder="the YAML's name",
        help="Leave empty to use the name in the YAML.",
    ).strip()
    if source is None:
        return
    try:
        new = deploy.load_deployment_yaml(
            source, endpoint=endpoint.name, name=name or None, relative_to=base
        )
    except RolloutError as exc:
        st.error(str(exc), icon=":material/block:")
        return
    existing = [d.name for d in endpoint.deployments]
    found = deploy.check_new_deployment(endpoint.name, existing, new.name)
    if endpoint.compute:
        try:
            types = computes.list_instance_types(ws, endpoint.compute)
        except RolloutError as exc:
            st.error(str(exc), icon=":material/block:")
            return
    else:
        types = []
    found += computes.check_placement(new, compute=endpoint.compute, instance_types=types)
    problems = [v.message for v in found]
    _summary(new)
    if problems:
        _problems(problems)
    pending = PendingDeployment(endpoint.name, new.name, new=new)
    blocker = read_only or ("Fix what is listed first." if problems else None)
    _deploy_button("new_deployment_yaml_open", blocker, pending)


def _summary(new: NewDeployment) -> None:
    st.table(
        pd.DataFrame(
            [
                {"": "deployment", "value": new.name},
                {"": "model", "value": new.model},
                {"": "code", "value": f"{new.code} ({new.scoring_script})"},
                {"": "environment", "value": new.environment},
                {"": "instances", "value": f"{new.instance_count} × {new.instance_type}"},
            ]
        ).set_index("")
    )


# --- like an existing one -------------------------------------------------------------------


def _like(ws: Workspace, endpoint: EndpointView, read_only: str | None) -> None:
    names = [d.name for d in endpoint.deployments]
    source_name = st.selectbox("Like", names, key=f"new_deployment_like_{endpoint.name}")
    source = endpoint.deployments[names.index(source_name)]
    name = st.text_input(
        "New deployment name",
        key="new_deployment_like_name",
        placeholder=f"{source.name}-v2",
    ).strip()
    model = _model_choice(ws, source)
    code: Path | None = None
    if st.checkbox("Another code folder", key="new_deployment_like_code_on"):
        typed = st.text_input(
            "Code folder",
            key="new_deployment_like_code",
            help="On the machine that runs the dashboard; it keeps the scoring script's name.",
        ).strip()
        code = Path(typed).expanduser() if typed else None
    count = int(
        # Not clamped by min/max (Streamlit would say so only in a tooltip): the rules
        # below refuse a count outside 1-50 in words.
        st.number_input(
            "Instances",
            value=source.instance_count or 1,
            step=1,
            key=f"new_deployment_like_count_{source.name}",
            help="1 to 50 instances (Azure's limit).",
        )
    )
    instance_type = _instance_type(ws, endpoint, source)
    if not name:
        _deploy_button("new_deployment_like_open", read_only or "Name the new deployment.", None)
        return
    problems = [
        v.message
        for v in deploy.check_like_form(
            endpoint.name, names, name, model=model, code=code, instance_count=count
        )
    ]
    if problems:
        _problems(problems)
    elif model is None and code is None and count == source.instance_count:
        st.caption(f"The same model, code and instances as '{source.name}', under a new name.")
    pending = PendingDeployment(
        endpoint.name,
        name,
        source=source.name,
        model=model,
        code=code,
        instance_count=count,
        instance_type=instance_type,
    )
    blocker = read_only or ("Fix what is listed first." if problems else None)
    _deploy_button("new_deployment_like_open", blocker, pending)


def _instance_type(ws: Workspace, endpoint: EndpointView, source: DeploymentView) -> str | None:
    """On a Kubernetes endpoint, the instance type, chosen from those its compute defines."""
    if not endpoint.compute:
        return None
    try:
        types = computes.list_instance_types(ws, endpoint.compute)
    except RolloutError as exc:
        st.error(str(exc), icon=":material/block:")
        return None
    index = types.index(source.instance_type) if source.instance_type in types else 0
    return st.selectbox(
        "Instance type",
        types,
        index=index,
        key=f"new_deployment_like_type_{endpoint.name}",
        help=f"The instance types {endpoint.compute_label} defines (Kubernetes endpoints use "
        "the compute's instance types, not Azure's VM sizes).",
    )


def _model_choice(ws: Workspace, source: DeploymentView) -> ModelChoice | None:
    how = st.radio(
        "Model",
        [_KEEP, _REGISTERED, _FOLDER],
        format_func=lambda h: {
            _KEEP: f"Keep {source.model}",
            _REGISTERED: "A registered version",
            _FOLDER: "A local folder",
        }[h],
        key="new_deployment_like_model",
        horizontal=True,
    )
    current = deploy.model_name(source.model)
    if how == _REGISTERED:
        left, right = st.columns(2)
        model = left.text_input("Model name", value=current, key="new_deployment_like_mname")
        if not model.strip():
            return None
        try:
            versions = loading.reads(ws).model_versions(model.strip(), wait=True).value
        except RolloutError as exc:
            st.error(str(exc))
            return None
        if not versions:
            right.caption(f"No version of '{model}' is registered in this workspace.")
            return None
        version = right.selectbox("Version", versions, key="new_deployment_like_version")
        return RegisteredModel(model.strip(), str(version))
    if how == _FOLDER:
        left, right = st.columns(2)
        typed = left.text_input(
            "Model folder",
            key="new_deployment_like_mpath",
            placeholder="examples/model-2/model",
            help="On the machine that runs the dashboard; registered as a new model version.",
        ).strip()
        register_as = right.text_input(
            "Register as model", value=current, key="new_deployment_like_mreg"
        ).strip()
        if not typed:
            return None
        return LocalModel(Path(typed).expanduser(), register_as or None)
    return None


# --- the dialog -----------------------------------------------------------------------------


def _model_text(model: ModelChoice | None, source: DeploymentView) -> str:
    if isinstance(model, RegisteredModel):
        return f"{model.name}:{model.version}"
    if isinstance(model, LocalModel):
        return f"{model.name or 'a new model'} from {model.path}"
    return source.model


@st.dialog("Add deployment", width="medium", on_dismiss=_clear_pending)
def _create_dialog(ws: Workspace, endpoint: EndpointView, pending: PendingDeployment) -> None:
    names = [d.name for d in endpoint.deployments]
    source = next((d for d in endpoint.deployments if d.name == pending.source), None)
    if pending.new is not None:
        after = pending.new.summary()
        model, instances = pending.new.model, pending.new.instance_count
    else:
        assert source is not None
        model = _model_text(pending.model, source)
        instances = pending.instance_count or source.instance_count
        after = {
            "deployment": pending.name,
            "like": source.name,
            "model": model,
            "code": str(pending.code) if pending.code else f"as {source.name}'s",
            "instance_count": instances,
            "live": 0,
        }
    st.markdown(
        f"Deployment **{pending.name}** on endpoint **{endpoint.name}**, "
        + (f"from {pending.new.source}" if pending.new else f"like **{pending.source}**")
        + ". Live traffic stays where it is: the new deployment gets 0%."
    )
    rows = [
        {
            "": "deployments",
            "before": ", ".join(names) or "none",
            "after": ", ".join(sorted([*names, pending.name])),
        },
        {"": f"{pending.name}: model", "before": "", "after": model},
        {"": f"{pending.name}: instances", "before": "", "after": str(instances)},
        {"": f"{pending.name}: live traffic", "before": "", "after": "0%"},
    ]
    if source is not None:
        rows[1]["before"] = f"{source.name}: {source.model}"
        rows[2]["before"] = f"{source.name}: {source.instance_count}"
    st.table(pd.DataFrame(rows).set_index(""))
    reason = st.text_input("Reason (for the audit log)", key="new_deployment_reason")
    confirm, cancel = st.columns(2)
    if cancel.button("Cancel", key="new_deployment_cancel", width="stretch"):
        _clear_pending()
        st.rerun()
    if confirm.button("Deploy", key="new_deployment_confirm", type="primary", width="stretch"):
        run_change(
            ws,
            endpoint=endpoint.name,
            action="create_deployment",
            start=lambda: _start(ws, pending),
            label=f"Deploying '{pending.name}'",
            before={"deployments": names},
            after=after,
            reason=reason or "",
            done=f"Deployment '{pending.name}' of '{endpoint.name}' is running, with 0% live "
            "traffic. Send it requests alone on Test; give it traffic on Traffic.",
            clear=_clear_pending,
            on_success=lambda: st.session_state.update({_RESET: True}),
            on_failure=lambda: _failure_logs(ws, endpoint.name, pending.name),
        )


def _start(ws: Workspace, pending: PendingDeployment) -> Operation:
    new = pending.new
    if new is None:
        assert pending.source is not None
        new = deploy.plan_like(
            ws,
            pending.endpoint,
            pending.source,
            name=pending.name,
            model=pending.model,
            code=pending.code,
            instance_count=pending.instance_count,
            instance_type=pending.instance_type,
        )
    return deploy.begin_create_deployment(ws, new)


def _failure_logs(ws: Workspace, endpoint: str, deployment: str) -> None:
    """The new deployment's logs, where the user is: in the dialog that followed it."""
    for container in ("inference-server", "storage-initializer"):
        try:
            text = (
                loading.reads(ws)
                .logs(endpoint, deployment, container=container, lines=_LOG_LINES, wait=True)
                .value
            )
        except RolloutError as exc:
            st.caption(f"No {container} log: {exc}")
            continue
        st.markdown(f"**{container} log** (last {_LOG_LINES} lines)")
        st.code(text.rstrip("\n") or "(no log lines)", language=None, wrap_lines=True)


def open_pending_dialog(
    ws: Workspace, endpoint: EndpointView | None, read_only: str | None
) -> None:
    """Open the dialog of the deployment waiting for confirmation, if it is for `endpoint`."""
    pending: PendingDeployment | None = st.session_state.get(_PENDING)
    if pending is None:
        return
    if endpoint is None or pending.endpoint != endpoint.name:
        _clear_pending()
        return
    if read_only:
        _clear_pending()
        flash("error", f"Nothing was changed: {read_only}")
        st.rerun()
    _create_dialog(ws, endpoint, pending)
