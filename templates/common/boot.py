#!/usr/bin/env python3
# rehydra-boot: started by cloud-init on the GPU instance a drill created.
#
# It waits until rehydra has synced the model into the drill's bucket (the
# sink writes .rehydra-sink.json under the prefix when the sync commits),
# copies the artifacts to the model directory and starts the stack command
# as a systemd service, so the stack keeps running and restarts on failure.
# Every value comes from /etc/rehydra/stack.json (written by cloud-init from
# Terraform variables) and every command runs as an argv list: no shell
# ever sees a runbook value.
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

WAIT_S = 6 * 3600
POLL_S = 5


def log(msg):
    print("rehydra-boot: " + msg, flush=True)


def ensure_aws_cli():
    if shutil.which("aws"):
        return
    log("installing the AWS CLI (S3 client)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "awscli"], check=True, env=env)


def credentials(cfg):
    env = dict(os.environ)
    mode = cfg.get("credentials", "instance")
    if mode == "ecs-ram-role":
        # Alibaba ECS: temporary credentials of the instance's RAM role.
        url = ("http://100.100.100.200/latest/meta-data/ram/security-credentials/"
               + cfg["ram_role"])
        with urllib.request.urlopen(url, timeout=10) as r:
            c = json.load(r)
        env["AWS_ACCESS_KEY_ID"] = c["AccessKeyId"]
        env["AWS_SECRET_ACCESS_KEY"] = c["AccessKeySecret"]
        env["AWS_SESSION_TOKEN"] = c["SecurityToken"]
    elif mode == "file":
        # Nebius: an access key of the instance's service account.
        with open(cfg["credentials_file"]) as f:
            c = json.load(f)
        env["AWS_ACCESS_KEY_ID"] = c["access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = c["secret_access_key"]
    env["AWS_DEFAULT_REGION"] = cfg["region"]
    return env


def s3(cfg, env, *args):
    argv = ["aws"]
    if cfg.get("endpoint"):
        argv += ["--endpoint-url", cfg["endpoint"]]
    argv += list(args)
    return subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    ensure_aws_cli()
    prefix = cfg["prefix"].strip("/")
    marker = prefix + "/.rehydra-sink.json" if prefix else ".rehydra-sink.json"
    deadline = time.monotonic() + WAIT_S
    log("waiting for s3://%s/%s" % (cfg["bucket"], marker))
    while True:
        env = credentials(cfg)
        if s3(cfg, env, "s3api", "head-object", "--bucket", cfg["bucket"], "--key", marker) == 0:
            break
        if time.monotonic() > deadline:
            log("gave up waiting for the artifacts")
            return 1
        time.sleep(POLL_S)
    os.makedirs(cfg["model_dir"], exist_ok=True)
    src = "s3://%s/%s" % (cfg["bucket"], prefix)
    if s3(cfg, env, "s3", "sync", "--only-show-errors", src, cfg["model_dir"]) != 0:
        log("copying the artifacts failed")
        return 1
    argv = ["systemd-run", "--unit=rehydra-stack", "--property=Restart=on-failure",
            "--working-directory=" + cfg["model_dir"]]
    for k in sorted(cfg.get("env", {})):
        argv.append("--setenv=%s=%s" % (k, cfg["env"][k]))
    argv.append("--")
    argv += cfg["command"]
    log("starting the stack on port %s" % cfg["port"])
    return subprocess.run(argv).returncode


if __name__ == "__main__":
    sys.exit(main())
