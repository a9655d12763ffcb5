"""A fake of Cloud Storage's JSON API: the bucket and object calls google-cloud-storage makes.

Enough for Prefect result storage through prefect-gcp's GcsBucket block: bucket get, object list
(by prefix, one page), multipart object upload, object metadata and media download. Objects live
in memory. Serve it behind
`tls_proxy.InterceptingProxy` as `storage.googleapis.com`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class GcsFake:
    """In-memory buckets (`objects[bucket][name] -> bytes`) and the ASGI `app` serving them."""

    def __init__(self, buckets: list[str]):
        self.objects: dict[str, dict[str, bytes]] = {bucket: {} for bucket in buckets}
        self.app = Starlette(
            routes=[
                Route("/storage/v1/b/{bucket}", self._bucket),
                # Before the object routes: `{name:path}` would take any path under `o/`.
                Route("/storage/v1/b/{bucket}/o", self._list),
                Route("/storage/v1/b/{bucket}/o/{name:path}", self._metadata),
                Route("/download/storage/v1/b/{bucket}/o/{name:path}", self._download),
                Route("/upload/storage/v1/b/{bucket}/o", self._upload, methods=["POST"]),
            ]
        )

    def _resource(self, bucket: str, name: str) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "bucket": bucket,
            "name": name,
            "id": f"{bucket}/{name}/1",
            "size": str(len(self.objects[bucket][name])),
            "generation": "1",
            "metageneration": "1",
            "contentType": "application/octet-stream",
        }

    def _find(self, request: Request) -> tuple[str, str] | Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "Anonymous caller does not have storage.objects access.")
        bucket, name = request.path_params["bucket"], request.path_params.get("name", "")
        if bucket not in self.objects:
            return _error(404, f"The specified bucket does not exist: {bucket}")
        if name and name not in self.objects[bucket]:
            return _error(404, f"No such object: {bucket}/{name}")
        return bucket, name

    async def _bucket(self, request: Request) -> Response:
        found = self._find(request)
        if isinstance(found, Response):
            return found
        return JSONResponse({"kind": "storage#bucket", "name": found[0], "id": found[0]})

    async def _list(self, request: Request) -> Response:
        """Objects by name prefix, sorted, in one page (no `nextPageToken`). With a `delimiter`,
        the names past it fold into `prefixes`, as the JSON API does."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        bucket = found[0]
        prefix = request.query_params.get("prefix", "")
        delimiter = request.query_params.get("delimiter", "")
        names, prefixes = [], set()
        for name in sorted(self.objects[bucket]):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                names.append(name)
        listing: dict[str, Any] = {"kind": "storage#objects"}
        if names:
            listing["items"] = [self._resource(bucket, name) for name in names]
        if prefixes:
            listing["prefixes"] = sorted(prefixes)
        return JSONResponse(listing)

    async def _metadata(self, request: Request) -> Response:
        found = self._find(request)
        return found if isinstance(found, Response) else JSONResponse(self._resource(*found))

    async def _download(self, request: Request) -> Response:
        found = self._find(request)
        if isinstance(found, Response):
            return found
        return Response(self.objects[found[0]][found[1]], media_type="application/octet-stream")

    async def _upload(self, request: Request) -> Response:
        found = self._find(request)
        if isinstance(found, Response):
            return found
        if request.query_params.get("uploadType") != "multipart":
            return _error(501, "The fake only takes multipart uploads (objects under 8 MiB).")
        metadata, data = _multipart(await request.body(), request.headers["content-type"])
        self.objects[found[0]][metadata["name"]] = data
        return JSONResponse(self._resource(found[0], metadata["name"]))


def _multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = body.split(b"--" + boundary)[1:-1]
    contents = [part.removeprefix(b"\r\n").split(b"\r\n\r\n", 1)[1][:-2] for part in parts]
    return json.loads(contents[0]), contents[1]


def _error(code: int, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=code)
