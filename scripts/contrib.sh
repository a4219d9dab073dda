#!/usr/bin/env bash
# Checks contrib/: the Prometheus rules (promtool check rules, then the unit
# tests in contrib/prometheus/webhook-guard.rules.test.yml) and the Grafana
# dashboard (structure, then every query run by promtool against recorded
# series; see scripts/contrib_dashboard.py for how those series are derived
# from the metric table in src/metrics.rs).
#
# Uses promtool from PATH, else extracts it (only the binary, no service) from
# Debian's `prometheus` package into target/promtool/. Exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/contrib
mkdir -p "$out"

if command -v promtool >/dev/null 2>&1; then
  promtool=$(command -v promtool)
else
  promtool=$PWD/target/promtool/usr/bin/promtool
  if [ ! -x "$promtool" ]; then
    echo "promtool not on PATH: extracting it from Debian's prometheus package into target/promtool/" >&2
    mkdir -p target/promtool
    (
      cd target/promtool
      rm -f prometheus_*.deb
      if ! apt-get download prometheus >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get download prometheus >/dev/null
      fi
      dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
      rm -f prometheus_*.deb
    )
  fi
fi
echo "promtool: $promtool ($("$promtool" --version 2>&1 | head -n1))"

echo
echo "=== promtool check rules"
"$promtool" check rules contrib/prometheus/webhook-guard.rules.yml contrib/prometheus/webhook-guard.thresholds.yml

echo
echo "=== promtool test rules (every alert: a case that fires it, a realistic one that does not)"
(cd contrib/prometheus && "$promtool" test rules webhook-guard.rules.test.yml)

echo
echo "=== dashboard structure, and its queries as promtool tests"
python3 scripts/contrib_dashboard.py contrib/grafana/webhook-guard.json src/metrics.rs "$out/dashboard.test.yml"

echo
echo "=== promtool test rules (every dashboard query over the crate's series)"
"$promtool" test rules "$out/dashboard.test.yml"

echo
echo "contrib: all checks passed"
