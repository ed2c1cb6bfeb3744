"""Invalid manifests: `kedge check` reports them; `kedge serve` keeps the last good version."""

from __future__ import annotations

import re

from conftest import (
    KEDGE_SOURCE_DIR,
    SANITIZED,
    dump_yaml,
    endpoint_slice,
    ingress,
    path_rule,
    poll,
    service,
)

RELOAD_BOUND_S = 1.0 * (3 if SANITIZED else 1)

NO_PATH_TYPE = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: shop
spec:
  rules:
    - host: {host}
      http:
        paths:
          - path: {path}
            backend:
              service: {{name: web, port: {{number: 80}}}}
"""

RELATIVE_PATH = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: relative
spec:
  rules:
    - host: rel.test
      http:
        paths:
          - path: api
            pathType: Prefix
            backend:
              service: {name: web, port: {number: 80}}
"""

SYNTAX_ERROR = """\
apiVersion: v1
kind: Service
metadata:
  name: broken
  labels: {app: web
spec:
  ports: [{port: 80}]
"""


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in manifest")


def test_check_reports_every_problem(env):
    no_type = NO_PATH_TYPE.format(name="no-type", host="a.test", path="/x")
    f1 = env.write_text("a-no-type.yaml", no_type)
    f2 = env.write_text("b-relative.yaml", RELATIVE_PATH)
    f3 = env.write_text("c-syntax.yaml", SYNTAX_ERROR)
    r = env.run_kedge("check", "--manifests", str(env.manifests))
    assert r.returncode != 0, r.stdout
    out = r.stdout
    # file:line: Kind namespace/name: field: message
    line = line_of(no_type, "- path: /x")
    assert re.search(
        rf"^{re.escape(str(f1))}:{line}: Ingress shop/no-type: "
        r"spec\.rules\[0\]\.http\.paths\[0\]\.pathType: Required value", out, re.M), out
    line = line_of(RELATIVE_PATH, "path: api")
    assert re.search(
        rf"^{re.escape(str(f2))}:{line}: Ingress default/relative: "
        r"spec\.rules\[0\]\.http\.paths\[0\]\.path: .*absolute", out, re.M), out
    m = re.search(rf"^{re.escape(str(f3))}:(\d+): .*YAML", out, re.M)
    assert m, out
    assert 4 <= int(m.group(1)) <= 7


def test_check_passes_good_manifests(env):
    env.write("apps.yaml", service("web"), endpoint_slice("web", 8080, [
        {"addresses": ["127.0.0.1"]}]))
    env.write("ingress.yaml", ingress("web", [("web.test", [path_rule("/", "web")])]))
    r = env.run_kedge("check", "--manifests", str(env.manifests))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 Ingresses served" in r.stdout and "0 problems" in r.stdout, r.stdout


def test_check_quickstart_example(env):
    r = env.run_kedge("check", "--manifests", str(KEDGE_SOURCE_DIR / "examples" / "quickstart"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 problems" in r.stdout


def test_serve_keeps_last_good_version(env):
    w = env.echo("web", namespace="shop")
    api = env.echo("api", namespace="shop")
    env.write("apps.yaml",
              service("web", ns="shop"), endpoint_slice("web", w.port, [w.endpoint()], ns="shop"),
              service("api", ns="shop"), endpoint_slice("api", api.port, [api.endpoint()], ns="shop"))
    good = ingress("store", [("store.test", [path_rule("/old", "web")])], ns="shop")
    env.write("store.yaml", good)
    k = env.kedge()
    assert k.service_of("store.test", "/old") == "web"
    assert k.admin_json("/debug/errors")["issues"] == []
    assert k.metric("kedge_config_errors") == 0

    # The Ingress becomes invalid (no pathType) while a sibling in the same file and a new
    # file are valid: those apply, the broken one keeps its last good version.
    gen = k.generation()
    broken = NO_PATH_TYPE.format(name="store", host="store.test", path="/new")
    sibling = dump_yaml(ingress("sibling", [("sibling.test", [path_rule("/", "api")])], ns="shop"))
    store_file = env.write_text("store.yaml", broken + "---\n" + sibling)
    env.write("other.yaml", ingress("other", [("other.test", [path_rule("/", "web")])], ns="shop"))
    k.wait_reload(gen, timeout_s=RELOAD_BOUND_S * 3)
    poll(lambda: k.service_of("sibling.test") == "api" and k.service_of("other.test") == "web",
         RELOAD_BOUND_S, what="the valid objects of the same load")
    assert k.service_of("store.test", "/old") == "web"  # last good version still routes
    assert k.service_of("store.test", "/new") == 404    # the invalid one is not applied

    issues = k.admin_json("/debug/errors")["issues"]
    assert len(issues) == 1, issues
    issue = issues[0]
    assert issue["file"] == str(store_file)
    assert issue["line"] == line_of(broken, "- path: /new")
    assert issue["kind"] == "Ingress" and issue["namespace"] == "shop" and issue["name"] == "store"
    assert issue["field"] == "spec.rules[0].http.paths[0].pathType"
    assert "Required" in issue["message"]
    assert k.metric("kedge_config_errors") >= 1

    # A syntax error in another file keeps everything that file had.
    gen = k.generation()
    env.write_text("apps.yaml", SYNTAX_ERROR)
    k.wait_reload(gen, timeout_s=RELOAD_BOUND_S * 3)
    issues = k.admin_json("/debug/errors")["issues"]
    assert any(i["file"].endswith("apps.yaml") and "YAML" in i["message"] and i["line"] > 0
               for i in issues), issues
    assert k.metric("kedge_config_errors") >= 2
    assert k.service_of("store.test", "/old") == "web"
    assert k.service_of("sibling.test") == "api"

    # Fixing both clears the errors and applies the new version.
    gen = k.generation()
    env.write("apps.yaml",
              service("web", ns="shop"), endpoint_slice("web", w.port, [w.endpoint()], ns="shop"),
              service("api", ns="shop"), endpoint_slice("api", api.port, [api.endpoint()], ns="shop"))
    env.write("store.yaml", ingress("store", [("store.test", [path_rule("/new", "api")])],
                                    ns="shop"))
    k.wait_reload(gen, timeout_s=RELOAD_BOUND_S * 3)
    poll(lambda: k.service_of("store.test", "/new") == "api", RELOAD_BOUND_S, what="the fix")
    assert k.service_of("store.test", "/old") == 404
    assert k.admin_json("/debug/errors")["issues"] == []
    assert k.metric("kedge_config_errors") == 0
    assert k.metric("kedge_config_errors_total") >= 2


def test_serve_starts_with_invalid_objects(env):
    """Invalid objects at start are reported, the valid ones are served."""
    w = env.echo("web")
    env.write("apps.yaml", service("web"), endpoint_slice("web", w.port, [w.endpoint()]))
    env.write("good.yaml", ingress("good", [("good.test", [path_rule("/", "web")])]))
    env.write_text("relative.yaml", RELATIVE_PATH)
    k = env.kedge()
    assert k.service_of("good.test") == "web"
    assert k.service_of("rel.test", "/api") == 404
    issues = k.admin_json("/debug/errors")["issues"]
    assert [i["name"] for i in issues] == ["relative"]
    assert issues[0]["field"] == "spec.rules[0].http.paths[0].path"
    assert k.metric("kedge_config_errors") == 1
