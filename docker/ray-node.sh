#!/usr/bin/env bash
# lam-ray-node: the entry point and the probes of LAM's pods on a Ray cluster in Kubernetes
# (deploy/overlays/cluster; docs/cluster.md, "On Kubernetes"). The image installs it as
# /opt/venv/bin/lam-ray-node.
#
#   lam-ray-node node            a LAM node: `ray start --block`, the head when the pod is
#                                ordinal 0 of its StatefulSet, a worker joining it otherwise
#   lam-ray-node router CMD...   a Ray node without a LAM resource (a Ray driver needs a raylet
#                                on its own machine), then exec CMD (python -m service)
#   lam-ray-node ready           readiness: this pod's raylet runs and the head's GCS answers
#   lam-ray-node alive [PATH]    liveness: this pod's raylet runs (and GET PATH on
#                                127.0.0.1:$LAM_PORT answers 200)
#
# Environment (the manifests set it):
#   POD_NAME, POD_IP             downward API. The node's resource is lam_node_$POD_NAME:
#                                a pod that comes back has its name, hence its replicas.
#   LAM_RAY_ADDRESS              host:port of the head's GCS: the head pod's DNS name in the
#                                headless Service (<set>-0.<service>), the one source for
#                                the nodes and the router alike.
#   LAM_RAY_OBJECT_STORE_BYTES   the object store (in /dev/shm: size that volume above it)
#   LAM_RAY_NUM_CPUS             the CPUs Ray may schedule (the container's limit)
#   LAM_RAY_STOP_GRACE_S         on SIGTERM, `ray stop` waits this long (default 20)
#   LAM_RAY_WAIT_S               seconds between two looks for the head (default 2)
set -euo pipefail

# Ray's default is to report usage to its makers; a LAM pod never calls outside its cluster.
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"

die() {
	echo "lam-ray-node: $*" >&2
	exit 64
}

need() {
	local name
	for name in "$@"; do
		[ -n "${!name:-}" ] || die "$name is not set"
	done
}

# Common `ray start` flags of every pod: its own address (never the one Ray would guess),
# its object store and CPUs, no usage stats.
common_flags() {
	need POD_IP LAM_RAY_OBJECT_STORE_BYTES
	flags=(--node-ip-address "$POD_IP" --object-store-memory "$LAM_RAY_OBJECT_STORE_BYTES"
		--disable-usage-stats)
}

# Workers and the router start in parallel with the head (podManagementPolicy Parallel; the
# headless Service publishes the head's address before it is ready), so they wait for its GCS.
wait_for_head() {
	until ray health-check --address "$LAM_RAY_ADDRESS" >/dev/null 2>&1; do
		echo "lam-ray-node: waiting for the head at $LAM_RAY_ADDRESS" >&2
		sleep "${LAM_RAY_WAIT_S:-2}"
	done
}

# `ray start --block` until it exits (a Ray process died: the pod restarts and rejoins) or
# SIGTERM comes: then `ray stop` stops the raylet first, the GCS last, as Ray means it to.
# `ray start --block` ignores Ray processes that exit on SIGTERM, so it is stopped too.
run_blocking() {
	ray start "$@" --block &
	local child=$! rc
	# shellcheck disable=SC2064  # expand $child now
	trap "ray stop --grace-period '${LAM_RAY_STOP_GRACE_S:-20}' >&2 || true; kill -TERM $child 2>/dev/null || true" TERM INT
	set +e
	wait "$child"
	rc=$?
	while kill -0 "$child" 2>/dev/null; do
		wait "$child"
		rc=$?
	done
	exit "$rc"
}

node() {
	need POD_NAME LAM_RAY_ADDRESS LAM_RAY_NUM_CPUS
	local ordinal="${POD_NAME##*-}" port="${LAM_RAY_ADDRESS##*:}"
	[[ "$ordinal" =~ ^[0-9]+$ ]] || die "POD_NAME $POD_NAME is not <statefulset>-<ordinal>"
	[[ "$port" =~ ^[0-9]+$ ]] || die "LAM_RAY_ADDRESS $LAM_RAY_ADDRESS is not host:port"
	# The address must name this StatefulSet's ordinal 0, or the workers would wait forever
	# for a head that is not the one started here.
	local head="${POD_NAME%-*}-0" host="${LAM_RAY_ADDRESS%:*}"
	[ "${host%%.*}" = "$head" ] || die "LAM_RAY_ADDRESS $LAM_RAY_ADDRESS is not the head pod $head"
	common_flags
	flags+=(--num-cpus "$LAM_RAY_NUM_CPUS" --resources "{\"lam_node_$POD_NAME\": 1}")
	if [ "$ordinal" = 0 ]; then
		run_blocking --head --port "$port" --include-dashboard=false "${flags[@]}"
	fi
	wait_for_head
	run_blocking --address "$LAM_RAY_ADDRESS" "${flags[@]}"
}

router() {
	[ "$#" -gt 0 ] || die "router: no command to run"
	need LAM_RAY_ADDRESS
	common_flags
	wait_for_head
	# No CPUs and no lam_node_ resource: no replica is ever placed on the router's pod.
	ray start --address "$LAM_RAY_ADDRESS" --num-cpus 0 "${flags[@]}" >&2
	exec "$@"
}

# This pod's raylet: the process named raylet started with this pod's address.
raylet_runs() {
	need POD_IP
	local dir
	for dir in /proc/[0-9]*; do
		[ "$(cat "$dir/comm" 2>/dev/null)" = raylet ] || continue
		if tr '\0' '\n' <"$dir/cmdline" 2>/dev/null | grep -qxF -- "--node_ip_address=$POD_IP"; then
			return 0
		fi
	done
	echo "lam-ray-node: no raylet for $POD_IP" >&2
	return 1
}

# GET PATH on the local server, with bash's /dev/tcp (the image has no curl).
http_ok() {
	local status
	exec 3<>"/dev/tcp/127.0.0.1/${LAM_PORT:-8000}" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
	IFS=' ' read -r -t 5 _ status _ <&3 || status=none
	exec 3<&-
	[ "$status" = 200 ] || {
		echo "lam-ray-node: GET $1 answered $status" >&2
		return 1
	}
}

case "${1:-}" in
node) node ;;
router)
	shift
	router "$@"
	;;
ready)
	need LAM_RAY_ADDRESS
	raylet_runs
	ray health-check --address "$LAM_RAY_ADDRESS" >/dev/null
	;;
alive)
	raylet_runs
	if [ -n "${2:-}" ]; then http_ok "$2"; fi
	;;
*) die "usage: lam-ray-node node | router CMD... | ready | alive [PATH]" ;;
esac
