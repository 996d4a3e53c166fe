# Guest snippet: our nvmf_tgt (/opt/user/nvmf_tgt) as the target under test.
# Writes an SPDK-style JSON config, starts `nvmf_tgt -c config.json -m 0x1`, waits for its RPC
# socket, runs the host-side steps (interop.sh), stops it with SIGTERM and checks it exits 0.
# Sourced by /init in /opt/user with vmharness.sh and interop.sh loaded; exit status = verdict.
IT_NQN=nqn.2016-06.io.spdk:cnode1
IT_NQN_RESTRICTED=nqn.2016-06.io.spdk:cnode2
IT_NS1_BYTES=268435456      # Malloc0: 524288 x 512 B
IT_HOTADD_BYTES=67108864    # target_add_ns: 131072 x 512 B
IT_RESERVATIONS=1
TGT=/opt/user/nvmf_tgt
TGT_LOG=/tmp/nvmf_tgt.log
RPC_SOCK=/var/tmp/spdk.sock
TRANSPORTS=$(it_transports)

# it_rpc METHOD [PARAMS-JSON] : one JSON-RPC 2.0 call on the SPDK Unix socket (socat; the
# guest has no python). Prints the response; fails on an "error" member or no response (10 s).
it_rpc() {
    local req i
    if [ -n "$2" ]; then
        req="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"
    else
        req="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\"}"
    fi
    echo "rpc> $req"
    rm -f /tmp/rpc.out
    # keep our side open until the response arrived: a half-close may drop the reply
    { printf '%s' "$req"; i=0
      while [ $i -lt 100 ] && ! grep -q '"id"' /tmp/rpc.out 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    } | socat -t 1 - "UNIX-CONNECT:$RPC_SOCK" > /tmp/rpc.out
    echo "rpc< $(cat /tmp/rpc.out 2>/dev/null)"
    grep -q '"result"' /tmp/rpc.out 2>/dev/null && ! grep -q '"error"' /tmp/rpc.out
}

target_add_ns() {  # target_add_ns NSID : a new malloc bdev as namespace NSID of IT_NQN, by RPC
    it_rpc bdev_malloc_create "{\"name\":\"Malloc$1\",\"num_blocks\":131072,\"block_size\":512}" || return 1
    it_rpc nvmf_subsystem_add_ns "{\"nqn\":\"$IT_NQN\",\"namespace\":{\"nsid\":$1,\"bdev_name\":\"Malloc$1\"}}"
}
target_add_hidden_ns() {  # target_add_hidden_ns NSID : like target_add_ns, no_auto_visible
    it_rpc bdev_malloc_create "{\"name\":\"Malloc$1\",\"num_blocks\":131072,\"block_size\":512}" || return 1
    it_rpc nvmf_subsystem_add_ns "{\"nqn\":\"$IT_NQN\",\"namespace\":{\"nsid\":$1,\"bdev_name\":\"Malloc$1\",\"no_auto_visible\":true}}"
}
target_ns_host() {  # target_ns_host add|remove NSID HOSTNQN : nvmf_ns_add_host / nvmf_ns_remove_host
    it_rpc "nvmf_ns_$1_host" "{\"nqn\":\"$IT_NQN\",\"nsid\":$2,\"host\":\"$3\"}"
}
target_ana_setup() {  # subsystem IT_NQN_ANA (ANA reporting), one namespace, TCP ports IT_SVCID + IT_SVCID2
    local p
    it_rpc bdev_malloc_create '{"name":"AnaMalloc","num_blocks":65536,"block_size":512}' || return 1
    it_rpc nvmf_create_subsystem "{\"nqn\":\"$IT_NQN_ANA\",\"allow_any_host\":true,\"ana_reporting\":true,\"serial_number\":\"RSPDK0000000003\"}" || return 1
    for p in "$IT_SVCID" "$IT_SVCID2"; do
        it_rpc nvmf_subsystem_add_listener "{\"nqn\":\"$IT_NQN_ANA\",\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"$IT_ADDR\",\"trsvcid\":\"$p\"}}" || return 1
    done
    it_rpc nvmf_subsystem_add_ns "{\"nqn\":\"$IT_NQN_ANA\",\"namespace\":{\"nsid\":1,\"bdev_name\":\"AnaMalloc\"}}"
}
target_set_ana() {  # target_set_ana SVCID optimized|non_optimized|inaccessible
    it_rpc nvmf_subsystem_listener_set_ana_state "{\"nqn\":\"$IT_NQN_ANA\",\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"$IT_ADDR\",\"trsvcid\":\"$1\"},\"ana_state\":\"$2\"}"
}
target_diag() {
    echo "---- nvmf_tgt: alive=$(kill -0 "$TPID" 2>/dev/null && echo yes || echo no), log tail ----"
    tail -n 30 "$TGT_LOG"
    echo "---- dmesg tail ----"
    dmesg | grep -iE 'nvme|rxe|rdma' | tail -10
}

