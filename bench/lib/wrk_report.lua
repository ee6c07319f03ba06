-- wrk script: prints one machine-readable line when the run ends, so that
-- compare.sh does not have to parse wrk's human-readable units.
-- Latencies are in microseconds, the duration too.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
