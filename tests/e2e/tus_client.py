"""A small tus 1.0.0 client over requests, for the uploader's end-to-end
tests: every request spelled out, so a test can send exactly the headers it
means (right or wrong)."""
import base64
import hashlib

import requests

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def metadata(**kv):
    """Upload-Metadata from keyword arguments (values str or bytes; None: a key alone)."""
    return ",".join(k if v is None else f"{k} {b64(v)}" for k, v in kv.items())


def checksum(alg, data):
    return f"{alg} {base64.b64encode(hashlib.new(alg, data).digest()).decode()}"


class Tus:
    def __init__(self, root_url, collection, headers=None, timeout=60):
        self.root = root_url.rstrip("/")       # http://127.0.0.1:port
        self.collection = collection            # /api/v1/datasources/x/uploads
        self.headers = dict(headers or {})
        self.timeout = timeout

    def url(self, location):
        return location if location.startswith("http") else self.root + location

    def request(self, method, path_or_url, headers=None, tus=True, **kw):
        h = dict(self.headers)
        if tus:
            h.update(TUS)
        h.update(headers or {})
        return requests.request(method, self.url(path_or_url), headers=h, timeout=self.timeout, **kw)

    def options(self, **kw):
        return self.request("OPTIONS", self.collection, tus=False, **kw)

    def create(self, length=None, defer=False, meta=None, concat=None, body=None, headers=None, **kw):
        h = dict(headers or {})
        if length is not None:
            h["Upload-Length"] = str(length)
        if defer:
            h["Upload-Defer-Length"] = "1"
        if meta is not None:
            h["Upload-Metadata"] = meta
        if concat is not None:
            h["Upload-Concat"] = concat
        if body is not None:
            h["Content-Type"] = OCTET
        return self.request("POST", self.collection, headers=h, data=body, **kw)

    def create_file(self, path, data, **kw):
        """Creates an upload for `data` named by relativePath `path`; returns its URL path."""
        name = path.rsplit("/", 1)[-1]
        r = self.create(len(data), meta=metadata(filename=name, relativePath=path), **kw)
        assert r.status_code == 201, r.text
        return r.headers["Location"]

    def patch(self, location, offset, data, headers=None, **kw):
        h = {"Upload-Offset": str(offset), "Content-Type": OCTET}
        h.update(headers or {})
        return self.request("PATCH", location, headers=h, data=data, **kw)

    def head(self, location, **kw):
        return self.request("HEAD", location, **kw)

    def delete(self, location, **kw):
        return self.request("DELETE", location, **kw)

    def complete(self, **kw):
        return self.request("POST", self.collection + "/complete", **kw)

    def upload(self, path, data, pieces=1):
        """A whole file in `pieces` PATCH requests; returns its URL path."""
        loc = self.create_file(path, data)
        step = max(1, -(-len(data) // pieces))
        off = 0
        while off < len(data):
            r = self.patch(loc, off, data[off:off + step])
            assert r.status_code == 204, r.text
            off = int(r.headers["Upload-Offset"])
        return loc
