"""The Consume section of an endpoint (Azure ML studio's Consume tab): its scoring URI and
auth mode, its keys (or a token) masked until the user asks to see them, and ready snippets
to call it from curl, Python and the az CLI, each with Streamlit's copy button.

The section is a lazy expander: nothing is read until it is opened. Opening it reads the
keys once (one request; the keys are kept in this session's state only, never logged nor
put in the URL) and closing it forgets them and masks them again. The snippets read the
credential from an environment variable until "Show key" is on; only then do they carry it.

Read-only mode leaves all of this available: it stops changes to the workspace, and neither
reading the keys nor showing how to call the endpoint changes anything (the Test page
scores with the same keys in read-only mode). Who may read the keys is the workspace's
business: on Azure, reading them needs the listKeys permission, and a refusal is shown.
"""

from __future__ import annotations

import time
from dataclasses import replace

import streamlit as st

from components.invoke_panel import sample_request
from rollout.consume import (
    REQUEST_FILE,
    ScoringAuth,
    SnippetFacts,
    az_cli_snippet,
    compact_body,
    credentials_command,
    curl_snippet,
    get_scoring_auth,
    mask_secret,
    python_snippet,
)
from rollout.endpoints import EndpointView
from rollout.errors import RolloutError
from rollout.workspace import Workspace

_KEPT = "consume_auth"  # {workspace key/endpoint: ScoringAuth}, while the section is open
_EDITOR = "invoke_request"  # the Test page's request editor (components/invoke_panel.py)
ROUTED = "(endpoint)"  # not a valid deployment name, so it cannot clash with one


def open_key(endpoint: str) -> str:
    return f"consume_open_{endpoint}"


def show_key(endpoint: str) -> str:
    return f"consume_show_{endpoint}"


def target_key(endpoint: str) -> str:
    return f"consume_target_{endpoint}"


def _kept_as(ws: Workspace, endpoint: str) -> str:
    return f"{ws.key}/{endpoint}"


def _opened_or_closed(ws: Workspace, endpoint: str) -> None:
    """Opened: read the keys afresh. Closed: forget them and mask them again."""
    st.session_state.get(_KEPT, {}).pop(_kept_as(ws, endpoint), None)
    st.session_state[show_key(endpoint)] = False


def consume_panel(ws: Workspace, endpoint: EndpointView) -> None:
    """The Consume section of `endpoint`, collapsed until the user opens it."""
    box = st.expander(
        "Consume: the scoring URI, keys and code to call this endpoint",
        icon=":material/terminal:",
        key=open_key(endpoint.name),
        on_change=_opened_or_closed,
        args=(ws, endpoint.name),
    )
    with box:
        if box.open:
            _contents(ws, endpoint)


def _auth(ws: Workspace, endpoint: EndpointView) -> ScoringAuth | None:
    kept: dict[str, ScoringAuth] = st.session_state.setdefault(_KEPT, {})
    name = _kept_as(ws, endpoint.name)
    if name not in kept:
        try:
            kept[name] = get_scoring_auth(ws, endpoint.name, endpoint.auth_mode)
        except RolloutError as exc:
            st.error(
                f"Could not read the keys of '{endpoint.name}': {exc}. The snippets below "
                "still work with a key you have.",
                icon=":material/key_off:",
            )
            return None
    return kept[name]


