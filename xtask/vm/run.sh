#!/bin/bash
# run.sh -- boot the Debian kernel under QEMU (TCG) with the interop initramfs, run a guest
# snippet, stream the serial console to stdout and to a log file, and return the guest's verdict.
# Called by `cargo xtask interop`; it can also be run by hand after build.sh.
#
# usage: run.sh -w WORKDIR -s SNIPPET -l LOGFILE [options]
#   -w DIR    work dir holding build/ (from build.sh WORKDIR)
#   -s FILE   guest-side sh snippet, becomes /opt/user/snippet.sh; /init sources it in /opt/user
#             with /usr/lib/vmharness.sh and /usr/lib/interop.sh loaded; its exit status is the verdict
#   -l FILE   console log file
#   -b FILE   extra file copied to /opt/user/ (repeatable)
#   -T LIST   transports for the snippet (vmh.tests=), e.g. tcp or tcp,rdma (default tcp)
#   -t SECS   host-side timeout (default 600)
#   -m MB     guest RAM (default 2048)          -p N   guest cpus (default 2)
#   -k ARGS   extra kernel cmdline (e.g. "vmh.fio_runtime=10")
#   -K DIR    keep the payload tree in DIR (for --keep)
#   -v        verbose kernel console (no "quiet")
# exit: 0 PASS, N = guest "FAIL rc=N", 124 timeout, 125 no verdict (crash/panic/setup error).
# QEMU always runs with -nic none: every address the tests use is guest-local.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK=""; SNIP=""; LOG=""; EXTRA=(); TESTS=tcp; TMO=600; MEM=2048; CPUS=2; KARGS=""; KEEP=""
VERBOSE=0
while getopts "w:s:l:b:T:t:m:p:k:K:vh" o; do
    case $o in
    w) WORK=$OPTARG ;; s) SNIP=$OPTARG ;; l) LOG=$OPTARG ;; b) EXTRA+=("$OPTARG") ;;
    T) TESTS=$OPTARG ;; t) TMO=$OPTARG ;; m) MEM=$OPTARG ;; p) CPUS=$OPTARG ;; k) KARGS=$OPTARG ;;
    K) KEEP=$OPTARG ;; v) VERBOSE=1 ;;
    h|*) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2 ;;
    esac
done
[[ -n $WORK && -n $SNIP && -n $LOG ]] || { echo "run.sh: -w, -s and -l are required" >&2; exit 125; }
B="$WORK/build"
[[ -s $B/initramfs.cpio ]] || { echo "run.sh: no guest build in $B (run build.sh first)" >&2; exit 125; }

RUN="$(mktemp -d "$WORK/run.XXXXXX")"
trap 'rm -rf "$RUN"' EXIT
# Payload: a second newc archive appended to the base one (the kernel unpacks concatenated
# archives in order, later files win). It carries the current guest scripts, so editing them
# needs no guest rebuild, plus the snippet and the user files in /opt/user.
P="$RUN/payload"; mkdir -p "$P/usr/lib" "$P/opt/user"
install -m 0755 "$HERE/guest/init" "$P/init"
install -m 0644 "$HERE/guest/lib.sh" "$P/usr/lib/vmharness.sh"
install -m 0644 "$HERE/guest/interop.sh" "$P/usr/lib/interop.sh"
for f in "${EXTRA[@]}"; do cp -a "$f" "$P/opt/user/" || exit 125; done
cp "$SNIP" "$P/opt/user/snippet.sh" || exit 125
(cd "$P" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$RUN/payload.cpio" || exit 125
cat "$B/initramfs.cpio" "$RUN/payload.cpio" > "$RUN/initramfs.cpio" || exit 125
if [[ -n $KEEP ]]; then rm -rf "$KEEP"; cp -a "$P" "$KEEP"; fi

# prefer the uncompressed PVH vmlinux (no in-guest XZ decompression under TCG)
KERNEL="$B/vmlinuz"; [[ -s $B/vmlinux ]] && KERNEL="$B/vmlinux"
APPEND="console=ttyS0 panic=-1 oops=panic vmh.tests=$TESTS $KARGS"
((VERBOSE)) || APPEND="quiet loglevel=3 $APPEND"
# /dev/kvm on the machines this was made on is unusable (PVM only), so TCG it is.
QARGS=(-nodefaults -no-user-config -display none -no-reboot
       -smp "$CPUS" -m "$MEM" -kernel "$KERNEL" -initrd "$RUN/initramfs.cpio"
       -serial stdio -monitor none -accel tcg,thread=multi -cpu max -nic none)

mkdir -p "$(dirname "$LOG")"
T0=$(date +%s)
timeout --foreground -k 5 "$TMO" qemu-system-x86_64 "${QARGS[@]}" -append "$APPEND" </dev/null 2>&1 | tee "$LOG"
QRC=${PIPESTATUS[0]}
echo "run.sh: qemu rc=$QRC host wall $(( $(date +%s) - T0 ))s log=$LOG" >&2
RES=$(tr -d '\r' < "$LOG" | grep -a '^VMHARNESS-RESULT:' | tail -1)
case $RES in
"VMHARNESS-RESULT: PASS") exit 0 ;;
"VMHARNESS-RESULT: FAIL rc="*) r=${RES##*rc=}
    [[ $r =~ ^[0-9]+$ ]] && ((r > 0 && r < 124)) && exit "$r"; exit 1 ;;
esac
if [[ $QRC == 124 || $QRC == 137 ]]; then echo "run.sh: TIMEOUT after ${TMO}s" >&2; exit 124; fi
echo "run.sh: no verdict from guest (crash/panic?)" >&2
exit 125
