-- wrk script: GET /Users?filter=userName eq "<SCIM_USER>"
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SCIM_TOKEN")
  local user = os.getenv("SCIM_USER")
  wrk.path = (os.getenv("SCIM_BASE") or "/scim/v2") .. "/Users?filter=userName%20eq%20%22" .. user .. "%22"
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
