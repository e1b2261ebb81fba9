#!/usr/bin/env bash
# Builds the base images the Dockerfile and the compose stack need, from Debian packages,
# without any container registry (for machines that can reach a Debian mirror but not Docker Hub):
#
#   local/debian:bookworm-slim  runtime base: debootstrap --variant=minbase bookworm, with the
#                               bookworm-updates/security fixes, trimmed like debian:bookworm-slim
#   local/rust:bookworm         builder base: the same plus build-essential, pkg-config,
#                               ca-certificates and this machine's active Rust toolchain
#                               (rustc, cargo, std; no docs) in /usr/local/rust
#   local/postgres:15           stand-in for the official postgres image (compose's database):
#                               Debian's PostgreSQL 15 and docker/postgres/entrypoint.sh, which
#                               honours POSTGRES_USER/_DB/_PASSWORD_FILE and initdb.d scripts
#
# Idempotent: an image whose tag already exists is kept; FORCE=1 rebuilds.
# Needs root (debootstrap, chroot) and a running Docker engine; installs debootstrap with apt
# when it is missing.
#
# Environment (all optional):
#   FORCE=1                 rebuild even when the tags exist
#   IMAGES                  which to build: any of runtime builder postgres
#                           (default "runtime builder", what the Dockerfile needs)
#   RUNTIME_TAG, BUILDER_TAG, POSTGRES_TAG  image tags (defaults above)
#   MIRROR, SECURITY_MIRROR Debian mirrors; default: the ones this machine's apt uses
#   RUST_TOOLCHAIN          rustup toolchain to copy (default: the active one, see `rustup show`)
#   WORK_DIR                scratch space for the root filesystems and the .deb cache
#                           (default /var/tmp/local-base-images; the rootfs are deleted after use)
set -euo pipefail

SUITE=bookworm
RUNTIME_TAG=${RUNTIME_TAG:-local/debian:bookworm-slim}
BUILDER_TAG=${BUILDER_TAG:-local/rust:bookworm}
POSTGRES_TAG=${POSTGRES_TAG:-local/postgres:15}
IMAGES=${IMAGES:-runtime builder}
HERE=$(cd "$(dirname "$0")/.." && pwd)
FORCE=${FORCE:-0}
WORK_DIR=${WORK_DIR:-/var/tmp/local-base-images}
DEB_CACHE=$WORK_DIR/debs
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[build-base-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The first mirror in this machine's apt sources that serves suite $1 (one-line and deb822
# formats). Prints nothing when there is none.
apt_mirror_for() {
    local suite=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; hit = 0; enabled = 1
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split(substr($i, 6), u, " "); uri = u[1] }
                    if ($i ~ /^Suites:/) {
                        n = split(substr($i, 8), w, " ")
                        for (j = 1; j <= n; j++) if (w[j] == s) hit = 1
                    }
                    if ($i ~ /^Enabled: *no/) enabled = 0
                }
                if (hit && enabled && uri != "") { print uri; exit }
            }' "$f"
    done
}

