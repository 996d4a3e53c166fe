# /usr/lib/interop.sh -- the host-side interop steps of `cargo xtask interop` (busybox sh).
# They drive an NVMe-oF target running in the same guest with the in-kernel NVMe/TCP and
# NVMe/RDMA hosts, nvme-cli and fio. The target is set up by the snippet, which sets:
#   IT_NQN            subsystem under test (allow any host), namespace 1 of IT_NS1_BYTES bytes
#   IT_NQN_RESTRICTED subsystem whose allow-list holds only IT_ALLOWED_HOSTNQN
#   IT_HOTADD_BYTES   size of the namespaces that target_add_ns adds
# and defines the hooks
#   target_add_ns NSID   add namespace NSID to IT_NQN while hosts are connected
#   target_diag          print the target's state/log on a failed step (optional)
#   IT_RESERVATIONS=1    the target implements NVMe reservations (optional)
#   target_ana_setup, target_set_ana SVCID STATE
#                        a subsystem IT_NQN_ANA with ANA reporting on IT_SVCID and IT_SVCID2,
#                        and the ANA state of one port (optional)
#   target_add_hidden_ns NSID, target_ns_host add|remove NSID HOSTNQN
#                        per-host namespace masking (optional: the ns-masking step is skipped
#                        without them; nvmet has no per-host masking)
# Each step prints one marker line that xtask parses:
#   INTEROP-STEP <transport>/<step>: PASS|FAIL|SKIP (<detail>)
# Data layout on namespace 1 (MiB): 8..72 dd pattern, 80..208 fio, 216..219 discard, 224..225
# fio negative control; so IT_NS1_BYTES must be at least 256 MiB.

IT_ALLOWED_HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:3b4c6f1e-5a0d-4f6e-9d55-7d1f2c9e8a01
IT_ALLOWED_HOSTID=3b4c6f1e-5a0d-4f6e-9d55-7d1f2c9e8a01
IT_SVCID=4420
# Bounded reconnects: a dead target must not stall the guest for the kernel's default 600 s.
IT_CONNECT_OPTS="--ctrl-loss-tmo=10 --reconnect-delay=2"
IT_FAILS=0
IT_NEXT_NSID=2
IT_TR=
IT_ADDR=
IT_DEV=
IT_CTRL=
IT_PAT_WRITTEN=
IT_SN=
MIB=1048576

it_now() { cut -d' ' -f1 /proc/uptime; }

# it_step NAME FUNC [ARGS...] : run one step and print its marker; returns FUNC's status.
it_step() {
    local name="$IT_TR/$1" t0 rc dt
    shift
    vmh_log "---- step $name"
    t0=$(it_now)
    "$@"
    rc=$?
    dt=$(awk "BEGIN{printf \"%.1f\", $(it_now) - $t0}")
    if [ $rc = 0 ]; then
        echo "INTEROP-STEP $name: PASS (${dt}s)"
    else
        type target_diag >/dev/null 2>&1 && target_diag
        echo "INTEROP-STEP $name: FAIL (rc=$rc, ${dt}s)"
        IT_FAILS=$((IT_FAILS + 1))
    fi
    return $rc
}
it_skip() { echo "INTEROP-STEP $IT_TR/$1: SKIP ($2)"; }
# it_step_c: like it_step, but SKIP when no controller is connected (an earlier step failed).
it_step_c() {
    if [ -z "$IT_DEV" ]; then it_skip "$1" "not connected"; return 1; fi
    it_step "$@"
}

# ---------------------------------------------------------------- helpers
# it_ns_dev NQN NSID [TRIES] -> /dev/nvmeXnY of namespace NSID of the connected subsystem NQN
# (TRIES x 0.2 s, default 75 = 15 s)
it_ns_dev() {
    local s b i id
    for i in $(seq 1 "${3:-75}"); do
        for s in /sys/class/nvme-subsystem/*; do
            [ "$(cat "$s/subsysnqn" 2>/dev/null)" = "$1" ] || continue
            for b in "$s"/nvme*n*; do
                [ -e "$b/nsid" ] || continue
                id=$(cat "$b/nsid")
                [ "$id" = "$2" ] && [ -b "/dev/${b##*/}" ] && { echo "/dev/${b##*/}"; return 0; }
            done
        done
        sleep 0.2
    done
    return 1
}
# it_wait_gone NQN : wait (10 s) until no controller of NQN is left
it_wait_gone() {
    local i
    for i in $(seq 1 50); do
        vmh_ctrl_of "$1" >/dev/null || return 0
        sleep 0.2
    done
    vmh_die "controller of $1 still present after disconnect"
}
it_nvme_connect() {  # it_nvme_connect NQN [extra nvme-connect options]
    local nqn=$1
    shift
    vmh_run timeout 60 nvme connect -t "$IT_TR" -a "$IT_ADDR" -s "$IT_SVCID" -n "$nqn" $IT_CONNECT_OPTS "$@"
}
it_disconnect_all() {
    local n
    for n in "$IT_NQN" "$IT_NQN_RESTRICTED" "$IT_NQN_ANA"; do
        vmh_ctrl_of "$n" >/dev/null && nvme disconnect -n "$n" >/dev/null 2>&1
    done
    IT_DEV=
    IT_CTRL=
}
# it_id_field DEV-OR-CTRL CMD FIELD -> value of "FIELD : value" in nvme CMD output
it_id_field() { nvme "$2" "$1" | sed -n "s/^$3 *: *//p" | head -1; }
# it_read DEV OFFSET_MIB COUNT_MIB FILE : O_DIRECT read
it_read() { dd if="$1" of="$4" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null; }

