#!/usr/bin/env bash
# Side-by-side ingest benchmark: Tocsin (every event fsynced before its 202, with the shipped
# rules, and again without rules) and Prometheus Alertmanager 0.25 (Debian's
# prometheus-alertmanager; keeps alerts in memory), driven by the same wrk load generator and
# the same Alertmanager v2 payloads over loopback, in one run. Every alert is distinct, so each
# opens an incident in Tocsin: the storm case.
#
#   benches/ingest.sh                # 3 runs of 10 s per case, medians reported
#   RUNS=5 DURATION=20 CONNS=64 benches/ingest.sh
#   TOCSIN_BIN=new/tocsin BASELINE=old/tocsin RUNS=5 benches/ingest.sh
#                                    # A/B: two Tocsin binaries (each with the shipped rules)
#                                    # in the same run, alternating, beside Alertmanager
#
# Needs: wrk, prometheus-alertmanager (apt-get install wrk prometheus-alertmanager), a release
# build (the script builds it). Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
TOCSIN_PORT=${TOCSIN_PORT:-19797}
AM_PORT=${AM_PORT:-19093}
TOKEN=bench-token-$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
if [ -n "${TOCSIN_BIN:-}" ]; then
  BIN=$TOCSIN_BIN
else
  cargo build --release --quiet
  BIN=target/release/tocsin
fi
TARGETS="alertmanager tocsin tocsin-norules"
if [ -n "${BASELINE:-}" ]; then
  TARGETS+=" baseline"
fi

wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# One wrk run; prints "alerts_per_s p50_ms p99_ms refused".
drive() { # url per_request token
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s benches/wrk/alerts.lua "$1" -- "$2" "${3:-}" | grep '^RESULT')
  # shellcheck disable=SC2086
  eval "$(echo "$out" | sed 's/^RESULT //')"
  awk -v r="$requests" -v d="$duration_us" -v p="$per_request" -v a="$p50_us" -v b="$p99_us" -v f="$refused" -v e="$errors" \
    'BEGIN { printf "%.0f %.2f %.2f %d\n", (r - f) * p / (d / 1e6), a / 1000, b / 1000, f + e }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Two Tocsin configs: the shipped one (rules/tocsin.yaml, with the shipped rules) and the same
# without rules, to measure what scoring costs. Both without a default policy: this measures
# ingest, incidents and scoring; notification fan-out has its own benchmark
# (benches/notify_latency.py).
sed -e "s|^  dir: \.$|  dir: $PWD/rules|" -e "s|^  templates: templates$|  templates: $PWD/rules/templates|" \
    -e '/^default_policy:/d' rules/tocsin.yaml >"$WORK/rules.yaml"
grep -q "dir: $PWD/rules" "$WORK/rules.yaml" || { echo "could not point the bench config at rules/" >&2; exit 1; }
sed '/^rules:/,/^$/d' "$WORK/rules.yaml" >"$WORK/norules.yaml"

start_tocsin() { # config [binary]
  rm -rf "$WORK/tocsin-data"
  TOCSIN_LISTEN=127.0.0.1:$TOCSIN_PORT TOCSIN_DATA_DIR=$WORK/tocsin-data TOCSIN_TOKEN=$TOKEN TOCSIN_LOG=warn \
    "${2:-$BIN}" serve --config "$1" >"$WORK/tocsin.log" 2>&1 &
  TOCSIN_PID=$!
  PIDS+=("$TOCSIN_PID")
  wait_http "http://127.0.0.1:$TOCSIN_PORT/-/ready"
}

