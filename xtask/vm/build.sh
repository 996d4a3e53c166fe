#!/bin/bash
# build.sh WORKDIR -- build (or rebuild) the guest kernel + base initramfs for
# `cargo xtask interop`, entirely from Debian 12 (bookworm) packages.
# Called by xtask with WORKDIR=target/interop; it can also be run by hand.
#
#   Cache: the build is skipped when WORKDIR/build/STAMP matches this script's sha256.
#   Produces:  WORKDIR/build/vmlinuz          (Debian linux-image-*-amd64 kernel)
#              WORKDIR/build/initramfs.cpio   (uncompressed newc cpio: busybox-static,
#                                              kmod, nvme-cli, fio, rdma-core tools,
#                                              NVMe/RDMA kernel modules, guest init)
#              WORKDIR/build/KVER             (kernel version string)
#
# Env knobs:  VMH_KPKG=linux-image-6.1.0-XX-amd64   pin a kernel package
#             VMH_SKIP_APT=1                      don't apt-get install host tools
#             VMH_FORCE=1                         rebuild even if artifacts exist
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${1:?usage: build.sh WORKDIR}"
mkdir -p "$WORK"/{debs,build}
WORK="$(cd "$WORK" && pwd)"
B="$WORK/build"

# The guest build depends only on this script and on the Debian archive; the guest
# scripts travel in the per-run payload (run.sh), so editing them needs no rebuild.
STAMP="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1) ${VMH_KPKG:-}"
if [[ -s $B/vmlinuz && -s $B/initramfs.cpio && "$(cat "$B/STAMP" 2>/dev/null)" == "$STAMP" && -z ${VMH_FORCE:-} ]]; then
    echo "build.sh: cached guest in $B (VMH_FORCE=1 to rebuild)" >&2
    exit 0
fi
rm -f "$B/STAMP"

log() { echo "build.sh: $*" >&2; }

# ---------------------------------------------------------------- host packages
# The guest userland is copied out of the host (same Debian release => same glibc),
# so the tools must be installed on the host.  All from Debian's archive.
# (diffutils: GNU cmp in the guest, much faster than busybox's byte-wise cmp under TCG)
HOST_PKGS=(qemu-system-x86 busybox-static cpio kmod xz-utils binutils nvme-cli fio
           rdma-core ibverbs-utils rdmacm-utils ibverbs-providers iproute2 socat util-linux diffutils)
if [[ -z ${VMH_SKIP_APT:-} ]]; then
    missing=()
    for p in "${HOST_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# ---------------------------------------------------------------- kernel
KPKG="${VMH_KPKG:-}"
if [[ -z $KPKG ]]; then
    # whatever linux-image-amd64 (the Debian meta package) currently points at
    KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
    if [[ -z $KPKG ]]; then apt-get update -qq; KPKG="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"; fi