# ---------------------------------------------------------------- steps
step_discover() {
    vmh_run timeout 60 nvme discover -t "$IT_TR" -a "$IT_ADDR" -s "$IT_SVCID" > /tmp/it.disc 2>&1
    local rc=$?
    cat /tmp/it.disc
    [ $rc = 0 ] || return 1
    grep -qE "^subnqn: +$IT_NQN\$" /tmp/it.disc || { vmh_die "discovery log lacks $IT_NQN"; return 1; }
    grep -qE "^trsvcid: +$IT_SVCID\$" /tmp/it.disc || { vmh_die "discovery log lacks trsvcid $IT_SVCID"; return 1; }
    grep -qE "^trtype: +$IT_TR\$" /tmp/it.disc || { vmh_die "discovery log lacks trtype $IT_TR"; return 1; }
}
# step_connect [nvme-connect options] : connect IT_NQN, find its controller and namespace 1
step_connect() {
    local c tr
    it_nvme_connect "$IT_NQN" "$@" || { vmh_die "nvme connect failed"; return 1; }
    IT_DEV=$(it_ns_dev "$IT_NQN" 1) || { vmh_die "namespace 1 did not appear"; return 1; }
    IT_CTRL=$(vmh_ctrl_of "$IT_NQN") || { vmh_die "no controller for $IT_NQN"; IT_DEV=; return 1; }
    c=/sys/class/nvme/${IT_CTRL#/dev/}
    tr=$(cat "$c/transport")
    vmh_log "connected: ctrl=$IT_CTRL ($tr, $(cat "$c/address")) ns1=$IT_DEV"
    [ "$tr" = "$IT_TR" ] || { vmh_die "controller transport is $tr, expected $IT_TR"; return 1; }
}
step_list() {
    vmh_run nvme list > /tmp/it.list 2>&1 || { cat /tmp/it.list; return 1; }
    cat /tmp/it.list
    grep -q "^$IT_DEV " /tmp/it.list || { vmh_die "nvme list does not show $IT_DEV"; return 1; }
}
step_id_ctrl() {
    local subnqn nn
    vmh_run nvme id-ctrl "$IT_CTRL" > /tmp/it.idc 2>&1 || { cat /tmp/it.idc; return 1; }
    grep -E '^(vid|sn|mn|fr|mdts|cntlid|ver|nn|oncs|sgls|ioccsz|iorcsz|subnqn) ' /tmp/it.idc
    subnqn=$(sed -n 's/^subnqn *: *//p' /tmp/it.idc)
    IT_SN=$(sed -n 's/^sn *: *//p' /tmp/it.idc | sed 's/ *$//')
    nn=$(sed -n 's/^nn *: *//p' /tmp/it.idc)
    [ "$subnqn" = "$IT_NQN" ] || { vmh_die "id-ctrl subnqn '$subnqn', expected '$IT_NQN'"; return 1; }
    [ -n "$nn" ] && [ "$((nn))" -ge 1 ] || { vmh_die "id-ctrl nn '$nn' < 1"; return 1; }
}
step_id_ns() {
    local nsze lbads bytes sysbytes
    vmh_run nvme id-ns "$IT_DEV" > /tmp/it.idn 2>&1 || { cat /tmp/it.idn; return 1; }
    grep -E '^(nsze|ncap|nuse|nsfeat|nlbaf|flbas|dlfeat|nguid|eui64) |in use' /tmp/it.idn
    nsze=$(sed -n 's/^nsze *: *//p' /tmp/it.idn)
    lbads=$(sed -n 's/^lbaf .*lbads:\([0-9]*\).*(in use).*/\1/p' /tmp/it.idn)
    [ -n "$nsze" ] && [ -n "$lbads" ] || { vmh_die "id-ns: no nsze or in-use lbaf"; return 1; }
    bytes=$(( nsze * (1 << lbads) ))
    sysbytes=$(( $(cat "/sys/block/${IT_DEV#/dev/}/size") * 512 ))
    vmh_log "namespace 1: nsze=$nsze lbads=$lbads -> $bytes bytes, block device $sysbytes bytes"
    [ "$bytes" = "$IT_NS1_BYTES" ] || { vmh_die "id-ns size $bytes, expected $IT_NS1_BYTES"; return 1; }
    [ "$sysbytes" = "$IT_NS1_BYTES" ] || { vmh_die "block device size $sysbytes, expected $IT_NS1_BYTES"; return 1; }
}
# 64 MiB of random data at 8 MiB, written and read back with O_DIRECT, compared with cmp.
# (GNU cmp: busybox cmp/sha256sum over 64 MiB took tens of seconds under TCG.)
step_dd_64m() {
    dd if=/dev/urandom of=/tmp/it.pat bs=1M count=64 2>/dev/null || return 1
    IT_PAT_WRITTEN=1
    vmh_run dd if=/tmp/it.pat of="$IT_DEV" bs=1M seek=8 count=64 oflag=direct conv=fsync || { vmh_die "dd write"; return 1; }
    echo 3 > /proc/sys/vm/drop_caches
    it_read "$IT_DEV" 8 64 /tmp/it.rb || { vmh_die "dd read"; return 1; }
    cmp /tmp/it.pat /tmp/it.rb || { vmh_die "64 MiB read-back differs"; return 1; }
    rm -f /tmp/it.rb
}
# The pattern written by step_dd_64m is still there (after disconnect/reconnect).
step_data_persists() {
    [ -n "$IT_PAT_WRITTEN" ] || { vmh_die "no pattern was written"; return 1; }
    it_read "$IT_DEV" 8 64 /tmp/it.rb || { vmh_die "dd read"; return 1; }
    cmp /tmp/it.pat /tmp/it.rb || { vmh_die "data written before the reconnect differs"; return 1; }
    rm -f /tmp/it.rb
}
step_queue_count() {  # step_queue_count REQUESTED
    local want got
    want=$1
    [ "$(nproc)" -lt "$want" ] && want=$(nproc)  # the host caps I/O queues at the online CPUs
    got=$(cat "/sys/class/nvme/${IT_CTRL#/dev/}/queue_count")
    vmh_log "queue_count (admin + I/O) = $got, expected $((want + 1))"
    [ "$got" = "$((want + 1))" ]
}
step_fio_verify() {
    local t rc
    t=$(vmh_cmdline fio_runtime 20)
    vmh_run timeout -s KILL $((t + 90)) fio --name=interop --filename="$IT_DEV" --ioengine=libaio \
        --direct=1 --numjobs=4 --iodepth=32 --rw=randrw --rwmixread=50 --bsrange=4k-128k \
        --offset=80M --size=32M --offset_increment=32M --runtime="$t" --time_based \
        --verify=crc32c --verify_fatal=1 --verify_backlog=256 --do_verify=1 \
        --group_reporting > /tmp/it.fio 2>&1
    rc=$?
    cat /tmp/it.fio
    [ $rc = 0 ] || { vmh_die "fio exited $rc"; return 1; }
    grep -qE 'err= *[1-9]|verify.*(fail|bad)|bad magic|crc32c.*(wanted|mismatch)' /tmp/it.fio && { vmh_die "fio reported errors"; return 1; }
    grep -qE 'err= *0' /tmp/it.fio || { vmh_die "fio printed no job status"; return 1; }
}
# fio's crc32c verify must catch a block zeroed behind its back (proves the fio step can fail).
step_fio_negative_control() {
    local o="--filename=$IT_DEV --ioengine=libaio --direct=1 --rw=write --bs=4k --size=1M --offset=224M --verify=crc32c"
    fio --name=negctl $o --do_verify=0 > /tmp/neg.out 2>&1 || { cat /tmp/neg.out; vmh_die "write"; return 1; }
    fio --name=negctl $o --verify_only > /tmp/neg.out 2>&1 || { cat /tmp/neg.out; vmh_die "clean verify failed"; return 1; }
    dd if=/dev/zero of="$IT_DEV" bs=4k seek=$((224 * 256 + 77)) count=1 oflag=direct 2>/dev/null || return 1
    if fio --name=negctl $o --verify_only > /tmp/neg.out 2>&1; then
        cat /tmp/neg.out; vmh_die "corruption NOT detected by fio"; return 1
    fi
    grep -iE 'verify|bad|crc' /tmp/neg.out | head -4
}
# Discard the middle MiB of a 3 MiB pattern: the neighbours stay intact; when the namespace
# reports DLFEAT "read returns zeroes" the discarded MiB reads as zeroes.
step_blkdiscard() {
    local dlfeat
    dd if=/dev/urandom of=/tmp/it.d bs=1M count=3 2>/dev/null || return 1
    dd if=/tmp/it.d of="$IT_DEV" bs=1M seek=216 count=3 oflag=direct conv=fsync 2>/dev/null || { vmh_die "dd write"; return 1; }
    vmh_run blkdiscard -o $((217 * MIB)) -l $MIB "$IT_DEV" || { vmh_die "blkdiscard failed"; return 1; }
    it_read "$IT_DEV" 216 3 /tmp/it.drb || return 1
    cmp -n $MIB /tmp/it.d /tmp/it.drb || { vmh_die "MiB before the discarded range changed"; return 1; }
    dd if=/tmp/it.d of=/tmp/it.a bs=1M skip=2 count=1 2>/dev/null
    dd if=/tmp/it.drb of=/tmp/it.b bs=1M skip=2 count=1 2>/dev/null
    cmp /tmp/it.a /tmp/it.b || { vmh_die "MiB after the discarded range changed"; return 1; }
    dlfeat=$(it_id_field "$IT_DEV" id-ns dlfeat)
    if [ $(( ${dlfeat:-0} & 7 )) = 1 ]; then
        dd if=/tmp/it.drb of=/tmp/it.a bs=1M skip=1 count=1 2>/dev/null
        dd if=/dev/zero of=/tmp/it.b bs=1M count=1 2>/dev/null
        cmp /tmp/it.a /tmp/it.b || { vmh_die "dlfeat=$dlfeat says zeroes, discarded MiB is not zero"; return 1; }
        vmh_log "discarded range reads as zeroes (dlfeat=$dlfeat)"
    else
        vmh_log "dlfeat=${dlfeat:-?}: discarded content unspecified, not checked"
    fi
    rm -f /tmp/it.d /tmp/it.drb /tmp/it.a /tmp/it.b
}
step_ns_hot_add() {
    local nsid=$IT_NEXT_NSID dev bytes
    IT_NEXT_NSID=$((IT_NEXT_NSID + 1))
    target_add_ns "$nsid" || { vmh_die "target could not add namespace $nsid"; return 1; }
    dev=$(it_ns_dev "$IT_NQN" "$nsid") || { vmh_die "namespace $nsid did not appear on the host"; return 1; }
    bytes=$(( $(cat "/sys/block/${dev#/dev/}/size") * 512 ))
    vmh_log "namespace $nsid appeared as $dev ($bytes bytes)"
    nvme list-ns "$IT_CTRL"
    [ "$bytes" = "$IT_HOTADD_BYTES" ] || { vmh_die "size $bytes, expected $IT_HOTADD_BYTES"; return 1; }
}
# Namespace masking (targets that define target_add_hidden_ns / target_ns_host): a namespace
# added with no_auto_visible stays out of the connected host's active list and block devices
# until nvmf_ns_add_host names the host's NQN; then it appears (NS-changed AEN, rescan) with its
# data readable; nvmf_ns_remove_host makes it disappear again.
step_ns_masking() {
    local nsid=$IT_NEXT_NSID hostnqn dev i hex
    IT_NEXT_NSID=$((IT_NEXT_NSID + 1))
    hex=$(printf '0x%x' "$nsid")
    hostnqn=$(cat "/sys/class/nvme/${IT_CTRL#/dev/}/hostnqn") || { vmh_die "no hostnqn in sysfs"; return 1; }
    target_add_hidden_ns "$nsid" || { vmh_die "target could not add hidden namespace $nsid"; return 1; }
    sleep 2
    nvme list-ns "$IT_CTRL" > /tmp/it.lns 2>&1; cat /tmp/it.lns
    ! grep -q ":$hex\$" /tmp/it.lns || { vmh_die "hidden namespace $nsid is in the host's active list"; return 1; }
    ! it_ns_dev "$IT_NQN" "$nsid" 1 >/dev/null || { vmh_die "hidden namespace $nsid has a block device"; return 1; }
    target_ns_host add "$nsid" "$hostnqn" || { vmh_die "nvmf_ns_add_host failed"; return 1; }
    dev=$(it_ns_dev "$IT_NQN" "$nsid") || { vmh_die "namespace $nsid did not appear after nvmf_ns_add_host"; return 1; }
    vmh_log "namespace $nsid visible to $hostnqn as $dev"
    dd if="$dev" of=/dev/null bs=4k count=16 iflag=direct 2>/dev/null || { vmh_die "read from $dev failed"; return 1; }
    target_ns_host remove "$nsid" "$hostnqn" || { vmh_die "nvmf_ns_remove_host failed"; return 1; }
    for i in $(seq 1 75); do
        it_ns_dev "$IT_NQN" "$nsid" 1 >/dev/null || break
        sleep 0.2
    done
    ! it_ns_dev "$IT_NQN" "$nsid" 1 >/dev/null || { vmh_die "namespace $nsid still present after nvmf_ns_remove_host"; return 1; }
    nvme list-ns "$IT_CTRL" > /tmp/it.lns 2>&1
    ! grep -q ":$hex\$" /tmp/it.lns || { vmh_die "namespace $nsid still in the active list"; return 1; }
}
# NVMe reservations through nvme-cli (targets that set IT_RESERVATIONS=1): register a key, take
# a Write Exclusive reservation, see it in the extended report, a wrong key is refused, release,
# unregister.
it_resv_report() {  # -> /tmp/it.resv (JSON); prints it
    nvme resv-report "$IT_DEV" -n 1 -e -o json > /tmp/it.resv 2>&1
    local rc=$?
    tr -d ' \n' < /tmp/it.resv; echo
    return $rc
}
step_reservations() {
    nvme resv-register "$IT_DEV" -n 1 --nrkey=0xabc1 --rrega=0 || { vmh_die "register"; return 1; }
    it_resv_report || { vmh_die "report"; return 1; }
    tr -d ' \n' < /tmp/it.resv | grep -q '"rkey":43969' || { vmh_die "key 0xabc1 not in the report"; return 1; }
    nvme resv-acquire "$IT_DEV" -n 1 --crkey=0xabc1 --rtype=1 --racqa=0 || { vmh_die "acquire"; return 1; }
    it_resv_report || return 1
    tr -d ' \n' < /tmp/it.resv | grep -q '"rtype":1' || { vmh_die "no Write Exclusive reservation in the report"; return 1; }
    if nvme resv-acquire "$IT_DEV" -n 1 --crkey=0x5555 --rtype=1 --racqa=0 2>/tmp/it.resv.err; then
        vmh_die "acquire with a wrong key succeeded"; return 1
    fi
    cat /tmp/it.resv.err
    # the holder still writes
    dd if=/dev/zero of="$IT_DEV" bs=4k seek=60000 count=1 oflag=direct 2>/dev/null || { vmh_die "holder write failed"; return 1; }
    nvme resv-release "$IT_DEV" -n 1 --crkey=0xabc1 --rtype=1 --rrela=0 || { vmh_die "release"; return 1; }
    nvme resv-register "$IT_DEV" -n 1 --crkey=0xabc1 --rrega=1 || { vmh_die "unregister"; return 1; }
    it_resv_report || return 1
    tr -d ' \n' < /tmp/it.resv | grep -q '"regctl":0' || { vmh_die "registrants left after unregister"; return 1; }
}
# ANA multipath (targets that define target_ana_setup / target_set_ana; NVMe/TCP): one
# subsystem on two ports, the kernel's native multipath sees two optimized paths; one port made
# inaccessible -> the kernel sees the change (ANA AEN + log page) and I/O goes on through the
# other path, byte-exact; then back to optimized.
IT_NQN_ANA=nqn.2016-06.io.spdk:cnode3
IT_SVCID2=4421
it_path_state() {  # it_path_state NQN SVCID -> ana_state of namespace 1 on that path
    local c p
    for c in /sys/class/nvme/nvme*; do
        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
        case ",$(cat "$c/address" 2>/dev/null)," in *",trsvcid=$2,"*) ;; *) continue ;; esac
        for p in "$c"/nvme*c*n1; do
            [ -r "$p/ana_state" ] && { cat "$p/ana_state"; return 0; }
        done
    done
    return 1
}
it_wait_path_state() {  # it_wait_path_state NQN SVCID STATE : up to 15 s
    local i st
    for i in $(seq 1 75); do
        st=$(it_path_state "$1" "$2")
        [ "$st" = "$3" ] && return 0
        sleep 0.2
    done
    vmh_die "path $2 of $1 is '$st', expected $3"
}
step_ana_multipath() {
    local dev
    target_ana_setup || { vmh_die "target could not create the ANA subsystem"; return 1; }
    it_nvme_connect "$IT_NQN_ANA" || { vmh_die "first path"; return 1; }
    vmh_run timeout 60 nvme connect -t "$IT_TR" -a "$IT_ADDR" -s "$IT_SVCID2" -n "$IT_NQN_ANA" $IT_CONNECT_OPTS || { vmh_die "second path"; return 1; }
    dev=$(it_ns_dev "$IT_NQN_ANA" 1) || { vmh_die "no multipath namespace"; return 1; }
    nvme list-subsys "$dev"
    it_wait_path_state "$IT_NQN_ANA" "$IT_SVCID" optimized || return 1
    it_wait_path_state "$IT_NQN_ANA" "$IT_SVCID2" optimized || return 1
    target_set_ana "$IT_SVCID" inaccessible || { vmh_die "set inaccessible"; return 1; }
    it_wait_path_state "$IT_NQN_ANA" "$IT_SVCID" inaccessible || return 1
    it_wait_path_state "$IT_NQN_ANA" "$IT_SVCID2" optimized || return 1
    nvme list-subsys "$dev"
    dd if=/dev/urandom of=/tmp/it.ana bs=1M count=4 2>/dev/null
    vmh_run dd if=/tmp/it.ana of="$dev" bs=1M count=4 oflag=direct conv=fsync || { vmh_die "write through the remaining path"; return 1; }
    it_read "$dev" 0 4 /tmp/it.ana.rb || { vmh_die "read through the remaining path"; return 1; }
    cmp /tmp/it.ana /tmp/it.ana.rb || { vmh_die "data differs"; return 1; }
    target_set_ana "$IT_SVCID" optimized || { vmh_die "set optimized"; return 1; }
    it_wait_path_state "$IT_NQN_ANA" "$IT_SVCID" optimized || return 1
    vmh_run nvme disconnect -n "$IT_NQN_ANA" || return 1
    it_wait_gone "$IT_NQN_ANA"
}
step_disconnect() {
    vmh_run nvme disconnect -n "$IT_NQN" > /tmp/it.dis 2>&1
    local rc=$?
    cat /tmp/it.dis
    IT_DEV=
    IT_CTRL=
    [ $rc = 0 ] || return 1
    grep -q "disconnected 1 controller" /tmp/it.dis || { vmh_die "expected 1 controller disconnected"; return 1; }
    it_wait_gone "$IT_NQN"
}
# step_small_io : 8 MiB pattern write + read-back (used on the digest connection)
step_small_io() {
    dd if=/dev/urandom of=/tmp/it.s bs=1M count=8 2>/dev/null || return 1
    dd if=/tmp/it.s of="$IT_DEV" bs=1M seek=228 count=8 oflag=direct conv=fsync 2>/dev/null || { vmh_die "dd write"; return 1; }
    it_read "$IT_DEV" 228 8 /tmp/it.srb || { vmh_die "dd read"; return 1; }
    cmp /tmp/it.s /tmp/it.srb || { vmh_die "8 MiB read-back differs"; return 1; }
    rm -f /tmp/it.s /tmp/it.srb
}
# A host NQN that is not on the restricted subsystem's allow-list must be refused.
step_host_refused() {
    if it_nvme_connect "$IT_NQN_RESTRICTED" --hostnqn="nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)" \
        --hostid="$(cat /proc/sys/kernel/random/uuid)"; then
        vmh_die "connect with a host NQN not on the allow-list succeeded"
        nvme disconnect -n "$IT_NQN_RESTRICTED"
        return 1
    fi
    vmh_ctrl_of "$IT_NQN_RESTRICTED" >/dev/null && { vmh_die "a controller exists after the refusal"; return 1; }
    return 0
}
# The allowed host NQN is accepted by the same subsystem (so the refusal above is about the NQN).
step_host_allowed() {
    it_nvme_connect "$IT_NQN_RESTRICTED" --hostnqn="$IT_ALLOWED_HOSTNQN" --hostid="$IT_ALLOWED_HOSTID" || return 1
    it_ns_dev "$IT_NQN_RESTRICTED" 1 >/dev/null || { vmh_die "namespace 1 of $IT_NQN_RESTRICTED did not appear"; return 1; }
    vmh_run nvme disconnect -n "$IT_NQN_RESTRICTED" || return 1
    it_wait_gone "$IT_NQN_RESTRICTED"
}

