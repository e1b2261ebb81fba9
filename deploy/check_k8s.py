#!/usr/bin/env python3
"""Offline checks of the Kubernetes and KServe manifests under deploy/.

Run through scripts/check-k8s.sh, which provides the virtual environment (kubernetes-validate,
kubectl with its built-in kustomize). For every kustomization under deploy/k8s and every YAML
file under deploy/kserve it:

  1. renders the kustomization (`kubectl kustomize`), so patches, generators and image
     overrides are exercised as `kubectl apply -k` would;
  2. validates each object against the Kubernetes OpenAPI schemas (strict: unknown fields fail)
     of every version in --k8s-versions; the KServe InferenceService, whose CRD schema is not
     available offline, gets its predictor validated as a core PodSpec plus the extension fields
     of KServe's PredictorSpec, and the rules Knative adds;
  3. checks the server contract: every HTTP probe (and the prometheus.io/path annotation) names a
     GET route of src/http/mod.rs, every gRPC probe names a grpc.health.v1 service the server
     answers (liveness: `` or `live`; readiness: `ready` or the inference service), and every
     probe and container port equals a port the server listens on (PORT and GRPC_PORT from the
     container's environment, else the image's ENV, else the defaults in src/config.rs);
  4. checks the "restricted" Pod Security Standard on every pod spec, and the project's own
     rules (read-only root filesystem and model mount, grace period longer than preStop +
     SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT, CUDA images only on containers with a GPU, references that resolve),
     and keys only from Secrets: a server with MODEL_REPOSITORY sets ADMIN_KEY_FILE (its routes
     that change what is served are otherwise open), and every key file (ADMIN_KEY_FILE,
     API_KEY_FILE) lies on a read-only mount of a Secret volume that is not optional; no
     Secret with a value is committed.

Exits 0 when everything passes, 1 otherwise; the last line is "k8s: N passed, N failed".
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
from typing import Any, Iterable

import importlib_resources
import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

# Fields of KServe's V1beta1PredictorSpec that are not PodSpec fields (kserve Python SDK 0.21,
# kserve/models/v1beta1_predictor_spec.py, attribute_map minus the PodSpec properties).
KSERVE_PREDICTOR_EXTENSIONS = {
    "annotations", "autoScaling", "batcher", "canaryTrafficPercent", "containerConcurrency",
    "deploymentStrategy", "huggingface", "labels", "lightgbm", "logger", "maxReplicas",
    "minReplicas", "model", "name", "onnx", "paddle", "pmml", "pytorch", "scaleMetric",
    "scaleMetricType", "scaleTarget", "sklearn", "storageContainerName", "storageUris",
    "tensorflow", "timeout", "triton", "workerSpec", "xgboost",
}
KSERVE_INT_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "timeout",
                     "containerConcurrency", "canaryTrafficPercent"}
KSERVE_SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}
# Knative Serving's admission webhook rejects these in a revision's pod spec.
KNATIVE_FORBIDDEN_POD_FIELDS = {"terminationGracePeriodSeconds", "hostNetwork", "hostPID",
                                "hostIPC", "restartPolicy", "activeDeadlineSeconds",
                                "dnsPolicy", "nodeName", "shareProcessNamespace"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}

# Volume types the "restricted" Pod Security Standard allows.
PSS_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                    "persistentVolumeClaim", "projected", "secret"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, where: str, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {where}: {what}")
        return ok

    def ok(self, where: str, what: str) -> None:
        self.check(True, where, what)

    def fail(self, where: str, what: str) -> None:
        self.check(False, where, what)


# ---------------------------------------------------------------------------------------------
# What the server's source says.

def read_routes(repo: str) -> dict[str, set[str]]:
    """Path -> HTTP methods, from the `.route("/path", get(handler))` calls of src/http/mod.rs."""
    text = open(os.path.join(repo, "src/http/mod.rs"), encoding="utf-8").read()
    routes: dict[str, set[str]] = {}
    for m in re.finditer(r'\.route\(\s*"([^"]+)"\s*,((?:[^()]|\([^()]*\))*)\)', text):
        methods = set(re.findall(r"\b(get|post|put|delete|patch|head|options|any)\s*\(",
                                 m.group(2)))
        routes.setdefault(m.group(1), set()).update(method.upper() for method in methods)
    return routes


def arg_default(config_rs: str, env: str) -> str | None:
    """The default of the clap argument whose `env = "<env>"`, from src/config.rs."""
    for m in re.finditer(r"#\[arg\((.*?)\)\]\s*\n", config_rs, re.S):
        attrs = m.group(1)
        if re.search(r'\benv\s*=\s*"%s"' % re.escape(env), attrs):
            d = re.search(r'\bdefault_value_t\s*=\s*([^,\s)]+)', attrs) or \
                re.search(r'\bdefault_value\s*=\s*"([^"]*)"', attrs)
            return d.group(1) if d else None
    return None


def dockerfile_ports(repo: str, name: str = "PORT") -> dict[str, str]:
    """The value each Dockerfile's ENV gives the variable `name`."""
    ports = {}
    for path in sorted(glob.glob(os.path.join(repo, "Dockerfile*"))):
        text = open(path, encoding="utf-8").read()
        # ENV instructions, with their continuation lines.
        for env in re.finditer(r"^ENV\s+((?:.*\\\n)*.*)$", text, re.M):
            m = re.search(r"(?<![A-Z_])%s=(\S+)" % name, env.group(1))
            if m:
                ports[os.path.basename(path)] = m.group(1)
    return ports


