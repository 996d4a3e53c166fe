# /usr/lib/vmharness.sh -- guest helper library for `cargo xtask interop`, sourced by /init.
# All output goes to the serial console (ttyS0); run.sh and xtask parse its markers:
#   VMHARNESS-UPTIME: <s>   VMHARNESS-RESULT: PASS | FAIL rc=N   (and interop.sh's INTEROP-STEP)

vmh_log() { echo "[vmh $(cut -d' ' -f1 /proc/uptime)s] $*"; }
vmh_die() { vmh_log "ERROR: $*"; return 1; }
vmh_cmdline() {  # vmh_cmdline KEY DEFAULT  -> value of vmh.KEY= on the kernel cmdline
    local v
    v=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^vmh\.$1=//p" | tail -1)
    echo "${v:-$2}"
}
vmh_run() { echo "+ $*"; "$@"; }

vmh_modprobe() { local m; for m in "$@"; do modprobe "$m" || { vmh_die "modprobe $m failed"; return 1; }; done; }

# ---------------------------------------------------------------- kernel target (nvmet)
NVMET=/sys/kernel/config/nvmet
# vmh_nvmet_subsys NQN BLOCKDEV [NSID]
vmh_nvmet_subsys() {
    local nqn=$1 dev=$2 nsid=${3:-1}
    vmh_modprobe nvmet || return 1
    mkdir -p "$NVMET/subsystems/$nqn" || return 1
    echo 1 > "$NVMET/subsystems/$nqn/attr_allow_any_host" || return 1
    mkdir -p "$NVMET/subsystems/$nqn/namespaces/$nsid" || return 1
    echo -n "$dev" > "$NVMET/subsystems/$nqn/namespaces/$nsid/device_path" || return 1
    echo 1 > "$NVMET/subsystems/$nqn/namespaces/$nsid/enable" || return 1
}
# vmh_nvmet_port PORTID TRTYPE TRADDR TRSVCID NQN
vmh_nvmet_port() {
    local id=$1 tr=$2 addr=$3 svc=$4 nqn=$5
    vmh_modprobe "nvmet-$tr" || return 1
    mkdir -p "$NVMET/ports/$id" || return 1
    echo "$addr" > "$NVMET/ports/$id/addr_traddr" || return 1
    echo "$tr"   > "$NVMET/ports/$id/addr_trtype" || return 1
    echo "$svc"  > "$NVMET/ports/$id/addr_trsvcid" || return 1
    echo ipv4    > "$NVMET/ports/$id/addr_adrfam" || return 1
    ln -s "$NVMET/subsystems/$nqn" "$NVMET/ports/$id/subsystems/$nqn" || return 1
}
vmh_nvmet_clear() {  # tear down every port/subsystem
    local p s n
    for p in "$NVMET"/ports/*; do [ -d "$p" ] || continue
        for s in "$p"/subsystems/*; do [ -L "$s" ] && rm -f "$s"; done
        rmdir "$p"; done
    for s in "$NVMET"/subsystems/*; do [ -d "$s" ] || continue
        for n in "$s"/namespaces/*; do [ -d "$n" ] && { echo 0 > "$n/enable"; rmdir "$n"; }; done
        rmdir "$s"; done
}
# A memory-backed null_blk (data is kept, so verification is meaningful). Prints the device.
vmh_ramdisk() {  # vmh_ramdisk [SIZE_GB]
    if [ ! -b /dev/nullb0 ]; then
        modprobe null_blk nr_devices=1 memory_backed=1 gb="${1:-1}" bs=512 queue_mode=2 >/dev/null || return 1
    fi
    echo /dev/nullb0
}

# ---------------------------------------------------------------- NVMe-oF host side
vmh_host_init() {
    vmh_modprobe nvme-core nvme-fabrics || return 1
    [ -s /etc/nvme/hostnqn ] || nvme gen-hostnqn > /etc/nvme/hostnqn
    [ -s /etc/nvme/hostid ]  || cat /proc/sys/kernel/random/uuid > /etc/nvme/hostid
}
# vmh_ns_of NQN -> /dev/nvmeXnY of the first namespace of the connected subsystem
vmh_ns_of() {
    local s b i
    for i in $(seq 1 50); do
        for s in /sys/class/nvme-subsystem/*; do
            [ -e "$s/subsysnqn" ] || continue
            [ "$(cat "$s/subsysnqn")" = "$1" ] || continue
            for b in "$s"/nvme*n*; do
                [ -e "$b" ] || continue
                b=${b##*/}; [ -b "/dev/$b" ] && { echo "/dev/$b"; return 0; }
            done
        done
        sleep 0.2
    done
    return 1
}
vmh_ctrl_of() {  # vmh_ctrl_of NQN -> /dev/nvmeX
    local c
    for c in /sys/class/nvme/nvme*; do
        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] && { echo "/dev/${c##*/}"; return 0; }
    done; return 1
}

# ---------------------------------------------------------------- soft-RoCE
# vmh_rxe_setup IP : soft-RoCE rxe0 on a guest-only dummy netdev vmh0 carrying IP.
vmh_rxe_setup() {
    local ip=${1:-10.123.0.1}
    vmh_modprobe ib_core ib_uverbs rdma_cm rdma_ucm rdma_rxe || return 1
    vmh_modprobe dummy || return 1
    ip link add vmh0 type dummy 2>/dev/null
    VMH_RXE_NETDEV=vmh0
    ip addr add "$ip/24" dev "$VMH_RXE_NETDEV" || return 1
    ip link set "$VMH_RXE_NETDEV" up || return 1
    vmh_run rdma link add rxe0 type rxe netdev "$VMH_RXE_NETDEV" || return 1
    vmh_run rdma link show
}

# ---------------------------------------------------------------- main
vmh_result() {
    echo "VMHARNESS-UPTIME: $(cut -d' ' -f1 /proc/uptime)"
    if [ "$1" = 0 ]; then echo "VMHARNESS-RESULT: PASS"; else echo "VMHARNESS-RESULT: FAIL rc=$1"; fi
}
vmh_poweroff() {
    sync
    poweroff -f 2>/dev/null
    sleep 2; echo o > /proc/sysrq-trigger
    sleep 5; reboot -f
}
vmh_main() {
    local rc
    vmh_log "guest up: $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print $2" kB"}' /proc/meminfo)"
    . /usr/lib/interop.sh
    if [ -f /opt/user/snippet.sh ]; then
        vmh_log "running snippet /opt/user/snippet.sh"
        ( set +e; cd /opt/user; . /opt/user/snippet.sh )
        rc=$?
    else
        vmh_log "no snippet in /opt/user"; rc=125
    fi
    [ "$rc" = 0 ] || { echo "---- dmesg tail ----"; dmesg | tail -40; }
    vmh_result "$rc"
    vmh_poweroff
}