def _contents(ws: Workspace, endpoint: EndpointView) -> None:
    if not endpoint.scoring_uri:
        st.info(f"Endpoint '{endpoint.name}' has no scoring URI yet; wait until it is created.")
        return
    st.markdown("**Scoring URI**")
    st.code(endpoint.scoring_uri, language=None)
    auth = _auth(ws, endpoint)
    if auth is None:
        _snippets(ws, endpoint, None)
        return
    # The keys go above the toggle that shows them, which has to run first.
    keys = st.container()
    word = "key" if auth.uses_keys else "token"
    with st.container(horizontal=True, vertical_alignment="center"):
        shown = st.toggle(
            f"Show {word}",
            key=show_key(endpoint.name),
            width="content",
            help="Shown in this browser session only, until you close this section.",
        )
        st.caption(
            ":material/visibility: Shown, and written into the snippets below: treat them "
            "as secrets. Hide it again here or by closing this section."
            if shown
            else f"The snippets below read the {word} from an environment variable; Show "
            f"{word} writes the {word} itself into them.",
        )
    with keys:
        _credentials(auth, shown=shown)
    _snippets(ws, endpoint, auth if shown else None)


def _credentials(auth: ScoringAuth, *, shown: bool) -> None:
    if auth.uses_keys:
        st.markdown(
            "**Auth mode** key: send either key as `Authorization: Bearer <key>`. Regenerating "
            "one leaves the other working, so clients can move over without downtime."
        )
        rows = [("Primary key", auth.primary), ("Secondary key", auth.secondary)]
    else:
        expiry = (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(auth.expires_at))
            if auth.expires_at
            else "unknown"
        )
        st.markdown(
            f"**Auth mode** {auth.mode}: send a token as `Authorization: Bearer <token>`. "
            f"Tokens expire; this one at **{expiry}**. Get a new one with `az ml online-endpoint "
            "get-credentials` (the az CLI tab below)."
        )
        rows = [("Token", auth.primary)]
    for label, secret in rows:
        if not secret:
            continue
        name_col, value_col = st.columns([1, 4], vertical_alignment="center")
        name_col.markdown(f"**{label}**")
        if shown:
            with value_col:
                st.code(secret, language=None, wrap_lines=True)
        else:
            value_col.markdown(f"`{mask_secret(secret)}`")


def _body() -> str:
    """The Test page's request when it is valid JSON, else the example request."""
    for text in (st.session_state.get(_EDITOR), sample_request()):
        if not text:
            continue
        try:
            compact_body(text)
        except ValueError:
            continue
        return str(text)
    return "{}"


def _snippets(ws: Workspace, endpoint: EndpointView, auth: ScoringAuth | None) -> None:
    names = [d.name for d in endpoint.deployments]
    target = st.selectbox(
        "Call",
        [ROUTED, *names],
        format_func=lambda o: (
            "the endpoint (its traffic decides which deployment answers)"
            if o == ROUTED
            else f"deployment '{o}' only (azureml-model-deployment header)"
        ),
        key=target_key(endpoint.name),
    )
    facts = SnippetFacts(
        endpoint=endpoint.name,
        scoring_uri=endpoint.scoring_uri,
        auth_mode=endpoint.auth_mode,
        body=_body(),
        resource_group=ws.resource_group,
        workspace_name=ws.workspace_name,
        deployment=None if target in (None, ROUTED) else str(target),
        deployments=tuple(names),
        ca_cert=ws.facts.ca_cert if ws.facts is not None else None,
        on_azure=ws.kind == "azure",
    )
    if auth is not None:
        facts = replace(facts, credential=auth.credential)
    with_key = (
        "with the key in it" if facts.credential else f"with the credential from ${facts.var}"
    )
    st.caption(
        f"Each sends the request body of the editor below {with_key}."
        + ("" if facts.inline else f" The body is long: save it as {REQUEST_FILE} first.")
    )
    curl, python, cli = st.tabs(["curl", "Python", "az CLI"])
    with curl:
        st.code(curl_snippet(facts), language="bash")
    with python:
        st.code(python_snippet(facts), language="python")
    with cli:
        if ws.kind != "azure":
            st.caption(
                "The az CLI calls Azure only, not the local emulator: this is the command "
                "for the same endpoint in a workspace on Azure."
            )
        st.code(az_cli_snippet(facts), language="bash")
        st.caption("The az CLI finds the credential itself. To get it for other clients:")
        st.code(credentials_command(facts), language="bash")