def seconds(duration: str) -> float | None:
    """humantime-style durations as the server's flags take them: 25s, 500ms, 1m, 1m30s."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", duration.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", duration.strip()):
        return None
    total = 0.0
    for value, unit in parts:
        if unit not in units:
            return None
        total += float(value) * units[unit]
    return total


# ---------------------------------------------------------------------------------------------
# Rendering and schema validation.

def render(kubectl: str, directory: str) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or f"kubectl kustomize exited {out.returncode}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def load_yaml(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def schema_validator(version: str, name: str) -> jsonschema.protocols.Validator:
    """A strict validator for one schema file of kubernetes-validate's bundled schemas."""
    base = importlib_resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{version}-local-strict")
    schema = json.loads(base.joinpath(name).read_text())
    defs = json.loads(base.joinpath("_definitions.json").read_text())
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{path}: {error.message}"


def validate_core(report: Report, where: str, obj: dict, versions: list[str]) -> None:
    for version in versions:
        try:
            got = kubernetes_validate.validate(obj, version, strict=True)
            report.ok(where, f"schema {version}")
            if got != kubernetes_validate.utils.major_minor(version):
                report.fail(where, f"validated against {got}, asked for {version}")
        except kubernetes_validate.ValidationError as e:
            report.fail(where, f"Kubernetes {e.version} schema: {describe(e)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            report.fail(where, e.message)


def validate_inference_service(report: Report, where: str, obj: dict,
                               versions: list[str]) -> None:
    """No CRD schema offline: check the envelope, then validate each component as a PodSpec
    (the CRD inlines PodSpec into PredictorSpec) plus KServe's extension fields."""
    report.check(obj.get("apiVersion") == "serving.kserve.io/v1beta1", where,
                 f"apiVersion is {obj.get('apiVersion')!r}, want serving.kserve.io/v1beta1")
    extra = set(obj) - {"apiVersion", "kind", "metadata", "spec", "status"}
    report.check(not extra, where, f"unknown top-level fields {sorted(extra)}")
    spec = obj.get("spec") or {}
    extra = set(spec) - {"predictor", "transformer", "explainer"}
    report.check(not extra, where, f"unknown spec fields {sorted(extra)}")
    report.check(isinstance(spec.get("predictor"), dict), where, "spec.predictor is required")
    for version in versions:
        meta = schema_validator(version, "objectmeta-meta-v1.json")
        errors = [describe(e) for e in meta.iter_errors(obj.get("metadata") or {})]
        report.check(not errors and bool((obj.get("metadata") or {}).get("name")), where,
                     f"metadata ({version}): {errors or 'name is required'}")
        pod = schema_validator(version, "podspec-v1.json")
        for component, cspec in spec.items():
            if not isinstance(cspec, dict):
                report.fail(where, f"spec.{component} is not an object")
                continue
            podpart = {k: v for k, v in cspec.items() if k not in KSERVE_PREDICTOR_EXTENSIONS}
            errors = [describe(e) for e in pod.iter_errors(podpart)]
            report.check(not errors, where,
                         f"spec.{component} as PodSpec ({version}): {'; '.join(errors)}")
    for component, cspec in spec.items():
        if not isinstance(cspec, dict):
            continue
        for key in KSERVE_INT_FIELDS & set(cspec):
            report.check(isinstance(cspec[key], int) and cspec[key] >= 0, where,
                         f"spec.{component}.{key} must be a non-negative integer")
        if "scaleMetric" in cspec:
            report.check(cspec["scaleMetric"] in KSERVE_SCALE_METRICS, where,
                         f"spec.{component}.scaleMetric {cspec['scaleMetric']!r} not in "
                         f"{sorted(KSERVE_SCALE_METRICS)}")
        if "minReplicas" in cspec and "maxReplicas" in cspec:
            report.check(cspec["minReplicas"] <= cspec["maxReplicas"], where,
                         f"spec.{component}: minReplicas > maxReplicas")


# ---------------------------------------------------------------------------------------------
# Pod specs and the server contract.

def pod_specs(obj: dict) -> Iterable[tuple[str, dict, dict, bool]]:
    """(label, pod spec, pod annotations, runs under Knative) for each pod spec in obj."""
    kind = obj.get("kind")
    if kind in WORKLOAD_KINDS:
        tpl = (obj.get("spec") or {}).get("template") or {}
        yield "spec.template.spec", tpl.get("spec") or {}, \
            (tpl.get("metadata") or {}).get("annotations") or {}, False
    elif kind == "CronJob":
        tpl = obj["spec"]["jobTemplate"]["spec"]["template"]
        yield "spec.jobTemplate...spec", tpl.get("spec") or {}, \
            (tpl.get("metadata") or {}).get("annotations") or {}, False
    elif kind == "Pod":
        yield "spec", obj.get("spec") or {}, obj["metadata"].get("annotations") or {}, False
    elif kind == "InferenceService":
        ann = obj["metadata"].get("annotations") or {}
        knative = ann.get("serving.kserve.io/deploymentMode", "Serverless") == "Serverless"
        for component, cspec in (obj.get("spec") or {}).items():
            if isinstance(cspec, dict) and cspec.get("containers"):
                yield f"spec.{component}", cspec, ann, knative


def container_env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """The literal environment of a container: envFrom ConfigMaps, then env values."""
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref and ref.get("name") in configmaps:
            prefix = src.get("prefix", "")
            for k, v in (configmaps[ref["name"]].get("data") or {}).items():
                env[prefix + k] = v
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif ((var.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name") \
                in configmaps:
            ref = var["valueFrom"]["configMapKeyRef"]
            data = configmaps[ref["name"]].get("data") or {}
            if ref.get("key") in data:
                env[var["name"]] = data[ref["key"]]
    return env


def check_pss(report: Report, where: str, pod: dict, knative: bool) -> None:
    """The "restricted" Pod Security Standard (and the parts of baseline these manifests could
    touch), as the admission plugin evaluates them: container settings override pod-level
    ones. Not checked: hostPath is covered by the volume types, Windows and the sysctl safe set
    (any sysctl fails here)."""
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        report.check(not pod.get(field), where, f"{field} is set")
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        report.check(kinds <= PSS_VOLUME_TYPES, where,
                     f"volume {vol.get('name')}: type {sorted(kinds)} not allowed by restricted")
    report.check(psc.get("runAsUser") != 0, where, "pod runAsUser is 0")
    # Baseline: no sysctls beyond the safe set (stricter here: none at all), no SELinux user or
    # role, no unconfined AppArmor.
    report.check(not psc.get("sysctls"), where, "pod sets sysctls")
    report.check(not {"user", "role"} & set(psc.get("seLinuxOptions") or {}), where,
                 "pod seLinuxOptions sets user or role")
    report.check((psc.get("appArmorProfile") or {}).get("type") != "Unconfined", where,
                 "pod appArmorProfile is Unconfined")
    containers = [("initContainers", c) for c in pod.get("initContainers") or []] + \
        [("containers", c) for c in pod.get("containers") or []] + \
        [("ephemeralContainers", c) for c in pod.get("ephemeralContainers") or []]
    report.check(bool(pod.get("containers")), where, "no containers")
    for group, c in containers:
        cw = f"{where}.{group}[{c.get('name')}]"
        sc = c.get("securityContext") or {}
        run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        report.check(run_as_non_root is True, cw, "runAsNonRoot is not true "
                     "(container or pod securityContext)")
        report.check(sc.get("runAsUser", psc.get("runAsUser")) != 0, cw, "runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        report.check(seccomp in ("RuntimeDefault", "Localhost"), cw,
                     f"seccompProfile.type is {seccomp!r}, want RuntimeDefault or Localhost")
        report.check(sc.get("allowPrivilegeEscalation") is False, cw,
                     "allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        report.check("ALL" in (caps.get("drop") or []), cw, "capabilities.drop lacks ALL")
        report.check(set(caps.get("add") or []) <= {"NET_BIND_SERVICE"}, cw,
                     f"capabilities.add {caps.get('add')} beyond NET_BIND_SERVICE")
        report.check(not sc.get("privileged"), cw, "privileged")
        report.check(sc.get("procMount", "Default") == "Default", cw, "procMount is not Default")
        report.check((sc.get("appArmorProfile") or {}).get("type") != "Unconfined", cw,
                     "appArmorProfile is Unconfined")
        report.check(not {"user", "role"} & set(sc.get("seLinuxOptions") or {}), cw,
                     "seLinuxOptions sets user or role")
        report.check(sc.get("readOnlyRootFilesystem") is True, cw,
                     "readOnlyRootFilesystem is not true (the image needs no writable path)")
        for port in c.get("ports") or []:
            report.check(not port.get("hostPort"), cw, "hostPort is set")
    if knative:
        report.check(not psc, where, "pod-level securityContext needs Knative's "
                     "kubernetes.podspec-securitycontext flag: set it per container")


def resolve_port(port: Any, container: dict, default: int | None) -> int | None:
    if port is None:
        return default
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


KEY_FILES = ("ADMIN_KEY_FILE", "API_KEY_FILE")


def check_key_file(report: Report, where: str, pod: dict, container: dict, name: str,
                   path: str) -> None:
    """A key file the server reads (env `name` = `path`) must come from a Secret volume that
    is mounted read-only and is not optional: a pod must not start without its keys."""
    def covers(m: dict) -> bool:
        mp = m["mountPath"].rstrip("/")
        return path == mp or path.startswith(mp + "/")
    mounts = [m for m in container.get("volumeMounts") or [] if covers(m)]
    if not report.check(bool(mounts), where, f"{name} {path} is on no volume mount"):
        return
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    report.check(mount.get("readOnly") is True, where,
                 f"{name}: mount {mount['mountPath']} is not readOnly")
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount["name"]), {})
    secret = volume.get("secret")
    if not report.check(isinstance(secret, dict), where,
                        f"{name}: volume {mount['name']} is not a Secret"):
        return
    report.check(not secret.get("optional"), where,
                 f"{name}: Secret {secret.get('secretName')} is optional: the pod would start "
                 "without its keys")
    rel = path[len(mount["mountPath"].rstrip("/")):].lstrip("/")
    if mount.get("subPath"):
        rel = mount["subPath"].rstrip("/") + ("/" + rel if rel else "")
    items = secret.get("items")
    if items:
        report.check(rel in {i.get("path") for i in items}, where,
                     f"{name}: {path} is not among the Secret's items "
                     f"({', '.join(sorted(i.get('path', '') for i in items))})")


LIVE_SERVICES = {"", "live"}
READY_SERVICES = {"ready", "inference.GRPCInferenceService"}


def check_server(report: Report, where: str, pod: dict, annotations: dict, knative: bool,
                 configmaps: dict[str, dict], routes: dict[str, set[str]], default_port: int,
                 default_grpc_port: int | None, default_shutdown: float) -> None:
    """Probes, ports, mounts and timing of the containers that run the server (those with
    probes or ports)."""
    get_routes = {p for p, methods in routes.items() if "GET" in methods or "ANY" in methods}
    served_ports: set[int] = set()
    longest_drain = 0.0
    for c in pod.get("containers") or []:
        if not c.get("ports") and not any(c.get(p) for p in PROBES):
            continue
        cw = f"{where}.containers[{c.get('name')}]"
        env = container_env(c, configmaps)
        if knative:
            reserved = KNATIVE_RESERVED_ENV & {v["name"] for v in c.get("env") or []}
            report.check(not reserved, cw, f"Knative sets {sorted(reserved)} itself; remove")
            report.check(len(c.get("ports") or []) <= 1, cw, "Knative allows one port")
            for p in c.get("ports") or []:
                report.check(p.get("name", "http1") in ("http1", "h2c"), cw,
                             f"Knative port name {p.get('name')!r} must be http1 or h2c")
            report.check(not c.get("lifecycle"), cw, "Knative rejects lifecycle hooks")
        port_env = env.get("PORT")
        if port_env is not None and not port_env.isdigit():
            report.fail(cw, f"PORT {port_env!r} is not a number")
            continue
        port = int(port_env) if port_env is not None else default_port
        source = "PORT in the environment" if port_env is not None else "src/config.rs default"
        grpc_env = env.get("GRPC_PORT")
        if grpc_env is not None and not grpc_env.isdigit():
            report.fail(cw, f"GRPC_PORT {grpc_env!r} is not a number")
            continue
        grpc_port = int(grpc_env) if grpc_env is not None else default_grpc_port
        served_ports.add(port)
        listening = {port} | ({grpc_port} if grpc_port is not None else set())
        ports = [p.get("containerPort") for p in c.get("ports") or []]
        report.check(bool(ports), cw, "declares no containerPort")
        for p in c.get("ports") or []:
            number = p.get("containerPort")
            report.check(number in listening, cw, f"containerPort {number} is not a port the "
                         f"server listens on: HTTP {port} ({source}), gRPC {grpc_port}")
            if p.get("name") == "grpc":
                report.check(number == grpc_port, cw,
                             f"port named grpc is {number}, GRPC_PORT is {grpc_port}")
        for probe in PROBES:
            spec = c.get(probe)
            if probe in ("readinessProbe", "livenessProbe"):
                report.check(bool(spec), cw, f"no {probe}")
            if not spec:
                continue
            grpc = spec.get("grpc")
            if grpc:
                report.check(grpc_port is not None and grpc.get("port") == grpc_port, cw,
                             f"{probe} gRPC port {grpc.get('port')!r} is not GRPC_PORT "
                             f"({grpc_port})")
                service = grpc.get("service", "")
                wanted = READY_SERVICES if probe == "readinessProbe" else \
                    LIVE_SERVICES if probe == "livenessProbe" else LIVE_SERVICES | READY_SERVICES
                report.check(service in wanted, cw, f"{probe} gRPC service {service!r}: "
                             f"want one of {sorted(wanted)} (src/grpc/health.rs)")
                continue
            http = spec.get("httpGet")
            if not report.check(bool(http), cw, f"{probe} is neither httpGet nor grpc"):
                continue
            path = (http.get("path") or "/").split("?")[0]
            report.check(path in get_routes, cw,
                         f"{probe} path {path!r} is not a GET route of src/http/mod.rs "
                         f"({', '.join(sorted(get_routes))})")
            pport = resolve_port(http.get("port"), c, ports[0] if ports else None)
            report.check(pport == port, cw, f"{probe} port {http.get('port')!r} "
                         f"resolves to {pport}, the server listens on {port} ({source})")
        if c.get("readinessProbe", {}).get("httpGet"):
            report.check(c["readinessProbe"]["httpGet"].get("path") == "/ready", cw,
                         "readinessProbe should use /ready (503 while loading or draining)")
        if c.get("livenessProbe", {}).get("httpGet"):
            report.check(c["livenessProbe"]["httpGet"].get("path") == "/live", cw,
                         "livenessProbe should use /live (never fails while loading/draining)")
        report.check(not (env.get("MODEL_DIR") and env.get("MODEL_REPOSITORY")), cw,
                     "MODEL_DIR and MODEL_REPOSITORY together: the server refuses to start")
        # The model (or the model repository) is mounted read-only; nothing else is writable.
        model_dir = env.get("MODEL_DIR") or env.get("MODEL_REPOSITORY")
        mounts = [m for m in c.get("volumeMounts") or []
                  if model_dir and (model_dir + "/").startswith(m["mountPath"].rstrip("/") + "/")]
        if model_dir and (mounts or not knative):
            report.check(bool(mounts), cw, f"no volume mounted at MODEL_DIR/MODEL_REPOSITORY {model_dir}")
            for m in mounts:
                report.check(m.get("readOnly") is True, cw,
                             f"model mount {m['mountPath']} is not readOnly")
        # The repository routes that change what is served (load, unload, index) need a key.
        if env.get("MODEL_REPOSITORY"):
            report.check(bool(env.get("ADMIN_KEY_FILE")), cw,
                         "MODEL_REPOSITORY without ADMIN_KEY_FILE: set it to a key file from a "
                         "mounted Secret (deploy/k8s/overlays/repository)")
        report.check(env.get("ALLOW_UNAUTHENTICATED_ADMIN", "false").lower() != "true", cw,
                     "ALLOW_UNAUTHENTICATED_ADMIN opens the repository routes to anyone")
        for name in KEY_FILES:
            if env.get(name):
                check_key_file(report, cw, pod, c, name, env[name])
            report.check(not any(v.get("name") == name and "valueFrom" in v
                                 for v in c.get("env") or []), cw,
                         f"{name} must be a literal path (the key file's, on a Secret mount)")
        if "STORAGE_URI" in env:
            report.check(c.get("name") == "kserve-container", cw, "KServe's storage "
                         "initializer serves STORAGE_URI only for the container named "
                         "kserve-container")
            report.check((model_dir or "").startswith("/mnt/models"), cw,
                         f"MODEL_DIR {model_dir!r}: KServe downloads STORAGE_URI to /mnt/models")
        shutdown = env.get("SHUTDOWN_TIMEOUT")
        drain = default_shutdown if shutdown is None else seconds(shutdown)
        if not report.check(drain is not None, cw, f"SHUTDOWN_TIMEOUT {shutdown!r} unparsable"):
            continue
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {})
        drain += (pre_stop.get("sleep") or {}).get("seconds", 0)
        # --shutdown-delay (default 0s): serving on after SIGTERM, before the drain starts.
        delay = seconds(env.get("SHUTDOWN_DELAY", "0s"))
        if not report.check(delay is not None, cw,
                            f"SHUTDOWN_DELAY {env.get('SHUTDOWN_DELAY')!r} unparsable"):
            continue
        drain += delay
        # Endpoints must drop the pod before it stops accepting (Knative's queue-proxy drains
        # instead): a preStop sleep, or the server serving on for --shutdown-delay.
        if not knative:
            report.check((pre_stop.get("sleep") or {}).get("seconds", 0) > 0 or delay > 0, cw,
                         "neither a preStop sleep nor SHUTDOWN_DELAY: requests routed to the "
                         "pod before the endpoints drop it would be refused")
        longest_drain = max(longest_drain, drain)
    if not knative:
        grace = pod.get("terminationGracePeriodSeconds", 30)
        report.check(grace > longest_drain, where,
                     f"terminationGracePeriodSeconds {grace} <= preStop sleep + "
                     f"SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT ({longest_drain:g}s): the kubelet "
                     "would SIGKILL "
                     "requests still draining")
    else:
        bad = KNATIVE_FORBIDDEN_POD_FIELDS & set(pod)
        report.check(not bad, where, f"Knative rejects {sorted(bad)}")
    if annotations.get("prometheus.io/scrape") == "true":
        path = annotations.get("prometheus.io/path", "/metrics")
        report.check(path in get_routes, where, f"prometheus.io/path {path!r} is not a route")
        port = annotations.get("prometheus.io/port")
        report.check(port is None or (port.isdigit() and int(port) in served_ports), where,
                     f"prometheus.io/port {port!r} is not the server's port {sorted(served_ports)}")
    # A CUDA build links libcuda.so.1 and cannot start without a GPU.
    for group in ("initContainers", "containers"):
        for c in pod.get(group) or []:
            image = c.get("image") or ""
            if "cuda" in image.rsplit("/", 1)[-1].lower():
                gpus = ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
                report.check(bool(gpus), f"{where}.{group}[{c.get('name')}]",
                             f"CUDA image {image} without an nvidia.com/gpu limit")


def check_references(report: Report, where: str, objs: list[dict]) -> None:
    """Within one rendered kustomization: names and selectors that must resolve."""
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    workloads = [o for o in objs if o["kind"] in WORKLOAD_KINDS]
    templates = [(o, (o["spec"]["template"].get("metadata") or {}).get("labels") or {})
                 for o in workloads]

    def selects(selector: dict) -> list[dict]:
        return [o for o, labels in templates
                if selector and all(labels.get(k) == v for k, v in selector.items())]

    for o in workloads:
        # The API server generates a Job's selector (from its uid) unless manualSelector.
        if o["kind"] == "Job" and not o["spec"].get("manualSelector"):
            continue
        sel = (o["spec"].get("selector") or {}).get("matchLabels") or {}
        ow = f"{where} {o['kind']}/{o['metadata']['name']}"
        report.check(o in selects(sel), ow, "selector does not match the pod template labels")
        pod = o["spec"]["template"]["spec"]
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            refs = [(s["configMapRef"], "ConfigMap") for s in c.get("envFrom") or []
                    if "configMapRef" in s]
            refs += [(v["valueFrom"]["configMapKeyRef"], "ConfigMap") for v in c.get("env") or []
                     if "configMapKeyRef" in (v.get("valueFrom") or {})]
            for ref, kind in refs:
                if not ref.get("optional"):
                    report.check(ref.get("name") in by_kind.get(kind, {}), ow,
                                 f"container {c['name']}: {kind} {ref.get('name')} not rendered")
                    cm = by_kind.get(kind, {}).get(ref.get("name")) or {}
                    if "key" in ref:
                        report.check(ref["key"] in (cm.get("data") or {}), ow,
                                     f"container {c['name']}: key {ref['key']} missing "
                                     f"from ConfigMap {ref.get('name')}")
        for vol in pod.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                report.check(claim in by_kind.get("PersistentVolumeClaim", {}), ow,
                             f"PersistentVolumeClaim {claim} not rendered")
    # Secrets are made by hand (kubectl create secret ...), never committed with a value.
    for secret in by_kind.get("Secret", {}).values():
        report.check(not (secret.get("data") or secret.get("stringData")),
                     f"{where} Secret/{secret['metadata']['name']}",
                     "a Secret with a value is committed: create it with kubectl instead")
    for svc in by_kind.get("Service", {}).values():
        sw = f"{where} Service/{svc['metadata']['name']}"
        targets = selects(svc["spec"].get("selector") or {})
        if report.check(bool(targets), sw, "selector matches no pod template"):
            for p in svc["spec"].get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                for o in targets:
                    cports = [cp for c in o["spec"]["template"]["spec"]["containers"]
                              for cp in c.get("ports") or []]
                    report.check(any(cp.get("name") == tp or cp.get("containerPort") == tp
                                     for cp in cports), sw,
                                 f"targetPort {tp!r} is not a port of {o['metadata']['name']}")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = (pdb["spec"].get("selector") or {}).get("matchLabels") or {}
        report.check(bool(selects(sel)), f"{where} PodDisruptionBudget/"
                     f"{pdb['metadata']['name']}", "selector matches no pod template")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = hpa["spec"]["scaleTargetRef"]
        hw = f"{where} HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        report.check(ref.get("name") in by_kind.get(ref.get("kind"), {}), hw,
                     f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} not rendered")
        report.check(hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"], hw,
                     "minReplicas > maxReplicas")
        target = by_kind.get(ref.get("kind"), {}).get(ref.get("name"))
        if target is not None:
            report.check("replicas" not in target["spec"], hw,
                         "the target sets spec.replicas, which fights the HPA on every apply")
    for ns in by_kind.get("Namespace", {}).values():
        labels = ns["metadata"].get("labels") or {}
        report.check(labels.get("pod-security.kubernetes.io/enforce") == "restricted",
                     f"{where} Namespace/{ns['metadata']['name']}",
                     "label pod-security.kubernetes.io/enforce=restricted missing")


