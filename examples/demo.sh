#!/usr/bin/env bash
# A tour of minijet (run by `make demo`): start a local cluster in a temporary directory, put
# the Shakespeare text, list it, show its blocks and replicas, read it back; then count its
# words with a MapReduce job, show the top words and the job's status; stop the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$(mktemp -d "${TMPDIR:-/tmp}/minijet-demo.XXXXXX")
export MINIJET_CONF="$DIR/minijet.yaml"   # dfsshell and jetshell find the demo cluster through this
cleanup() {
    minijet cluster down --dir "$DIR" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

step() { printf '\n$ %s\n' "$*"; "$@"; }

step minijet cluster up --dataservers 3 --taskservers 2 --dir "$DIR"
# Small blocks, so that even this 1 MB file is spread over several blocks and hosts.
step dfsshell put --block-size 256KiB examples/wordcount/shakespeare.txt /input/shakespeare.txt
step dfsshell ls -R /
step dfsshell stat /input/shakespeare.txt
printf '\n$ dfsshell cat /input/shakespeare.txt | head\n'
dfsshell cat /input/shakespeare.txt | head
step dfsshell get /input/shakespeare.txt "$DIR/shakespeare.txt"
step cmp examples/wordcount/shakespeare.txt "$DIR/shakespeare.txt"
echo "the copy read back from the DFS is byte-identical"
step dfsshell fsck /
step dfsshell report

# WordCount: one map task per block (run where the block is), one reduce task.
printf '\n$ jetshell run examples/wordcount/wordcount.py WordCount /input /output\n'
jetshell run examples/wordcount/wordcount.py WordCount /input /output | tee "$DIR/run.out"
JOB=$(head -n 1 "$DIR/run.out" | awk '{print $NF}')   # the job id ends the first line
step dfsshell ls /output
printf '\n$ dfsshell cat /output/part-00000 | sort -k2,2nr | head -n 15   # the top words\n'
dfsshell cat /output/part-00000 | sort -k2,2nr | awk 'NR <= 15'   # awk: no SIGPIPE for pipefail
step jetshell status "$JOB"
step minijet cluster down --dir "$DIR"