# ---------------------------------------------------------------- our host tools
# The project's own NVMe/TCP host driver (nvme_identify, nvme_perf, bdevperf over bdev_nvme)
# against the same target; xtask stages the binaries in /opt/user.
IT_TOOLS=/opt/user
# it_quiet FILE : our tool logged no warning or error (an interop problem it worked around)
it_quiet() {
    ! grep -E ' (WARN|ERROR) ' "$1" || { vmh_die "warnings/errors logged (above)"; return 1; }
}
it_trid() { echo "trtype:TCP adrfam:IPv4 traddr:$IT_ADDR trsvcid:$IT_SVCID subnqn:$1${2:+ hostnqn:$2}"; }
# Controller data as the kernel host read it (serial) and namespace 1's size, from our identify.
step_spdk_identify() {
    local rc fmt lbas bs
    vmh_run timeout 60 "$IT_TOOLS/nvme_identify" -r "$(it_trid "$IT_NQN")" > /tmp/it.sid 2>&1
    rc=$?
    grep -E '^(Serial Number|Model Number|Firmware Version|Subsystem NQN|Namespace ID|Size \(in LBAs\)|Current LBA Format):' /tmp/it.sid
    [ $rc = 0 ] || { tail -20 /tmp/it.sid; vmh_die "nvme_identify exit $rc"; return 1; }
    grep -qE "^Subsystem NQN: +$IT_NQN\$" /tmp/it.sid || { vmh_die "nvme_identify: no Subsystem NQN $IT_NQN"; return 1; }
    it_quiet /tmp/it.sid || return 1
    if [ -n "$IT_SN" ]; then
        grep -qE "^Serial Number: +$IT_SN *\$" /tmp/it.sid || { vmh_die "nvme_identify serial differs from the kernel host's '$IT_SN'"; return 1; }
    fi
    # namespace 1 (the first namespace section): LBAs x data size of the current format
    lbas=$(sed -n 's/^Size (in LBAs): *\([0-9]*\).*/\1/p' /tmp/it.sid | head -1)
    fmt=$(sed -n 's/^Current LBA Format: *LBA Format #\([0-9]*\).*/\1/p' /tmp/it.sid | head -1)
    bs=$(sed -n "s/^LBA Format #$fmt: Data Size: *\([0-9]*\).*/\1/p" /tmp/it.sid | head -1)
    [ -n "$lbas" ] && [ -n "$bs" ] || { vmh_die "nvme_identify: no namespace size or LBA format"; return 1; }
    [ $((lbas * bs)) = "$IT_NS1_BYTES" ] || { vmh_die "nvme_identify: namespace 1 is $lbas x $bs B, expected $IT_NS1_BYTES B"; return 1; }
}
# The discovery controller's log through our host: an entry for IT_NQN on this port.
step_spdk_identify_discovery() {
    local rc
    vmh_run timeout 60 "$IT_TOOLS/nvme_identify" -r "$(it_trid nqn.2014-08.org.nvmexpress.discovery)" > /tmp/it.sdd 2>&1
    rc=$?
    sed -n '/^Discovery Log Page/,$p' /tmp/it.sdd | grep -E 'Number of Records|Transport Type|Transport Service|Qualified Name'
    [ $rc = 0 ] || { tail -20 /tmp/it.sdd; vmh_die "nvme_identify (discovery) exit $rc"; return 1; }
    grep -qE "^NVM Subsystem Qualified Name: +$IT_NQN *\$" /tmp/it.sdd || { vmh_die "discovery log (ours) lacks $IT_NQN"; return 1; }
}
# The restricted subsystem refuses our host's default NQN (a clean error, no hang) and accepts
# the allowed one.
step_spdk_identify_access() {
    local rc
    vmh_run timeout 60 "$IT_TOOLS/nvme_identify" -r "$(it_trid "$IT_NQN_RESTRICTED")" > /tmp/it.sir 2>&1
    rc=$?
    tail -3 /tmp/it.sir
    [ $rc != 0 ] && [ $rc != 124 ] || { vmh_die "nvme_identify of $IT_NQN_RESTRICTED with a foreign host NQN: exit $rc, expected a refusal"; return 1; }
    vmh_run timeout 60 "$IT_TOOLS/nvme_identify" -r "$(it_trid "$IT_NQN_RESTRICTED" "$IT_ALLOWED_HOSTNQN")" > /tmp/it.sir 2>&1
    rc=$?
    [ $rc = 0 ] || { tail -10 /tmp/it.sir; vmh_die "nvme_identify with the allowed host NQN: exit $rc"; return 1; }
    grep -qE "^Subsystem NQN: +$IT_NQN_RESTRICTED\$" /tmp/it.sir || { vmh_die "no Subsystem NQN $IT_NQN_RESTRICTED"; return 1; }
}
# nvme_perf: mixed 4 KiB random I/O at depth 16 on every namespace; no failed I/O, IOPS > 0.
step_spdk_perf() {
    local rc iops
    vmh_run timeout 90 "$IT_TOOLS/nvme_perf" -r "$(it_trid "$IT_NQN")" -q 16 -o 4096 -w randrw -M 50 -t 5 -c 0x1 > /tmp/it.perf 2>&1
    rc=$?
    grep -E 'NSID|^Total' /tmp/it.perf
    [ $rc = 0 ] || { tail -20 /tmp/it.perf; vmh_die "nvme_perf exit $rc"; return 1; }
    iops=$(sed -n 's/^Total *: *\([0-9]*\).*/\1/p' /tmp/it.perf)
    [ -n "$iops" ] && [ "$iops" -gt 0 ] || { vmh_die "nvme_perf: no IOPS in the Total line"; return 1; }
    it_quiet /tmp/it.perf
}
# bdevperf -w verify over bdev_nvme (bdev_nvme_attach_controller): every byte read back checked.
step_spdk_bdevperf_verify() {
    local rc
    cat > /tmp/it.bdevperf.json <<JSON
{"subsystems":[
 {"subsystem":"iobuf","config":[{"method":"iobuf_set_options","params":{"small_pool_count":1024,"large_pool_count":64}}]},
 {"subsystem":"bdev","config":[{"method":"bdev_nvme_attach_controller","params":{"name":"Nvme0","trtype":"TCP","adrfam":"IPv4","traddr":"$IT_ADDR","trsvcid":"$IT_SVCID","subnqn":"$IT_NQN"}}]}]}
JSON
    RUST_LOG=warn vmh_run timeout 120 "$IT_TOOLS/bdevperf" -c /tmp/it.bdevperf.json -r /tmp/it.bdevperf.sock -q 16 -o 4096 -w verify -t 5 -m 0x1 > /tmp/it.bdevperf 2>&1
    rc=$?
    grep -E 'Nvme0n[0-9]+ +:|^ *Total|miscompare|error' /tmp/it.bdevperf | head -20
    [ $rc = 0 ] || { tail -20 /tmp/it.bdevperf; vmh_die "bdevperf verify exit $rc"; return 1; }
    grep -qE 'Nvme0n1 +:' /tmp/it.bdevperf || { vmh_die "bdevperf ran no job on Nvme0n1"; return 1; }
    it_quiet /tmp/it.bdevperf
}
it_tools() {
    local s
    for s in identify identify-discovery identify-access perf bdevperf-verify; do
        if [ "$IT_TR" != tcp ]; then it_skip "spdk-$s" "our host driver is NVMe/TCP only"; continue; fi
        if [ ! -x "$IT_TOOLS/nvme_identify" ]; then it_skip "spdk-$s" "tools not staged"; continue; fi
        it_step "spdk-$s" "step_spdk_$(echo "$s" | tr - _)"
    done
}

