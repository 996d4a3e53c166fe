# Guest snippet: the Linux kernel target (nvmet) as the control. Same host-side steps as
# nvmf-tgt.sh, so a step that passes here and fails there points at our target.
# Sourced by /init in /opt/user with vmharness.sh and interop.sh loaded; exit status = verdict.
IT_NQN=nqn.2016-06.io.spdk:cnode1
IT_NQN_RESTRICTED=nqn.2016-06.io.spdk:cnode2
IT_NS1_BYTES=1073741824     # null_blk gb=1
IT_HOTADD_BYTES=1073741824

# Four memory-backed 1 GiB null_blk devices (memory is only used when written):
# nullb0 = cnode1 ns1, nullb1 = cnode2 ns1, nullb2/3 = namespaces hot-added by the suites.
modprobe null_blk nr_devices=4 memory_backed=1 discard=1 gb=1 bs=512 queue_mode=2 || exit 10
vmh_nvmet_subsys "$IT_NQN" /dev/nullb0 1 || exit 11
# cnode2: only IT_ALLOWED_HOSTNQN may connect
mkdir -p "$NVMET/subsystems/$IT_NQN_RESTRICTED/namespaces/1" "$NVMET/hosts/$IT_ALLOWED_HOSTNQN" || exit 12
echo 0 > "$NVMET/subsystems/$IT_NQN_RESTRICTED/attr_allow_any_host" || exit 12
ln -s "$NVMET/hosts/$IT_ALLOWED_HOSTNQN" "$NVMET/subsystems/$IT_NQN_RESTRICTED/allowed_hosts/" || exit 12
echo -n /dev/nullb1 > "$NVMET/subsystems/$IT_NQN_RESTRICTED/namespaces/1/device_path" || exit 12
echo 1 > "$NVMET/subsystems/$IT_NQN_RESTRICTED/namespaces/1/enable" || exit 12

target_add_ns() {  # target_add_ns NSID : configfs namespace on the next spare null_blk
    local ns="$NVMET/subsystems/$IT_NQN/namespaces/$1"
    mkdir "$ns" || return 1
    echo -n "/dev/nullb$1" > "$ns/device_path" || return 1
    echo 1 > "$ns/enable"
}
target_diag() { echo "---- nvmet: dmesg tail ----"; dmesg | grep -iE 'nvme|rxe|rdma' | tail -15; }

port=0
for tr in $(it_transports); do
    port=$((port + 1))
    case $tr in
    tcp) addr=127.0.0.1 ;;
    rdma) it_rxe_setup || { IT_FAILS=$((IT_FAILS + 1)); continue; }
          addr=$IT_RDMA_ADDR ;;
    *) vmh_log "unknown transport $tr"; exit 13 ;;
    esac
    vmh_nvmet_port "$port" "$tr" "$addr" "$IT_SVCID" "$IT_NQN" || exit 14
    ln -s "$NVMET/subsystems/$IT_NQN_RESTRICTED" "$NVMET/ports/$port/subsystems/$IT_NQN_RESTRICTED" || exit 14
    it_suite "$tr" "$addr"
done
rm -f "$NVMET/subsystems/$IT_NQN_RESTRICTED/allowed_hosts/$IT_ALLOWED_HOSTNQN"
vmh_nvmet_clear
rmdir "$NVMET/hosts/$IT_ALLOWED_HOSTNQN" 2>/dev/null
vmh_log "kernel target: $IT_FAILS failed step(s)"
[ "$IT_FAILS" = 0 ]
