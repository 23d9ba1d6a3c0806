#!/usr/bin/env python3
# rehydra-boot: started by cloud-init on the GPU instance a drill created.
#
# Why it exists. The instance boots before rehydra has copied the model into
# the drill's bucket, so something on the instance has to wait for it, copy
# it, prove the copy is the model (sha256 of every file against the sink
# manifest, the same digests the registry published) and start the stack.
# It reports each phase (booted, syncing, verifying, starting, serving, or
# failed) with a timestamp to the object rehydra-boot/status.json in the
# bucket, where the drill reads it to split the cloud RTO.
#
# The stack runs either from a container image (stack.image, e.g. vLLM's
# OpenAI server image; docker and the NVIDIA container toolkit are
# installed when the image of the machine lacks them) or as a command the
# machine image itself provides. Either way it runs as the systemd unit
# rehydra-stack, restarted after a delay with no start limit.
#
# The S3 client is this file's own (SigV4 over urllib): it addresses the
# bucket the way the provider needs (virtual-hosted for Alibaba OSS and
# AWS, path-style for Nebius), sends x-amz-content-sha256 on every request
# and needs no package on the image. Every value comes from
# /etc/rehydra/stack.json (written by cloud-init from Terraform variables)
# and every command runs as an argv list: no shell ever sees a runbook
# value. Credentials are never printed.
import datetime
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

WAIT_S = 6 * 3600  # for the model to arrive in the bucket
SERVE_WAIT_S = 2 * 3600  # for the stack to accept HTTP after it started
POLL_S = float(os.environ.get("REHYDRA_BOOT_POLL_S", "5"))
MANIFEST = ".rehydra-sink.json"
STATUS_KEY = "rehydra-boot/status.json"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNIT_PROPS = ["--property=Restart=on-failure", "--property=RestartSec=10",
              "--property=StartLimitIntervalSec=0"]
NVIDIA_REPO = "https://nvidia.github.io/libnvidia-container"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BootError(Exception):
    pass


def log(msg):
    print("rehydra-boot: " + msg, flush=True)


# ---- credentials -----------------------------------------------------------

