# Sourced by the GPU scripts (from the repository root): timed stages under one budget.
#
# `begin_stages OUTDIR LOGNAME BUDGET_SECONDS` makes OUTDIR (absolute in $OUT), sets PY
# ($PYTHON or python3), BUDGET, RESERVE (20 s kept for the last stage, named "merge") and
# START, points FASTCIFAR_DATA at an empty folder (the bench generates its data and says
# so) and copies all output to OUTDIR/LOGNAME. `stage NAME LIMIT COMMAND...` runs COMMAND
# under `timeout`, capped by what is left of the budget, logs its outcome and records it
# in SUMMARY; a failed or timed-out stage does not stop the script. `has MODULE` says
# whether Python can import MODULE. `end_stages` prints the summary.

begin_stages() {
    mkdir -p "$1"
    OUT=$(cd "$1" && pwd)
    PY=${PYTHON:-python3}
    BUDGET=$3
    RESERVE=20
    START=$(date +%s)
    export PYTHONUNBUFFERED=1
    export FASTCIFAR_DATA="$OUT/.no-prepared-data"
    exec > >(tee -a "$OUT/$2") 2>&1
}

end_stages() {
    echo "=== summary ($(( $(date +%s) - START ))s of ${BUDGET}s)"
    printf '  %s\n' "${SUMMARY[@]}"
}

SUMMARY=()
stage() {  # stage NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET - RESERVE - ($(date +%s) - START) ))
    [[ $name == merge ]] && left=$(( BUDGET - ($(date +%s) - START) ))
    if (( left < 15 )); then
        echo "=== [$name] not run: ${left}s left of the ${BUDGET}s budget"
        SUMMARY+=("$name: not run (no time left)")
        return
    fi
    (( limit > left )) && limit=$left
    echo "=== [$name] $(date +%H:%M:%S), limit ${limit}s: $*"
    local began=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    local rc=$? took=$(( $(date +%s) - began ))
    case $rc in
        0) SUMMARY+=("$name: ok (${took}s)") ;;
        124|137) echo "=== [$name] TIMED OUT after ${limit}s"; SUMMARY+=("$name: TIMED OUT (${took}s)") ;;
        *) echo "=== [$name] FAILED with exit status $rc"; SUMMARY+=("$name: FAILED rc=$rc (${took}s)") ;;
    esac
}

has() { "$PY" -c "import $1" >/dev/null 2>&1; }
