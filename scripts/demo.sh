#!/usr/bin/env bash
# The quickstart: builds kedge if needed, starts three example backends (`kedge echo`) at the
# endpoint addresses of examples/quickstart/, runs kedge on those manifests, and shows host- and
# path-based routing with curl. Ctrl-C stops everything. With --once it exits after the show.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
kedge=build/src/kedge
http_port=${KEDGE_DEMO_PORT:-8080}
https_port=${KEDGE_DEMO_HTTPS_PORT:-8443}
admin_port=${KEDGE_DEMO_ADMIN_PORT:-10254}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

start() { "$@" >>"${log_dir}/demo.log" 2>&1 & pids+=($!); }
log_dir=$(mktemp -d)
start $kedge echo --listen 127.0.0.1:9101 --name web --pod web-7d4b9-x1 --namespace demo
start $kedge echo --listen 127.0.0.2:9101 --name web --pod web-7d4b9-x2 --namespace demo
start $kedge echo --listen 127.0.0.1:9102 --name api --pod api-5f6c8-q9 --namespace demo
# A TLS host for the demo: a fresh self-signed certificate in a kubernetes.io/tls Secret.
tls_dir="${log_dir}/tls"
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=secure.example.test -addext subjectAltName=DNS:secure.example.test \
  -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
cat >"$tls_dir/secure.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: secure-tls, namespace: demo}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$tls_dir/cert.pem")
  tls.key: $(base64 -w0 "$tls_dir/key.pem")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure, namespace: demo}
spec:
  ingressClassName: kedge
  tls: [{hosts: [secure.example.test], secretName: secure-tls}]
  rules:
    - host: secure.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
YAML
start $kedge serve --manifests examples/quickstart --manifests examples/services \
  --manifests "$tls_dir" --http-listen "127.0.0.1:${http_port}" \
  --https-listen "127.0.0.1:${https_port}" --admin-listen "127.0.0.1:${admin_port}" \
  --node-address 127.0.0.1 --state-dir "${log_dir}/state"

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:${admin_port}/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:${admin_port}/readyz" >/dev/null || { cat "${log_dir}/demo.log"; exit 1; }

show() {
  echo "\$ $*"
  "$@" | python3 -c 'import json,sys
try:
    d = json.load(sys.stdin)
    print("  -> service=%s pod=%s path=%s" % (d["service"], d["pod"], d["path"]))
except Exception:
    print("  -> (not JSON)")'
}
show_status() {
  echo "\$ $*"
  echo "  -> HTTP $("$@" -o /dev/null -w '%{http_code}')"
}
base="http://127.0.0.1:${http_port}"
echo
echo "kedge is serving examples/quickstart on ${base} (admin on 127.0.0.1:${admin_port})"
echo
echo "# host-based routing, load-balanced over the two web pods:"
show curl -s -H 'Host: web.example.test' "${base}/"
show curl -s -H 'Host: web.example.test' "${base}/"
echo "# path-based routing: /api on the same host goes to the api service:"
show curl -s -H 'Host: web.example.test' "${base}/api/orders?id=7"
echo "# a wildcard host rule:"
show curl -s -H 'Host: shop.apps.example.test' "${base}/cart"
echo "# an Exact path, and what does not match it:"
show curl -s -H 'Host: api.example.test' "${base}/v1/status"
show_status curl -s -H 'Host: api.example.test' "${base}/v1/status/extra"
echo "# no rule for this host:"
show_status curl -s -H 'Host: nowhere.example.test' "${base}/"
echo "# HTTPS with the certificate of a Secret (SNI), and the redirect from plain HTTP:"
show curl -sk --resolve "secure.example.test:${https_port}:127.0.0.1" "https://secure.example.test:${https_port}/account"
echo "\$ curl -s -H 'Host: secure.example.test' ${base}/account -o /dev/null -w '%{http_code} %{redirect_url}'"
echo "  -> $(curl -s -H 'Host: secure.example.test' "${base}/account" -o /dev/null -w '%{http_code} %{redirect_url}')"
echo
echo "# a Service of type LoadBalancer: its addresses, and TCP through each of them:"
svc=$(curl -s "127.0.0.1:${admin_port}/api/v1/namespaces/demo/services/web-lb")
read -r cluster_ip node_port lb_ip < <(echo "$svc" | python3 -c 'import json,sys
s = json.load(sys.stdin)
print(s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"], s["status"]["loadBalancer"]["ingress"][0]["ip"])')
echo "  ClusterIP ${cluster_ip}:8081, NodePort 127.0.0.1:${node_port}, LoadBalancer ${lb_ip}:8081"
show curl -s "http://${cluster_ip}:8081/via-cluster-ip"
show curl -s "http://127.0.0.1:${node_port}/via-node-port"
show curl -s "http://${lb_ip}:8081/via-load-balancer"
echo
echo "# the routes kedge built, and what it would tell kubectl:"
echo "\$ curl -s 127.0.0.1:${admin_port}/debug/snapshot"
echo "\$ curl -s 127.0.0.1:${admin_port}/apis/networking.k8s.io/v1/ingresses"
echo "\$ curl -s 127.0.0.1:${admin_port}/api/v1/services"
echo "# edit examples/quickstart/*.yaml and the change is served within milliseconds."
if [ "${1:-}" = "--once" ]; then exit 0; fi
echo
echo "Press Ctrl-C to stop."
wait