# ---------------------------------------------------------------- suite
# it_suite TRANSPORT ADDR : every host-side step against the target at ADDR:IT_SVCID.
it_suite() {
    IT_TR=$1
    IT_ADDR=$2
    IT_DEV=
    IT_CTRL=
    vmh_log "=== interop steps: transport $IT_TR, target $IT_ADDR:$IT_SVCID, subsystem $IT_NQN ==="
    vmh_host_init && vmh_modprobe "nvme-$IT_TR" || { it_step host-modules false; return 1; }
    it_step discover step_discover
    # vmh.suite=tools: discovery by the kernel host, then only our host tools
    if [ "$(vmh_cmdline suite full)" = tools ]; then
        it_tools
        return
    fi
    it_step connect step_connect
    it_step_c list step_list
    it_step_c id-ctrl step_id_ctrl
    it_step_c id-ns step_id_ns
    it_step_c dd-64MiB-verify step_dd_64m
    it_step_c blkdiscard step_blkdiscard
    it_step_c ns-hot-add step_ns_hot_add
    if [ "${IT_RESERVATIONS:-0}" = 1 ]; then
        it_step_c reservations step_reservations
    else
        it_skip reservations "the target has no reservations"
    fi
    if type target_add_hidden_ns >/dev/null 2>&1; then
        it_step_c ns-masking step_ns_masking
    else
        it_skip ns-masking "the target has no per-host namespace masking"
    fi
    it_step_c disconnect step_disconnect
    it_step reconnect-4-io-queues step_connect -i 4
    it_step_c io-queue-count step_queue_count 4
    it_step_c data-persists-after-reconnect step_data_persists
    it_step_c fio-verify step_fio_verify
    if [ "$IT_TR" = tcp ]; then
        it_step_c fio-negative-control step_fio_negative_control
    fi
    it_step_c disconnect-2 step_disconnect
    if [ "$IT_TR" = tcp ]; then
        it_step connect-digest step_connect -g -G
        it_step_c digest-io-verify step_small_io
        it_step_c disconnect-3 step_disconnect
    else
        it_skip connect-digest "NVMe/TCP only"
    fi
    it_disconnect_all
    it_step host-not-allowed-refused step_host_refused
    it_step host-allowed-accepted step_host_allowed
    it_disconnect_all
    if [ "$IT_TR" = tcp ] && type target_ana_setup >/dev/null 2>&1; then
        it_step ana-multipath step_ana_multipath
    else
        it_skip ana-multipath "NVMe/TCP against a target with ANA states only"
    fi
    it_tools
}

# it_transports -> the transports asked for on the kernel command line (vmh.tests=tcp,rdma)
it_transports() { vmh_cmdline tests tcp | tr ',' ' '; }
# it_rxe_setup : soft-RoCE for the rdma suite (IT_TR=rdma so it is reported as rdma/rxe-setup)
IT_RDMA_ADDR=10.123.0.1
it_rxe_setup() {
    IT_TR=rdma
    it_step rxe-setup vmh_rxe_setup "$IT_RDMA_ADDR"
}
