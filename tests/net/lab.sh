#!/usr/bin/env bash
# lab.sh — kedge's multi-node test cluster built from Linux network namespaces: a bridge (the
# L2 segment), N nodes with routed pods behind each, an API-server host and an external client.
#
#   lab.sh up        build the lab (tears down a previous one first), verify it, print the plan
#   lab.sh down      remove every lab namespace (and the processes still running in them)
#   lab.sh plan      print the address plan without touching anything
#   lab.sh status    show what exists right now
#   lab.sh verify    ping/route checks between nodes, pods and the client
#   lab.sh exec HOST CMD...   run CMD in a lab host (node1, node2-pod1, ext, br)
#   lab.sh ns HOST   print the namespace name of a lab host
#   lab.sh ip HOST   print the IPv4 address of a lab host
#   lab.sh preflight exit 0 if this machine can run the lab, 77 (skip) with a reason if not
#
# Everything lives inside namespaces; the host namespace only gets one "unreachable"
# route for the lab range (KLAB_GUARD=1) so that a command run outside
# `ip netns exec` fails at once instead of sending lab traffic out of the machine.
#
# The file can also be sourced (`. lab.sh`) to get the address helpers without running main.
#
# Settings (environment):
#   KLAB_PREFIX   namespace name prefix           (default kn -> kn-node1, kn-node1-pod1, kn-ext, kn-br)
#   KLAB_NODES    number of nodes, 1..80          (default 3)
#   KLAB_PODS     pods per node, 1..200           (default 2)
#   KLAB_NET      first two octets of the lab /16 (default 10.78)
#   KLAB_EXT_HOST last octet of the client        (default 200)
#   KLAB_GUARD    1: unreachable route for the lab /16 in the host namespace (default 1)
#   KLAB_VERIFY   1: `up` runs `verify` at the end (default 1)

KLAB_PREFIX=${KLAB_PREFIX:-kn}
KLAB_NODES=${KLAB_NODES:-3}
KLAB_PODS=${KLAB_PODS:-2}
KLAB_NET=${KLAB_NET:-10.78}
KLAB_EXT_HOST=${KLAB_EXT_HOST:-200}
KLAB_GUARD=${KLAB_GUARD:-1}
KLAB_VERIFY=${KLAB_VERIFY:-1}
KLAB_GUARD_PROTO=78   # route protocol number that marks the guard route as ours

# ---------------------------------------------------------------- address plan
lab_cidr()     { echo "$KLAB_NET.0.0/16"; }
seg_cidr()     { echo "$KLAB_NET.0.0/24"; }              # the shared L2 segment (nodes + client)
svc_cidr()     { echo "$KLAB_NET.96.0/24"; }             # ClusterIPs: on no interface, DNAT only
lb_cidr()      { echo "$KLAB_NET.100.0/24"; }            # LoadBalancer IPs, claimed by one node at a time
node_ip()      { echo "$KLAB_NET.0.$((10 + $1))"; }      # node1 -> .0.11
ext_ip()       { echo "$KLAB_NET.0.$KLAB_EXT_HOST"; }
api_ip()       { echo "$KLAB_NET.0.2"; }                 # on br0 in the bridge namespace: the API server
pod_cidr()     { echo "$KLAB_NET.$((10 + $1)).0/24"; }   # node1 -> .11.0/24
pod_gw()       { echo "$KLAB_NET.$((10 + $1)).1"; }      # node side of every pod veth
pod_ip()       { echo "$KLAB_NET.$((10 + $1)).$((9 + $2))"; }  # node1 pod1 -> .11.10
node_mac()     { printf '02:78:00:00:00:%02d' $((10 + $1)); }     # node1 -> ...:11 (reads like its IP)
ext_mac()      { printf '02:78:00:00:%02d:%02d' $((KLAB_EXT_HOST / 100)) $((KLAB_EXT_HOST % 100)); }

ns_br()        { echo "$KLAB_PREFIX-br"; }
ns_ext()       { echo "$KLAB_PREFIX-ext"; }
ns_node()      { echo "$KLAB_PREFIX-node$1"; }
ns_pod()       { echo "$KLAB_PREFIX-node$1-pod$2"; }

# HOST is one of: br, ext, nodeN, nodeN-podM (or already a full namespace name)
ns_of() {
  case "$1" in
    br) ns_br ;;
    ext) ns_ext ;;
    node[0-9]*-pod[0-9]*) local n=${1#node}; ns_pod "${n%%-pod*}" "${1##*-pod}" ;;
    node[0-9]*) ns_node "${1#node}" ;;
    "$KLAB_PREFIX"-*) echo "$1" ;;
    *) echo "lab: unknown host '$1' (br, ext, nodeN, nodeN-podM)" >&2; return 1 ;;
  esac
}
ip_of() {
  case "$1" in
    ext) ext_ip ;;
    br | api) api_ip ;;
    node[0-9]*-pod[0-9]*) local n=${1#node}; pod_ip "${n%%-pod*}" "${1##*-pod}" ;;
    node[0-9]*) node_ip "${1#node}" ;;
    *) echo "lab: no address for '$1'" >&2; return 1 ;;
  esac
}

