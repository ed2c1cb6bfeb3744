"""Which Ingresses kedge serves: ingressClassName, the default class, the legacy annotation."""

from __future__ import annotations

from conftest import (
    SANITIZED,
    endpoint_slice,
    ingress,
    ingress_class,
    path_rule,
    poll,
    service,
)

RELOAD_BOUND_S = 1.0 * (3 if SANITIZED else 1)


def lb_ingress(k, name: str):
    ing = k.admin_json(f"/apis/networking.k8s.io/v1/namespaces/default/ingresses/{name}")
    return ing.get("status", {}).get("loadBalancer", {}).get("ingress")


def test_ingress_classes(env):
    e = env.echo("web")
    env.write("apps.yaml", service("web"), endpoint_slice("web", e.port, [e.endpoint()]))
    env.write("classes.yaml",
              ingress_class("kedge"),
              ingress_class("nginx", controller="k8s.io/ingress-nginx"))
    env.write("ingresses.yaml",
              ingress("no-class", [("noclass.test", [path_rule("/", "web")])]),
              ingress("named", [("named.test", [path_rule("/", "web")])], class_name="kedge"),
              ingress("foreign", [("foreign.test", [path_rule("/", "web")])], class_name="nginx"),
              ingress("legacy", [("legacy.test", [path_rule("/", "web")])],
                      annotations={"kubernetes.io/ingress.class": "kedge"}),
              ingress("legacy-foreign", [("legacy-foreign.test", [path_rule("/", "web")])],
                      annotations={"kubernetes.io/ingress.class": "nginx"}))
    k = env.kedge("--watch-ingress-without-class=false")

    assert k.service_of("named.test") == "web"
    assert k.service_of("legacy.test") == "web"
    assert k.service_of("foreign.test") == 404
    assert k.service_of("legacy-foreign.test") == 404
    # No class and no default class of ours: not served.
    assert k.service_of("noclass.test") == 404

    # Status only for the Ingresses kedge serves.
    assert lb_ingress(k, "named") == [{"ip": "127.0.0.1"}]
    assert lb_ingress(k, "legacy") == [{"ip": "127.0.0.1"}]
    assert not lb_ingress(k, "foreign")
    assert not lb_ingress(k, "no-class")
    assert sorted(k.admin_json("/debug/snapshot")["ingresses"]) == ["default/legacy",
                                                                   "default/named"]

    # Another controller's default class does not make it ours.
    gen = k.generation()
    env.write("classes.yaml",
              ingress_class("kedge"),
              ingress_class("nginx", controller="k8s.io/ingress-nginx", default=True))
    k.wait_reload(gen, timeout_s=RELOAD_BOUND_S * 3)
    assert k.service_of("noclass.test") == 404

    # Our class marked default: Ingresses without a class are served.
    env.write("classes.yaml",
              ingress_class("kedge", default=True),
              ingress_class("nginx", controller="k8s.io/ingress-nginx"))
    poll(lambda: k.service_of("noclass.test") == "web", RELOAD_BOUND_S,
         what="the Ingress without class to be served")
    assert lb_ingress(k, "no-class") == [{"ip": "127.0.0.1"}]
    assert k.service_of("foreign.test") == 404
    assert not lb_ingress(k, "foreign")


def test_default_class_under_another_name(env):
    """A default IngressClass of our controller with a name other than --ingress-class."""
    e = env.echo("web")
    env.write("apps.yaml", service("web"), endpoint_slice("web", e.port, [e.endpoint()]),
              ingress_class("edge-default", default=True),
              ingress("plain", [("plain.test", [path_rule("/", "web")])]),
              ingress("by-name", [("byname.test", [path_rule("/", "web")])],
                      class_name="edge-default"))
    k = env.kedge("--watch-ingress-without-class=false")
    assert k.service_of("plain.test") == "web"
    assert k.service_of("byname.test") == "web"


def test_without_class_served_by_default(env):
    """The default --watch-ingress-without-class=true serves Ingresses without a class, but still
    not those of another controller."""
    e = env.echo("web")
    env.write("apps.yaml", service("web"), endpoint_slice("web", e.port, [e.endpoint()]),
              ingress_class("nginx", controller="k8s.io/ingress-nginx"),
              ingress("plain", [("plain.test", [path_rule("/", "web")])]),
              ingress("foreign", [("foreign.test", [path_rule("/", "web")])], class_name="nginx"))
    k = env.kedge()
    assert k.service_of("plain.test") == "web"
    assert k.service_of("foreign.test") == 404