# listeners (and the RDMA transport) only for the transports asked for
listeners() {  # listeners NQN -> JSON config entries
    local tr
    for tr in $TRANSPORTS; do
        case $tr in
        tcp) echo ",{\"method\":\"nvmf_subsystem_add_listener\",\"params\":{\"nqn\":\"$1\",\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"127.0.0.1\",\"trsvcid\":\"$IT_SVCID\"}}}" ;;
        rdma) echo ",{\"method\":\"nvmf_subsystem_add_listener\",\"params\":{\"nqn\":\"$1\",\"listen_address\":{\"trtype\":\"RDMA\",\"adrfam\":\"IPv4\",\"traddr\":\"$IT_RDMA_ADDR\",\"trsvcid\":\"$IT_SVCID\"}}}" ;;
        esac
    done
}
transports() {
    local tr
    for tr in $TRANSPORTS; do
        case $tr in
        tcp) echo ",{\"method\":\"nvmf_create_transport\",\"params\":{\"trtype\":\"TCP\",\"max_queue_depth\":128,\"in_capsule_data_size\":4096,\"max_io_size\":131072}}" ;;
        rdma) echo ",{\"method\":\"nvmf_create_transport\",\"params\":{\"trtype\":\"RDMA\",\"max_queue_depth\":128,\"in_capsule_data_size\":4096,\"max_io_size\":131072}}" ;;
        esac
    done
}
write_config() {
    cat <<JSON
{"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"Malloc0","num_blocks":524288,"block_size":512}},
  {"method":"bdev_malloc_create","params":{"name":"Malloc1","num_blocks":131072,"block_size":512}},
  {"method":"bdev_wait_for_examine"}]},
 {"subsystem":"nvmf","config":[
  $(transports | tr -d '\n' | cut -c2-),
  {"method":"nvmf_create_subsystem","params":{"nqn":"$IT_NQN","allow_any_host":true,"serial_number":"RSPDK0000000001","model_number":"rspdk interop","max_namespaces":32}},
  {"method":"nvmf_create_subsystem","params":{"nqn":"$IT_NQN_RESTRICTED","allow_any_host":false,"serial_number":"RSPDK0000000002","max_namespaces":4}},
  {"method":"nvmf_subsystem_add_host","params":{"nqn":"$IT_NQN_RESTRICTED","host":"$IT_ALLOWED_HOSTNQN"}}
  $(listeners "$IT_NQN" | tr -d '\n')
  $(listeners "$IT_NQN_RESTRICTED" | tr -d '\n')
  ,{"method":"nvmf_subsystem_add_ns","params":{"nqn":"$IT_NQN","namespace":{"nsid":1,"bdev_name":"Malloc0"}}}
  ,{"method":"nvmf_subsystem_add_ns","params":{"nqn":"$IT_NQN_RESTRICTED","namespace":{"nsid":1,"bdev_name":"Malloc1"}}}]}]}
JSON
}

step_target_start() {
    local i
    write_config > /opt/user/config.json
    cat /opt/user/config.json
    NO_COLOR=1 "$TGT" -c /opt/user/config.json -m 0x1 > "$TGT_LOG" 2>&1 &
    TPID=$!
    for i in $(seq 1 100); do
        kill -0 "$TPID" 2>/dev/null || { vmh_die "nvmf_tgt exited during startup"; wait "$TPID"; vmh_log "exit status $?"; return 1; }
        [ -S "$RPC_SOCK" ] && break
        sleep 0.2
    done
    [ -S "$RPC_SOCK" ] || { vmh_die "no RPC socket $RPC_SOCK after 20 s"; return 1; }
    it_rpc spdk_get_version || return 1
    it_rpc nvmf_get_subsystems > /dev/null || return 1
}
step_target_stop() {
    local i rc
    kill -TERM "$TPID" || { vmh_die "nvmf_tgt is not running"; return 1; }
    for i in $(seq 1 100); do
        kill -0 "$TPID" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$TPID" 2>/dev/null; then
        vmh_die "nvmf_tgt still running 20 s after SIGTERM; killing it"
        kill -KILL "$TPID"; wait "$TPID"
        return 1
    fi
    wait "$TPID"
    rc=$?
    vmh_log "nvmf_tgt exit status $rc"
    [ $rc = 0 ]
}

mkdir -p /var/tmp
TPID=
IT_TR=target
# soft-RoCE first: the RDMA transport in the config needs rxe0 at startup
case " $TRANSPORTS " in *" rdma "*) it_rxe_setup || IT_FAILS=$((IT_FAILS + 1)) ;; esac
IT_TR=target
if it_step start step_target_start; then
    for tr in $TRANSPORTS; do
        case $tr in
        tcp) it_suite tcp 127.0.0.1 ;;
        rdma) it_suite rdma "$IT_RDMA_ADDR" ;;
        *) vmh_log "unknown transport $tr"; IT_FAILS=$((IT_FAILS + 1)) ;;
        esac
    done
    IT_TR=target
    it_step stop-sigterm-exit-0 step_target_stop
else
    for tr in $TRANSPORTS; do IT_TR=$tr; it_skip all-steps "nvmf_tgt did not start"; done
fi
[ "$IT_FAILS" = 0 ] || { echo "---- nvmf_tgt log (tail) ----"; tail -n 60 "$TGT_LOG"; }
vmh_log "nvmf_tgt: $IT_FAILS failed step(s)"
[ "$IT_FAILS" = 0 ]
