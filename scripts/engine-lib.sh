# Shared by docker-engine.sh and podman-engine.sh (sourced; they define `say` and `die`):
# installing Debian packages, and the test image's root file system.

have_root() { [ "$(id -u)" -eq 0 ]; }
is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null; }

apt_install() {
    have_root || die "need root to install $* (apt-get install $*)"
    is_debian || die "not Debian: install $* yourself"
    if [ -z "${_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _APT_UPDATED=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

file_is_static() {
    # busybox-static replaces /bin/busybox with a static binary; a dynamic one cannot run in the image.
    ! ldd "$1" >/dev/null 2>&1
}

# The test image's root file system as a tar stream on stdout: busybox-static and its applets,
# /etc/passwd with root and nobody, /tmp 1777. Import it with
#   rootfs_tar | <docker|podman> import $IMAGE_CHANGES - "$IMAGE"
IMAGE_CHANGES=(-c 'CMD ["/bin/sh"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
rootfs_tar() {
    local busybox=/bin/busybox root
    if ! { [ -x "$busybox" ] && file_is_static "$busybox"; }; then
        dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
    fi
    [ -x "$busybox" ] || die "no $busybox after installing busybox-static"
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev" "$root/home"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    chroot "$root" /bin/busybox --install -s /bin
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c .
    rm -rf "$root"
}
