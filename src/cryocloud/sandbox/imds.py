"""A metadata service (IMDSv2) for one simulated instance, on its own 127.0.0.1 port.

The node reaches it through AWS_EC2_METADATA_SERVICE_ENDPOINT (never the link-local address on this machine), and
boto3's own credential chain finds the node role's credentials at iam/security-credentials/ROLE, as on EC2: no
secret is ever in the user-data. Serves a session token (PUT /latest/api/token, then required on every GET),
instance-id, placement, instance type, tags, the identity document, and spot/instance-action (404 until a notice is
raised, as AWS does).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class InstanceFacts:
    instance_id: str
    instance_type: str
    zone: str
    image_id: str
    role: str
    access_key: str
    secret_key: str
    tags: dict[str, str] = field(default_factory=dict)
    spot_action: dict[str, str] | None = None  # {"action": "terminate", "time": ISO}: set by a spot notice

    @property
    def region(self) -> str:
        return self.zone[:-1]


class MetadataServer:
    def __init__(self, facts: InstanceFacts) -> None:
        self.facts = facts
        self.token = secrets.token_urlsafe(24)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: str, kind: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(200, server.token)
                else:
                    self._send(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != server.token:
                    self._send(401, "")  # IMDSv2 only (cryocloud launches with HttpTokens=required)
                    return
                answer = server.answer(self.path)
                if answer is None:
                    self._send(404, "")
                else:
                    self._send(200, answer, "application/json" if answer.startswith("{") else "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"imds-{facts.instance_id}", daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def answer(self, path: str) -> str | None:
        f = self.facts
        creds = "/latest/meta-data/iam/security-credentials/"
        simple = {
            "/latest/meta-data/instance-id": f.instance_id, "/latest/meta-data/instance-type": f.instance_type,
            "/latest/meta-data/ami-id": f.image_id, "/latest/meta-data/placement/availability-zone": f.zone,
            "/latest/meta-data/placement/region": f.region, creds: f.role,
            "/latest/meta-data/tags/instance": "\n".join(f.tags), "/latest/meta-data/tags/instance/": "\n".join(f.tags),
        }
        if path in simple:
            return simple[path]
        if path.startswith("/latest/meta-data/tags/instance/"):
            return f.tags.get(path.rsplit("/", 1)[1])
        if path == creds + f.role:
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
            return json.dumps({"Code": "Success", "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "Type": "AWS-HMAC", "AccessKeyId": f.access_key, "SecretAccessKey": f.secret_key,
                               "Token": "", "Expiration": expires})
        if path == "/latest/dynamic/instance-identity/document":
            return json.dumps({"instanceId": f.instance_id, "instanceType": f.instance_type, "imageId": f.image_id,
                               "availabilityZone": f.zone, "region": f.region})
        if path == "/latest/meta-data/spot/instance-action":
            return json.dumps(f.spot_action) if f.spot_action else None
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