fi
[[ -n $KPKG ]] || { log "cannot resolve a linux-image package"; exit 1; }
KDEB="$(ls "$WORK"/debs/"${KPKG}"_*.deb 2>/dev/null | head -1 || true)"
if [[ -z $KDEB ]]; then
    log "apt-get download $KPKG"
    (cd "$WORK/debs" && apt-get download "$KPKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2)
    KDEB="$(ls "$WORK"/debs/"${KPKG}"_*.deb | head -1)"
fi
KROOT="$WORK/kpkg-$KPKG"
if [[ ! -d $KROOT/boot ]]; then
    rm -rf "$KROOT.tmp"; mkdir -p "$KROOT.tmp"
    dpkg -x "$KDEB" "$KROOT.tmp"
    mv "$KROOT.tmp" "$KROOT"
fi
KVER="$(ls "$KROOT/lib/modules" | head -1)"
depmod -b "$KROOT" "$KVER"
log "kernel $KPKG ($KVER)"

# ---------------------------------------------------------------- staging root
S="$B/root"
rm -rf "$S"
mkdir -p "$S"/usr/{bin,sbin,lib,lib64} "$S"/{dev,proc,sys,tmp,run,mnt,root,etc,var,opt}
ln -s usr/bin "$S/bin"; ln -s usr/sbin "$S/sbin"; ln -s usr/lib "$S/lib"; ln -s usr/lib64 "$S/lib64"
mkdir -p "$S/var/tmp" "$S/etc/nvme"

copy_file() {  # copy a host file (following symlinks) to the same path in $S
    local f="$1" d
    d="$S$(dirname "$f")"
    mkdir -p "$d"
    cp -L "$f" "$d/"
}
declare -A SEEN=()
copy_with_libs() {  # binary or .so + its ldd closure
    local f="$1" l
    [[ -n ${SEEN[$f]:-} ]] && return 0
    SEEN[$f]=1
    copy_file "$f"
    while read -r l; do
        [[ -n $l && -z ${SEEN[$l]:-} ]] || continue
        SEEN[$l]=1; copy_file "$l"
    done < <(ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}')
}

# busybox (static) provides sh + coreutils; applets that a real tool below
# provides are skipped.
cp /bin/busybox "$S/usr/bin/busybox"
REAL_TOOLS=(/usr/bin/ip /usr/sbin/nvme /usr/bin/fio /usr/bin/kmod /usr/bin/rdma /usr/bin/ibv_devices
            /usr/bin/ibv_devinfo /usr/bin/ibv_rc_pingpong /usr/bin/rping /usr/bin/ucmatose
            /usr/bin/udaddy /usr/bin/rdma_client /usr/bin/rdma_server /usr/bin/uuidgen
            /usr/bin/socat /usr/sbin/blkdiscard /usr/bin/cmp)
for t in "${REAL_TOOLS[@]}"; do
    [[ -x $t ]] && copy_with_libs "$t" || log "warning: $t missing"
done
for l in /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so /usr/lib/x86_64-linux-gnu/libibverbs/libsiw-rdmav*.so; do
    [[ -e $l ]] && copy_with_libs "$l"
done
# dlopen()ed by glibc (getpwnam etc.) and by tools
for l in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2 \
         /lib/x86_64-linux-gnu/libgcc_s.so.1; do
    [[ -e $l ]] && copy_with_libs "$l"
done
mkdir -p "$S/etc/libibverbs.d"
cp /etc/libibverbs.d/rxe.driver /etc/libibverbs.d/siw.driver "$S/etc/libibverbs.d/" 2>/dev/null || true
for a in modprobe insmod rmmod lsmod depmod modinfo; do ln -sf ../bin/kmod "$S/usr/sbin/$a"; done
for a in $("$S/usr/bin/busybox" --list); do
    [[ -e $S/usr/bin/$a || -e $S/usr/sbin/$a ]] && continue
    ln -s busybox "$S/usr/bin/$a"
done
# minimal /etc
cat > "$S/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
echo 'root:x:0:' > "$S/etc/group"
echo 'hosts: files' > "$S/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$S/etc/hosts"
echo vmharness > "$S/etc/hostname"
cp /etc/ld.so.conf "$S/etc/"; cp -r /etc/ld.so.conf.d "$S/etc/" 2>/dev/null || true
ldconfig -r "$S" 2>/dev/null || true

# ---------------------------------------------------------------- kernel modules
MODS=(configfs nvme-core nvme-fabrics nvme-tcp nvme-rdma nvmet nvmet-tcp nvmet-rdma
      rdma_rxe ib_core ib_cm iw_cm rdma_cm ib_uverbs rdma_ucm ib_umad
      null_blk brd loop crc32c_generic crc32c-intel crc32_generic libcrc32c
      virtio_pci virtio_net virtio_blk virtio_console 9p 9pnet_virtio dummy veth)
MD="$S/usr/lib/modules/$KVER"
mkdir -p "$MD"
for m in "${MODS[@]}"; do
    if ! modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" > "$B/.dep" 2>/dev/null; then
        log "warning: module $m not found"; continue
    fi
    while read -r kw path _; do
        [[ $kw == insmod ]] || continue
        rel="${path#$KROOT/lib/modules/$KVER/}"
        mkdir -p "$MD/$(dirname "$rel")"
        cp -n "$path" "$MD/$rel"
    done < "$B/.dep"
done
rm -f "$B/.dep"
cp "$KROOT/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$MD/" 2>/dev/null || true
depmod -b "$S/usr" "$KVER" 2>/dev/null || depmod -b "$S" "$KVER"
# depmod -b S/usr writes S/usr/lib/modules/KVER which /lib/modules resolves to.

# ---------------------------------------------------------------- guest scripts
install -m 0755 "$HERE/guest/init" "$S/init"
install -m 0644 "$HERE/guest/lib.sh" "$S/usr/lib/vmharness.sh"
install -m 0644 "$HERE/guest/interop.sh" "$S/usr/lib/interop.sh"

# ---------------------------------------------------------------- pack
cp "$KROOT/boot/vmlinuz-$KVER" "$B/vmlinuz"
# Uncompressed ELF vmlinux (Debian builds CONFIG_PVH=y): QEMU boots it via the PVH entry
# point, which skips the bzImage XZ decompressor -- that alone costs ~5.5 s under TCG.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$B/vmlinuz" | head -1 | cut -d: -f1 || true)
rm -f "$B/vmlinux"
if [[ -n $off ]]; then
    tail -c +$((off + 1)) "$B/vmlinuz" | xz -dc > "$B/vmlinux.tmp" 2>/dev/null || true
    if readelf -n "$B/vmlinux.tmp" 2>/dev/null | grep -q 'note type: (0x00000012)'; then
        mv "$B/vmlinux.tmp" "$B/vmlinux"
    fi
    rm -f "$B/vmlinux.tmp"
fi
[[ -s $B/vmlinux ]] && log "extracted PVH-bootable vmlinux" || log "no PVH vmlinux; will boot the bzImage"
echo "$KVER" > "$B/KVER"
(cd "$S" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$B/initramfs.cpio.tmp"
mv "$B/initramfs.cpio.tmp" "$B/initramfs.cpio"
# the unpacked kernel package (~400 MB) is only needed while building; the .deb stays cached
rm -rf "$KROOT"
echo "$STAMP" > "$B/STAMP"
log "done: $(du -h "$B/vmlinuz" | cut -f1) kernel (vmlinux $(du -h "$B/vmlinux" 2>/dev/null | cut -f1)), $(du -h "$B/initramfs.cpio" | cut -f1) initramfs in $B"
