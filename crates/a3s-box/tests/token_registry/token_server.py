"""A minimal Docker registry token server (test-only), in the style of docker/distribution's
`auth: token` spec: GET /token?service=...&scope=repository:NAME:ACTIONS[&scope=...]
with optional Basic credentials answers {"token", "access_token", "expires_in"}, an RS256
JWT carrying the signing certificate in `x5c`.

argv: KEY_PEM CERT_PEM PORT_FILE LOG_FILE USER PASS
Anonymous callers get `pull` on `public/*` only; USER:PASS gets what it asks for;
wrong credentials get 401. Every request is appended to LOG_FILE as one JSON line.
"""

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

KEY, CERT, PORT_FILE, LOG, USER, PASS = sys.argv[1:7]
ISSUER = "a3s-test-issuer"
with open(CERT) as f:
    CERT_DER = ssl.PEM_cert_to_DER_cert(f.read())


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(payload):
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", KEY],
        input=payload,
        stdout=subprocess.PIPE,
        check=True,
    )
    return out.stdout


def jwt(sub, audience, access):
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(CERT_DER).decode()]}
    claims = {
        "iss": ISSUER,
        "sub": sub,
        "aud": audience,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "access": access,
    }
    signing_input = b64url(json.dumps(header).encode()) + b"." + b64url(json.dumps(claims).encode())
    return (signing_input + b"." + b64url(sign(signing_input))).decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                user, password = "", None
            if (user, password) != (USER, PASS):
                self.log_request_line(url.path, query, user, "denied")
                return self.reply(401, {"details": "incorrect username or password"})
        if url.path != "/token":
            return self.reply(404, {})
        access = []
        for scope in query.get("scope", []):
            parts = scope.split(":")
            if len(parts) != 3 or parts[0] != "repository":
                continue
            name, wanted = parts[1], [a for a in parts[2].split(",") if a]
            if user is None:
                granted = ["pull"] if name.startswith("public/") and "pull" in wanted else []
            else:
                granted = wanted
            access.append({"type": "repository", "name": name, "actions": granted})
        self.log_request_line(url.path, query, user, access)
        token = jwt(user or "", query.get("service", [""])[0], access)
        self.reply(200, {"token": token, "access_token": token, "expires_in": 300})

    def log_request_line(self, path, query, user, granted):
        entry = {"path": path, "query": query, "user": user, "granted": granted}
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
tmp = PORT_FILE + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, PORT_FILE)
server.serve_forever()
