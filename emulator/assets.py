"""Model, code and environment versions: the workspace's registry of them.

`Assets` answers the asset routes (container list and get, version list, get and put,
in the shape azure-ai-ml's REST models read) and resolves a deployment's asset
references; the files of local versions are `asset_files.AssetFiles`'s.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

from emulator import bodies
from emulator.asset_files import AssetFiles
from emulator.errors import ApiError
from emulator.store import Doc, Store, utc_now


class Assets:
    """The workspace's asset versions, stored as the REST API serves them."""

    def __init__(
        self,
        store: Store,
        files: AssetFiles,
        *,
        workspace_path: str,
        workspace: str,
        resource_type: str,
    ) -> None:
        self.store = store
        self.files = files
        self.workspace_path = workspace_path
        self.workspace = workspace
        self.resource_type = resource_type  # "<provider>/workspaces"
        self._lock = asyncio.Lock()

    def resolve(self, kind: str, ref: object, *, what: str) -> Doc | None:
        """The stored asset an ARM id (or azureml:name:version) points at."""
        if not ref:
            return None
        text = str(ref)
        match = re.search(rf"/{kind}/([^/]+)/versions/([^/]+)$", text, re.IGNORECASE)
        if match is None:
            short = re.match(r"^azureml:([^:/]+):([^:/]+)$", text)
            if short is None:
                raise ApiError(
                    400,
                    "BadArgument",
                    f"{what}: {text!r} is not an asset registered in the emulator; register "
                    "local files with `python -m emulator apply -f` (registry assets are not "
                    "available offline)",
                )
            match = short
        name, version = match.group(1), match.group(2)
        doc = self.store.get_asset(kind, name, version)
        if doc is None:
            raise ApiError(
                404,
                "UserError",
                f"{what}: {kind[:-1]} '{name}' version '{version}' is not registered in workspace "
                f"'{self.workspace}'",
            )
        return doc

    def get(self, kind: str, name: str, version: str) -> Doc:
        doc = self.store.get_asset(kind, name, version)
        if doc is None:
            raise ApiError(
                404,
                "UserError",
                f"{kind[:-1].capitalize()} '{name}' version '{version}' not found in workspace "
                f"'{self.workspace}'.",
            )
        return _public(kind, doc)

    def list_versions(self, kind: str, name: str, query: VersionQuery | None = None) -> list[Doc]:
        """The versions of one asset as Azure lists them: filtered, ordered, at most `top`.

        An unknown name is an empty list, as in Azure (its GET of the container is 404).
        """
        query = query or VersionQuery()
        docs = [_public(kind, d) for d in self.store.list_assets(kind, name)]
        docs = [d for d in docs if query.matches(d)]
        if query.order is not None:
            # Registration order breaks ties of the creation time.
            ranked = sorted(enumerate(docs), key=lambda p: (p[1]["systemData"]["createdAt"], p[0]))
            docs = (
                [d for _, d in reversed(ranked)]
                if query.order == "desc"
                else [d for _, d in ranked]
            )
        return docs if query.top is None else docs[: query.top]

    def list_containers(self, kind: str, *, view: str = "activeonly") -> list[Doc]:
        """One container per asset name, in the order the names were first registered."""
        _check_view(view)
        by_name: dict[str, list[Doc]] = {}
        for doc in self.store.list_assets(kind):
            by_name.setdefault(_asset_name(doc).lower(), []).append(doc)
        # Nothing is ever archived in the emulator: ArchivedOnly lists none.
        if view == "archivedonly":
            return []
        return [self._container(kind, versions) for versions in by_name.values()]

    def get_container(self, kind: str, name: str) -> Doc:
        versions = self.store.list_assets(kind, name)
        if not versions:
            raise ApiError(
                404,
                "UserError",
                f"{kind[:-1].capitalize()} container '{name}' not found in workspace "
                f"'{self.workspace}'.",
            )
        return self._container(kind, versions)

    def _container(self, kind: str, versions: list[Doc]) -> Doc:
        """An asset container as Azure answers it, from the asset's versions."""
        first = versions[0]
        name = _asset_name(first)
        latest = max(enumerate(versions), key=lambda p: (p[1]["systemData"]["createdAt"], p[0]))[1]
        numbers = [int(d["name"]) for d in versions if str(d["name"]).isdigit()]
        last_modified = latest["systemData"].get(
            "lastModifiedAt", latest["systemData"]["createdAt"]
        )
        return {
            "id": f"{self.workspace_path}/{kind}/{name}",
            "name": name,
            "type": f"{self.resource_type}/{kind}",
            "systemData": {
                **_system_data(first["systemData"]["createdAt"]),
                "lastModifiedAt": last_modified,
            },
            "properties": {
                "description": None,
                "tags": {},
                "properties": {},
                "isArchived": False,
                "latestVersion": latest["name"],
                "nextVersion": str(max(numbers, default=0) + 1),
                "provisioningState": "Succeeded",
            },
        }

    async def put(self, kind: str, name: str, version: str, body: Doc) -> Doc:
        """Register a model, code or environment version; local files are copied in.

        The name and version are checked before any path is made of them; measuring,
        hashing and copying the files run in a thread, one registration at a time.
        """
        target = self.files.folder(kind, name, version)
        props = bodies.check_asset(kind, name, body).values
        uri_field = {"models": "modelUri", "codes": "codeUri"}.get(kind)
        local: str | None = None
        digest = ""
        async with self._lock:
            if uri_field is not None:
                what = f"{uri_field} of {kind[:-1]} '{name}'"
                source = self.files.source(props.get(uri_field), what=what)
                if kind == "codes" and not source.is_dir():
                    raise bodies.bad(f"{what}: {source} is not a directory")
                digest = await asyncio.to_thread(self.files.measure, source, what=what)
                existing = self.store.get_asset(kind, name, version)
                if existing is not None and existing.get("_digest") != digest:
                    raise ApiError(
                        409,
                        "UserError",
                        f"{kind[:-1].capitalize()} '{name}' version '{version}' already exists "
                        "with different content; register the new files as a new version",
                    )
                if existing is None:
                    await asyncio.to_thread(self.files.copy_in, kind, source, target)
                    local = str(target)
                else:
                    local = existing["_local"]
            now = utc_now()
            earlier = self.store.get_asset(kind, name, version)
            created = earlier["systemData"]["createdAt"] if earlier else now
            doc: Doc = {
                "id": f"{self.workspace_path}/{kind}/{name}/versions/{version}",
                "name": version,
                "type": f"{self.resource_type}/{kind}/versions",
                "systemData": {**_system_data(created), "lastModifiedAt": now},
                "properties": {**props, "provisioningState": "Succeeded"},
                "_local": local,
                "_digest": digest,
            }
            self.store.put_asset(kind, name, version, doc)
        return _public(kind, doc)