def aws_instance_credentials():
    # IMDSv2 (the module requires tokens): the instance profile's role.
    base = "http://169.254.169.254/latest/"
    req = urllib.request.Request(base + "api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    with NO_PROXY.open(req, timeout=10) as r:
        token = r.read().decode()
    hdr = {"X-aws-ec2-metadata-token": token}
    url = base + "meta-data/iam/security-credentials/"
    with NO_PROXY.open(urllib.request.Request(url, headers=hdr), timeout=10) as r:
        role = r.read().decode().split("\n")[0].strip()
    with NO_PROXY.open(urllib.request.Request(url + role, headers=hdr), timeout=10) as r:
        c = json.load(r)
    return c["AccessKeyId"], c["SecretAccessKey"], c.get("Token")


def credentials(cfg):
    mode = cfg.get("credentials", "instance")
    if mode == "instance":
        return aws_instance_credentials()
    if mode == "ecs-ram-role":
        # Alibaba ECS: temporary credentials of the instance's RAM role.
        url = ("http://100.100.100.200/latest/meta-data/ram/security-credentials/"
               + urllib.parse.quote(cfg["ram_role"]))
        with NO_PROXY.open(url, timeout=10) as r:
            c = json.load(r)
        return c["AccessKeyId"], c["AccessKeySecret"], c.get("SecurityToken")
    if mode == "file":
        # Nebius: an access key of the instance's service account.
        with open(cfg["credentials_file"]) as f:
            c = json.load(f)
        return c["access_key_id"], c["secret_access_key"], None
    if mode == "env":
        # An operator's own machine: the standard variables.
        return (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN"))
    raise BootError("unknown credentials mode %r in stack.json" % mode)


# ---- S3 (SigV4) ------------------------------------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class S3:
    def __init__(self, cfg):
        ep = urllib.parse.urlsplit(cfg["endpoint"] or
                                   "https://s3.%s.amazonaws.com" % cfg["region"])
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise BootError("bad S3 endpoint %r in stack.json" % cfg["endpoint"])
        self.scheme, self.netloc = ep.scheme, ep.netloc
        self.region = cfg["region"]
        self.style = cfg.get("addressing", "virtual")
        if self.style not in ("virtual", "path"):
            raise BootError("addressing must be virtual or path, got %r" % self.style)
        self.bucket = cfg["bucket"]
        self.cfg = cfg
        self.creds = None
        self.creds_at = 0.0

    def url(self, key):
        k = urllib.parse.quote(key, safe="/-_.~")
        if self.style == "virtual":
            return self.bucket + "." + self.netloc, "/" + k
        return self.netloc, "/" + urllib.parse.quote(self.bucket, safe="-_.~") + "/" + k

    def _creds(self):
        # instance credentials rotate: fetch again every 10 minutes
        if self.creds is None or time.monotonic() - self.creds_at > 600:
            self.creds = credentials(self.cfg)
            self.creds_at = time.monotonic()
        return self.creds

    def request(self, method, key, body=b"", ctype=None):
        host, path = self.url(key)
        akid, secret, token = self._creds()
        now = datetime.datetime.now(datetime.timezone.utc)
        amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        day = amzdate[:8]
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amzdate}
        if token:
            headers["x-amz-security-token"] = token
        if ctype:
            headers["content-type"] = ctype
        names = sorted(headers)
        canon = "\n".join([method, path, "",
                           "".join("%s:%s\n" % (n, headers[n].strip()) for n in names),
                           ";".join(names), payload])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                             hashlib.sha256(canon.encode()).hexdigest()])
        k = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), day), self.region), "s3"),
                  "aws4_request")
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                    "Signature=%s" % (akid, scope, ";".join(names), sig))
        req = urllib.request.Request("%s://%s%s" % (self.scheme, host, path),
                                     data=body if method == "PUT" else None,
                                     method=method, headers=headers)
        return urllib.request.urlopen(req, timeout=60)

    def get_json(self, key):
        """The object as JSON, or None when it does not exist (yet)."""
        try:
            with self.request("GET", key) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code in (403, 404):  # 403: a role may not list, so absent looks denied
                return None
            raise

    def put_json(self, key, doc):
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        with self.request("PUT", key, body, "application/json") as r:
            r.read()


# ---- phases ------------------------------------------------------------------

class Status:
    """Phase reports to the bucket (and /run/rehydra/status.json): best
    effort, a failed report never stops the boot. A run restarted by
    systemd appends to the phases of the runs before it (the local file
    outlives the service, not the machine)."""

    def __init__(self, s3, cfg):
        self.s3, self.doc = s3, {"rehydra_boot": 1, "drill_id": cfg.get("drill_id", ""),
                                 "phases": []}
        self.local = cfg.get("status_file", "/run/rehydra/status.json")
        try:
            with open(self.local) as f:
                old = json.load(f)
            if old.get("drill_id") == self.doc["drill_id"] and isinstance(old.get("phases"), list):
                self.doc["phases"] = old["phases"]
        except (OSError, ValueError, AttributeError):
            pass
        try:
            with open("/proc/uptime") as f:
                self.doc["os_booted_at"] = round(time.time() - float(f.read().split()[0]), 3)
        except (OSError, ValueError):
            pass

    def phase(self, name, detail=None):
        e = {"phase": name, "at": round(time.time(), 3)}
        if detail:
            e["detail"] = detail
        self.doc["phases"].append(e)
        log("phase %s%s" % (name, ": " + detail if detail else ""))
        try:
            os.makedirs(os.path.dirname(self.local), exist_ok=True)
            tmp = self.local + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.doc, f, sort_keys=True)
            os.replace(tmp, self.local)
        except OSError as e2:
            log("cannot write %s: %s" % (self.local, e2))
        try:
            self.s3.put_json(STATUS_KEY, self.doc)
        except (OSError, urllib.error.URLError, BootError) as e2:
            log("cannot report the phase to the bucket: %s" % e2)