MIRROR=${MIRROR:-$(apt_mirror_for "$SUITE" | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_mirror_for "$SUITE-security" | head -n1)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# Everything mounted under a rootfs, deepest first (debootstrap and our chroot steps mount
# /proc and friends); unmounted before packing and on exit.
unmount_under() {
    local root=$1 m
    [ -d "$root" ] || return 0
    findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

ROOTFS_DIRS=()
cleanup() {
    local d
    for d in "${ROOTFS_DIRS[@]}"; do
        unmount_under "$d"
        rm -rf --one-file-system "$d"
    done
}
trap cleanup EXIT

# debootstrap a minbase rootfs into $1, with extra packages $2 (comma separated, may be empty).
bootstrap() {
    local root=$1 include=$2
    local args=(--variant=minbase "--cache-dir=$DEB_CACHE")
    [ -n "$include" ] && args+=("--include=$include")
    log "debootstrap ${args[*]} $SUITE $root $MIRROR"
    debootstrap "${args[@]}" "$SUITE" "$root" "$MIRROR" >"$root.debootstrap.log" 2>&1 || {
        tail -n 30 "$root.debootstrap.log" >&2
        die "debootstrap failed (full log: $root.debootstrap.log)"
    }
    rm -f "$root.debootstrap.log"
}

# apt configuration of the official slim images: no docs/man/locales on later installs, no
# recommends, caches cleaned after every apt run, services never started during builds.
configure_apt() {
    local root=$1
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'APT::Install-Recommends "false"; APT::Install-Suggests "false";' \
        >"$root/etc/apt/apt.conf.d/docker-no-recommends"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# Runs shell command $3 in the rootfs $1 with /proc mounted and the host's resolver, logging to
# $root.$2.log, which is shown and kept only on failure.
in_chroot() {
    local root=$1 name=$2 command=$3
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    log "$command in $root"
    chroot "$root" /usr/bin/env -i PATH=$BASE_PATH DEBIAN_FRONTEND=noninteractive \
        sh -c "$command" >"$root.$name.log" 2>&1 || {
        tail -n 30 "$root.$name.log" >&2
        umount -l "$root/proc"
        die "$name in $root failed (log: $root.$name.log)"
    }
    rm -f "$root.$name.log"
    umount -l "$root/proc"
}

# Pulls in the point-release, -updates and -security fixes debootstrap does not fetch.
upgrade() {
    in_chroot "$1" upgrade 'apt-get -qq update && apt-get -qq -y dist-upgrade'
}

# What the slim image drops: docs (copyright files kept), man pages, locales, apt lists and
# caches, logs, per-host identity files that Docker provides at run time.
trim() {
    local root=$1
    unmount_under "$root"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/* "$root"/usr/share/locale/*
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/debconf/*-old \
        "$root"/var/lib/dpkg/*-old "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.bash_history
    find "$root/var/log" -type f -delete
    rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/*
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    : >"$root/etc/hosts"
    : >"$root/etc/machine-id"
}

# docker import of a rootfs; extra arguments are --change instructions.
import() {
    local root=$1 tag=$2
    shift 2
    log "docker import -> $tag ($(du -sh --one-file-system "$root" | cut -f1) on disk)"
    tar --numeric-owner --one-file-system -C "$root" -c . |
        docker import --message "debootstrap --variant=minbase $SUITE from $MIRROR" "$@" - "$tag" >/dev/null
}

# Sets ROOTFS to a fresh directory, deleted on exit.
new_rootfs() {
    ROOTFS=$(mktemp -d "$WORK_DIR/rootfs.XXXXXX")
    ROOTFS_DIRS+=("$ROOTFS")
}

build_runtime() {
    local root
    new_rootfs
    root=$ROOTFS
    bootstrap "$root" ""
    configure_apt "$root"
    upgrade "$root"
    trim "$root"
    import "$root" "$RUNTIME_TAG" --change "ENV PATH=$BASE_PATH" --change 'CMD ["bash"]'
}

build_builder() {
    local root toolchain rust_version
    if [ -n "${RUST_TOOLCHAIN:-}" ]; then
        toolchain=$(rustup run "$RUST_TOOLCHAIN" rustc --print sysroot)
    else
        toolchain=$(cd / && rustc --print sysroot)
    fi
    [ -x "$toolchain/bin/rustc" ] && [ -x "$toolchain/bin/cargo" ] ||
        die "no rustc and cargo in toolchain $toolchain"
    rust_version=$("$toolchain/bin/rustc" --version | awk '{print $2}')
    new_rootfs
    root=$ROOTFS
    bootstrap "$root" "build-essential,pkg-config,ca-certificates"
    configure_apt "$root"
    upgrade "$root"
    log "copying rustc $rust_version from $toolchain to /usr/local/rust (docs left out)"
    mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
    tar -C "$toolchain" --exclude=./share/doc --exclude=./lib/rustlib/manifest-rust-docs-* \
        -c . | tar -C "$root/usr/local/rust" -x --no-same-owner
    chown -R root:root "$root/usr/local/rust"
    chmod -R go-w "$root/usr/local/rust"
    # (rustc finds its libraries through $ORIGIN, which glibc resolves through /proc.)
    mount -t proc proc "$root/proc"
    chroot "$root" /usr/bin/env -i PATH="/usr/local/rust/bin:$BASE_PATH" \
        sh -c 'rustc --version && cargo --version' >/dev/null ||
        die "the copied toolchain does not run inside the rootfs"
    umount -l "$root/proc"
    trim "$root"
    import "$root" "$BUILDER_TAG" \
        --change "ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$BASE_PATH" \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change "ENV RUST_VERSION=$rust_version" \
        --change 'CMD ["bash"]'
}

build_postgres() {
    local root
    new_rootfs
    root=$ROOTFS
    bootstrap "$root" ""
    configure_apt "$root"
    upgrade "$root"
    # Installed after configure_apt, whose policy-rc.d keeps the package from starting a server
    # inside the rootfs; no default cluster: the entry point creates one in PGDATA.
    mkdir -p "$root/etc/postgresql-common"
    echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
    in_chroot "$root" postgresql 'apt-get -qq update && apt-get -qq -y install postgresql-15'
    install -m 0755 "$HERE/docker/postgres/entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
    mkdir -p "$root/docker-entrypoint-initdb.d"
    trim "$root"
    local bin
    bin=$(cd "$root" && ls -d usr/lib/postgresql/*/bin | sort -V | tail -n1)
    import "$root" "$POSTGRES_TAG" \
        --change "ENV PATH=/$bin:$BASE_PATH" \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'EXPOSE 5432' \
        --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
        --change 'CMD []'
}

tag_of() {
    case "$1" in
        runtime) echo "$RUNTIME_TAG" ;;
        builder) echo "$BUILDER_TAG" ;;
        postgres) echo "$POSTGRES_TAG" ;;
        *) die "unknown image '$1' in IMAGES (runtime, builder, postgres)" ;;
    esac
}

main() {
    [ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
    docker info >/dev/null 2>&1 || die "no Docker engine answers"
    local need=() name tag
    for name in $IMAGES; do
        tag=$(tag_of "$name")
        if [ "$FORCE" != 1 ] && image_exists "$tag"; then
            log "$tag exists; kept (FORCE=1 rebuilds)"
        else
            need+=("$name")
        fi
    done
    if [ ${#need[@]} -gt 0 ]; then
        if ! command -v debootstrap >/dev/null; then
            log "installing debootstrap with apt"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
            }
        fi
        mkdir -p "$WORK_DIR" "$DEB_CACHE"
        log "mirror $MIRROR, security $SECURITY_MIRROR"
    fi
    local started
    for name in "${need[@]}"; do
        started=$(date +%s)
        "build_$name"
        log "built $(tag_of "$name") in $(($(date +%s) - started))s"
    done
    for name in $IMAGES; do
        tag=$(tag_of "$name")
        printf '%s\t%s MB\n' "$tag" "$(($(docker image inspect -f '{{.Size}}' "$tag") / 1000000))"
    done
}

main "$@"