# The fields Azure answers for every version of a kind, with the value of a version
# that did not set them. azure-ai-ml's REST models read them: its Model reads `flavors`
# unguarded (a models.get without it fails with "'NoneType' object has no attribute
# 'items'"), none for a custom model.
_VERSION_DEFAULTS: dict[str, Doc] = {
    "models": {
        "flavors": {},
        "modelType": "custom_model",
        "modelUri": None,
        "jobName": None,
        "stage": None,
    },
    "codes": {"codeUri": None},
    "environments": {
        "image": None,
        "condaFile": None,
        "build": None,
        "osType": "Linux",
        "environmentType": "UserCreated",
        "autoRebuild": "Disabled",
        "inferenceConfig": None,
        "stage": None,
    },
}
_COMMON_DEFAULTS: Doc = {"description": None, "isAnonymous": False, "isArchived": False}
_VIEWS = ("activeonly", "archivedonly", "all")


@dataclass(frozen=True)
class VersionQuery:
    """What a version list asks for: `$orderBy`, `$top`, `listViewType` and filters.

    azure-ai-ml sends `$orderBy=createdtime desc&$top=1` to find the latest version
    (`get(name, label="latest")`), `listViewType` on every list, and `hash`/`hashVersion`
    when it looks for a code snapshot it uploaded before.
    """

    order: str | None = None
    top: int | None = None
    view: str = "activeonly"
    version: str | None = None
    stage: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    properties: tuple[tuple[str, str | None], ...] = ()
    hash: str | None = None
    hash_version: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> VersionQuery:
        """The query of a version list; refuses (400) what it cannot honour."""
        order: str | None = None
        if "$orderBy" in params:
            field, _, direction = params["$orderBy"].strip().lower().partition(" ")
            direction = direction.strip() or "asc"
            if field not in ("createdtime", "createdat") or direction not in ("asc", "desc"):
                raise bodies.bad(
                    f"$orderBy {bodies.show(params['$orderBy'])} is not supported by the "
                    "emulator; use 'createdtime asc' or 'createdtime desc'"
                )
            order = direction
        top: int | None = None
        if "$top" in params:
            text = params["$top"]
            if not (text.isascii() and text.isdigit() and 0 < len(text) <= 9 and int(text) > 0):
                raise bodies.bad(f"$top must be a whole number, 1 or more; got {bodies.show(text)}")
            top = int(text)
        view = params.get("listViewType", "ActiveOnly").lower()
        _check_view(view)
        return cls(
            order=order,
            top=top,
            view=view,
            version=params.get("version"),
            stage=params.get("stage"),
            tags=_pairs(params.get("tags")),
            properties=_pairs(params.get("properties")),
            hash=params.get("hash"),
            hash_version=params.get("hashVersion"),
        )

    def matches(self, doc: Doc) -> bool:
        props = doc["properties"]
        if self.view == "archivedonly" and not props.get("isArchived"):
            return False
        if self.view == "activeonly" and props.get("isArchived"):
            return False
        if self.version is not None and doc["name"] != self.version:
            return False
        if self.stage is not None and props.get("stage") != self.stage:
            return False
        extra = props.get("properties") or {}
        if self.hash is not None and extra.get("hash_sha256") != self.hash:
            return False
        if self.hash_version is not None and extra.get("hash_version") != self.hash_version:
            return False
        return _has_pairs(props.get("tags") or {}, self.tags) and _has_pairs(extra, self.properties)