# ---- runtime -----------------------------------------------------------------

def run(argv, check=True):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(argv, env=env)
    if check and r.returncode != 0:
        raise BootError("%s exited with status %d" % (" ".join(argv[:3]), r.returncode))
    return r.returncode


def apt_install(*pkgs):
    run(["apt-get", "update"], check=False)
    run(["apt-get", "install", "-y", "--no-install-recommends"] + list(pkgs))


def ensure_container_runtime():
    """docker and the NVIDIA container toolkit, installed where missing."""
    if not shutil.which("nvidia-smi"):
        log("no NVIDIA driver on this image: installing one (ubuntu-drivers)")
        apt_install("ubuntu-drivers-common")
        run(["ubuntu-drivers", "install", "--gpgpu"])
        run(["modprobe", "nvidia"], check=False)
    if not shutil.which("docker"):
        log("installing docker")
        apt_install("docker.io")
    if not shutil.which("nvidia-ctk"):
        log("installing the NVIDIA container toolkit")
        keyring = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
        with urllib.request.urlopen(NVIDIA_REPO + "/gpgkey", timeout=60) as r:
            key = r.read()
        subprocess.run(["gpg", "--dearmor", "--yes", "-o", keyring], input=key, check=True)
        with open("/etc/apt/sources.list.d/nvidia-container-toolkit.list", "w") as f:
            f.write("deb [signed-by=%s] %s/stable/deb/$(ARCH) /\n" % (keyring, NVIDIA_REPO))
        apt_install("nvidia-container-toolkit")
    run(["nvidia-ctk", "runtime", "configure", "--runtime=docker"])
    run(["systemctl", "restart", "docker"])


def stack_argv(cfg):
    """The argv systemd-run starts as rehydra-stack."""
    argv = ["systemd-run", "--unit=rehydra-stack"] + UNIT_PROPS
    env = cfg.get("env", {})
    if cfg.get("image"):
        argv += ["--", "docker", "run", "--rm", "--gpus", "all", "--ipc=host",
                 "--network=host", "-v", "%s:%s:ro" % (cfg["model_dir"], cfg["model_dir"]),
                 "-w", cfg["model_dir"]]
        for k in sorted(env):
            argv += ["-e", "%s=%s" % (k, env[k])]
        return argv + [cfg["image"]] + list(cfg["command"])
    argv.append("--working-directory=" + cfg["model_dir"])
    for k in sorted(env):
        argv.append("--setenv=%s=%s" % (k, env[k]))
    return argv + ["--"] + list(cfg["command"])


# ---- the model -----------------------------------------------------------------

def safe_path(p):
    parts = p.split("/")
    return p and not p.startswith("/") and all(x not in ("", ".", "..") for x in parts)