# ---------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--k8s-versions", default="1.30.0,1.37.0",
                        help="Kubernetes schema versions to validate against (comma-separated)")
    parser.add_argument("--out", help="also write each rendered kustomization to this folder")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    repo = args.repo
    versions = [v.strip().lstrip("v") for v in args.k8s_versions.split(",") if v.strip()]
    report = Report()

    routes = read_routes(repo)
    report.check({"/health", "/ready", "/live"} <= set(routes), "src/http/mod.rs",
                 f"could not read the probe routes; found {sorted(routes)}")
    config_rs = open(os.path.join(repo, "src/config.rs"), encoding="utf-8").read()
    port_default = arg_default(config_rs, "PORT")
    if not report.check(bool(port_default and port_default.isdigit()), "src/config.rs",
                        f"no numeric default for PORT (found {port_default!r})"):
        return finish(report)
    default_port = int(port_default)
    shutdown_default = seconds(arg_default(config_rs, "SHUTDOWN_TIMEOUT") or "")
    if not report.check(shutdown_default is not None, "src/config.rs",
                        "no default for SHUTDOWN_TIMEOUT"):
        return finish(report)
    for dockerfile, port in dockerfile_ports(repo).items():
        report.check(port == str(default_port), dockerfile,
                     f"ENV PORT={port} differs from src/config.rs ({default_port}); the "
                     "manifests assume one port")
    grpc_ports = set(dockerfile_ports(repo, "GRPC_PORT").values())
    report.check(len(grpc_ports) <= 1, "Dockerfile*",
                 f"the images set different GRPC_PORTs {sorted(grpc_ports)}")
    default_grpc = next(iter(grpc_ports), None)
    default_grpc_port = int(default_grpc) if default_grpc and default_grpc.isdigit() else None
    print(f"server: GET routes {sorted(p for p, m in routes.items() if 'GET' in m)}, "
          f"PORT {default_port}, GRPC_PORT {default_grpc_port} (images), "
          f"SHUTDOWN_TIMEOUT {shutdown_default:g}s (src/)")

    version = subprocess.run([args.kubectl, "version", "--client"], capture_output=True,
                             text=True)
    print("tools: " + " / ".join(version.stdout.strip().splitlines())
          + f" / kubernetes-validate {kubernetes_validate.__version__}"
          + f" / schemas {', '.join(versions)}")

    sets: list[tuple[str, list[dict]]] = []
    kustomizations = sorted(
        os.path.dirname(p) for p in glob.glob(os.path.join(repo, "deploy/k8s/**/kustomization.y*ml"),
                                              recursive=True))
    report.check(bool(kustomizations), "deploy/k8s", "no kustomization found")
    for directory in kustomizations:
        rel = os.path.relpath(directory, repo)
        try:
            objs = render(args.kubectl, directory)
        except RuntimeError as e:
            report.fail(rel, f"kustomize: {e}")
            continue
        report.check(bool(objs), rel, "rendered nothing")
        sets.append((rel, objs))
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, rel.replace("/", "_") + ".yaml"), "w") as f:
                yaml.safe_dump_all(objs, f, sort_keys=False)
    for path in sorted(glob.glob(os.path.join(repo, "deploy/kserve/*.y*ml"))):
        rel = os.path.relpath(path, repo)
        try:
            sets.append((rel, load_yaml(path)))
        except yaml.YAMLError as e:
            report.fail(rel, f"not valid YAML: {e}")

    for name, objs in sets:
        failed_before = report.failed
        configmaps = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "ConfigMap"}
        uses_sleep = False
        for obj in objs:
            where = f"{name} {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
            if obj.get("kind") == "InferenceService":
                validate_inference_service(report, where, obj, versions)
            else:
                validate_core(report, where, obj, versions)
            for label, pod, annotations, knative in pod_specs(obj):
                pw = f"{where} {label}"
                check_pss(report, pw, pod, knative)
                check_server(report, pw, pod, annotations, knative, configmaps, routes,
                             default_port, default_grpc_port, shutdown_default)
                uses_sleep |= any(((c.get("lifecycle") or {}).get(h) or {}).get("sleep")
                                  for c in pod.get("containers") or []
                                  for h in ("preStop", "postStart"))
        if uses_sleep:
            oldest = min(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
            report.check(tuple(int(x) for x in oldest.split(".")[:2]) >= (1, 30), name,
                         f"lifecycle sleep needs Kubernetes >= 1.30, validated against {oldest}")
        if name.startswith("deploy/k8s"):
            check_references(report, name, objs)
        status = "ok" if report.failed == failed_before else "FAILED"
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
        print(f"{status:6} {name}: {kinds}" if args.verbose else f"{status:6} {name} "
              f"({len(objs)} objects)")
    return finish(report)


def finish(report: Report) -> int:
    print(f"k8s: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