nsx() { local ns; ns=$(ns_of "$1") || return 1; shift; ip netns exec "$ns" "$@"; }

# every namespace that belongs to a lab with this prefix, whatever NODES/PODS were
lab_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' |
    grep -E "^${KLAB_PREFIX}-(br|ext|node[0-9]+(-pod[0-9]+)?)\$" || true
}

die() { echo "lab: $*" >&2; exit 1; }

validate() {
  [[ $KLAB_NODES =~ ^[0-9]+$ ]] && ((KLAB_NODES >= 1 && KLAB_NODES <= 80)) || die "KLAB_NODES must be 1..80"
  [[ $KLAB_PODS =~ ^[0-9]+$ ]] && ((KLAB_PODS >= 1 && KLAB_PODS <= 200)) || die "KLAB_PODS must be 1..200"
  [[ $KLAB_NET =~ ^([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] <= 255 && BASH_REMATCH[2] <= 255)) ||
    die "KLAB_NET must be two octets, e.g. 10.78"
  [[ $KLAB_EXT_HOST =~ ^[0-9]+$ ]] && ((KLAB_EXT_HOST >= 2 && KLAB_EXT_HOST <= 254)) || die "KLAB_EXT_HOST must be 2..254"
  ((KLAB_EXT_HOST < 11 || KLAB_EXT_HOST > 10 + KLAB_NODES)) || die "KLAB_EXT_HOST collides with a node address"
  [[ $KLAB_PREFIX =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "KLAB_PREFIX must be 1-8 of [a-z0-9], starting with a letter"
}

# ---------------------------------------------------------------- plan
cmd_plan() {
  validate
  local i j
  echo "lab plan: prefix=$KLAB_PREFIX nodes=$KLAB_NODES pods/node=$KLAB_PODS"
  printf '  %-14s %-16s %s\n' "lab range" "$(lab_cidr)" "exists only inside the lab namespaces"
  printf '  %-14s %-16s %s\n' "segment" "$(seg_cidr)" "bridge br0 in netns $(ns_br): nodes + client share this L2"
  printf '  %-14s %-16s %s\n' "API host" "$(api_ip)" "on br0 in netns $(ns_br) (the test API server)"
  for ((i = 1; i <= KLAB_NODES; i++)); do
    printf '  %-14s %-16s netns %-16s mac %s  pods %s via %s\n' "node$i" "$(node_ip $i)" "$(ns_node $i)" \
      "$(node_mac $i)" "$(pod_cidr $i)" "$(node_ip $i)"
    for ((j = 1; j <= KLAB_PODS; j++)); do
      printf '  %-14s %-16s netns %-16s gw %s (p%d in %s)\n' "  node$i-pod$j" "$(pod_ip $i $j)" "$(ns_pod $i $j)" \
        "$(pod_gw $i)" "$j" "$(ns_node $i)"
    done
  done
  printf '  %-14s %-16s netns %-16s mac %s  routes: segment, LB pool on-link\n' "ext (client)" "$(ext_ip)" "$(ns_ext)" "$(ext_mac)"
  printf '  %-14s %-16s %s\n' "service CIDR" "$(svc_cidr)" "ClusterIPs (on no interface; nodes route it dev eth0, DNAT does the rest)"
  printf '  %-14s %-16s %s\n' "LB pool" "$(lb_cidr)" "LoadBalancer IPs (one node claims + announces by ARP)"
  if [[ $KLAB_GUARD == 1 ]]; then
    printf '  %-14s %-16s %s\n' "host guard" "$(lab_cidr)" "unreachable route in the host namespace"
  fi
}

# ---------------------------------------------------------------- build
# nsysctl HOST|NAMESPACE key=value...: write /proc/sys directly and read it back.
# (procps `sysctl -w` prints "Invalid argument" but still exits 0 when a write is refused.)
nsysctl() {
  local ns; ns=$(ns_of "$1") || return 1; shift
  ip netns exec "$ns" bash -c '
    for kv; do
      k=${kv%%=*} v=${kv#*=} p=/proc/sys/${kv%%=*}; p=${p//.//}
      { echo "$v" >"$p" && [[ $(<"$p") == "$v" ]]; } 2>/dev/null || { echo "sysctl $k=$v refused in '"$ns"'" >&2; exit 1; }
    done' nsysctl "$@"
}

# common settings for every lab namespace. IPv4 conf/{all,default} of a new namespace are
# copied from the host's (net.core.devconf_inherit_init_net=0), so set what matters explicitly.
ns_base() {
  local ns=$1
  ip netns add "$ns"
  nsysctl "$ns" \
    net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.default.accept_redirects=0
  ip -n "$ns" link set lo up
}

node_sysctls() {
  nsysctl "$1" \
    net.ipv4.ip_forward=1 \
    net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 \
    net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
}

cmd_up() {
  validate
  preflight_or_die
  cmd_down quiet
  # a failure half-way removes the partial lab (needs set -E, set in main)
  trap 'trap - ERR; echo "lab: up failed (line $LINENO); removing the partial lab" >&2; cmd_down quiet' ERR
  local i j br ns nsn nsp ext
  br=$(ns_br)
  ns_base "$br"
  # a bridge in a namespace only sees netfilter if br_netfilter asks for it; keep the switch a switch
  # (the keys exist only where br_netfilter is built in or loaded)
  if ip netns exec "$br" test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    nsysctl "$br" net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
      net.bridge.bridge-nf-call-arptables=0
  fi
  ip -n "$br" link add br0 type bridge stp_state 0
  ip -n "$br" link set br0 up
  ip -n "$br" addr add "$(api_ip)/24" dev br0

  for ((i = 1; i <= KLAB_NODES; i++)); do
    nsn=$(ns_node $i)
    ns_base "$nsn"
    node_sysctls "$nsn"
    ip -n "$br" link add "n$i" type veth peer name eth0 netns "$nsn"
    ip -n "$br" link set "n$i" master br0 up
    ip -n "$nsn" link set eth0 address "$(node_mac $i)"
    ip -n "$nsn" addr add "$(node_ip $i)/24" dev eth0
    ip -n "$nsn" link set eth0 up
    for ((j = 1; j <= KLAB_PODS; j++)); do
      nsp=$(ns_pod $i $j)
      ns_base "$nsp"
      ip -n "$nsn" link add "p$j" type veth peer name eth0 netns "$nsp"
      # routed pod veth (no per-node bridge): the node side carries the pod gateway as a /32,
      # the pod gets a /32 and an on-link default route. No br_netfilter needed for hairpin.
      ip -n "$nsn" addr add "$(pod_gw $i)/32" dev "p$j"
      ip -n "$nsn" link set "p$j" up
      ip -n "$nsn" route add "$(pod_ip $i $j)/32" dev "p$j" src "$(pod_gw $i)"
      ip -n "$nsp" addr add "$(pod_ip $i $j)/32" dev eth0
      ip -n "$nsp" link set eth0 up
      ip -n "$nsp" route add "$(pod_gw $i)" dev eth0 scope link
      ip -n "$nsp" route add default via "$(pod_gw $i)" dev eth0 src "$(pod_ip $i $j)"
    done
  done
  # node routes: other nodes' pod CIDRs via that node, service CIDR and LB pool on the segment
  for ((i = 1; i <= KLAB_NODES; i++)); do
    nsn=$(ns_node $i)
    for ((j = 1; j <= KLAB_NODES; j++)); do
      ((i == j)) || ip -n "$nsn" route add "$(pod_cidr $j)" via "$(node_ip $j)" dev eth0
    done
    ip -n "$nsn" route add "$(svc_cidr)" dev eth0
    ip -n "$nsn" route add "$(lb_cidr)" dev eth0
  done

  ext=$(ns_ext)
  ns_base "$ext"
  ip -n "$br" link add ext type veth peer name eth0 netns "$ext"
  ip -n "$br" link set ext master br0 up
  ip -n "$ext" link set eth0 address "$(ext_mac)"
  ip -n "$ext" addr add "$(ext_ip)/24" dev eth0
  ip -n "$ext" link set eth0 up
  # like a router on the segment: LB IPs are on-link (resolved by ARP), nothing else is routed
  ip -n "$ext" route add "$(lb_cidr)" dev eth0 scope link

  if [[ $KLAB_GUARD == 1 ]]; then
    ip route replace unreachable "$(lab_cidr)" proto $KLAB_GUARD_PROTO
  fi
  trap - ERR
  cmd_plan
  if [[ $KLAB_VERIFY == 1 ]]; then cmd_verify; fi
}

# ---------------------------------------------------------------- teardown
cmd_down() {
  local quiet=${1:-} ns pids pid left=0 n=0
  for ns in $(lab_namespaces); do
    # processes still inside keep the namespace (and its veths) alive after `ip netns del`
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      [[ -n $quiet ]] || echo "lab: stopping processes in $ns: $(echo $pids)"
      for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -z $pids ]] && break
        sleep 0.2
      done
      for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  done
  for ns in $(lab_namespaces); do
    ip netns del "$ns" && n=$((n + 1))
  done
  if ip route show exact "$(lab_cidr)" proto $KLAB_GUARD_PROTO 2>/dev/null | grep -q unreachable; then
    ip route del unreachable "$(lab_cidr)" proto $KLAB_GUARD_PROTO
  fi
  left=$(lab_namespaces | wc -l)
  ((left == 0)) || die "namespaces left behind: $(lab_namespaces | tr '\n' ' ')"
  [[ -n $quiet ]] || echo "lab: down ($n namespaces removed)"
}

# ---------------------------------------------------------------- inspection
cmd_status() {
  local ns
  local list; list=$(lab_namespaces | sort -V)
  if [[ -z $list ]]; then echo "lab: no lab namespaces with prefix '$KLAB_PREFIX'"; return 0; fi
  for ns in $list; do
    echo "== $ns   processes: $(ip netns pids "$ns" | wc -l)"
    if [[ $ns == "$(ns_br)" ]]; then
      ip -n "$ns" -br link | grep -v '^lo ' | sed 's/^/   /'
    else
      ip -n "$ns" -br -4 addr | grep -v '^lo ' | sed 's/^/   /'
    fi
  done
  ip route show exact "$(lab_cidr)" 2>/dev/null | sed 's/^/host: /'
}

cmd_verify() {
  local i j k fails=0 total=0
  check_ping() { # ns-host target
    total=$((total + 1))
    if ! nsx "$1" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1; then
      echo "lab verify: FAIL $1 -> $2" >&2; fails=$((fails + 1))
    fi
  }
  for ((i = 1; i <= KLAB_NODES; i++)); do
    check_ping ext "$(node_ip $i)"
    for ((k = 1; k <= KLAB_NODES; k++)); do
      ((i == k)) || check_ping "node$i" "$(node_ip $k)"
      for ((j = 1; j <= KLAB_PODS; j++)); do check_ping "node$i" "$(pod_ip $k $j)"; done
    done
  done
  # pod to pod across nodes (first pod of each node to the first pod of every other node)
  for ((i = 1; i <= KLAB_NODES; i++)); do
    for ((k = 1; k <= KLAB_NODES; k++)); do ((i == k)) || check_ping "node$i-pod1" "$(pod_ip $k 1)"; done
  done
  # the client must not reach pods (no route): the lab is "external" for it
  total=$((total + 1))
  if nsx ext ping -c 1 -W 1 -q "$(pod_ip 1 1)" >/dev/null 2>&1; then
    echo "lab verify: FAIL ext reached a pod directly" >&2; fails=$((fails + 1))
  fi
  echo "lab verify: $((total - fails))/$total reachability checks ok"
  ((fails == 0))
}

# ---------------------------------------------------------------- environment
preflight() {
  local t
  [[ $(id -u) == 0 ]] || { echo "needs root (network namespaces, veth, nftables)"; return 1; }
  for t in ip nft sysctl; do command -v $t >/dev/null || { echo "missing command: $t (lab.sh deps)"; return 1; }; done
  local probe="$KLAB_PREFIX-preflight$$"
  ip netns add "$probe" 2>/dev/null || { echo "cannot create a network namespace (ip netns add)"; return 1; }
  local ok=1 why=""
  ip -n "$probe" link add vprobe0 type veth peer name vprobe1 2>/dev/null || { ok=0; why="veth not available"; }
  if ((ok)) && ! ip netns exec "$probe" nft add table ip klab_probe 2>/dev/null; then ok=0; why="nftables not usable in a namespace"; fi
  ip netns del "$probe"
  ((ok)) || { echo "$why"; return 1; }
  if ip -4 -o addr show to "$(lab_cidr)" | grep -q .; then
    echo "the host already uses addresses in $(lab_cidr); pick another KLAB_NET"; return 1
  fi
  if ip -4 route show root "$(lab_cidr)" | grep -v "^unreachable $(lab_cidr) proto $KLAB_GUARD_PROTO" | grep -q .; then
    echo "the host already routes parts of $(lab_cidr); pick another KLAB_NET"; return 1
  fi
}
preflight_or_die() { local why; why=$(preflight) || die "cannot run: $why"; }

main() {
  set -eEuo pipefail
  local cmd=${1:-help}
  shift || true
  case "$cmd" in
    up) cmd_up ;;
    down) validate; cmd_down ;;
    plan) cmd_plan ;;
    status) cmd_status ;;
    verify) validate; cmd_verify ;;
    exec) [[ $# -ge 2 ]] || die "usage: lab.sh exec HOST CMD..."; nsx "$@" ;;
    ns) ns_of "$1" ;;
    ip) ip_of "$1" ;;
    preflight)
      local why
      if why=$(preflight); then echo "lab: preflight ok"; else echo "lab: SKIP: $why"; exit 77; fi ;;
    help | -h | --help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (try: lab.sh help)" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