def fetch(s3, key, dest, size, sha256):
    """GET key into dest (atomically), hashing as it streams; True when the
    bytes are the manifest's."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".rehydra-part"
    h = hashlib.sha256()
    n = 0
    with s3.request("GET", key) as r, open(tmp, "wb") as f:
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    if n != size or h.hexdigest() != sha256:
        os.unlink(tmp)
        return False
    os.replace(tmp, dest)
    return True


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def sync_model(s3, cfg, prefix, files):
    for path in sorted(files):
        e = files[path]
        if not safe_path(path) or path.startswith(".rehydra-sink"):
            raise BootError("the manifest names an unsafe path %r" % path)
        dest = os.path.join(cfg["model_dir"], path)
        key = prefix + "/" + path if prefix else path
        if (os.path.isfile(dest) and os.path.getsize(dest) == int(e["size"])
                and sha256_file(dest) == e["sha256"]):
            continue  # a restarted boot keeps what it already verified
        for attempt in range(3):
            if fetch(s3, key, dest, int(e["size"]), e["sha256"]):
                break
            log("%s: the bytes differ from the manifest (attempt %d)" % (path, attempt + 1))
        else:
            raise BootError("%s never matched its sha256 %s" % (path, e["sha256"]))


def model_source(s3, cfg, man, prefix):
    """Where the files are: the drill's bucket, or the target's warm
    standby when the drill's manifest says so ("source": {"bucket",
    "prefix"}, written by rehydra after it synced the standby). Only the
    standby bucket the instance was created with is accepted; the files
    are still checked against this manifest's sha256, so a standby changed
    meanwhile fails the boot instead of serving other bytes."""
    src = man.get("source")
    if src is None:
        return s3, prefix
    if not isinstance(src, dict) or not isinstance(src.get("bucket"), str):
        raise BootError("the sink manifest's source is not {bucket, prefix}")
    if not cfg.get("standby") or src["bucket"] != cfg["standby"]:
        raise BootError("the sink manifest points at bucket %r, which is not this target's "
                        "standby %r" % (src["bucket"], cfg.get("standby", "")))
    other = S3(dict(cfg, bucket=src["bucket"]))
    return other, str(src.get("prefix", "")).strip("/")


def verify_model(cfg, files):
    """Every file again, from disk, before the stack may read it."""
    bad = [p for p in sorted(files)
           if sha256_file(os.path.join(cfg["model_dir"], p)) != files[p]["sha256"]]
    if bad:
        raise BootError("sha256 mismatch on the instance: " + ", ".join(bad))


def wait_serving(port, deadline):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                if c.recv(5).startswith(b"HTTP/"):
                    return True
        except OSError:
            pass
        time.sleep(POLL_S)
    return False


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    s3 = S3(cfg)
    st = Status(s3, cfg)
    st.phase("booted")
    try:
        if cfg.get("image"):
            ensure_container_runtime()
            # pulled while the model is still on its way
            pull = subprocess.Popen(["docker", "pull", cfg["image"]])
        else:
            pull = None
            exe = cfg["command"][0]
            if not (shutil.which(exe) or os.access(exe, os.X_OK)):
                raise BootError("the stack command %r is not on this machine image: set "
                                "stack.image to a container image, or use a machine image "
                                "that provides it" % exe)
        prefix = cfg["prefix"].strip("/")
        marker = prefix + "/" + MANIFEST if prefix else MANIFEST
        host, path = s3.url(marker)
        log("waiting for %s://%s%s" % (s3.scheme, host, path))
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                man = s3.get_json(marker)
            except (OSError, urllib.error.URLError, ValueError) as e:
                log("reading the manifest: %s" % e)
                man = None
            if man is not None:
                break
            if time.monotonic() > deadline:
                raise BootError("gave up waiting for the artifacts")
            time.sleep(POLL_S)
        files = man.get("files", {})
        if not files:
            raise BootError("the sink manifest lists no files")
        src, src_prefix = model_source(s3, cfg, man, prefix)
        st.phase("syncing", "%d files" % len(files) +
                 (" from the standby %s" % src.bucket if src is not s3 else ""))
        sync_model(src, cfg, src_prefix, files)
        st.phase("verifying")
        verify_model(cfg, files)
        if pull is not None and pull.wait() != 0:
            raise BootError("docker pull %s failed" % cfg["image"])
        st.phase("starting")
        # a restarted boot may find the unit of its previous run
        run(["systemctl", "stop", "rehydra-stack"], check=False)
        run(["systemctl", "reset-failed", "rehydra-stack"], check=False)
        run(stack_argv(cfg))
        log("started the stack on port %s" % cfg["port"])
        if wait_serving(cfg["port"], time.monotonic() + SERVE_WAIT_S):
            st.phase("serving")
            return 0
        raise BootError("the stack never accepted HTTP on port %s" % cfg["port"])
    except (BootError, OSError, urllib.error.URLError, KeyError, ValueError) as e:
        st.phase("failed", str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