start_alertmanager() {
  rm -rf "$WORK/am-data"
  mkdir -p "$WORK/am-data"
  cat >"$WORK/am.yml" <<YAML
route:
  receiver: sink
  group_by: ['alertname']
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:9/sink
        send_resolved: false
YAML
  prometheus-alertmanager --config.file="$WORK/am.yml" --storage.path="$WORK/am-data" \
    --web.listen-address=127.0.0.1:$AM_PORT --cluster.listen-address= --log.level=error \
    >"$WORK/am.log" 2>&1 &
  AM_PID=$!
  PIDS+=("$AM_PID")
  wait_http "http://127.0.0.1:$AM_PORT/-/ready"
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# Runs alternate between the two targets (A B A B …) so that noise from the shared machine
# falls on both alike; each run starts a fresh process with an empty data directory.
declare -A RATES P50S P99S MEMS REF RATE P50 P99 MEM
for run in $(seq 1 "$RUNS"); do
  for per in 1 100; do
    for target in $TARGETS; do
      if [ "$target" = baseline ]; then
        start_tocsin "$WORK/rules.yaml" "$BASELINE"; pid=$TOCSIN_PID; url=http://127.0.0.1:$TOCSIN_PORT/api/v2/alerts; tok=$TOKEN
      elif [ "$target" = tocsin ]; then
        start_tocsin "$WORK/rules.yaml"; pid=$TOCSIN_PID; url=http://127.0.0.1:$TOCSIN_PORT/api/v2/alerts; tok=$TOKEN
      elif [ "$target" = tocsin-norules ]; then
        start_tocsin "$WORK/norules.yaml"; pid=$TOCSIN_PID; url=http://127.0.0.1:$TOCSIN_PORT/api/v2/alerts; tok=$TOKEN
      else
        start_alertmanager; pid=$AM_PID; url=http://127.0.0.1:$AM_PORT/api/v2/alerts; tok=
      fi
      read -r rate p50 p99 ref < <(drive "$url" "$per" "$tok")
      mem=$(peak_rss_kb "$pid")
      stop "$pid"
      echo "  $target batch=$per run=$run: $rate alerts/s p50=${p50}ms p99=${p99}ms peak_rss=${mem}kB refused=$ref" >&2
      k=$target-$per
      RATES[$k]+="$rate "; P50S[$k]+="$p50 "; P99S[$k]+="$p99 "; MEMS[$k]+="$mem "
      REF[$k]=$(( ${REF[$k]:-0} + ref ))
    done
  done
done
for k in "${!RATES[@]}"; do
  RATE[$k]=$(printf '%s\n' ${RATES[$k]} | median)
  P50[$k]=$(printf '%s\n' ${P50S[$k]} | median)
  P99[$k]=$(printf '%s\n' ${P99S[$k]} | median)
  MEM[$k]=$(printf '%s\n' ${MEMS[$k]} | median)
done

echo
echo "Medians of $RUNS runs, ${DURATION}s each, wrk -t$THREADS -c$CONNS, loopback, $(nproc) cores shared by all:"
printf '%-15s %-6s %12s %9s %9s %12s %8s\n' target batch alerts/s p50_ms p99_ms peak_rss_kB refused
for per in 1 100; do
  for target in $TARGETS; do
    k=$target-$per
    printf '%-15s %-6s %12s %9s %9s %12s %8s\n' "$target" "$per" "${RATE[$k]}" "${P50[$k]}" "${P99[$k]}" "${MEM[$k]}" "${REF[$k]}"
  done
  awk -v t="${RATE[tocsin-$per]}" -v a="${RATE[alertmanager-$per]}" -v tp="${P99[tocsin-$per]}" -v ap="${P99[alertmanager-$per]}" -v b="$per" \
    'BEGIN { printf "ratio batch=%s: tocsin/alertmanager alerts/s = %.2fx, p99 = %.2fx\n", b, t / a, tp / ap }'
  awk -v t="${RATE[tocsin-$per]}" -v n="${RATE[tocsin-norules-$per]}" -v b="$per" \
    'BEGIN { printf "ratio batch=%s: tocsin with rules / without = %.2f\n", b, t / n }'
  if [ -n "${BASELINE:-}" ]; then
    awk -v t="${RATE[tocsin-$per]}" -v o="${RATE[baseline-$per]}" -v tp="${P99[tocsin-$per]}" -v op="${P99[baseline-$per]}" -v b="$per" \
      'BEGIN { printf "ratio batch=%s: tocsin/baseline alerts/s = %.2fx, p99 = %.2fx\n", b, t / o, tp / op }'
  fi
done