def _check_view(view: str) -> None:
    if view not in _VIEWS:
        raise bodies.bad(
            f"listViewType {bodies.show(view)} is not valid; use ActiveOnly, ArchivedOnly or All"
        )


def _pairs(text: str | None) -> tuple[tuple[str, str | None], ...]:
    """A tags or properties filter, `key` or `key=value`, comma-separated."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if key.strip():
            pairs.append((key.strip(), value.strip() if sep else None))
    return tuple(pairs)


def _has_pairs(values: Mapping[str, object], wanted: tuple[tuple[str, str | None], ...]) -> bool:
    return all(k in values and (v is None or str(values[k]) == v) for k, v in wanted)


def _asset_name(doc: Doc) -> str:
    """The asset's name, from the id `.../{kind}/{name}/versions/{version}`."""
    return str(doc["id"]).split("/")[-3]


def _system_data(created_at: str) -> Doc:
    return {
        "createdAt": created_at,
        "createdBy": "local-user",
        "createdByType": "User",
        "lastModifiedAt": created_at,
        "lastModifiedBy": "local-user",
        "lastModifiedByType": "User",
    }


def _public(kind: str, doc: Doc) -> Doc:
    """A stored version as Azure answers it: every field its REST models read."""
    shown = {k: v for k, v in doc.items() if not k.startswith("_")}
    stored = shown["properties"]
    props = {**_COMMON_DEFAULTS, **_VERSION_DEFAULTS.get(kind, {}), **stored}
    props["tags"] = stored.get("tags") or {}
    props["properties"] = stored.get("properties") or {}
    if props.get("flavors") is None and kind == "models":
        props["flavors"] = {}
    for field in ("modelUri", "codeUri"):
        uri = props.get(field)
        if isinstance(uri, str) and uri.startswith("file:///"):
            # The same file (RFC 8089), with a host: azure-ai-ml keeps a path with a scheme
            # and a host as it is, and takes `file:///x` for a relative path `file:/x`.
            props[field] = "file://localhost/" + uri[len("file:///") :]
    shown["properties"] = props
    shown["systemData"] = {**_system_data(shown["systemData"]["createdAt"]), **shown["systemData"]}
    return shown
