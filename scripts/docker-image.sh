#!/usr/bin/env bash
# Builds the docker image agent-registry:local from the locally built release
# binary, without pulling anything: the root filesystem is the binary, the
# shared libraries it links (from ldd) with the dynamic loader, registryctl
# (built beside it; `docker compose exec node1 registryctl ...` and the compose
# `five` profile's grow step use it), busybox-static as /bin/sh (and wget for
# health checks), and a minimal /etc.
#
#   scripts/docker-image.sh [--force]
#
# The image is skipped when it was built from the same binary (the hash is kept
# in the image label agent-registry.build-hash). docker/Dockerfile is the
# regular multi-stage build for machines that can pull base images.
#
# Environment: REGISTRY_IMAGE (default agent-registry:local), REGISTRY_BIN
# (use this binary instead of building one), REGISTRYCTL_BIN (default: the
# registryctl beside the node binary, built when missing).
set -euo pipefail
LIB_PROG=docker-image
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE="${REGISTRY_IMAGE:-agent-registry:local}"
LABEL_KEY=agent-registry.build-hash
force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    *)
        echo "usage: scripts/docker-image.sh [--force]" >&2
        exit 2
        ;;
esac

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no docker daemon answers (is dockerd running?)"

# Debian's busybox-static: a static binary, so it needs no libraries in the image.
BUSYBOX=/bin/busybox
is_static() { [[ -x "$1" && "$(ldd "$1" 2>&1 || true)" == *"not a dynamic executable"* ]]; }
is_static "$BUSYBOX" || "$REPO_ROOT/scripts/setup.sh"
is_static "$BUSYBOX" || die "$BUSYBOX is not busybox-static (apt-get install busybox-static)"

build_registry
BIN="$(resolved_bin)"
CTL="${REGISTRYCTL_BIN:-$(dirname "$BIN")/registryctl}"
# Built like the node (never an older registryctl left in the target dir).
if [[ -z "${REGISTRYCTL_BIN:-}" && -z "${REGISTRY_BIN:-}" ]]; then
    cargo_build_package registryctl
fi
[[ -x "$CTL" ]] || die "no registryctl at $CTL (set REGISTRYCTL_BIN)"

# The hash covers everything that goes into the image.
hash="$(cat "$BIN" "$CTL" "$BUSYBOX" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-64)"
old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ -n "$old_id" && "$force" == 0 ]]; then
    old_hash="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null || true)"
    if [[ "$old_hash" == "$hash" ]]; then
        echo "docker-image: $IMAGE is up to date (${hash:0:12})"
        exit 0
    fi
fi

start="$(now)"
ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/agent-registry-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

mkdir -p "$ROOTFS"/{bin,etc,data,root,usr/local/bin}
mkdir -m 1777 "$ROOTFS/tmp"
# Without debug info (RocksDB's alone is hundreds of MB); symbols stay, so
# backtraces still name functions.
for pair in "agent-registry:$BIN" "registryctl:$CTL"; do
    name="${pair%%:*}" src="${pair#*:}"
    if command -v strip >/dev/null 2>&1; then
        strip --strip-debug -o "$ROOTFS/usr/local/bin/$name" "$src"
        chmod 0755 "$ROOTFS/usr/local/bin/$name"
    else
        install -m 0755 "$src" "$ROOTFS/usr/local/bin/$name"
    fi

    # Shared libraries and the dynamic loader, at the same paths as on this host.
    ldd_out="$(ldd "$src" 2>&1 || true)"
    if [[ "$ldd_out" != *"not a dynamic executable"* && "$ldd_out" != *"statically linked"* ]]; then
        mapfile -t libs < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$ldd_out" | sort -u)
        ((${#libs[@]} > 0)) || die "could not read the libraries of $src from ldd: $ldd_out"
        for lib in "${libs[@]}"; do
            [[ -e "$lib" ]] || die "library $lib (from ldd) does not exist"
            mkdir -p "$ROOTFS$(dirname "$lib")"
            cp -L "$lib" "$ROOTFS$lib"
        done
    fi
done

# busybox: /bin/sh, wget (health checks) and the usual tools for debugging.
install -m 0755 "$BUSYBOX" "$ROOTFS/bin/busybox"
while read -r applet; do
    [[ -n "$applet" && "$applet" != busybox && ! -e "$ROOTFS/bin/$applet" ]] || continue
    ln -s busybox "$ROOTFS/bin/$applet"
done < <("$BUSYBOX" --list)
[[ -L "$ROOTFS/bin/sh" && -L "$ROOTFS/bin/wget" ]] || die "busybox has no sh or wget applet"

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'hosts: files dns' >"$ROOTFS/etc/nsswitch.conf"
# docker mounts /etc/hosts, /etc/hostname and /etc/resolv.conf over these.
: >"$ROOTFS/etc/hosts"
: >"$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/resolv.conf"

log "importing $IMAGE ($(du -sh "$ROOTFS" | cut -f1) root filesystem)"
new_id="$(tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/agent-registry"]' \
    --change 'ENV PATH=/usr/local/bin:/bin' \
    --change 'ENV REGISTRY_LISTEN=0.0.0.0:8009' \
    --change 'ENV REGISTRY_DATA_DIR=/data' \
    --change 'EXPOSE 8009' \
    --change 'WORKDIR /data' \
    --change "LABEL $LABEL_KEY=$hash" \
    --change 'LABEL org.opencontainers.image.title=agent-registry' \
    --message "agent-registry built by scripts/docker-image.sh" \
    - "$IMAGE")" || die "docker import failed"

# The image must start: the loader and every library have to be there.
if ! out="$(docker run --rm --entrypoint /usr/local/bin/agent-registry "$IMAGE" --help 2>&1)"; then
    echo "$out" | tail -n 20 >&2
    die "the new image cannot run the binary (missing library?)"
fi
if ! out="$(docker run --rm --entrypoint /usr/local/bin/registryctl "$IMAGE" --help 2>&1)"; then
    echo "$out" | tail -n 20 >&2
    die "the new image cannot run registryctl (missing library?)"
fi

# Drop the image this one replaced, when nothing uses it any more.
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "docker-image: built $IMAGE (${hash:0:12}) in $(elapsed "$start")"
