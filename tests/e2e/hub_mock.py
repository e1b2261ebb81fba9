"""A stand-in for the Hugging Face Hub's two routes that `sentiment-server download` uses, serving
one local model directory under any repository id, so that tests/e2e/compose.sh can run the
compose stack's model download with no Internet access.

    python3 hub_mock.py MODEL_DIR [PORT]

GET /api/models/<repo>/revision/<rev>?blobs=true  the listing: every file with its size and git
                                                   blob id; *.safetensors as LFS files (sha256)
GET /<repo>/resolve/<commit>/<file>                the file
Standard library only (it runs in the MLflow image).
"""

import hashlib
import http.server
import json
import os
import re
import sys

MODEL_DIR = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
COMMIT = "e2e0000000000000000000000000000000000000"


def describe(name):
    data = open(os.path.join(MODEL_DIR, name), "rb").read()
    entry = {"rfilename": name, "size": len(data)}
    if name.endswith(".safetensors"):
        entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    else:
        entry["blobId"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return entry


FILES = sorted(f for f in os.listdir(MODEL_DIR) if os.path.isfile(os.path.join(MODEL_DIR, f)))
LISTING = json.dumps({"sha": COMMIT, "siblings": [describe(f) for f in FILES]}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if re.fullmatch(r"/api/models/[^/]+/[^/]+/revision/[^/]+", path):
            return self.send(200, LISTING, "application/json")
        match = re.fullmatch(r"/[^/]+/[^/]+/resolve/[^/]+/([^/]+)", path)
        if match and match.group(1) in FILES:
            with open(os.path.join(MODEL_DIR, match.group(1)), "rb") as f:
                return self.send(200, f.read(), "application/octet-stream")
        return self.send(404, b"not found", "text/plain")

    def send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
